package tokenizers

import (
	"fmt"
	"strings"
)

// Byte-level helpers shared by byte-level BPE tokenizers: GPT-2, LLaMA-3 and
// Qwen2 style tokenizer.json files here, CLIP in models/clip. They live in
// this leaf package (no GoMLX) so both can use them.

// byteToRune is bytes_to_unicode() as a table: byteToRune[b] is the rune that
// stands for byte b in BPE symbols.
var byteToRune = func() (t [256]rune) {
	n := 0
	for b := 0; b < 256; b++ {
		if printableByte(byte(b)) {
			t[b] = rune(b)
		} else {
			t[b] = rune(256 + n)
			n++
		}
	}
	return t
}()

// runeToByte inverts byteToRune over its 256 runes (all below 0x144).
var runeToByte = func() map[rune]byte {
	m := make(map[rune]byte, 256)
	for b, r := range byteToRune {
		m[r] = byte(b)
	}
	return m
}()

// printableByte reports whether b is one of the bytes that bytes_to_unicode
// maps to itself: '!'..'~', '¡'..'¬' and '®'..'ÿ' (Latin-1 code points).
func printableByte(b byte) bool {
	return ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF)
}

// BytesToUnicode returns the reversible byte-to-rune table of GPT-2's and
// CLIP's bytes_to_unicode(): the 188 printable Latin-1 bytes ('!'..'~',
// '¡'..'¬', '®'..'ÿ') map to themselves and the other 68 bytes (controls,
// space, NBSP, soft hyphen) to U+0100, U+0101, ... in increasing byte order.
// Byte-level BPE runs on strings of these runes, so every byte sequence is
// representable and no symbol is whitespace or a control character.
//
// The order of the reference dict's values, which is also the order of the
// first 256 vocabulary entries, is the printable bytes in increasing order
// followed by the others in increasing order; see [BytesToUnicodeOrder].
func BytesToUnicode() [256]rune { return byteToRune }

// BytesToUnicodeOrder returns the bytes in the insertion order of the
// reference's bytes_to_unicode() dict: the printable bytes, then the others.
// The i-th entry's rune is token i of CLIP's (and GPT-2's) base vocabulary.
func BytesToUnicodeOrder() [256]byte {
	var order [256]byte
	i := 0
	for b := 0; b < 256; b++ {
		if printableByte(byte(b)) {
			order[i] = byte(b)
			i++
		}
	}
	for b := 0; b < 256; b++ {
		if !printableByte(byte(b)) {
			order[i] = byte(b)
			i++
		}
	}
	return order
}

// EncodeBytes maps each byte of s (usually UTF-8 text) to its
// [BytesToUnicode] rune: ”.join(byte_encoder[b] for b in s.encode('utf-8')).
func EncodeBytes(s string) string {
	var sb strings.Builder
	sb.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		sb.WriteRune(byteToRune[s[i]])
	}
	return sb.String()
}

// DecodeBytes inverts [EncodeBytes]: it maps each rune of s back to its byte.
// A rune outside the table is an error.
func DecodeBytes(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i, r := range s {
		b, ok := runeToByte[r]
		if !ok {
			return nil, fmt.Errorf("byte-level decode: %q at offset %d is not a byte symbol", r, i)
		}
		out = append(out, b)
	}
	return out, nil
}
