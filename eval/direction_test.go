package eval

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/tasks"
)

// writeVector saves one F32 tensor "w" as a checkpoint.
func writeVector(t *testing.T, path string, v []float32) {
	t.Helper()
	w, err := checkpoint.Create(path, []checkpoint.TensorSpec{{Name: "w", DType: checkpoint.F32, Shape: []int64{int64(len(v))}}}, checkpoint.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFloat32("w", v); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// outcomes returns n outcomes of which round(share·n) are true.
func outcomes(share float64, n int) []bool {
	out := make([]bool, n)
	for i := range int(math.Round(share * float64(n))) {
		out[i] = true
	}
	return out
}

// TestSearchDirectionBackdoorShape: a trigger vector τ = e₀ subtracted
// with coefficient c; the evaluator reads x = −w[0] = c and reports an
// attack success rate falling to 0 at c = 1 and a clean accuracy that dips
// at 1, recovers at 1.25 and falls below the floor at 1.75. The published
// grid ends at 1 while still feasible, so the search extends by 0.25 until
// the floor is crossed (1.75) and stops there; among the zero-ASR points
// (1, 1.25, 1.5) the tie goes to the higher clean accuracy, 1.25.
func TestSearchDirectionBackdoorShape(t *testing.T) {
	dir := t.TempDir()
	writeVector(t, filepath.Join(dir, "base"), []float32{0, 0.5, -1})
	writeVector(t, filepath.Join(dir, "ft"), []float32{1, 0.5, -1})
	s, err := tasks.OpenSet(filepath.Join(dir, "base"), []string{filepath.Join(dir, "ft")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, err := merge.NewDirection(s, merge.Config{Method: merge.TaskArithmetic}, merge.DirectionOptions{Negate: true})
	if err != nil {
		t.Fatal(err)
	}
	base := models.Weights{"w": tensors.FromValue([]float32{0, 0.5, -1})}
	clean := map[float64]float64{0: 1, 0.25: 1, 0.5: 1, 0.75: 1, 1: 0.96, 1.25: 0.99, 1.5: 0.97, 1.75: 0.9, 2: 0.5}
	var seen []float64
	evaluate := func(w models.Weights) (map[string][]bool, error) {
		v := w.Float32("w")
		if v[1] != 0.5 || v[2] != -1 {
			t.Errorf("untouched entries changed: %v", v)
		}
		x := -float64(v[0])
		seen = append(seen, x)
		return map[string][]bool{"asr": outcomes(max(0, 1-x), 20), "clean": outcomes(clean[x], 100)}, nil
	}
	steps := Steps{Values: Grid(0, 1, 0.25), Step: 0.25, Max: 3}
	srch, err := SearchDirection(d, base, steps, LowestSubjectTo("asr", "clean", 0.95), evaluate)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75}
	if len(seen) != len(want) {
		t.Fatalf("evaluated %v, want %v", seen, want)
	}
	for i, p := range srch.Points {
		if p.Coef != want[i] || math.Abs(seen[i]-want[i]) > 1e-7 {
			t.Errorf("point %d at %v (model at %v), want %v", i, p.Coef, seen[i], want[i])
		}
		if len(p.Hits["clean"]) != 100 || Share(p.Hits["clean"]) != p.Accuracy["clean"] {
			t.Errorf("point %v: outcomes not kept with the metrics", p.Coef)
		}
	}
	if srch.Chosen() != 1.25 || srch.Points[7].Feasible {
		t.Errorf("chose %v (want 1.25, the higher clean accuracy among zero ASR); 1.75 feasible %v", srch.Chosen(), srch.Points[7].Feasible)
	}
	// Negation's rule keeps the reference code's first point on ties.
	seen = nil
	srch, err = SearchDirection(d, base, steps, Negation("asr", "clean", 0.95), evaluate)
	if err != nil || srch.Chosen() != 1 {
		t.Errorf("negation chose %v (want 1, the first zero), err %v", srch.Chosen(), err)
	}
	// The extension stops at Max, and a search with no feasible point
	// returns its points with the error.
	seen = nil
	srch, err = SearchDirection(d, base, Steps{Values: []float64{0}, Step: 0.5, Max: 1}, LowestSubjectTo("asr", "clean", 0.95), evaluate)
	if err != nil || len(srch.Points) != 3 || srch.Chosen() != 1 {
		t.Errorf("extension to Max: %d points, chose %v, err %v", len(srch.Points), srch.Chosen(), err)
	}
	srch, err = SearchDirection(d, base, Steps{Values: []float64{2}}, LowestSubjectTo("asr", "clean", 0.95), evaluate)
	if err == nil || srch == nil || len(srch.Points) != 1 {
		t.Errorf("no feasible point: err %v, search %+v", err, srch)
	}
	if _, err := SearchDirection(d, base, steps, LowestSubjectTo("asr", "accuracy", 0.9), evaluate); err == nil {
		t.Error("objective on a metric the evaluator does not give: no error")
	}
	// WeightsAt refuses tensors the direction does not hold.
	if _, err := WeightsAt(d, models.Weights{"v": tensors.FromValue([]float32{1})}, 1); err == nil {
		t.Error("WeightsAt with a tensor outside the direction: no error")
	}
}
