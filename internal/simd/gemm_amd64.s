#include "textflag.h"

// Micro-kernels of MatMul: c[i][j] (+)= Σ_p a[p][i]·b[p][j] for one mr×nr
// tile, a and b packed as panels ([kc][mr] and [kc][nr]), c row-major with
// row stride ldc (elements). The sums start from zero (fused multiply-adds
// in order of p) and are then added to c (accumulate) or stored over it.

// ROW multiplies a[p][row] (at OFF(SI), broadcast into T) by the two
// vectors of b[p] in B0, B1 and accumulates into ACC0, ACC1.
#define ROW(OFF, B0, B1, T, ACC0, ACC1) \
	VBROADCASTSS OFF(SI), T; \
	VFMADD231PS B0, T, ACC0; \
	VFMADD231PS B1, T, ACC1

// ADDTO adds the row ACC0, ACC1 (W bytes each) to c's row at DX and moves
// DX to the next row; PUT stores it over c's row.
#define ADDTO(ACC0, ACC1, W) \
	VADDPS (DX), ACC0, ACC0; \
	VADDPS W(DX), ACC1, ACC1; \
	VMOVUPS ACC0, (DX); \
	VMOVUPS ACC1, W(DX); \
	ADDQ R8, DX

#define PUT(ACC0, ACC1, W) \
	VMOVUPS ACC0, (DX); \
	VMOVUPS ACC1, W(DX); \
	ADDQ R8, DX

// func gemm12x32AVX512(kc int, a, b, c *float32, ldc int, accumulate bool)
// 12×32 tile: 24 zmm accumulators (Z8–Z31), b in Z0, Z1.
TEXT ·gemm12x32AVX512(SB), NOSPLIT, $0-41
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	VPXORD Z24, Z24, Z24
	VPXORD Z25, Z25, Z25
	VPXORD Z26, Z26, Z26
	VPXORD Z27, Z27, Z27
	VPXORD Z28, Z28, Z28
	VPXORD Z29, Z29, Z29
	VPXORD Z30, Z30, Z30
	VPXORD Z31, Z31, Z31
	TESTQ CX, CX
	JZ store
loop:
	VMOVUPS (DI), Z0
	VMOVUPS 64(DI), Z1
	ROW(0, Z0, Z1, Z2, Z8, Z9)
	ROW(4, Z0, Z1, Z3, Z10, Z11)
	ROW(8, Z0, Z1, Z2, Z12, Z13)
	ROW(12, Z0, Z1, Z3, Z14, Z15)
	ROW(16, Z0, Z1, Z2, Z16, Z17)
	ROW(20, Z0, Z1, Z3, Z18, Z19)
	ROW(24, Z0, Z1, Z2, Z20, Z21)
	ROW(28, Z0, Z1, Z3, Z22, Z23)
	ROW(32, Z0, Z1, Z2, Z24, Z25)
	ROW(36, Z0, Z1, Z3, Z26, Z27)
	ROW(40, Z0, Z1, Z2, Z28, Z29)
	ROW(44, Z0, Z1, Z3, Z30, Z31)
	ADDQ $48, SI
	ADDQ $128, DI
	DECQ CX
	JNZ loop
store:
	MOVBLZX accumulate+40(FP), AX
	TESTQ AX, AX
	JZ put
	ADDTO(Z8, Z9, 64)
	ADDTO(Z10, Z11, 64)
	ADDTO(Z12, Z13, 64)
	ADDTO(Z14, Z15, 64)
	ADDTO(Z16, Z17, 64)
	ADDTO(Z18, Z19, 64)
	ADDTO(Z20, Z21, 64)
	ADDTO(Z22, Z23, 64)
	ADDTO(Z24, Z25, 64)
	ADDTO(Z26, Z27, 64)
	ADDTO(Z28, Z29, 64)
	ADDTO(Z30, Z31, 64)
	VZEROUPPER
	RET
put:
	PUT(Z8, Z9, 64)
	PUT(Z10, Z11, 64)
	PUT(Z12, Z13, 64)
	PUT(Z14, Z15, 64)
	PUT(Z16, Z17, 64)
	PUT(Z18, Z19, 64)
	PUT(Z20, Z21, 64)
	PUT(Z22, Z23, 64)
	PUT(Z24, Z25, 64)
	PUT(Z26, Z27, 64)
	PUT(Z28, Z29, 64)
	PUT(Z30, Z31, 64)
	VZEROUPPER
	RET

// func gemm6x16AVX2(kc int, a, b, c *float32, ldc int, accumulate bool)
// 6×16 tile: 12 ymm accumulators (Y4–Y15), b in Y0, Y1.
TEXT ·gemm6x16AVX2(SB), NOSPLIT, $0-41
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15
	TESTQ CX, CX
	JZ store
loop:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	ROW(0, Y0, Y1, Y2, Y4, Y5)
	ROW(4, Y0, Y1, Y3, Y6, Y7)
	ROW(8, Y0, Y1, Y2, Y8, Y9)
	ROW(12, Y0, Y1, Y3, Y10, Y11)
	ROW(16, Y0, Y1, Y2, Y12, Y13)
	ROW(20, Y0, Y1, Y3, Y14, Y15)
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNZ loop
store:
	MOVBLZX accumulate+40(FP), AX
	TESTQ AX, AX
	JZ put
	ADDTO(Y4, Y5, 32)
	ADDTO(Y6, Y7, 32)
	ADDTO(Y8, Y9, 32)
	ADDTO(Y10, Y11, 32)
	ADDTO(Y12, Y13, 32)
	ADDTO(Y14, Y15, 32)
	VZEROUPPER
	RET
put:
	PUT(Y4, Y5, 32)
	PUT(Y6, Y7, 32)
	PUT(Y8, Y9, 32)
	PUT(Y10, Y11, 32)
	PUT(Y12, Y13, 32)
	PUT(Y14, Y15, 32)
	VZEROUPPER
	RET

// func packRows8AVX2(dst, src *float32, rs, kb, w int)
// Transposes 8 rows of kb values (row stride rs) into a panel with rows
// of w values: dst[p·w + i] = src[i·rs + p] for i < 8, p < kb; kb is a
// multiple of 8. 8×8 blocks go through registers.
TEXT ·packRows8AVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ rs+16(FP), R8
	SHLQ $2, R8
	MOVQ kb+24(FP), CX
	MOVQ w+32(FP), R9
	SHLQ $2, R9
	LEAQ (SI)(R8*2), R10
	LEAQ (R10)(R8*2), R11
	LEAQ (R11)(R8*2), R12
	TESTQ CX, CX
	JZ done
loop:
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(R8*1), Y1
	VMOVUPS (R10), Y2
	VMOVUPS (R10)(R8*1), Y3
	VMOVUPS (R11), Y4
	VMOVUPS (R11)(R8*1), Y5
	VMOVUPS (R12), Y6
	VMOVUPS (R12)(R8*1), Y7
	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15
	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xee, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xee, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xee, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xee, Y15, Y13, Y7
	MOVQ DI, R13
	VPERM2F128 $0x20, Y4, Y0, Y8
	VMOVUPS Y8, (R13)
	ADDQ R9, R13
	VPERM2F128 $0x20, Y5, Y1, Y8
	VMOVUPS Y8, (R13)
	ADDQ R9, R13
	VPERM2F128 $0x20, Y6, Y2, Y8
	VMOVUPS Y8, (R13)
	ADDQ R9, R13
	VPERM2F128 $0x20, Y7, Y3, Y8
	VMOVUPS Y8, (R13)
	ADDQ R9, R13
	VPERM2F128 $0x31, Y4, Y0, Y8
	VMOVUPS Y8, (R13)
	ADDQ R9, R13
	VPERM2F128 $0x31, Y5, Y1, Y8
	VMOVUPS Y8, (R13)
	ADDQ R9, R13
	VPERM2F128 $0x31, Y6, Y2, Y8
	VMOVUPS Y8, (R13)
	ADDQ R9, R13
	VPERM2F128 $0x31, Y7, Y3, Y8
	VMOVUPS Y8, (R13)
	ADDQ R9, R13
	MOVQ R13, DI
	ADDQ $32, SI
	ADDQ $32, R10
	ADDQ $32, R11
	ADDQ $32, R12
	SUBQ $8, CX
	JNZ loop
	VZEROUPPER
done:
	RET
