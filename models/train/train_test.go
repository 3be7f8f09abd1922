package train

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/clip"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/vit"
)

func accuracyOf(t *testing.T, enc *encoder.Encoder, w models.Weights, h *heads.Head, ds *datasets.Dataset) float64 {
	t.Helper()
	clf, err := enc.Classifier(w, h)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	r, err := eval.Accuracy(clf, ds, enc.Preprocess, eval.Options{BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	return r.Accuracy
}

func firstLast(losses []float64, k int) (first, last float64) {
	for i := range k {
		first += losses[i] / float64(k)
		last += losses[len(losses)-1-i] / float64(k)
	}
	return first, last
}

func TestFinetuneLearns(t *testing.T) {
	c := tinyViT()
	enc, err := encoder.NewViT(c, livelyWeights(c.Specs(), 0.3, 7))
	if err != nil {
		t.Fatal(err)
	}
	ds := quadrants(t, 128, 1)
	head := randomHead(4, enc.Dim, true, 5)
	head.Classes = slices.Clone(ds.Classes())
	before := accuracyOf(t, enc, nil, head, ds)

	o := Recipe()
	o.LearningRate, o.Warmup, o.BatchSize, o.Steps, o.Seed = 3e-3, 5, 32, 60, 1
	var progress []Progress
	o.Progress = func(p Progress) { progress = append(progress, p) }
	res, err := Finetune(enc, head, ds, o)
	if err != nil {
		t.Fatal(err)
	}
	first, last := firstLast(res.Losses, 5)
	after := accuracyOf(t, enc, res.Weights, head, ds)
	t.Logf("loss %.3f → %.3f; accuracy %.2f → %.2f; %d steps, %.1f steps/s", first, last, before, after, res.Steps, res.StepsPerSec)
	if res.Steps != 60 || len(res.Losses) != 60 || res.Epochs != 15 {
		t.Errorf("%d steps, %d losses, %d epochs; want 60, 60, 15", res.Steps, len(res.Losses), res.Epochs)
	}
	if !(last < 0.5*first) {
		t.Errorf("the loss did not fall: %.3f → %.3f", first, last)
	}
	if !(after >= 0.9 && after > before+0.3) {
		t.Errorf("accuracy %.2f → %.2f, want a rise to ≥ 0.9", before, after)
	}
	if len(progress) != 60 {
		t.Fatalf("%d progress calls, want 60", len(progress))
	}
	p := progress[len(progress)-1]
	if p.Step != 60 || p.Steps != 60 || p.Epoch != 14 || p.LR != o.LR(59, 60) || p.StepsPerSec <= 0 || p.GradNorm <= 0 {
		t.Errorf("last progress %+v", p)
	}
	if !near(progress[0].LR, 3e-3/5, 1e-15) || progress[4].LR != 3e-3 {
		t.Errorf("warm-up learning rates %g, %g; want %g, %g", progress[0].LR, progress[4].LR, 3e-3/5, 3e-3)
	}
	// Only the encoder's tensors are returned, and the input was left alone.
	if len(res.Weights) != len(enc.Specs) {
		t.Errorf("%d trained tensors, the encoder has %d", len(res.Weights), len(enc.Specs))
	}
	if accuracyOf(t, enc, nil, head, ds) != before {
		t.Error("training changed the encoder's own weights")
	}

	// Same seed, same run.
	o.Progress = nil
	again, err := Finetune(enc, head, ds, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Losses, res.Losses) {
		t.Errorf("two runs with one seed differ: final losses %g and %g", again.FinalLoss, res.FinalLoss)
	}
}

func TestFinetuneErrors(t *testing.T) {
	m, err := vit.NewRandom(tinyViT(), 7)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encoder.NewViT(m.Config, m.Weights)
	if err != nil {
		t.Fatal(err)
	}
	ds := quadrants(t, 8, 1)
	o := Recipe()
	o.Steps = 1
	for _, c := range []struct {
		head *heads.Head
		err  string
	}{
		{randomHead(4, 7, true, 1), "16-d"},
		{randomHead(3, 16, true, 1), "3 classes"},
		{randomHead(4, 16, true, 1), "class 0"},
	} {
		if _, err := Finetune(enc, c.head, ds, o); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("error %v, want one mentioning %q", err, c.err)
		}
	}
	h := randomHead(4, 16, true, 1)
	if _, err := FinetuneIgnoringClassNames(enc, h, ds, o); err != nil {
		t.Errorf("ignoring class names: %v", err)
	}
	o.Steps = 0
	if _, err := Finetune(enc, h, ds, o); err == nil {
		t.Error("no steps or epochs: no error")
	}
}

func TestSupervised(t *testing.T) {
	c := tinyViT()
	enc, err := encoder.NewViT(c, livelyWeights(c.Specs(), 0.3, 3))
	if err != nil {
		t.Fatal(err)
	}
	ds := quadrants(t, 128, 2)
	o := Options{LearningRate: 1e-2, WeightDecay: 0.05, Warmup: 5, ClipNorm: 1, BatchSize: 32, Epochs: 15, Seed: 2}
	res, h, err := Supervised(enc, ds, o)
	if err != nil {
		t.Fatal(err)
	}
	first, last := firstLast(res.Losses, 4)
	acc := accuracyOf(t, enc, res.Weights, h, ds)
	t.Logf("loss %.3f → %.3f, accuracy %.2f", first, last, acc)
	if !(last < 0.5*first) || acc < 0.9 {
		t.Errorf("supervised training: loss %.3f → %.3f, accuracy %.2f", first, last, acc)
	}
	if h.Dim != 16 || len(h.Classes) != 4 || h.Normalize || h.Scale != 1 || len(res.Weights) != len(enc.Specs) {
		t.Errorf("head %d-d, %d classes; %d trained tensors", h.Dim, len(h.Classes), len(res.Weights))
	}
	if err := h.Save(filepath.Join(t.TempDir(), "head.safetensors"), false); err != nil {
		t.Errorf("the trained head does not save: %v", err)
	}
}

// tinyTokenizer maps the words of the test captions to ids below 40, the
// start token to 38 and the end token to 39.
func tinyTokenizer(text string) ([]int, error) {
	ids := []int{38}
	for _, w := range strings.Fields(strings.ToLower(text)) {
		h := 0
		for _, r := range w {
			h = (h*31 + int(r)) % 37
		}
		ids = append(ids, 1+h)
	}
	return append(ids, 39), nil
}

func TestContrastive(t *testing.T) {
	c := tinyCLIP(clip.OpenAI)
	c.Text.ContextLength = 8
	m, err := clip.New(c, livelyWeights(c.Specs(), 0.3, 4))
	if err != nil {
		t.Fatal(err)
	}
	ds := quadrants(t, 128, 3)
	o := Options{LearningRate: 3e-3, WeightDecay: 0.1, Warmup: 5, ClipNorm: 1, BatchSize: 32, Steps: 120, Seed: 3}
	tasks := []Task{{Data: ds, Templates: []string{"a photo of the {}", "the {} corner"}}}
	res, err := Contrastive(m, tasks, tinyTokenizer, o)
	if err != nil {
		t.Fatal(err)
	}
	first, last := firstLast(res.Losses, 5)
	scale := flat64(res.Weights["logit_scale"])[0]
	t.Logf("loss %.3f → %.3f, logit_scale %.3f (init %.3f)", first, last, scale, math.Log(1/0.07))
	if !(last < first-0.3) {
		t.Errorf("contrastive loss did not fall: %.3f → %.3f", first, last)
	}
	if len(res.Weights) != len(c.Specs()) {
		t.Errorf("%d tensors returned, the model has %d", len(res.Weights), len(c.Specs()))
	}
	// The trained model loads and classifies zero-shot: class-name
	// embeddings as a head, as editkit head builds them.
	tm, err := clip.New(c, res.Weights)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encoder.NewCLIP(tm.Config, tm.Weights)
	if err != nil {
		t.Fatal(err)
	}
	h := zeroShotHead(t, tm, ds.Classes(), tasks[0].Templates)
	acc := accuracyOf(t, enc, nil, h, ds)
	t.Logf("zero-shot accuracy after %d steps: %.2f", res.Steps, acc)
	if acc < 0.6 {
		t.Errorf("zero-shot accuracy %.2f after contrastive training, want ≥ 0.6", acc)
	}

	// logit_scale is clamped to ln 100.
	w := make(models.Weights, len(m.Weights))
	for k, v := range m.Weights {
		w[k] = v
	}
	w["logit_scale"] = float64Tensor([]float64{6}, nil)
	w["logit_scale"], _ = convert(w["logit_scale"], m.Weights["logit_scale"].DType())
	big, err := m.WithWeights(w)
	if err != nil {
		t.Fatal(err)
	}
	o.Steps = 1
	res, err = Contrastive(big, tasks, tinyTokenizer, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := flat64(res.Weights["logit_scale"])[0]; math.Abs(got-math.Log(100)) > 1e-6 {
		t.Errorf("logit_scale after a step from 6: %g, want ln 100", got)
	}

	// Bad captions.
	if _, err := Contrastive(m, tasks, func(string) ([]int, error) { return []int{39, 5}, nil }, o); err == nil || !strings.Contains(err.Error(), "largest") {
		t.Errorf("end token not the largest: %v", err)
	}
	if _, err := Contrastive(m, tasks, func(string) ([]int, error) { return make([]int, 9), nil }, o); err == nil || !strings.Contains(err.Error(), "tokens") {
		t.Errorf("caption too long: %v", err)
	}
}

// zeroShotHead builds CLIP's zero-shot head: per class, the mean of the
// L2-normalized caption embeddings, normalized, times exp(logit_scale).
func zeroShotHead(t *testing.T, m *clip.Model, classes, templates []string) *heads.Head {
	t.Helper()
	h := &heads.Head{Classes: classes, Dim: m.Config.EmbedDim, Normalize: true,
		Scale: float32(math.Exp(flat64(m.Weights["logit_scale"])[0]))}
	for _, c := range classes {
		var rows [][]int
		for _, tmpl := range templates {
			ids, _ := tinyTokenizer(Caption(tmpl, c))
			rows = append(rows, append(ids, make([]int, 8-len(ids))...))
		}
		tx, err := clip.TokenIDs(rows)
		if err != nil {
			t.Fatal(err)
		}
		emb, err := m.EncodeText(tx)
		if err != nil {
			t.Fatal(err)
		}
		e := flat64(emb)
		d := h.Dim
		mean := make([]float64, d)
		for i := range rows {
			n := 0.0
			for _, v := range e[i*d : (i+1)*d] {
				n += v * v
			}
			for j := range d {
				mean[j] += e[i*d+j] / math.Sqrt(n)
			}
		}
		n := 0.0
		for _, v := range mean {
			n += v * v
		}
		for _, v := range mean {
			h.Weight = append(h.Weight, float32(v/math.Sqrt(n)))
		}
	}
	return h
}

var _ = checkpoint.F32

// TestEpochBatchesPerTask checks Options.PerTaskBatches' batch plan: every
// batch holds one task, each epoch visits every example once, tasks come in
// proportion to their sizes, the plan depends on the seed and epoch only,
// and the default plan mixes tasks.
func TestEpochBatchesPerTask(t *testing.T) {
	sizes := []int{70, 33, 5, 64}
	const batch = 16
	for epoch := range 3 {
		plan := epochBatches(sizes, batch, 7, epoch, true)
		if got, want := len(plan), contrastiveSteps(sizes, batch, true); got != want {
			t.Errorf("epoch %d: %d batches, want %d", epoch, got, want)
		}
		seen := map[example]bool{}
		perTask := make([]int, len(sizes))
		for bi, b := range plan {
			if len(b) == 0 || len(b) > batch {
				t.Fatalf("epoch %d batch %d: %d examples", epoch, bi, len(b))
			}
			for _, e := range b {
				if e.task != b[0].task {
					t.Fatalf("epoch %d batch %d mixes tasks %d and %d", epoch, bi, b[0].task, e.task)
				}
				if e.i < 0 || e.i >= sizes[e.task] || seen[e] {
					t.Fatalf("epoch %d: example %v out of range or repeated", epoch, e)
				}
				seen[e] = true
			}
			perTask[b[0].task]++
		}
		for ti, n := range sizes {
			if want := (n + batch - 1) / batch; perTask[ti] != want {
				t.Errorf("epoch %d task %d: %d batches, want %d", epoch, ti, perTask[ti], want)
			}
		}
		if len(seen) != 70+33+5+64 {
			t.Errorf("epoch %d visits %d examples", epoch, len(seen))
		}
		if again := epochBatches(sizes, batch, 7, epoch, true); fmt.Sprint(again) != fmt.Sprint(plan) {
			t.Errorf("epoch %d: the plan is not deterministic", epoch)
		}
	}
	if fmt.Sprint(epochBatches(sizes, batch, 7, 0, true)) == fmt.Sprint(epochBatches(sizes, batch, 7, 1, true)) {
		t.Error("epochs 0 and 1 have the same plan")
	}
	// The default mixes tasks within batches.
	mixed := false
	for _, b := range epochBatches(sizes, batch, 7, 0, false) {
		for _, e := range b {
			mixed = mixed || e.task != b[0].task
		}
	}
	if !mixed {
		t.Error("the default plan never mixes tasks")
	}
}

// TestContrastivePerTask trains with PerTaskBatches on two tasks (the
// steps of an epoch count each task's batches) and checks the loss falls.
func TestContrastivePerTask(t *testing.T) {
	c := tinyCLIP(clip.OpenAI)
	c.Text.ContextLength = 8
	m, err := clip.New(c, livelyWeights(c.Specs(), 0.3, 4))
	if err != nil {
		t.Fatal(err)
	}
	a, b := quadrants(t, 40, 3), quadrants(t, 24, 5)
	tasks := []Task{{Data: a, Templates: []string{"a photo of the {}"}}, {Data: b, Templates: []string{"the {} corner"}}}
	o := Options{LearningRate: 3e-3, WeightDecay: 0.1, Warmup: 2, ClipNorm: 1, BatchSize: 16, Epochs: 6, Seed: 3, PerTaskBatches: true}
	res, err := Contrastive(m, tasks, tinyTokenizer, o)
	if err != nil {
		t.Fatal(err)
	}
	if want := 6 * (3 + 2); res.Steps != want {
		t.Errorf("%d steps, want %d (per-task batches)", res.Steps, want)
	}
	first, last := firstLast(res.Losses, 5)
	t.Logf("loss %.3f → %.3f", first, last)
	if !(last < first) {
		t.Errorf("contrastive loss did not fall: %.3f → %.3f", first, last)
	}
}
