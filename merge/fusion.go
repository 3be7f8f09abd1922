package merge

import (
	"math"
	"slices"

	"github.com/editkit/editkit/tasks"
)

// mergeArceeFusion is mergekit's arcee_fusion between the base and one
// model. Each entry's importance is |θ − θ_0| times the KL divergence
// Σ p log(p/q) of its row, p = softmax(θ row) + 1e-8 and
// q = softmax(θ_0 row) + 1e-8 over the last axis (the whole vector for a 1-D
// tensor). Entries whose importance reaches median + 1.5·IQR of the
// tensor's importances take the model's value, the others keep the base's.
// Quantiles are order statistics at index ⌊q·(n−1)⌋ of the sorted
// importances; mergekit computes them on a random sample of 10^6 entries
// for larger tensors, editkit on all of them (so the result is
// deterministic). Importances are computed in float64.
func mergeArceeFusion(_ *plan, c *tasks.Chunk, _ *tensorParams, dst []float32) error {
	base, model := c.Base, c.Models[0]
	imp := make([]float64, len(dst))
	vectors(c.Tensor.Shape, -1, func(off, _, n int) {
		kl := rowKL(model[off:off+n], base[off:off+n])
		for i := off; i < off+n; i++ {
			imp[i] = math.Abs(float64(model[i])-float64(base[i])) * kl
		}
	})
	thr := fusionThreshold(imp)
	for i := range dst {
		if imp[i] >= thr {
			dst[i] = base[i] + (model[i] - base[i])
		} else {
			dst[i] = base[i]
		}
	}
	return nil
}

// rowKL is Σ p log(p/q) with p = softmax(a) + 1e-8, q = softmax(b) + 1e-8.
func rowKL(a, b []float32) float64 {
	pa, pb := softmax64(a), softmax64(b)
	var kl float64
	for i := range pa {
		p, q := pa[i]+1e-8, pb[i]+1e-8
		kl += p * math.Log(p/q)
	}
	return kl
}

func softmax64(x []float32) []float64 {
	out := make([]float64, len(x))
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	var s float64
	for i, v := range x {
		out[i] = math.Exp(float64(v) - m)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

// fusionThreshold is median + 1.5·(q3 − q1) of the values, each quantile
// the sorted value at index ⌊q·(n−1)⌋.
func fusionThreshold(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	at := func(q float64) float64 { return s[int(q*float64(len(s)-1))] }
	return at(0.5) + 1.5*(at(0.75)-at(0.25))
}
