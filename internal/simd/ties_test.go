package simd

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// tiesValues are task-vector-like values with exact zeros of both signs,
// ties of magnitude and the odd NaN or ±Inf.
func tiesValues(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		switch rng.IntN(30) {
		case 0:
			x[i] = 0
		case 1:
			x[i] = float32(math.Copysign(0, -1))
		case 2:
			x[i] = float32(math.Copysign(1.0/256, rng.Float64()-0.5))
		case 3:
			if rng.IntN(10) == 0 {
				x[i] = []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}[rng.IntN(3)]
			}
		default:
			x[i] = float32(rng.NormFloat64() * 0.01)
		}
	}
	return x
}

// TestTIESKernels checks each SIMD level against the Generic one, bit for
// bit, and the Generic one against a direct transcription of the
// definitions (written with branches).
func TestTIESKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	for _, n := range []int{0, 1, 7, 8, 9, 100, 1031} {
		for _, members := range []int{1, 2, 3, 5} {
			xs := make([][]float32, members)
			for i := range xs {
				xs[i] = tiesValues(rng, n)
			}
			thr := float32(1.0 / 256)
			for _, l := range levels() {
				// TrimBelow
				for _, x := range xs {
					got := slices.Clone(x)
					trimBelowAt(l, got, thr)
					for i, v := range x {
						want := v
						if math.Abs(float64(v)) < float64(thr) {
							want = v * 0
						}
						if !sameBits(got[i], want) && !(want != want && got[i] != got[i]) {
							t.Fatalf("%s: TrimBelow(%v) = %v, want %v", l, v, got[i], want)
						}
					}
					var want int64
					for _, v := range x {
						switch {
						case v != v:
							if math.Signbit(float64(v)) {
								want--
							} else {
								want++
							}
						case v > 0:
							want++
						case v < 0:
							want--
						}
					}
					if got := signCountAt(l, x); got != want {
						t.Fatalf("%s: SignCount = %d, want %d", l, got, want)
					}
				}
				// DisjointMerge
				for _, tie := range []bool{false, true} {
					for _, sum := range []bool{false, true} {
						got := make([]float32, n)
						disjointMergeAt(l, got, slices.Clone(xs), tie, sum)
						for i := range got {
							var s float32
							for _, x := range xs {
								s += x[i]
							}
							neg := s < 0 || (s != s && math.Signbit(float64(s))) || (s == 0 && tie)
							var acc float32
							count := 0
							for _, x := range xs {
								v := x[i]
								if v == 0 {
									continue
								}
								if vNeg := math.Signbit(float64(v)); vNeg == neg {
									acc += v
									count++
								} else {
									acc += v * 0
								}
							}
							if !sum && count > 1 {
								acc /= float32(count)
							}
							if !sameBits(got[i], acc) && !(acc != acc && got[i] != got[i]) {
								t.Fatalf("%s tie=%v sum=%v: DisjointMerge[%d] = %v, want %v", l, tie, sum, i, got[i], acc)
							}
						}
					}
				}
			}
		}
	}
}

func TestWindowCount(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, n := range []int{0, 1, 7, 8, 9, 200, 1031} {
		for _, members := range []int{1, 2, 4, 17} {
			xs := make([][]float32, members)
			lo := make([]uint32, members)
			width := make([]uint32, members)
			for i := range xs {
				xs[i] = tiesValues(rng, n)
				if i%3 == 2 {
					continue // {0, 0}: a member kept whole
				}
				lo[i] = math.Float32bits(1.0/256)>>16 - uint32(rng.IntN(2))
				width[i] = 1 + uint32(rng.IntN(2))
			}
			wantBelow := make([]int64, members)
			wantUnd := make([]uint8, (n+7)/8)
			var wantSure int64
			for e := range n {
				var kept float32
				for i, x := range xs {
					bin := math.Float32bits(x[e]) & 0x7fffffff >> 16
					switch {
					case bin < lo[i]:
						wantBelow[i]++
						kept += x[e] * 0
					case bin < lo[i]+width[i]:
						wantUnd[e/8] |= 1 << (e % 8)
						kept += x[e] * 0
					default:
						kept += x[e]
					}
				}
				if wantUnd[e/8]&(1<<(e%8)) == 0 {
					switch {
					case kept > 0 || (kept != kept && !math.Signbit(float64(kept))):
						wantSure++
					case kept < 0 || kept != kept:
						wantSure--
					}
				}
			}
			for _, l := range levels() {
				below := make([]int64, members)
				und := make([]uint8, (n+7)/8)
				sure := windowCountAt(l, xs, n, lo, width, below, und)
				if sure != wantSure || !slices.Equal(below, wantBelow) || !slices.Equal(und, wantUnd) {
					t.Fatalf("%s, n %d, %d members: sure %d below %v, want %d %v (undecided equal: %v)",
						l, n, members, sure, below, wantSure, wantBelow, slices.Equal(und, wantUnd))
				}
			}
		}
	}
}
