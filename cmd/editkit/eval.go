package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/linearize"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/unlearn"
)

// evalFlags are the eval command's flags.
type evalFlags struct {
	model        string
	heads        []string
	datasets     []string
	split, data  string
	limit, batch int
	md           string
	force        bool
	finetunedAcc string
	finetuned    []string
	trigger      string
	target       int
	lin          linearizeFlags
}

func (a *app) evalCmd() *cobra.Command {
	f := &evalFlags{}
	c := &cobra.Command{
		Use:   "eval --model DIR --dataset NAME --head HEAD.safetensors [--dataset NAME2 --head HEAD2 ...]",
		Short: "Top-1 accuracy of an image encoder with a classification head, per task",
		Long: `eval measures the top-1 accuracy of a model on one or more image
classification tasks: the model's image encoder (a Hugging Face ViT, or the
image tower of a CLIP checkpoint in either naming) computes features, the
task's head (a .safetensors file from editkit head: a zero-shot CLIP head or
a linear probe) turns them into class scores. Images are preprocessed as the
model expects: CLIP's preprocess (bicubic, center crop, CLIP mean/std) for
CLIP checkpoints, Hugging Face ViT's (bilinear stretch, mean/std 0.5) for ViT,
at the model's image size. Features are CLIP's projected image embeddings, or
ViT's pooled CLS output.

Give --dataset and --head once per task, in matching order. Datasets are
found by name as editkit's datasets package finds them (mnist from the Go
module cache, other names as folders under --data, $EDITKIT_DATA or
../shared/data/vision). --split val is the validation set: ` + validationHelp + `
--limit evaluates only the first N examples of the split.

Normalized accuracy (accuracy / the task's fine-tuned accuracy) is shown when
the fine-tuned accuracies are known: --finetuned-acc task=acc,... (fractions),
or --finetuned CHECKPOINT once per task, which evaluates that fine-tuned
model with the same head on the same examples.

--linearize-at BASE evaluates the model linearized around BASE,
f(x; BASE) + J·(θ − BASE) (post-hoc linearization of a fine-tune or a merge);
a checkpoint fine-tuned with 'editkit finetune --linearized' is evaluated
linearized around the base its metadata records by default, and
--linearize-at must then name a base with the same weights. The --finetuned
checkpoints are evaluated the same way as the model (a mix of linearized
fine-tunes and plain checkpoints needs --linearize-at or --no-linearize).

--trigger SPEC --target C adds each task's attack success rate (ASR): the
share of its examples whose class is not C that the model classifies as C
once the trigger is applied to the raw image (see 'editkit backdoor apply
--help' for trigger specs), beside the clean accuracy (CA).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runEval(cmd, f) },
	}
	fs := c.Flags()
	fs.StringVar(&f.model, "model", "", "model checkpoint (folder or .safetensors): Hugging Face ViT or CLIP")
	fs.StringArrayVar(&f.heads, "head", nil, "classification head of a task (.safetensors), once per --dataset, in the same order")
	fs.StringArrayVar(&f.datasets, "dataset", nil, "dataset name or folder, once per task")
	fs.StringVar(&f.split, "split", "test", "split to evaluate: test, val (validation), train or trainval")
	fs.StringVar(&f.data, "data", "", "folder holding one folder per named dataset (default $EDITKIT_DATA, else ../shared/data/vision)")
	fs.IntVar(&f.limit, "limit", 0, "evaluate only the first N examples of each split (0: all)")
	fs.IntVar(&f.batch, "batch", 64, "images per forward pass")
	fs.StringVar(&f.md, "md", "", "also write the table as markdown to this file")
	fs.StringVar(&f.finetunedAcc, "finetuned-acc", "", "fine-tuned accuracies for normalization: task=acc,... (fractions, e.g. mnist=0.996)")
	fs.StringArrayVar(&f.finetuned, "finetuned", nil, "fine-tuned checkpoint of a task, once per --dataset, evaluated for normalization")
	fs.StringVar(&f.trigger, "trigger", "", "backdoor trigger spec (badnets, blended, wanet, inverted:FILE): also measure the attack success rate")
	fs.IntVar(&f.target, "target", -1, "the attack's target class (index into each head's classes), with --trigger")
	fs.BoolVar(&f.force, "force", false, "replace the --md file if it exists")
	markPaths(fs, pathInput, "model", "head", "finetuned")
	markPaths(fs, pathDataset, "dataset")
	markPaths(fs, pathRoot, "data")
	markPaths(fs, pathOutput, "md")
	a.derive(c, triggerInputs("trigger"))
	f.lin.register(fs)
	return c
}

// validationHelp says how every command's validation split is held out.
const validationHelp = `10% of the training set,
at most 5000 examples, chosen with seed 0, as the task-vectors code holds it
out; where the dataset ships a group file (GTSRB's train-tracks-idx1-int.gz,
the frames of one physical sign) whole groups are held out, so near-duplicate
frames never sit on both sides of the split (train is the rest).`

// evalTask is one task of an evaluation: its split, its head and its name.
type evalTask struct {
	name string
	ds   *datasets.Dataset
	head *heads.Head
}

// evalReport is eval's --json output.
type evalReport struct {
	Model     string                 `json:"model"`
	Kind      string                 `json:"kind"`
	Split     string                 `json:"split"`
	Results   []eval.Result          `json:"results"`
	Finetuned map[string]eval.Result `json:"finetuned_results,omitempty"`
	// Trigger, Target and Attack are the attack success rates, with --trigger.
	Trigger string        `json:"trigger,omitempty"`
	Target  *int          `json:"target,omitempty"`
	Attack  []eval.Result `json:"attack,omitempty"`
	Table   *eval.Table   `json:"table"`
	Seconds float64       `json:"seconds"`
	// LinearizedAt is the base the model was evaluated linearized around.
	LinearizedAt string `json:"linearized_at,omitempty"`
}

func (a *app) runEval(cmd *cobra.Command, f *evalFlags) error {
	start := time.Now()
	if f.model == "" {
		return errors.New("no --model given: pass the checkpoint to evaluate")
	}
	if f.batch <= 0 {
		return fmt.Errorf("--batch %d: give a positive number of images", f.batch)
	}
	if f.limit < 0 {
		return fmt.Errorf("--limit %d must be ≥ 0", f.limit)
	}
	split, err := datasets.ParseSplit(f.split)
	if err != nil {
		return fmt.Errorf("--split: %w", err)
	}
	if len(f.finetuned) > 0 && f.finetunedAcc != "" {
		return errors.New("--finetuned and --finetuned-acc both give the fine-tuned accuracies: use one")
	}
	var trig unlearn.Trigger
	switch {
	case f.trigger != "" && f.target < 0:
		return errors.New("--trigger needs --target C, the class the attack sends triggered images to")
	case f.trigger == "" && f.target >= 0:
		return errors.New("--target is the attack's target class: give the attack's --trigger too")
	case f.trigger != "":
		if trig, err = unlearn.ParseTrigger(f.trigger); err != nil {
			return fmt.Errorf("--trigger: %w", err)
		}
	}
	if len(f.finetuned) > 0 && len(f.finetuned) != len(f.datasets) {
		return fmt.Errorf("%d --finetuned checkpoints for %d --dataset: give one per dataset, in the same order", len(f.finetuned), len(f.datasets))
	}
	if err := sameMode(f.model, f.finetuned, f.lin); err != nil {
		return err
	}
	enc, err := encoder.Load(f.model)
	if err != nil {
		return err
	}
	defer enc.Close()
	lin, err := a.linearized("eval", enc, f.lin)
	if err != nil {
		return err
	}
	if lin != nil {
		defer lin.Close()
	}
	ts, err := loadEvalTasks(f.datasets, f.heads, split, f.data, f.limit, enc)
	if err != nil {
		return err
	}
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.name
	}
	ftAcc, err := parseTaskFloats("finetuned-acc", f.finetunedAcc, names)
	if err != nil {
		return err
	}
	total := 0
	for _, t := range ts {
		total += t.ds.Len()
	}
	if len(f.finetuned) > 0 {
		total *= 2
	}
	if trig != nil {
		for _, t := range ts {
			if f.target >= len(t.head.Classes) {
				return fmt.Errorf("--target %d is outside the %d classes of task %s (0 to %d)", f.target, len(t.head.Classes), t.name, len(t.head.Classes)-1)
			}
			total += t.ds.Len()
		}
	}
	p := a.newCountProgress("evaluating", total)
	defer p.finish()
	rep := &evalReport{Model: f.model, Kind: string(enc.Family), Split: f.split}
	if lin != nil {
		rep.LinearizedAt = lin.Base.Path
	}
	hits := map[string][]bool{}
	for _, t := range ts {
		r, err := evalAccuracyLin(enc, lin, enc.Weights, t, f.batch, p)
		if err != nil {
			return err
		}
		r.Task = t.name
		rep.Results = append(rep.Results, r)
		hits[t.name] = r.Hits
		if trig != nil {
			// The attack is measured as the clean accuracy is: plainly, or
			// linearized.
			clf, err := enc.Classifier(nil, t.head)
			if lin != nil {
				clf, err = lin.Classifier(enc.Weights, t.head)
			}
			if err != nil {
				return err
			}
			ar, err := unlearn.AttackSuccess(clf, t.ds, enc.Preprocess, trig, f.target, eval.Options{BatchSize: f.batch, Progress: p.perCall()})
			if err != nil {
				return fmt.Errorf("task %s: %w", t.name, err)
			}
			ar.Task = t.name
			rep.Attack = append(rep.Attack, ar)
		}
	}
	if trig != nil {
		rep.Trigger, rep.Target = trig.String(), &f.target
	}
	ftHits := map[string][]bool{}
	if len(f.finetuned) > 0 {
		rep.Finetuned = map[string]eval.Result{}
		ftAcc = map[string]float64{}
		for i, path := range f.finetuned {
			w, err := enc.ReadWeights(path)
			if err != nil {
				return fmt.Errorf("--finetuned %s: %w", path, err)
			}
			r, err := evalAccuracyLin(enc, lin, w, ts[i], f.batch, p)
			w.Finalize()
			if err != nil {
				return fmt.Errorf("--finetuned %s: %w", path, err)
			}
			r.Task = ts[i].name
			rep.Finetuned[ts[i].name] = r
			ftAcc[ts[i].name] = r.Accuracy
			ftHits[ts[i].name] = r.Hits
		}
	}
	p.finish()
	// The model's row, the fine-tuned models' (one per task) when given,
	// and 95% intervals: of each accuracy, and of the paired difference.
	rep.Table = &eval.Table{Title: "editkit eval " + displayName(f.model), Split: string(split), Tasks: names, Finetuned: ftAcc}
	if err := rep.Table.AddRuns(displayName(f.model), []map[string][]bool{hits}, nil); err != nil {
		return err
	}
	if len(ftHits) > 0 {
		if err := rep.Table.AddRuns(finetunedRow, []map[string][]bool{ftHits}, nil); err != nil {
			return err
		}
	}
	if err := rep.Table.Intervals([]string{finetunedRow}, eval.BootstrapOptions{}); err != nil {
		return err
	}
	md := rep.Table.Markdown() + rep.Table.MarkdownIntervals() + rep.attackMarkdown()
	rep.Seconds = time.Since(start).Seconds()
	if f.md != "" {
		if err := a.writeFile(f.md, []byte(md)); err != nil {
			return err
		}
	}
	if a.json {
		return a.printJSON(rep)
	}
	fmt.Fprint(a.stdout, md)
	if !a.quiet {
		n := 0
		for _, r := range rep.Results {
			n += r.Total
		}
		how := ""
		if lin != nil {
			how = ", linearized around " + lin.Base.Path
		}
		fmt.Fprintf(a.stderr, "editkit: eval: %d images on %d task(s) in %.1fs (%s encoder%s)\n", n, len(ts), rep.Seconds, enc.Family, how)
	}
	return nil
}

// attackMarkdown is the table of clean accuracy and attack success rate
// per task, with --trigger ("" otherwise).
func (r *evalReport) attackMarkdown() string {
	if len(r.Attack) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nBackdoor %s, target class %d: clean accuracy (CA) and attack success rate (ASR, share of the non-target examples sent to the target once triggered), %%.\n\n", r.Trigger, *r.Target)
	b.WriteString("| task | CA | ASR | triggered examples |\n|---|---:|---:|---:|\n")
	for i, a := range r.Attack {
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %d |\n", a.Task, 100*r.Results[i].Accuracy, 100*a.Accuracy, a.Total)
	}
	return b.String()
}

// finetunedRow names eval's row of the --finetuned models.
const finetunedRow = "fine-tuned (--finetuned)"

// displayName is a checkpoint path's last element, without .safetensors.
func displayName(path string) string {
	return strings.TrimSuffix(filepath.Base(filepath.Clean(path)), ".safetensors")
}

// loadEvalTasks opens each dataset's split and its head, checking that the
// head fits the encoder and the dataset.
func loadEvalTasks(names, headPaths []string, split datasets.Split, dataDir string, limit int, enc *encoder.Encoder) ([]evalTask, error) {
	if len(names) == 0 {
		return nil, errors.New("no --dataset given: name at least one dataset (with its --head)")
	}
	if len(headPaths) != len(names) {
		return nil, fmt.Errorf("%d --head for %d --dataset: give one head per dataset, in the same order", len(headPaths), len(names))
	}
	var out []evalTask
	for i, name := range names {
		src, err := datasets.Open(name, datasets.Options{DataDir: dataDir})
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(out, func(t evalTask) bool { return t.name == src.Name }) {
			return nil, fmt.Errorf("dataset %s is given twice", src.Name)
		}
		ds, err := src.Split(split)
		if err != nil {
			return nil, err
		}
		ds = ds.Head(limit)
		h, err := heads.Load(headPaths[i])
		if err != nil {
			return nil, err
		}
		if h.Dim != enc.Dim {
			return nil, fmt.Errorf("head %s takes %d-dimensional features, the %s encoder of %s gives %d: was the head built for another model?", headPaths[i], h.Dim, enc.Family, enc.Path, enc.Dim)
		}
		if len(h.Classes) != ds.NumClasses() {
			return nil, fmt.Errorf("head %s has %d classes, dataset %s has %d: is it the head of another task?", headPaths[i], len(h.Classes), src.Name, ds.NumClasses())
		}
		out = append(out, evalTask{name: src.Name, ds: ds, head: h})
	}
	return out, nil
}

// parseTaskFloats parses "task=value,task=value" for the given tasks;
// values are accuracies, fractions in (0, 1].
func parseTaskFloats(flag, s string, known []string) (map[string]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]float64{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("--%s: %q is not task=accuracy", flag, part)
		}
		x, err := parseAccuracy(v)
		if err != nil {
			return nil, fmt.Errorf("--%s %s: %w", flag, k, err)
		}
		if !slices.Contains(known, k) {
			return nil, fmt.Errorf("--%s: no task %q among %s", flag, k, strings.Join(known, ", "))
		}
		out[k] = x
	}
	return out, nil
}

// parseAccuracy parses an accuracy given as a fraction.
func parseAccuracy(s string) (float64, error) {
	x, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	switch {
	case err != nil || math.IsNaN(x):
		return 0, fmt.Errorf("%q is not a number", s)
	case x > 1 && x <= 100:
		return 0, fmt.Errorf("%v looks like a percentage: give the accuracy as a fraction (%.4g)", x, x/100)
	case !(x > 0 && x <= 1):
		return 0, fmt.Errorf("accuracy %v is outside (0, 1]", x)
	}
	return x, nil
}

// evalAccuracy evaluates the encoder with weights w on a task, reporting
// progress to p.
func evalAccuracy(enc *encoder.Encoder, w models.Weights, t evalTask, batch int, p *countProgress) (eval.Result, error) {
	clf, err := enc.Classifier(w, t.head)
	if err != nil {
		return eval.Result{}, err
	}
	return eval.Accuracy(clf, t.ds, enc.Preprocess, eval.Options{BatchSize: batch, Progress: p.perCall()})
}

// countProgress shows the progress of work counted in images on stderr,
// with the time left: a bar on a terminal, elsewhere a line at most every
// logEvery. nil (with --quiet) shows nothing.
type countProgress struct {
	w            io.Writer
	desc         string
	bar          *progressbar.ProgressBar
	tty          bool
	total, done  int
	start, shown time.Time
}

func (a *app) newCountProgress(desc string, total int) *countProgress {
	if a.quiet {
		return nil
	}
	p := &countProgress{w: a.stderr, desc: desc, total: total, start: time.Now(), shown: time.Now()}
	if f, ok := a.stderr.(*os.File); ok {
		p.tty = term.IsTerminal(int(f.Fd()))
	}
	return p
}

// perCall returns an eval.Options.Progress function for one evaluation
// (whose done count starts at 0).
func (p *countProgress) perCall() func(done, total int) {
	if p == nil {
		return nil
	}
	last := 0
	return func(done, _ int) {
		p.add(done - last)
		last = done
	}
}

func (p *countProgress) add(n int) {
	if p == nil {
		return
	}
	p.done += n
	if p.tty {
		if p.bar == nil {
			p.bar = progressbar.NewOptions(p.total,
				progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription(p.desc),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("img"),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionClearOnFinish(),
			)
		}
		p.bar.Set(p.done)
		return
	}
	if time.Since(p.shown) >= logEvery && p.done < p.total {
		p.shown = time.Now()
		el := time.Since(p.start)
		left := time.Duration(float64(el) / float64(p.done) * float64(p.total-p.done))
		fmt.Fprintf(p.w, "editkit: %s: %d/%d images (%d%%), %s elapsed, about %s left\n",
			p.desc, p.done, p.total, 100*p.done/max(p.total, 1), el.Round(time.Second), left.Round(time.Second))
	}
}

func (p *countProgress) finish() {
	if p != nil && p.bar != nil {
		p.bar.Finish()
		p.bar = nil
	}
}

// sameMode refuses to normalize by fine-tuned models evaluated in another
// mode than the model: each --finetuned checkpoint is evaluated as the model
// is, so a linearized fine-tune beside a plain model (or the reverse) would
// be read through the wrong function unless --linearize-at or
// --no-linearize says how to evaluate them all.
func sameMode(model string, finetuned []string, l linearizeFlags) error {
	if len(finetuned) == 0 || l.at != "" || l.plain {
		return nil
	}
	paths := append([]string{model}, finetuned...)
	lin, _, err := linearize.Linearized(paths)
	if err != nil {
		return err
	}
	if len(lin) == 0 || len(lin) == len(paths) {
		return nil
	}
	var plain string
	for _, p := range paths {
		if !slices.Contains(lin, p) {
			plain = p
			break
		}
	}
	return fmt.Errorf("%s is a linearized fine-tune but %s is not, and --finetuned checkpoints are evaluated as the model is: give --linearize-at BASE to evaluate them all linearized around BASE, or --no-linearize to evaluate them all as plain models", lin[0], plain)
}
