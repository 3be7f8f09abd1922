package simd

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func specialValues(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		switch rng.IntN(20) {
		case 0:
			x[i] = []float32{0, float32(math.Copysign(0, -1)), float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1e-40, math.MaxFloat32}[rng.IntN(7)]
		default:
			x[i] = float32(rng.NormFloat64() * 100)
		}
	}
	return x
}

func sameBits(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }

// Every level gives the scalar Go result, bit for bit, on every length
// (tails included), in place too.
func TestArithmetic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	scalar := func(op int, x, y float32) float32 {
		switch op {
		case opAdd:
			return x + y
		case opSub:
			return x - y
		case opMul:
			return x * y
		}
		return x / y
	}
	for _, l := range levels() {
		for _, n := range []int{0, 1, 7, 8, 15, 16, 17, 33, 1000} {
			a, b := specialValues(rng, n), specialValues(rng, n)
			s := float32(rng.NormFloat64())
			for op := opAdd; op <= opDiv; op++ {
				dst := make([]float32, n)
				binaryVV(l, op, dst, a, b)
				for i := range dst {
					if w := scalar(op, a[i], b[i]); !sameBits(dst[i], w) {
						t.Fatalf("%s op %d n %d: vv[%d] = %v, want %v", l, op, n, i, dst[i], w)
					}
				}
				binaryVS(l, op, dst, a, s)
				for i := range dst {
					if w := scalar(op, a[i], s); !sameBits(dst[i], w) {
						t.Fatalf("%s op %d n %d: vs[%d] = %v, want %v", l, op, n, i, dst[i], w)
					}
				}
				if op == opSub || op == opDiv {
					inPlace := append([]float32(nil), b...)
					binarySV(l, op, inPlace, s, inPlace)
					for i := range dst {
						if w := scalar(op, s, b[i]); !sameBits(inPlace[i], w) {
							t.Fatalf("%s op %d n %d: sv[%d] = %v, want %v", l, op, n, i, inPlace[i], w)
						}
					}
				}
			}
		}
	}
}

func TestMax(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	negZero := float32(math.Copysign(0, -1))
	cases := [][]float32{nil, {negZero}, {negZero, 0}, {0, negZero}, {negZero, -1, negZero}, {1, float32(math.NaN()), 2}}
	for n := range 40 {
		cases = append(cases, specialValues(rng, n))
	}
	for n := 8; n < 40; n++ { // zeros of both signs and no NaN, through the vector loop
		c := make([]float32, n)
		for i := range c {
			c[i] = negZero
			if rng.IntN(3) == 0 {
				c[i] = -float32(rng.Float64())
			}
		}
		cases = append(cases, c)
		if rng.IntN(2) == 0 {
			c = slices.Clone(c)
			c[rng.IntN(n)] = 0
			cases = append(cases, c)
		}
	}
	for _, c := range cases {
		want := float32(math.Inf(-1))
		for _, v := range c {
			want = max(want, v)
		}
		for _, l := range levels() {
			if got := maxAt(l, c); !sameBits(got, want) && !(got != got && want != want) {
				t.Fatalf("%s: Max(%v) = %v, want %v", l, c, got, want)
			}
		}
	}
}

func TestScaledAndNonFinite(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for _, l := range levels() {
		for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 100, 1000} {
			x, d := specialValues(rng, n), specialValues(rng, n)
			w := float32(rng.NormFloat64())
			got := append([]float32(nil), d...)
			scaleAddAt(l, got, x, w)
			for i := range got {
				if want := x[i] + w*d[i]; !sameBits(got[i], want) && !(got[i] != got[i] && want != want) {
					t.Fatalf("%s n %d: ScaleAdd[%d] = %v, want %v", l, n, i, got[i], want)
				}
			}
			// the first non-finite value wherever it is
			clean := make([]float32, n)
			if firstAbsAtLeastAt(l, clean, 0x7f800000) != -1 {
				t.Fatalf("%s n %d: non-finite found in zeros", l, n)
			}
			for pos := 0; pos < n; pos += 1 + pos/3 {
				for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
					clean[pos] = bad
					if n > pos+5 {
						clean[pos+5] = float32(math.Inf(1))
					}
					if got := firstAbsAtLeastAt(l, clean, 0x7f800000); got != pos {
						t.Fatalf("%s n %d: first non-finite at %d, want %d", l, n, got, pos)
					}
					clear(clean)
				}
			}
		}
	}
}

func TestWeightedSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	for _, n := range []int{0, 1, 7, 8, 9, 100} {
		for _, members := range []int{0, 1, 2, 5} {
			xs := make([][]float32, members)
			w := make([]float32, members)
			for i := range xs {
				xs[i] = specialValues(rng, n)
				w[i] = float32(rng.NormFloat64())
			}
			want := make([]float32, n)
			for i := range xs {
				for e := range want {
					want[e] += w[i] * xs[i][e]
				}
			}
			for _, l := range levels() {
				got := specialValues(rng, n) // overwritten
				weightedSumAt(l, got, xs, w)
				for i := range got {
					if !sameBits(got[i], want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
						t.Fatalf("%s n %d, %d members: [%d] = %v, want %v", l, n, members, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// A limit below +Inf: the first |x| at least 65520 (float16's overflow).
func TestFirstAbsAtLeast(t *testing.T) {
	limit := math.Float32bits(65520)
	for _, l := range levels() {
		for _, n := range []int{0, 1, 31, 32, 33, 100} {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(i) * 100 // up to 9900
			}
			if got := firstAbsAtLeastAt(l, x, limit); got != -1 {
				t.Fatalf("%s n %d: %d, want -1", l, n, got)
			}
			for pos := 0; pos < n; pos += 7 {
				y := slices.Clone(x)
				y[pos] = -65520
				if pos+3 < n {
					y[pos+3] = float32(math.NaN())
				}
				if got := firstAbsAtLeastAt(l, y, limit); got != pos {
					t.Fatalf("%s n %d: %d, want %d", l, n, got, pos)
				}
				y[pos] = math.Nextafter32(65520, 0)
				if want := min(pos+3, n); want < n {
					if got := firstAbsAtLeastAt(l, y, limit); got != want {
						t.Fatalf("%s n %d: %d, want %d (the NaN)", l, n, got, want)
					}
				}
			}
		}
	}
}
