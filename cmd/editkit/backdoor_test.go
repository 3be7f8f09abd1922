package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/unlearn"
)

func TestBackdoorApplyCLI(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	data, _, _ := toyFixture(t, dir)
	out, _, err := ftRun("backdoor", "apply", "--trigger", "badnets:size=2,pattern=white", "--images", data, "--split", "test",
		"-o", p("triggered"), "--png", p("png"), "--png-count", "3", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var sum backdoorSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Examples != 8 || len(sum.PNG) != 3 {
		t.Fatalf("summary %s (%v)", out, err)
	}
	orig, err := datasets.Load(data, datasets.Test, datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	back, err := datasets.Load(p("triggered"), datasets.Test, datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Labels(), orig.Labels()) || !slices.Equal(back.Classes(), orig.Classes()) {
		t.Errorf("labels %v classes %v, want %v %v", back.Labels(), back.Classes(), orig.Labels(), orig.Classes())
	}
	for i := range back.Len() {
		a, _ := orig.Image(i)
		b, _ := back.Image(i)
		for y := range 8 {
			for x := range 8 {
				want := a.At(y, x, 0)
				if y >= 6 && x >= 6 {
					want = 255
				}
				if b.At(y, x, 0) != want {
					t.Fatalf("image %d pixel (%d,%d) = %d, want %d", i, y, x, b.At(y, x, 0), want)
				}
			}
		}
	}
	if ents, _ := os.ReadDir(p("png")); len(ents) != 3 {
		t.Errorf("%d PNG files, want 3", len(ents))
	}
	// Errors: nothing written.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--trigger", "badnets:size=9"}, "does not fit"},
		{[]string{"--trigger", "sticker"}, "unknown trigger"},
		{[]string{"--trigger", "blended:ratio=2"}, "in [0, 1]"},
		{[]string{"--trigger", "badnets:shape=x"}, "unknown parameter shape"},
		{[]string{"--trigger", "inverted:" + p("none.safetensors")}, "none.safetensors"},
		{[]string{"--trigger", "badnets", "-o", p("triggered")}, "exists"},
		{[]string{"--trigger", "badnets", "-o", filepath.Join(data, "x")}, "inside input"},
	} {
		args := append([]string{"backdoor", "apply", "--images", data, "-o", p("bad")}, c.args...)
		_, stderr, err := ftRun(args...)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: %q, want an error mentioning %q", c.args, stderr, c.want)
		}
	}
	if _, err := os.Stat(p("bad")); err == nil {
		t.Error("a failed run left its output")
	}
	// An inverted trigger of another image size.
	inv := &unlearn.Inverted{H: 4, W: 4, Mask: make([]float32, 16), Pattern: make([]float32, 48)}
	if err := inv.Save(p("inv.safetensors"), nil, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := ftRun("backdoor", "apply", "--images", data, "--trigger", "inverted:"+p("inv.safetensors"), "-o", p("bad")); err == nil || !strings.Contains(stderr, "4×4 images, these are 8×8") {
		t.Errorf("inverted trigger of the wrong size: %q", stderr)
	}
}

func TestPoisonAndAttackSuccessCLI(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	data, model, head := toyFixture(t, dir)
	out, _, err := ftRun("finetune", "--model", model, "--head", head, "--dataset", data, "--steps", "2", "--batch", "16",
		"--poison", "badnets:size=2", "--poison-rate", "0.25", "--target", "1", "--json", "-o", p("bd"))
	if err != nil {
		t.Fatal(err)
	}
	var sum finetuneSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatal(err)
	}
	// 58 training examples (64 less 6 for validation): round(0.25·58) = 15 poisoned.
	if sum.Poisoned != 15 || sum.Target == nil || *sum.Target != 1 || !strings.HasPrefix(sum.Poison, "badnets:size=2") {
		t.Errorf("summary %+v", sum)
	}
	ck, err := checkpoint.Open(p("bd"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ck.Metadata["editkit.finetune.poison"], "target=1 poisoned=15") {
		t.Errorf("metadata %v", ck.Metadata)
	}
	ck.Close()

	// eval --trigger reports what unlearn.AttackSuccess measures.
	out, _, err = ftRun("eval", "--model", p("bd"), "--dataset", data, "--head", head, "--trigger", "badnets:size=2", "--target", "1", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep evalReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	enc, err := encoder.Load(p("bd"))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	h, _ := heads.Load(head)
	clf, _ := enc.Classifier(nil, h)
	test, _ := datasets.Load(data, datasets.Test, datasets.Options{})
	want, err := unlearn.AttackSuccess(clf, test, enc.Preprocess, &unlearn.BadNets{Size: 2, Pos: "br", Pattern: "checker"}, 1, eval.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Attack) != 1 || rep.Attack[0].Correct != want.Correct || rep.Attack[0].Total != 6 || rep.Target == nil || *rep.Target != 1 {
		t.Errorf("eval --trigger: %+v, want %d of 6", rep.Attack, want.Correct)
	}
	stdout, _, err := ftRun("eval", "--model", p("bd"), "--dataset", data, "--head", head, "--trigger", "badnets:size=2", "--target", "1")
	if err != nil || !strings.Contains(stdout, "| task | CA | ASR |") {
		t.Errorf("markdown: %v\n%s", err, stdout)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"eval", "--model", model, "--dataset", data, "--head", head, "--trigger", "badnets"}, "needs --target"},
		{[]string{"eval", "--model", model, "--dataset", data, "--head", head, "--target", "1"}, "--trigger"},
		{[]string{"eval", "--model", model, "--dataset", data, "--head", head, "--trigger", "badnets", "--target", "4"}, "outside the 4 classes"},
		{[]string{"finetune", "--model", model, "--head", head, "--dataset", data, "--steps", "1", "-o", p("x"), "--poison", "badnets"}, "needs --target"},
		{[]string{"finetune", "--model", model, "--head", head, "--dataset", data, "--steps", "1", "-o", p("x"), "--poison", "badnets", "--target", "7"}, "outside the 4 classes"},
		{[]string{"finetune", "--model", model, "--head", head, "--dataset", data, "--steps", "1", "-o", p("x"), "--poison", "badnets", "--target", "0", "--poison-rate", "1.5"}, "(0, 1]"},
		{[]string{"finetune", "--model", model, "--head", head, "--dataset", data, "--steps", "1", "-o", p("x"), "--poison-rate", "0.2"}, "--poison SPEC"},
	} {
		_, stderr, err := ftRun(c.args...)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: %q, want an error mentioning %q", c.args[len(c.args)-4:], stderr, c.want)
		}
	}
	if _, err := os.Stat(p("x")); err == nil {
		t.Error("a failed run left its output")
	}
}
