package simd

// The assembly kernels (the .s files of this package); kernels_other.go
// stubs them out elsewhere. The Go files choose among them by Level.

//go:noescape
func gemm12x32AVX512(kc int, a, b, c *float32, ldc int, accumulate bool)

//go:noescape
func gemm6x16AVX2(kc int, a, b, c *float32, ldc int, accumulate bool)

//go:noescape
func packRows8AVX2(dst, src *float32, rs, kb, w int)

//go:noescape
func erfAVX512(dst, src *float32, n int)

//go:noescape
func erfAVX2(dst, src *float32, n int)

//go:noescape
func expAVX512(dst, src *float32, n int)

//go:noescape
func expAVX2(dst, src *float32, n int)

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

//go:noescape
func decodeBF16AVX2(dst *float32, src *uint16, n int) bool

//go:noescape
func decodeBF16SubAVX2(dst *float32, src *uint16, base *float32, n int) bool

//go:noescape
func encodeBF16AVX2(dst *uint16, src *float32, n int)

//go:noescape
func decodeF16AVX2(dst *float32, src *uint16, n int) bool

//go:noescape
func encodeF16AVX2(dst *uint16, src *float32, n int)

//go:noescape
func scaleAddAVX2(dst, base *float32, s float32, n int)

//go:noescape
func absAtLeastAVX2(x *float32, n int, limit uint32) int

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

//go:noescape
func weightedSumAVX2(dst *float32, xs *[]float32, nx int, w *float32, n int)
