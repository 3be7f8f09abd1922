package simd

//go:noescape
func gemm12x32AVX512(kc int, a, b, c *float32, ldc int, accumulate bool)

//go:noescape
func gemm6x16AVX2(kc int, a, b, c *float32, ldc int, accumulate bool)

// archKernel returns the assembly micro-kernel of level l.
func archKernel(l Level) (microKernel, bool) {
	switch l {
	case AVX512:
		return microKernel{mr: 12, nr: 32, fn: gemm12x32AVX512}, true
	case AVX2:
		return microKernel{mr: 6, nr: 16, fn: gemm6x16AVX2}, true
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
