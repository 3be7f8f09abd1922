package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/merge"
)

// testMerges are the quickstart's recipes plus task arithmetic at λ = 1 (the
// sum of the task vectors, TIES's λ) and two merges at λ = 0.
func testMerges() []mergeSpec {
	return append(defaultMerges(),
		mergeSpec{"ta_lambda1", "--method task_arithmetic --lambda 1", func() *merge.Config {
			return &merge.Config{Method: merge.TaskArithmetic, Lambda: f64(1)}
		}},
		mergeSpec{"ta_lambda0", "--method task_arithmetic --lambda 0", func() *merge.Config {
			return &merge.Config{Method: merge.TaskArithmetic, Lambda: f64(0)}
		}},
		mergeSpec{"ties_lambda0", "--method ties --lambda 0", func() *merge.Config {
			return &merge.Config{Method: merge.TIES, Lambda: f64(0)}
		}},
	)
}

func smallRun(t *testing.T, out string) *report {
	t.Helper()
	r, err := run(options{Out: out, Keep: true, Seed: 7, Layers: 2, Hidden: 32, Inter: 88, Vocab: 128, Merges: testMerges()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func rowsByName(r *report) map[string]row {
	m := map[string]row{}
	for _, rw := range r.Rows {
		m[rw.Name] = rw
	}
	return m
}

func TestQuickstart(t *testing.T) {
	tmp := t.TempDir()
	a := smallRun(t, filepath.Join(tmp, "a"))
	b := smallRun(t, filepath.Join(tmp, "b"))

	t.Run("deterministic", func(t *testing.T) {
		if !reflect.DeepEqual(a.Cosine, b.Cosine) {
			t.Errorf("cosine matrices differ between runs:\n%v\n%v", a.Cosine, b.Cosine)
		}
		if len(a.Rows) != len(b.Rows) {
			t.Fatalf("%d rows vs %d", len(a.Rows), len(b.Rows))
		}
		for i := range a.Rows {
			x, y := a.Rows[i], b.Rows[i]
			x.Seconds, y.Seconds = 0, 0
			if !reflect.DeepEqual(x, y) {
				t.Errorf("%s differs between runs:\n%+v\n%+v", x.Name, x, y)
			}
		}
	})

	t.Run("outputs", func(t *testing.T) {
		cfg, err := os.ReadFile(filepath.Join(a.Dir, "base", "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, rw := range a.Rows {
			dir := filepath.Join(a.Dir, "merged", rw.Name)
			if _, err := os.Stat(filepath.Join(dir, checkpoint.SingleFile)); err != nil {
				t.Errorf("%s: %v", rw.Name, err)
			}
			got, err := os.ReadFile(filepath.Join(dir, "config.json"))
			if err != nil || !bytes.Equal(got, cfg) {
				t.Errorf("%s: config.json not copied from the base (%v)", rw.Name, err)
			}
			if len(rw.SHA256) != 64 {
				t.Errorf("%s: sha256 %q", rw.Name, rw.SHA256)
			}
		}
	})

	rows := rowsByName(a)
	near := func(what string, got, want, tol float64) {
		t.Helper()
		if math.Abs(got-want) > tol {
			t.Errorf("%s = %.4f, want %.4f ± %g", what, got, want, tol)
		}
	}

	t.Run("lambda0 is the base", func(t *testing.T) {
		base, err := checkpoint.Open(filepath.Join(a.Dir, "base"))
		if err != nil {
			t.Fatal(err)
		}
		defer base.Close()
		for _, name := range []string{"ta_lambda0", "ties_lambda0"} {
			m, err := checkpoint.Open(filepath.Join(a.Dir, "merged", name))
			if err != nil {
				t.Fatal(err)
			}
			for _, ti := range base.Tensors() {
				want, _ := base.ReadRaw(ti.Name, nil)
				got, err := m.ReadRaw(ti.Name, nil)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s: tensor %s differs from the base (%v)", name, ti.Name, err)
				}
			}
			m.Close()
			if rw := rows[name]; rw.GainMean != 0 || rw.Noise != 0 {
				t.Errorf("%s: gain %v, noise %v; want 0", name, rw.GainMean, rw.Noise)
			}
		}
	})

	t.Run("task vectors", func(t *testing.T) {
		for i, r := range a.Cosine {
			for j, c := range r {
				if i == j {
					near("cos(τ_i, τ_i)", c, 1, 1e-9)
				} else if c > 0 || c < -0.15 {
					// Disjoint signal and independent noise are orthogonal; the
					// 2-against-1 sign conflicts make each pair slightly negative.
					t.Errorf("cos(τ_%d, τ_%d) = %.4f, want in [-0.15, 0]", i+1, j+1, c)
				}
			}
		}
	})

	t.Run("methods", func(t *testing.T) {
		lin, ta, ta1, ties := rows["linear"], rows["task_arithmetic"], rows["ta_lambda1"], rows["ties"]
		// Independent noise: an average of 3 has 1/√3 of one model's, a sum √3.
		near("linear gain", lin.GainMean, 1.0/3, 0.01)
		near("linear noise", lin.Noise, 1/math.Sqrt(3), 0.03)
		near("task_arithmetic λ=0.4 gain", ta.GainMean, 0.4, 0.01)
		near("task_arithmetic λ=1 gain", ta1.GainMean, 1, 0.01)
		near("task_arithmetic λ=1 noise", ta1.Noise, math.Sqrt(3), 0.05)
		// λ scales gain and noise alike: the average and TA have one ratio.
		near("linear vs TA gain/noise", lin.GainPerNoise, ta.GainPerNoise, 0.01)
		for i := range numTasks {
			if ties.Retention[i] < 0.98 || ties.Gain[i] < 0.9 {
				t.Errorf("ties keeps task %d's signal at cos %.3f, gain %.3f; want ≥ 0.98 and ≥ 0.9", i+1, ties.Retention[i], ties.Gain[i])
			}
			if ties.Retention[i] <= ta1.Retention[i] {
				t.Errorf("ties retention %.3f ≤ task arithmetic's %.3f for task %d", ties.Retention[i], ta1.Retention[i], i+1)
			}
		}
		if ties.Noise >= 0.7*ta1.Noise {
			t.Errorf("ties noise %.3f, want < 0.7 × task arithmetic's at λ=1 (%.3f)", ties.Noise, ta1.Noise)
		}
		if ties.GainPerNoise < 1.5*ta.GainPerNoise {
			t.Errorf("ties gain/noise %.3f, want ≥ 1.5 × task arithmetic's (%.3f)", ties.GainPerNoise, ta.GainPerNoise)
		}
		// TIES: one pass counting its whole-model threshold and majority
		// sign, then the merge; linear: the merge alone.
		if ties.Passes != 2 || lin.Passes != 1 {
			t.Errorf("passes: ties %d, linear %d; want 2 and 1", ties.Passes, lin.Passes)
		}
		// Consensus with k = 2 keeps only weights that two tasks' TALL masks
		// select: each task's own signal is selected by one mask only.
		if g := rows["consensus"].GainMean; g > 0.1 {
			t.Errorf("consensus gain %.3f, want < 0.1 (task-exclusive weights removed)", g)
		}
		// Near-orthogonal task vectors put Model Stock near the base.
		if g := rows["model_stock"].GainMean; math.Abs(g) > 0.15 {
			t.Errorf("model_stock gain %.3f, want |gain| < 0.15", g)
		}
		// LiNeS on task arithmetic: α = ‖Σ τ‖₁/‖Σ τ‖₁/T = 1/3, and every
		// block is scaled between α and α + β.
		l := rows["ta+lines"]
		alpha := l.Params["lines"].(map[string]any)["alpha"].(float64)
		near("LiNeS α", alpha, 1.0/3, 1e-6)
		if l.GainMean <= alpha || l.GainMean >= alpha+0.5 {
			t.Errorf("ta+lines gain %.3f outside (α, α+β) = (%.3f, %.3f)", l.GainMean, alpha, alpha+0.5)
		}
	})
}

func TestOutMustBeEmpty(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run(options{Out: dir, Merges: []mergeSpec{}}); err == nil {
		t.Fatal("run accepted a non-empty --out folder, which it would remove")
	}
	if _, err := os.Stat(filepath.Join(dir, "keep.txt")); err != nil {
		t.Fatal(err)
	}
}

func TestRemovesTempDir(t *testing.T) {
	out := filepath.Join(t.TempDir(), "q")
	r, err := run(options{Out: out, Layers: 1, Hidden: 16, Inter: 32, Vocab: 32, Merges: []mergeSpec{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.Dir); !os.IsNotExist(err) {
		t.Errorf("without Keep, %s should be removed (stat: %v)", r.Dir, err)
	}
}
