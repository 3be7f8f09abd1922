//go:build !amd64

package simd

func archKernel(Level) (microKernel, bool) { return microKernel{}, false }

func erfArch(Level, []float32, []float32) bool { return false }

func expArch(Level, []float32, []float32) bool { return false }

func vv(Level, int, []float32, []float32, []float32) int { return 0 }

func vs(Level, int, []float32, []float32, float32) int { return 0 }

func sv(Level, int, []float32, float32, []float32) int { return 0 }

// The assembly kernels below exist only on amd64; level is Generic
// elsewhere, so they are never called.

func decodeBF16AVX2(*float32, *uint16, int) bool { panic("simd: no AVX2") }

func decodeBF16SubAVX2(*float32, *uint16, *float32, int) bool { panic("simd: no AVX2") }

func encodeBF16AVX2(*uint16, *float32, int) bool { panic("simd: no AVX2") }

func decodeF16AVX2(*float32, *uint16, int) bool { panic("simd: no AVX2") }

func encodeF16AVX2(*uint16, *float32, int) bool { panic("simd: no AVX2") }

func addScaledAVX2(*float32, *float32, float32, int) { panic("simd: no AVX2") }

func scaleAddAVX2(*float32, *float32, float32, int) { panic("simd: no AVX2") }

func nonFiniteAVX2(*float32, int) int { panic("simd: no AVX2") }

func trimBelowAVX2(*float32, uint32, int) { panic("simd: no AVX2") }

func signCountAVX2(*float32, int) int64 { panic("simd: no AVX2") }

func disjointMergeAVX2(*float32, *[]float32, int, int, int32, bool) { panic("simd: no AVX2") }

func windowCountAVX2(*[]float32, int, int, *uint32, *uint32, *int32, *uint8) int64 {
	panic("simd: no AVX2")
}

func dropRandomAVX2(*float32, int, uint64, uint64, uint64, float32) { panic("simd: no AVX2") }

func tallMaskAVX2(*bool, *float32, *float32, float32, int) { panic("simd: no AVX2") }

func packRows8AVX2(*float32, *float32, int, int, int) { panic("simd: no AVX2") }

func maxAVX2(*float32, int) (float32, bool) { panic("simd: no AVX2") }
