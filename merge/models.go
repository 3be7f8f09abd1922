package merge

import (
	"fmt"
	"math"

	"github.com/editkit/editkit/tasks"
)

// The methods below compute θ from the models directly instead of adding a
// combination of task vectors to the base: each is a methodRow.merge.

// mergeLinear is the weighted average of the models (model soups; mergekit
// linear): Σ_t w_t θ_t / Σ_t w_t, or the plain weighted sum without
// normalize.
func mergeLinear(_ *plan, c *tasks.Chunk, tp *tensorParams, dst []float32) error {
	linearAverage(dst, c.Models, tp.w, tp.normalize)
	return nil
}

// mergeSLERP interpolates spherically from the base (t = 0) to the model.
func mergeSLERP(_ *plan, c *tasks.Chunk, tp *tensorParams, dst []float32) error {
	slerp(dst, c.Base, c.Models[0], tp.t)
	return nil
}

// mergePassthrough copies the one model's tensor, times its scale when one
// is given (mergekit passthrough).
func mergePassthrough(_ *plan, c *tasks.Chunk, tp *tensorParams, dst []float32) error {
	copy(dst, c.Models[0])
	if len(tp.scale) > 0 && !math.IsNaN(tp.scale[0]) {
		s := float32(tp.scale[0])
		for i := range dst {
			dst[i] *= s
		}
	}
	return nil
}

// mergeModelStock merges per tensor (or per row with filter_wise):
// θ = t · mean_t θ_t + (1 − t) θ_0 with t = N c / (1 + (N−1) c) from the
// mean pairwise cosine c of the task vectors (Jang et al. 2024; mergekit
// model_stock).
func mergeModelStock(_ *plan, c *tasks.Chunk, tp *tensorParams, dst []float32) error {
	row := len(dst)
	if tp.filterWise && len(c.Tensor.Shape) > 1 {
		row = int(c.Tensor.Shape[len(c.Tensor.Shape)-1])
	}
	n := len(c.Models)
	rowTaus := make([][]float32, n)
	for start := 0; start < len(dst); start += max(row, 1) {
		end := start + row
		for i := range rowTaus {
			rowTaus[i] = c.Taus[i][start:end]
		}
		cos := meanPairCosine(rowTaus)
		if 1+float64(n-1)*cos == 0 {
			return fmt.Errorf("model_stock: tensor %q: the task vectors' mean cosine is %v = −1/(N−1), where the ratio N c/(1+(N−1)c) is undefined", c.Tensor.Name, cos)
		}
		t := float32(modelStockRatio(n, cos))
		for k := start; k < end; k++ {
			var avg float32
			for _, m := range c.Models {
				avg += m[k]
			}
			avg /= float32(n)
			dst[k] = t*avg + (1-t)*c.Base[k]
		}
	}
	return nil
}

// vectors calls fn for each vector of a tensor of the given shape along one
// axis: axis −1 the last (contiguous rows), otherwise axis 0 … len−1; every
// vector is the elements at off + i·stride, i < length.
func vectors(shape []int64, axis int, fn func(off, stride, length int)) {
	total := 1
	for _, d := range shape {
		total *= int(d)
	}
	if len(shape) == 0 || total == 0 {
		if total > 0 {
			fn(0, 1, total)
		}
		return
	}
	if axis < 0 {
		axis = len(shape) - 1
	}
	length := int(shape[axis])
	inner := 1
	for _, d := range shape[axis+1:] {
		inner *= int(d)
	}
	outer := total / (length * inner)
	for o := range outer {
		for i := range inner {
			fn(o*length*inner+i, inner, length)
		}
	}
}
