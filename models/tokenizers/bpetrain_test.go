package tokenizers

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestBPEUnits(t *testing.T) {
	for _, c := range []struct {
		text string
		want []string
	}{
		{" Alice Smith's birthplace.", []string{" Alice", " Smith", "'", "s", " birthplace", "."}},
		{" born on May 3, 1975.", []string{" born", " on", " May", " 3", ",", " 1975", "."}},
		{" Q: What?.", []string{" Q", ":", " What", "?", "."}},
		{" a  b", []string{" a", "  b"}},
		{" x2y", []string{" x", "2", "y"}},
	} {
		if got := bpeUnits(c.text); !slices.Equal(got, c.want) {
			t.Errorf("bpeUnits(%q) = %q, want %q", c.text, got, c.want)
		}
	}
}

// TestTrainLlama2C checks a vocabulary worked out by hand. Texts "aa ab"
// and "aa" give the units " aa" (twice) and " ab" (once); characters a (5),
// space (3), b (1). Pair counts: " "+"a" 3, "a"+"a" 2, "a"+"b" 1, so the
// first merge is " a"; then " a"+"a" 2 and " a"+"b" 1: " aa"; then no pair
// occurs twice. Layout: 0-2 specials, 3-258 bytes, 259 " a", 260 " aa",
// then the characters by count: 261 "a", 262 " ", 263 "b".
func TestTrainLlama2C(t *testing.T) {
	tok, err := TrainLlama2C([]string{"aa ab", "aa"}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	wantPieces := []string{" a", " aa", "a", " ", "b"}
	if got := tok.Pieces()[259:]; !slices.Equal(got, wantPieces) {
		t.Fatalf("learned pieces %q, want %q", got, wantPieces)
	}
	if tok.Score(259) <= tok.Score(260) || tok.Score(260) <= tok.Score(261) {
		t.Errorf("scores %v: merges must rank in learning order, above the characters", []float32{tok.Score(259), tok.Score(260), tok.Score(261)})
	}
	for _, c := range []struct {
		text string
		want []int
	}{
		{"aa ab", []int{1, 260, 259, 263}},
		{"ab", []int{1, 259, 263}},
		{"z", []int{1, 262, 'z' + 3}}, // unseen: byte fallback
	} {
		got := tok.Encode(c.text, true, false)
		if !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
		if d := tok.Decode(got); d != c.text {
			t.Errorf("Decode(Encode(%q)) = %q", c.text, d)
		}
	}

	// The vocabulary size bounds the merges.
	small, err := TrainLlama2C([]string{"aa ab", "aa"}, 259+3+1)
	if err != nil {
		t.Fatal(err)
	}
	if small.VocabSize() != 263 || small.Piece(259) != " a" {
		t.Errorf("a 263-token vocabulary: %d tokens, piece 259 %q", small.VocabSize(), small.Piece(259))
	}
	if _, err := TrainLlama2C([]string{"aa ab"}, 260); err == nil || !strings.Contains(err.Error(), "no room") {
		t.Errorf("too small a vocabulary: error %v", err)
	}
}

// TestLlama2CRoundTrip writes a trained vocabulary in tokenizer.bin format
// and reads it back: same pieces, scores and encodings, and the same bytes
// from a second training run.
func TestLlama2CRoundTrip(t *testing.T) {
	texts := []string{"Alice Smith was born in Lisbon.", "The hometown of Bob Jones is Oslo.", "Q: What is the birthplace of Alice Smith? A: Lisbon."}
	a, err := TrainLlama2C(texts, 400)
	if err != nil {
		t.Fatal(err)
	}
	data, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b, err := TrainLlama2C(texts, 400)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := b.MarshalBinary(); !bytes.Equal(data, again) {
		t.Fatal("two trainings on the same texts give different files")
	}
	r, err := ReadLlama2C(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Pieces(), a.Pieces()) || r.MaxTokenLength() != a.MaxTokenLength() || !r.byteTokens {
		t.Fatalf("read back %d pieces (max length %d, byte tokens %v), wrote %d (%d)", r.VocabSize(), r.MaxTokenLength(), r.byteTokens, a.VocabSize(), a.MaxTokenLength())
	}
	for i := range a.VocabSize() {
		if r.Score(i) != a.Score(i) {
			t.Fatalf("token %d: score %v read back as %v", i, a.Score(i), r.Score(i))
		}
	}
	for _, s := range texts {
		ids := r.Encode(s, true, true)
		if !slices.Equal(ids, a.Encode(s, true, true)) || r.Decode(ids) != s {
			t.Errorf("%q: encodings differ after the round trip", s)
		}
	}
	// Frequent words are single pieces.
	if id, ok := r.ID(" Alice"); !ok || !slices.Equal(r.Encode("Alice", false, false), []int{id}) {
		t.Errorf(`"Alice" is not one piece: %v`, r.Encode("Alice", false, false))
	}
}

// TestTrainLlama2CWhole: whole words become one token even when their
// pairs are rarer than the texts' others, and the vocabulary must have room
// for them. Texts "ab ab ab xy": pair " "+"a" 3, "a"+"b" 3, " "+"x" 1,
// "x"+"y" 1. With whole "xy", " xy" counts 4 + 1 more than the 4 units:
// " "+"x" and "x"+"y" 6 each, so the first merges are " x" (the smaller
// piece of the tie), then " xy"; then " a" (3, smaller than "ab"), then " ab".
func TestTrainLlama2CWhole(t *testing.T) {
	texts := []string{"ab ab ab xy"}
	tok, err := TrainLlama2C(texts, 259+5+4, "xy")
	if err != nil {
		t.Fatal(err)
	}
	wantPieces := []string{" x", " xy", " a", " ab"}
	if got := tok.Pieces()[259 : 259+4]; !slices.Equal(got, wantPieces) {
		t.Fatalf("merges %q, want %q", got, wantPieces)
	}
	if got := tok.Encode("xy ab", false, false); !slices.Equal(got, []int{260, 262}) {
		t.Errorf(`Encode("xy ab") = %v, want [260 262]`, got)
	}
	// Two merges: " xy" fits, " ab" does not (and need not).
	if _, err := TrainLlama2C(texts, 259+5+2, "xy"); err != nil {
		t.Error(err)
	}
	if _, err := TrainLlama2C(texts, 259+5+1, "xy"); err == nil || !strings.Contains(err.Error(), "too small to keep the whole words") {
		t.Errorf("no room for the whole word: error %v", err)
	}
}
