package eval

import (
	"errors"
	"fmt"
	"math"
	"strings"
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
		out = append(out, round9(from+float64(i)*step))
	}
	return out
}

func round9(x float64) float64 { return math.Round(x*1e9) / 1e9 }

// LambdaGrid() is task arithmetic's published λ ∈ {0, 0.05, ..., 1}
// (task_vectors).
func LambdaGrid() []float64 { return Grid(0, 1, 0.05) }

// LinesBetaGrid() is LiNeS's published multi-task β ∈ {0.1, ..., 1.0}.
func LinesBetaGrid() []float64 { return Grid(0.1, 1, 0.1) }

// LinesBetaGridTIES() is LiNeS's published β grid on top of TIES,
// {0.1, ..., 1.5}.
func LinesBetaGridTIES() []float64 { return Grid(0.1, 1.5, 0.1) }

// LinesAlphaGrid() is LiNeS's published single-task α ∈ {0, 0.1, ..., 1}
// (β = 1 − α).
func LinesAlphaGrid() []float64 { return Grid(0, 1, 0.1) }

// Steps are the coefficients a search evaluates: Values in order, then,
// when Step > 0, Values' last + Step, + 2·Step, ... for as long as the last
// point evaluated is feasible and the next value is ≤ Max. The extension
// walks a constrained search up to the point where its floor is crossed
// (e.g. the clean accuracy of a model being cleaned of a backdoor falls
// under 95% of the original's) when the published grid ends before it.
type Steps struct {
	Values    []float64
	Step, Max float64
}

// Point is one coefficient of a search with its validation metrics.
type Point struct {
	Coef float64 `json:"coef"`
	// Accuracy holds the metrics measured at Coef by name: each task's
	// accuracy, or other shares such as an attack success rate.
	Accuracy map[string]float64 `json:"accuracy"`
	// Score is what the search maximizes at this point.
	Score float64 `json:"score"`
	// Feasible is false where the objective's constraint fails (negation's
	// control).
	Feasible bool `json:"feasible"`
	// Hits holds the per-example outcomes behind Accuracy when the
	// evaluator gave them (see ModelEval), for paired intervals.
	Hits map[string][]bool `json:"-"`
	// Interval holds the 95% bootstrap interval of each metric and of
	// their mean (key "average"), and VsChosen the paired interval of this
	// point's metrics minus the chosen point's, when a Record computed them.
	Interval map[string]Interval `json:"interval,omitempty"`
	VsChosen map[string]Interval `json:"vs_chosen,omitempty"`
}

// Search is a finished coefficient search.
type Search struct {
	Objective string  `json:"objective"`
	Points    []Point `json:"points"`
	// Best indexes the chosen point: the first maximum of Score among the
	// feasible points, as the reference code's strict comparison picks it
	// (or, for objectives with a tie-break, the feasible point of highest
	// Score, then highest tie-break, then the first).
	Best int `json:"best"`
}

// Chosen returns the chosen coefficient.
func (s *Search) Chosen() float64 { return s.Points[s.Best].Coef }

// Summary is a one-line account of the points' metrics, for errors.
func (s *Search) Summary() string {
	var parts []string
	for _, p := range s.Points {
		var accs []string
		for k, v := range p.Accuracy {
			accs = append(accs, fmt.Sprintf("%s %.4f", k, v))
		}
		parts = append(parts, fmt.Sprintf("%g: %s", p.Coef, strings.Join(accs, ", ")))
	}
	return strings.Join(parts, "; ")
}

// EvalFunc returns the validation metrics (accuracy per task) at a
// coefficient.
type EvalFunc func(coef float64) (map[string]float64, error)

// Objective is what a coefficient search maximizes.
type Objective struct {
	// Name describes the objective in records.
	Name string
	// Score returns the value maximized at a point's metrics and whether
	// the point satisfies the objective's constraint.
	Score func(m map[string]float64) (score float64, feasible bool, err error)
	// TieBreak, when set, ranks feasible points of equal Score (higher
	// wins). Without it the first point wins, as the reference code's
	// strict comparison picks it.
	TieBreak func(m map[string]float64) float64
}

// Addition is task addition's objective (task_vectors, LiNeS, TIES):
// the mean normalized accuracy (1/T) Σ_t acc_t / ft_t over tasks, ft_t
// the fine-tuned model's validation accuracy on task t.
func Addition(tasks []string, finetuned map[string]float64) Objective {
	return Objective{Name: "mean normalized accuracy", Score: func(acc map[string]float64) (float64, bool, error) {
		var s float64
		for _, t := range tasks {
			n, err := Normalized(acc[t], finetuned[t])
			if err != nil {
				return 0, false, fmt.Errorf("task %s: %w", t, err)
			}
			s += n / float64(len(tasks))
		}
		return s, true, nil
	}}
}

// The published constants of the constrained and trade-off searches.
const (
	// ControlFraction is the share of the pre-trained model's control
	// accuracy a task negation must keep (task_vectors and
	// tangent_task_arithmetic eval_task_negation: control_threshold 0.95;
	// TBAR keeps 0.95 of the backdoored model's clean accuracy).
	ControlFraction = 0.95
	// LinesTargetWeight is the weight of the target task in LiNeS's
	// single-task trade-off (wang-kee/LiNeS config/method/single_task.yaml:
	// tradeoff_target_weight 2.0).
	LinesTargetWeight = 2.0
)

// Negation is task negation's objective (task_vectors,
// tangent_task_arithmetic's find_optimal_coef): the lowest target accuracy
// among the points keeping the control's accuracy ≥ minControl (0.95 × the
// pre-trained model's in the papers); the first such point on ties.
func Negation(target, control string, minControl float64) Objective {
	return Objective{Name: fmt.Sprintf("lowest %s accuracy with %s ≥ %.4f", target, control, minControl),
		Score: func(acc map[string]float64) (float64, bool, error) {
			return -acc[target], acc[control] >= minControl, nil
		}}
}

// LowestSubjectTo is the general constrained search: the lowest metric a
// among points where metric b ≥ floor, ties going to the higher b (then to
// the first point). Backdoor removal uses it with a = the attack success
// rate and b = the clean accuracy, floor 0.95 × the backdoored model's.
func LowestSubjectTo(a, b string, floor float64) Objective {
	return Objective{Name: fmt.Sprintf("lowest %s with %s ≥ %.4f (ties: higher %s)", a, b, floor, b),
		Score: func(m map[string]float64) (float64, bool, error) {
			va, okA := m[a]
			vb, okB := m[b]
			if !okA || !okB {
				return 0, false, fmt.Errorf("the evaluator measured no %q or no %q", a, b)
			}
			return -va, vb >= floor, nil
		},
		TieBreak: func(m map[string]float64) float64 { return m[b] }}
}

// Tradeoff is LiNeS's single-task objective: w·acc_target/norm_target +
// mean over controls of acc_c/norm_c (the paper uses w = 2). normalizer
// holds each task's reference accuracy: the fine-tuned model's for the
// target, the pre-trained model's for the controls, whose ideal is to keep
// what the pre-trained model could do.
func Tradeoff(target string, controls []string, normalizer map[string]float64, w float64) Objective {
	return Objective{Name: fmt.Sprintf("%g·normalized %s + mean normalized control", w, target),
		Score: func(acc map[string]float64) (float64, bool, error) {
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
		}}
}

// At is the k-th coefficient a search over s evaluates: Values[k], then,
// past them, the extension Values' last + (k − len(Values) + 1)·Step (which
// the search takes while its points are feasible and the value is ≤ Max).
func (s Steps) At(k int) float64 {
	if k < len(s.Values) {
		return s.Values[k]
	}
	return round9(s.Values[len(s.Values)-1] + float64(k-len(s.Values)+1)*s.Step)
}

// SearchCoefficient evaluates eval at each coefficient of steps and picks
// the point that obj prefers. When no point is feasible it returns the
// points with an error.
func SearchCoefficient(steps Steps, obj Objective, eval EvalFunc) (*Search, error) {
	if len(steps.Values) == 0 {
		return nil, errors.New("eval: empty coefficient grid")
	}
	s := &Search{Objective: obj.Name}
	at := func(c float64) error {
		m, err := eval(c)
		if err != nil {
			return fmt.Errorf("evaluating coefficient %g: %w", c, err)
		}
		v, ok, err := obj.Score(m)
		if err != nil {
			return fmt.Errorf("coefficient %g: %w", c, err)
		}
		s.Points = append(s.Points, Point{Coef: c, Accuracy: m, Score: v, Feasible: ok})
		return nil
	}
	for _, c := range steps.Values {
		if err := at(c); err != nil {
			return nil, err
		}
	}
	if steps.Step > 0 {
		for k := len(steps.Values); s.Points[len(s.Points)-1].Feasible; k++ {
			c := steps.At(k)
			if c > steps.Max {
				break
			}
			if err := at(c); err != nil {
				return nil, err
			}
		}
	}
	b := -1
	for i, p := range s.Points {
		if !p.Feasible {
			continue
		}
		switch {
		case b < 0 || p.Score > s.Points[b].Score:
			b = i
		case p.Score == s.Points[b].Score && obj.TieBreak != nil && obj.TieBreak(p.Accuracy) > obj.TieBreak(s.Points[b].Accuracy):
			b = i
		}
	}
	if b < 0 {
		return s, errors.New("eval: no coefficient of the grid satisfies the search's constraint")
	}
	s.Best = b
	return s, nil
}

// SearchAddition picks the coefficient of grid maximizing Addition.
func SearchAddition(grid []float64, tasks []string, finetuned map[string]float64, eval EvalFunc) (*Search, error) {
	return SearchCoefficient(Steps{Values: grid}, Addition(tasks, finetuned), eval)
}

// SearchNegation picks the coefficient of grid that Negation prefers.
func SearchNegation(grid []float64, target, control string, minControl float64, eval EvalFunc) (*Search, error) {
	return SearchCoefficient(Steps{Values: grid}, Negation(target, control, minControl), eval)
}

// SearchTradeoff picks the coefficient of grid maximizing Tradeoff.
func SearchTradeoff(grid []float64, target string, controls []string, normalizer map[string]float64, w float64, eval EvalFunc) (*Search, error) {
	return SearchCoefficient(Steps{Values: grid}, Tradeoff(target, controls, normalizer, w), eval)
}
