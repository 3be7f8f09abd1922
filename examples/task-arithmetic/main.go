// Command task-arithmetic is editkit's end-to-end task-arithmetic
// experiment on four real image datasets (MNIST, Fashion-MNIST, CIFAR-10,
// GTSRB), built so that the tasks are new to the pre-trained model, as in
// the papers: it pre-trains a small CLIP-style model from scratch on half of
// each dataset's classes (images and captions of those classes only), makes
// each task the other half (zero-shot heads from the class names, which
// pre-training never saw), fine-tunes the image encoder once per task and
// seed (head frozen), merges the fine-tuned models with every task-vector
// method of editkit (with and without LiNeS), choosing every coefficient
// and the best method on the validation splits only, runs task negation and
// single-task LiNeS against uniform scaling, measures the task vectors
// (norms, cosines, interference) at two fine-tuning learning rates, and
// reports the test accuracies with paired 95% bootstrap intervals.
//
//	go run ./examples/task-arithmetic [--quick] [--out DIR] [--data DIR] [--redo] [--settings JSON]
package main

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/examples/internal/pretraining"
	"github.com/editkit/editkit/models/encoder"
)

// allTasks are the experiment's datasets, in the table's order.
var allTasks = []string{"mnist", "fashion-mnist", "cifar10", "gtsrb"}

// settings are the sizes of a run.
type settings struct {
	// The model and its pre-training (shared with examples/backdoor-removal).
	pretraining.Settings
	// FtN is the number of fine-tuning examples per task.
	FtN, FtSteps, FtBatch int
	// FtLR is the fine-tuning peak learning rate; FtLRAlt, when > 0, a
	// second one tried with the first seed (the papers' ratio to the
	// pre-training rate, ~1/50), kept instead when the validation data
	// prefer it.
	FtLR, FtLRAlt float64
	// Seeds is the number of fine-tuning seeds (DARE's drops use the same).
	Seeds                                         int
	ValLimit, TestLimit                           int
	LambdaGrid, BetaGrid, BetaGridTIES, AlphaGrid []float64
	// Replicates is the number of bootstrap resamples of the intervals.
	Replicates int
	// TangentSeeds is the number of fine-tuning seeds (the first ones) of
	// the tangent-space comparison, which fine-tunes every task again
	// linearized; 0 leaves the comparison out.
	TangentSeeds int
	// NegTargets is the number of datasets whose pre-training classes the
	// comparison negates (each with the next dataset's as control).
	NegTargets int
	// XiGrid is the grid of both coefficients of the ξ heat maps, XiN the
	// validation images of each of the two tasks they compare.
	XiGrid []float64
	XiN    int
	// NtkN is the number of validation images of each of the two tasks in
	// the NTK's pooled sample, NtkTop the eigenvectors reported.
	NtkN, NtkTop int
}

func quickSettings() settings {
	return settings{Settings: pretraining.Settings{ImageSize: 16, Patch: 4, Width: 32, Layers: 2, Heads: 2, MLP: 64, Embed: 32, TextWidth: 32, Context: 96,
		PreN: 2000, PreSteps: 1200, PreBatch: 32, PreLR: 3e-3, PreTemplates: 4, LogitScale: 50},
		FtN: 3000, FtSteps: 300, FtBatch: 32, FtLR: 1e-3, Seeds: 1,
		ValLimit: 200, TestLimit: 500,
		LambdaGrid: eval.Grid(0, 1, 0.1), BetaGrid: eval.Grid(0.1, 1, 0.3), BetaGridTIES: eval.Grid(0.1, 1.5, 0.35), AlphaGrid: eval.Grid(0, 1, 0.25),
		Replicates:   1000,
		TangentSeeds: 1, NegTargets: 1, XiGrid: eval.Grid(-3, 3, 1), XiN: 64, NtkN: 16, NtkTop: 10}
}

func fullSettings() settings {
	return settings{Settings: pretraining.Settings{ImageSize: 16, Patch: 4, Width: 64, Layers: 3, Heads: 4, MLP: 256, Embed: 64, TextWidth: 64, Context: 96,
		PreN: 4000, PreSteps: 2000, PreBatch: 32, PreLR: 3e-3, PreTemplates: 8, LogitScale: 50},
		FtN: 6000, FtSteps: 400, FtBatch: 32, FtLR: 1e-3, FtLRAlt: 6e-5, Seeds: 3,
		ValLimit: 300, TestLimit: 1500,
		LambdaGrid: eval.LambdaGrid(), BetaGrid: eval.LinesBetaGrid(), BetaGridTIES: eval.LinesBetaGridTIES(), AlphaGrid: eval.LinesAlphaGrid(),
		Replicates:   eval.DefaultReplicates,
		TangentSeeds: 1, NegTargets: 4, XiGrid: eval.Grid(-3, 3, 0.5), XiN: 150, NtkN: 40, NtkTop: 20}
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

// report is the run's result, written as table.json.
type report struct {
	Quick    bool              `json:"quick"`
	Settings settings          `json:"settings"`
	Tasks    []string          `json:"tasks"`
	Skipped  map[string]string `json:"skipped,omitempty"`
	// Classes names each task's classes and its pre-training classes.
	Classes      map[string][2][]string `json:"classes"`
	PretrainLoss float64                `json:"pretrain_loss"`
	// Accuracies of the task classes (validation, test) and, with the
	// suffix -pre, of the pre-training classes.
	ZeroShotVal map[string]float64 `json:"zeroshot_val"`
	ZeroShot    map[string]float64 `json:"zeroshot_test"`
	// FinetunedVal and Finetuned average over seeds.
	FinetunedVal map[string]float64 `json:"finetuned_val"`
	Finetuned    map[string]float64 `json:"finetuned_test"`
	// ZeroShotShare is the mean over tasks of zero-shot / fine-tuned test
	// accuracy (the papers' ViT-B/32: ~53%).
	ZeroShotShare float64 `json:"zeroshot_share"`
	// LR is the choice of the fine-tuning learning rate.
	LR     *lrChoice       `json:"lr"`
	Merges []*mergeSummary `json:"merges"`
	// Best is the merge with the best mean normalized validation accuracy.
	Best string `json:"best"`
	// LinesEffect is each method's paired difference with LiNeS minus
	// without, on the average test accuracy (95% interval).
	LinesEffect map[string]eval.Interval `json:"lines_effect"`
	Negation    *negationRecord          `json:"negation,omitempty"`
	SingleLines *singleLinesRecord       `json:"single_task_lines,omitempty"`
	// Vectors and Interference describe the first seed's task vectors at
	// each learning rate tried.
	Vectors      map[string]*vectorStats  `json:"vectors"`
	Interference map[string]*interference `json:"interference"`
	// Tangent is the tangent-space comparison: non-linear FT, linearized
	// FT and post-hoc linearization.
	Tangent *tangentRecord     `json:"tangent,omitempty"`
	Table   *eval.Table        `json:"table"`
	Seconds map[string]float64 `json:"seconds"`
	// LoadAverage is /proc/loadavg at the start and at the end of the run.
	LoadAverage [2]string `json:"load_average,omitempty"`
}

func main() {
	// An interrupted run removes the checkpoint or table it was writing;
	// the finished stages stay, for a rerun to reuse.
	sig := checkpoint.ExitOnSignal(os.Stderr, "task-arithmetic")
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
		sig.Exit(1)
	}
	fmt.Print(r.Table.Markdown())
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// loadAverage is the first three fields of /proc/loadavg, or "".
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	return strings.Join(f[:min(3, len(f))], " ")
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
	if st.Seeds < 1 {
		return nil, fmt.Errorf("settings: Seeds %d: at least one fine-tuning seed", st.Seeds)
	}
	rep := &report{Quick: o.Quick, Settings: st, Skipped: map[string]string{}, Seconds: map[string]float64{}, Classes: map[string][2][]string{},
		ZeroShotVal: map[string]float64{}, ZeroShot: map[string]float64{}, FinetunedVal: map[string]float64{}, Finetuned: map[string]float64{},
		Vectors: map[string]*vectorStats{}, Interference: map[string]*interference{}}
	rep.LoadAverage[0] = loadAverage()
	stage := time.Now()
	lap := func(name string) { rep.Seconds[name] = time.Since(stage).Seconds(); stage = time.Now() }

	// The data: each dataset's pre-training and task halves.
	dopt := datasets.Options{DataDir: o.Data}
	var ts []*task
	for _, name := range allTasks {
		t, err := loadTask(name, st, dopt)
		if err != nil {
			logf("skipping %s: %v", name, err)
			rep.Skipped[name] = err.Error()
			continue
		}
		ts = append(ts, t)
		rep.Tasks = append(rep.Tasks, name)
		rep.Classes[name] = [2][]string{t.ft.Classes(), t.pre.Classes()}
	}
	if len(ts) < 2 {
		return nil, fmt.Errorf("need at least two datasets, found %v (skipped, see above: %v)", rep.Tasks, slices.Sorted(maps.Keys(rep.Skipped)))
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	logf("tasks: %s; load average %s", strings.Join(rep.Tasks, ", "), rep.LoadAverage[0])
	lap("data")

	// 1. Pre-training on the pre-training halves; 2. zero-shot heads.
	x, err := pretrain(o, &st, ts, rep, logf)
	if err != nil {
		return nil, err
	}
	rep.Settings = st
	lap("pretrain")
	if err := buildHeads(o, x, ts); err != nil {
		return nil, err
	}
	lap("heads")
	enc, err := encoder.Load(x.preDir)
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	for _, t := range ts {
		if err := t.cache(enc.Preprocess); err != nil {
			return nil, err
		}
	}
	ev := &evaluator{enc: enc}
	x.ev = ev
	all := append(taskProbes(ts), knownProbes(ts)...)
	for test, m := range map[bool]map[string]float64{false: rep.ZeroShotVal, true: rep.ZeroShot} {
		acc, hits, err := ev.measure(enc.Weights, all, test)
		if err != nil {
			return nil, err
		}
		maps.Copy(m, acc)
		if test {
			x.zeroShotTest = hits
		}
	}
	for _, t := range ts {
		logf("%s zero-shot: %.1f%% on its task classes (chance %.1f%%), %.1f%% on its pre-training classes (test)", t.name,
			100*rep.ZeroShot[t.name], 100/float64(len(t.classes)), 100*rep.ZeroShot[t.name+"-pre"])
	}
	lap("zeroshot")

	// 3. Fine-tuning, head frozen: the learning rate chosen on validation
	// with the first seed, then the other seeds.
	if err := chooseLR(o, st, x, ts, rep, logf); err != nil {
		return nil, err
	}
	lap("lr_choice")
	for s := 2; s <= st.Seeds; s++ {
		if err := x.finetuneAll(o, st, ts, rep.LR.Chosen, s, false, logf); err != nil {
			return nil, err
		}
	}
	lap("finetune")
	if err := x.measureFinetuned(st, ts, rep); err != nil {
		return nil, err
	}
	for _, t := range ts {
		logf("%s: zero-shot %.2f%%, fine-tuned %.2f%% (test, mean of %d seeds)", t.name, 100*rep.ZeroShot[t.name], 100*rep.Finetuned[t.name], st.Seeds)
	}
	lap("eval_finetuned")

	// 4. Merging, every method with every seed's fine-tuned models.
	if rep.Merges, err = mergeAll(o, st, x, ts, rep, logf); err != nil {
		return nil, err
	}
	rep.Best = bestOnValidation(rep.Merges)
	lap("merge")

	// 5. Negation and single-task LiNeS (first seed).
	if rep.Negation, err = runNegation(o, st, x, ts, rep, logf); err != nil {
		return nil, fmt.Errorf("negation: %w", err)
	}
	if rep.SingleLines, err = runSingleLines(st, x, ts, rep, logf); err != nil {
		return nil, fmt.Errorf("single-task LiNeS: %w", err)
	}
	lap("negation_lines")

	// 6. The task vectors at each learning rate: norms, cosines,
	// interference.
	for _, lr := range rep.LR.Tried {
		label := lrLabel(lr)
		vs, err := taskVectors(x, ts, x.members(ts, lr, 1, false))
		if err != nil {
			return nil, err
		}
		rep.Vectors[label] = measureVectors(x, ts, vs)
		if rep.Interference[label], err = measureInterference(x, ts, vs, label, logf); err != nil {
			return nil, fmt.Errorf("interference: %w", err)
		}
	}
	lap("vectors")

	// 7. Tangent-space task arithmetic: linearized fine-tuning and post-hoc
	// linearization against non-linear fine-tuning.
	if rep.Tangent, err = runTangent(o, st, x, ts, rep, logf); err != nil {
		return nil, fmt.Errorf("tangent space: %w", err)
	}
	lap("tangent")

	// The table, on the test split, with intervals.
	if rep.Table, err = mergeTable(o, st, x, ts, rep); err != nil {
		return nil, err
	}
	if rep.LinesEffect, err = linesEffect(st, rep.Table); err != nil {
		return nil, err
	}
	rep.LoadAverage[1] = loadAverage()
	rep.Seconds["total"] = time.Since(start).Seconds()
	if err := writeReport(o.Out, rep); err != nil {
		return nil, err
	}
	logf("wrote %s (load average %s)", filepath.Join(o.Out, "table.md"), rep.LoadAverage[1])
	return rep, pretraining.Finish(o.Out)
}

func knownProbes(ts []*task) []probe {
	out := make([]probe, len(ts))
	for i, t := range ts {
		out[i] = probe{t: t, known: true}
	}
	return out
}

func mean(m map[string]float64) float64 {
	if len(m) == 0 {
		return 0
	}
	s := 0.0
	for _, k := range slices.Sorted(maps.Keys(m)) { // in a fixed order: the same bits every run
		s += m[k]
	}
	return s / float64(len(m))
}

func meanOf(m map[string]float64, keys []string) float64 {
	s := 0.0
	for _, k := range keys {
		s += m[k]
	}
	return s / math.Max(1, float64(len(keys)))
}
