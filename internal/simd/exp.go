package simd

import "math"

// Exp sets dst[i] = exp(src[i]) (dst may alias src). With SIMD it reduces
// x = n·ln2 + r and evaluates eʳ with a degree-6 polynomial fitted here for
// relative error (3.3e-9 in exact arithmetic): at most about 1.3 ulp in
// float32 with fused multiply-adds, subnormal results included; exp is +Inf
// above 88.72 and 0 below −103.97, NaN stays NaN. The pure-Go version
// rounds math.Exp.
func Exp(dst, src []float32) {
	expAt(level, dst, src)
}

func expAt(l Level, dst, src []float32) {
	src = src[:len(dst)]
	switch l {
	case AVX512:
		vectorized(dst, src, 16, expAVX512)
	case AVX2:
		vectorized(dst, src, 8, expAVX2)
	default:
		for i, v := range src {
			dst[i] = float32(math.Exp(float64(v)))
		}
	}
}

// Logistic sets dst[i] = 1/(1 + exp(−src[i])) (dst may alias src),
// computed as 1/(1 + e) for x ≥ 0 and e/(1 + e) for x < 0 with
// e = exp(−|x|), as simplego does, so that it keeps its relative accuracy
// for large |x|.
func Logistic(dst, src []float32) {
	logisticAt(level, dst, src)
}

func logisticAt(l Level, dst, src []float32) {
	src = src[:len(dst)]
	var e [256]float32
	for lo := 0; lo < len(src); lo += len(e) {
		x := src[lo:min(lo+len(e), len(src))]
		ex := e[:len(x)]
		for i, v := range x {
			ex[i] = -float32(math.Abs(float64(v)))
		}
		expAt(l, ex, ex)
		d := dst[lo : lo+len(x)]
		for i, v := range x {
			if v >= 0 {
				d[i] = 1 / (1 + ex[i])
			} else {
				d[i] = ex[i] / (1 + ex[i])
			}
		}
	}
}
