#include "textflag.h"

// Elementwise float32 arithmetic over n elements, n a multiple of the
// vector width (16 for the 512 versions, 8 for the 256 ones): dst = a op b
// (VV), a op s (VS) and s op b (SV). Exact IEEE operations, so the results
// are those of the scalar Go loops.

#define VV(NAME, OP, RA, RB, RC, W, BYTES) \
TEXT NAME(SB), NOSPLIT, $0-32; \
	MOVQ dst+0(FP), DI; \
	MOVQ a+8(FP), SI; \
	MOVQ b+16(FP), DX; \
	MOVQ n+24(FP), CX; \
	TESTQ CX, CX; \
	JZ done; \
loop: \
	VMOVUPS (SI), RA; \
	VMOVUPS (DX), RB; \
	OP RB, RA, RA; \
	VMOVUPS RA, (DI); \
	ADDQ $BYTES, SI; \
	ADDQ $BYTES, DX; \
	ADDQ $BYTES, DI; \
	SUBQ $W, CX; \
	JNZ loop; \
	VZEROUPPER; \
done: \
	RET

// VS: dst = a op s. SV: dst = s op a (b is passed as a).
#define VS(NAME, OP, RA, RB, RC, W, BYTES) \
TEXT NAME(SB), NOSPLIT, $0-32; \
	MOVQ dst+0(FP), DI; \
	MOVQ a+8(FP), SI; \
	VBROADCASTSS s+16(FP), RC; \
	MOVQ n+24(FP), CX; \
	TESTQ CX, CX; \
	JZ done; \
loop: \
	VMOVUPS (SI), RA; \
	OP RC, RA, RA; \
	VMOVUPS RA, (DI); \
	ADDQ $BYTES, SI; \
	ADDQ $BYTES, DI; \
	SUBQ $W, CX; \
	JNZ loop; \
	VZEROUPPER; \
done: \
	RET

#define SV(NAME, OP, RA, RB, RC, W, BYTES) \
TEXT NAME(SB), NOSPLIT, $0-32; \
	MOVQ dst+0(FP), DI; \
	MOVQ a+8(FP), SI; \
	VBROADCASTSS s+16(FP), RC; \
	MOVQ n+24(FP), CX; \
	TESTQ CX, CX; \
	JZ done; \
loop: \
	VMOVUPS (SI), RA; \
	OP RA, RC, RA; \
	VMOVUPS RA, (DI); \
	ADDQ $BYTES, SI; \
	ADDQ $BYTES, DI; \
	SUBQ $W, CX; \
	JNZ loop; \
	VZEROUPPER; \
done: \
	RET

VV(·addVV512, VADDPS, Z0, Z1, Z2, 16, 64)
VV(·subVV512, VSUBPS, Z0, Z1, Z2, 16, 64)
VV(·mulVV512, VMULPS, Z0, Z1, Z2, 16, 64)
VV(·divVV512, VDIVPS, Z0, Z1, Z2, 16, 64)
VS(·addVS512, VADDPS, Z0, Z1, Z2, 16, 64)
VS(·subVS512, VSUBPS, Z0, Z1, Z2, 16, 64)
VS(·mulVS512, VMULPS, Z0, Z1, Z2, 16, 64)
VS(·divVS512, VDIVPS, Z0, Z1, Z2, 16, 64)
SV(·subSV512, VSUBPS, Z0, Z1, Z2, 16, 64)
SV(·divSV512, VDIVPS, Z0, Z1, Z2, 16, 64)

VV(·addVV256, VADDPS, Y0, Y1, Y2, 8, 32)
VV(·subVV256, VSUBPS, Y0, Y1, Y2, 8, 32)
VV(·mulVV256, VMULPS, Y0, Y1, Y2, 8, 32)
VV(·divVV256, VDIVPS, Y0, Y1, Y2, 8, 32)
VS(·addVS256, VADDPS, Y0, Y1, Y2, 8, 32)
VS(·subVS256, VSUBPS, Y0, Y1, Y2, 8, 32)
VS(·mulVS256, VMULPS, Y0, Y1, Y2, 8, 32)
VS(·divVS256, VDIVPS, Y0, Y1, Y2, 8, 32)
SV(·subSV256, VSUBPS, Y0, Y1, Y2, 8, 32)
SV(·divSV256, VDIVPS, Y0, Y1, Y2, 8, 32)

// func scaleAddAVX2(dst, base *float32, s float32, n int)
// dst = base + s·dst (product rounded). n is a multiple of 8.
TEXT ·scaleAddAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ base+8(FP), SI
	VBROADCASTSS s+16(FP), Y2
	MOVQ n+24(FP), CX
	TESTQ CX, CX
	JZ done
loop:
	VMULPS (DI), Y2, Y0
	VADDPS (SI), Y0, Y0 // s·dst + base
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ loop
	VZEROUPPER
done:
	RET

// func absAtLeastAVX2(x *float32, n int, limit uint32) int
// Returns the index of the first block of 32 values holding one whose bits
// without the sign are at least limit (both below 2³¹), or −1. n is a
// multiple of 32.
TEXT ·absAtLeastAVX2(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	MOVL limit+16(FP), R8
	DECL R8
	VMOVD R8, X14
	VPBROADCASTD X14, Y14   // limit − 1
	MOVL $0x7fffffff, R8
	VMOVD R8, X15
	VPBROADCASTD X15, Y15
	XORQ AX, AX
	TESTQ CX, CX
	JZ none
loop:
	VPAND (SI), Y15, Y0
	VPAND 32(SI), Y15, Y1
	VPAND 64(SI), Y15, Y2
	VPAND 96(SI), Y15, Y3
	VPCMPGTD Y14, Y0, Y0
	VPCMPGTD Y14, Y1, Y1
	VPCMPGTD Y14, Y2, Y2
	VPCMPGTD Y14, Y3, Y3
	VPOR Y0, Y1, Y0
	VPOR Y2, Y3, Y2
	VPOR Y0, Y2, Y0
	VPTEST Y0, Y0
	JNE found
	ADDQ $128, SI
	ADDQ $32, AX
	SUBQ $32, CX
	JNZ loop
none:
	MOVQ $-1, AX
found:
	MOVQ AX, ret+24(FP)
	VZEROUPPER
	RET

// func maxAVX2(x *float32, n int) (m float32, nan bool)
// The largest x[i] ignoring NaNs, and whether there was a NaN; n is a
// positive multiple of 8. Zeros of either sign may come out as either.
TEXT ·maxAVX2(SB), NOSPLIT, $0-21
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	MOVL $0xff800000, AX    // −Inf
	VMOVD AX, X0
	VPBROADCASTD X0, Y0
	VMOVAPS Y0, Y1
	VXORPS Y2, Y2, Y2       // NaN lanes
loop:
	VMOVUPS (SI), Y3
	VMAXPS Y0, Y3, Y0       // x, m: a NaN x leaves m
	VCMPPS $3, Y3, Y3, Y4   // unordered: x is NaN
	VORPS Y4, Y2, Y2
	ADDQ $32, SI
	SUBQ $8, CX
	JNZ loop
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPSHUFD $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPSHUFD $0xb1, X0, X1
	VMAXPS X1, X0, X0
	VMOVSS X0, m+16(FP)
	VPTEST Y2, Y2
	SETNE nan+20(FP)
	VZEROUPPER
	RET

// func weightedSumAVX2(dst *float32, xs *[]float32, nx int, w *float32, n int)
// dst = Σ_t w[t]·xs[t], from 0 in member order, each product rounded
// before it is added; n is a multiple of 8. xs points at nx slice headers
// (24 bytes each).
TEXT ·weightedSumAVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ xs+8(FP), R8
	MOVQ nx+16(FP), R9
	MOVQ w+24(FP), R12
	MOVQ n+32(FP), CX
	XORQ BX, BX
	TESTQ CX, CX
	JZ done
loop:
	VXORPS Y0, Y0, Y0
	MOVQ R8, SI
	XORQ DX, DX
member:
	MOVQ (SI), R10
	VBROADCASTSS (R12)(DX*4), Y2
	VMULPS (R10)(BX*1), Y2, Y1
	VADDPS Y1, Y0, Y0
	ADDQ $24, SI
	INCQ DX
	CMPQ DX, R9
	JB member
	VMOVUPS Y0, (DI)(BX*1)
	ADDQ $32, BX
	SUBQ $8, CX
	JNZ loop
	VZEROUPPER
done:
	RET
