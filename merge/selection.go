package merge

import (
	"cmp"
	"math"
	"slices"
)

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

// addCoarse counts data into the first-level histogram h (len coarseBins).
func addCoarse(h []int64, data []float32) {
	for _, v := range data {
		h[absBits(v)>>16]++
	}
}

// addWindow counts, at full precision, the entries whose coarse bin lies in w.
func addWindow(h []int64, w window, data []float32) {
	for _, v := range data {
		if b := absBits(v); w.contains(b >> 16) {
			h[w.index(b)]++
		}
	}
}

// kthSmallestAbs returns the k-th smallest (1-based, 1 ≤ k ≤ len(data)) |x|
// of data and the number of entries whose |x| is strictly smaller.
func kthSmallestAbs(data []float32, k int64) (float32, int64) {
	coarse := make([]int64, coarseBins)
	addCoarse(coarse, data)
	bin, below := coarseBin(coarse, k)
	w := window{lo: bin, width: 1}
	fine := make([]int64, fineBins)
	addWindow(fine, w, data)
	f := fineValue(fine, w, bin, k-below)
	less := below
	for _, n := range fine[:f] {
		less += n
	}
	return math.Float32frombits(bin<<16 | f), less
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

// stableSortByMagnitude orders the indices in order by ascending mags[i],
// equal magnitudes by index (a stable sort).
func stableSortByMagnitude(order []int, mags []float32) {
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(mags[a], mags[b]) })
}
