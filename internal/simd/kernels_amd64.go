package simd

//go:noescape
func gemm12x32AVX512(kc int, a, b, c *float32, ldc int, accumulate bool)

//go:noescape
func gemm6x16AVX2(kc int, a, b, c *float32, ldc int, accumulate bool)

//go:noescape
func packRows8AVX2(dst, src *float32, rs, kb, w int)

// archKernel returns the assembly micro-kernel of level l.
func archKernel(l Level) (microKernel, bool) {
	switch l {
	case AVX512:
		return microKernel{mr: 12, nr: 32, fn: gemm12x32AVX512, level: l}, true
	case AVX2:
		return microKernel{mr: 6, nr: 16, fn: gemm6x16AVX2, level: l}, true
	}
	return microKernel{}, false
}

//go:noescape
func erfAVX512(dst, src *float32, n int)

//go:noescape
func erfAVX2(dst, src *float32, n int)

//go:noescape
func expAVX512(dst, src *float32, n int)

//go:noescape
func expAVX2(dst, src *float32, n int)

// expArch runs the assembly exp of level l, false when it has none.
func expArch(l Level, dst, src []float32) bool {
	switch l {
	case AVX512:
		vectorized(dst, src, 16, expAVX512)
	case AVX2:
		vectorized(dst, src, 8, expAVX2)
	default:
		return false
	}
	return true
}

// erfArch runs the assembly erf of level l, false when it has none.
func erfArch(l Level, dst, src []float32) bool {
	switch l {
	case AVX512:
		vectorized(dst, src, 16, erfAVX512)
	case AVX2:
		vectorized(dst, src, 8, erfAVX2)
	default:
		return false
	}
	return true
}

// vectorized runs kernel over the whole multiples of width in src, then
// over the tail copied into a padded block, so that every element goes
// through the same instructions.
func vectorized(dst, src []float32, width int, kernel func(dst, src *float32, n int)) {
	n := len(src) / width * width
	if n > 0 {
		kernel(&dst[0], &src[0], n)
	}
	if n < len(src) {
		var block [16]float32
		copy(block[:], src[n:])
		kernel(&block[0], &block[0], width)
		copy(dst[n:], block[:len(src)-n])
	}
}

//go:noescape
func addVV512(dst, a, b *float32, n int)

//go:noescape
func subVV512(dst, a, b *float32, n int)

//go:noescape
func mulVV512(dst, a, b *float32, n int)

//go:noescape
func divVV512(dst, a, b *float32, n int)

//go:noescape
func addVS512(dst, a *float32, s float32, n int)

//go:noescape
func subVS512(dst, a *float32, s float32, n int)

//go:noescape
func mulVS512(dst, a *float32, s float32, n int)

//go:noescape
func divVS512(dst, a *float32, s float32, n int)

//go:noescape
func subSV512(dst, a *float32, s float32, n int)

//go:noescape
func divSV512(dst, a *float32, s float32, n int)

//go:noescape
func addVV256(dst, a, b *float32, n int)

//go:noescape
func subVV256(dst, a, b *float32, n int)

//go:noescape
func mulVV256(dst, a, b *float32, n int)

//go:noescape
func divVV256(dst, a, b *float32, n int)

//go:noescape
func addVS256(dst, a *float32, s float32, n int)

//go:noescape
func subVS256(dst, a *float32, s float32, n int)

//go:noescape
func mulVS256(dst, a *float32, s float32, n int)

//go:noescape
func divVS256(dst, a *float32, s float32, n int)

//go:noescape
func subSV256(dst, a *float32, s float32, n int)

//go:noescape
func divSV256(dst, a *float32, s float32, n int)

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

//go:noescape
func decodeBF16AVX2(dst *float32, src *uint16, n int) bool

//go:noescape
func decodeBF16SubAVX2(dst *float32, src *uint16, base *float32, n int) bool

//go:noescape
func encodeBF16AVX2(dst *uint16, src *float32, n int) bool

//go:noescape
func decodeF16AVX2(dst *float32, src *uint16, n int) bool

//go:noescape
func encodeF16AVX2(dst *uint16, src *float32, n int) bool

//go:noescape
func addScaledAVX2(dst, x *float32, w float32, n int)

//go:noescape
func scaleAddAVX2(dst, base *float32, s float32, n int)

//go:noescape
func nonFiniteAVX2(x *float32, n int) int

//go:noescape
func trimBelowAVX2(x *float32, t uint32, n int)

//go:noescape
func signCountAVX2(x *float32, n int) int64

//go:noescape
func disjointMergeAVX2(dst *float32, xs *[]float32, nx int, n int, tieNeg int32, sum bool)

//go:noescape
func windowCountAVX2(xs *[]float32, nx int, n int, lo, width *uint32, below *int32, und *uint8) int64

//go:noescape
func dropRandomAVX2(x *float32, n int, z0 uint64, step uint64, limit uint64, scale float32)

//go:noescape
func tallMaskAVX2(mask *bool, x, mtl *float32, lambda float32, n int)

//go:noescape
func maxAVX2(x *float32, n int) (m float32, nan bool)
