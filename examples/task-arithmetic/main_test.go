package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/editkit/editkit/datasets"
)

// TestQuick runs the whole experiment with --quick (tasks whose data is
// missing are skipped by the run) and checks what the papers' setting
// promises: fine-tuning beats zero-shot on each task, λ = 0 is the
// pre-trained model exactly, the best merge beats zero-shot on average, and
// the outputs are written.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("the quick experiment takes about four minutes")
	}
	if n := len(datasets.Available(datasets.Options{})); n < 1 {
		t.Skipf("only %d of the datasets are available", n)
	}
	out := t.TempDir()
	r, err := run(options{Quick: true, Out: out, Log: testLog{t}})
	if err != nil {
		if strings.Contains(err.Error(), "need at least two datasets") {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	for k, v := range r.Skipped {
		t.Logf("skipped %s: %s", k, v)
	}
	t.Logf("\n%s", r.Table.Markdown())

	for _, name := range r.Tasks {
		if r.Finetuned[name] <= r.ZeroShot[name] {
			t.Errorf("%s: fine-tuned %.4f does not beat zero-shot %.4f (test)", name, r.Finetuned[name], r.ZeroShot[name])
		}
	}

	// λ = 0 is the pre-trained model: the searches' first point gives the
	// zero-shot validation accuracies exactly.
	checked := 0
	for _, m := range r.Merges {
		if m.Coefficient != "lambda" || m.Search == nil {
			continue
		}
		p := m.Search.Points[0]
		if p.Coef != 0 {
			t.Fatalf("%s: first grid point %g, want 0", m.Name, p.Coef)
		}
		for _, name := range r.Tasks {
			if p.Accuracy[name] != r.ZeroShotVal[name] {
				t.Errorf("%s at λ = 0: %s accuracy %.6f, zero-shot %.6f", m.Name, name, p.Accuracy[name], r.ZeroShotVal[name])
			}
		}
		checked++
	}
	if checked < 2 {
		t.Errorf("only %d λ searches", checked)
	}

	zs := mean(r.ZeroShot)
	best, bestName := -1.0, ""
	for _, m := range r.Merges {
		if a := mean(m.Test); a > best {
			best, bestName = a, m.Name
		}
	}
	if best <= zs {
		t.Errorf("best merge %s averages %.4f, not above zero-shot %.4f", bestName, best, zs)
	}
	t.Logf("best merge %s: %.2f%% vs zero-shot %.2f%%", bestName, 100*best, 100*zs)

	if n := r.Negation; n == nil || n.Search == nil {
		t.Error("no negation record")
	} else if n.Lambda <= 0 || n.NegatedTest[n.Target] >= n.PretrainedTest[n.Target] {
		t.Errorf("negation of %s: λ = %g, target %.4f → %.4f: subtracting the task vector did not lower the target", n.Target, n.Lambda, n.PretrainedTest[n.Target], n.NegatedTest[n.Target])
	}
	if l := r.SingleLines; l == nil || l.Search == nil {
		t.Error("no single-task LiNeS record")
	}
	// The diagnostic's λ = 0 point is the pre-trained model and its λ = 1
	// point the fine-tuned one: both were measured elsewhere on validation.
	if d := r.Interference; d == nil {
		t.Error("no interference record")
	} else {
		for _, name := range r.Tasks {
			own := d.Own[name]
			if len(own) != len(d.Lambdas) || d.Lambdas[0] != 0 || d.Lambdas[len(own)-1] != 1 {
				t.Fatalf("%s: %d own-vector points for λ %v", name, len(own), d.Lambdas)
			}
			if own[0] != r.ZeroShotVal[name] || math.Abs(own[len(own)-1]-r.FinetunedVal[name]) > 1.5/float64(r.Settings.ValLimit) {
				t.Errorf("%s along its vector: λ=0 %.4f (zero-shot %.4f), λ=1 %.4f (fine-tuned %.4f)", name, own[0], r.ZeroShotVal[name], own[len(own)-1], r.FinetunedVal[name])
			}
		}
	}
	for _, f := range []string{"table.md", "table.json", "negation.search.png", "merged/ties.search.png", "pretrained/config.json"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("output %s missing or empty: %v", f, err)
		}
	}
	for _, name := range r.Tasks {
		if _, err := os.Stat(filepath.Join(out, "finetuned", name, "config.json")); err != nil {
			t.Errorf("fine-tuned checkpoint of %s: %v", name, err)
		}
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
