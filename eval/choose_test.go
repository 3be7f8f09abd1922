package eval

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/tasks"
)

// twoTasks is a 2-entry family: θ₀ = (0, 0), fine-tuned a = (1, 0) and
// b = (0, 1), so task arithmetic's θ(λ) = (λ, λ). Metric a reads entry 0,
// metric b entry 1, through the tables given.
type twoTasks struct {
	dir  string
	set  *tasks.Set
	base models.Weights
	// calls counts the evaluations of each metric.
	calls map[string]int
}

func newTwoTasks(t *testing.T) *twoTasks {
	f := &twoTasks{dir: t.TempDir(), calls: map[string]int{}}
	writeVector(t, filepath.Join(f.dir, "base"), []float32{0, 0})
	writeVector(t, filepath.Join(f.dir, "a"), []float32{1, 0})
	writeVector(t, filepath.Join(f.dir, "b"), []float32{0, 1})
	s, err := tasks.OpenSet(filepath.Join(f.dir, "base"), []string{filepath.Join(f.dir, "a"), filepath.Join(f.dir, "b")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f.set = s
	f.base = models.Weights{"w": tensors.FromValue([]float32{0, 0})}
	return f
}

func (f *twoTasks) direction(t *testing.T) *merge.Direction {
	d, err := merge.NewDirection(f.set, merge.Config{Method: merge.TaskArithmetic}, merge.DirectionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// one measures metric m (entry 0 for a, 1 for b) by its table, on 100
// examples.
func (f *twoTasks) one(tables map[string]map[float32]float64) func(m string) ModelEval {
	return func(m string) ModelEval {
		return func(w models.Weights) (map[string][]bool, error) {
			f.calls[m]++
			x := w.Float32("w")[strings.Index("ab", m)]
			return map[string][]bool{m: outcomes(tables[m][x], 100)}, nil
		}
	}
}

func (f *twoTasks) all(tables map[string]map[float32]float64) ModelEval {
	one := f.one(tables)
	return func(w models.Weights) (map[string][]bool, error) {
		out := map[string][]bool{}
		for _, m := range []string{"a", "b"} {
			h, _ := one(m)(w)
			out[m] = h[m]
		}
		return out, nil
	}
}

// negTables: a falls as λ grows, b (the control) dips under 95% of θ₀'s
// at λ = 1.
var negTables = map[string]map[float32]float64{"a": {0: 0.9, 0.5: 0.5, 1: 0.1}, "b": {0: 1, 0.5: 0.96, 1: 0.9}}

// TestChooseGoals checks each goal's reference accuracies and choice
// against hand computations on twoTasks, grid {0, 0.5, 1}.
func TestChooseGoals(t *testing.T) {
	grid := Steps{Values: []float64{0, 0.5, 1}}
	t.Run("addition", func(t *testing.T) {
		// a: 0.2, 0.6, 0.8 at λ = 0, 0.5, 1, so its fine-tuned model (1, 0)
		// scores 0.8; b: 0.1, 0.5, 0.4, fine-tuned accuracy given as 0.4.
		// Mean normalized: 0.25, 1.0, 1.0: the first maximum, λ = 0.5.
		f := newTwoTasks(t)
		tables := map[string]map[float32]float64{"a": {0: 0.2, 0.5: 0.6, 1: 0.8}, "b": {0: 0.1, 0.5: 0.5, 1: 0.4}}
		var loaded []string
		ch, err := Choose(f.direction(t), f.base, Choice{Goal: GoalAddition, Metrics: []string{"a", "b"}, Steps: grid,
			Evaluate: f.all(tables), EvaluateOne: f.one(tables), Finetuned: map[string]float64{"b": 0.4},
			FinetunedWeights: func(m string) (models.Weights, error) {
				loaded = append(loaded, m)
				return models.Weights{"w": tensors.FromValue([]float32{1, 0})}, nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		if ch.Coef != 0.5 || ch.Finetuned["a"] != 0.8 || ch.Finetuned["b"] != 0.4 || !slices.Equal(loaded, []string{"a"}) {
			t.Errorf("chose %v, normalizers %v, loaded %v; want 0.5, a 0.8 and b 0.4, a's model only", ch.Coef, ch.Finetuned, loaded)
		}
		if ch.Search.Points[1].Score != 1 || ch.Reference != nil {
			t.Errorf("score at 0.5 %v (want 1), reference %v (want none)", ch.Search.Points[1].Score, ch.Reference)
		}
		// The normalizer: a alone, once; the grid: both, three times.
		if f.calls["a"] != 4 || f.calls["b"] != 3 {
			t.Errorf("evaluations %v, want a 4, b 3", f.calls)
		}
	})
	t.Run("negation", func(t *testing.T) {
		// Control b at θ₀: 1; floor 0.95: λ ≤ 0.5 feasible, the lowest a
		// there at 0.5. With Fraction 0.9, λ = 1 is feasible too.
		for _, tc := range []struct {
			fraction, want float64
		}{{0, 0.5}, {0.9, 1}} {
			f := newTwoTasks(t)
			ch, err := Choose(f.direction(t), f.base, Choice{Goal: GoalNegation, Metrics: []string{"a", "b"}, Steps: grid,
				Evaluate: f.all(negTables), EvaluateOne: f.one(negTables), Fraction: tc.fraction})
			if err != nil {
				t.Fatal(err)
			}
			if ch.Coef != tc.want || ch.Reference["b"] != 1 || len(ch.Reference) != 1 || len(ch.ReferenceHits["b"]) != 100 {
				t.Errorf("fraction %v: chose %v (want %v), reference %v", tc.fraction, ch.Coef, tc.want, ch.Reference)
			}
			if f.calls["a"] != 3 || f.calls["b"] != 4 || len(ch.Finetuned) != 0 {
				t.Errorf("evaluations %v (want a 3, b 4), normalizers %v", f.calls, ch.Finetuned)
			}
		}
	})
	t.Run("negation with the reference given", func(t *testing.T) {
		f := newTwoTasks(t)
		ch, err := Choose(f.direction(t), f.base, Choice{Goal: GoalNegation, Metrics: []string{"a", "b"}, Steps: grid,
			Evaluate: f.all(negTables), EvaluateOne: f.one(negTables), Reference: map[string]float64{"b": 0.9}})
		if err != nil {
			t.Fatal(err)
		}
		// Floor 0.95 × 0.9: every point feasible, λ = 1; b measured on the
		// grid only.
		if ch.Coef != 1 || ch.Reference["b"] != 0.9 || f.calls["b"] != 3 {
			t.Errorf("chose %v, reference %v, evaluations %v", ch.Coef, ch.Reference, f.calls)
		}
	})
	t.Run("lowest without EvaluateOne", func(t *testing.T) {
		// The reference comes from Evaluate: both metrics at θ₀.
		f := newTwoTasks(t)
		ch, err := Choose(f.direction(t), f.base, Choice{Goal: GoalLowest, Metrics: []string{"a", "b"}, Steps: grid, Evaluate: f.all(negTables)})
		if err != nil {
			t.Fatal(err)
		}
		if ch.Coef != 0.5 || ch.Reference["a"] != 0.9 || ch.Reference["b"] != 1 {
			t.Errorf("chose %v, reference %v", ch.Coef, ch.Reference)
		}
	})
	t.Run("tradeoff", func(t *testing.T) {
		// Target a normalized by 0.5 (given), control b by θ₀'s 1:
		// 2·a/0.5 + b = 4.6, 2.96, 1.3 → λ = 0.
		f := newTwoTasks(t)
		ch, err := Choose(f.direction(t), f.base, Choice{Goal: GoalTradeoff, Metrics: []string{"a", "b"}, Steps: grid,
			Evaluate: f.all(negTables), EvaluateOne: f.one(negTables), Finetuned: map[string]float64{"a": 0.5}})
		if err != nil {
			t.Fatal(err)
		}
		if ch.Coef != 0 || ch.Search.Points[1].Score != 2*0.5/0.5+0.96 {
			t.Errorf("chose %v, scores %+v", ch.Coef, ch.Search.Points)
		}
	})
	t.Run("errors", func(t *testing.T) {
		f := newTwoTasks(t)
		zero := map[string]map[float32]float64{"a": {0: 0, 1: 0}, "b": {0: 0}}
		for _, tc := range []struct {
			name string
			c    Choice
			want string
		}{
			{"negation of one metric", Choice{Goal: GoalNegation, Metrics: []string{"a"}}, "two metrics"},
			{"unknown goal", Choice{Goal: "best", Metrics: []string{"a"}}, "unknown search goal"},
			{"no normalizer", Choice{Goal: GoalAddition, Metrics: []string{"a"}}, "no fine-tuned accuracy"},
			{"fine-tuned accuracy 0", Choice{Goal: GoalAddition, Metrics: []string{"a"}, FinetunedFrom: map[string]string{"a": "evaluated ft-a"},
				FinetunedWeights: func(string) (models.Weights, error) {
					return models.Weights{"w": tensors.FromValue([]float32{1, 0})}, nil
				}}, "(evaluated ft-a) has accuracy 0"},
			{"control 0 at θ₀", Choice{Goal: GoalNegation, Metrics: []string{"a", "b"}}, "scores 0 on b"},
		} {
			tc.c.Steps, tc.c.Evaluate, tc.c.EvaluateOne = grid, f.all(zero), f.one(zero)
			if _, err := Choose(f.direction(t), f.base, tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
			}
		}
	})
}

// TestSearchMerge: the TALL masks, the direction, the choice and the
// written merge, in order, with the record filled from each.
func TestSearchMerge(t *testing.T) {
	f := newTwoTasks(t)
	tables := map[string]map[float32]float64{"a": {0: 0.2, 0.5: 0.6, 1: 0.8}, "b": {0: 0.1, 0.5: 0.5, 1: 0.4}}
	var stages []string
	var written merge.Config
	rec, d, err := SearchMerge(f.set, merge.Config{Method: merge.TaskArithmetic}, f.base, MergeSearch{
		Choice: Choice{Goal: GoalAddition, Metrics: []string{"a", "b"}, Steps: Steps{Values: []float64{0, 0.5, 1}},
			Evaluate: f.all(tables), EvaluateOne: f.one(tables),
			Finetuned: map[string]float64{"a": 0.8, "b": 0.4}, FinetunedFrom: map[string]string{"a": "given", "b": "given"}},
		Stage: func(s string) { stages = append(stages, s) },
		Write: func(cfg merge.Config) (models.Weights, map[string]any, error) {
			written = cfg
			return models.Weights{"w": tensors.FromValue([]float32{1, 1})}, map[string]any{"lambda": *cfg.Lambda}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stages, []string{"direction", "references", "write"}) {
		t.Errorf("stages %v", stages)
	}
	if written.Lambda == nil || *written.Lambda != 0.5 || d.Applied(0.5) != 0.5 {
		t.Errorf("wrote %+v", written)
	}
	if rec.Method != "task_arithmetic" || rec.Coefficient != "lambda" || rec.Chosen != 0.5 || rec.Applied != 0.5 ||
		!slices.Equal(rec.Grid, []float64{0, 0.5, 1}) || !slices.Equal(rec.Tasks, []string{"a", "b"}) ||
		rec.Finetuned["a"] != 0.8 || rec.FinetunedFrom["b"] != "given" || rec.Pretrained != nil || rec.MergeParams["lambda"] != 0.5 {
		t.Errorf("record %+v", rec)
	}
	// The written weights (1, 1) are measured again: a 0.8, b 0.4.
	if rec.Written["a"] != 0.8 || rec.Written["b"] != 0.4 {
		t.Errorf("written accuracies %v", rec.Written)
	}
	// TALL: each task's λ_t on its own metric, first.
	stages = nil
	rec, _, err = SearchMerge(f.set, merge.Config{Method: merge.Consensus}, f.base, MergeSearch{
		Choice: Choice{Goal: GoalAddition, Metrics: []string{"a", "b"}, Steps: Steps{Values: []float64{0, 1}},
			Evaluate: f.all(tables), EvaluateOne: f.one(tables), Finetuned: map[string]float64{"a": 0.8, "b": 0.4}},
		Tall:  true,
		Stage: func(s string) { stages = append(stages, s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Tall == nil || len(rec.Tall.Lambdas) != 2 || !slices.Equal(stages, []string{"tall", "direction", "references"}) || rec.Written != nil {
		t.Errorf("TALL search: %+v, stages %v, written %v", rec.Tall, stages, rec.Written)
	}
	// An infeasible search returns its points in the error.
	_, _, err = SearchMerge(f.set, merge.Config{Method: merge.TaskArithmetic}, f.base, MergeSearch{
		Choice: Choice{Goal: GoalNegation, Metrics: []string{"a", "b"}, Steps: Steps{Values: []float64{1}},
			Evaluate: f.all(negTables), EvaluateOne: f.one(negTables)}})
	if err == nil || !strings.Contains(err.Error(), "validation accuracies: 1:") {
		t.Errorf("infeasible search: %v", err)
	}
}
