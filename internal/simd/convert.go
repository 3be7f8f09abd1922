package simd

import "math"

// EncodeBF16 sets dst[i] to src[i] rounded to bfloat16 (nearest, ties to
// even; NaNs stay NaN, quieted, sign kept), as PyTorch's .to(bfloat16).
func EncodeBF16(dst []uint16, src []float32) {
	encodeBF16Go(dst, src)
}

func encodeBF16Go(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = BF16(v)
	}
}

// BF16 rounds v to bfloat16 like EncodeBF16.
func BF16(v float32) uint16 {
	b := math.Float32bits(v)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40 // quiet NaN, sign kept
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}
