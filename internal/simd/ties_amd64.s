#include "textflag.h"

// Kernels of TIES merging (Yadav et al. 2023), AVX2, 8 values at a time;
// see ties.go for their definitions. They compute exactly what the scalar
// Go does (the same IEEE operations in the same order), so outputs keep
// their bits.

// func trimBelowAVX2(x *float32, t uint32, n int)
// x = x·1 where |x| ≥ t (as bit patterns), x·0 elsewhere; n is a multiple
// of 8.
TEXT ·trimBelowAVX2(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), DI
	MOVL t+8(FP), AX
	VMOVD AX, X13
	VPBROADCASTD X13, Y13
	MOVQ n+16(FP), CX
	MOVL $0x7fffffff, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	MOVL $0x3f800000, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14
	TESTQ CX, CX
	JZ done
loop:
	VMOVUPS (DI), Y0
	VPAND Y0, Y15, Y1
	VPCMPGTD Y1, Y13, Y1    // t > |x|: trimmed
	VANDNPS Y14, Y1, Y1     // 1 where kept, 0 where trimmed
	VMULPS Y1, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ loop
	VZEROUPPER
done:
	RET

// FLUSH adds the eight 32-bit sums of Y10 to the four 64-bit sums of Y11
// and clears Y10 and DX.
#define FLUSH \
	VPMOVSXDQ X10, Y1; \
	VEXTRACTI128 $1, Y10, X2; \
	VPMOVSXDQ X2, Y2; \
	VPADDQ Y1, Y11, Y11; \
	VPADDQ Y2, Y11, Y11; \
	VPXOR Y10, Y10, Y10; \
	XORQ DX, DX

// func signCountAVX2(x *float32, n int) int64
// Σ sign(x): +1 for positive, −1 for negative, 0 for ±0 (NaN by its sign
// bit); n is a multiple of 8.
TEXT ·signCountAVX2(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	MOVL $0x7fffffff, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	MOVL $1, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14
	VPXOR Y12, Y12, Y12    // zero
	VPXOR Y10, Y10, Y10    // 32-bit sums, flushed every 2^20 rows
	VPXOR Y11, Y11, Y11    // 64-bit sums
	XORQ DX, DX
	TESTQ CX, CX
	JZ done
loop:
	VMOVUPS (SI), Y0
	VPAND Y0, Y15, Y1
	VPCMPEQD Y1, Y12, Y1    // ±0
	VPSRAD $31, Y0, Y2      // −1 or 0
	VPOR Y14, Y2, Y2        // −1 or +1
	VPANDN Y2, Y1, Y2       // 0 for ±0
	VPADDD Y2, Y10, Y10
	ADDQ $32, SI
	INCQ DX
	CMPQ DX, $0x100000
	JB next
	FLUSH
next:
	SUBQ $8, CX
	JNZ loop
done:
	FLUSH
	// horizontal sum of the four 64-bit lanes
	VEXTRACTI128 $1, Y11, X1
	VPADDQ X1, X11, X1
	VPSHUFD $0x4e, X1, X2
	VPADDQ X2, X1, X1
	VMOVQ X1, AX
	MOVQ AX, ret+16(FP)
	VZEROUPPER
	RET

// func disjointMergeAVX2(dst *float32, xs *[]float32, nx int, n int, tieNeg int32, sum bool)
// dst = the mean (sum when sum is set) of the non-zero xs[t] whose sign is
// sign(Σ_t xs[t]), or tieNeg's where that sum is ±0; n is a multiple of 8.
// xs points at nx slice headers (24 bytes each).
TEXT ·disjointMergeAVX2(SB), NOSPLIT, $0-37
	MOVQ dst+0(FP), DI
	MOVQ xs+8(FP), R8
	MOVQ nx+16(FP), R9
	MOVQ n+24(FP), CX
	MOVL tieNeg+32(FP), AX
	VMOVD AX, X13
	VPBROADCASTD X13, Y13
	MOVBLZX sum+36(FP), R11
	MOVL $0x7fffffff, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	MOVL $0x3f800000, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14
	MOVL $1, AX
	VMOVD AX, X11
	VPBROADCASTD X11, Y11
	VPXOR Y12, Y12, Y12
	XORQ BX, BX            // byte offset of the current 8 values
	TESTQ CX, CX
	JZ done
loop:
	// S = Σ_t x_t, from 0 in member order
	VXORPS Y0, Y0, Y0
	MOVQ R8, SI
	MOVQ R9, DX
sum:
	MOVQ (SI), R10
	VADDPS (R10)(BX*1), Y0, Y0
	ADDQ $24, SI
	DECQ DX
	JNZ sum
	// elected sign as a mask: all ones for negative
	VPAND Y0, Y15, Y1
	VPCMPEQD Y1, Y12, Y1    // S = ±0
	VPSRAD $31, Y0, Y2
	VPBLENDVB Y1, Y13, Y2, Y2
	// mean of the agreeing entries
	VXORPS Y3, Y3, Y3       // their sum
	VPXOR Y4, Y4, Y4        // their count
	MOVQ R8, SI
	MOVQ R9, DX
agree:
	MOVQ (SI), R10
	VMOVUPS (R10)(BX*1), Y5
	VPAND Y5, Y15, Y6
	VPCMPEQD Y6, Y12, Y6    // x = ±0
	VPSRAD $31, Y5, Y7
	VPXOR Y7, Y2, Y7        // sign differs from the elected one
	VPOR Y6, Y7, Y7         // does not agree
	VANDNPS Y14, Y7, Y8     // 1 where it agrees
	VMULPS Y8, Y5, Y8
	VADDPS Y8, Y3, Y3
	VPANDN Y11, Y7, Y9
	VPADDD Y9, Y4, Y4
	ADDQ $24, SI
	DECQ DX
	JNZ agree
	TESTQ R11, R11
	JNZ store
	VCVTDQ2PS Y4, Y9
	VDIVPS Y9, Y3, Y10      // sum / count
	VPCMPGTD Y11, Y4, Y6    // count > 1
	VPBLENDVB Y6, Y10, Y3, Y3
store:
	VMOVUPS Y3, (DI)(BX*1)
	ADDQ $32, BX
	SUBQ $8, CX
	JNZ loop
	VZEROUPPER
done:
	RET

// func windowCountAVX2(xs *[]float32, nx int, n int, lo, width *uint32, below *int32, und *uint8) int64
// For TIES's threshold pass: each |x_t| is below, inside or above member
// t's window [lo_t, lo_t+width_t) of coarse bins (high 16 bits). below
// holds 8 int32 counters per member (incremented); und receives one byte
// per 8 values, bit j set when some member has value j inside its window;
// the result is Σ sign(Σ_t x_t kept) over the other values, kept meaning
// above the window. n is a multiple of 8.
TEXT ·windowCountAVX2(SB), NOSPLIT, $0-64
	MOVQ xs+0(FP), R8
	MOVQ nx+8(FP), R9
	MOVQ n+16(FP), CX
	MOVQ lo+24(FP), R12
	MOVQ width+32(FP), R13
	MOVQ below+40(FP), R14
	MOVQ und+48(FP), DI
	MOVL $0x7fffffff, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	MOVL $0x3f800000, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14
	MOVL $1, AX
	VMOVD AX, X13
	VPBROADCASTD X13, Y13
	VPXOR Y12, Y12, Y12
	VPXOR Y11, Y11, Y11     // sign sums
	XORQ BX, BX
	TESTQ CX, CX
	JZ done
loop:
	VXORPS Y0, Y0, Y0       // Σ kept, from 0 in member order
	VPXOR Y2, Y2, Y2        // members with the value in their window
	MOVQ R8, SI
	XORQ DX, DX
member:
	MOVQ (SI), R10
	VMOVUPS (R10)(BX*1), Y3
	VPAND Y3, Y15, Y4
	VPSRLD $16, Y4, Y4      // coarse bin
	VPBROADCASTD (R12)(DX*4), Y5
	VPSUBD Y5, Y4, Y4       // d = bin − lo
	VPCMPGTD Y4, Y12, Y7    // below: d < 0
	VPBROADCASTD (R13)(DX*4), Y6
	VPCMPGTD Y4, Y6, Y8     // d < width
	VPANDN Y8, Y7, Y8       // inside
	VPOR Y7, Y8, Y9
	VANDNPS Y14, Y9, Y10    // 1 where above (kept), else 0
	VMULPS Y10, Y3, Y10
	VADDPS Y10, Y0, Y0
	VPSUBD Y8, Y2, Y2
	MOVQ DX, AX
	SHLQ $5, AX
	VMOVDQU (R14)(AX*1), Y10
	VPSUBD Y7, Y10, Y10
	VMOVDQU Y10, (R14)(AX*1)
	ADDQ $24, SI
	INCQ DX
	CMPQ DX, R9
	JB member
	// sign of Σ kept where no member is undecided
	VPCMPEQD Y2, Y12, Y9
	VPAND Y0, Y15, Y10
	VPCMPEQD Y10, Y12, Y10
	VPSRAD $31, Y0, Y4
	VPOR Y13, Y4, Y4
	VPANDN Y4, Y10, Y4
	VPAND Y9, Y4, Y4
	VPADDD Y4, Y11, Y11
	// undecided values as bits
	VPCMPGTD Y12, Y2, Y4
	VMOVMSKPS Y4, AX
	MOVB AX, (DI)
	INCQ DI
	ADDQ $32, BX
	SUBQ $8, CX
	JNZ loop
done:
	VPMOVSXDQ X11, Y1
	VEXTRACTI128 $1, Y11, X2
	VPMOVSXDQ X2, Y2
	VPADDQ Y1, Y2, Y1
	VEXTRACTI128 $1, Y1, X2
	VPADDQ X2, X1, X1
	VPSHUFD $0x4e, X1, X2
	VPADDQ X2, X1, X1
	VMOVQ X1, AX
	MOVQ AX, ret+56(FP)
	VZEROUPPER
	RET
