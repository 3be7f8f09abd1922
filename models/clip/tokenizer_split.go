package clip

import (
	"unicode"
	"unicode/utf8"
)

// Pre-tokenization: the pieces the reference finds with
//
//	re.findall(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
//	           text, flags=re.IGNORECASE)   # the regex module
//
// written as a scanner (about five times faster than Go's regexp). At each
// position the alternatives are tried in order, the first that matches is
// taken and scanning goes on after it; a rune that no alternative matches
// (whitespace) is skipped. As in the regex module:
//   - IGNORECASE applies simple case folding to the literals, so "'ſ"
//     (long s) is a contraction and "<|ſtartoftext|>" the special token's
//     text; it does not widen \p{L} or \p{N};
//   - \s is Unicode White_Space (unicode.IsSpace);
//   - U+0345 (COMBINING GREEK YPOGEGRAMMENI, which folds to 'ι') matches
//     no alternative under IGNORECASE, so it is skipped like whitespace.
//
// The scanner was checked code point by code point against the regex module
// (2026.5.9); the test file keeps the pattern as a Go regexp to check it.

// contractions are the pattern's apostrophe alternatives, in its order.
var contractions = [...]string{"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}

// splitWords calls fn with each piece of text, in order.
func splitWords(text string, fn func(word string)) {
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		n := matchWord(text[i:], r, size)
		if n == 0 {
			i += size
			continue
		}
		fn(text[i : i+n])
		i += n
	}
}

// matchWord returns the length of the piece that starts s (whose first rune
// is r, size bytes long), or 0 when no alternative matches there.
func matchWord(s string, r rune, size int) int {
	switch r {
	case '<':
		if n := matchFold(s, StartOfText); n > 0 {
			return n
		}
		if n := matchFold(s, EndOfText); n > 0 {
			return n
		}
	case '\'':
		for _, c := range contractions {
			if n := matchFold(s, c); n > 0 {
				return n
			}
		}
	}
	switch {
	case unicode.IsLetter(r): // [\p{L}]+
		n := size
		for n < len(s) {
			r, size := utf8.DecodeRuneInString(s[n:])
			if !unicode.IsLetter(r) {
				break
			}
			n += size
		}
		return n
	case unicode.IsNumber(r): // [\p{N}]: one rune
		return size
	case isOtherRune(r): // [^\s\p{L}\p{N}]+
		n := size
		for n < len(s) {
			r, size := utf8.DecodeRuneInString(s[n:])
			if !isOtherRune(r) {
				break
			}
			n += size
		}
		return n
	}
	return 0
}

// isOtherRune is the last alternative's class, [^\s\p{L}\p{N}] under
// IGNORECASE.
func isOtherRune(r rune) bool {
	return !unicode.IsSpace(r) && !unicode.IsLetter(r) && !unicode.IsNumber(r) && r != 0x345
}

// matchFold returns the byte length of the prefix of s that equals the ASCII
// literal lit under simple case folding, or 0.
func matchFold(s, lit string) int {
	n := 0
	for j := 0; j < len(lit); j++ {
		if n >= len(s) {
			return 0
		}
		r, size := utf8.DecodeRuneInString(s[n:])
		if !foldsTo(r, rune(lit[j])) {
			return 0
		}
		n += size
	}
	return n
}

// foldsTo reports whether r is c or in c's simple case folding orbit.
func foldsTo(r, c rune) bool {
	if r == c {
		return true
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f == c {
			return true
		}
	}
	return false
}
