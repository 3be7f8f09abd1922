package simd

import (
	"math"
	"unsafe"
)

// Elementwise float32 arithmetic. dst may alias the inputs; every slice
// must be at least as long as dst. The operations are exact IEEE ones, so
// every level gives the same bits.

// Add sets dst[i] = a[i] + b[i].
func Add(dst, a, b []float32) { binaryVV(level, opAdd, dst, a, b) }

// Sub sets dst[i] = a[i] − b[i].
func Sub(dst, a, b []float32) { binaryVV(level, opSub, dst, a, b) }

// Mul sets dst[i] = a[i] · b[i].
func Mul(dst, a, b []float32) { binaryVV(level, opMul, dst, a, b) }

// Div sets dst[i] = a[i] / b[i].
func Div(dst, a, b []float32) { binaryVV(level, opDiv, dst, a, b) }

// AddScalar sets dst[i] = a[i] + s.
func AddScalar(dst, a []float32, s float32) { binaryVS(level, opAdd, dst, a, s) }

// SubScalar sets dst[i] = a[i] − s.
func SubScalar(dst, a []float32, s float32) { binaryVS(level, opSub, dst, a, s) }

// MulScalar sets dst[i] = a[i] · s.
func MulScalar(dst, a []float32, s float32) { binaryVS(level, opMul, dst, a, s) }

// DivScalar sets dst[i] = a[i] / s.
func DivScalar(dst, a []float32, s float32) { binaryVS(level, opDiv, dst, a, s) }

// ScalarSub sets dst[i] = s − b[i].
func ScalarSub(dst []float32, s float32, b []float32) { binarySV(level, opSub, dst, s, b) }

// ScalarDiv sets dst[i] = s / b[i].
func ScalarDiv(dst []float32, s float32, b []float32) { binarySV(level, opDiv, dst, s, b) }

func binaryVV(l Level, op int, dst, a, b []float32) {
	a, b = a[:len(dst)], b[:len(dst)]
	i := vv(l, op, dst, a, b)
	dst, a, b = dst[i:], a[i:], b[i:]
	switch op {
	case opAdd:
		for i := range dst {
			dst[i] = a[i] + b[i]
		}
	case opSub:
		for i := range dst {
			dst[i] = a[i] - b[i]
		}
	case opMul:
		for i := range dst {
			dst[i] = a[i] * b[i]
		}
	case opDiv:
		for i := range dst {
			dst[i] = a[i] / b[i]
		}
	}
}

func binaryVS(l Level, op int, dst, a []float32, s float32) {
	a = a[:len(dst)]
	i := vs(l, op, dst, a, s)
	dst, a = dst[i:], a[i:]
	switch op {
	case opAdd:
		for i := range dst {
			dst[i] = a[i] + s
		}
	case opSub:
		for i := range dst {
			dst[i] = a[i] - s
		}
	case opMul:
		for i := range dst {
			dst[i] = a[i] * s
		}
	case opDiv:
		for i := range dst {
			dst[i] = a[i] / s
		}
	}
}

// binarySV is s op b[i] for the operations that do not commute.
func binarySV(l Level, op int, dst []float32, s float32, b []float32) {
	b = b[:len(dst)]
	i := sv(l, op, dst, s, b)
	dst, b = dst[i:], b[i:]
	switch op {
	case opSub:
		for i := range dst {
			dst[i] = s - b[i]
		}
	case opDiv:
		for i := range dst {
			dst[i] = s / b[i]
		}
	default:
		panic("simd: binarySV of a commuting operation")
	}
}

// WeightedSum sets dst[i] = Σ_t w[t]·xs[t][i], summed from 0 in member
// order, each product rounded before it is added (the plain Go loop's
// result: Go does not fuse multiply-adds on amd64).
func WeightedSum(dst []float32, xs [][]float32, w []float32) { weightedSumAt(level, dst, xs, w) }

func weightedSumAt(l Level, dst []float32, xs [][]float32, w []float32) {
	w = w[:len(xs)]
	for _, x := range xs {
		_ = x[:len(dst)] // every member covers dst
	}
	n := 0
	if l >= AVX2 && len(xs) > 0 {
		if n = len(dst) &^ 7; n > 0 {
			weightedSumAVX2(&dst[0], unsafe.SliceData(xs), len(xs), &w[0], n)
		}
	}
	for i := n; i < len(dst); i++ {
		var acc float32
		for t, x := range xs {
			acc += w[t] * x[i]
		}
		dst[i] = acc
	}
}

// ScaleAdd sets dst[i] = base[i] + s·dst[i], the product rounded before
// the sum.
func ScaleAdd(dst, base []float32, s float32) { scaleAddAt(level, dst, base, s) }

func scaleAddAt(l Level, dst, base []float32, s float32) {
	base = base[:len(dst)]
	n := 0
	if l >= AVX2 {
		if n = len(dst) &^ 7; n > 0 {
			scaleAddAVX2(&dst[0], &base[0], s, n)
		}
	}
	for i := n; i < len(dst); i++ {
		dst[i] = base[i] + s*dst[i]
	}
}

// FirstNonFinite returns the index of the first NaN or ±Inf in x, or −1.
func FirstNonFinite(x []float32) int { return firstAbsAtLeastAt(level, x, 0x7f800000) }

// FirstAbsAtLeast returns the index of the first x[i] whose bit pattern
// without the sign is at least limit, or −1: for non-negative floats the
// bit pattern orders like the value, so this finds the first |x[i]| ≥
// the float whose bits are limit, or NaN.
func FirstAbsAtLeast(x []float32, limit uint32) int { return firstAbsAtLeastAt(level, x, limit) }

func firstAbsAtLeastAt(l Level, x []float32, limit uint32) int {
	if limit == 0 { // every value
		if len(x) == 0 {
			return -1
		}
		return 0
	}
	limit = min(limit, 0x7fffffff)
	start := 0
	if l >= AVX2 {
		if n := len(x) &^ 31; n > 0 {
			if b := absAtLeastAVX2(&x[0], n, limit); b >= 0 {
				start = b // the block holding the first one
			} else {
				start = n
			}
		}
	}
	for i := start; i < len(x); i++ {
		if math.Float32bits(x[i])&0x7fffffff >= limit {
			return i
		}
	}
	return -1
}

// The arithmetic operations, indexes of the kernel tables.
const (
	opAdd = iota
	opSub
	opMul
	opDiv
)

type (
	vvKernel = func(dst, a, b *float32, n int)
	vsKernel = func(dst, a *float32, s float32, n int)
)

// The arithmetic kernels by operation, for AVX-512 and AVX2; s − b and
// s / b only (a + s and a · s commute).
var (
	vvKernels = [4][2]vvKernel{{addVV512, addVV256}, {subVV512, subVV256}, {mulVV512, mulVV256}, {divVV512, divVV256}}
	vsKernels = [4][2]vsKernel{{addVS512, addVS256}, {subVS512, subVS256}, {mulVS512, mulVS256}, {divVS512, divVS256}}
	svKernels = [4][2]vsKernel{opSub: {subSV512, subSV256}, opDiv: {divSV512, divSV256}}
)

// width returns the vector width in float32 of level l and the column of
// the kernel tables, false for Generic.
func width(l Level) (int, int, bool) {
	switch l {
	case AVX512:
		return 16, 0, true
	case AVX2:
		return 8, 1, true
	}
	return 0, 0, false
}

// vv runs the kernel of op over the whole vectors of dst and returns how
// many elements it did.
func vv(l Level, op int, dst, a, b []float32) int {
	w, col, ok := width(l)
	n := len(dst) / max(w, 1) * w
	if !ok || n == 0 {
		return 0
	}
	vvKernels[op][col](&dst[0], &a[0], &b[0], n)
	return n
}

func vs(l Level, op int, dst, a []float32, s float32) int {
	w, col, ok := width(l)
	n := len(dst) / max(w, 1) * w
	if !ok || n == 0 {
		return 0
	}
	vsKernels[op][col](&dst[0], &a[0], s, n)
	return n
}

func sv(l Level, op int, dst []float32, s float32, b []float32) int {
	w, col, ok := width(l)
	n := len(dst) / max(w, 1) * w
	if !ok || n == 0 || svKernels[op][col] == nil {
		return 0
	}
	svKernels[op][col](&dst[0], &b[0], s, n)
	return n
}

// Sum returns Σ x[i], summed in eight interleaved partial sums (faster, and
// closer to the exact sum, than one running sum).
func Sum(x []float32) float32 {
	var s [8]float32
	i := 0
	for ; i+8 <= len(x); i += 8 {
		v := x[i : i+8]
		s[0] += v[0]
		s[1] += v[1]
		s[2] += v[2]
		s[3] += v[3]
		s[4] += v[4]
		s[5] += v[5]
		s[6] += v[6]
		s[7] += v[7]
	}
	for j, v := range x[i:] {
		s[j] += v
	}
	return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

// Max returns the largest x[i] as Go's max does: NaN when any is NaN, +0
// over −0; −Inf for no values.
func Max(x []float32) float32 { return maxAt(level, x) }

func maxAt(l Level, x []float32) float32 {
	m, nan := float32(math.Inf(-1)), false
	n := 0
	if l >= AVX2 {
		if n = len(x) &^ 7; n > 0 {
			m, nan = maxAVX2(&x[0], n)
		}
	}
	for _, e := range x[n:] {
		if e > m {
			m = e
		}
		nan = nan || e != e
	}
	if nan {
		return float32(math.NaN())
	}
	if m == 0 {
		// −0 and +0 compare equal: Go's max prefers +0.
		m = float32(math.Copysign(0, -1))
		for _, e := range x {
			if math.Float32bits(e) == 0 {
				return 0
			}
		}
	}
	return m
}
