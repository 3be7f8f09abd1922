package cpukernels

import (
	"math"

	"github.com/editkit/editkit/internal/simd"
)

// reduction is a float32 reduce op: identity is its starting value, acc
// folds a row into an accumulator row (dst[i] = dst[i] op x[i]) and whole
// reduces a contiguous run to one value.
type reduction struct {
	identity float32
	acc      func(dst, x []float32)
	whole    func(x []float32) float32
}

var (
	sumReduction = reduction{0, func(dst, x []float32) { simd.Add(dst, dst, x) }, simd.Sum}
	maxReduction = reduction{float32(math.Inf(-1)), maxInto, simd.Max}
)

// maxInto uses Go's max, as simplego does: NaN wins, +0 > −0.
func maxInto(dst, x []float32) {
	x = x[:len(dst)]
	for i, v := range x {
		dst[i] = max(dst[i], v)
	}
}

// reducePlan merges an operand's axes into [outer, reduced, inner] runs
// (each possibly 1); ok is false when the reduced axes are not one run
// once axes of size 1 are dropped.
func reducePlan(dims, axes []int) (outer, reduced, inner int, ok bool) {
	isReduced := make([]bool, len(dims))
	for _, a := range axes {
		isReduced[a] = true
	}
	outer, reduced, inner = 1, 1, 1
	stage := 0 // 0: before the reduced run, 1: in it, 2: after it
	for i, d := range dims {
		if d == 1 {
			continue
		}
		switch {
		case isReduced[i] && stage == 2:
			return 0, 0, 0, false
		case isReduced[i]:
			stage = 1
			reduced *= d
		case stage == 0:
			outer *= d
		default:
			stage = 2
			inner *= d
		}
	}
	return outer, reduced, inner, true
}

// reduce computes out[o, i] = op over r of x[o, r, i].
func reduce(red reduction, out, x []float32, outer, reduced, inner, workers int) {
	if inner == 1 {
		parallelRows(outer, reduced, workers, func(o0, o1 int) {
			for o := o0; o < o1; o++ {
				out[o] = red.whole(x[o*reduced : (o+1)*reduced])
			}
		})
		return
	}
	// Rows of the output accumulate the reduced rows in order, as
	// simplego's sequential loop does.
	parallelRows(outer, reduced*inner, workers, func(o0, o1 int) {
		for o := o0; o < o1; o++ {
			dst := out[o*inner : (o+1)*inner]
			for i := range dst {
				dst[i] = red.identity
			}
			for r := range reduced {
				red.acc(dst, x[(o*reduced+r)*inner:(o*reduced+r+1)*inner])
			}
		}
	})
}
