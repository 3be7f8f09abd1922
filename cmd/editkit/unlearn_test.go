package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/unlearn"
)

func TestUnlearnCLI(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	data, model, head := toyFixture(t, dir)
	if _, stderr, err := ftRun("finetune", "--model", model, "--head", head, "--dataset", data, "--steps", "4", "--batch", "16", "--lr", "1e-3",
		"--poison", "badnets:size=2,pattern=white", "--poison-rate", "0.3", "--target", "1", "-q", "-o", p("bd")); err != nil {
		t.Fatal(stderr)
	}
	tbar := []string{"unlearn", "tbar", "--model", p("bd"), "--dataset", data, "--head", head, "--trigger", "badnets:size=2,pattern=white", "--target", "1"}

	// α = 0 only: the output is the backdoored model, tensor for tensor.
	out, stderr, err := ftRun(append(tbar, "--alphas", "0", "--alpha-max", "0", "--steps", "2", "--lr", "1e-3", "--batch", "8", "--json", "-o", p("same"))...)
	if err != nil {
		t.Fatal(stderr)
	}
	var sum tbarSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if sum.Alpha != 0 || len(sum.Search.Points) != 1 || sum.FinetuneSteps != 2 || sum.Examples != 58 {
		t.Errorf("summary: α %v, %d points, %d steps, N %d", sum.Alpha, len(sum.Search.Points), sum.FinetuneSteps, sum.Examples)
	}
	a, err := checkpoint.Open(p("bd"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := checkpoint.Open(p("same"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, info := range a.Tensors() {
		x, _ := a.ReadRaw(info.Name, nil)
		y, err := b.ReadRaw(info.Name, nil)
		if err != nil || !bytes.Equal(x, y) {
			t.Errorf("tensor %s differs at α = 0 (%v)", info.Name, err)
		}
	}
	if b.Metadata["editkit.tbar.alpha"] != "0" {
		t.Errorf("metadata %v", b.Metadata)
	}
	for _, f := range []string{"same.tbar.json", "same.tbar.png", "same/head.safetensors"} {
		if st, err := os.Stat(p(f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}

	// A real search, from the pre-trained model.
	if _, stderr, err := ftRun(append(tbar, "--from", "pretrained", "--base", model, "--alphas", "0,0.5,1", "--alpha-max", "2", "--steps", "3", "--lr", "1e-3", "--batch", "8", "--keep-finetuned", p("trigger-ft"), "-o", p("clean.safetensors"))...); err != nil {
		t.Fatal(stderr)
	} else if !strings.Contains(stderr, "unlearn tbar: wrote") {
		t.Errorf("stderr: %s", stderr)
	}
	if _, err := os.Stat(p("clean.tbar.json")); err != nil {
		t.Error(err)
	}
	// The kept fine-tuned model minus the start is the trigger vector.
	if _, stderr, err := ftRun("taskvector", "--base", model, "--finetuned", p("trigger-ft"), "-o", p("tau.safetensors")); err != nil {
		t.Errorf("taskvector of the kept trigger fine-tune: %s", stderr)
	}

	// In the tangent space.
	out, stderr, err = ftRun(append(tbar, "--linearized", "--alphas", "0,1", "--alpha-max", "1", "--steps", "2", "--lr", "1e-3", "--batch", "8", "--json", "-o", p("lin"))...)
	if err != nil {
		t.Fatal(stderr)
	}
	var lsum tbarSummary
	if err := json.Unmarshal([]byte(out), &lsum); err != nil || !lsum.Linearized || !strings.Contains(lsum.FinetuneRecipe, "linearized=true") {
		t.Errorf("--linearized: %v %+v", err, lsum.TBARResult)
	}

	// Inversion, then TBAR with the inverted trigger and its estimated target.
	out, stderr, err = ftRun("unlearn", "invert", "--model", p("bd"), "--dataset", data, "--head", head, "--examples", "16", "--batch", "8", "--epochs", "2", "--json", "-o", p("trigger.safetensors"))
	if err != nil {
		t.Fatal(stderr)
	}
	var inv invertSummary
	if err := json.Unmarshal([]byte(out), &inv); err != nil || inv.Epochs != 2 || inv.Target < 0 || inv.PL1 <= 0 {
		t.Fatalf("invert: %v %s", err, out)
	}
	tr, err := unlearn.LoadInverted(p("trigger.safetensors"))
	if err != nil || tr.H != 8 || tr.W != 8 || tr.Metadata[unlearn.MetaTarget] == "" {
		t.Fatalf("inverted trigger: %v %+v", err, tr)
	}
	_, stderr, err = ftRun("unlearn", "tbar", "--model", p("bd"), "--dataset", data, "--head", head, "--trigger", "inverted:"+p("trigger.safetensors"),
		"--alphas", "0,1", "--alpha-max", "1", "--steps", "1", "--batch", "8", "-o", p("inv-clean"))
	if err != nil || !strings.Contains(stderr, "as estimated by the inversion") {
		t.Errorf("tbar with an inverted trigger: %v\n%s", err, stderr)
	}

	// Bad input: clear errors, nothing written.
	for _, c := range []struct {
		args []string
		want string
	}{
		{append(tbar[:len(tbar)-2:len(tbar)-2], "-o", p("x")), "--target"},
		{append(tbar[:len(tbar)-1:len(tbar)-1], "4", "-o", p("x")), "outside the head's 4 classes"},
		{append(tbar, "--from", "pretrained", "-o", p("x")), "--base"},
		{append(tbar, "--from", "scratch", "-o", p("x")), "--from"},
		{append(tbar, "-o", p("same")), "exists"},
		{append(tbar, "-o", filepath.Join(p("bd"), "x")), "inside input"},
		{[]string{"unlearn", "tbar", "--model", p("bd"), "--dataset", data, "--head", head, "--trigger", "badnets:size=9", "--target", "1", "-o", p("x")}, "does not fit"},
		{[]string{"unlearn", "invert", "--model", p("bd"), "--dataset", data, "-o", p("x")}, ".safetensors"},
		{[]string{"unlearn", "invert", "--model", p("bd"), "--dataset", data, "--threshold", "2", "-o", p("x.safetensors")}, "--threshold"},
	} {
		_, stderr, err := ftRun(c.args...)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: %q, want an error mentioning %q", c.args[len(c.args)-3:], stderr, c.want)
		}
	}
	for _, f := range []string{"x", "x.safetensors", "x.tbar.json"} {
		if _, err := os.Stat(p(f)); err == nil {
			t.Errorf("a failed run left %s", f)
		}
	}
}
