package merge

import (
	"math"

	"github.com/editkit/editkit/tasks"
)

// combineSCE is mergekit's sce (Select, Calculate, Erase; Wan et al. 2024,
// FuseChat) on whole tensors:
//
//  1. select: with select_topk < 1, keep the int(select_topk · m) entries
//     whose variance across the task vectors is largest, m the number of
//     entries with non-zero variance (lowest index first among equal
//     variances, as a stable sort orders them), in every task vector;
//  2. calculate: weight task vector t by mean(τ_t²) / Σ_s mean(τ_s²)
//     (1/N each when that sum is below 1e-6);
//  3. erase: keep τ_t's entries whose sign agrees with sign(Σ_t τ_t) (0
//     counting as +), and divide the weighted sum of the kept entries by
//     the sum of their weights (at least 1e-6).
func combineSCE(p *plan, _ int, c *tasks.Chunk, tp *tensorParams, dst []float32) error {
	taus := c.Taus
	n := len(taus)
	size := len(dst)
	if tp.selectTopK < 1 {
		sceSelect(taus, tp.selectTopK)
	}
	w := make([]float64, n)
	var total float64
	for i, tau := range taus {
		w[i] = dot(tau, tau) / float64(size)
		total += w[i]
	}
	for i := range w {
		if math.Abs(total) < 1e-6 {
			w[i] = 1 / float64(n)
		} else {
			w[i] /= total
		}
	}
	for k := range dst {
		var s float32
		for _, tau := range taus {
			s += tau[k]
		}
		positive := s >= 0
		var acc, div float64
		for i, tau := range taus {
			v := tau[k]
			if (positive && v > 0) || (!positive && v < 0) {
				acc += float64(v) * w[i]
				div += w[i]
			}
		}
		dst[k] = float32(acc / math.Max(div, 1e-6))
	}
	if p.round != nil {
		p.round(dst)
	}
	return nil
}

// sceSelect zeroes, in every task vector, the entries outside the top
// fraction by variance across the vectors (population variance).
func sceSelect(taus [][]float32, fraction float64) {
	size := len(taus[0])
	if fraction <= 0 {
		for _, tau := range taus {
			clear(tau)
		}
		return
	}
	v := make([]float32, size)
	var nonzero int64
	for k := range v {
		var mean float64
		for _, tau := range taus {
			mean += float64(tau[k])
		}
		mean /= float64(len(taus))
		var s float64
		for _, tau := range taus {
			d := float64(tau[k]) - mean
			s += d * d
		}
		v[k] = float32(s / float64(len(taus)))
		if v[k] != 0 {
			nonzero++
		}
	}
	keep := make([]bool, size)
	k := int64(float64(nonzero) * fraction)
	if k > 0 {
		keepTopK(v, k, keep)
	}
	for i, x := range v {
		if k == 0 || x == 0 { // dropped, or of zero variance
			for _, tau := range taus {
				tau[i] = 0
			}
		}
	}
}
