package tokenizers

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// llama2.c's fixed ids: run.c hard-codes them (BOS 1, EOS 2, and the 256
// byte tokens from id 3 on, after <unk>, <s> and </s>).
const (
	llama2cUnk        = 0
	llama2cBOS        = 1
	llama2cEOS        = 2
	llama2cByteOffset = 3
)

// maxLlama2CToken bounds one token's length in a tokenizer.bin, so a corrupt
// length cannot make the reader allocate gigabytes.
const maxLlama2CToken = 1 << 16

// Llama2C is the tokenizer of Karpathy's llama2.c (run.c), read from the
// tokenizer.bin that its tokenizer.py exports from a SentencePiece model:
// an int32 max_token_length, then per token a float32 score, an int32 byte
// length and the bytes (SentencePiece's "▁" written as a space, BOS and EOS
// as "\n<s>\n" and "\n</s>\n"). The file does not store the vocabulary
// size; every token up to the end of the file is read.
//
// Encoding is run.c's algorithm, which the tests check against
// SentencePiece itself on tok512: a space is put first (the dummy prefix)
// unless the text is empty; each UTF-8 code point is looked up as a piece,
// and one that is not in the vocabulary becomes its bytes' tokens (byte
// fallback, id = byte + 3); then, while some adjacent pair concatenates to a
// piece of the vocabulary, the pair whose piece has the highest score (the
// leftmost on ties) is merged. Where run.c has undefined behaviour this
// implementation chooses: a NUL byte is encoded as its byte token (C stops
// the string there), a vocabulary without " " gets the dummy prefix as the
// space's byte token, byte fallback into a vocabulary without byte tokens
// gives <unk> (0), and among duplicate pieces the lowest id is used (C's
// bsearch returns any).
type Llama2C struct {
	pieces []string
	scores []float32
	lookup map[string]int
	// byteTokens is true when ids 3..258 are <0x00>..<0xFF>.
	byteTokens bool
	maxLen     int
}

// LoadLlama2C reads a llama2.c tokenizer.bin.
func LoadLlama2C(path string) (*Llama2C, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("llama2.c tokenizer: %w", err)
	}
	defer f.Close()
	t, err := ReadLlama2C(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("llama2.c tokenizer %s: %w", path, err)
	}
	return t, nil
}

// ReadLlama2C reads a llama2.c tokenizer from r, up to its end.
func ReadLlama2C(r io.Reader) (*Llama2C, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("file too short for the int32 max_token_length header: %w", err)
	}
	maxLen := int32(binary.LittleEndian.Uint32(hdr[:]))
	if maxLen < 0 || maxLen > maxLlama2CToken {
		return nil, fmt.Errorf("max_token_length %d is out of range [0, %d]: not a llama2.c tokenizer", maxLen, maxLlama2CToken)
	}
	t := &Llama2C{maxLen: int(maxLen), lookup: make(map[string]int)}
	var rec [8]byte
	for i := 0; ; i++ {
		n, err := io.ReadFull(r, rec[:])
		if err == io.EOF && n == 0 {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("token %d: truncated score/length record (%d of 8 bytes)", i, n)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(rec[:4]))
		l := int32(binary.LittleEndian.Uint32(rec[4:]))
		if l < 0 || l > maxLen {
			return nil, fmt.Errorf("token %d: length %d is outside [0, max_token_length %d]", i, l, maxLen)
		}
		buf := make([]byte, l)
		if n, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("token %d: truncated text (%d of %d bytes)", i, n, l)
		}
		piece := string(buf)
		t.pieces = append(t.pieces, piece)
		t.scores = append(t.scores, score)
		if _, dup := t.lookup[piece]; !dup {
			t.lookup[piece] = i
		}
	}
	if len(t.pieces) <= llama2cEOS {
		return nil, fmt.Errorf("only %d tokens: a llama2.c vocabulary starts with <unk>, <s>, </s>", len(t.pieces))
	}
	t.byteTokens = len(t.pieces) >= llama2cByteOffset+256
	for b := 0; b < 256 && t.byteTokens; b++ {
		t.byteTokens = t.pieces[llama2cByteOffset+b] == fmt.Sprintf("<0x%02X>", b)
	}
	return t, nil
}

// VocabSize is the number of tokens in the file.
func (t *Llama2C) VocabSize() int { return len(t.pieces) }

// BOS is 1, as in run.c.
func (t *Llama2C) BOS() int { return llama2cBOS }

// EOS is 2, as in run.c.
func (t *Llama2C) EOS() int { return llama2cEOS }

// Piece returns the stored text of token id ("" when out of range).
func (t *Llama2C) Piece(id int) string {
	if id < 0 || id >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

// Score returns the merge score of token id (0 when out of range).
func (t *Llama2C) Score(id int) float32 {
	if id < 0 || id >= len(t.pieces) {
		return 0
	}
	return t.scores[id]
}

// MaxTokenLength is the header's max_token_length.
func (t *Llama2C) MaxTokenLength() int { return t.maxLen }

// ID returns the id of a piece, as stored (spaces, not "▁").
func (t *Llama2C) ID(piece string) (int, bool) {
	id, ok := t.lookup[piece]
	return id, ok
}

// byteToken is the id byte fallback gives byte b.
func (t *Llama2C) byteToken(b byte) int {
	if !t.byteTokens {
		return llama2cUnk
	}
	return int(b) + llama2cByteOffset
}

// Encode tokenizes text as run.c's encode does.
func (t *Llama2C) Encode(text string, bos, eos bool) []int {
	ids := make([]int, 0, len(text)+3)
	if bos {
		ids = append(ids, llama2cBOS)
	}
	if text != "" {
		if id, ok := t.lookup[" "]; ok {
			ids = append(ids, id)
		} else {
			ids = append(ids, t.byteToken(' '))
		}
	}
	// One token per code point: a byte that is not a continuation byte
	// starts a new one, and up to three continuation bytes join it (run.c
	// stops at four bytes; stray continuation bytes stand alone).
	for i := 0; i < len(text); {
		j := i + 1
		for j < len(text) && text[j]&0xC0 == 0x80 && j-i < 4 {
			j++
		}
		if id, ok := t.lookup[text[i:j]]; ok {
			ids = append(ids, id)
		} else {
			for k := i; k < j; k++ {
				ids = append(ids, t.byteToken(text[k]))
			}
		}
		i = j
	}
	// run.c merges over BOS too; no piece starts with BOS's "\n<s>\n" in
	// real vocabularies, but an odd one is encoded as run.c would.
	ids = t.merge(ids)
	if eos {
		ids = append(ids, llama2cEOS)
	}
	return ids
}

// merge repeatedly merges the adjacent pair whose concatenation is the
// highest-scoring piece (the leftmost among equal scores), as run.c does.
// run.c rescans every pair after each merge; here each pair's candidate is
// kept and only the two pairs next to a merge are recomputed, which picks
// the same pairs in the same order.
func (t *Llama2C) merge(ids []int) []int {
	if len(ids) < 2 {
		return ids
	}
	// cand[i] is the piece id that ids[i]+ids[i+1] forms, or -1.
	cand := make([]int, len(ids)-1)
	pair := func(i int) int {
		if id, ok := t.lookup[t.pieces[ids[i]]+t.pieces[ids[i+1]]]; ok {
			return id
		}
		return -1
	}
	for i := range cand {
		cand[i] = pair(i)
	}
	for {
		best, bestScore := -1, float32(-1e10)
		for i, id := range cand {
			if id >= 0 && t.scores[id] > bestScore {
				best, bestScore = i, t.scores[id]
			}
		}
		if best < 0 {
			return ids
		}
		ids[best] = cand[best]
		ids = append(ids[:best+1], ids[best+2:]...)
		cand = append(cand[:best], cand[best+1:]...)
		if best > 0 {
			cand[best-1] = pair(best - 1)
		}
		if best < len(cand) {
			cand[best] = pair(best)
		}
	}
}

// DecodeToken is run.c's decode: the piece of id, without its leading space
// after BOS, and a byte token's byte.
func (t *Llama2C) DecodeToken(prev, id int) string {
	if id < 0 || id >= len(t.pieces) {
		return ""
	}
	piece := t.pieces[id]
	if prev == llama2cBOS && len(piece) > 0 && piece[0] == ' ' {
		piece = piece[1:]
	}
	if b, ok := parseByteToken(piece); ok {
		return string([]byte{b})
	}
	return piece
}

// Decode returns the text of ids: BOS and EOS give nothing, the rest is
// joined with DecodeToken, starting as if after BOS.
func (t *Llama2C) Decode(ids []int) string {
	return decodeAll(t, ids, func(id int) bool { return id == llama2cBOS || id == llama2cEOS })
}

// parseByteToken parses a byte piece, "<0xXX>" with two hex digits
// (either case, as C's %X reads them).
func parseByteToken(piece string) (byte, bool) {
	if len(piece) != 6 || piece[:3] != "<0x" || piece[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexDigit(piece[3])
	lo, ok2 := hexDigit(piece[4])
	if !ok1 || !ok2 {
		return 0, false
	}
	return hi<<4 | lo, true
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
