package eval

import (
	"bytes"
	"math"
	"testing"
)

func TestLocalize(t *testing.T) {
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	// Block diagonal: task a's examples 0, 1 with [[2, 1], [1, 2]]
	// (eigenvalues 3 and 1), task b's examples 2, 3, 4 with 0.5·J₃
	// (eigenvalues 1.5, 0, 0). Every eigenvector lives on one task.
	k := []float64{
		2, 1, 0, 0, 0,
		1, 2, 0, 0, 0,
		0, 0, 0.5, 0.5, 0.5,
		0, 0, 0.5, 0.5, 0.5,
		0, 0, 0.5, 0.5, 0.5,
	}
	l, err := Localize(k, []int{0, 0, 1, 1, 1}, []string{"a", "b"}, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		value float64
		share [2]float64
	}{{3, [2]float64{1, 0}}, {1.5, [2]float64{0, 1}}, {1, [2]float64{1, 0}}}
	if len(l.Eigenvalues) != 3 {
		t.Fatalf("%d eigenvalues", len(l.Eigenvalues))
	}
	for i, w := range want {
		if !near(l.Eigenvalues[i], w.value) || !near(l.Share[i][0], w.share[0]) || !near(l.Share[i][1], w.share[1]) {
			t.Errorf("eigenvector %d: value %v shares %v, want %v %v", i, l.Eigenvalues[i], l.Share[i], w.value, w.share)
		}
	}
	if !near(l.Localized, 1) || !near(l.Even, 0.6) || l.Examples[0] != 2 || l.Examples[1] != 3 {
		t.Errorf("localized %v (want 1), even %v (want 0.6), examples %v", l.Localized, l.Even, l.Examples)
	}
	// The all-ones kernel: one eigenvector, spread evenly, shares n_t/N.
	ones := make([]float64, 16)
	for i := range ones {
		ones[i] = 1
	}
	l, err = Localize(ones, []int{0, 1, 1, 1}, []string{"a", "b"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !near(l.Eigenvalues[0], 4) || !near(l.Share[0][0], 0.25) || !near(l.Share[0][1], 0.75) {
		t.Errorf("all-ones kernel: %v, %v", l.Eigenvalues, l.Share)
	}
	png, err := PlotLocalization(l, "test")
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("plot: %v", err)
	}
	for _, bad := range []struct {
		k    []float64
		task []int
	}{{ones[:15], []int{0, 1, 1, 1}}, {ones, []int{0, 1, 2, 1}}, {[]float64{math.NaN()}, []int{0}}} {
		if _, err := Localize(bad.k, bad.task, []string{"a", "b"}, 1); err == nil {
			t.Errorf("Localize(%v, %v): no error", bad.k, bad.task)
		}
	}
}
