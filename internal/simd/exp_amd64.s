#include "textflag.h"

// exp(x) = 2ⁿ·eʳ, n = round(x·log₂e), r = x − n·ln2 in two parts (Cody and
// Waite), eʳ ≈ 1 + r + r²·P(r) with P of degree 4 fitted for relative error
// on |r| ≤ ln2/2 (see exp.go); 2ⁿ is applied as two factors 2^⌊n/2⌋ and
// 2^(n−⌊n/2⌋) so that results in the subnormal range round once. x is
// clamped to [−104, 88.8] first (exp is 0 or +Inf beyond), NaN kept.
DATA expConst<>+0(SB)/4, $0x3fb8aa3b  // log₂e
DATA expConst<>+4(SB)/4, $0x3f318000  // ln2, high part
DATA expConst<>+8(SB)/4, $0xb95e8083  // ln2, low part
DATA expConst<>+12(SB)/4, $0x42b1999a // 88.8
DATA expConst<>+16(SB)/4, $0xc2d00000 // −104
DATA expConst<>+20(SB)/4, $0x3f800000 // 1
DATA expConst<>+24(SB)/4, $0x3efffffe // c2
DATA expConst<>+28(SB)/4, $0x3e2aaa45 // c3
DATA expConst<>+32(SB)/4, $0x3d2aac8b // c4
DATA expConst<>+36(SB)/4, $0x3c091fb5 // c5
DATA expConst<>+40(SB)/4, $0x3ab50c9c // c6
DATA expConst<>+44(SB)/4, $127        // exponent bias
GLOBL expConst<>(SB), RODATA|NOPTR, $48

// func expAVX512(dst, src *float32, n int)
// n is a multiple of 16.
TEXT ·expAVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JZ done512
	VBROADCASTSS expConst<>+0(SB), Z16
	VBROADCASTSS expConst<>+4(SB), Z17
	VBROADCASTSS expConst<>+8(SB), Z18
	VBROADCASTSS expConst<>+12(SB), Z19
	VBROADCASTSS expConst<>+16(SB), Z20
	VBROADCASTSS expConst<>+20(SB), Z21
	VBROADCASTSS expConst<>+24(SB), Z22
	VBROADCASTSS expConst<>+28(SB), Z23
	VBROADCASTSS expConst<>+32(SB), Z24
	VBROADCASTSS expConst<>+36(SB), Z25
	VBROADCASTSS expConst<>+40(SB), Z26
	VPBROADCASTD expConst<>+44(SB), Z27

loop512:
	VMOVUPS (SI), Z0
	VMINPS Z0, Z19, Z0      // clamp, NaN kept
	VMAXPS Z0, Z20, Z0
	VMULPS Z16, Z0, Z1
	VRNDSCALEPS $0, Z1, Z1  // n
	VMOVAPS Z0, Z2
	VFNMADD231PS Z17, Z1, Z2
	VFNMADD231PS Z18, Z1, Z2 // r
	VMOVAPS Z26, Z3
	VFMADD213PS Z25, Z2, Z3
	VFMADD213PS Z24, Z2, Z3
	VFMADD213PS Z23, Z2, Z3
	VFMADD213PS Z22, Z2, Z3 // P(r)
	VMULPS Z2, Z2, Z4
	VFMADD213PS Z2, Z4, Z3  // r + r²·P(r)
	VADDPS Z21, Z3, Z3      // eʳ
	VCVTPS2DQ Z1, Z5
	VPSRAD $1, Z5, Z6       // ⌊n/2⌋
	VPSUBD Z6, Z5, Z5       // n − ⌊n/2⌋
	VPADDD Z27, Z6, Z6
	VPSLLD $23, Z6, Z6
	VPADDD Z27, Z5, Z5
	VPSLLD $23, Z5, Z5
	VMULPS Z6, Z3, Z3
	VMULPS Z5, Z3, Z3
	VMOVUPS Z3, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ loop512
	VZEROUPPER

done512:
	RET

// func expAVX2(dst, src *float32, n int)
// n is a multiple of 8.
TEXT ·expAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JZ done256
	VBROADCASTSS expConst<>+0(SB), Y8
	VBROADCASTSS expConst<>+4(SB), Y9
	VBROADCASTSS expConst<>+8(SB), Y10
	VBROADCASTSS expConst<>+12(SB), Y11
	VBROADCASTSS expConst<>+16(SB), Y12
	VBROADCASTSS expConst<>+20(SB), Y13
	VPBROADCASTD expConst<>+44(SB), Y14

loop256:
	VMOVUPS (SI), Y0
	VMINPS Y0, Y11, Y0      // clamp, NaN kept
	VMAXPS Y0, Y12, Y0
	VMULPS Y8, Y0, Y1
	VROUNDPS $0, Y1, Y1     // n
	VMOVAPS Y0, Y2
	VFNMADD231PS Y9, Y1, Y2
	VFNMADD231PS Y10, Y1, Y2 // r
	VBROADCASTSS expConst<>+40(SB), Y3
	VBROADCASTSS expConst<>+36(SB), Y7
	VFMADD213PS Y7, Y2, Y3
	VBROADCASTSS expConst<>+32(SB), Y7
	VFMADD213PS Y7, Y2, Y3
	VBROADCASTSS expConst<>+28(SB), Y7
	VFMADD213PS Y7, Y2, Y3
	VBROADCASTSS expConst<>+24(SB), Y7
	VFMADD213PS Y7, Y2, Y3  // P(r)
	VMULPS Y2, Y2, Y4
	VFMADD213PS Y2, Y4, Y3  // r + r²·P(r)
	VADDPS Y13, Y3, Y3      // eʳ
	VCVTPS2DQ Y1, Y5
	VPSRAD $1, Y5, Y6       // ⌊n/2⌋
	VPSUBD Y6, Y5, Y5       // n − ⌊n/2⌋
	VPADDD Y14, Y6, Y6
	VPSLLD $23, Y6, Y6
	VPADDD Y14, Y5, Y5
	VPSLLD $23, Y5, Y5
	VMULPS Y6, Y3, Y3
	VMULPS Y5, Y3, Y3
	VMOVUPS Y3, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ loop256
	VZEROUPPER

done256:
	RET
