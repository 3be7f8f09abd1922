package simd

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestExp(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var x []float32
	for range 200000 {
		x = append(x, float32(rng.Float64()*200-105))
		x = append(x, float32(rng.NormFloat64()*3))
	}
	x = append(x, 0, float32(math.Copysign(0, -1)), 1e-45, -1e-45, 88.72, 88.7228, 88.73, -87.3, -103.9, -104, -150,
		float32(math.MaxFloat32), -float32(math.MaxFloat32), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()))
	for _, l := range levels() {
		for _, n := range []int{len(x), 1, 7, 17, 33} {
			got := make([]float32, n)
			expAt(l, got, x[len(x)-n:])
			worst := 0.0
			for i, g := range got {
				v := x[len(x)-n+i]
				want := math.Exp(float64(v))
				if math.IsNaN(want) {
					if !math.IsNaN(float64(g)) {
						t.Fatalf("%s: exp(NaN) = %v", l, g)
					}
					continue
				}
				var u float64
				switch w := float32(want); {
				case math.IsInf(float64(w), 1):
					if !math.IsInf(float64(g), 1) {
						t.Fatalf("%s: exp(%v) = %v, want +Inf", l, v, g)
					}
				case w < 0x1p-126: // subnormal or 0: absolute error in units of the smallest subnormal
					u = math.Abs(float64(g)-want) / 0x1p-149
				default:
					u = ulps(g, want)
				}
				if u > worst {
					worst = u
					if u > 2 {
						t.Fatalf("%s: exp(%v) = %v, want %v (%.2f ulp)", l, v, g, want, u)
					}
				}
			}
			if n == len(x) {
				t.Logf("%s: worst error %.2f ulp", l, worst)
			}
		}
	}
}

func TestLogistic(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var x []float32
	for range 100000 {
		x = append(x, float32(rng.NormFloat64()*10))
	}
	x = append(x, 0, float32(math.Copysign(0, -1)), 100, -100, -150, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()))
	for _, l := range levels() {
		got := make([]float32, len(x))
		logisticAt(l, got, x)
		for i, g := range got {
			v := float64(x[i])
			var want float64
			if v >= 0 {
				want = 1 / (1 + math.Exp(-v))
			} else {
				want = math.Exp(v) / (1 + math.Exp(v))
			}
			if math.IsNaN(want) {
				if !math.IsNaN(float64(g)) {
					t.Fatalf("%s: logistic(NaN) = %v", l, g)
				}
				continue
			}
			if float32(want) < 0x1p-126 { // subnormal: absolute error
				if math.Abs(float64(g)-want) > 3*0x1p-149 {
					t.Fatalf("%s: logistic(%v) = %v, want %v", l, v, g, want)
				}
				continue
			}
			if u := ulps(g, want); u > 3 {
				t.Fatalf("%s: logistic(%v) = %v, want %v (%.2f ulp)", l, v, g, want, u)
			}
		}
	}
}
