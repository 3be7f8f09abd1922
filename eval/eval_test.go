package eval

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/datasets"
)

// brightness builds a dataset of 1×1 gray images whose class is the pixel
// value's bucket, so a classifier that reads the pixel is right by
// construction.
func brightness(t *testing.T, pix []uint8, labels []int) *datasets.Dataset {
	t.Helper()
	ds, err := datasets.FromPixels("toy", []string{"dark", "mid", "bright"}, 1, 1, 1, pix, labels)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestAccuracy(t *testing.T) {
	pix := []uint8{0, 10, 120, 130, 250, 255, 5}
	labels := []int{0, 0, 1, 1, 2, 2, 2} // the last one is mislabelled for the classifier
	ds := brightness(t, pix, labels)
	pre := datasets.Preprocess{Size: 1, Mean: [3]float32{0, 0, 0}, Std: [3]float32{1, 1, 1}}
	clf := func(b *datasets.Batch) ([]float32, error) {
		out := make([]float32, 3*b.Size)
		for i := range b.Size {
			v := b.Images[3*i] // [0, 1]
			class := min(int(v*3), 2)
			out[3*i+class] = 1
		}
		return out, nil
	}
	var seen []int
	res, err := Accuracy(clf, ds, pre, Options{BatchSize: 3, Progress: func(done, total int) { seen = append(seen, done) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Correct != 6 || res.Total != 7 || math.Abs(res.Accuracy-6.0/7) > 1e-15 {
		t.Errorf("result = %+v, want 6/7", res)
	}
	if !slices.Equal(seen, []int{3, 6, 7}) {
		t.Errorf("progress %v, want [3 6 7]", seen)
	}
	// A head of the wrong size is an error, not a wrong accuracy.
	bad := func(b *datasets.Batch) ([]float32, error) { return make([]float32, 2*b.Size), nil }
	if _, err := Accuracy(bad, ds, pre, Options{}); err == nil || !strings.Contains(err.Error(), "head") {
		t.Errorf("mismatched head: err = %v", err)
	}
	boom := errors.New("boom")
	failing := func(*datasets.Batch) ([]float32, error) { return nil, boom }
	if _, err := Accuracy(failing, ds, pre, Options{}); !errors.Is(err, boom) {
		t.Errorf("classifier error: err = %v", err)
	}
}

func TestArgmax(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		in   []float32
		want int
	}{
		{[]float32{1, 3, 2}, 1},
		{[]float32{2, 2, 1}, 0}, // first maximum, as torch.argmax
		{[]float32{nan, 1, 0}, 1},
		{[]float32{-1}, 0},
	}
	for _, tc := range tests {
		if got := Argmax(tc.in); got != tc.want {
			t.Errorf("Argmax(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestGrid(t *testing.T) {
	if len(LambdaGrid()) != 21 || LambdaGrid()[0] != 0 || LambdaGrid()[20] != 1 || LambdaGrid()[7] != 0.35 {
		t.Errorf("LambdaGrid = %v", LambdaGrid())
	}
	if len(LinesBetaGridTIES()) != 15 || LinesBetaGridTIES()[14] != 1.5 || LinesBetaGrid()[2] != 0.3 {
		t.Errorf("LiNeS grids = %v, %v", LinesBetaGrid(), LinesBetaGridTIES())
	}
	if got := Grid(1, 0, 0.1); got != nil {
		t.Errorf("empty grid = %v", got)
	}
}

func TestSearches(t *testing.T) {
	// Accuracy of two tasks as a function of λ: task a peaks at 0.4, task b
	// falls; mean normalized (ft a = 0.8, b = 0.5) is largest at 0.3 and 0.4
	// equally, and the first wins.
	acc := map[float64]map[string]float64{
		0.2: {"a": 0.6, "b": 0.5},
		0.3: {"a": 0.7, "b": 0.45},
		0.4: {"a": 0.8, "b": 0.375},
		0.5: {"a": 0.7, "b": 0.3},
	}
	grid := []float64{0.2, 0.3, 0.4, 0.5}
	eval := func(c float64) (map[string]float64, error) { return acc[c], nil }
	s, err := SearchAddition(grid, []string{"a", "b"}, map[string]float64{"a": 0.8, "b": 0.5}, eval)
	if err != nil {
		t.Fatal(err)
	}
	// Scores: 0.2 → (0.75+1)/2 = 0.875; 0.3 → (0.875+0.9)/2 = 0.8875;
	// 0.4 → (1+0.75)/2 = 0.875; 0.5 → (0.875+0.6)/2 = 0.7375.
	if s.Chosen() != 0.3 || math.Abs(s.Points[1].Score-0.8875) > 1e-12 {
		t.Errorf("addition chose %v (scores %+v)", s.Chosen(), s.Points)
	}
	// Negation of a: lowest a with b ≥ 0.4 → 0.2 (a = 0.6) since 0.3 has a = 0.7.
	s, err = SearchNegation(grid, "a", "b", 0.4, eval)
	if err != nil || s.Chosen() != 0.2 {
		t.Errorf("negation chose %v, err %v", s.Chosen(), err)
	}
	if _, err := SearchNegation(grid, "a", "b", 0.9, eval); err == nil {
		t.Error("negation with an unreachable control constraint: no error")
	}
	// Trade-off 2·a/0.8 + b/0.5: 0.2 → 1.5+1 = 2.5; 0.3 → 1.75+0.9 = 2.65;
	// 0.4 → 2+0.75 = 2.75; 0.5 → 1.75+0.6 = 2.35.
	s, err = SearchTradeoff(grid, "a", []string{"b"}, map[string]float64{"a": 0.8, "b": 0.5}, 2, eval)
	if err != nil || s.Chosen() != 0.4 {
		t.Errorf("trade-off chose %v, err %v", s.Chosen(), err)
	}
	png, err := PlotSearch(s, "trade-off", "λ")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Error("PlotSearch did not return a PNG")
	}
}

func TestTable(t *testing.T) {
	tab := &Table{Tasks: []string{"mnist", "gtsrb"}, Finetuned: map[string]float64{"mnist": 0.99, "gtsrb": 0.9}, Split: "test"}
	if err := tab.Add("zero-shot", map[string]float64{"mnist": 0.495, "gtsrb": 0.45}, nil); err != nil {
		t.Fatal(err)
	}
	if err := tab.Add("ties", map[string]float64{"mnist": 0.891, "gtsrb": 0.72}, map[string]float64{"lambda": 0.3}); err != nil {
		t.Fatal(err)
	}
	if err := tab.Add("broken", map[string]float64{"mnist": 0.5}, nil); err == nil {
		t.Error("row without a task's accuracy: no error")
	}
	r := tab.Rows[1]
	if math.Abs(r.Normalized["mnist"]-0.9) > 1e-12 || math.Abs(r.MeanNormalized-0.85) > 1e-12 || math.Abs(r.MeanAccuracy-0.8055) > 1e-12 {
		t.Errorf("row = %+v", r)
	}
	md := tab.Markdown()
	for _, want := range []string{"| model | mnist | gtsrb | average | chosen |", "| ties | 89.1 (90.0) | 72.0 (80.0) | 80.5 (85.0) | lambda=0.3 |", "| zero-shot | 49.5 (50.0) | 45.0 (50.0) | 47.2 (50.0) |  |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	js, err := tab.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back Table
	if err := json.Unmarshal(js, &back); err != nil || len(back.Rows) != 2 || back.Rows[1].Coefficients["lambda"] != 0.3 {
		t.Errorf("JSON round trip: %v %+v", err, back)
	}
}
