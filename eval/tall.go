package eval

import (
	"errors"
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/tasks"
)

// TallLambdaGrid() is the TALL-mask λ grid of nik-dim/tall_masks
// (construct_tall_mask): {0.2, 0.3, 0.4, 0.5, 0.6}.
func TallLambdaGrid() []float64 { return Grid(0.2, 0.6, 0.1) }

// TallSearch is the outcome of SearchTallLambdas.
type TallSearch struct {
	Grid []float64 `json:"grid"`
	// Lambdas holds the chosen λ_t, in the order of the set's members.
	Lambdas []float64 `json:"lambdas"`
	// Accuracy holds, per task, the validation accuracy of
	// θ₀ + m_t(λ) ⊙ τ_MTL at each λ of Grid.
	Accuracy map[string][]float64 `json:"accuracy"`
}

// SearchTallLambdas chooses each task's TALL-mask λ_t on validation data as
// nik-dim/tall_masks does (construct_tall_mask, evaluate with eval_masks,
// find_optimal_mask): for each λ of grid and each member t of s, the model
// θ₀ + m_t(λ) ⊙ τ_MTL, m_t(λ) = |τ_t| > λ|τ_MTL − τ_t| (merge.TallMask) and
// τ_MTL the consensus recipe's multi-task vector (merge.TallBase), is
// measured by evaluate[t] on task t's validation data (metric taskNames[t]),
// and λ_t is the λ of highest accuracy, the first on ties. base holds θ₀ for
// the tensors the evaluators read; the masks are formed over those tensors
// only. τ_MTL and τ_t come from merge.NewDirection, so they are rounded once
// through float32 θ₀ + τ: a mask entry at the exact boundary may differ from
// the one the final merge computes.
func SearchTallLambdas(s *tasks.Set, consensus merge.Config, base models.Weights, taskNames []string, grid []float64, evaluate []ModelEval, o merge.DirectionOptions) (*TallSearch, error) {
	n := len(s.Members)
	if len(taskNames) != n || len(evaluate) != n {
		return nil, fmt.Errorf("eval: TALL search: %d members, %d task names, %d evaluators: give one task per member", n, len(taskNames), len(evaluate))
	}
	if len(grid) == 0 {
		return nil, errors.New("eval: TALL search: empty λ grid")
	}
	o.Coefficient, o.Negate = merge.CoefLambda, false
	if o.Tensors == nil {
		for name := range base {
			o.Tensors = append(o.Tensors, name)
		}
	}
	mtl, err := merge.NewDirection(s, merge.TallBase(consensus), o)
	if err != nil {
		return nil, fmt.Errorf("TALL search: the multi-task vector: %w", err)
	}
	res := &TallSearch{Grid: grid, Accuracy: map[string][]float64{}}
	for t, m := range s.Members {
		one, err := tasks.NewSet(s.Base, []*checkpoint.Checkpoint{m})
		if err != nil {
			return nil, err
		}
		tau, err := merge.NewDirection(one, merge.Config{Method: merge.TaskArithmetic}, o)
		if err != nil {
			return nil, fmt.Errorf("TALL search: task vector of %s: %w", m.Path, err)
		}
		best := 0
		for k, lambda := range grid {
			w, err := tallWeights(mtl, tau, base, lambda)
			if err != nil {
				return nil, err
			}
			acc, _, err := Measure(evaluate[t], w)
			w.Finalize()
			if err != nil {
				return nil, fmt.Errorf("TALL search: task %s at λ %g: %w", taskNames[t], lambda, err)
			}
			a, ok := acc[taskNames[t]]
			if !ok {
				return nil, fmt.Errorf("TALL search: the evaluator of task %s measured no %q", taskNames[t], taskNames[t])
			}
			res.Accuracy[taskNames[t]] = append(res.Accuracy[taskNames[t]], a)
			if a > res.Accuracy[taskNames[t]][best] {
				best = k
			}
		}
		res.Lambdas = append(res.Lambdas, grid[best])
	}
	return res, nil
}

// tallWeights is θ₀ + m_t(λ) ⊙ τ_MTL for the tensors of base.
func tallWeights(mtl, tau *merge.Direction, base models.Weights, lambda float64) (models.Weights, error) {
	w := make(models.Weights, len(base))
	for name, b := range base {
		m, ok1 := mtl.Delta(name)
		v, ok2 := tau.Delta(name)
		if !ok1 || !ok2 {
			w.Finalize()
			return nil, fmt.Errorf("eval: TALL search: no task vector for tensor %q", name)
		}
		mask := make([]bool, len(m))
		merge.TallMask(mask, v, m, lambda)
		out := tensors.FromShape(b.Shape())
		tensors.MustConstFlatData(b, func(bv []float32) {
			tensors.MustMutableFlatData(out, func(dst []float32) {
				for i := range dst {
					dst[i] = bv[i]
					if mask[i] {
						dst[i] += m[i]
					}
				}
			})
		})
		w[name] = out
	}
	return w, nil
}
