package simd

import "math"

// DropRandom is DARE's random drop (Yu et al. 2024) with a counter-based
// generator: x[i] is kept, multiplied by scale, when
// uniform(z0 + i·step) < density and set to +0 otherwise, where
// uniform(z) = (mix64(z) >> 11) / 2⁵³ and mix64 is SplitMix64's finalizer.
// With z0 = key + (start+1)·step the draw of element start+i depends only
// on (key, start+i), not on how the tensor is cut into chunks.
func DropRandom(x []float32, z0, step uint64, density float64, scale float32) {
	dropRandomAt(level, x, z0, step, density, scale)
}

// Mix64 is SplitMix64's finalizer, a bijective avalanche on 64 bits.
func Mix64(z uint64) uint64 {
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	return z ^ z>>31
}

func dropRandomAt(l Level, x []float32, z0, step uint64, density float64, scale float32) {
	n := 0
	if l >= AVX2 && density > 0 && density < 1 {
		// u/2⁵³ < density ⟺ u < density·2⁵³ (exact: a power-of-two
		// scaling) ⟺ u < ⌈density·2⁵³⌉ for an integer u.
		limit := uint64(math.Ceil(density * (1 << 53)))
		if n = len(x) &^ 7; n > 0 {
			dropRandomAVX2(&x[0], n, z0, step, limit, scale)
		}
	}
	for i := n; i < len(x); i++ {
		u := float64(Mix64(z0+uint64(i)*step)>>11) / (1 << 53)
		if u < density {
			x[i] *= scale
		} else {
			x[i] = 0
		}
	}
}

// TALLMask sets mask[i] = |x[i]| > λ·|mtl[i] − x[i]| in float32 (false for
// NaN): the TALL mask of task vector x against the multi-task vector mtl
// (Wang et al. 2024, tall_masks generate_task_masks).
func TALLMask(mask []bool, x, mtl []float32, lambda float32) { tallMaskAt(level, mask, x, mtl, lambda) }

func tallMaskAt(l Level, mask []bool, x, mtl []float32, lambda float32) {
	x, mtl = x[:len(mask)], mtl[:len(mask)]
	n := 0
	if l >= AVX2 {
		if n = len(mask) &^ 7; n > 0 {
			tallMaskAVX2(&mask[0], &x[0], &mtl[0], lambda, n)
		}
	}
	for i := n; i < len(mask); i++ {
		v := x[i]
		mask[i] = float32(math.Abs(float64(v))) > lambda*float32(math.Abs(float64(mtl[i]-v)))
	}
}
