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
