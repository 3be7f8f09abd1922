package eval

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// flip returns n outcomes with k true, in a shuffled order.
func flip(n, k int, seed uint64) []bool {
	out := make([]bool, n)
	for i := range k {
		out[i] = true
	}
	r := rand.New(rand.NewPCG(seed, 3))
	r.Shuffle(n, func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func scores(h []bool) []float64 {
	s, _ := Scores([][]bool{h})
	return s
}

// TestBootstrapMatchesNormalApproximations: with 2000 examples the
// percentile intervals agree with the textbook normal approximations to a
// few tenths of a point: p ± 1.96·√(p(1−p)/n) for an accuracy, and for a
// paired difference with b examples only A gets right and c only B,
// d = (b − c)/n ± 1.96·√(b + c − (b − c)²/n)/n (McNemar's variance).
func TestBootstrapMatchesNormalApproximations(t *testing.T) {
	const n = 2000
	a := flip(n, 1600, 1) // 80%
	// B agrees with A except on 60 examples A gets right (B wrong) and 20
	// it gets wrong (B right): b = 60, c = 20, d = +2 points.
	bh := append([]bool(nil), a...)
	b, c := 0, 0
	for i := range bh {
		switch {
		case a[i] && b < 60:
			bh[i] = false
			b++
		case !a[i] && c < 20:
			bh[i] = true
			c++
		}
	}
	res, err := Bootstrap([]string{"x"}, []Estimate{{A: map[string][]float64{"x": scores(a)}}, {A: map[string][]float64{"x": scores(a)}, B: map[string][]float64{"x": scores(bh)}}}, BootstrapOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	acc := res[0].PerTask["x"]
	half := 1.96 * math.Sqrt(0.8*0.2/n)
	if acc.Value != 0.8 || math.Abs(acc.Lo-(0.8-half)) > 0.003 || math.Abs(acc.Hi-(0.8+half)) > 0.003 {
		t.Errorf("accuracy interval %+v, normal approximation 0.8 ± %.4f", acc, half)
	}
	d := res[1].PerTask["x"]
	half = 1.96 * math.Sqrt(float64(b+c)-float64((b-c)*(b-c))/n) / n
	if math.Abs(d.Value-0.02) > 1e-12 || math.Abs(d.Lo-(0.02-half)) > 0.003 || math.Abs(d.Hi-(0.02+half)) > 0.003 || !d.Excludes(0) {
		t.Errorf("paired difference %+v, McNemar approximation 0.02 ± %.4f", d, half)
	}
	if res[1].Mean != d {
		t.Errorf("one task: mean %+v differs from the task's %+v", res[1].Mean, d)
	}
	// A row against itself: exactly 0.
	res, _ = Bootstrap([]string{"x"}, []Estimate{{A: map[string][]float64{"x": scores(a)}, B: map[string][]float64{"x": scores(a)}}}, BootstrapOptions{})
	if iv := res[0].Mean; iv.Value != 0 || iv.Lo != 0 || iv.Hi != 0 || iv.Excludes(0) {
		t.Errorf("self-difference %+v", iv)
	}
}

func TestBootstrapTasksSeedsAndErrors(t *testing.T) {
	sc := map[string][]float64{"p": scores(flip(500, 450, 1)), "q": scores(flip(300, 150, 2))}
	est := []Estimate{{A: sc}}
	r1, err := Bootstrap([]string{"p", "q"}, est, BootstrapOptions{Seed: 4, Replicates: 500})
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := Bootstrap([]string{"p", "q"}, est, BootstrapOptions{Seed: 4, Replicates: 500})
	r3, _ := Bootstrap([]string{"p", "q"}, est, BootstrapOptions{Seed: 5, Replicates: 500})
	if r1[0].Mean != r2[0].Mean || r1[0].Mean == r3[0].Mean {
		t.Error("not deterministic per seed")
	}
	m := r1[0].Mean
	if math.Abs(m.Value-0.7) > 1e-12 || !(m.Lo < 0.7 && m.Hi > 0.7) {
		t.Errorf("mean of 90%% and 50%%: %+v", m)
	}
	// The mean's interval is narrower than the noisier task's.
	if q := r1[0].PerTask["q"]; m.Hi-m.Lo >= q.Hi-q.Lo {
		t.Errorf("mean interval %+v not narrower than q's %+v", m, q)
	}
	for _, bad := range [][]Estimate{
		{{A: map[string][]float64{"p": sc["p"]}}},
		{{A: sc, B: map[string][]float64{"p": sc["p"][:10], "q": sc["q"]}}},
		{{A: sc}, {A: map[string][]float64{"p": sc["p"][:20], "q": sc["q"]}}},
	} {
		if _, err := Bootstrap([]string{"p", "q"}, bad, BootstrapOptions{Replicates: 10}); err == nil {
			t.Errorf("bad estimates %d: no error", len(bad))
		}
	}
	if s, err := Scores([][]bool{{true, false, true}, {true, true, false}, {true, false, false}}); err != nil || s[0] != 1 || math.Abs(s[1]-1.0/3) > 1e-15 || math.Abs(s[2]-1.0/3) > 1e-15 {
		t.Errorf("Scores = %v, %v", s, err)
	}
	if _, err := Scores([][]bool{{true}, {true, false}}); err == nil {
		t.Error("runs of different lengths: no error")
	}
}

func TestTableRunsAndIntervals(t *testing.T) {
	tab := &Table{Tasks: []string{"p", "q"}, Split: "test"}
	zs := map[string][]bool{"p": flip(400, 200, 1), "q": flip(200, 60, 2)}
	if err := tab.AddRuns("zero-shot", []map[string][]bool{zs}, nil); err != nil {
		t.Fatal(err)
	}
	runs := []map[string][]bool{
		{"p": flip(400, 300, 3), "q": flip(200, 100, 4)}, // mean (0.75 + 0.5)/2 = 0.625
		{"p": flip(400, 320, 5), "q": flip(200, 110, 6)}, // (0.8 + 0.55)/2 = 0.675
		{"p": flip(400, 280, 7), "q": flip(200, 120, 8)}, // (0.7 + 0.6)/2 = 0.65
	}
	if err := tab.AddRuns("merged", runs, map[string]float64{"lambda": 0.3}); err != nil {
		t.Fatal(err)
	}
	if err := tab.Add("no outcomes", map[string]float64{"p": 0.5, "q": 0.5}, nil); err != nil {
		t.Fatal(err)
	}
	r := tab.Rows[1]
	if r.Runs != 3 || math.Abs(r.Accuracy["p"]-0.75) > 1e-12 || math.Abs(r.MeanAccuracy-0.65) > 1e-12 || math.Abs(r.Spread-0.025) > 1e-12 {
		t.Errorf("row %+v: want 3 runs, p 0.75, mean 0.65, sd 0.025", r)
	}
	if err := tab.Intervals([]string{"zero-shot", "absent"}, BootstrapOptions{Replicates: 400}); err != nil {
		t.Fatal(err)
	}
	v := tab.Rows[1].Versus["zero-shot"]
	if tab.Rows[0].Versus != nil || tab.Rows[2].Interval != nil || len(tab.Rows[1].Versus) != 1 {
		t.Errorf("intervals where there should be none: %+v", tab.Rows)
	}
	if math.Abs(v[Average].Value-0.25) > 1e-12 || !v[Average].Excludes(0) || math.Abs(v["q"].Value-0.25) > 1e-12 {
		t.Errorf("merged − zero-shot %+v", v)
	}
	md := tab.Markdown() + tab.MarkdownIntervals()
	for _, want := range []string{"| seeds (sd) |", "| merged | 75.0 | 55.0 | 65.0 | 3 (2.5) | lambda=0.3 |", "| zero-shot | 50.0 [", "| model − zero-shot |", "| merged | +25.0 ["} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if err := tab.AddRuns("broken", []map[string][]bool{{"p": zs["p"]}}, nil); err == nil {
		t.Error("runs without a task: no error")
	}
}
