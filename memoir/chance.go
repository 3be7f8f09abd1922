package memoir

import (
	"fmt"
	"math"
)

// DefaultFalseRoutingRate is the chance routing rate the automatic
// threshold aims at: an unrelated query is routed to some stored edit at
// most 1% of the time when masks overlap as chance makes them.
const DefaultFalseRoutingRate = 0.01

// OverlapPMF is the chance distribution of the overlap |A ∧ B| of two
// independent masks of k of n features, each uniformly random: p[c] =
// C(k, c)·C(n−k, k−c)/C(n, k) for c = 0..k (hypergeometric: k draws from
// n features of which k are marked; mean k²/n). It is what MEMOIR's
// overlaps would be if TopHash's permuted top-k sets were random.
func OverlapPMF(n, k int) []float64 {
	if k < 0 || k > n {
		panic(fmt.Errorf("memoir: masks of %d of %d features", k, n))
	}
	lc := func(a, b int) float64 { // log C(a, b)
		x, _ := math.Lgamma(float64(a + 1))
		y, _ := math.Lgamma(float64(b + 1))
		z, _ := math.Lgamma(float64(a - b + 1))
		return x - y - z
	}
	p := make([]float64, k+1)
	total := lc(n, k)
	for c := max(0, 2*k-n); c <= k; c++ {
		p[c] = math.Exp(lc(k, c) + lc(n-k, k-c) - total)
	}
	return p
}

// thresholdCount is the least overlap count c with c/k ≥ τ, as BestMatch
// compares (c/k computed the same way).
func thresholdCount(k int, threshold float64) int {
	for c := 0; c <= k; c++ {
		if float64(c)/float64(k) >= threshold {
			return c
		}
	}
	return k + 1
}

// FalseRoutingRate is the chance that a query mask, independent of stored
// random masks of k of n features, reaches overlap τ with at least one of
// them, i.e. that an unrelated query is routed to an edit: with F the
// cumulative OverlapPMF and c the least count with c/k ≥ τ, 1 − F(c−1)^stored
// (given the query, the overlaps with independent uniformly random stored
// masks are independent, each hypergeometric whatever the query is).
func FalseRoutingRate(n, k, stored int, threshold float64) float64 {
	p := OverlapPMF(n, k)
	below := 0.0 // P(overlap < c)
	for i := range min(thresholdCount(k, threshold), k+1) {
		below += p[i]
	}
	return 1 - math.Pow(min(below, 1), float64(max(stored, 0)))
}

// ChanceThreshold is MEMOIR's automatic τ: the least c/k whose
// FalseRoutingRate over stored masks is at most rate, so that masks which
// overlapped only by chance would route an unrelated query with
// probability at most rate. It grows slowly with stored (the best of more
// chance overlaps is larger). For LLaMA-3-8B's 14336 features and k = 4096,
// with 1000 stored masks and rate 0.01 it is 0.3115 (c = 1276; the chance
// mean is 0.2857, the reference's fixed τ 0.4); for 768 features and k =
// 219 with 100 stored masks, 0.3881 (c = 85).
func ChanceThreshold(n, k, stored int, rate float64) float64 {
	p := OverlapPMF(n, k)
	below := 0.0
	for c := 0; c <= k; c++ {
		if 1-math.Pow(min(below, 1), float64(max(stored, 1))) <= rate {
			return float64(c) / float64(k)
		}
		below += p[c]
	}
	return 1
}

// BestOverlapPMF is the chance distribution of the best overlap count of a
// query mask over stored independent random masks (k of n features each):
// P(max = c) = F(c)^stored − F(c−1)^stored, F the cumulative OverlapPMF.
func BestOverlapPMF(n, k, stored int) []float64 {
	p := OverlapPMF(n, k)
	out := make([]float64, len(p))
	cum, prev := 0.0, 0.0
	for c, v := range p {
		cum += v
		now := math.Pow(min(cum, 1), float64(stored))
		out[c] = now - prev
		prev = now
	}
	return out
}
