package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/linearize"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/vit"
)

// linFixture is a tiny ViT base, a head and a toy dataset, with helpers
// to run the CLI on them.
type linFixture struct {
	t   *testing.T
	dir string
}

func newLinFixture(t *testing.T) *linFixture {
	f := &linFixture{t: t, dir: t.TempDir()}
	ftDataset(t, f.p("toy"))
	for i, name := range []string{"base", "other"} {
		m, err := vit.NewRandom(linViT(16), uint64(1+i))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Save(f.p(name), checkpoint.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wide, err := vit.NewRandom(linViT(24), 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := wide.Save(f.p("wide"), checkpoint.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.prototypeHead().Save(f.p("head.safetensors"), false); err != nil {
		t.Fatal(err)
	}
	return f
}

// prototypeHead is a head whose class vectors are the base model's mean
// features of each class's training images, so the base model is better
// than chance (a negation search needs a control task it gets right).
func (f *linFixture) prototypeHead() *heads.Head {
	f.t.Helper()
	enc, err := encoder.Load(f.p("base"))
	if err != nil {
		f.t.Fatal(err)
	}
	defer enc.Close()
	ds, err := datasets.Load(f.p("toy"), datasets.Train, datasets.Options{})
	if err != nil {
		f.t.Fatal(err)
	}
	h := &heads.Head{Classes: []string{"black", "dark", "light", "white"}, Dim: enc.Dim, Scale: 10, Normalize: true,
		Weight: make([]float32, 4*enc.Dim), Meta: map[string]string{heads.MetaFeatures: heads.FeaturesViT}}
	it, err := ds.Batches(enc.Preprocess, datasets.BatchOptions{BatchSize: ds.Len()})
	if err != nil {
		f.t.Fatal(err)
	}
	it.Next()
	b := it.Batch()
	px, err := models.Pixels(b.Images, b.Size, b.Height, b.Width)
	if err != nil {
		f.t.Fatal(err)
	}
	feats, err := enc.Encode(nil, px)
	if err != nil {
		f.t.Fatal(err)
	}
	for i, l := range b.Labels {
		for k := range enc.Dim {
			h.Weight[int(l)*enc.Dim+k] += feats[i*enc.Dim+k]
		}
	}
	return h
}

func linViT(width int) vit.Config {
	c := vit.DefaultConfig()
	c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize = width, 1, 2, 32
	c.ImageSize, c.PatchSize = 8, 4
	return c
}

func (f *linFixture) p(name string) string { return filepath.Join(f.dir, name) }

func (f *linFixture) ok(args ...string) (stdout, stderr string) {
	f.t.Helper()
	stdout, stderr, err := ftRun(args...)
	if err != nil {
		f.t.Fatalf("editkit %s: %v", strings.Join(args, " "), err)
	}
	return stdout, stderr
}

func (f *linFixture) fails(want string, args ...string) {
	f.t.Helper()
	_, stderr, err := ftRun(args...)
	if err == nil || !strings.Contains(stderr, want) {
		f.t.Errorf("editkit %s: error %q, want one mentioning %q", strings.Join(args, " "), stderr, want)
	}
}

// evalJSON runs eval with --json and returns its report.
func (f *linFixture) evalJSON(model string, extra ...string) (evalReport, string) {
	f.t.Helper()
	args := append([]string{"eval", "--model", model, "--dataset", f.p("toy"), "--head", f.p("head.safetensors"), "--json"}, extra...)
	out, stderr := f.ok(args...)
	var r evalReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		f.t.Fatalf("%v: %s", err, out)
	}
	return r, stderr
}

// libAccuracy is the test accuracy of model's weights through f_lin around
// base, computed with the library.
func (f *linFixture) libAccuracy(model, base string) float64 {
	f.t.Helper()
	enc, err := encoder.Load(model)
	if err != nil {
		f.t.Fatal(err)
	}
	b, err := encoder.Load(base)
	if err != nil {
		f.t.Fatal(err)
	}
	lin, err := linearize.NewEncoder(b)
	if err != nil {
		f.t.Fatal(err)
	}
	defer lin.Close()
	h, err := heads.Load(f.p("head.safetensors"))
	if err != nil {
		f.t.Fatal(err)
	}
	clf, err := lin.Classifier(enc.Weights, h)
	if err != nil {
		f.t.Fatal(err)
	}
	ds, err := datasets.Load(f.p("toy"), datasets.Test, datasets.Options{})
	if err != nil {
		f.t.Fatal(err)
	}
	r, err := eval.Accuracy(clf, ds, enc.Preprocess, eval.Options{})
	if err != nil {
		f.t.Fatal(err)
	}
	return r.Accuracy
}

func TestLinearizedFinetuneAndEvalCLI(t *testing.T) {
	f := newLinFixture(t)
	ftArgs := []string{"finetune", "--model", f.p("base"), "--head", f.p("head.safetensors"), "--dataset", f.p("toy"),
		"--steps", "6", "--batch", "8", "--warmup", "2", "--lr", "3e-2"}
	out, _ := f.ok(append(ftArgs, "--linearized", "--eval-val", "--json", "-o", f.p("lin"))...)
	var sum finetuneSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !sum.Linearized || sum.Steps != 6 || sum.ValAccuracy == nil {
		t.Errorf("summary %+v", sum)
	}
	f.ok(append(ftArgs, "-o", f.p("plain"))...)
	// Fine-tuning a linearized checkpoint plainly gives a plain model: the
	// input's linearization record is not copied.
	f.ok("finetune", "--model", f.p("lin"), "--head", f.p("head.safetensors"), "--dataset", f.p("toy"), "--steps", "1", "-o", f.p("relin"))
	if ck, err := checkpoint.Open(f.p("relin")); err != nil {
		t.Fatal(err)
	} else {
		if _, ok, _ := linearize.ReadMetadata(ck.Metadata); ok {
			t.Errorf("a plain fine-tune of a linearized checkpoint kept its record: %v", ck.Metadata)
		}
		ck.Close()
	}

	// Linearizing a linearized fine-tune again would linearize around its
	// own weights: refused, naming its base.
	f.fails("is itself a linearized fine-tune", "finetune", "--model", f.p("lin"), "--head", f.p("head.safetensors"), "--dataset", f.p("toy"),
		"--steps", "1", "--linearized", "-o", f.p("relin2"))

	// An ordinary checkpoint of θ: the base's names, shapes and dtypes, no
	// second copy of θ₀; the metadata names the base and its digest.
	baseCk, err := checkpoint.Open(f.p("base"))
	if err != nil {
		t.Fatal(err)
	}
	defer baseCk.Close()
	linCk, err := checkpoint.Open(f.p("lin"))
	if err != nil {
		t.Fatal(err)
	}
	defer linCk.Close()
	bt, lt := baseCk.Tensors(), linCk.Tensors()
	if len(bt) != len(lt) {
		t.Fatalf("the linearized fine-tune has %d tensors, the base %d", len(lt), len(bt))
	}
	for i := range bt {
		if bt[i].Name != lt[i].Name || bt[i].DType != lt[i].DType || !slices.Equal(bt[i].Shape, lt[i].Shape) {
			t.Errorf("tensor %d: %s %s %v, base %s %s %v", i, lt[i].Name, lt[i].DType, lt[i].Shape, bt[i].Name, bt[i].DType, bt[i].Shape)
		}
	}
	absBase, _ := filepath.Abs(f.p("base"))
	info, ok, err := linearize.ReadMetadata(linCk.Metadata)
	if !ok || err != nil || info.Path != absBase || len(info.Digest) != 64 {
		t.Fatalf("metadata %v: %+v %v %v", linCk.Metadata, info, ok, err)
	}

	// Evaluated linearized around the recorded base by default, with a
	// notice; the accuracy is f_lin's.
	r, stderr := f.evalJSON(f.p("lin"))
	if r.LinearizedAt != absBase || !strings.Contains(stderr, "linearized fine-tune") || !strings.Contains(stderr, absBase) {
		t.Errorf("default evaluation: linearized_at %q, stderr %q", r.LinearizedAt, stderr)
	}
	if want := f.libAccuracy(f.p("lin"), f.p("base")); r.Results[0].Accuracy != want {
		t.Errorf("eval accuracy %v, f_lin's %v", r.Results[0].Accuracy, want)
	}
	if r, stderr := f.evalJSON(f.p("lin"), "--no-linearize"); r.LinearizedAt != "" || strings.Contains(stderr, "linearized") {
		t.Errorf("--no-linearize: linearized_at %q, stderr %q", r.LinearizedAt, stderr)
	}
	// The same base elsewhere is accepted; another base is an error naming
	// the expected one.
	if err := os.CopyFS(f.p("base-copy"), os.DirFS(f.p("base"))); err != nil {
		t.Fatal(err)
	}
	if r, _ := f.evalJSON(f.p("lin"), "--linearize-at", f.p("base-copy")); r.LinearizedAt != f.p("base-copy") {
		t.Errorf("--linearize-at a copy of the base: linearized_at %q", r.LinearizedAt)
	}
	evalArgs := []string{"eval", "--dataset", f.p("toy"), "--head", f.p("head.safetensors")}
	f.fails("expected "+absBase, append(evalArgs, "--model", f.p("lin"), "--linearize-at", f.p("other"))...)
	f.fails("not both", append(evalArgs, "--model", f.p("lin"), "--linearize-at", f.p("base"), "--no-linearize")...)
	// --finetuned checkpoints are evaluated as the model is: a linearized
	// fine-tune normalizing a plain model needs to be told how.
	f.fails("is a linearized fine-tune but", append(evalArgs, "--model", f.p("plain"), "--finetuned", f.p("lin"))...)
	f.fails("is a linearized fine-tune but", append(evalArgs, "--model", f.p("lin"), "--finetuned", f.p("plain"))...)
	f.ok(append(evalArgs, "--model", f.p("plain"), "--finetuned", f.p("lin"), "--no-linearize")...)

	// Post-hoc linearization of a non-linear fine-tune.
	r, _ = f.evalJSON(f.p("plain"), "--linearize-at", f.p("base"))
	if r.LinearizedAt != f.p("base") {
		t.Errorf("post-hoc: linearized_at %q", r.LinearizedAt)
	}
	if want := f.libAccuracy(f.p("plain"), f.p("base")); r.Results[0].Accuracy != want {
		t.Errorf("post-hoc eval accuracy %v, f_lin's %v", r.Results[0].Accuracy, want)
	}
	// A base of other shapes: the error names the first mismatches.
	f.fails(`vit.embeddings.cls_token: [1 1 16] in `, append(evalArgs, "--model", f.p("plain"), "--linearize-at", f.p("wide"), "--md", f.p("table.md"))...)
	if _, err := os.Stat(f.p("table.md")); err == nil {
		t.Error("a failed eval wrote its --md table")
	}

	// embed: the image embeddings are f_lin's.
	f.ok("embed", "--model", f.p("plain"), "--images", f.p("toy"), "--linearize-at", f.p("base"), "-o", f.p("emb.safetensors"))
	got, _ := ehReadTensor(t, f.p("emb.safetensors"), embImageTensor)
	want := linFeatures(t, f.p("plain"), f.p("base"), f.p("toy"))
	ehClose(t, "linearized image embeddings", got, want, 1e-6)
	embCk, err := checkpoint.Open(f.p("emb.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if embCk.Metadata["editkit.linearized_at"] != f.p("base") {
		t.Errorf("embed metadata %v", embCk.Metadata)
	}
	embCk.Close()
	f.fails("shape mismatch", "embed", "--model", f.p("plain"), "--images", f.p("toy"), "--linearize-at", f.p("wide"), "-o", f.p("emb2.safetensors"))
	if _, err := os.Stat(f.p("emb2.safetensors")); err == nil {
		t.Error("a failed embed wrote its output")
	}

	// A linearized fine-tune whose base moved: the error says which base
	// to give.
	if err := os.Rename(f.p("base"), f.p("moved")); err != nil {
		t.Fatal(err)
	}
	f.fails("pass that base with --linearize-at", append(evalArgs, "--model", f.p("lin"))...)
	if r, _ := f.evalJSON(f.p("lin"), "--linearize-at", f.p("moved")); r.LinearizedAt != f.p("moved") {
		t.Errorf("--linearize-at the moved base: linearized_at %q", r.LinearizedAt)
	}
}

// linFeatures computes the linearized features of model's weights around
// base for the test images of a dataset, with the library.
func linFeatures(t *testing.T, model, base, data string) []float32 {
	t.Helper()
	enc, err := encoder.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	b, err := encoder.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	lin, err := linearize.NewEncoder(b)
	if err != nil {
		t.Fatal(err)
	}
	defer lin.Close()
	ds, err := datasets.Load(data, datasets.Test, datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := ds.Batches(enc.Preprocess, datasets.BatchOptions{BatchSize: ds.Len()})
	if err != nil {
		t.Fatal(err)
	}
	it.Next()
	bt := it.Batch()
	px, err := models.Pixels(bt.Images, bt.Size, bt.Height, bt.Width)
	if err != nil {
		t.Fatal(err)
	}
	out, err := lin.Encode(enc.Weights, px)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fourFinetunes adds a second task (toy2) and fine-tunes the base on each
// task plainly (ft1, ft2) and linearized (lin1, lin2).
func (f *linFixture) fourFinetunes() {
	ftDataset(f.t, f.p("toy2"))
	for _, ft := range []struct {
		out, data string
		lin       bool
	}{{"ft1", "toy", false}, {"ft2", "toy2", false}, {"lin1", "toy", true}, {"lin2", "toy2", true}} {
		args := []string{"finetune", "--model", f.p("base"), "--head", f.p("head.safetensors"), "--dataset", f.p(ft.data),
			"--steps", "4", "--batch", "8", "--warmup", "1", "--lr", "5e-2", "--seed", ft.out[len(ft.out)-1:], "-o", f.p(ft.out)}
		if ft.lin {
			args = append(args, "--linearized")
		}
		f.ok(args...)
	}
}

func TestDisentangleCLI(t *testing.T) {
	f := newLinFixture(t)
	f.fourFinetunes()
	run := func(m1, m2, out string, extra ...string) disentangleReport {
		t.Helper()
		args := append([]string{"disentangle", "--base", f.p("base"), "--models", f.p(m1), "--models", f.p(m2),
			"--dataset", f.p("toy"), "--head", f.p("head.safetensors"), "--dataset", f.p("toy2"), "--head", f.p("head.safetensors"),
			"--split", "test", "--grid", "-1:1:0.5", "--json", "-o", f.p(out)}, extra...)
		stdout, _ := f.ok(args...)
		var r disentangleReport
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("%v: %s", err, stdout)
		}
		for _, o := range []string{out + ".json", out + ".png"} {
			if _, err := os.Stat(f.p(o)); err != nil {
				t.Error(err)
			}
		}
		return r
	}
	r := run("ft1", "ft2", "xi")
	d := r.Disentanglement
	if len(d.Xi) != 5 || len(d.Xi[0]) != 5 || r.LinearizedAt != "" || d.Examples != [2]int{8, 8} {
		t.Fatalf("report %+v", r)
	}
	if d.At(2, 2) != 0 {
		t.Errorf("ξ(0, 0) = %g", d.At(2, 2))
	}
	// One grid point counted independently: α = (1, 0.5), on task 1
	// θ₀ + τ₁ against θ₀ + τ₁ + 0.5τ₂, on task 2 θ₀ + 0.5τ₂ against the same.
	want := 0.0
	for task, single := range [][2]float64{{1, 0}, {0, 0.5}} {
		data := []string{"toy", "toy2"}[task]
		a := predictHost(t, f, single, data)
		b := predictHost(t, f, [2]float64{1, 0.5}, data)
		differ := 0
		for i := range a {
			if a[i] != b[i] {
				differ++
			}
		}
		want += float64(differ) / float64(len(a))
	}
	if got := d.At(4, 3); got != want {
		t.Errorf("ξ(1, 0.5) = %g, counted on the host %g", got, want)
	}
	t.Logf("non-linear ξ over [-1,1]²: %v", d.Xi)

	// Linearized fine-tunes: evaluated linearized around their base.
	r = run("lin1", "lin2", "xilin")
	absBase, _ := filepath.Abs(f.p("base"))
	if r.LinearizedAt != absBase || r.Disentanglement.At(2, 2) != 0 {
		t.Errorf("linearized: linearized_at %q, ξ(0,0) = %g", r.LinearizedAt, r.Disentanglement.At(2, 2))
	}
	t.Logf("linearized ξ over [-1,1]²: %v", r.Disentanglement.Xi)

	// Bad inputs: an error, and no output.
	base := []string{"disentangle", "--base", f.p("base"), "--dataset", f.p("toy"), "--head", f.p("head.safetensors"),
		"--dataset", f.p("toy2"), "--head", f.p("head.safetensors"), "--split", "test", "--grid", "-1:1:0.5", "-o", f.p("bad")}
	f.fails("shape mismatch", append(base, "--models", f.p("ft1"), "--models", f.p("wide"))...)
	f.fails("is a linearized fine-tune but", append(base, "--models", f.p("lin1"), "--models", f.p("ft2"))...)
	f.fails("pass the two fine-tuned checkpoints", append(base, "--models", f.p("ft1"))...)
	f.fails("--grid", append(base, "--models", f.p("ft1"), "--models", f.p("ft2"), "--grid", "1:0:0.5")...)
	for _, o := range []string{"bad.json", "bad.png"} {
		if _, err := os.Stat(f.p(o)); err == nil {
			t.Errorf("a failed run wrote %s", o)
		}
	}
}

// predictHost predicts the test classes of a dataset with the weights
// θ₀ + c₁τ₁ + c₂τ₂ (τ_t of ft1 and ft2) combined on the host.
func predictHost(t *testing.T, f *linFixture, c [2]float64, data string) []int {
	t.Helper()
	base, err := encoder.Load(f.p("base"))
	if err != nil {
		t.Fatal(err)
	}
	w := models.Weights{}
	var fts [2]*encoder.Encoder
	for i, name := range []string{"ft1", "ft2"} {
		if fts[i], err = encoder.Load(f.p(name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range base.Specs {
		v := base.Weights.Float32(s.Name)
		t1, t2 := fts[0].Weights.Float32(s.Name), fts[1].Weights.Float32(s.Name)
		for i := range v {
			v[i] += float32(c[0])*(t1[i]-v[i]) + float32(c[1])*(t2[i]-v[i])
		}
		w[s.Name] = tensors.FromFlatDataAndDimensions(v, base.Weights[s.Name].Shape().Dimensions...)
	}
	h, err := heads.Load(f.p("head.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := datasets.Load(f.p(data), datasets.Test, datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := ds.Batches(base.Preprocess, datasets.BatchOptions{BatchSize: ds.Len()})
	if err != nil {
		t.Fatal(err)
	}
	it.Next()
	b := it.Batch()
	px, err := models.Pixels(b.Images, b.Size, b.Height, b.Width)
	if err != nil {
		t.Fatal(err)
	}
	feats, err := base.Encode(w, px)
	if err != nil {
		t.Fatal(err)
	}
	logits, err := h.Logits(feats, b.Size)
	if err != nil {
		t.Fatal(err)
	}
	c4 := len(h.Classes)
	var out []int
	for i := range b.Size {
		out = append(out, eval.Argmax(logits[i*c4:(i+1)*c4]))
	}
	return out
}

// TestMergeSearchLinearized: merge --search of linearized fine-tunes
// evaluates every candidate through f_lin around the merge's base and marks
// the written merge linearized, so that eval measures what the search did;
// --linearize-at linearizes plain fine-tunes post hoc; negation too.
func TestMergeSearchLinearized(t *testing.T) {
	f := newLinFixture(t)
	f.fourFinetunes()
	search := func(out string, extra ...string) (*eval.Record, string) {
		t.Helper()
		args := append([]string{"merge", "--method", "task_arithmetic", "--base", f.p("base"), "--data", f.dir,
			"--search", "toy=" + f.p("head.safetensors"), "--search", "toy2=" + f.p("head.safetensors"),
			"--grid", "0:1:0.25", "--json", "-o", f.p(out)}, extra...)
		stdout, stderr := f.ok(args...)
		var rec eval.Record
		if err := json.Unmarshal([]byte(stdout), &rec); err != nil {
			t.Fatalf("%v: %s", err, stdout)
		}
		return &rec, stderr
	}
	rec, stderr := search("merged", "--models", f.p("lin1"), "--models", f.p("lin2"))
	if rec.LinearizedAt != f.p("base") || !strings.Contains(stderr, "linearized fine-tunes") {
		t.Errorf("linearized search: linearized_at %q, stderr %q", rec.LinearizedAt, stderr)
	}
	ck, err := checkpoint.Open(f.p("merged"))
	if err != nil {
		t.Fatal(err)
	}
	info, ok, err := linearize.ReadMetadata(ck.Metadata)
	ck.Close()
	absBase, _ := filepath.Abs(f.p("base"))
	if !ok || err != nil || info.Path != absBase {
		t.Fatalf("the written merge's metadata: %+v %v %v", info, ok, err)
	}
	// eval, linearized by the merge's metadata, measures what the search
	// recorded for the written checkpoint.
	for i, task := range []string{"toy", "toy2"} {
		out, _ := f.ok("eval", "--model", f.p("merged"), "--dataset", f.p(task), "--head", f.p("head.safetensors"), "--split", "val", "--json")
		var r evalReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		if r.LinearizedAt != absBase || r.Results[0].Accuracy != rec.Written[rec.Tasks[i]] {
			t.Errorf("%s: eval says %v (linearized at %q), the search recorded %v", task, r.Results[0].Accuracy, r.LinearizedAt, rec.Written[rec.Tasks[i]])
		}
	}

	// Post-hoc: plain fine-tunes evaluated around the base; the merge itself
	// is a plain model.
	rec, _ = search("posthoc", "--models", f.p("ft1"), "--models", f.p("ft2"), "--linearize-at", f.p("base"))
	if rec.LinearizedAt != f.p("base") {
		t.Errorf("post-hoc search: linearized_at %q", rec.LinearizedAt)
	}
	// Post-hoc around another point than the merge's base: a warning.
	if _, stderr := search("elsewhere", "--models", f.p("ft1"), "--models", f.p("ft2"), "--linearize-at", f.p("other")); !strings.Contains(stderr, "warning: --linearize-at "+f.p("other")+" holds other weights than --base") {
		t.Errorf("post-hoc search around another base: stderr %q", stderr)
	}
	ck, err = checkpoint.Open(f.p("posthoc"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := linearize.ReadMetadata(ck.Metadata); ok {
		t.Error("a post-hoc linearized search marked its merge as a linearized fine-tune")
	}
	ck.Close()
	// Negation of a linearized fine-tune: evaluated linearized as well.
	rec, _ = search("negated", "--models", f.p("lin1"), "--negate")
	if rec.LinearizedAt != f.p("base") || rec.Applied > 0 {
		t.Errorf("negation: linearized_at %q, applied %v", rec.LinearizedAt, rec.Applied)
	}

	// A plain merge of linearized fine-tunes is marked as one too; a mixed
	// merge is a plain model.
	marked := func(path string) bool {
		ck, err := checkpoint.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer ck.Close()
		_, ok, _ := linearize.ReadMetadata(ck.Metadata)
		return ok
	}
	f.ok("merge", "--method", "task_arithmetic", "--base", f.p("base"), "--models", f.p("lin1"), "--models", f.p("lin2"), "--lambda", "0.5", "-o", f.p("plainmerge"))
	_, stderr = f.ok("merge", "--method", "task_arithmetic", "--base", f.p("base"), "--models", f.p("ft1"), "--models", f.p("lin2"), "--lambda", "0.5", "-o", f.p("mixed"))
	if !marked(f.p("plainmerge")) || marked(f.p("mixed")) {
		t.Errorf("merge of linearized fine-tunes marked %v (want true), mixed merge marked %v (want false)", marked(f.p("plainmerge")), marked(f.p("mixed")))
	}
	if !strings.Contains(stderr, "warning: "+f.p("lin2")+" is a linearized fine-tune but "+f.p("ft1")+" is not") {
		t.Errorf("a mixed merge does not warn: %q", stderr)
	}
	// Task vectors of linearized fine-tunes carry the record, so that the
	// models built from them (apply, merge of stored vectors) are evaluated
	// linearized too, and their arithmetic keeps it.
	f.ok("taskvector", "--base", f.p("base"), "--finetuned", f.p("lin1"), "-o", f.p("tv1.safetensors"))
	f.ok("taskvector", "--base", f.p("base"), "--finetuned", f.p("lin2"), "-o", f.p("tv2.safetensors"))
	f.ok("tv", "add", "--base", f.p("base"), f.p("tv1.safetensors"), f.p("tv2.safetensors"), "-o", f.p("tvsum.safetensors"))
	f.ok("apply", "--base", f.p("base"), f.p("tvsum.safetensors"), "--lambda", "0.5", "-o", f.p("applied"))
	f.ok("merge", "--method", "task_arithmetic", "--base", f.p("base"), "--models", f.p("tv1.safetensors"), "--models", f.p("tv2.safetensors"), "--lambda", "0.5", "-o", f.p("tvmerge"))
	for _, p := range []string{"tv1.safetensors", "tvsum.safetensors", "applied", "tvmerge"} {
		if !marked(f.p(p)) {
			t.Errorf("%s is not marked linearized", p)
		}
	}
	if r, _ := f.evalJSON(f.p("applied")); r.LinearizedAt != absBase {
		t.Errorf("apply of linearized task vectors evaluated at %q, want linearized around %s", r.LinearizedAt, absBase)
	}
	f.fails("expected "+absBase, "taskvector", "--base", f.p("other"), "--finetuned", f.p("lin1"), "-o", f.p("bad"))
	// A configuration without base_model (a model soup of linearized
	// fine-tunes) carries their record over.
	soup := "merge_method: linear\nmodels:\n  - {model: " + f.p("lin1") + ", parameters: {weight: 1}}\n  - {model: " + f.p("lin2") + ", parameters: {weight: 1}}\n"
	if err := os.WriteFile(f.p("soup.yaml"), []byte(soup), 0o644); err != nil {
		t.Fatal(err)
	}
	f.ok("merge", "--config", f.p("soup.yaml"), "-o", f.p("soup"))
	if !marked(f.p("soup")) {
		t.Error("a configuration's soup of linearized fine-tunes is not marked linearized")
	}
	f.fails("expected "+absBase, "merge", "--method", "task_arithmetic", "--base", f.p("other"), "--models", f.p("lin1"), "--models", f.p("lin2"), "--lambda", "0.5", "-o", f.p("bad"))

	base := []string{"merge", "--method", "task_arithmetic", "--data", f.dir,
		"--search", "toy=" + f.p("head.safetensors"), "--search", "toy2=" + f.p("head.safetensors"), "-o", f.p("bad")}
	f.fails("is a linearized fine-tune but", append(base, "--base", f.p("base"), "--models", f.p("lin1"), "--models", f.p("ft2"))...)
	f.fails("expected "+absBase, append(base, "--base", f.p("other"), "--models", f.p("lin1"), "--models", f.p("lin2"))...)
	f.fails("applies to merge --search", "merge", "--method", "task_arithmetic", "--base", f.p("base"), "--models", f.p("ft1"), "--linearize-at", f.p("base"), "-o", f.p("bad"))
	if _, err := os.Stat(f.p("bad")); err == nil {
		t.Error("a failed merge wrote its output")
	}
}
