#include "textflag.h"

// Kernels of DARE (Yu et al. 2024) and Consensus merging (Wang et al.
// 2024), AVX2; see dare.go for their definitions.

// MUL64 sets D = A·B mod 2⁶⁴ in each 64-bit lane, from 32-bit products:
// BLO and BHI hold B's low and high halves (in the low dword of each lane),
// T1 and T2 are scratch.
#define MUL64(A, BLO, BHI, D, T1, T2) \
	VPMULUDQ BHI, A, T1; \
	VPSRLQ $32, A, T2; \
	VPMULUDQ BLO, T2, T2; \
	VPADDQ T2, T1, T1; \
	VPSLLQ $32, T1, T1; \
	VPMULUDQ BLO, A, D; \
	VPADDQ T1, D, D

// MIX is SplitMix64's finalizer on Z (T1..T3 scratch; Y10..Y13 hold the
// two multipliers' halves).
#define MIX(Z, T1, T2, T3) \
	VPSRLQ $30, Z, T1; \
	VPXOR T1, Z, Z; \
	MUL64(Z, Y10, Y11, T3, T1, T2); \
	VPSRLQ $27, T3, T1; \
	VPXOR T1, T3, Z; \
	MUL64(Z, Y12, Y13, T3, T1, T2); \
	VPSRLQ $31, T3, T1; \
	VPXOR T1, T3, Z

// func dropRandomAVX2(x *float32, n int, z0 uint64, step uint64, limit uint64, scale float32)
// For i < n: u = mix64(z0 + i·step) >> 11; x[i] = x[i]·scale when u < limit,
// else +0. n is a multiple of 8.
TEXT ·dropRandomAVX2(SB), NOSPLIT, $0-44
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), CX
	// multipliers of mix64, split into 32-bit halves
	MOVQ $0xbf58476d1ce4e5b9, AX
	MOVQ AX, X10
	VPBROADCASTQ X10, Y10
	SHRQ $32, AX
	MOVQ AX, X11
	VPBROADCASTQ X11, Y11
	MOVQ $0x94d049bb133111eb, AX
	MOVQ AX, X12
	VPBROADCASTQ X12, Y12
	SHRQ $32, AX
	MOVQ AX, X13
	VPBROADCASTQ X13, Y13
	// counters of lanes 0..3 and 4..7: z0 + j·step
	MOVQ z0+16(FP), AX
	MOVQ step+24(FP), BX
	MOVQ AX, X0
	ADDQ BX, AX
	MOVQ AX, X1
	VPUNPCKLQDQ X1, X0, X0
	ADDQ BX, AX
	MOVQ AX, X1
	ADDQ BX, AX
	MOVQ AX, X2
	VPUNPCKLQDQ X2, X1, X1
	VINSERTI128 $1, X1, Y0, Y0   // lanes 0..3
	ADDQ BX, AX
	MOVQ AX, X1
	ADDQ BX, AX
	MOVQ AX, X2
	VPUNPCKLQDQ X2, X1, X1
	ADDQ BX, AX
	MOVQ AX, X2
	ADDQ BX, AX
	MOVQ AX, X3
	VPUNPCKLQDQ X3, X2, X2
	VINSERTI128 $1, X2, Y1, Y1   // lanes 4..7
	SHLQ $3, BX
	MOVQ BX, X9
	VPBROADCASTQ X9, Y9          // 8·step
	MOVQ limit+32(FP), AX
	MOVQ AX, X8
	VPBROADCASTQ X8, Y8
	VBROADCASTSS scale+40(FP), Y7
	TESTQ CX, CX
	JZ done
loop:
	VMOVDQA Y0, Y2
	MIX(Y2, Y4, Y5, Y6)
	VPSRLQ $11, Y2, Y2
	VPCMPGTQ Y2, Y8, Y2          // limit > u: kept
	VMOVDQA Y1, Y3
	MIX(Y3, Y4, Y5, Y6)
	VPSRLQ $11, Y3, Y3
	VPCMPGTQ Y3, Y8, Y3
	// the eight 64-bit masks as 32-bit ones, in order
	VSHUFPS $0x88, Y3, Y2, Y2
	VPERMQ $0xd8, Y2, Y2
	VMULPS (DI), Y7, Y4
	VANDPS Y2, Y4, Y4
	VMOVUPS Y4, (DI)
	VPADDQ Y9, Y0, Y0
	VPADDQ Y9, Y1, Y1
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ loop
	VZEROUPPER
done:
	RET

// func tallMaskAVX2(mask *bool, x, mtl *float32, lambda float32, n int)
// mask[i] = |x[i]| > λ·|mtl[i] − x[i]|; n is a multiple of 8.
TEXT ·tallMaskAVX2(SB), NOSPLIT, $0-40
	MOVQ mask+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ mtl+16(FP), DX
	VBROADCASTSS lambda+24(FP), Y7
	MOVQ n+32(FP), CX
	MOVL $0x7fffffff, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	MOVL $1, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14
	TESTQ CX, CX
	JZ done
loop:
	VMOVUPS (SI), Y0
	VMOVUPS (DX), Y1
	VSUBPS Y0, Y1, Y1            // mtl − x
	VANDPS Y15, Y1, Y1
	VMULPS Y1, Y7, Y1            // λ·|mtl − x|
	VANDPS Y15, Y0, Y0           // |x|
	VCMPPS $0x1e, Y1, Y0, Y0     // |x| > λ·|…|, ordered (false for NaN)
	VPAND Y14, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPACKUSDW X1, X0, X0
	VPACKUSWB X0, X0, X0
	VMOVQ X0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $8, DI
	SUBQ $8, CX
	JNZ loop
	VZEROUPPER
done:
	RET
