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
