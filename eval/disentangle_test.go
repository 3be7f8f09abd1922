package eval

import (
	"bytes"
	"testing"
)

// handPredictor: 4 examples per task. On task 0 the class of example k is
// k, except that examples 2 and 3 go to class 0 once τ₂'s coefficient
// reaches 0.5; on task 1 every class shifts by one once τ₁'s coefficient
// reaches 1.
func handPredictor(t int, a, b [2]float64) ([]int, []int, error) {
	pred := func(c [2]float64) []int {
		out := make([]int, 4)
		for k := range out {
			out[k] = k
			if t == 0 && c[1] >= 0.5 && k >= 2 {
				out[k] = 0
			}
			if t == 1 && c[0] >= 1 {
				out[k] = (k + 1) % 4
			}
		}
		return out
	}
	return pred(a), pred(b), nil
}

func TestDisentangleHandCount(t *testing.T) {
	d, err := Disentangle([2]string{"a", "b"}, []float64{0, 1}, []float64{0, 0.5}, handPredictor, nil)
	if err != nil {
		t.Fatal(err)
	}
	// (0, 0): nothing moves. (0, 0.5): on task a, θ₀ vs θ₀ + 0.5τ₂ differ on
	// 2 of 4. (1, 0): on task b, θ₀ vs θ₀ + τ₁ differ on 4 of 4. (1, 0.5):
	// both, 0.5 + 1.
	want := [][]float64{{0, 0.5}, {1, 1.5}}
	for i := range want {
		for j := range want[i] {
			if d.At(i, j) != want[i][j] {
				t.Errorf("ξ(%g, %g) = %g, want %g", d.Alpha1[i], d.Alpha2[j], d.At(i, j), want[i][j])
			}
		}
	}
	if d.Examples != [2]int{4, 4} {
		t.Errorf("examples %v", d.Examples)
	}
}

// TestDisentangleProperties checks, on a predictor where every coefficient
// matters, that the task-t term vanishes where the other coefficient is 0
// (the two models are the same there), ξ(0, 0) = 0, and that exchanging
// the tasks transposes ξ (the definition is symmetric).
func TestDisentangleProperties(t *testing.T) {
	mixing := func(task int, a, b [2]float64) ([]int, []int, error) {
		pred := func(c [2]float64) []int {
			out := make([]int, 6)
			for k := range out {
				v := float64(k) + 1.7*c[0]*float64(k%3) - 2.3*c[1]*float64((k+task)%2) + 0.4*c[0]*c[1]
				out[k] = int(v+100) % 5
			}
			return out
		}
		return pred(a), pred(b), nil
	}
	grid := Grid(-1, 1, 0.5)
	d, err := Disentangle([2]string{"a", "b"}, grid, grid, mixing, nil)
	if err != nil {
		t.Fatal(err)
	}
	swapped := func(task int, a, b [2]float64) ([]int, []int, error) {
		return mixing(1-task, [2]float64{a[1], a[0]}, [2]float64{b[1], b[0]})
	}
	s, err := Disentangle([2]string{"b", "a"}, grid, grid, swapped, nil)
	if err != nil {
		t.Fatal(err)
	}
	zero := 2 // grid[2] == 0
	nonzero := 0
	for i := range grid {
		for j := range grid {
			if grid[j] == 0 && d.Terms[0][i][j] != 0 {
				t.Errorf("term a at (%g, 0) = %g, want 0", grid[i], d.Terms[0][i][j])
			}
			if grid[i] == 0 && d.Terms[1][i][j] != 0 {
				t.Errorf("term b at (0, %g) = %g, want 0", grid[j], d.Terms[1][i][j])
			}
			if s.At(j, i) != d.At(i, j) {
				t.Errorf("exchanging the tasks: ξ'(%g, %g) = %g, ξ(%g, %g) = %g", grid[j], grid[i], s.At(j, i), grid[i], grid[j], d.At(i, j))
			}
			if d.At(i, j) > 0 {
				nonzero++
			}
		}
	}
	if d.At(zero, zero) != 0 {
		t.Errorf("ξ(0, 0) = %g", d.At(zero, zero))
	}
	if nonzero < 10 {
		t.Errorf("only %d of %d grid points have ξ > 0: the test says little", nonzero, len(grid)*len(grid))
	}
	png, err := PlotDisentanglement(d, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Error("not a PNG")
	}
}

func TestDisentanglementBox(t *testing.T) {
	// Grid −1, 0, 1 on both axes: the box [0, 1]² holds the four points
	// (0,0), (0,1), (1,0), (1,1).
	d := &Disentanglement{Alpha1: []float64{-1, 0, 1}, Alpha2: []float64{-1, 0, 1},
		Xi: [][]float64{{2, 2, 2}, {2, 0, 0.4}, {2, 0.2, 1}}}
	mean, most := d.Box()
	if want := (0 + 0.4 + 0.2 + 1) / 4.0; mean != want || most != 1 {
		t.Errorf("Box() = %v, %v, want %v, 1", mean, most, want)
	}
	if mean, most := (&Disentanglement{Alpha1: []float64{2}, Alpha2: []float64{3}, Xi: [][]float64{{1}}}).Box(); mean != 0 || most != 0 {
		t.Errorf("no point in the box: %v, %v", mean, most)
	}
}
