package tokenizers

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// TrainLlama2C learns a byte-pair-encoding vocabulary of at most vocabSize
// tokens from texts and returns it as a llama2.c tokenizer (what
// tokenizer.py exports from a SentencePiece BPE model), so that models
// trained from scratch ship a tokenizer.bin that [Load], run.c and
// 'editkit generate' read.
//
// The training follows SentencePiece's BPE trainer in its llama2.c
// settings, simplified: each text gets the dummy-prefix space and is cut
// into units that no piece crosses (a maximal run of letters, of digits or
// of one other non-space character, a space joining the unit after it, as
// SentencePiece's split_by_whitespace and split_by_unicode_script keep
// pieces within a word and a script); the initial pieces are the
// characters seen; then, repeatedly, the most frequent adjacent pair of
// pieces (counted over the units, ties to the smaller concatenation) is
// merged into a new piece, until the vocabulary is full or no pair occurs
// twice. The vocabulary is llama2.c's layout: <unk>, <s>, </s>, the 256
// byte tokens <0x00>..<0xFF> (byte fallback for characters never seen),
// the merged pieces in merge order with scores 0, −1, −2, ... (run.c's
// encoder applies the highest score first, i.e. the merges in the order
// they were learned), then the single characters, scored below every merge.
// vocabSize counts all of them and must leave room for the 259 fixed tokens
// and the characters. The result depends on the arguments only (ties are
// broken by the pieces' text), so a seeded corpus gives the same bytes every
// time.
//
// whole lists words that must become one token after a space (" "+w), as
// SentencePiece's user_defined_symbols are kept whole: while any of them is
// still in pieces, pairs inside them outrank every other pair (their units
// count more than all the texts together), so the first merges build them
// from pieces they share; the error says when the vocabulary is too small
// for that.
func TrainLlama2C(texts []string, vocabSize int, whole ...string) (*Llama2C, error) {
	units := map[string]int{}
	chars := map[string]int{}
	total := 0
	for _, text := range texts {
		if text == "" {
			continue
		}
		if !utf8.ValidString(text) {
			return nil, errors.New("tokenizer training: a text is not valid UTF-8")
		}
		for _, u := range bpeUnits(" " + text) {
			units[u]++
			total++
			for _, r := range u {
				chars[string(r)]++
			}
		}
	}
	for _, w := range whole {
		if w == "" || !utf8.ValidString(w) || strings.ContainsFunc(w, unicode.IsSpace) {
			return nil, fmt.Errorf("tokenizer training: whole word %q must be non-empty UTF-8 without spaces", w)
		}
		units[" "+w] += total + 1
		for _, r := range " " + w {
			chars[string(r)] = max(chars[string(r)], 1)
		}
	}
	fixed := llama2cByteOffset + 256
	budget := vocabSize - fixed - len(chars)
	if budget < 0 {
		return nil, fmt.Errorf("tokenizer training: a vocabulary of %d tokens has no room for the %d fixed tokens and the %d characters of the texts", vocabSize, fixed, len(chars))
	}
	// Each unit type as its current pieces, with its count.
	type word struct {
		pieces []string
		count  int
	}
	words := make([]word, 0, len(units))
	for _, u := range slices.Sorted(maps.Keys(units)) {
		var ps []string
		for _, r := range u {
			ps = append(ps, string(r))
		}
		words = append(words, word{ps, units[u]})
	}
	var merges []string
	for len(merges) < budget {
		counts := map[[2]string]int{}
		for _, w := range words {
			for i := 0; i+1 < len(w.pieces); i++ {
				counts[[2]string{w.pieces[i], w.pieces[i+1]}] += w.count
			}
		}
		var best [2]string
		bestN := 0
		for p, n := range counts {
			if n > bestN || n == bestN && pairLess(p, best) {
				best, bestN = p, n
			}
		}
		if bestN < 2 {
			break
		}
		merged := best[0] + best[1]
		merges = append(merges, merged)
		for wi := range words {
			ps := words[wi].pieces
			out := ps[:0]
			for i := 0; i < len(ps); i++ {
				if i+1 < len(ps) && ps[i] == best[0] && ps[i+1] == best[1] {
					out = append(out, merged)
					i++
				} else {
					out = append(out, ps[i])
				}
			}
			words[wi].pieces = out
		}
	}
	for _, w := range words {
		if w.count > total && len(w.pieces) > 1 {
			return nil, fmt.Errorf("tokenizer training: a vocabulary of %d tokens is too small to keep the whole words in one piece (%q is still %d after %d merges)", vocabSize, w.pieces, len(w.pieces), len(merges))
		}
	}
	t := &Llama2C{lookup: map[string]int{}}
	add := func(piece string, score float32) {
		if _, dup := t.lookup[piece]; !dup {
			t.lookup[piece] = len(t.pieces)
		}
		t.pieces = append(t.pieces, piece)
		t.scores = append(t.scores, score)
		t.maxLen = max(t.maxLen, len(piece))
	}
	add("<unk>", 0)
	add("\n<s>\n", 0)
	add("\n</s>\n", 0)
	for b := range 256 {
		add(fmt.Sprintf("<0x%02X>", b), 0)
	}
	t.byteTokens = true
	for i, m := range merges {
		add(m, float32(-i))
	}
	cs := slices.Sorted(maps.Keys(chars))
	slices.SortStableFunc(cs, func(a, b string) int { return chars[b] - chars[a] })
	for i, c := range cs {
		add(c, float32(-len(merges)-i))
	}
	return t, nil
}

// bpeUnits cuts text into the units BPE pieces stay within: maximal runs of
// letters (and marks), of digits, or single other characters, each with the
// spaces before it.
func bpeUnits(text string) []string {
	class := func(r rune) int {
		switch {
		case unicode.IsSpace(r):
			return 0
		case unicode.IsLetter(r) || unicode.IsMark(r):
			return 1
		case unicode.IsDigit(r):
			return 2
		}
		return 3
	}
	var units []string
	start, prev := 0, -1
	for i, r := range text {
		c := class(r)
		switch {
		case c == 0:
			if prev != 0 && i > start {
				units = append(units, text[start:i])
				start = i
			}
		case prev == 0 || prev == -1:
			// a space run joins the unit that follows it
		case c != prev || c == 3:
			units = append(units, text[start:i])
			start = i
		}
		prev = c
	}
	if start < len(text) {
		units = append(units, text[start:])
	}
	return units
}

// pairLess orders candidate merges of equal counts: by the merged piece,
// then by the left piece.
func pairLess(a, b [2]string) bool {
	if ca, cb := a[0]+a[1], b[0]+b[1]; ca != cb {
		return ca < cb
	}
	return a[0] < b[0]
}

// MarshalBinary writes the tokenizer in llama2.c's tokenizer.bin format
// (what ReadLlama2C reads): the int32 max_token_length, then per token its
// float32 score, int32 byte length and bytes, little-endian.
func (t *Llama2C) MarshalBinary() ([]byte, error) {
	var buf bytes.Buffer
	le := binary.LittleEndian
	buf.Write(le.AppendUint32(nil, uint32(t.maxLen)))
	for i, p := range t.pieces {
		if len(p) > t.maxLen {
			return nil, fmt.Errorf("llama2.c tokenizer: token %d is %d bytes, longer than max_token_length %d", i, len(p), t.maxLen)
		}
		buf.Write(le.AppendUint32(nil, math.Float32bits(t.scores[i])))
		buf.Write(le.AppendUint32(nil, uint32(len(p))))
		buf.WriteString(p)
	}
	return buf.Bytes(), nil
}

// Pieces returns the vocabulary's pieces in id order (spaces as stored).
func (t *Llama2C) Pieces() []string { return slices.Clone(t.pieces) }
