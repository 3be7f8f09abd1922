package merge

// dellaPrune is DELLA's MAGPRUNE as mergekit implements it
// (della_magprune): along axis 1 of the tensor (a 1-D tensor is one
// vector), each entry's keep probability rises linearly with the rank of
// its magnitude, from density − ε for the smallest to density + ε for the
// largest (ranks from a stable ascending sort, so equal magnitudes rank by
// index); entries are dropped by independent draws. Survivors are not
// divided by their probability: mergekit's optional L1 rescale (rescale)
// restores the norm instead. The draws come from editkit's counter-based
// stream (key, flat index), not PyTorch's generator. A vector of one entry
// gets probability density − ε, where mergekit's rank normalisation
// divides by zero.
func dellaPrune(tau []float32, shape []int64, density, epsilon float64, key uint64) {
	axis := 1
	if len(shape) < 2 {
		shape, axis = []int64{int64(len(tau))}, 0
	}
	order := make([]int, 0)
	mags := make([]float32, 0)
	vectors(shape, axis, func(off, stride, n int) {
		order = order[:0]
		mags = mags[:0]
		for i := range n {
			order = append(order, i)
			mags = append(mags, float32abs(tau[off+i*stride]))
		}
		stableSortByMagnitude(order, mags)
		for rank, i := range order {
			norm := 0.0
			if n > 1 {
				norm = float64(rank) / float64(n-1)
			}
			k := off + i*stride
			if uniform(key, int64(k)) >= density-epsilon+norm*2*epsilon {
				tau[k] = 0
			}
		}
	})
}

func float32abs(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}
