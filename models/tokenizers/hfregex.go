package tokenizers

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// GPT2Pattern is the pre-tokenization pattern of GPT-2, which the Hugging
// Face ByteLevel pre-tokenizer applies when its use_regex is set.
const GPT2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// wsLookahead is the one lookaround the pre-tokenization patterns of GPT-2,
// LLaMA-3 and Qwen2 use: a whitespace run that leaves its last character to
// the next piece when a non-space follows.
const wsLookahead = `\s+(?!\S)|\s+`

// unicodeSpace is Unicode's White_Space set as the body of a character
// class: what \s means in Oniguruma (Hugging Face tokenizers) and Python's
// regex module, where Go's \s is ASCII only.
const unicodeSpace = `\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`

// splitRegex is a pre-tokenization pattern compiled for Go's regexp.
type splitRegex struct {
	re *regexp.Regexp
	// ws is the capture group that stands for `\s+(?!\S)|\s+`, or 0.
	ws int
}

// compileSplitRegex translates a pattern written for Oniguruma into Go's
// RE2 syntax: \s and \S get their Unicode meaning, \d becomes \p{Nd}, and
// the whitespace idiom `\s+(?!\S)|\s+` becomes a capture group whose match
// is shortened by its last character when a non-space follows (see split),
// which is what the lookahead does. Any other lookaround, atomic group,
// possessive quantifier, backreference, \w, \b or \G is an error.
func compileSplitRegex(pat string) (*splitRegex, error) {
	ws := strings.Count(pat, wsLookahead)
	if ws > 1 {
		return nil, fmt.Errorf("pattern %q: the whitespace lookahead appears more than once", pat)
	}
	before, after, _ := strings.Cut(pat, wsLookahead)
	var sb strings.Builder
	if err := translateRegex(&sb, before); err != nil {
		return nil, fmt.Errorf("pattern %q: %w", pat, err)
	}
	if ws == 1 {
		sb.WriteString(`(` + `[` + unicodeSpace + `]+)`)
		if err := translateRegex(&sb, after); err != nil {
			return nil, fmt.Errorf("pattern %q: %w", pat, err)
		}
	}
	re, err := regexp.Compile(sb.String())
	if err != nil {
		return nil, fmt.Errorf("pattern %q is not supported by Go's regexp: %w", pat, err)
	}
	r := &splitRegex{re: re}
	if ws == 1 {
		// The group is the first one opened after the translated prefix.
		r.ws = countGroups(before) + 1
	}
	return r, nil
}

// translateRegex writes pat with the Unicode meaning of \s, \S and \d.
func translateRegex(sb *strings.Builder, pat string) error {
	inClass := false
	quant := false // the last thing written was a quantifier
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		wasQuant := quant
		quant = false
		switch {
		case c == '\\' && i+1 < len(pat):
			e := pat[i+1]
			i++
			switch e {
			case 's':
				if inClass {
					sb.WriteString(unicodeSpace)
				} else {
					sb.WriteString(`[` + unicodeSpace + `]`)
				}
			case 'S':
				if inClass {
					return fmt.Errorf(`\S inside a character class is not supported`)
				}
				sb.WriteString(`[^` + unicodeSpace + `]`)
			case 'd':
				sb.WriteString(`\p{Nd}`)
			case 'D', 'w', 'W', 'b', 'B', 'G', 'K', 'k', 'h', 'H', 'R', 'X':
				return fmt.Errorf(`\%c is not supported`, e)
			case 'p', 'P':
				// A property: copy \p{...} whole, so its brace is no quantifier.
				sb.WriteByte('\\')
				sb.WriteByte(e)
				if i+1 < len(pat) && pat[i+1] == '{' {
					end := strings.IndexByte(pat[i+1:], '}')
					if end < 0 {
						return fmt.Errorf("unterminated \\%c{", e)
					}
					sb.WriteString(pat[i+1 : i+2+end])
					i += 1 + end
				}
			default:
				if '1' <= e && e <= '9' {
					return fmt.Errorf("backreferences are not supported")
				}
				sb.WriteByte('\\')
				sb.WriteByte(e)
			}
			continue
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
			sb.WriteByte(c)
			// A ']' right after '[' or '[^' is a literal.
			if i+1 < len(pat) && pat[i+1] == '^' {
				sb.WriteByte('^')
				i++
			}
			if i+1 < len(pat) && pat[i+1] == ']' {
				sb.WriteByte(']')
				i++
			}
			continue
		case c == '(' && strings.HasPrefix(pat[i:], "(?") && len(pat) > i+2:
			switch pat[i+2] {
			case '=', '!', '>':
				return fmt.Errorf("lookarounds and atomic groups are not supported (at %q)", pat[i:])
			case '<':
				if i+3 < len(pat) && (pat[i+3] == '=' || pat[i+3] == '!') {
					return fmt.Errorf("lookbehinds are not supported (at %q)", pat[i:])
				}
			}
			sb.WriteString("(?")
			i++
			continue
		case c == '+' && wasQuant:
			return fmt.Errorf("possessive quantifiers are not supported (at %q)", pat[max(i-1, 0):])
		case c == '+' || c == '*' || c == '}':
			quant = true
		case c == '?':
			quant = !wasQuant // "+?" is lazy, not a new quantifier
		}
		sb.WriteByte(c)
	}
	return nil
}

// countGroups counts the capturing groups pat opens.
func countGroups(pat string) int {
	n, inClass := 0, false
	for i := 0; i < len(pat); i++ {
		switch c := pat[i]; {
		case c == '\\':
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
			if i+1 < len(pat) && pat[i+1] == '^' {
				i++
			}
			if i+1 < len(pat) && pat[i+1] == ']' {
				i++
			}
		case c == '(':
			if i+1 >= len(pat) || pat[i+1] != '?' {
				n++
			} else if strings.HasPrefix(pat[i:], "(?P<") || (strings.HasPrefix(pat[i:], "(?<") && i+3 < len(pat) && pat[i+3] != '=' && pat[i+3] != '!') {
				n++ // named group
			}
		}
	}
	return n
}

// split cuts s into the pattern's matches and the text between them (the
// "Isolated" behaviour of Hugging Face's Split), in order, dropping nothing.
// Empty matches cut nothing.
func (r *splitRegex) split(s string, fn func(piece string)) {
	gap := 0 // start of the text not yet given to fn
	for p := 0; p < len(s); {
		loc := r.re.FindStringSubmatchIndex(s[p:])
		if loc == nil {
			break
		}
		start, end := p+loc[0], p+loc[1]
		if end == start {
			_, size := utf8.DecodeRuneInString(s[start:])
			p = start + size
			continue
		}
		if r.ws > 0 && loc[2*r.ws] >= 0 && end < len(s) {
			// \s+(?!\S): a non-space follows, so the run leaves it its last
			// character, unless the run is one character long (then the
			// plain \s+ alternative takes it).
			_, size := utf8.DecodeLastRuneInString(s[start:end])
			if end-size > start {
				end -= size
			}
		}
		if start > gap {
			fn(s[gap:start])
		}
		fn(s[start:end])
		gap, p = end, end
	}
	if gap < len(s) {
		fn(s[gap:])
	}
}
