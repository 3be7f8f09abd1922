package simd

import (
	"math"

	"github.com/x448/float16"
)

// Conversions between float32 and bfloat16 or IEEE float16 bit patterns.
// Every level gives the same bits: bfloat16 → float32 is exact, float32 →
// bfloat16 rounds to nearest even (NaN keeps its sign and top bits,
// quieted), and the float16 conversions round as IEEE 754 does (the x448
// float16 package in pure Go, F16C instructions with SIMD).

// DecodeBF16 sets dst[i] to the value of the bfloat16 src[i] and reports
// whether any is NaN or ±Inf.
func DecodeBF16(dst []float32, src []uint16) bool { return decodeBF16At(level, dst, src) }

// DecodeBF16Sub sets dst[i] to the value of the bfloat16 src[i] minus
// base[i] and reports whether any src[i] is NaN or ±Inf.
func DecodeBF16Sub(dst []float32, src []uint16, base []float32) bool {
	return decodeBF16SubAt(level, dst, src, base)
}

// EncodeBF16 sets dst[i] to src[i] rounded to bfloat16.
func EncodeBF16(dst []uint16, src []float32) { encodeBF16At(level, dst, src) }

// DecodeF16 sets dst[i] to the value of the float16 src[i] and reports
// whether any is NaN or ±Inf.
func DecodeF16(dst []float32, src []uint16) bool { return decodeF16At(level, dst, src) }

// EncodeF16 sets dst[i] to src[i] rounded to float16.
func EncodeF16(dst []uint16, src []float32) { encodeF16At(level, dst, src) }

// BF16 rounds v to bfloat16 like EncodeBF16.
func BF16(v float32) uint16 {
	b := math.Float32bits(v)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40 // quiet NaN, sign kept
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// NonFinite reports whether the bits of a float32 are NaN or ±Inf.
func nonFinite32(b uint32) bool { return b&0x7f800000 == 0x7f800000 }

func decodeBF16At(l Level, dst []float32, src []uint16) bool {
	src = src[:len(dst)]
	n, bad := 0, false
	if l >= AVX2 {
		if n = len(dst) &^ 15; n > 0 {
			bad = decodeBF16AVX2(&dst[0], &src[0], n)
		}
	}
	for i, h := range src[n:] {
		b := uint32(h) << 16
		bad = bad || nonFinite32(b)
		dst[n+i] = math.Float32frombits(b)
	}
	return bad
}

func decodeBF16SubAt(l Level, dst []float32, src []uint16, base []float32) bool {
	src, base = src[:len(dst)], base[:len(dst)]
	n, bad := 0, false
	if l >= AVX2 {
		if n = len(dst) &^ 15; n > 0 {
			bad = decodeBF16SubAVX2(&dst[0], &src[0], &base[0], n)
		}
	}
	for i, h := range src[n:] {
		b := uint32(h) << 16
		bad = bad || nonFinite32(b)
		dst[n+i] = math.Float32frombits(b) - base[n+i]
	}
	return bad
}

func encodeBF16At(l Level, dst []uint16, src []float32) {
	dst = dst[:len(src)]
	n := 0
	if l >= AVX2 {
		if n = len(src) &^ 7; n > 0 {
			encodeBF16AVX2(&dst[0], &src[0], n)
		}
	}
	for i, v := range src[n:] {
		dst[n+i] = BF16(v)
	}
}

func decodeF16At(l Level, dst []float32, src []uint16) bool {
	src = src[:len(dst)]
	n, bad := 0, false
	if l >= AVX2 {
		if n = len(dst) &^ 15; n > 0 {
			bad = decodeF16AVX2(&dst[0], &src[0], n)
		}
	}
	for i, h := range src[n:] {
		v := float16.Frombits(h).Float32()
		bad = bad || nonFinite32(math.Float32bits(v))
		dst[n+i] = v
	}
	return bad
}

func encodeF16At(l Level, dst []uint16, src []float32) {
	dst = dst[:len(src)]
	n := 0
	if l >= AVX2 {
		if n = len(src) &^ 7; n > 0 {
			encodeF16AVX2(&dst[0], &src[0], n)
		}
	}
	for i, v := range src[n:] {
		dst[n+i] = float16.Fromfloat32(v).Bits()
	}
}
