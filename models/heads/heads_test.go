package heads

import (
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"

	"github.com/editkit/editkit/models"
)

func testHead() *Head {
	return &Head{
		Classes:   []string{"cat", "dog"},
		Dim:       2,
		Weight:    []float32{1, 0, 0, 1},
		Bias:      []float32{0.5, 0},
		Scale:     10,
		Normalize: true,
		Meta:      map[string]string{"head.type": "zeroshot"},
	}
}

func TestLogits(t *testing.T) {
	h := testHead()
	// f = (3, 4): normalized (0.6, 0.8); logits 10·(0.6, 0.8) + (0.5, 0) = (6.5, 8).
	// f = (0, 2): normalized (0, 1); logits (0.5, 10).
	got, err := h.Logits([]float32{3, 4, 0, 2}, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{6.5, 8, 0.5, 10}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-5 {
			t.Fatalf("Logits = %v, want %v", got, want)
		}
	}
	if _, err := h.Logits([]float32{1, 2, 3}, 2); err == nil {
		t.Error("wrong feature size: no error")
	}
	// The in-graph head gives the same numbers.
	e := graph.MustNewExec(models.Backend(), func(f *graph.Node) *graph.Node { return h.Apply(f) })
	out := e.MustExec([][]float32{{3, 4}, {0, 2}})[0].Value().([][]float32)
	flat := slices.Concat(out...)
	for i := range want {
		if math.Abs(float64(flat[i]-want[i])) > 1e-5 {
			t.Fatalf("Apply = %v, want %v", flat, want)
		}
	}
}

func TestSaveLoad(t *testing.T) {
	h := testHead()
	path := filepath.Join(t.TempDir(), "head.safetensors")
	if err := h.Save(path, false); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Classes, h.Classes) || back.Dim != 2 || back.Scale != 10 || !back.Normalize ||
		!slices.Equal(back.Weight, h.Weight) || !slices.Equal(back.Bias, h.Bias) || back.Meta["head.type"] != "zeroshot" {
		t.Errorf("round trip: %+v", back)
	}
	if err := h.Save(path, false); err == nil {
		t.Error("overwrote an existing head without force")
	}
	bad := testHead()
	bad.Weight = bad.Weight[:3]
	if err := bad.Save(filepath.Join(t.TempDir(), "bad.safetensors"), false); err == nil {
		t.Error("saved a head with the wrong weight size")
	}
}
