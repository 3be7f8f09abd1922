package eval

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/tasks"
)

// TestSearchTallLambdas on a 4-entry model: τ_a = (1, 1, 0.45, 0),
// τ_b = (0, 0.5, 1, 1), τ_MTL = Σ τ = (1, 1.5, 1.45, 1). By hand, task a's
// mask |τ_a| > λ|τ_MTL − τ_a| keeps entry 2 (0.45 > λ·1) only for λ < 0.45,
// and task b's keeps entry 1 (0.5 > λ·1) only for λ < 0.5. Task a's
// evaluator scores 0.8 without entry 2 and 0.6 with it, so λ_a = 0.5 (the
// first λ without it); task b's scores 0.9 with entry 1 and 0.7 without,
// so λ_b = 0.2, the first of three equal bests.
func TestSearchTallLambdas(t *testing.T) {
	dir := t.TempDir()
	writeVector(t, filepath.Join(dir, "base"), []float32{0, 0, 0, 0})
	writeVector(t, filepath.Join(dir, "a"), []float32{1, 1, 0.45, 0})
	writeVector(t, filepath.Join(dir, "b"), []float32{0, 0.5, 1, 1})
	s, err := tasks.OpenSet(filepath.Join(dir, "base"), []string{filepath.Join(dir, "a"), filepath.Join(dir, "b")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := models.Weights{"w": tensors.FromValue([]float32{0, 0, 0, 0})}
	var seenA [][]float32
	evalA := func(w models.Weights) (map[string][]bool, error) {
		v := w.Float32("w")
		seenA = append(seenA, v)
		share := 0.8
		if v[2] != 0 {
			share = 0.6
		}
		return map[string][]bool{"a": outcomes(share, 10)}, nil
	}
	evalB := func(w models.Weights) (map[string][]bool, error) {
		share := 0.7
		if w.Float32("w")[1] != 0 {
			share = 0.9
		}
		return map[string][]bool{"b": outcomes(share, 10)}, nil
	}
	res, err := SearchTallLambdas(s, merge.Config{Method: merge.Consensus}, base, []string{"a", "b"}, TallLambdaGrid(), []ModelEval{evalA, evalB}, merge.DirectionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Lambdas, []float64{0.5, 0.2}) {
		t.Errorf("λ_t = %v, want [0.5 0.2]", res.Lambdas)
	}
	if !slices.Equal(res.Accuracy["a"], []float64{0.6, 0.6, 0.6, 0.8, 0.8}) || !slices.Equal(res.Accuracy["b"], []float64{0.9, 0.9, 0.9, 0.7, 0.7}) {
		t.Errorf("accuracies %v", res.Accuracy)
	}
	// The model measured: θ₀ + m ⊙ τ_MTL, here at λ = 0.2 for task a:
	// every entry but 3 (|0| > λ·1 fails).
	if want := []float32{1, 1.5, 1.45, 0}; !slices.Equal(seenA[0], want) {
		t.Errorf("task a at λ 0.2 measured %v, want %v", seenA[0], want)
	}
	if _, err := SearchTallLambdas(s, merge.Config{Method: merge.Consensus}, base, []string{"a"}, TallLambdaGrid(), []ModelEval{evalA}, merge.DirectionOptions{}); err == nil {
		t.Error("one task for two members: no error")
	}
}
