package memoir

import (
	"slices"
	"testing"
)

func TestDefaults(t *testing.T) {
	for _, tc := range []struct{ f, want int }{{14336, 4096}, {172, 49}, {11008, 3145}, {3, 1}, {1, 1}} {
		if got := DefaultTopK(tc.f); got != tc.want {
			t.Errorf("DefaultTopK(%d) = %d, want %d", tc.f, got, tc.want)
		}
	}
	for _, tc := range []struct{ n, want int }{{32, 27}, {5, 4}, {28, 24}, {2, 1}, {1, 0}} {
		if got := DefaultLayer(tc.n); got != tc.want {
			t.Errorf("DefaultLayer(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

// TestSplitMix64 checks the generator against the reference outputs of
// SplitMix64 from state 0 (Vigna's splitmix64.c).
func TestSplitMix64(t *testing.T) {
	g := SplitMix64{}
	for i, want := range []uint64{0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f} {
		if got := g.Next(); got != want {
			t.Fatalf("output %d: %#x, want %#x", i, got, want)
		}
	}
}

func TestPermutation(t *testing.T) {
	// By hand from the outputs above: i=3: 0x…af mod 4 = 3 (no swap);
	// i=2: 0x6e78…f4 mod 3 = 0 (its hex digits sum to 135), swap 2↔0;
	// i=1: 0x06c4…4f mod 2 = 1 (no swap).
	if got := Permutation(4, 0); !slices.Equal(got, []int{2, 1, 0, 3}) {
		t.Errorf("Permutation(4, 0) = %v, want [2 1 0 3]", got)
	}
	p := Permutation(172, 42)
	if !slices.Equal(p, Permutation(172, 42)) {
		t.Error("the permutation of a seed changes")
	}
	if slices.Equal(p, Permutation(172, 43)) {
		t.Error("seeds 42 and 43 give the same permutation")
	}
	s := slices.Clone(p)
	slices.Sort(s)
	for i, v := range s {
		if v != i {
			t.Fatalf("Permutation(172, 42) is not a permutation: %v", p)
		}
	}
	if _, err := NewTopHash(10, 0, 42); err == nil {
		t.Error("k = 0 accepted")
	}
	if err := (&TopHash{K: 1, Perm: []int{0, 0}}).Check(); err == nil {
		t.Error("a repeated index accepted as a permutation")
	}
}

func TestTopHash(t *testing.T) {
	v := []float32{0.1, -3, 2, 0, -2.5, 1}
	if got := TopK(v, 3); !slices.Equal(got, []int{1, 4, 2}) {
		t.Errorf("TopK = %v, want [1 4 2] (|−3| > |−2.5| > |2|)", got)
	}
	if got := TopK([]float32{1, -1, 1}, 2); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("ties: TopK = %v, want [0 1] (lower index first)", got)
	}
	h := &TopHash{K: 3, Perm: []int{5, 3, 0, 1, 2, 4}}
	// π[1] = 3, π[4] = 2, π[2] = 0.
	if got := h.Indices(v); !slices.Equal(got, []int{3, 2, 0}) {
		t.Errorf("Indices = %v, want [3 2 0]", got)
	}
	m := h.Mask(v)
	if len(m) != 1 || m[0] != 0b00001101 || m.Count() != 3 || !slices.Equal(m.Positions(), []int{0, 2, 3}) {
		t.Errorf("mask %08b (%d positions %v), want 00001101", m, m.Count(), m.Positions())
	}
	if f := m.Floats(6); !slices.Equal(f, []float32{1, 0, 1, 1, 0, 0}) {
		t.Errorf("Floats = %v", f)
	}
	// Bit layout across bytes: position 9 of 10 is bit 1 of byte 1.
	if m := MaskOf(10, []int{0, 9}); !slices.Equal([]byte(m), []byte{1, 2}) || MaskBytes(10) != 2 {
		t.Errorf("MaskOf(10, {0, 9}) = %v, want [1 2]", m)
	}
}

func TestOverlap(t *testing.T) {
	a := MaskOf(12, []int{0, 1, 2, 3})
	b := MaskOf(12, []int{2, 3, 4, 5})
	c := MaskOf(12, []int{1, 2, 3, 11})
	d := MaskOf(12, []int{8, 9, 10, 11})
	if a.Common(b) != 2 || a.Common(c) != 3 || a.Common(d) != 0 || c.Common(d) != 1 {
		t.Errorf("common counts %d %d %d %d, want 2 3 0 1", a.Common(b), a.Common(c), a.Common(d), c.Common(d))
	}
	// k = 4: overlaps 2/4, 3/4, 0/4: the second mask wins and passes τ 0.4.
	r := BestMatch(a, []Mask{b, c, d}, 4, 0.4)
	if r.Index != 1 || r.Overlap != 0.75 || !r.Active {
		t.Errorf("BestMatch = %+v, want index 1, overlap 0.75, active", r)
	}
	// Only d: 0/4 < τ.
	if r := BestMatch(a, []Mask{d}, 4, 0.4); r.Index != 0 || r.Overlap != 0 || r.Active {
		t.Errorf("BestMatch = %+v, want index 0, overlap 0, inactive", r)
	}
	// Equal overlaps: the first wins; τ is inclusive.
	if r := BestMatch(a, []Mask{b, b}, 4, 0.5); r.Index != 0 || !r.Active {
		t.Errorf("BestMatch = %+v, want the first of equals, active at overlap = τ", r)
	}
	if r := BestMatch(a, nil, 4, 0.4); r.Index != -1 || r.Active {
		t.Errorf("BestMatch with no stored masks = %+v", r)
	}
}
