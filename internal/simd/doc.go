// Package simd holds editkit's vectorized CPU kernels: the blocked matrix
// product behind models/cpukernels, elementwise float32 arithmetic, erf, exp
// and logistic for the model ops, bfloat16/float16 conversions for
// checkpoints, and the per-element loops of merging (weighted sums, TIES's
// trim, sign election, disjoint mean and threshold counting, DARE's random
// drops, TALL masks).
//
// # Dispatch
//
// Every kernel has a pure-Go version and assembly for x86-64: AVX-512
// (F, BW, DQ, VL) and AVX2 with FMA and F16C. The level is chosen once, at
// start-up, from the CPU's features (golang.org/x/sys/cpu);
// EDITKIT_NOSIMD=1 forces the pure-Go versions, for debugging and to test
// them. Tests run every version the CPU supports, whatever the variable
// says. The matrix product, erf and exp have AVX-512 versions; the other
// kernels are bound by memory bandwidth, and their AVX2 versions serve both
// levels (on the AMD Zen 4 this was written on, 512-bit operations issue as
// two 256-bit halves anyway).
//
// # Same bits at every level
//
// The conversions and the merging kernels compute exactly what the plain Go
// loops compute: the same IEEE operations in the same order, products
// rounded before they are added (Go does not fuse x*y+z on amd64), so a
// merge's output is byte-identical with and without SIMD (checked by the
// golden hashes in merge/testdata). The exceptions are documented where
// they apply: MatMul accumulates with fused multiply-adds, the same way at
// both SIMD levels; Erf, Exp and Logistic approximate to a few ulp (the
// pure-Go versions round math.Erf and math.Exp); Sum adds in eight partial
// sums.
//
// # Matrix product
//
// MatMul follows Goto and van de Geijn's layered algorithm (Anatomy of
// high-performance matrix multiplication, ACM TOMS 2008): the k axis in
// blocks of 256, a block of rows of a (192 rows) packed into panels of mr
// rows and the matching block of b into panels of nr columns, and a
// register-blocked micro-kernel computing an mr×nr tile by outer products
// (12×32 with AVX-512: 24 zmm accumulators; 6×16 with AVX2: 12 ymm). bfloat16
// operands are widened exactly to float32 while packing, so bfloat16
// products accumulate in float32. Row blocks (or, for many small products,
// batch entries) are spread over the workers.
//
// The assembly is written by hand (a few macros in the .s files); there is
// no generator.
package simd
