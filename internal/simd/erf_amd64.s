#include "textflag.h"

// erf(x) ≈ sign(x)·min(1, a·P(a²)/Q(a²)), a = min(|x|, 3.92), P of degree
// 5 and Q of degree 5 in a² fitted for relative error (see erf.go).
DATA erfConst<>+0(SB)/4, $0x7fffffff  // |x| mask
DATA erfConst<>+4(SB)/4, $0x407ae148  // 3.92
DATA erfConst<>+8(SB)/4, $0x3f800000  // 1 = q0
DATA erfConst<>+12(SB)/4, $0x3f906eba // p0
DATA erfConst<>+16(SB)/4, $0x3e42f943 // p1
DATA erfConst<>+20(SB)/4, $0x3d580eb9 // p2
DATA erfConst<>+24(SB)/4, $0x3b76c6e1 // p3
DATA erfConst<>+28(SB)/4, $0x39955c26 // p4
DATA erfConst<>+32(SB)/4, $0x360994cd // p5
DATA erfConst<>+36(SB)/4, $0x3f0087ea // q1
DATA erfConst<>+40(SB)/4, $0x3de9b182 // q2
DATA erfConst<>+44(SB)/4, $0x3c754099 // q3
DATA erfConst<>+48(SB)/4, $0x3a985f77 // q4
DATA erfConst<>+52(SB)/4, $0x381fc4f7 // q5
GLOBL erfConst<>(SB), RODATA|NOPTR, $56

// func erfAVX512(dst, src *float32, n int)
// n is a multiple of 16.
TEXT ·erfAVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JZ done512
	VBROADCASTSS erfConst<>+0(SB), Z16
	VBROADCASTSS erfConst<>+4(SB), Z17
	VBROADCASTSS erfConst<>+8(SB), Z18
	VBROADCASTSS erfConst<>+12(SB), Z19
	VBROADCASTSS erfConst<>+16(SB), Z20
	VBROADCASTSS erfConst<>+20(SB), Z21
	VBROADCASTSS erfConst<>+24(SB), Z22
	VBROADCASTSS erfConst<>+28(SB), Z23
	VBROADCASTSS erfConst<>+32(SB), Z24
	VBROADCASTSS erfConst<>+36(SB), Z25
	VBROADCASTSS erfConst<>+40(SB), Z26
	VBROADCASTSS erfConst<>+44(SB), Z27
	VBROADCASTSS erfConst<>+48(SB), Z28
	VBROADCASTSS erfConst<>+52(SB), Z29

loop512:
	VMOVUPS (SI), Z0
	VPANDD Z16, Z0, Z1      // |x|
	VPANDND Z0, Z16, Z2     // sign bit of x
	VMINPS Z1, Z17, Z1      // a = min(3.92, |x|), NaN kept
	VMULPS Z1, Z1, Z3       // t = a²
	VMOVAPS Z24, Z4         // P
	VFMADD213PS Z23, Z3, Z4
	VFMADD213PS Z22, Z3, Z4
	VFMADD213PS Z21, Z3, Z4
	VFMADD213PS Z20, Z3, Z4
	VFMADD213PS Z19, Z3, Z4
	VMOVAPS Z29, Z5         // Q
	VFMADD213PS Z28, Z3, Z5
	VFMADD213PS Z27, Z3, Z5
	VFMADD213PS Z26, Z3, Z5
	VFMADD213PS Z25, Z3, Z5
	VFMADD213PS Z18, Z3, Z5
	VMULPS Z4, Z1, Z4       // a·P
	VDIVPS Z5, Z4, Z4       // a·P/Q
	VMINPS Z4, Z18, Z4      // min(1, ·), NaN kept
	VPORD Z2, Z4, Z4        // sign of x
	VMOVUPS Z4, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ loop512
	VZEROUPPER

done512:
	RET

// func erfAVX2(dst, src *float32, n int)
// n is a multiple of 8.
TEXT ·erfAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JZ done256
	VBROADCASTSS erfConst<>+0(SB), Y8
	VBROADCASTSS erfConst<>+4(SB), Y9
	VBROADCASTSS erfConst<>+8(SB), Y10

loop256:
	VMOVUPS (SI), Y0
	VANDPS Y8, Y0, Y1       // |x|
	VANDNPS Y0, Y8, Y2      // sign bit of x
	VMINPS Y1, Y9, Y1       // a = min(3.92, |x|), NaN kept
	VMULPS Y1, Y1, Y3       // t = a²
	VBROADCASTSS erfConst<>+32(SB), Y4
	VBROADCASTSS erfConst<>+28(SB), Y6
	VFMADD213PS Y6, Y3, Y4
	VBROADCASTSS erfConst<>+24(SB), Y6
	VFMADD213PS Y6, Y3, Y4
	VBROADCASTSS erfConst<>+20(SB), Y6
	VFMADD213PS Y6, Y3, Y4
	VBROADCASTSS erfConst<>+16(SB), Y6
	VFMADD213PS Y6, Y3, Y4
	VBROADCASTSS erfConst<>+12(SB), Y6
	VFMADD213PS Y6, Y3, Y4
	VBROADCASTSS erfConst<>+52(SB), Y5
	VBROADCASTSS erfConst<>+48(SB), Y7
	VFMADD213PS Y7, Y3, Y5
	VBROADCASTSS erfConst<>+44(SB), Y7
	VFMADD213PS Y7, Y3, Y5
	VBROADCASTSS erfConst<>+40(SB), Y7
	VFMADD213PS Y7, Y3, Y5
	VBROADCASTSS erfConst<>+36(SB), Y7
	VFMADD213PS Y7, Y3, Y5
	VFMADD213PS Y10, Y3, Y5
	VMULPS Y4, Y1, Y4       // a·P
	VDIVPS Y5, Y4, Y4       // a·P/Q
	VMINPS Y4, Y10, Y4      // min(1, ·), NaN kept
	VORPS Y2, Y4, Y4        // sign of x
	VMOVUPS Y4, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ loop256
	VZEROUPPER

done256:
	RET
