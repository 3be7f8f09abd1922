package memoir

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestOverlapPMF(t *testing.T) {
	// By hand: 2 of 4 features: C(2,c)·C(2,2−c)/C(4,2) = 1/6, 4/6, 1/6.
	p := OverlapPMF(4, 2)
	for c, want := range []float64{1.0 / 6, 4.0 / 6, 1.0 / 6} {
		if math.Abs(p[c]-want) > 1e-12 {
			t.Errorf("OverlapPMF(4, 2)[%d] = %v, want %v", c, p[c], want)
		}
	}
	// Hypergeometric moments: mean k²/n, variance k·(k/n)·((n−k)/n)·((n−k)/(n−1)).
	for _, tc := range []struct{ n, k int }{{172, 49}, {768, 219}, {14336, 4096}, {10, 8}} {
		p := OverlapPMF(tc.n, tc.k)
		var sum, mean, sq float64
		for c, v := range p {
			sum += v
			mean += float64(c) * v
			sq += float64(c*c) * v
		}
		n, k := float64(tc.n), float64(tc.k)
		wantVar := k * (k / n) * ((n - k) / n) * ((n - k) / (n - 1))
		if math.Abs(sum-1) > 1e-9 || math.Abs(mean-k*k/n) > 1e-6*k || math.Abs(sq-mean*mean-wantVar) > 1e-6*k {
			t.Errorf("n %d, k %d: sum %v, mean %v (want %v), variance %v (want %v)", tc.n, tc.k, sum, mean, k*k/n, sq-mean*mean, wantVar)
		}
	}
}

func TestChanceThreshold(t *testing.T) {
	for _, tc := range []struct {
		n, k, stored int
		rate         float64
	}{{768, 219, 100, 0.01}, {768, 219, 1, 0.01}, {14336, 4096, 1000, 0.01}, {172, 49, 100, 0.05}} {
		tau := ChanceThreshold(tc.n, tc.k, tc.stored, tc.rate)
		c := thresholdCount(tc.k, tau)
		got := FalseRoutingRate(tc.n, tc.k, tc.stored, tau)
		below := FalseRoutingRate(tc.n, tc.k, tc.stored, float64(c-1)/float64(tc.k))
		t.Logf("n %d, k %d, %d stored, rate %v: τ %.4f (c = %d), false routing %.4g (%.4g at c−1)", tc.n, tc.k, tc.stored, tc.rate, tau, c, got, below)
		if got > tc.rate || below <= tc.rate || float64(c)/float64(tc.k) != tau {
			t.Errorf("τ %v: false routing %v at it, %v one count lower; want ≤ %v and > %v", tau, got, below, tc.rate, tc.rate)
		}
	}
	if a, b := ChanceThreshold(768, 219, 10, 0.01), ChanceThreshold(768, 219, 1000, 0.01); a >= b {
		t.Errorf("τ for 10 stored masks %v, for 1000 %v: more masks need a higher τ", a, b)
	}
}

// TestChanceThresholdOnRandomMasks draws random masks through TopHash (the
// top-k of Gaussian vectors, which is a uniformly random k-subset) and
// checks that the share of random queries routed to some of T random stored
// masks is the documented rate: at the automatic τ (target 1%) and at a
// lower τ whose predicted rate is large enough to check sharply.
func TestChanceThresholdOnRandomMasks(t *testing.T) {
	const n, k, stored, queries = 768, 219, 100, 4000
	h, err := NewTopHash(n, k, 42)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 8))
	random := func() Mask {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return h.Mask(v)
	}
	masks := make([]Mask, stored)
	for i := range masks {
		masks[i] = random()
	}
	auto := ChanceThreshold(n, k, stored, DefaultFalseRoutingRate)
	low := ChanceThreshold(n, k, stored, 0.3)
	routed := map[float64]int{}
	for range queries {
		q := random()
		for _, tau := range []float64{auto, low} {
			if BestMatch(q, masks, k, tau).Active {
				routed[tau]++
			}
		}
	}
	for _, tau := range []float64{auto, low} {
		want := FalseRoutingRate(n, k, stored, tau)
		got := float64(routed[tau]) / queries
		sd := math.Sqrt(want * (1 - want) / queries)
		t.Logf("τ %.4f: %d of %d random queries routed (%.4f), predicted %.4f ± %.4f", tau, routed[tau], queries, got, want, sd)
		if math.Abs(got-want) > 4*sd+0.5/queries {
			t.Errorf("τ %.4f: routed %.4f of random queries, predicted %.4f ± %.4f", tau, got, want, sd)
		}
	}
	if want := FalseRoutingRate(n, k, stored, auto); want > DefaultFalseRoutingRate {
		t.Errorf("automatic τ %v: predicted false routing %v above %v", auto, want, DefaultFalseRoutingRate)
	}
}
