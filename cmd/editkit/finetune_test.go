package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/vit"
)

// ftRun runs the command line in-process.
func ftRun(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	if code := run(args, &o, &e); code != 0 {
		return o.String(), e.String(), ftErr(e.String())
	}
	return o.String(), e.String(), nil
}

type ftErr string

func (e ftErr) Error() string { return string(e) }

// ftDataset writes an IDX dataset folder of 8×8 gray images of 4 classes
// (brightness by class, with noise): 64 training images, 8 test images.
func ftDataset(t *testing.T, dir string) {
	t.Helper()
	r := rand.New(rand.NewPCG(4, 4))
	idx := func(dims []int, data []byte) []byte {
		out := []byte{0, 0, 8, byte(len(dims))}
		for _, d := range dims {
			out = binary.BigEndian.AppendUint32(out, uint32(d))
		}
		return append(out, data...)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sp := range []struct {
		name string
		n    int
	}{{"train", 64}, {"test", 8}} {
		pix := make([]byte, sp.n*64)
		labels := make([]byte, sp.n)
		for i := range sp.n {
			labels[i] = byte(i % 4)
			for j := range 64 {
				pix[i*64+j] = byte(30 + 60*int(labels[i]) + r.IntN(30))
			}
		}
		for name, data := range map[string][]byte{
			sp.name + "-images-idx3-ubyte": idx([]int{sp.n, 8, 8}, pix),
			sp.name + "-labels-idx1-ubyte": idx([]int{sp.n}, labels),
		} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "classes.txt"), []byte("black\ndark\nlight\nwhite\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// toyFixture writes the toy dataset (8×8 gray, 4 classes), a tiny ViT and a
// head for it into dir.
func toyFixture(t *testing.T, dir string) (data, model, head string) {
	t.Helper()
	data, model, head = filepath.Join(dir, "toy"), filepath.Join(dir, "vit"), filepath.Join(dir, "head.safetensors")
	ftDataset(t, data)
	c := vit.DefaultConfig()
	c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize = 16, 1, 2, 32
	c.ImageSize, c.PatchSize, c.NumLabels = 8, 4, 4
	m, err := vit.NewRandom(c, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(model, checkpoint.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := ftHead([]string{"black", "dark", "light", "white"}, 16, heads.FeaturesViT).Save(head, false); err != nil {
		t.Fatal(err)
	}
	return data, model, head
}

func ftHead(classes []string, dim int, features string) *heads.Head {
	r := rand.New(rand.NewPCG(5, 5))
	h := &heads.Head{Classes: classes, Dim: dim, Scale: 10, Normalize: true, Meta: map[string]string{heads.MetaFeatures: features}}
	for range len(classes) * dim {
		h.Weight = append(h.Weight, float32(r.NormFloat64()))
	}
	return h
}

func TestFinetuneCLI(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	toyFixture(t, dir)
	classes := []string{"black", "dark", "light", "white"}

	out, _, err := ftRun("finetune", "--model", p("vit"), "--head", p("head.safetensors"), "--dataset", p("toy"),
		"--steps", "5", "--batch", "8", "--warmup", "2", "--lr", "1e-3", "--eval-val", "--json", "-o", p("ft"))
	if err != nil {
		t.Fatal(err)
	}
	var sum finetuneSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if sum.Steps != 5 || sum.Examples != 58 || sum.ValAccuracy == nil || sum.ValExamples != 6 ||
		math.IsNaN(sum.FinalLoss) || sum.FinalLoss <= 0 || sum.Family != "vit" || sum.BatchSize != 8 {
		t.Errorf("summary %+v", sum)
	}
	// The output is a task-vector partner of the input.
	if _, stderr, err := ftRun("taskvector", "--base", p("vit"), "--finetuned", p("ft"), "-o", p("tv")); err != nil {
		t.Fatalf("taskvector: %v %s", err, stderr)
	}
	if _, err := os.Stat(p("ft/config.json")); err != nil {
		t.Error(err)
	}
	// Plain output: a summary line on stderr.
	_, stderr, err := ftRun("finetune", "--model", p("vit"), "--head", p("head.safetensors"), "--dataset", p("toy"),
		"--epochs", "1", "--batch", "32", "--limit", "40", "-o", p("ft2.safetensors"))
	if err != nil || !strings.Contains(stderr, "2 steps, 1 epoch(s) of 40 examples") {
		t.Errorf("finetune --epochs 1 --limit 40: %v\n%s", err, stderr)
	}

	// Errors say what is wrong.
	if err := ftHead(classes[:3], 16, heads.FeaturesViT).Save(p("head3.safetensors"), false); err != nil {
		t.Fatal(err)
	}
	if err := ftHead(classes, 16, heads.FeaturesCLIP).Save(p("headclip.safetensors"), false); err != nil {
		t.Fatal(err)
	}
	if err := ftHead(classes, 12, heads.FeaturesViT).Save(p("head12.safetensors"), false); err != nil {
		t.Fatal(err)
	}
	base := []string{"finetune", "--model", p("vit"), "--dataset", p("toy"), "--steps", "1", "-o", p("bad")}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--head", p("head3.safetensors")}, "3 classes"},
		{[]string{"--head", p("headclip.safetensors")}, "clip-image-embeds"},
		{[]string{"--head", p("head12.safetensors")}, "12-d"},
		{[]string{"--head", p("head.safetensors"), "--epochs", "2"}, "not both"},
		{[]string{"--head", p("head.safetensors"), "--split", "test"}, "--split"},
		{[]string{}, "--head"},
	} {
		_, stderr, err := ftRun(append(append([]string(nil), base...), c.args...)...)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: error %q, want one mentioning %q", c.args, stderr, c.want)
		}
	}
	if _, stderr, err := ftRun("finetune", "--model", p("vit"), "--head", p("head.safetensors"), "--dataset", p("toy"), "--steps", "1", "-o", p("ft")); err == nil || !strings.Contains(stderr, "exists") {
		t.Errorf("existing output: %v %s", err, stderr)
	}
	if _, stderr, err := ftRun("finetune", "--model", p("vit"), "--head", p("head.safetensors"), "--dataset", p("toy"), "-o", p("x")); err == nil || !strings.Contains(stderr, "--epochs") {
		t.Errorf("no length: %v %s", err, stderr)
	}
	if _, err := os.Stat(p("bad")); err == nil {
		t.Error("a failed run left its output")
	}
}
