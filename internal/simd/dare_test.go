package simd

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestDropRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	const step = 0x9e3779b97f4a7c15
	for _, density := range []float64{0, 0.1, 0.5, 0.9, 1, 0x1p-53, 1 - 0x1p-53} {
		for _, n := range []int{0, 1, 7, 8, 9, 1000} {
			x := specialValues(rng, n)
			z0 := rng.Uint64()
			scale := float32(1 / max(density, 0.01))
			// a direct transcription of the definition
			want := slices.Clone(x)
			kept := 0
			for i := range want {
				if float64(Mix64(z0+uint64(i)*step)>>11)/(1<<53) < density {
					want[i] *= scale
					kept++
				} else {
					want[i] = 0
				}
			}
			for _, l := range levels() {
				got := slices.Clone(x)
				dropRandomAt(l, got, z0, step, density, scale)
				for i := range got {
					if !sameBits(got[i], want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
						t.Fatalf("%s density %v n %d: x[%d] = %v, want %v", l, density, n, i, got[i], want[i])
					}
				}
			}
			if n == 1000 && density == 0.5 && (kept < 430 || kept > 570) {
				t.Errorf("kept %d of 1000 at density 0.5", kept)
			}
		}
	}
	// The limit at the boundary: u = ⌈d·2⁵³⌉ − 1 is kept, u = ⌈d·2⁵³⌉ is not.
	for _, d := range []float64{0.3, 0.5, 0.7} {
		limit := uint64(math.Ceil(d * (1 << 53)))
		if !(float64(limit-1)/(1<<53) < d) || float64(limit)/(1<<53) < d {
			t.Fatalf("limit %d wrong for density %v", limit, d)
		}
	}
}

func TestTALLMask(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	for _, n := range []int{0, 1, 7, 8, 9, 1000} {
		x, mtl := specialValues(rng, n), specialValues(rng, n)
		for i := range mtl {
			if i%3 == 0 {
				mtl[i] = x[i] * 2 // some masks set
			}
		}
		lambda := float32(0.4)
		want := make([]bool, n)
		for i := range want {
			want[i] = math.Abs(float64(x[i])) > float64(lambda*float32(math.Abs(float64(mtl[i]-x[i]))))
		}
		for _, l := range levels() {
			got := make([]bool, n)
			tallMaskAt(l, got, x, mtl, lambda)
			if !slices.Equal(got, want) {
				t.Fatalf("%s n %d: masks differ", l, n)
			}
		}
	}
}
