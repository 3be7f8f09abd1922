package simd

import (
	"math"
	"math/rand/v2"
	"testing"
)

// ulps is |got − want| in units of the spacing of float32 at want.
func ulps(got float32, want float64) float64 {
	w := float32(want)
	spacing := math.Nextafter32(float32(math.Abs(float64(w))), float32(math.Inf(1))) - float32(math.Abs(float64(w)))
	return math.Abs(float64(got)-want) / float64(spacing)
}

func TestErf(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var x []float32
	for range 200000 {
		x = append(x, float32(rng.Float64()*9-4.5))
		x = append(x, float32(math.Pow(10, rng.Float64()*40-38))*float32(1-2*rng.IntN(2)))
	}
	x = append(x, 0, float32(math.Copysign(0, -1)), 1e-45, -1e-45, 3.92, -3.92, 3.9199998, 10, -10,
		float32(math.MaxFloat32), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()))
	for _, l := range levels() {
		for _, n := range []int{len(x), 1, 7, 17, 33} { // tails of every length
			got := make([]float32, n)
			erfAt(l, got, x[len(x)-n:])
			worst := 0.0
			for i, g := range got {
				v := x[len(x)-n+i]
				want := math.Erf(float64(v))
				switch {
				case math.IsNaN(want):
					if !math.IsNaN(float64(g)) {
						t.Fatalf("%s: erf(NaN) = %v", l, g)
					}
					continue
				case want == 0 && math.Float32bits(g) != math.Float32bits(v):
					t.Fatalf("%s: erf(%v) = %v, want the same signed zero", l, v, g)
				}
				if u := ulps(g, want); u > worst {
					worst = u
					if u > 6 {
						t.Fatalf("%s: erf(%v) = %v, want %v (%.1f ulp)", l, v, g, want, u)
					}
				}
			}
			if n == len(x) {
				t.Logf("%s: worst error %.2f ulp", l, worst)
			}
		}
		// In place.
		y := append([]float32(nil), x[:100]...)
		erfAt(l, y, y)
		for i, v := range y {
			if u := ulps(v, math.Erf(float64(x[i]))); u > 6 {
				t.Fatalf("%s in place: erf(%v) = %v", l, x[i], v)
			}
		}
	}
}
