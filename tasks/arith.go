package tasks

import (
	"fmt"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/internal/simd"
)

// Combine sets dst = base + scale · Σ_i w_i τ_i elementwise, summing in
// member order in float32 from 0, each product rounded before it is added
// (base may be nil for a pure task vector). This is task arithmetic's
// θ_0 + λ Σ_t τ_t (Ilharco et al. 2023, eq. 1).
func Combine(dst, base []float32, taus [][]float32, w []float32, scale float32) {
	simd.WeightedSum(dst, taus, w)
	if base != nil {
		simd.ScaleAdd(dst, base, scale)
	} else {
		simd.MulScalar(dst, dst, scale)
	}
}

func checkCoeffs(s *Set, coeffs []float32) error {
	if len(coeffs) != len(s.Members) {
		return fmt.Errorf("%d coefficients for %d task vectors", len(coeffs), len(s.Members))
	}
	return nil
}

// Build writes the task vector τ = θ_ft − θ_base of the set's only member.
func Build(s *Set, out string, wo WriteOptions, opts StreamOptions) error {
	if len(s.Members) != 1 || s.Stored(0) {
		return fmt.Errorf("a task vector is built from one fine-tuned checkpoint")
	}
	wo.Metadata = withMeta(wo.Metadata, "editkit.finetuned", s.Members[0].Path)
	return s.WriteVector(out, wo, opts, func(_ int, c *Chunk) error {
		copy(c.Out, c.Taus[0])
		return nil
	})
}

// WriteCombination writes the task vector Σ_i c_i τ_i: c = (1, 1) adds two
// vectors, (1, −1) subtracts, (λ) scales and (−1) negates.
func WriteCombination(s *Set, coeffs []float32, out string, wo WriteOptions, opts StreamOptions) error {
	if err := checkCoeffs(s, coeffs); err != nil {
		return err
	}
	return s.WriteVector(out, wo, opts, func(_ int, c *Chunk) error {
		Combine(c.Out, nil, c.Taus, coeffs, 1)
		return nil
	})
}

// Apply writes the model θ_base + Σ_i λ_i τ_i; a negative λ negates a task
// (forgetting by negation, Ilharco et al. 2023 §3).
func Apply(s *Set, lambdas []float32, out string, wo WriteOptions, opts StreamOptions) error {
	if err := checkCoeffs(s, lambdas); err != nil {
		return err
	}
	return s.WriteModel(out, wo, opts, func(_ int, c *Chunk) error {
		Combine(c.Out, c.Base, c.Taus, lambdas, 1)
		return nil
	})
}

func withMeta(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for kk, vv := range m {
		out[kk] = vv
	}
	return out
}

// FloatNames lists the names of a checkpoint's float tensors.
func FloatNames(c *checkpoint.Checkpoint) []string {
	var out []string
	for _, t := range c.Tensors() {
		if checkpoint.IsFloat(t.DType) {
			out = append(out, t.Name)
		}
	}
	return out
}
