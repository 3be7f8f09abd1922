// Command task-arithmetic is editkit's end-to-end task-arithmetic
// experiment on four real image datasets (MNIST, Fashion-MNIST, CIFAR-10,
// GTSRB): it pre-trains a small CLIP-style model from scratch with
// contrastive training, builds zero-shot heads, fine-tunes the image
// encoder once per task (head frozen), merges the fine-tuned models with
// every task-vector method of editkit (with and without LiNeS), choosing
// coefficients on the validation splits only, runs task negation and
// single-task LiNeS, measures how the task vectors interfere, and reports
// everything on the test splits.
//
//	go run ./examples/task-arithmetic [--quick] [--out DIR] [--data DIR] [--redo] [--settings JSON]
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/clip"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/tokenizers"
	"github.com/editkit/editkit/models/train"
	"github.com/editkit/editkit/tasks"
)

// allTasks are the experiment's datasets, in the table's order.
var allTasks = []string{"mnist", "fashion-mnist", "cifar10", "gtsrb"}

// settings are the sizes of a run.
type settings struct {
	ImageSize, Patch, Width, Layers, Heads, MLP, Embed, TextWidth, Context int
	Vocab                                                                  int
	// PreTemplates is how many of each dataset's shipped templates caption
	// the pre-training pairs (the zero-shot heads use them all).
	PreTemplates int
	// LogitScale is the initial exp(logit_scale) of pre-training.
	LogitScale                                    float64
	PreN, PreSteps, PreBatch                      int
	PreLR                                         float64
	FtN, FtSteps, FtBatch                         int
	FtLR                                          float64
	ValLimit, TestLimit                           int
	LambdaGrid, BetaGrid, BetaGridTIES, AlphaGrid []float64
}

func quickSettings() settings {
	return settings{ImageSize: 16, Patch: 4, Width: 32, Layers: 2, Heads: 2, MLP: 64, Embed: 32, TextWidth: 32, Context: 96,
		PreN: 1000, PreSteps: 1500, PreBatch: 32, PreLR: 3e-3, PreTemplates: 4, LogitScale: 50,
		FtN: 5000, FtSteps: 500, FtBatch: 32, FtLR: 1e-3,
		ValLimit: 200, TestLimit: 400,
		LambdaGrid: eval.Grid(0, 1, 0.1), BetaGrid: eval.Grid(0.1, 1, 0.3), BetaGridTIES: eval.Grid(0.1, 1.5, 0.35), AlphaGrid: eval.Grid(0, 1, 0.25)}
}

func fullSettings() settings {
	return settings{ImageSize: 16, Patch: 4, Width: 48, Layers: 2, Heads: 4, MLP: 192, Embed: 48, TextWidth: 32, Context: 96,
		PreN: 2000, PreSteps: 3000, PreBatch: 32, PreLR: 3e-3, PreTemplates: 8, LogitScale: 50,
		FtN: 8000, FtSteps: 1200, FtBatch: 32, FtLR: 1e-3,
		ValLimit: 500, TestLimit: 2000,
		LambdaGrid: eval.LambdaGrid, BetaGrid: eval.LinesBetaGrid, BetaGridTIES: eval.LinesBetaGridTIES, AlphaGrid: eval.LinesAlphaGrid}
}

type options struct {
	Quick bool
	Out   string
	Data  string
	Redo  bool
	// Settings is a JSON object overriding fields of the run's settings.
	Settings string
	Log      io.Writer
}

// method is one merge of the table.
type method struct {
	Name   string
	Method merge.Method
	Lines  bool
}

func methods() []method {
	var ms []method
	for _, m := range []merge.Method{merge.TaskArithmetic, merge.TIES, merge.DARETIES, merge.Consensus, merge.ModelStock, merge.Linear} {
		ms = append(ms, method{string(m), m, false}, method{string(m) + "+lines", m, true})
	}
	return ms
}

// mergeRecord is what one merge's search found.
type mergeRecord struct {
	Name        string             `json:"name"`
	Method      string             `json:"method"`
	Lines       bool               `json:"lines"`
	Coefficient string             `json:"coefficient"` // lambda, lines_beta, none
	Chosen      float64            `json:"chosen"`
	LinesAlpha  float64            `json:"lines_alpha,omitempty"`
	Search      *eval.Search       `json:"search,omitempty"`
	Test        map[string]float64 `json:"test"`
	Checkpoint  string             `json:"checkpoint"`
	Params      map[string]any     `json:"merge_params,omitempty"`
}

// report is the run's result, written as table.json.
type report struct {
	Quick        bool               `json:"quick"`
	Settings     settings           `json:"settings"`
	Tasks        []string           `json:"tasks"`
	Skipped      map[string]string  `json:"skipped,omitempty"`
	PretrainLoss float64            `json:"pretrain_loss"`
	ZeroShotVal  map[string]float64 `json:"zeroshot_val"`
	ZeroShot     map[string]float64 `json:"zeroshot_test"`
	FinetunedVal map[string]float64 `json:"finetuned_val"`
	Finetuned    map[string]float64 `json:"finetuned_test"`
	Merges       []*mergeRecord     `json:"merges"`
	Negation     *negationRecord    `json:"negation,omitempty"`
	SingleLines  *singleLinesRecord `json:"single_task_lines,omitempty"`
	Interference *interference      `json:"interference,omitempty"`
	Table        *eval.Table        `json:"table"`
	Seconds      map[string]float64 `json:"seconds"`
}

type negationRecord struct {
	Target, Control    string
	Lambda             float64
	Search             *eval.Search
	PretrainedTest     map[string]float64
	FinetunedTest      map[string]float64
	NegatedTest        map[string]float64
	ControlKeptPercent float64
}

type singleLinesRecord struct {
	Target         string
	Controls       []string
	Alpha          float64
	Search         *eval.Search
	PretrainedTest map[string]float64
	FinetunedTest  map[string]float64 // the target's fine-tuned model on every task
	LinesTest      map[string]float64
}

func main() {
	var o options
	flag.BoolVar(&o.Quick, "quick", false, "tiny model and subsets (a few minutes; what the test runs)")
	flag.StringVar(&o.Out, "out", "task-arithmetic-out", "folder for everything the run writes")
	flag.StringVar(&o.Data, "data", "", "folder holding one folder per dataset (default $EDITKIT_DATA, else ../shared/data/vision)")
	flag.BoolVar(&o.Redo, "redo", false, "redo every stage instead of reusing finished checkpoints")
	flag.StringVar(&o.Settings, "settings", "", `JSON object overriding sizes and schedules, e.g. '{"PreSteps":2000,"FtLR":3e-4}' (names as in table.json)`)
	flag.Parse()
	o.Log = os.Stderr
	r, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "task-arithmetic:", err)
		os.Exit(1)
	}
	fmt.Print(r.Table.Markdown())
}

// loadTokenizer loads CLIP's BPE vocabulary from the shared data folder
// (../tokenizers/clip beside the vision datasets), whose short token
// sequences make contrastive training fast; without it, a byte-level
// tokenizer (longer sequences) that needs no file.
func loadTokenizer(dopt datasets.Options) (tok *clip.Tokenizer, vocab, context int, source string, err error) {
	for _, dir := range datasets.DataDirs(dopt) {
		p := filepath.Join(dir, "..", "tokenizers", "clip", "bpe_simple_vocab_16e6.txt.gz")
		if exists(p) {
			tok, err = clip.LoadTokenizer(p)
			return tok, 49408, 48, p, err
		}
	}
	tok, err = byteTokenizer()
	return tok, 514, 96, "byte-level (no BPE vocabulary found)", err
}

// byteTokenizer is a CLIP tokenizer over bytes (no merges): 256 byte tokens,
// 256 end-of-word byte tokens, then start and end of text, so the example
// needs no vocabulary file.
func byteTokenizer() (*clip.Tokenizer, error) {
	vocab := map[string]int{}
	for b, r := range tokenizers.BytesToUnicode() {
		vocab[string(r)] = b
		vocab[string(r)+"</w>"] = 256 + b
	}
	vocab[clip.StartOfText], vocab[clip.EndOfText] = 512, 513
	data, err := json.Marshal(vocab)
	if err != nil {
		return nil, err
	}
	return clip.NewHFTokenizer(data, []byte("#version: 0.2\n"), "vocab.json", "merges.txt")
}

func (s settings) clipConfig() clip.Config {
	return clip.Config{Naming: clip.HF,
		Vision: &clip.VisionConfig{Tower: clip.Tower{Width: s.Width, Layers: s.Layers, Heads: s.Heads, MLP: s.MLP, Act: "quick_gelu", Eps: 1e-5},
			ImageSize: s.ImageSize, PatchSize: s.Patch, Channels: 3},
		Text: &clip.TextConfig{Tower: clip.Tower{Width: s.TextWidth, Layers: s.Layers, Heads: s.Heads, MLP: 2 * s.TextWidth, Act: "quick_gelu", Eps: 1e-5},
			ContextLength: s.Context, VocabSize: s.Vocab},
		EmbedDim: s.Embed}
}

// task is one dataset with its splits (subsets) and head.
type task struct {
	name               string
	pre, ft, val, test *datasets.Dataset
	head               *heads.Head
	valB, testB        []*datasets.Batch
}

func first(ds *datasets.Dataset, from, n int) *datasets.Dataset {
	perm := datasets.Permutation(ds.Len(), 1)
	if from+n > len(perm) {
		n = len(perm) - from
	}
	return ds.Subset(perm[from : from+n])
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func run(o options) (*report, error) {
	start := time.Now()
	logf := func(format string, a ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "[%5.1fs] "+format+"\n", append([]any{time.Since(start).Seconds()}, a...)...)
		}
	}
	st := fullSettings()
	if o.Quick {
		st = quickSettings()
	}
	if o.Settings != "" {
		d := json.NewDecoder(strings.NewReader(o.Settings))
		d.DisallowUnknownFields()
		if err := d.Decode(&st); err != nil {
			return nil, fmt.Errorf("--settings %s: %w (the fields are those of table.json's \"settings\")", o.Settings, err)
		}
	}
	rep := &report{Quick: o.Quick, Settings: st, Skipped: map[string]string{}, Seconds: map[string]float64{},
		ZeroShotVal: map[string]float64{}, ZeroShot: map[string]float64{}, FinetunedVal: map[string]float64{}, Finetuned: map[string]float64{}}
	stage := time.Now()
	lap := func(name string) { rep.Seconds[name] = time.Since(stage).Seconds(); stage = time.Now() }

	// The data.
	dopt := datasets.Options{DataDir: o.Data}
	var ts []*task
	for _, name := range allTasks {
		tr, err := datasets.Load(name, datasets.Train, dopt)
		var val, te *datasets.Dataset
		if err == nil {
			val, err = datasets.Load(name, datasets.Validation, dopt)
		}
		if err == nil {
			te, err = datasets.Load(name, datasets.Test, dopt)
		}
		if err != nil {
			logf("skipping %s: %v", name, err)
			rep.Skipped[name] = err.Error()
			continue
		}
		t := &task{name: name, pre: first(tr, 0, st.PreN), ft: first(tr, st.PreN, st.FtN),
			val: first(val, 0, st.ValLimit), test: first(te, 0, st.TestLimit)}
		ts = append(ts, t)
		rep.Tasks = append(rep.Tasks, name)
	}
	if len(ts) < 2 {
		return nil, fmt.Errorf("need at least two datasets, found %v (skipped, see above: %v)", rep.Tasks, slices.Sorted(maps.Keys(rep.Skipped)))
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	logf("tasks: %s", strings.Join(rep.Tasks, ", "))
	lap("data")

	// 1. Pre-training.
	tok, vocab, context, tokFile, err := loadTokenizer(dopt)
	if err != nil {
		return nil, err
	}
	st.Vocab, st.Context = vocab, context
	rep.Settings = st
	if err := stampSettings(o, st); err != nil {
		return nil, err
	}
	logf("tokenizer: %s", tokFile)
	preDir := filepath.Join(o.Out, "pretrained")
	var m *clip.Model
	if exists(filepath.Join(preDir, "config.json")) && !o.Redo {
		logf("reusing %s", preDir)
		if m, err = clip.Load(preDir); err != nil {
			return nil, err
		}
	} else {
		if m, err = clip.NewRandom(st.clipConfig(), 1); err != nil {
			return nil, err
		}
		if ls, ok := m.Weights["logit_scale"]; ok && st.LogitScale > 0 {
			tensors.MustMutableFlatData(ls, func(v []float32) {
				for i := range v {
					v[i] = float32(math.Log(st.LogitScale))
				}
			})
		}
		var pts []train.Task
		for _, t := range ts {
			tpl, _ := heads.DefaultTemplates(t.name)
			if len(tpl) > st.PreTemplates {
				tpl = tpl[:st.PreTemplates]
			}
			pts = append(pts, train.Task{Data: t.pre, Templates: tpl})
		}
		opt := train.Options{LearningRate: st.PreLR, WeightDecay: 0.1, Warmup: st.PreSteps / 20, ClipNorm: 1, BatchSize: st.PreBatch, Steps: st.PreSteps, Seed: 1,
			Progress: func(p train.Progress) {
				if p.Step%max(1, p.Steps/20) == 0 || p.Step == p.Steps {
					logf("pre-training step %d/%d loss %.3f acc %.2f", p.Step, p.Steps, p.AvgLoss, p.Accuracy)
				}
			}}
		logf("pre-training CLIP (width %d, %d layers, %d px) on %d examples per task, %d steps", st.Width, st.Layers, st.ImageSize, st.PreN, st.PreSteps)
		res, err := train.Contrastive(m, pts, train.CLIPTokenize(tok), opt)
		if err != nil {
			return nil, err
		}
		rep.PretrainLoss = res.MeanLoss
		if m, err = clip.New(m.Config, res.Weights); err != nil {
			return nil, err
		}
		if err := m.Save(preDir, checkpoint.WriteOptions{Force: true}); err != nil {
			return nil, err
		}
	}
	lap("pretrain")

	// 2. Zero-shot heads.
	for _, t := range ts {
		p := filepath.Join(o.Out, "heads", t.name+".safetensors")
		if exists(p) && !o.Redo {
			if t.head, err = heads.Load(p); err != nil {
				return nil, err
			}
			continue
		}
		tpl, _ := heads.DefaultTemplates(t.name)
		if t.head, err = heads.ZeroShot(m, tok, t.ft.Classes(), tpl, heads.ZeroShotOptions{Dataset: t.name, Model: preDir, TemplatesSource: "editkit default"}); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := t.head.Save(p, true); err != nil {
			return nil, err
		}
	}
	lap("heads")
	for _, t := range ts {
		logf("%s zero-shot head: mean cosine between class rows %.3f", t.name, meanCosine(t.head))
	}
	if os.Getenv("TA_STOP_AFTER_HEADS") != "" {
		return nil, errors.New("stopped after heads")
	}

	enc, err := encoder.Load(preDir)
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	for _, t := range ts {
		if t.valB, err = cacheBatches(t.val, enc.Preprocess); err != nil {
			return nil, err
		}
		if t.testB, err = cacheBatches(t.test, enc.Preprocess); err != nil {
			return nil, err
		}
	}
	ev := &evaluator{enc: enc}

	// 3. Fine-tuning, head frozen.
	ftPath := func(t *task) string { return filepath.Join(o.Out, "finetuned", t.name) }
	for _, t := range ts {
		p := ftPath(t)
		if exists(filepath.Join(p, "config.json")) && !o.Redo {
			logf("reusing %s", p)
			continue
		}
		opt := train.Options{LearningRate: st.FtLR, WeightDecay: 0.1, Warmup: st.FtSteps / 10, ClipNorm: 1, BatchSize: st.FtBatch, Steps: st.FtSteps, Seed: 2}
		res, err := train.Finetune(enc, t.head, t.ft, opt)
		if err != nil {
			return nil, fmt.Errorf("fine-tuning %s: %w", t.name, err)
		}
		logf("fine-tuned %s: %d steps, loss %.3f (%.1fs)", t.name, res.Steps, res.MeanLoss, res.Seconds)
		if err := train.WriteFinetuned(preDir, p, res.Weights, train.WriteOptions{Force: true}); err != nil {
			return nil, err
		}
	}
	lap("finetune")

	// Zero-shot and fine-tuned accuracies.
	ftW := map[string]models.Weights{}
	for _, t := range ts {
		if rep.ZeroShotVal[t.name], err = ev.acc(nil, t, t.valB); err != nil {
			return nil, err
		}
		if rep.ZeroShot[t.name], err = ev.acc(nil, t, t.testB); err != nil {
			return nil, err
		}
		w, err := enc.ReadWeights(ftPath(t))
		if err != nil {
			return nil, err
		}
		ftW[t.name] = w
		if rep.FinetunedVal[t.name], err = ev.acc(w, t, t.valB); err != nil {
			return nil, err
		}
		if rep.Finetuned[t.name], err = ev.acc(w, t, t.testB); err != nil {
			return nil, err
		}
		logf("%s: zero-shot %.2f%%, fine-tuned %.2f%% (test)", t.name, 100*rep.ZeroShot[t.name], 100*rep.Finetuned[t.name])
	}
	lap("eval_base")

	// 4. Merging.
	var members []string
	for _, t := range ts {
		members = append(members, ftPath(t))
	}
	for _, mm := range methods() {
		rec, err := runMerge(o, st, ev, ts, preDir, members, mm, rep.FinetunedVal, logf)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", mm.Name, err)
		}
		rep.Merges = append(rep.Merges, rec)
	}
	lap("merge")

	// 5. Negation of the first task, control the second; single-task LiNeS.
	if rep.Negation, err = runNegation(o, st, ev, ts, preDir, ftPath(ts[0]), rep, logf); err != nil {
		return nil, fmt.Errorf("negation: %w", err)
	}
	if rep.SingleLines, err = runSingleLines(o, st, ev, ts, preDir, ftPath(ts[0]), ftW[ts[0].name], rep, logf); err != nil {
		return nil, fmt.Errorf("single-task LiNeS: %w", err)
	}
	lap("negation_lines")

	// 6. Why the merges gain what they gain: each task along its own task
	// vector, and under each other task's.
	if rep.Interference, err = measureInterference(ev, ts, preDir, ftPath, logf); err != nil {
		return nil, fmt.Errorf("interference: %w", err)
	}
	lap("interference")

	// The table, on the test split.
	tab := &eval.Table{Title: "editkit task arithmetic, " + map[bool]string{true: "quick run", false: "full run"}[o.Quick], Split: "test", Tasks: rep.Tasks, Finetuned: rep.Finetuned}
	if err := tab.Add("zero-shot (pre-trained)", rep.ZeroShot, nil); err != nil {
		return nil, err
	}
	if err := tab.Add("fine-tuned (one model per task)", rep.Finetuned, nil); err != nil {
		return nil, err
	}
	for _, r := range rep.Merges {
		var co map[string]float64
		if r.Coefficient != "none" {
			co = map[string]float64{r.Coefficient: r.Chosen}
		}
		if err := tab.Add(r.Name, r.Test, co); err != nil {
			return nil, err
		}
	}
	rep.Table = tab
	rep.Seconds["total"] = time.Since(start).Seconds()
	if err := writeReport(o.Out, rep); err != nil {
		return nil, err
	}
	logf("wrote %s", filepath.Join(o.Out, "table.md"))
	return rep, nil
}

// evaluator evaluates encoder weights through heads on cached batches.
type evaluator struct{ enc *encoder.Encoder }

func cacheBatches(ds *datasets.Dataset, pre datasets.Preprocess) ([]*datasets.Batch, error) {
	it, err := ds.Batches(pre, datasets.BatchOptions{BatchSize: 128})
	if err != nil {
		return nil, err
	}
	var out []*datasets.Batch
	for it.Next() {
		b := *it.Batch()
		b.Images = append([]float32(nil), b.Images...)
		b.Labels = append([]int32(nil), b.Labels...)
		b.Indices = append([]int(nil), b.Indices...)
		out = append(out, &b)
	}
	return out, it.Err()
}

// hits is the per-image outcome (right or wrong) of weights w (the
// pre-trained ones when nil) with t's head on the cached batches.
func (e *evaluator) hits(w models.Weights, t *task, bs []*datasets.Batch) ([]bool, error) {
	clf, err := e.enc.Classifier(w, t.head)
	if err != nil {
		return nil, err
	}
	var out []bool
	k := len(t.head.Classes)
	for _, b := range bs {
		logits, err := clf(b)
		if err != nil {
			return nil, err
		}
		for i := 0; i < b.Size; i++ {
			out = append(out, eval.Argmax(logits[i*k:(i+1)*k]) == int(b.Labels[i]))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no examples")
	}
	return out, nil
}

// on is the evaluator of weights on the tasks' validation (or test)
// batches.
func (e *evaluator) on(ts []*task, test bool) eval.ModelEval {
	return func(w models.Weights) (map[string][]bool, error) {
		out := map[string][]bool{}
		for _, t := range ts {
			bs := t.valB
			if test {
				bs = t.testB
			}
			h, err := e.hits(w, t, bs)
			if err != nil {
				return nil, err
			}
			out[t.name] = h
		}
		return out, nil
	}
}

// acc is the top-1 accuracy of weights w with t's head on batches bs.
func (e *evaluator) acc(w models.Weights, t *task, bs []*datasets.Batch) (float64, error) {
	h, err := e.hits(w, t, bs)
	return eval.Share(h), err
}

func (e *evaluator) accs(w models.Weights, ts []*task, test bool) (map[string]float64, error) {
	m, _, err := eval.Measure(e.on(ts, test), w)
	return m, err
}

// direction merges the members once at the unit coefficient and keeps Δ
// for the encoder's tensors (merge.NewDirection).
func (e *evaluator) direction(preDir string, members []string, cfg merge.Config, coef merge.Coefficient, negate bool) (*merge.Direction, error) {
	s, err := tasks.OpenSet(preDir, members)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var names []string
	for _, spec := range e.enc.Specs {
		names = append(names, spec.Name)
	}
	return merge.NewDirection(s, cfg, merge.DirectionOptions{Coefficient: coef, Negate: negate, Tensors: names})
}

// at measures θ(c) of d on the tasks' test (or validation) batches.
func (e *evaluator) at(d *merge.Direction, c float64, ts []*task, test bool) (map[string]float64, error) {
	w, err := eval.WeightsAt(d, e.enc.Weights, c)
	if err != nil {
		return nil, err
	}
	defer w.Finalize()
	return e.accs(w, ts, test)
}

func mergeConfig(mm method) *merge.Config {
	cfg := &merge.Config{Method: mm.Method}
	if mm.Method == merge.DARETIES {
		cfg.Density, cfg.Seed = []float64{0.5}, 1
	}
	if mm.Lines {
		cfg.Lines = &merge.Lines{}
	}
	return cfg
}

// searched returns the coefficient searched for a method: LiNeS's β with
// LiNeS, λ for the task-vector methods; model stock and averaging alone
// have none.
func searched(mm method) (merge.Coefficient, bool) {
	switch {
	case mm.Lines:
		return merge.CoefLinesBeta, true
	case mm.Method == merge.Linear || mm.Method == merge.ModelStock:
		return "", false
	}
	return merge.CoefLambda, true
}

// runMerge merges the fine-tuned models with one method, choosing λ (or
// LiNeS's β) on validation, writes the merge at the chosen coefficient and
// measures it on test.
func runMerge(o options, st settings, ev *evaluator, ts []*task, preDir string, members []string, mm method, ftVal map[string]float64, logf func(string, ...any)) (*mergeRecord, error) {
	recPath := filepath.Join(o.Out, "merged", mm.Name+".json")
	ckPath := filepath.Join(o.Out, "merged", mm.Name)
	if !o.Redo && exists(recPath) && exists(ckPath) {
		var rec mergeRecord
		if data, err := os.ReadFile(recPath); err == nil && json.Unmarshal(data, &rec) == nil {
			logf("reusing %s", ckPath)
			return &rec, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(recPath), 0o755); err != nil {
		return nil, err
	}
	cfg := mergeConfig(mm)
	rec := &mergeRecord{Name: mm.Name, Method: string(mm.Method), Lines: mm.Lines, Checkpoint: ckPath, Coefficient: "none"}
	var names []string
	for _, t := range ts {
		names = append(names, t.name)
	}
	final := *cfg
	if coef, ok := searched(mm); ok {
		d, err := ev.direction(preDir, members, *cfg, coef, false)
		if err != nil {
			return nil, err
		}
		rec.Coefficient = string(coef)
		grid := st.LambdaGrid
		if mm.Lines {
			rec.LinesAlpha = d.Alpha
			grid = st.BetaGrid
			if mm.Method == merge.TIES {
				grid = st.BetaGridTIES
			}
		}
		if rec.Search, err = eval.SearchDirection(d, ev.enc.Weights, eval.Steps{Values: grid}, eval.Addition(names, ftVal), ev.on(ts, false)); err != nil {
			return nil, err
		}
		rec.Chosen = rec.Search.Chosen()
		final = d.Config(rec.Chosen)
		if rec.Test, err = ev.at(d, rec.Chosen, ts, true); err != nil {
			return nil, err
		}
	}
	s, err := tasks.OpenSet(preDir, members)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	res, err := merge.Run(s, &final, ckPath, tasks.WriteOptions{WriteOptions: checkpoint.WriteOptions{Force: true}, DType: checkpoint.F32}, tasks.StreamOptions{})
	if err != nil {
		return nil, err
	}
	rec.Params = res.Params
	if rec.Search == nil { // no coefficient: measured as written
		w, err := ev.enc.ReadWeights(ckPath)
		if err != nil {
			return nil, err
		}
		rec.Test, err = ev.accs(w, ts, true)
		w.Finalize()
		if err != nil {
			return nil, err
		}
	}
	if rec.Search != nil {
		png, err := eval.PlotSearch(rec.Search, fmt.Sprintf("%s: %s on validation (chosen %g)", mm.Name, rec.Coefficient, rec.Chosen), rec.Coefficient)
		if err != nil {
			return nil, err
		}
		if err := checkpoint.WriteFileAtomic(filepath.Join(o.Out, "merged", mm.Name+".search.png"), png); err != nil {
			return nil, err
		}
	}
	js, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := checkpoint.WriteFileAtomic(recPath, js); err != nil {
		return nil, err
	}
	logf("%-26s %s = %-5g test avg %.2f%%", mm.Name, rec.Coefficient, rec.Chosen, 100*mean(rec.Test))
	return rec, nil
}

func mean(m map[string]float64) float64 {
	if len(m) == 0 {
		return 0
	}
	s := 0.0
	for _, v := range m {
		s += v
	}
	return s / float64(len(m))
}

// runNegation subtracts the first task's vector: the λ giving the lowest
// target accuracy while the control keeps ≥ 95% of the pre-trained model's
// (validation), then measured on test.
func runNegation(o options, st settings, ev *evaluator, ts []*task, preDir, ft string, rep *report, logf func(string, ...any)) (*negationRecord, error) {
	target, control := ts[0], ts[1]
	d, err := ev.direction(preDir, []string{ft}, merge.Config{Method: merge.TaskArithmetic}, merge.CoefLambda, true)
	if err != nil {
		return nil, err
	}
	pair := []*task{target, control}
	srch, err := eval.SearchDirection(d, ev.enc.Weights, eval.Steps{Values: st.LambdaGrid}, eval.Negation(target.name, control.name, 0.95*rep.ZeroShotVal[control.name]), ev.on(pair, false))
	if err != nil {
		return nil, err
	}
	lam := srch.Chosen()
	neg, err := ev.at(d, lam, pair, true)
	if err != nil {
		return nil, err
	}
	fw, err := ev.enc.ReadWeights(ft)
	if err != nil {
		return nil, err
	}
	ftT, err := ev.accs(fw, pair, true)
	fw.Finalize()
	if err != nil {
		return nil, err
	}
	rec := &negationRecord{Target: target.name, Control: control.name, Lambda: lam, Search: srch,
		PretrainedTest: map[string]float64{target.name: rep.ZeroShot[target.name], control.name: rep.ZeroShot[control.name]},
		FinetunedTest:  ftT, NegatedTest: neg}
	if p := rep.ZeroShot[control.name]; p > 0 {
		rec.ControlKeptPercent = 100 * neg[control.name] / p
	}
	if err := writePlot(filepath.Join(o.Out, "negation.search.png"), srch, "negation of "+target.name+" (control "+control.name+")", "λ"); err != nil {
		return nil, err
	}
	logf("negation of %s: λ = %g, target %.2f%% → %.2f%%, control %s %.2f%% → %.2f%% (test)", target.name, lam,
		100*rep.ZeroShot[target.name], 100*neg[target.name], control.name, 100*rep.ZeroShot[control.name], 100*neg[control.name])
	return rec, nil
}

// runSingleLines applies LiNeS to one fine-tuned model (β = 1 − α), α
// chosen on validation by 2·target + mean(controls) normalized accuracy.
func runSingleLines(o options, st settings, ev *evaluator, ts []*task, preDir, ft string, ftW models.Weights, rep *report, logf func(string, ...any)) (*singleLinesRecord, error) {
	target := ts[0]
	d, err := ev.direction(preDir, []string{ft}, merge.Config{Method: merge.TaskArithmetic}, merge.CoefLinesAlpha, false)
	if err != nil {
		return nil, err
	}
	var controls []string
	norm := map[string]float64{target.name: rep.FinetunedVal[target.name]}
	for _, t := range ts[1:] {
		controls = append(controls, t.name)
		norm[t.name] = rep.ZeroShotVal[t.name]
	}
	srch, err := eval.SearchDirection(d, ev.enc.Weights, eval.Steps{Values: st.AlphaGrid}, eval.Tradeoff(target.name, controls, norm, 2), ev.on(ts, false))
	if err != nil {
		return nil, err
	}
	a := srch.Chosen()
	lt, err := ev.at(d, a, ts, true)
	if err != nil {
		return nil, err
	}
	ftT, err := ev.accs(ftW, ts, true)
	if err != nil {
		return nil, err
	}
	if err := writePlot(filepath.Join(o.Out, "single-task-lines.search.png"), srch, "single-task LiNeS on "+target.name, "α"); err != nil {
		return nil, err
	}
	logf("single-task LiNeS on %s: α = %g, target %.2f%% (fine-tuned %.2f%%), controls %.2f%% (fine-tuned %.2f%%, pre-trained %.2f%%)",
		target.name, a, 100*lt[target.name], 100*ftT[target.name], 100*meanOf(lt, controls), 100*meanOf(ftT, controls), 100*meanOf(rep.ZeroShot, controls))
	return &singleLinesRecord{Target: target.name, Controls: controls, Alpha: a, Search: srch, PretrainedTest: rep.ZeroShot, FinetunedTest: ftT, LinesTest: lt}, nil
}

// meanCosine is the mean cosine between the head's class rows: near 1 when
// the text tower cannot tell the classes apart.
func meanCosine(h *heads.Head) float64 {
	k, d := len(h.Classes), h.Dim
	s, n := 0.0, 0
	for i := 0; i < k; i++ {
		for j := i + 1; j < k; j++ {
			c, ni, nj := 0.0, 0.0, 0.0
			for x := 0; x < d; x++ {
				a, b := float64(h.Weight[i*d+x]), float64(h.Weight[j*d+x])
				c, ni, nj = c+a*b, ni+a*a, nj+b*b
			}
			s += c / math.Sqrt(ni*nj)
			n++
		}
	}
	return s / math.Max(1, float64(n))
}

func meanOf(m map[string]float64, keys []string) float64 {
	s := 0.0
	for _, k := range keys {
		s += m[k]
	}
	return s / math.Max(1, float64(len(keys)))
}

func writePlot(path string, s *eval.Search, title, x string) error {
	png, err := eval.PlotSearch(s, title, x)
	if err != nil {
		return err
	}
	return checkpoint.WriteFileAtomic(path, png)
}

// writeReport writes table.md (the test table, negation and single-task
// LiNeS) and table.json.
func writeReport(out string, rep *report) error {
	var b strings.Builder
	if len(rep.Skipped) > 0 {
		var ks []string
		for k := range rep.Skipped {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		fmt.Fprintf(&b, "Skipped (data missing): %s.\n\n", strings.Join(ks, ", "))
	}
	b.WriteString("Coefficients chosen on the validation split; accuracies on the test split (normalized by each task's fine-tuned model).\n\n")
	b.WriteString(rep.Table.Markdown())
	if n := rep.Negation; n != nil {
		fmt.Fprintf(&b, "\n## Task negation of %s (control %s), λ = %g\n\n", n.Target, n.Control, n.Lambda)
		b.WriteString("| model | target | control |\n|---|---:|---:|\n")
		fmt.Fprintf(&b, "| pre-trained | %.2f | %.2f |\n", 100*n.PretrainedTest[n.Target], 100*n.PretrainedTest[n.Control])
		fmt.Fprintf(&b, "| fine-tuned on %s | %.2f | %.2f |\n", n.Target, 100*n.FinetunedTest[n.Target], 100*n.FinetunedTest[n.Control])
		fmt.Fprintf(&b, "| θ₀ − λτ | %.2f | %.2f |\n", 100*n.NegatedTest[n.Target], 100*n.NegatedTest[n.Control])
		fmt.Fprintf(&b, "\nControl kept at %.1f%% of the pre-trained model's accuracy (test).\n", n.ControlKeptPercent)
	}
	if l := rep.SingleLines; l != nil {
		fmt.Fprintf(&b, "\n## Single-task LiNeS on %s, α = %g (β = 1 − α)\n\n", l.Target, l.Alpha)
		b.WriteString("| model | target | controls (mean) |\n|---|---:|---:|\n")
		fmt.Fprintf(&b, "| pre-trained | %.2f | %.2f |\n", 100*l.PretrainedTest[l.Target], 100*meanOf(l.PretrainedTest, l.Controls))
		fmt.Fprintf(&b, "| fine-tuned | %.2f | %.2f |\n", 100*l.FinetunedTest[l.Target], 100*meanOf(l.FinetunedTest, l.Controls))
		fmt.Fprintf(&b, "| LiNeS | %.2f | %.2f |\n", 100*l.LinesTest[l.Target], 100*meanOf(l.LinesTest, l.Controls))
	}
	if r := rep.Interference; r != nil {
		b.WriteString("\n## Interference (validation split)\n\nEach task's accuracy along its own task vector, θ₀ + λ·τ:\n\n| task |")
		for _, l := range r.Lambdas {
			fmt.Fprintf(&b, " λ = %g |", l)
		}
		b.WriteString("\n|---|" + strings.Repeat("---:|", len(r.Lambdas)) + "\n")
		for _, t := range rep.Tasks {
			fmt.Fprintf(&b, "| %s |", t)
			for _, a := range r.Own[t] {
				fmt.Fprintf(&b, " %.1f |", 100*a)
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\nChange of each task's accuracy (rows, points) under another task's vector alone, θ₀ + %g·τ (columns):\n\n| task |", r.CrossLambda)
		for _, u := range rep.Tasks {
			fmt.Fprintf(&b, " τ %s |", u)
		}
		b.WriteString("\n|---|" + strings.Repeat("---:|", len(rep.Tasks)) + "\n")
		for _, t := range rep.Tasks {
			fmt.Fprintf(&b, "| %s |", t)
			for _, u := range rep.Tasks {
				if u == t {
					b.WriteString(" |")
					continue
				}
				fmt.Fprintf(&b, " %+.1f |", 100*(r.Cross[t][u]-r.Own[t][0]))
			}
			b.WriteString("\n")
		}
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := checkpoint.WriteFileAtomic(filepath.Join(out, "table.md"), []byte(b.String())); err != nil {
		return err
	}
	return checkpoint.WriteFileAtomic(filepath.Join(out, "table.json"), js)
}

// stampSettings records the run's settings in OUT/settings.json, and
// refuses to reuse the stages of a folder made with other settings (whose
// checkpoints would not be what this run describes) unless --redo.
func stampSettings(o options, st settings) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(o.Out, "settings.json")
	if old, err := os.ReadFile(p); err == nil && !o.Redo && string(old) != string(data) {
		return fmt.Errorf("%s holds the stages of a run with other settings (--quick or not, --settings): rerun with --redo to replace them, or give another --out", o.Out)
	}
	return checkpoint.WriteFileAtomic(p, data)
}

// interference is the diagnostic behind the merges' numbers, on the
// validation split: Own[t][i] is t's accuracy at θ₀ + Lambdas[i]·τ_t (how
// much of the fine-tuning gain a fraction of the task vector keeps), and
// Cross[t][u] its accuracy at θ₀ + CrossLambda·τ_u (what another task's
// vector, at a typical merging coefficient, costs it).
type interference struct {
	Lambdas     []float64                     `json:"lambdas"`
	Own         map[string][]float64          `json:"own"`
	CrossLambda float64                       `json:"cross_lambda"`
	Cross       map[string]map[string]float64 `json:"cross"`
}

func measureInterference(ev *evaluator, ts []*task, preDir string, ftPath func(*task) string, logf func(string, ...any)) (*interference, error) {
	r := &interference{Lambdas: []float64{0, 0.1, 0.2, 0.3, 0.5, 0.75, 1}, CrossLambda: 0.3,
		Own: map[string][]float64{}, Cross: map[string]map[string]float64{}}
	vectors := map[string]*merge.Direction{}
	for _, t := range ts {
		d, err := ev.direction(preDir, []string{ftPath(t)}, merge.Config{Method: merge.TaskArithmetic}, merge.CoefLambda, false)
		if err != nil {
			return nil, err
		}
		vectors[t.name] = d
	}
	at := func(u *task, lam float64, on []*task) (map[string]float64, error) {
		return ev.at(vectors[u.name], lam, on, false)
	}
	for _, t := range ts {
		for _, lam := range r.Lambdas {
			a, err := at(t, lam, []*task{t})
			if err != nil {
				return nil, err
			}
			r.Own[t.name] = append(r.Own[t.name], a[t.name])
		}
		r.Cross[t.name] = map[string]float64{}
	}
	for _, u := range ts {
		var others []*task
		for _, t := range ts {
			if t != u {
				others = append(others, t)
			}
		}
		a, err := at(u, r.CrossLambda, others)
		if err != nil {
			return nil, err
		}
		for name, v := range a {
			r.Cross[name][u.name] = v
		}
	}
	for _, t := range ts {
		var cross []string
		for _, u := range ts {
			if u != t {
				cross = append(cross, fmt.Sprintf("%s %+.1f", u.name, 100*(r.Cross[t.name][u.name]-r.Own[t.name][0])))
			}
		}
		own := r.Own[t.name]
		at := own[slices.Index(r.Lambdas, r.CrossLambda)]
		logf("%s along its task vector (validation): %.1f%% at λ=0, %.1f%% at %g, %.1f%% at 1; another task's vector at %g: %s",
			t.name, 100*own[0], 100*at, r.CrossLambda, 100*own[len(own)-1], r.CrossLambda, strings.Join(cross, ", "))
	}
	return r, nil
}
