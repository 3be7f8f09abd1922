package clip

import (
	"html"
	"strings"
	"unicode"
	"unicode/utf8"
)

// CleanText normalises text as the reference tokenizer does before
// pre-tokenization: whitespace_clean(basic_clean(text)).lower(), where
// basic_clean is ftfy.fix_text, html.unescape twice and str.strip.
//
//   - ftfy.fix_text is skipped: there is no Go port of ftfy. Text it leaves
//     alone (plain, NFC-normalised text without the characters below) gets
//     the reference's ids. With ftfy 6's defaults the reference would also
//     straighten curly quotes (’ ‘ “ ” become ' and ", so "it’s" splits
//     differently), expand Latin ligatures (ﬁ -> fi), narrow fullwidth
//     letters and digits, repair mojibake ("cafÃ©" -> "café"), map C1
//     controls to Windows-1252, remove terminal escapes and some control
//     and format characters (such as U+FEFF), unescape HTML once more when
//     the text has no '<', and normalise to NFC. Callers that need those
//     can normalise the text before encoding it.
//   - html.unescape is CPython's (3.11) applied twice: named references from
//     the HTML5 table (with the legacy names that need no semicolon and the
//     longest-prefix rule), decimal and hex references, the numeric
//     references that HTML5 remaps (&#128; is '€', &#0; is U+FFFD) and the
//     code points it drops (&#1;, &#127;, noncharacters, ...).
//   - str.strip removes Python whitespace (str.isspace: Unicode White_Space
//     plus U+001C..U+001F) at both ends; whitespace_clean's \s+ (the regex
//     module's \s, i.e. White_Space) collapses every run to one space, and
//     the result is stripped again.
//   - str.lower is Python's full lowercase mapping: unicode.ToLower except
//     that 'İ' (U+0130) becomes "i̇" (i + U+0307) and a capital sigma becomes
//     a final sigma 'ς' where Unicode's Final_Sigma condition holds.
//
// Bytes that are not valid UTF-8 are replaced by U+FFFD first, one per byte
// (a Python str cannot hold them). Character properties come from Go's
// unicode tables (Unicode 15.0); CPython 3.11 and the regex module use
// their own Unicode versions, which differ only for recently assigned
// characters.
func CleanText(text string) string {
	if !utf8.ValidString(text) {
		text = replaceInvalidUTF8(text)
	}
	text = htmlUnescape(htmlUnescape(text))
	text = strings.TrimFunc(text, isPySpace)
	text = collapseWhitespace(text)
	text = strings.TrimFunc(text, isPySpace)
	return pyLower(text)
}

// replaceInvalidUTF8 replaces every byte that is not part of a valid UTF-8
// sequence with U+FFFD.
func replaceInvalidUTF8(s string) string {
	var sb strings.Builder
	sb.Grow(len(s) + 8)
	for _, r := range s { // an invalid byte ranges as RuneError, width 1
		sb.WriteRune(r)
	}
	return sb.String()
}

// isPySpace is Python's str.isspace for one character: Unicode White_Space
// (which is what unicode.IsSpace tests) and the information separators
// U+001C..U+001F.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || (0x1C <= r && r <= 0x1F)
}

// collapseWhitespace is re.sub(r'\s+', ' ', text) with the regex module's
// \s, which is Unicode White_Space (not U+001C..U+001F).
func collapseWhitespace(s string) string {
	// Fast path: nothing to do unless there is a White_Space rune other than
	// a lone ' '.
	clean := true
	prevSpace := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			if r != ' ' || prevSpace {
				clean = false
				break
			}
			prevSpace = true
		} else {
			prevSpace = false
		}
	}
	if clean {
		return s
	}
	var sb strings.Builder
	sb.Grow(len(s))
	inSpace := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			if !inSpace {
				sb.WriteByte(' ')
			}
			inSpace = true
			continue
		}
		inSpace = false
		sb.WriteRune(r)
	}
	return sb.String()
}

// pyLower is Python's str.lower(): the full lowercase mapping, which differs
// from per-rune unicode.ToLower for U+0130 and for capital sigma.
func pyLower(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	rs := []rune(s)
	var sb strings.Builder
	sb.Grow(len(s) + 2)
	for i, r := range rs {
		switch {
		case r == 0x130: // LATIN CAPITAL LETTER I WITH DOT ABOVE
			sb.WriteString("i\u0307")
			continue
		case r == 0x3A3: // GREEK CAPITAL LETTER SIGMA
			if finalSigma(rs, i) {
				r = 0x3C2
			} else {
				r = 0x3C3
			}
		default:
			r = unicode.ToLower(r)
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// finalSigma reports whether the capital sigma at rs[i] is in the
// Final_Sigma context, as CPython's handle_capital_sigma decides it:
// preceded by a cased letter (skipping case-ignorable characters) and not
// followed by one (skipping case-ignorable characters).
func finalSigma(rs []rune, i int) bool {
	j := i - 1
	for j >= 0 && isCaseIgnorable(rs[j]) {
		j--
	}
	if j < 0 || !isCased(rs[j]) {
		return false
	}
	j = i + 1
	for j < len(rs) && isCaseIgnorable(rs[j]) {
		j++
	}
	return j == len(rs) || !isCased(rs[j])
}

// isCased is Unicode's derived Cased property: Lowercase, Uppercase or
// titlecase letters.
func isCased(r rune) bool {
	return unicode.In(r, unicode.Lu, unicode.Ll, unicode.Lt, unicode.Other_Lowercase, unicode.Other_Uppercase)
}

// isCaseIgnorable is Unicode's derived Case_Ignorable property: Mn, Me, Cf,
// Lm, Sk, and the Word_Break classes MidLetter, MidNumLet and Single_Quote.
func isCaseIgnorable(r rune) bool {
	switch r {
	case 0x27, 0x2E, 0x3A, 0xB7, 0x387, 0x55F, 0x5F4, 0x2018, 0x2019, 0x2024, 0x2027,
		0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}

// htmlUnescape is CPython's html.unescape. Named references are resolved by
// html.UnescapeString, which has the same HTML5 table and prefix rule, on
// exactly the span Python's pattern matches; numeric references are decoded
// here because Python's handling of out-of-range and invalid code points
// differs from Go's.
func htmlUnescape(s string) string {
	i := strings.IndexByte(s, '&')
	if i < 0 {
		return s
	}
	var sb strings.Builder
	sb.Grow(len(s))
	for i >= 0 {
		sb.WriteString(s[:i])
		s = s[i:] // s[0] == '&'
		if repl, n, ok := charRef(s); ok {
			sb.WriteString(repl)
			s = s[n:]
		} else {
			sb.WriteByte('&')
			s = s[1:]
		}
		i = strings.IndexByte(s, '&')
	}
	sb.WriteString(s)
	return sb.String()
}

// charRef matches Python's pattern
//
//	&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
//
// at the start of s and returns the replacement and the matched length.
func charRef(s string) (string, int, bool) {
	if len(s) < 2 {
		return "", 0, false
	}
	if s[1] == '#' {
		i, base := 2, 10
		if len(s) > 2 && isDigit(s[2]) {
			// decimal
		} else if len(s) > 3 && (s[2] == 'x' || s[2] == 'X') && isHexDigit(s[3]) {
			i, base = 3, 16
		} else {
			return "", 0, false
		}
		const big = 0x110000 // any larger number behaves the same
		num := 0
		for i < len(s) && ((base == 10 && isDigit(s[i])) || (base == 16 && isHexDigit(s[i]))) {
			num = num*base + hexValue(s[i])
			if num > big {
				num = big
			}
			i++
		}
		if i < len(s) && s[i] == ';' {
			i++
		}
		return numericCharRef(num), i, true
	}
	// Named reference: 1 to 32 characters other than \t \n \f space < & # ;
	i, n := 1, 0
	for i < len(s) && n < 32 {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\t' || r == '\n' || r == '\f' || r == ' ' || r == '<' || r == '&' || r == '#' || r == ';' {
			break
		}
		i += size
		n++
	}
	if n == 0 {
		return "", 0, false
	}
	if i < len(s) && s[i] == ';' {
		i++
	}
	// Python: the full name, else the longest prefix (of at least two
	// characters) that is a name, else the text unchanged. Go's
	// UnescapeString implements the same rule over the same table (less two
	// names it leaves out), and the span contains no other '&'.
	switch s[:i] {
	case "&nLt;":
		return "\u226A\u20D2", i, true
	case "&nGt;":
		return "\u226B\u20D2", i, true
	}
	return html.UnescapeString(s[:i]), i, true
}

func isDigit(c byte) bool    { return '0' <= c && c <= '9' }
func isHexDigit(c byte) bool { return isDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F') }

func hexValue(c byte) int {
	switch {
	case isDigit(c):
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	default:
		return int(c-'A') + 10
	}
}

// invalidCharRefs is CPython's html._invalid_charrefs for 0x80..0x9F: the
// Windows-1252 reading HTML5 gives these numeric references.
var invalidCharRefs = [32]rune{
	0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D, 0x017D, 0x8F,
	0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
}

// numericCharRef is the numeric branch of CPython's _replace_charref.
func numericCharRef(num int) string {
	switch {
	case num == 0:
		return "\uFFFD"
	case num == 0x0D:
		return "\r"
	case 0x80 <= num && num <= 0x9F:
		return string(invalidCharRefs[num-0x80])
	case (0xD800 <= num && num <= 0xDFFF) || num > 0x10FFFF:
		return "\uFFFD"
	case (0x01 <= num && num <= 0x08) || num == 0x0B || (0x0E <= num && num <= 0x1F) ||
		num == 0x7F || (0xFDD0 <= num && num <= 0xFDEF) || num&0xFFFE == 0xFFFE:
		return "" // _invalid_codepoints
	}
	return string(rune(num))
}
