package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/examples/internal/pretraining"
	"github.com/editkit/editkit/unlearn"
)

// TestQuick runs the experiment with --quick and checks what holds at
// this size whatever the noise of a small run: the poisoned fine-tuning
// implants the backdoor; every TBAR search starts at the backdoored model
// itself and chooses an α that keeps the validation clean accuracy above
// the floor; subtracting enough of the trigger vector removes the
// backdoor (the search's largest α has at most half the backdoored
// model's validation ASR); clean fine-tuning on 50·N images lowers the
// test ASR; and every output is written.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("the quick experiment takes a few minutes")
	}
	if !slices.Contains(datasets.Available(datasets.Options{}), "cifar10") {
		t.Skip("cifar10 is not available (../shared/data/vision or $EDITKIT_DATA)")
	}
	out := t.TempDir()
	r, err := run(options{Quick: true, Out: out, Log: pretraining.TestLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", r.markdown())
	if len(r.Cases) == 0 {
		t.Fatal("no case ran")
	}
	for _, c := range r.Cases {
		rows := map[string]row{}
		for _, rw := range c.Rows {
			rows[rw.Name] = rw
		}
		bd := rows["backdoored"]
		if bd.ASR < 0.7 {
			t.Fatalf("%s/%s: the backdoor did not take (test ASR %.3f)", c.Task, c.Attack, bd.ASR)
		}
		if ft := rows["clean fine-tuning, 50·N"]; ft.ASR >= bd.ASR {
			t.Errorf("%s/%s: clean fine-tuning on 50·N images leaves test ASR %.3f of %.3f", c.Task, c.Attack, ft.ASR, bd.ASR)
		}
		for _, res := range c.TBAR {
			if res.From == unlearn.FromBackdoored && res.Trigger == c.Trigger {
				last := res.Search.Points[len(res.Search.Points)-1]
				if last.Accuracy[unlearn.MetricASR] > 0.5*res.Backdoored.ASR {
					t.Errorf("%s/%s: θ_bd − %g·τ still has validation ASR %.3f of %.3f: the trigger vector does not carry the backdoor", c.Task, c.Attack, last.Coef, last.Accuracy[unlearn.MetricASR], res.Backdoored.ASR)
				}
			}
			if res.Cleaned.CA < res.MinCA {
				t.Errorf("%s/%s: TBAR (from %s) chose α %g with validation CA %.3f under the floor %.3f", c.Task, c.Attack, res.From, res.Alpha, res.Cleaned.CA, res.MinCA)
			}
			p := res.Search.Points[0]
			if p.Coef != 0 || p.Accuracy[unlearn.MetricCA] != res.Backdoored.CA || p.Accuracy[unlearn.MetricASR] != res.Backdoored.ASR {
				t.Errorf("%s/%s: the search's α = 0 point %+v is not the backdoored model %+v", c.Task, c.Attack, p, res.Backdoored)
			}
		}
		if len(c.TBAR) != 3 || c.Inversion == nil || !(c.Inversion.PL1 > 0 && c.Inversion.PL1 <= 1) {
			t.Errorf("%s/%s: %d TBAR runs, inversion %+v", c.Task, c.Attack, len(c.TBAR), c.Inversion)
		}
		for _, name := range []string{"clean fine-tuning, N", "clean fine-tuning, 50·N", rowName("tbar-from-pretrained"), rowName("tbar-inverted")} {
			if _, ok := rows[name]; !ok {
				t.Errorf("%s/%s: no row %q", c.Task, c.Attack, name)
			}
		}
		// Every checkpoint, record and plot of the case.
		files := []string{"inverted.safetensors", "inverted.json"}
		for _, m := range []string{"backdoored", "clean-fine-tuning-N", "clean-fine-tuning-50N", "tbar", "tbar-from-pretrained", "tbar-inverted"} {
			files = append(files, m+"/config.json", m+"/model.safetensors")
		}
		for _, m := range []string{"tbar", "tbar-from-pretrained", "tbar-inverted"} {
			files = append(files, m+".tbar.json", m+".tbar.png")
		}
		if c.Xi != nil {
			files = append(files, "xi.json", "xi.png")
		}
		if rel, err := filepath.Rel(out, c.Dir); err != nil || !filepath.IsLocal(rel) {
			t.Errorf("%s/%s: case folder %s outside %s", c.Task, c.Attack, c.Dir, out)
		}
		for _, f := range files {
			if st, err := os.Stat(filepath.Join(c.Dir, f)); err != nil || st.Size() == 0 {
				t.Errorf("%s/%s: output %s missing or empty: %v", c.Task, c.Attack, f, err)
			}
		}
		if c.Xi == nil && c == r.Cases[0] {
			t.Errorf("%s/%s: no weight disentanglement for the first case", c.Task, c.Attack)
		}
	}
	for _, f := range []string{"table.md", "table.json", filepath.Join(r.Cases[0].Task, "clean-finetuned", "config.json")} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("output %s missing or empty: %v", f, err)
		}
	}
}
