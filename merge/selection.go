package merge

import "math"

// Exact order statistics of |x| by two-level radix selection over float32
// bit patterns: for non-negative floats the bit pattern orders like the
// value, so a histogram of the high 16 bits finds the bin holding the k-th
// smallest value and a histogram of the low 16 bits inside that bin finds the
// value itself. Each level is one streaming pass with a fixed-size histogram,
// which is what lets TIES take its whole-model threshold without holding the
// model in memory.

const (
	coarseBins = 1 << 15 // high bits of |x| (the sign bit is always 0)
	fineBins   = 1 << 16
)

func absBits(v float32) uint32 { return math.Float32bits(v) & 0x7fffffff }

// kthSearch finds the k-th smallest (1-based) |x| over data seen in two passes.
type kthSearch struct {
	k      int64
	coarse []int64
	fine   []int64
	bin    uint32 // coarse bin holding the answer, after the first pass
	below  int64  // entries in coarse bins below bin
}

func newKthSearch(k int64) *kthSearch {
	return &kthSearch{k: k, coarse: make([]int64, coarseBins)}
}

// addCoarse counts data into the first-pass histogram h (len coarseBins).
func addCoarse(h []int64, data []float32) {
	for _, v := range data {
		h[absBits(v)>>16]++
	}
}

// addFine counts, into the second-pass histogram h, the entries of data whose
// high bits equal bin.
func addFine(h []int64, bin uint32, data []float32) {
	for _, v := range data {
		if b := absBits(v); b>>16 == bin {
			h[b&0xffff]++
		}
	}
}

// endCoarse locates the coarse bin of the k-th smallest value.
func (s *kthSearch) endCoarse() {
	var cum int64
	for b, n := range s.coarse {
		if cum+n >= s.k {
			s.bin, s.below = uint32(b), cum
			break
		}
		cum += n
	}
	s.fine = make([]int64, fineBins)
}

// result returns the k-th smallest |x| and how many entries are strictly
// smaller, after the fine pass.
func (s *kthSearch) result() (value float32, less int64) {
	cum := s.below
	for f, n := range s.fine {
		if cum+n >= s.k {
			return math.Float32frombits(s.bin<<16 | uint32(f)), cum
		}
		cum += n
	}
	return float32(math.Inf(1)), cum
}

// kthSmallestAbs returns the k-th smallest (1-based, 1 ≤ k ≤ len(data)) |x|
// of data and the number of entries whose |x| is strictly smaller.
func kthSmallestAbs(data []float32, k int64) (float32, int64) {
	s := newKthSearch(k)
	addCoarse(s.coarse, data)
	s.endCoarse()
	addFine(s.fine, s.bin, data)
	return s.result()
}

// rankKeep marks, in keep, the entries whose position in the ascending order
// of (|x|, index) lies in [lo, hi). Ties are ranked by index, which makes
// "keep exactly n entries" deterministic where PyTorch's argsort leaves the
// order of equal values unspecified.
func rankKeep(data []float32, lo, hi int64, keep []bool) {
	n := int64(len(data))
	for i := range keep {
		keep[i] = false
	}
	if lo >= hi {
		return
	}
	// The entry at position p has value v_p; entries equal to v_p that come
	// before it in index order are ranked before it.
	type cut struct {
		bits    uint32
		quota   int64 // how many entries equal to the cut value lie below the cut
		enabled bool
	}
	mk := func(pos int64) cut {
		if pos >= n {
			return cut{}
		}
		v, less := kthSmallestAbs(data, pos+1)
		return cut{bits: absBits(v), quota: pos - less, enabled: true}
	}
	loCut, hiCut := mk(lo), mk(hi)
	var seenLo, seenHi int64
	for i, v := range data {
		b := absBits(v)
		// aboveLo: position ≥ lo; belowHi: position < hi.
		aboveLo := true
		if lo > 0 {
			switch {
			case b < loCut.bits:
				aboveLo = false
			case b == loCut.bits:
				aboveLo = seenLo >= loCut.quota
				seenLo++
			}
		}
		belowHi := true
		if hiCut.enabled {
			switch {
			case b > hiCut.bits:
				belowHi = false
			case b == hiCut.bits:
				belowHi = seenHi < hiCut.quota
				seenHi++
			}
		}
		keep[i] = aboveLo && belowHi
	}
}
