package main

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/examples/internal/pretraining"
	"github.com/editkit/editkit/linearize"
)

// TestQuick runs the whole experiment with --quick (tasks whose data is
// missing are skipped by the run) and checks what the design promises,
// with assertions that hold beyond chance: the tasks are new to the
// pre-trained model (zero-shot at most 65% of fine-tuned on average) and
// fine-tuning beats zero-shot on every task by more than the paired 95%
// interval; λ = 0 is the pre-trained model exactly; the merge chosen on
// validation beats zero-shot beyond its interval; negation keeps its
// control; the outputs are written.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("the quick experiment takes about five minutes")
	}
	if n := len(datasets.Available(datasets.Options{})); n < 1 {
		t.Skipf("only %d of the datasets are available", n)
	}
	out := t.TempDir()
	r, err := run(options{Quick: true, Out: out, Log: pretraining.TestLog(t)})
	if err != nil {
		if strings.Contains(err.Error(), "need at least two datasets") {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	for k, v := range r.Skipped {
		t.Logf("skipped %s: %s", k, v)
	}
	t.Logf("\n%s%s", r.Table.Markdown(), r.Table.MarkdownIntervals())

	rows := map[string]eval.Row{}
	for _, row := range r.Table.Rows {
		rows[row.Name] = row
	}
	ft := rows[finetunedRow]
	for _, name := range r.Tasks {
		if iv := ft.Versus[zeroShotRow][name]; !(iv.Lo > 0) {
			t.Errorf("%s: fine-tuned − zero-shot %+.4f [%+.4f, %+.4f] (test): not above zero-shot beyond the interval", name, iv.Value, iv.Lo, iv.Hi)
		}
	}
	if r.ZeroShotShare > 0.65 {
		t.Errorf("zero-shot is %.0f%% of fine-tuned on average: the tasks are not new enough to the pre-trained model (target ≤ 65%%)", 100*r.ZeroShotShare)
	}

	// λ = 0 is the pre-trained model: the searches' first point gives the
	// zero-shot validation accuracies exactly.
	checked := 0
	for _, m := range r.Merges {
		rec := m.Seeds[0]
		if rec.Coefficient != "lambda" || rec.Search == nil {
			continue
		}
		p := rec.Search.Points[0]
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
	if checked < 3 {
		t.Errorf("only %d λ searches", checked)
	}
	if r.Best == "" {
		t.Fatal("no best method chosen on validation")
	}
	if iv := rows[r.Best].Versus[zeroShotRow][eval.Average]; !(iv.Lo > 0) {
		t.Errorf("the merge chosen on validation, %s, does not beat zero-shot beyond the interval: %+.4f [%+.4f, %+.4f]", r.Best, iv.Value, iv.Lo, iv.Hi)
	}
	for _, m := range r.Merges {
		if m.Name == "consensus" && (m.Seeds[0].Tall == nil || len(m.Seeds[0].Tall.Lambdas) != len(r.Tasks)) {
			t.Errorf("consensus without its TALL λ_t search: %+v", m.Seeds[0].Tall)
		}
	}

	if n := r.Negation; n == nil || n.Search == nil {
		t.Error("no negation record")
	} else if p := n.Search.Points[n.Search.Best]; !p.Feasible || p.Accuracy[n.Control] < eval.ControlFraction*r.ZeroShotVal[n.Control] {
		t.Errorf("negation's chosen λ %g breaks its control constraint: %+v", n.Lambda, p)
	}
	if l := r.SingleLines; l == nil || l.UniformSearch == nil {
		t.Error("no single-task LiNeS record")
	} else if len(l.Table.Rows) != 4 || l.Table.Rows[3].Versus == nil {
		t.Errorf("single-task LiNeS table %+v", l.Table)
	}
	// The diagnostic's λ = 0 point is the pre-trained model and its λ = 1
	// point the first seed's fine-tuned one: both were measured elsewhere
	// on validation.
	d := r.Interference[lrLabel(r.LR.Chosen)]
	if d == nil || r.Vectors[lrLabel(r.LR.Chosen)] == nil {
		t.Fatal("no interference or vector record")
	}
	for _, name := range r.Tasks {
		own := d.Own[name]
		if len(own) != len(d.Lambdas) || d.Lambdas[0] != 0 || d.Lambdas[len(own)-1] != 1 {
			t.Fatalf("%s: %d own-vector points for λ %v", name, len(own), d.Lambdas)
		}
		if own[0] != r.ZeroShotVal[name] {
			t.Errorf("%s along its vector: λ=0 %.4f, zero-shot %.4f", name, own[0], r.ZeroShotVal[name])
		}
		if math.Abs(own[len(own)-1]-r.FinetunedVal[name]) > 1.5/float64(r.Settings.ValLimit) && r.Settings.Seeds == 1 {
			t.Errorf("%s along its vector: λ=1 %.4f, fine-tuned %.4f", name, own[len(own)-1], r.FinetunedVal[name])
		}
		if c := r.Vectors[lrLabel(r.LR.Chosen)].Cosine[name][name]; math.Abs(c-1) > 1e-6 {
			t.Errorf("cos(τ_%s, τ_%s) = %v", name, name, c)
		}
	}
	checkTangent(t, r, out)
	for _, f := range []string{"table.md", "table.json", "merged/seed1/ties.search.png", "pretrained/config.json", "heads/mnist-pre.safetensors",
		"tangent/xi-non-linear.png", "tangent/xi-linearized.png", "tangent/ntk-localization.png"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("output %s missing or empty: %v", f, err)
		}
	}
}

// checkTangent checks the tangent-space comparison: f_lin(θ₀) = f(θ₀), so
// every mode's α = 0 point is the zero-shot model exactly; linearized
// fine-tuning learns every task beyond the interval; each negation keeps
// its control; linearized fine-tunes and their merge record their base;
// ξ vanishes at the origin and on its term's own axis; the NTK's top
// eigenvectors are unit vectors, in order.
func checkTangent(t *testing.T, r *report, out string) {
	tg := r.Tangent
	if tg == nil || len(tg.Modes) != 3 || tg.Single == nil || tg.Addition == nil {
		t.Fatalf("tangent-space record %+v", tg)
	}
	for _, m := range tg.Modes {
		p := m.Addition[0].Search.Points[0]
		if p.Coef != 0 {
			t.Fatalf("%s: first α %v", m.Mode, p.Coef)
		}
		for _, name := range r.Tasks {
			if p.Accuracy[name] != r.ZeroShotVal[name] {
				t.Errorf("%s at α = 0: %s %.6f, zero-shot %.6f", m.Mode, name, p.Accuracy[name], r.ZeroShotVal[name])
			}
		}
		for _, n := range m.Negation {
			if b := n.Search.Points[n.Search.Best]; !b.Feasible || b.Accuracy[n.Control] < eval.ControlFraction*r.ZeroShotVal[n.Control] {
				t.Errorf("%s: negation of %s breaks its control: %+v", m.Mode, n.Target, b)
			}
		}
	}
	for _, row := range tg.Single.Rows {
		if row.Name != modeLinearized {
			continue
		}
		for _, name := range append([]string{eval.Average}, r.Tasks...) {
			if iv := row.Versus[zeroShotRow][name]; !(iv.Lo > 0) {
				t.Errorf("linearized fine-tuning on %s: %+.4f [%+.4f, %+.4f] against zero-shot (test)", name, iv.Value, iv.Lo, iv.Hi)
			}
		}
	}
	for _, path := range []string{tg.Modes[1].Addition[0].Checkpoint, ftPath(out, &task{name: r.Tasks[0]}, r.LR.Chosen, 1, true)} {
		ck, err := checkpoint.Open(path)
		if err != nil {
			t.Errorf("opening %s: %v", path, err)
			continue
		}
		info, ok, err := linearize.ReadMetadata(ck.Metadata)
		ck.Close()
		if !ok || err != nil || !strings.HasSuffix(info.Path, "pretrained") {
			t.Errorf("%s: linearized %v around %q (%v)", path, ok, info.Path, err)
		}
	}
	for mode, x := range tg.Xi {
		zero := slices.Index(x.Alpha1, 0)
		if zero < 0 || x.At(zero, zero) != 0 {
			t.Fatalf("%s: ξ(0, 0) = %v on grid %v", mode, x.At(max(zero, 0), max(zero, 0)), x.Alpha1)
		}
		for i := range x.Alpha1 {
			if x.Terms[0][i][zero] != 0 || x.Terms[1][zero][i] != 0 {
				t.Errorf("%s: a term is not 0 where the other coefficient is 0 (α index %d)", mode, i)
			}
		}
	}
	l := tg.NTK
	if l == nil || len(l.Share) != r.Settings.NtkTop {
		t.Fatalf("NTK localization %+v", l)
	}
	for k, sh := range l.Share {
		if math.Abs(sh[0]+sh[1]-1) > 1e-9 || (k > 0 && l.Eigenvalues[k] > l.Eigenvalues[k-1]) || l.Eigenvalues[k] < -1e-6*l.Eigenvalues[0] {
			t.Errorf("eigenvector %d: shares %v, eigenvalue %v (previous %v)", k, sh, l.Eigenvalues[k], l.Eigenvalues[max(k-1, 0)])
		}
	}
}
