package eval

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/models"
)

// ModelEval measures a model given its weights: for each metric (a task's
// accuracy, an attack success rate, ...), one outcome per example, true
// where the example counts (classified correctly; for an attack success
// rate, a triggered image classified as the attack's target). A metric is
// its share of true outcomes. Evaluators that run one compiled forward pass
// for any weights of the model (encoder.Encoder.Func, a linearized model)
// evaluate a whole search without recompiling.
type ModelEval func(w models.Weights) (map[string][]bool, error)

// Share is the fraction of true outcomes (0 for none).
func Share(hits []bool) float64 {
	n := 0
	for _, h := range hits {
		if h {
			n++
		}
	}
	if len(hits) == 0 {
		return 0
	}
	return float64(n) / float64(len(hits))
}

// Measure runs evaluate on w and returns the metrics with their outcomes.
func Measure(evaluate ModelEval, w models.Weights) (map[string]float64, map[string][]bool, error) {
	hits, err := evaluate(w)
	if err != nil {
		return nil, nil, err
	}
	m := make(map[string]float64, len(hits))
	for k, h := range hits {
		if len(h) == 0 {
			return nil, nil, fmt.Errorf("eval: metric %s has no examples", k)
		}
		m[k] = Share(h)
	}
	return m, hits, nil
}

// SearchDirection searches the coefficient c of a merge direction: at each
// c of steps it forms θ(c) = θ₀ + s(ℓ, c)·Δ (merge.Direction.At) for the
// tensors of base (θ₀), as host tensors freed once measured, evaluates it
// with evaluate and scores it with obj. Every point is formed in memory
// from the one unit merge the direction holds; nothing is written.
func SearchDirection(d *merge.Direction, base models.Weights, steps Steps, obj Objective, evaluate ModelEval) (*Search, error) {
	hits := map[float64]map[string][]bool{}
	s, err := SearchCoefficient(steps, obj, func(c float64) (map[string]float64, error) {
		w, err := WeightsAt(d, base, c)
		if err != nil {
			return nil, err
		}
		defer w.Finalize()
		m, h, err := Measure(evaluate, w)
		hits[c] = h
		return m, err
	})
	if s != nil {
		for i := range s.Points {
			s.Points[i].Hits = hits[s.Points[i].Coef]
		}
	}
	return s, err
}

// WeightsAt returns θ(c) of direction d for the tensors of base (θ₀'s
// float32 values) as new host tensors; free them with Finalize.
func WeightsAt(d *merge.Direction, base models.Weights, c float64) (models.Weights, error) {
	w := make(models.Weights, len(base))
	for name, b := range base {
		t := tensors.FromShape(shapes.Make(b.DType(), b.Shape().Dimensions...))
		var err error
		tensors.MustConstFlatData(b, func(bv []float32) {
			tensors.MustMutableFlatData(t, func(dst []float32) {
				err = d.At(c, name, bv, dst)
			})
		})
		if err != nil {
			t.FinalizeAll()
			w.Finalize()
			return nil, err
		}
		w[name] = t
	}
	return w, nil
}
