package eval

import (
	"errors"
	"fmt"
	"math"
)

// Grid returns from, from+step, ..., up to to inclusive, each computed as
// from + i·step and rounded to 1e-9, so 0.05 steps do not drift.
func Grid(from, to, step float64) []float64 {
	if step <= 0 || to < from {
		return nil
	}
	n := int(math.Floor((to-from)/step + 1e-9))
	out := make([]float64, 0, n+1)
	for i := 0; i <= n; i++ {
		out = append(out, math.Round((from+float64(i)*step)*1e9)/1e9)
	}
	return out
}

// The published grids.
var (
	// LambdaGrid is task arithmetic's λ ∈ {0, 0.05, ..., 1} (task_vectors).
	LambdaGrid = Grid(0, 1, 0.05)
	// LinesBetaGrid is LiNeS's multi-task β ∈ {0.1, ..., 1.0}.
	LinesBetaGrid = Grid(0.1, 1, 0.1)
	// LinesBetaGridTIES is LiNeS's β grid on top of TIES, {0.1, ..., 1.5}.
	LinesBetaGridTIES = Grid(0.1, 1.5, 0.1)
	// LinesAlphaGrid is LiNeS's single-task α ∈ {0, 0.1, ..., 1} (β = 1 − α).
	LinesAlphaGrid = Grid(0, 1, 0.1)
)

// Point is one coefficient of a search with its validation accuracies.
type Point struct {
	Coef     float64            `json:"coef"`
	Accuracy map[string]float64 `json:"accuracy"`
	// Score is what the search maximizes at this point.
	Score float64 `json:"score"`
	// Feasible is false where a constraint fails (negation's control).
	Feasible bool `json:"feasible"`
}

// Search is a finished coefficient search.
type Search struct {
	Objective string  `json:"objective"`
	Points    []Point `json:"points"`
	// Best indexes the chosen point: the first maximum of Score among the
	// feasible points, as the reference code's strict comparison picks it.
	Best int `json:"best"`
}

// Chosen returns the chosen coefficient.
func (s *Search) Chosen() float64 { return s.Points[s.Best].Coef }

// EvalFunc returns the validation accuracy per task at a coefficient.
type EvalFunc func(coef float64) (map[string]float64, error)

func run(grid []float64, eval EvalFunc, score func(map[string]float64) (float64, bool, error)) ([]Point, error) {
	if len(grid) == 0 {
		return nil, errors.New("eval: empty coefficient grid")
	}
	points := make([]Point, 0, len(grid))
	for _, c := range grid {
		acc, err := eval(c)
		if err != nil {
			return nil, fmt.Errorf("evaluating coefficient %g: %w", c, err)
		}
		s, ok, err := score(acc)
		if err != nil {
			return nil, fmt.Errorf("coefficient %g: %w", c, err)
		}
		points = append(points, Point{Coef: c, Accuracy: acc, Score: s, Feasible: ok})
	}
	return points, nil
}

func best(points []Point) (int, error) {
	b := -1
	for i, p := range points {
		if p.Feasible && (b < 0 || p.Score > points[b].Score) {
			b = i
		}
	}
	if b < 0 {
		return 0, errors.New("eval: no coefficient of the grid satisfies the search's constraint")
	}
	return b, nil
}

// SearchAddition picks the coefficient maximizing the mean normalized
// accuracy over tasks (task addition; finetuned holds each task's
// fine-tuned validation accuracy).
func SearchAddition(grid []float64, tasks []string, finetuned map[string]float64, eval EvalFunc) (*Search, error) {
	points, err := run(grid, eval, func(acc map[string]float64) (float64, bool, error) {
		var s float64
		for _, t := range tasks {
			n, err := Normalized(acc[t], finetuned[t])
			if err != nil {
				return 0, false, fmt.Errorf("task %s: %w", t, err)
			}
			s += n / float64(len(tasks))
		}
		return s, true, nil
	})
	if err != nil {
		return nil, err
	}
	b, err := best(points)
	return &Search{Objective: "mean normalized accuracy", Points: points, Best: b}, err
}

// SearchNegation picks the coefficient with the lowest target accuracy
// among those keeping the control task's accuracy at least minControl
// (0.95 × the pre-trained model's in the task-vectors paper).
func SearchNegation(grid []float64, target, control string, minControl float64, eval EvalFunc) (*Search, error) {
	points, err := run(grid, eval, func(acc map[string]float64) (float64, bool, error) {
		return -acc[target], acc[control] >= minControl, nil
	})
	if err != nil {
		return nil, err
	}
	b, err := best(points)
	return &Search{Objective: fmt.Sprintf("lowest %s accuracy with %s ≥ %.4f", target, control, minControl), Points: points, Best: b}, err
}

// SearchTradeoff picks the coefficient maximizing w·target + mean(controls)
// in normalized accuracy (LiNeS's single-task search uses w = 2). normalizer
// holds each task's reference accuracy: the fine-tuned model's for the
// target, the pre-trained model's for the control tasks, whose ideal is to
// keep what the pre-trained model could do.
func SearchTradeoff(grid []float64, target string, controls []string, normalizer map[string]float64, w float64, eval EvalFunc) (*Search, error) {
	points, err := run(grid, eval, func(acc map[string]float64) (float64, bool, error) {
		t, err := Normalized(acc[target], normalizer[target])
		if err != nil {
			return 0, false, fmt.Errorf("task %s: %w", target, err)
		}
		var c float64
		for _, name := range controls {
			n, err := Normalized(acc[name], normalizer[name])
			if err != nil {
				return 0, false, fmt.Errorf("task %s: %w", name, err)
			}
			c += n / float64(len(controls))
		}
		return w*t + c, true, nil
	})
	if err != nil {
		return nil, err
	}
	b, err := best(points)
	return &Search{Objective: fmt.Sprintf("%g·normalized %s + mean normalized control", w, target), Points: points, Best: b}, err
}
