// Command backdoor-removal is editkit's end-to-end backdoor experiment on
// real images (CIFAR-10, GTSRB): it pre-trains the small CLIP of
// examples/task-arithmetic (the stage both examples share,
// examples/internal/pretraining: half of each dataset's classes), implants
// backdoors (BadNets, Blended, WaNet) into the other half by poisoned
// fine-tuning, and once into the pre-trained model itself by poisoned
// contrastive pre-training, then removes them with TBAR (known trigger,
// fine-tuned from the backdoored or the pre-trained model), with TBAR on a
// DECREE-inverted trigger, and with clean fine-tuning on N and 50·N images;
// it reports clean accuracy (CA) and attack success rate (ASR) on the test
// splits, every α chosen on validation, and the weight disentanglement of
// a clean task vector and a trigger vector.
//
//	go run ./examples/backdoor-removal [--quick] [--out DIR] [--data DIR] [--redo] [--settings JSON]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/examples/internal/pretraining"
	"github.com/editkit/editkit/linearize"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/clip"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/train"
	"github.com/editkit/editkit/unlearn"
)

// settings are the sizes of a run (names as in table.json).
type settings struct {
	// The model and its pre-training (examples/task-arithmetic's stage).
	pretraining.Settings
	Tasks   []string
	Attacks []string // trigger specs
	Target  int      // the attacks' target class (an index into the head's classes)
	// PoisonRate is the downstream attacks' share of poisoned examples.
	PoisonRate float64
	// FtN, FtSteps, FtBatch, FtLR: the downstream fine-tuning (backdoored,
	// and the clean reference) through the frozen zero-shot head.
	FtN, FtSteps, FtBatch int
	FtLR                  float64
	// TBAR: TbarEpochs over the N triggered images (N = 2% of the training
	// split, at least 100), at FtLR and FtBatch.
	TbarEpochs int
	// BaselineSteps is the length of clean fine-tuning on 50·N images (the
	// N baseline runs TBAR's recipe: TbarEpochs over N).
	BaselineSteps int
	// InvertExamples and InvertEpochs bound DECREE.
	InvertExamples, InvertEpochs int
	// ValLimit and TestLimit are the validation (α search) and test images
	// per task.
	ValLimit, TestLimit int
	// XiGrid is the grid of ξ(α_clean, α_trigger), measured for the first
	// attack of each task on XiExamples clean and as many triggered test
	// images (an empty grid skips it).
	XiGrid     []float64
	XiExamples int
	// Contrastive runs the poisoned pre-training experiment: PrePoisonRate
	// of the first task's pre-training images get the first attack's
	// trigger and are paired with captions of its pre-training class
	// Target; the attack is measured zero-shot on those classes.
	Contrastive   bool
	PrePoisonRate float64
}

func quickSettings() settings {
	return settings{Settings: pretraining.Settings{ImageSize: 16, Patch: 4, Width: 32, Layers: 2, Heads: 2, MLP: 64, Embed: 32, TextWidth: 32, Context: 96,
		PreN: 1500, PreSteps: 500, PreBatch: 32, PreLR: 3e-3, PreTemplates: 4, LogitScale: 50},
		Tasks: []string{"cifar10"}, Attacks: []string{"badnets:size=6,pattern=white"}, Target: 0, PoisonRate: 0.1,
		FtN: 3000, FtSteps: 250, FtBatch: 32, FtLR: 1e-3, TbarEpochs: 10, BaselineSteps: 150,
		InvertExamples: 192, InvertEpochs: 10, ValLimit: 300, TestLimit: 500,
		XiGrid: []float64{-1, 0, 1}, XiExamples: 100}
}

func fullSettings() settings {
	return settings{Settings: pretraining.Settings{ImageSize: 16, Patch: 4, Width: 32, Layers: 2, Heads: 2, MLP: 128, Embed: 32, TextWidth: 32, Context: 96,
		PreN: 4000, PreSteps: 2000, PreBatch: 32, PreLR: 3e-3, PreTemplates: 8, LogitScale: 50},
		Tasks: []string{"cifar10", "gtsrb"}, Attacks: []string{"badnets:size=6,pattern=white", "blended:ratio=0.3", "wanet:k=4,s=4"}, Target: 0, PoisonRate: 0.1,
		FtN: 6000, FtSteps: 500, FtBatch: 32, FtLR: 1e-3, TbarEpochs: 10, BaselineSteps: 500,
		InvertExamples: 1000, InvertEpochs: 20, ValLimit: 400, TestLimit: 1000,
		XiGrid: eval.Grid(-2, 2, 0.5), XiExamples: 200,
		Contrastive: true, PrePoisonRate: 0.1}
}

type options struct {
	Quick bool
	Out   string
	Data  string
	Redo  bool
	// Settings is a JSON object overriding fields of the settings.
	Settings string
	Log      io.Writer
}

// row is one model of a case on the test split.
type row struct {
	Name   string  `json:"name"`
	CA     float64 `json:"ca"`
	ASR    float64 `json:"asr"`
	KeptCA float64 `json:"kept_ca"` // CA / the backdoored model's CA
	// Detail says how the row was made.
	Detail string `json:"detail,omitempty"`
	Model  string `json:"model"`
}

// attackCase is one backdoor and everything done to it.
type attackCase struct {
	Task, Attack, Trigger string
	Contrastive           bool `json:"contrastive,omitempty"`
	// Dir is the folder of the case's checkpoints and records.
	Dir       string                `json:"dir"`
	Rows      []row                 `json:"rows"`
	TBAR      []*unlearn.TBARResult `json:"tbar"`
	Inversion *unlearn.InvertResult `json:"inversion,omitempty"`
	// CleanPL1 is DECREE's score on the clean reference, for comparison
	// with the backdoored model's.
	CleanPL1 float64 `json:"clean_pl1,omitempty"`
	// Xi is the weight disentanglement error between the clean task vector
	// (clean fine-tuned − pre-trained) and the trigger vector of TBAR from
	// the pre-trained model, on clean and triggered test images.
	Xi      *eval.Disentanglement `json:"xi,omitempty"`
	Seconds map[string]float64    `json:"seconds"`
}

// report is the run's result, written as table.json.
type report struct {
	Quick        bool               `json:"quick"`
	Settings     settings           `json:"settings"`
	PretrainLoss map[string]float64 `json:"pretrain_loss"`
	Cases        []*attackCase      `json:"cases"`
	Skipped      map[string]string  `json:"skipped,omitempty"`
	Seconds      map[string]float64 `json:"seconds"`
}

func main() {
	// An interrupted run removes the checkpoint or table it was writing;
	// the finished stages stay, for a rerun to reuse.
	sig := checkpoint.ExitOnSignal(os.Stderr, "backdoor-removal")
	var o options
	flag.BoolVar(&o.Quick, "quick", false, "one task and one attack, small sizes (a few minutes; what the test runs)")
	flag.StringVar(&o.Out, "out", "backdoor-removal-out", "folder for everything the run writes")
	flag.StringVar(&o.Data, "data", "", "folder holding one folder per dataset (default $EDITKIT_DATA, else ../shared/data/vision)")
	flag.BoolVar(&o.Redo, "redo", false, "redo every stage instead of reusing finished ones")
	flag.StringVar(&o.Settings, "settings", "", `JSON object overriding settings, e.g. '{"FtSteps":400}' (names as in table.json)`)
	flag.Parse()
	o.Log = os.Stderr
	r, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "backdoor-removal:", err)
		sig.Exit(1)
	}
	fmt.Print(r.markdown())
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// task is one dataset cut in class halves: the task classes, on which the
// downstream attacks are fine-tuned and measured, and the pre-training
// classes, which pre-training sees (and the contrastive attack targets).
type task struct {
	name string
	// The task classes: the training split (the defender's clean data),
	// the attacker's fine-tuning share of it, validation and test.
	train, ft, val, test *datasets.Dataset
	// The pre-training classes: the pre-training share, training split,
	// validation and test.
	pre, knownTrain, knownVal, knownTest *datasets.Dataset
	// The zero-shot heads of the clean pre-trained model over the task
	// classes and the pre-training classes.
	head, knownHead *heads.Head
}

// sample is n examples of ds drawn with seed (datasets.Shares).
func sample(ds *datasets.Dataset, n int, seed uint64) *datasets.Dataset {
	if n <= 0 || n >= ds.Len() {
		return ds
	}
	return datasets.Shares(ds, []int{n}, seed)[0]
}

func loadTask(name string, st settings, dopt datasets.Options) (*task, error) {
	h, err := pretraining.OpenHalves(name, dopt)
	if err != nil {
		return nil, err
	}
	t := &task{name: name, train: h.Train[1], knownTrain: h.Train[0]}
	t.pre = sample(h.Train[0], st.PreN, 1)
	t.ft = sample(h.Train[1], st.FtN, 2)
	t.val, t.knownVal = sample(h.Val[1], st.ValLimit, 3), sample(h.Val[0], st.ValLimit, 3)
	t.test, t.knownTest = sample(h.Test[1], st.TestLimit, 4), sample(h.Test[0], st.TestLimit, 4)
	for _, d := range []*datasets.Dataset{t.pre, t.ft, t.val, t.test, t.knownVal, t.knownTest} {
		if d.Len() == 0 {
			return nil, fmt.Errorf("%s: a share of the data is empty (%s): the dataset is too small for these settings", name, d.Name())
		}
	}
	return t, nil
}

func run(o options) (*report, error) {
	start := time.Now()
	logf := pretraining.Logger(o.Log)
	st := fullSettings()
	if o.Quick {
		st = quickSettings()
	}
	if err := pretraining.Override(&st, o.Settings); err != nil {
		return nil, err
	}
	rep := &report{Quick: o.Quick, Skipped: map[string]string{}, Seconds: map[string]float64{}, PretrainLoss: map[string]float64{}}
	dopt := datasets.Options{DataDir: o.Data}
	var ts []*task
	for _, name := range st.Tasks {
		t, err := loadTask(name, st, dopt)
		if err != nil {
			logf("skipping %s: %v", name, err)
			rep.Skipped[name] = err.Error()
			continue
		}
		ts = append(ts, t)
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("no task's data found (%v)", rep.Skipped)
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}

	// The clean pre-trained model and its zero-shot heads.
	tok, vocab, context, tokFile, err := pretraining.LoadTokenizer(dopt)
	if err != nil {
		return nil, err
	}
	st.Vocab, st.Context = vocab, context
	rep.Settings = st
	if err := pretraining.Stamp(o.Out, st, o.Redo); err != nil {
		return nil, err
	}
	logf("tokenizer: %s", tokFile)
	preDir := filepath.Join(o.Out, "pretrained")
	var data []pretraining.Data
	for _, t := range ts {
		data = append(data, pretraining.Data{Name: t.name, Pre: t.pre})
	}
	model, loss, err := pretraining.Run(preDir, st.Settings, tok, data, o.Redo, logf)
	if err != nil {
		return nil, err
	}
	rep.PretrainLoss["clean"] = loss
	for _, t := range ts {
		if t.head, err = pretraining.ZeroShotHead(filepath.Join(o.Out, "heads", t.name+".safetensors"), model, tok, preDir, t.name, t.ft.Classes(), o.Redo); err != nil {
			return nil, err
		}
		if t.knownHead, err = pretraining.ZeroShotHead(filepath.Join(o.Out, "heads", t.name+"-pre.safetensors"), model, tok, preDir, t.name, t.pre.Classes(), o.Redo); err != nil {
			return nil, err
		}
	}
	rep.Seconds["pretrain"] = time.Since(start).Seconds()

	add := func(b *backdoor, err error) error {
		if err != nil {
			return err
		}
		c, err := runCase(o, st, b, logf)
		if err != nil {
			return err
		}
		rep.Cases = append(rep.Cases, c)
		return rep.write(o.Out)
	}
	// (a) Downstream backdoors: poisoned fine-tuning of the task classes.
	for _, t := range ts {
		for _, spec := range st.Attacks {
			if err := add(downstream(o, st, t, preDir, spec, logf)); err != nil {
				return nil, fmt.Errorf("%s, %s: %w", t.name, spec, err)
			}
		}
	}
	// (b) A backdoor planted in pre-training, measured zero-shot.
	if st.Contrastive {
		if err := add(contrastive(o, st, ts, preDir, tok, rep, logf)); err != nil {
			return nil, fmt.Errorf("poisoned pre-training: %w", err)
		}
	}
	rep.Seconds["total"] = time.Since(start).Seconds()
	if err := rep.write(o.Out); err != nil {
		return nil, err
	}
	logf("wrote %s", filepath.Join(o.Out, "table.md"))
	return rep, pretraining.Finish(o.Out)
}

// contrastive pre-trains the CLIP again from scratch on the same pairs,
// except that PrePoisonRate of the first task's pre-training images carry
// the first attack's trigger and are paired with captions of its
// pre-training class Target (CLIP poisoning pairs triggered images with
// the target's captions). The backdoored model is the poisoned pre-trained
// one, read through its own zero-shot head over the pre-training classes;
// its clean reference the clean pre-trained model with its head.
func contrastive(o options, st settings, ts []*task, preDir string, tok *clip.Tokenizer, rep *report, logf func(string, ...any)) (*backdoor, error) {
	t := ts[0]
	spec := st.Attacks[0]
	trig, err := unlearn.ParseTrigger(spec)
	if err != nil {
		return nil, err
	}
	poisoned, idx, err := unlearn.Poison(t.pre, trig, unlearn.PoisonOptions{Rate: st.PrePoisonRate, Target: st.Target, Seed: 11})
	if err != nil {
		return nil, err
	}
	var data []pretraining.Data
	for _, u := range ts {
		d := pretraining.Data{Name: u.name, Pre: u.pre}
		if u == t {
			d.Pre = poisoned
		}
		data = append(data, d)
	}
	dir := filepath.Join(o.Out, "pretraining-"+caseDir(spec))
	model := filepath.Join(dir, "pretrained-poisoned")
	m, loss, err := pretraining.Run(model, st.Settings, tok, data, o.Redo, logf)
	if err != nil {
		return nil, err
	}
	if loss != 0 {
		rep.PretrainLoss["poisoned"] = loss
	}
	// A task over the pre-training classes, read by the poisoned model's
	// own zero-shot head.
	pt := &task{name: t.name + "-pre", train: t.knownTrain, ft: t.pre, val: t.knownVal, test: t.knownTest}
	if pt.head, err = pretraining.ZeroShotHead(filepath.Join(dir, "head.safetensors"), m, tok, model, t.name, t.pre.Classes(), o.Redo); err != nil {
		return nil, err
	}
	kind := strings.SplitN(spec, ":", 2)[0]
	return &backdoor{t: pt, kind: kind, trig: trig, dir: dir, model: model, head: pt.head, pre: preDir,
		refs:        []reference{{"clean pre-trained (zero-shot)", preDir, t.knownHead}},
		refInverted: filepath.Join(o.Out, t.name, "pretrained-inverted.safetensors"),
		detail:      fmt.Sprintf("%d of %d %s pre-training images poisoned, captions of %q", len(idx), t.pre.Len(), t.name, t.pre.Classes()[st.Target]),
		contrastive: true}, nil
}

// recipe is the example's fine-tuning recipe at its learning rate and
// batch: AdamW, weight decay 0.1, cosine schedule with 10% warm-up,
// clipping at 1.
func recipe(st settings, steps int, seed uint64) train.Options {
	return train.Options{LearningRate: st.FtLR, WeightDecay: 0.1, Warmup: max(1, steps/10), ClipNorm: 1, BatchSize: st.FtBatch, Steps: steps, Seed: seed}
}

// backdoor is one implanted backdoor: the model that carries it, the head
// that reads the task from it, and the clean models it is compared with.
type backdoor struct {
	t    *task
	kind string // the attack's name (badnets, blended, wanet)
	trig unlearn.Trigger
	dir  string // where the case's stages write
	// model is the backdoored checkpoint, head its task head.
	model string
	head  *heads.Head
	// pre is the clean pre-trained checkpoint (TBAR's --from pretrained).
	pre string
	// refs are clean models measured beside it (name, checkpoint, head);
	// the first is also inverted, for DECREE's score of a clean model,
	// into refInverted (shared by the cases of a task).
	refs        []reference
	refInverted string
	// detail describes how the backdoor was implanted.
	detail      string
	contrastive bool
	// xi, when set, is the clean fine-tuned checkpoint whose task vector ξ
	// pairs with the trigger vector.
	xi string
}

type reference struct {
	name, path string
	head       *heads.Head
}

// downstream implants the attack spec into task t by poisoned
// fine-tuning of the pre-trained model.
func downstream(o options, st settings, t *task, preDir, spec string, logf func(string, ...any)) (*backdoor, error) {
	trig, err := unlearn.ParseTrigger(spec)
	if err != nil {
		return nil, err
	}
	kind := strings.SplitN(spec, ":", 2)[0]
	b := &backdoor{t: t, kind: kind, trig: trig, dir: filepath.Join(o.Out, t.name, caseDir(spec)), head: t.head, pre: preDir}
	b.model = filepath.Join(b.dir, "backdoored")
	pre, err := encoder.Load(preDir)
	if err != nil {
		return nil, err
	}
	defer pre.Close()
	poisoned, _, err := unlearn.Poison(t.ft, trig, unlearn.PoisonOptions{Rate: st.PoisonRate, Target: st.Target, Seed: 1})
	if err != nil {
		return nil, err
	}
	if err := finetune(o, b.model, pre, t.head, poisoned, recipe(st, st.FtSteps, 2)); err != nil {
		return nil, fmt.Errorf("backdoor fine-tuning: %w", err)
	}
	// The clean reference: the same fine-tuning without poison.
	clean := filepath.Join(o.Out, t.name, "clean-finetuned")
	if err := finetune(o, clean, pre, t.head, t.ft, recipe(st, st.FtSteps, 2)); err != nil {
		return nil, err
	}
	b.refs = []reference{{"clean fine-tuned (no attack)", clean, t.head}, {"pre-trained (zero-shot)", preDir, t.head}}
	b.refInverted = clean + "-inverted.safetensors"
	if len(st.XiGrid) > 1 && spec == st.Attacks[0] {
		b.xi = clean
	}
	b.detail = fmt.Sprintf("%g of %d fine-tuning images poisoned, %d steps", st.PoisonRate, t.ft.Len(), st.FtSteps)
	return b, nil
}

// caseDir names a case's folder after its trigger spec: the kind alone
// ("badnets"), or the kind and its parameters ("wanet_k4_s2").
func caseDir(spec string) string {
	return strings.NewReplacer(":", "_", ",", "_", "=", "", "/", "_", " ", "").Replace(strings.TrimSpace(spec))
}

// finetune fine-tunes from through the frozen head on ds into path, or
// reuses path.
func finetune(o options, path string, from *encoder.Encoder, head *heads.Head, ds *datasets.Dataset, opts train.Options) error {
	if exists(filepath.Join(path, "config.json")) && !o.Redo {
		return nil
	}
	res, err := train.FinetuneIgnoringClassNames(from, head, ds, opts)
	if err != nil {
		return err
	}
	defer res.Weights.Finalize()
	return train.WriteFinetuned(from.Path, path, res.Weights, train.WriteOptions{Force: true})
}

// runCase measures a backdoor and removes it every way: TBAR with the
// known trigger (from the backdoored and from the pre-trained model), TBAR
// with the trigger DECREE inverts, and clean fine-tuning on N and 50·N
// images.
func runCase(o options, st settings, b *backdoor, logf func(string, ...any)) (*attackCase, error) {
	t := b.t
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return nil, err
	}
	c := &attackCase{Task: t.name, Attack: b.kind, Trigger: b.trig.String(), Contrastive: b.contrastive, Dir: b.dir, Seconds: map[string]float64{}}
	lap := time.Now()
	done := func(stage string) { c.Seconds[stage] = time.Since(lap).Seconds(); lap = time.Now() }
	label := t.name + "/" + b.kind
	if b.contrastive {
		label += " (pre-training)"
	}

	bd, err := encoder.Load(b.model)
	if err != nil {
		return nil, err
	}
	defer bd.Close()
	measure := func(name, path, detail string, head *heads.Head, w models.Weights) error {
		clf, err := bd.Classifier(w, head)
		if err != nil {
			return err
		}
		m, err := unlearn.Measure(clf, t.test, bd.Preprocess, b.trig, st.Target, eval.Options{})
		if err != nil {
			return err
		}
		r := row{Name: name, CA: m.CA, ASR: m.ASR, KeptCA: 1, Model: path, Detail: detail}
		if len(c.Rows) > 0 && c.Rows[0].CA > 0 {
			r.KeptCA = m.CA / c.Rows[0].CA
		}
		c.Rows = append(c.Rows, r)
		logf("%s %-38s CA %5.1f%%  ASR %5.1f%%", label, name, 100*m.CA, 100*m.ASR)
		return nil
	}
	measurePath := func(name, path, detail string, head *heads.Head) error {
		w, err := bd.ReadWeights(path)
		if err != nil {
			return err
		}
		defer w.Finalize()
		return measure(name, path, detail, head, w)
	}
	if err := measurePath("backdoored", b.model, b.detail, b.head); err != nil {
		return nil, err
	}
	for _, r := range b.refs {
		if err := measurePath(r.name, r.path, "reference", r.head); err != nil {
			return nil, err
		}
	}
	done("measure")

	n := unlearn.TBARExamples(t.train.Len())
	tbarRecipe := recipe(st, st.TbarEpochs*((n+st.FtBatch-1)/st.FtBatch), 5)
	tbar := func(name string, from unlearn.From, base string, trigger unlearn.Trigger, target int) error {
		out := filepath.Join(b.dir, name)
		recPath := out + ".tbar.json"
		res := &unlearn.TBARResult{}
		if data, err := os.ReadFile(recPath); err == nil && !o.Redo && exists(out) && exists(out+"-finetuned") && json.Unmarshal(data, res) == nil {
			c.TBAR = append(c.TBAR, res)
			return measurePath(rowName(name), out, fmt.Sprintf("α = %g, N = %d", res.Alpha, res.Examples), b.head)
		}
		res, err := unlearn.TBAR(unlearn.TBAROptions{Model: b.model, Base: base, Head: b.head, Train: t.train, Val: t.val,
			Trigger: trigger, Target: target, From: from, Finetune: tbarRecipe, Seed: 5, KeepFinetuned: out + "-finetuned"})
		if err != nil {
			return err
		}
		defer res.Weights.Finalize()
		if err := train.WriteFinetuned(b.model, out, res.Weights, train.WriteOptions{Force: true}); err != nil {
			return err
		}
		js, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := checkpoint.WriteFileAtomic(recPath, js); err != nil {
			return err
		}
		png, err := eval.PlotSearch(res.Search, fmt.Sprintf("%s: %s, CA and ASR against α (validation)", label, rowName(name)), "α")
		if err != nil {
			return err
		}
		if err := checkpoint.WriteFileAtomic(out+".tbar.png", png); err != nil {
			return err
		}
		c.TBAR = append(c.TBAR, res)
		return measure(rowName(name), out, fmt.Sprintf("α = %g, N = %d", res.Alpha, res.Examples), b.head, res.Weights)
	}
	if err := tbar("tbar", unlearn.FromBackdoored, "", b.trig, st.Target); err != nil {
		return nil, fmt.Errorf("TBAR: %w", err)
	}
	if err := tbar("tbar-from-pretrained", unlearn.FromPretrained, b.pre, b.trig, st.Target); err != nil {
		return nil, fmt.Errorf("TBAR from the pre-trained model: %w", err)
	}
	done("tbar")
	if b.xi != "" {
		if c.Xi, err = disentangle(o, st, b, filepath.Join(b.dir, "tbar-from-pretrained-finetuned")); err != nil {
			return nil, fmt.Errorf("ξ: %w", err)
		}
		done("xi")
	}

	// Unknown trigger: DECREE, then TBAR with the inverted trigger and the
	// target it estimates.
	inv, err := invert(o, st, bd, b.head, t, filepath.Join(b.dir, "inverted.safetensors"))
	if err != nil {
		return nil, fmt.Errorf("inversion: %w", err)
	}
	c.Inversion = inv
	logf("%s DECREE: PL1 %.4f, estimated target %d (%.0f%% of triggered images), %d epochs", label, inv.PL1, inv.Target, 100*inv.TargetShare, inv.Epochs)
	ref := b.refs[0]
	refEnc, err := encoder.Load(ref.path)
	if err != nil {
		return nil, err
	}
	defer refEnc.Close()
	cinv, err := invert(o, st, refEnc, ref.head, t, b.refInverted)
	if err != nil {
		return nil, fmt.Errorf("inversion of %s: %w", ref.name, err)
	}
	c.CleanPL1 = cinv.PL1
	if err := tbar("tbar-inverted", unlearn.FromBackdoored, "", inv.Trigger, inv.Target); err != nil {
		return nil, fmt.Errorf("TBAR with the inverted trigger: %w", err)
	}
	done("inversion")

	// Baselines: clean fine-tuning of the backdoored model on N and 50·N
	// images, TBAR's recipe for N, BaselineSteps for 50·N.
	for _, bl := range []struct {
		name  string
		n     int
		steps int
	}{{"clean fine-tuning, N", n, tbarRecipe.Steps}, {"clean fine-tuning, 50·N", 50 * n, st.BaselineSteps}} {
		path := filepath.Join(b.dir, strings.NewReplacer(", ", "-", "·", "", " ", "-").Replace(bl.name))
		ds := sample(t.train, bl.n, 6)
		if err := finetune(o, path, bd, b.head, ds, recipe(st, bl.steps, 7)); err != nil {
			return nil, err
		}
		if err := measurePath(bl.name, path, fmt.Sprintf("%d clean images, %d steps", ds.Len(), bl.steps), b.head); err != nil {
			return nil, err
		}
	}
	done("baselines")
	return c, nil
}

// disentangle measures ξ(α_clean, α_trigger) around the pre-trained model
// between the clean task vector (b.xi − pre-trained) and the trigger vector
// (trigFT − pre-trained), on clean test images (the clean task's data) and
// triggered test images (the backdoor's), and draws its heat map.
func disentangle(o options, st settings, b *backdoor, trigFT string) (*eval.Disentanglement, error) {
	path := filepath.Join(b.dir, "xi")
	var d eval.Disentanglement
	if data, err := os.ReadFile(path + ".json"); err == nil && !o.Redo && json.Unmarshal(data, &d) == nil {
		return &d, nil
	}
	pre, err := encoder.Load(b.pre)
	if err != nil {
		return nil, err
	}
	defer pre.Close()
	var w [2]models.Weights
	for i, p := range []string{b.xi, trigFT} {
		if w[i], err = pre.ReadWeights(p); err != nil {
			return nil, err
		}
		defer w[i].Finalize()
	}
	trig, err := unlearn.Triggered(b.t.test, b.trig, st.Target)
	if err != nil {
		return nil, err
	}
	ds := [2]*datasets.Dataset{sample(b.t.test, st.XiExamples, 9), sample(trig, st.XiExamples, 9)}
	res, err := linearize.Disentangle(pre, w, nil, ds, [2]*heads.Head{b.head, b.head}, st.XiGrid, st.XiGrid, linearize.DisentangleOptions{})
	if err != nil {
		return nil, err
	}
	res.Tasks = [2]string{b.t.name + " (clean)", b.t.name + " (" + b.kind + " triggered)"}
	png, err := eval.PlotDisentanglement(res, fmt.Sprintf("ξ(α_clean, α_trigger): %s, %s", b.t.name, b.kind))
	if err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := checkpoint.WriteFileAtomic(path+".png", png); err != nil {
		return nil, err
	}
	return res, checkpoint.WriteFileAtomic(path+".json", js)
}

// rowName is a TBAR run's row label.
func rowName(name string) string {
	switch name {
	case "tbar":
		return "TBAR (known trigger)"
	case "tbar-from-pretrained":
		return "TBAR from pre-trained (known trigger)"
	case "tbar-inverted":
		return "TBAR (inverted trigger)"
	}
	return name
}

// invert runs DECREE on enc, the target estimated with head (or reads its
// earlier result from path).
func invert(o options, st settings, enc *encoder.Encoder, head *heads.Head, t *task, path string) (*unlearn.InvertResult, error) {
	recPath := strings.TrimSuffix(path, ".safetensors") + ".json"
	if !o.Redo && exists(path) && exists(recPath) {
		var r unlearn.InvertResult
		data, err := os.ReadFile(recPath)
		if err == nil && json.Unmarshal(data, &r) == nil {
			if r.Trigger, err = unlearn.LoadInverted(path); err == nil {
				return &r, nil
			}
		}
	}
	res, err := unlearn.Invert(enc, t.train, unlearn.InvertOptions{Examples: st.InvertExamples, Epochs: st.InvertEpochs, Head: head, Seed: 8})
	if err != nil {
		return nil, err
	}
	meta := map[string]string{unlearn.MetaPL1: fmt.Sprint(res.PL1), unlearn.MetaTarget: fmt.Sprint(res.Target), unlearn.MetaFound: fmt.Sprint(res.Found)}
	if err := res.Trigger.Save(path, meta, nil, true); err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, err
	}
	return res, checkpoint.WriteFileAtomic(recPath, js)
}

// markdown renders the report: one table per case.
func (r *report) markdown() string {
	var b strings.Builder
	b.WriteString("Test split; α chosen on validation (lowest ASR keeping ≥ 95% of the backdoored model's validation CA). CA kept = CA / the backdoored model's CA.\n")
	for _, c := range r.Cases {
		how := "poisoned fine-tuning"
		if c.Contrastive {
			how = "poisoned contrastive pre-training"
		}
		fmt.Fprintf(&b, "\n### %s, %s by %s (%s, target class %d)\n\n", c.Task, c.Attack, how, c.Trigger, r.Settings.Target)
		b.WriteString("| model | CA % | ASR % | CA kept % | detail |\n|---|---:|---:|---:|---|\n")
		for _, row := range c.Rows {
			fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f | %s |\n", row.Name, 100*row.CA, 100*row.ASR, 100*row.KeptCA, row.Detail)
		}
		if d := c.Xi; d != nil {
			in, all := xiStats(d)
			fmt.Fprintf(&b, "\nWeight disentanglement ξ(α_clean, α_trigger) of the clean task vector and the trigger vector (from the pre-trained model), on %d clean and %d triggered test images: mean %.3f over α ∈ [0, 1]², %.3f over the whole grid [%g, %g]² (0: the two never change each other's predictions; at most 2). Heat map: xi.png.\n",
				d.Examples[0], d.Examples[1], in, all, d.Alpha1[0], d.Alpha1[len(d.Alpha1)-1])
		}
		if c.Inversion != nil {
			fmt.Fprintf(&b, "\nDECREE on the backdoored model: PL1 norm %.4f (the clean reference: %.4f), estimated target %d (%.0f%% of the triggered images).\n",
				c.Inversion.PL1, c.CleanPL1, c.Inversion.Target, 100*c.Inversion.TargetShare)
		}
	}
	return b.String()
}

// xiStats is ξ's mean over the grid points in [0, 1]² and over all.
func xiStats(d *eval.Disentanglement) (in, all float64) {
	var nIn, nAll int
	for i, a1 := range d.Alpha1 {
		for j, a2 := range d.Alpha2 {
			all += d.Xi[i][j]
			nAll++
			if a1 >= 0 && a1 <= 1 && a2 >= 0 && a2 <= 1 {
				in += d.Xi[i][j]
				nIn++
			}
		}
	}
	return in / float64(max(nIn, 1)), all / float64(max(nAll, 1))
}

// write writes table.md and table.json.
func (r *report) write(out string) error {
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := checkpoint.WriteFileAtomic(filepath.Join(out, "table.json"), js); err != nil {
		return err
	}
	return checkpoint.WriteFileAtomic(filepath.Join(out, "table.md"), []byte(r.markdown()))
}
