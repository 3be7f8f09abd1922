#include "textflag.h"

// Conversions between float32 and the 16-bit float formats, AVX2 (they are
// bound by memory: AVX-512 versions would not be faster). The decoders
// report in their result whether a value was NaN or ±Inf; callers find
// where in Go.

DATA cvtConst<>+0(SB)/4, $0x7f800000  // exponent mask, +Inf
DATA cvtConst<>+4(SB)/4, $0x7fffffff  // |x| mask
DATA cvtConst<>+8(SB)/4, $0x00007fff  // rounding bias
DATA cvtConst<>+12(SB)/4, $0x00000001
DATA cvtConst<>+16(SB)/4, $0x00000040 // bfloat16 quiet-NaN bit
GLOBL cvtConst<>(SB), RODATA|NOPTR, $20

// NONFINITE ORs into ACC the lanes of X whose exponent is all ones
// (EXP holds the exponent mask, T is scratch).
#define NONFINITE(X, EXP, T, ACC) \
	VPAND X, EXP, T; \
	VPCMPEQD T, EXP, T; \
	VPOR T, ACC, ACC

// func decodeBF16AVX2(dst *float32, src *uint16, n int) bool
// n is a multiple of 16.
TEXT ·decodeBF16AVX2(SB), NOSPLIT, $0-25
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VPBROADCASTD cvtConst<>+0(SB), Y15
	VPXOR Y14, Y14, Y14
	TESTQ CX, CX
	JZ done
loop:
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPSLLD $16, Y0, Y0
	VPSLLD $16, Y1, Y1
	VMOVDQU Y0, (DI)
	VMOVDQU Y1, 32(DI)
	NONFINITE(Y0, Y15, Y2, Y14)
	NONFINITE(Y1, Y15, Y3, Y14)
	ADDQ $32, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ loop
done:
	VPTEST Y14, Y14
	SETNE ret+24(FP)
	VZEROUPPER
	RET

// func decodeBF16SubAVX2(dst *float32, src *uint16, base *float32, n int) bool
// dst = float32(src) − base; n is a multiple of 16.
TEXT ·decodeBF16SubAVX2(SB), NOSPLIT, $0-33
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ base+16(FP), DX
	MOVQ n+24(FP), CX
	VPBROADCASTD cvtConst<>+0(SB), Y15
	VPXOR Y14, Y14, Y14
	TESTQ CX, CX
	JZ done
loop:
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPSLLD $16, Y0, Y0
	VPSLLD $16, Y1, Y1
	NONFINITE(Y0, Y15, Y2, Y14)
	NONFINITE(Y1, Y15, Y3, Y14)
	VSUBPS (DX), Y0, Y0
	VSUBPS 32(DX), Y1, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ $32, SI
	ADDQ $64, DX
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ loop
done:
	VPTEST Y14, Y14
	SETNE ret+32(FP)
	VZEROUPPER
	RET

// func encodeBF16AVX2(dst *uint16, src *float32, n int)
// Round to nearest even; NaN keeps its sign and top bits, quieted. n is a
// multiple of 8.
TEXT ·encodeBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VPBROADCASTD cvtConst<>+0(SB), Y15  // +Inf
	VPBROADCASTD cvtConst<>+4(SB), Y13  // |x| mask
	VPBROADCASTD cvtConst<>+8(SB), Y12  // 0x7fff
	VPBROADCASTD cvtConst<>+12(SB), Y11 // 1
	VPBROADCASTD cvtConst<>+16(SB), Y10 // 0x40
	TESTQ CX, CX
	JZ done
loop:
	VMOVDQU (SI), Y0
	VPAND Y0, Y13, Y1       // |x| bits
	VPCMPGTD Y15, Y1, Y2    // NaN: |x| > +Inf
	VPSRLD $16, Y0, Y3      // b >> 16
	VPAND Y3, Y11, Y4       // its lowest bit
	VPADDD Y0, Y4, Y4
	VPADDD Y12, Y4, Y4
	VPSRLD $16, Y4, Y4      // rounded
	VPOR Y10, Y3, Y3        // quiet NaN
	VPBLENDVB Y2, Y3, Y4, Y4
	VEXTRACTI128 $1, Y4, X5
	VPACKUSDW X5, X4, X4
	VMOVDQU X4, (DI)
	ADDQ $32, SI
	ADDQ $16, DI
	SUBQ $8, CX
	JNZ loop
	VZEROUPPER
done:
	RET

// func decodeF16AVX2(dst *float32, src *uint16, n int) bool
// n is a multiple of 16.
TEXT ·decodeF16AVX2(SB), NOSPLIT, $0-25
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VPBROADCASTD cvtConst<>+0(SB), Y15
	VPXOR Y14, Y14, Y14
	TESTQ CX, CX
	JZ done
loop:
	VCVTPH2PS (SI), Y0
	VCVTPH2PS 16(SI), Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	NONFINITE(Y0, Y15, Y2, Y14)
	NONFINITE(Y1, Y15, Y3, Y14)
	ADDQ $32, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ loop
done:
	VPTEST Y14, Y14
	SETNE ret+24(FP)
	VZEROUPPER
	RET

// func encodeF16AVX2(dst *uint16, src *float32, n int)
// Round to nearest even (VCVTPS2PH with immediate rounding); n is a
// multiple of 8.
TEXT ·encodeF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JZ done
loop:
	VMOVUPS (SI), Y0
	VCVTPS2PH $0, Y0, X4
	VMOVDQU X4, (DI)
	ADDQ $32, SI
	ADDQ $16, DI
	SUBQ $8, CX
	JNZ loop
	VZEROUPPER
done:
	RET
