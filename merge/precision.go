package merge

import (
	"math"

	"github.com/x448/float16"

	"github.com/editkit/editkit/checkpoint"
)

// mergekit's `dtype` is the type every input is converted to and the
// arithmetic runs in. editkit computes in float32; with a narrower dtype it
// rounds to that dtype wherever mergekit's computation materialises a
// tensor of it: each input (θ_0 and every θ_t), each task vector
// θ_t − θ_0, each sparsified task vector, the combined Δ, λΔ and the result
// θ_0 + λΔ. Elementwise operations on float16/bfloat16 tensors in PyTorch
// compute in float32 and round once, which is what this reproduces; inside a
// combination (Σ_t w_t τ_t and its normalisation) editkit accumulates in
// float32 and rounds the result, where PyTorch also rounds each product
// w_t τ_t. Methods that are not task arithmetic (SLERP and the other
// spherical methods, Model Stock, Arcee Fusion) see rounded inputs and
// produce a rounded result; their internals stay float32 (mergekit's SLERP
// computes in float32 numpy too). float64 computes in float32.

// rounding returns the function rounding values in place to dt's
// precision, or nil when no rounding is needed (float32, float64, unset).
func rounding(dt checkpoint.DType) func([]float32) {
	switch dt {
	case checkpoint.BF16:
		return func(x []float32) {
			for i, v := range x {
				x[i] = math.Float32frombits(uint32(checkpoint.BFloat16Bits(v)) << 16)
			}
		}
	case checkpoint.F16:
		return func(x []float32) {
			for i, v := range x {
				x[i] = float16.Fromfloat32(v).Float32()
			}
		}
	}
	return nil
}
