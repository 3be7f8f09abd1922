package merge

import (
	"math"

	"github.com/editkit/editkit/internal/simd"
)

// The stages below are pure functions over slices: chunks of task vectors
// τ_t (taus[t]) and of the base θ_0. They are the building blocks of every
// method and are tested one by one.

// trimBelow zeroes the entries of tau with |τ| < thr: TIES's trim step
// (Yadav et al. 2023, reference topk_values_mask: keep |τ| ≥ the k-th
// smallest |τ| with k = d − int(d·density), ties at the threshold kept).
func trimBelow(tau []float32, thr float32) { simd.TrimBelow(tau, thr) }

// tiesThresholdIndex returns k (1-based) such that TIES keeps |τ| ≥ the k-th
// smallest of the d entries, or 0 when everything is kept.
func tiesThresholdIndex(d int64, density float64) int64 {
	keep := int64(float64(d) * density)
	if keep >= d {
		return 0
	}
	return d - keep
}

// dropRandom is DARE (Yu et al. 2024): each entry is dropped with
// probability p = 1 − density and the survivors are multiplied by scale
// (1/(1−p) in the paper; 1 when mergekit rescales by L1 norm afterwards).
// start is the chunk's offset in the tensor, so draws follow the element.
func dropRandom(tau []float32, key uint64, start int64, density float64, scale float32) {
	simd.DropRandom(tau, key+uint64(start+1)*golden64, golden64, density, scale)
}

// rescaleL1 multiplies masked by ‖before‖₁/‖masked‖₁, mergekit's rescale
// (rescaled_masked_tensor with eps 1e-7), given ‖before‖₁.
func rescaleL1(masked []float32, before float64) {
	after := l1(masked)
	if before < 1e-7 || after < 1e-7 {
		return
	}
	f := float32(before / after)
	for i := range masked {
		masked[i] *= f
	}
}

func l1(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += math.Abs(float64(v))
	}
	return s
}

// keepTopK keeps exactly k entries of largest |τ| (mergekit's magnitude
// sparsification: argsort(|τ|, descending)[:k]). Among equal magnitudes the
// lowest indices are kept, as a stable descending sort orders them (what
// PyTorch's GPU sort gives; its CPU argsort leaves their order unspecified).
// k ≤ 0 keeps nothing, where mergekit stops with an assertion. keep is
// scratch of len(tau).
func keepTopK(tau []float32, k int64, keep []bool) {
	n := int64(len(tau))
	if k >= n {
		return
	}
	if k <= 0 {
		clear(tau)
		return
	}
	v, _ := kthSmallestAbs(tau, n-k+1) // the k-th largest
	cut := absBits(v)
	var greater int64
	for _, x := range tau {
		if absBits(x) > cut {
			greater++
		}
	}
	quota := k - greater // entries equal to the cut that are kept
	for i, x := range tau {
		b := absBits(x)
		keep[i] = b > cut
		if b == cut && quota > 0 {
			keep[i] = true
			quota--
		}
	}
	applyKeep(tau, keep)
}

// breadcrumbs drops the nTop largest and the nBottom smallest |τ| of a
// tensor (Model Breadcrumbs as in mergekit's magnitude_outliers: density
// kept, gamma of the largest dropped). Unlike mergekit, nTop = 0 drops no
// large entries instead of zeroing the tensor (a Python slice quirk there).
func breadcrumbs(tau []float32, density, gamma float64, keep []bool) {
	n := int64(len(tau))
	target := int64(density * float64(n))
	nTop := int64(gamma * float64(n))
	nBot := n - target - nTop
	if nBot < 0 {
		nTop += nBot
		nBot = 0
	}
	rankKeep(tau, nBot, n-nTop, keep)
	applyKeep(tau, keep)
}

func applyKeep(tau []float32, keep []bool) {
	for i, k := range keep {
		if !k {
			tau[i] = 0
		}
	}
}

// signSum returns Σ_t τ_t[i] for each i into s, summed from 0 in member
// order.
func signSum(s []float32, taus [][]float32) {
	clear(s)
	for _, tau := range taus {
		simd.Add(s, s, tau)
	}
}

// countSigns returns (#positive − #negative) entries of s.
func countSigns(s []float32) int64 { return simd.SignCount(s) }

func sign(v float32) float32 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// tiesElectMerge is TIES's elect and disjoint-merge steps on trimmed task
// vectors (reference resolve_sign + disjoint_merge): the elected sign is
// sign(Σ_t τ_t), or majority where that is 0; the result is the mean (or,
// with sum, the sum) of the entries that agree with it, zeros not counted
// (simd.DisjointMerge, branch-free: the signs of real weights are close to
// random, so branches mispredict).
func tiesElectMerge(dst []float32, taus [][]float32, majority float32, sum bool) {
	simd.DisjointMerge(dst, taus, majority <= 0, sum)
}

// weightedSum sets dst = Σ_t w_t τ_t, divided by Σ_t w_t when normalize
// (mergekit without sign consensus; a divisor below 1e-8 counts as 1).
func weightedSum(dst []float32, taus [][]float32, w []float32, normalize bool) {
	// Each element sums its terms from 0 in member order.
	simd.WeightedSum(dst, taus, w)
	if !normalize {
		return
	}
	var s float32
	for _, v := range w {
		s += v
	}
	if math.Abs(float64(s)) < 1e-8 {
		return
	}
	simd.DivScalar(dst, dst, s)
}

// weightedTIES is mergekit's sign consensus ("sum"): with u_t = w_t τ_t, the
// sign is + where Σ_t u_t ≥ 0, else −; entries u_t of that sign are summed
// and, when normalize, divided by the sum of their weights (0 counts as 1).
func weightedTIES(dst []float32, taus [][]float32, w []float32, normalize bool) {
	for i := range dst {
		var total float32
		for t, tau := range taus {
			total += w[t] * tau[i]
		}
		positive := total >= 0
		var acc, div float32
		for t, tau := range taus {
			u := w[t] * tau[i]
			if (positive && u > 0) || (!positive && u < 0) {
				acc += u
				div += w[t]
			}
		}
		if normalize {
			if div == 0 {
				div = 1
			}
			acc /= div
		}
		dst[i] = acc
	}
}

// tallMask sets mask[i] = |τ_t| > λ_t |τ_MTL − τ_t| (TALL masks, Wang et
// al. 2024, tall_masks generate_task_masks: strict inequality).
func tallMask(mask []bool, tau, mtl []float32, lambda float32) { simd.TALLMask(mask, tau, mtl, lambda) }

// keepAgreed zeroes dst[i] where fewer than k of the masks are set: the
// consensus mask (Wang et al. 2024, tall_masks: entries kept by at least k
// TALL masks).
func keepAgreed(dst []float32, masks [][]bool, k int) {
	for i := range dst {
		count := 0
		for _, m := range masks {
			if m[i] {
				count++
			}
		}
		if count < k {
			dst[i] = 0
		}
	}
}

// linearAverage sets dst = Σ_t w_t θ_t / Σ_t w_t (model soup; mergekit's
// linear with normalize), or the plain weighted sum without normalize.
func linearAverage(dst []float32, models [][]float32, w []float32, normalize bool) {
	var total float32
	for _, v := range w {
		total += v
	}
	for i := range dst {
		var acc float32
		for t, m := range models {
			acc += w[t] * m[i]
		}
		if normalize {
			acc /= total
		}
		dst[i] = acc
	}
}

// modelStockRatio is Model Stock's interpolation ratio t = N c / (1 + (N−1) c)
// for N fine-tuned models whose task vectors have mean pairwise cosine c
// (Jang et al. 2024; mergekit model_stock).
func modelStockRatio(n int, c float64) float64 {
	return float64(n) * c / (1 + float64(n-1)*c)
}

// meanPairCosine is the mean over pairs i < j of cos(τ_i, τ_j), each clamped
// to [−1, 1] with the norm product floored at 1e-6, as in mergekit.
func meanPairCosine(taus [][]float32) float64 {
	var sum float64
	var pairs int
	for i := range taus {
		for j := i + 1; j < len(taus); j++ {
			var dot, ni, nj float64
			for k, a := range taus[i] {
				b := float64(taus[j][k])
				dot += float64(a) * b
				ni += float64(a) * float64(a)
				nj += b * b
			}
			c := dot / math.Max(math.Sqrt(ni)*math.Sqrt(nj), 1e-6)
			sum += math.Max(-1, math.Min(1, c))
			pairs++
		}
	}
	return sum / float64(pairs)
}

// slerp interpolates spherically between v0 (t = 0) and v1 (t = 1) as
// mergekit does: the angle comes from the normalized vectors (normalized
// only when their norm exceeds 1e-8), the interpolation applies to the
// originals, and nearly parallel vectors (|cos| > 0.9995) fall back to
// linear interpolation.
func slerp(dst, v0, v1 []float32, t float64) {
	n0, n1 := math.Sqrt(dot(v0, v0)), math.Sqrt(dot(v1, v1))
	if n0 <= 1e-8 {
		n0 = 1
	}
	if n1 <= 1e-8 {
		n1 = 1
	}
	cos := dot(v0, v1) / (n0 * n1)
	var s0, s1 float64
	if math.Abs(cos) > 0.9995 {
		s0, s1 = 1-t, t
	} else {
		theta0 := math.Acos(cos)
		sin0 := math.Sin(theta0)
		thetaT := theta0 * t
		s0 = math.Sin(theta0-thetaT) / sin0
		s1 = math.Sin(thetaT) / sin0
	}
	a, b := float32(s0), float32(s1)
	for i := range dst {
		dst[i] = a*v0[i] + b*v1[i]
	}
}

func dot(a, b []float32) float64 {
	var s float64
	for i, v := range a {
		s += float64(v) * float64(b[i])
	}
	return s
}

// linesScale is LiNeS's scaling of block ℓ of L: α + β ℓ/(L−1); tensors
// outside blocks (and a stack of a single block) get α.
func linesScale(alpha, beta float64, block, blocks int) float64 {
	if blocks <= 1 {
		return alpha
	}
	return alpha + beta*float64(block)/float64(blocks-1)
}
