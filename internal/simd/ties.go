package simd

import (
	"math"
	"unsafe"
)

// TrimBelow zeroes the x[i] with |x[i]| < thr, comparing bit patterns of
// |x| and |thr| (NaN is never trimmed) and multiplying by 0 or 1, so a
// trimmed value keeps its sign: TIES's trim step.
func TrimBelow(x []float32, thr float32) { trimBelowAt(level, x, thr) }

func trimBelowAt(l Level, x []float32, thr float32) {
	t := math.Float32bits(thr) & 0x7fffffff
	n := 0
	if l >= AVX2 {
		if n = len(x) &^ 7; n > 0 {
			trimBelowAVX2(&x[0], t, n)
		}
	}
	for i, v := range x[n:] {
		// Branch-free: multiply by 1 when |x| ≥ thr, else by 0.
		keep := 1 ^ (math.Float32bits(v)&0x7fffffff-t)>>31
		x[n+i] = v * float32(keep)
	}
}

// SignCount returns Σ_i sign(x[i]): the number of positive values minus
// the number of negative ones (±0 count 0; NaN counts by its sign bit).
func SignCount(x []float32) int64 { return signCountAt(level, x) }

func signCountAt(l Level, x []float32) int64 {
	n, c := 0, int64(0)
	if l >= AVX2 {
		if n = len(x) &^ 7; n > 0 {
			c = signCountAVX2(&x[0], n)
		}
	}
	for _, v := range x[n:] {
		c += sign(v)
	}
	return c
}

// sign is the sign of v as −1, 0 or 1, without branches.
func sign(v float32) int64 {
	b := math.Float32bits(v)
	nz := int64((b&0x7fffffff + 0x7fffffff) >> 31)
	return nz - 2*nz*int64(b>>31)
}

// DisjointMerge is TIES's sign election and disjoint merge (reference
// resolve_sign + disjoint_merge): with S = Σ_t xs[t][i] summed from 0 in
// order, the elected sign is S's, or negative where S = ±0 and tieNegative
// is set; dst[i] is the sum of the non-zero xs[t][i] of the elected sign,
// in member order, divided (unless sum) by their count when above 1.
func DisjointMerge(dst []float32, xs [][]float32, tieNegative, sum bool) {
	disjointMergeAt(level, dst, xs, tieNegative, sum)
}

func disjointMergeAt(l Level, dst []float32, xs [][]float32, tieNegative, sum bool) {
	for _, x := range xs {
		_ = x[:len(dst)] // every member covers dst
	}
	tieNeg := uint32(0)
	if tieNegative {
		tieNeg = 1
	}
	n := 0
	if l >= AVX2 && len(xs) > 0 {
		if n = len(dst) &^ 7; n > 0 {
			disjointMergeAVX2(&dst[0], unsafe.SliceData(xs), len(xs), n, -int32(tieNeg), sum)
		}
	}
	for i := n; i < len(dst); i++ {
		var s float32
		for _, x := range xs {
			s += x[i]
		}
		// Branch-free: the signs of real weights are close to random, so
		// branches mispredict.
		b := math.Float32bits(s)
		nz := (b&0x7fffffff + 0x7fffffff) >> 31 // 1 when s ≠ 0
		eNeg := nz&(b>>31) | (1-nz)&tieNeg
		var acc float32
		var count uint32
		for _, x := range xs {
			v := math.Float32bits(x[i])
			g := (v&0x7fffffff + 0x7fffffff) >> 31 & (1 ^ (v>>31 ^ eNeg))
			acc += x[i] * float32(g)
			count += g
		}
		if !sum && count > 1 {
			acc /= float32(count)
		}
		dst[i] = acc
	}
}

// WindowCount is the streaming count of TIES's whole-model threshold pass
// (see merge/threshold.go). Member t's window is the coarse bins (high 16
// bits of |x| as a float32 bit pattern) [lo[t], lo[t]+width[t]). For every
// i it adds to below[t] the members' values below their window, sets bit
// i%8 of undecided[i/8] when some member's window holds x_t[i] (an
// undecided value), and returns Σ sign(Σ_t kept x_t[i]) over the other i, a
// value being kept when above its window and the sum running from 0 in
// member order. Every member has n values; undecided holds ⌈n/8⌉ bytes.
func WindowCount(xs [][]float32, n int, lo, width []uint32, below []int64, undecided []uint8) int64 {
	return windowCountAt(level, xs, n, lo, width, below, undecided)
}

func windowCountAt(l Level, xs [][]float32, n int, lo, width []uint32, below []int64, undecided []uint8) int64 {
	for _, x := range xs {
		_ = x[:n] // every member covers n values
	}
	undecided = undecided[:(n+7)/8]
	lo, width, below = lo[:len(xs)], width[:len(xs)], below[:len(xs)]
	var sure int64
	done := 0
	if l >= AVX2 && len(xs) > 0 {
		if done = n &^ 7; done > 0 {
			var stack [8 * 16]int32
			lanes := stack[:]
			if len(xs) > 16 {
				lanes = make([]int32, 8*len(xs))
			}
			sure = windowCountAVX2(unsafe.SliceData(xs), len(xs), done, &lo[0], &width[0], &lanes[0], &undecided[0])
			for t := range xs {
				for _, c := range lanes[8*t : 8*t+8] {
					below[t] += int64(c)
				}
			}
		}
	}
	for i := done; i < n; i++ {
		if i%8 == 0 {
			undecided[i/8] = 0
		}
		var kept float32
		und := false
		for t, x := range xs {
			v := x[i]
			bin := math.Float32bits(v) & 0x7fffffff >> 16
			switch {
			case bin < lo[t]:
				below[t]++
				kept += v * 0
			case bin-lo[t] < width[t]:
				und = true
				kept += v * 0
			default:
				kept += v
			}
		}
		if und {
			undecided[i/8] |= 1 << (i % 8)
		} else {
			sure += sign(kept)
		}
	}
	return sure
}
