package main

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/linearize"
	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/tasks"
)

// searchFlags are merge's flags for choosing the merge coefficient on
// validation data (merge --search).
type searchFlags struct {
	entries      []string
	grid         string
	negate       bool
	lines        bool
	tall         bool
	finetunedAcc string
	data         string
	limit, batch int
	lin          linearizeFlags
}

// searchOnly lists the flags that mean nothing without --search.
var searchOnly = []string{"search", "grid", "negate", "search-lines", "search-tall", "finetuned-acc", "data", "limit", "batch", "linearize-at", "no-linearize"}

// register adds the --search flags to merge's flag set.
func (sf *searchFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&sf.entries, "search", nil, "choose the coefficient on validation data (the split of editkit eval --split val: held out by track where the dataset has a group file): dataset=HEAD.safetensors[:finetuned_acc], once per task (the i-th is the task of the i-th --models)")
	fs.StringVar(&sf.grid, "grid", "", "search grid from:to:step (default: λ 0:1:0.05; LiNeS β 0.1:1:0.1, 0.1:1.5:0.1 for ties; single-task LiNeS α 0:1:0.1)")
	fs.BoolVar(&sf.negate, "negate", false, "search: task negation θ₀ − λτ of one model; the first --search task is the target, the second the control (kept ≥ 95% of the pre-trained model's accuracy)")
	fs.BoolVar(&sf.tall, "search-tall", false, "search, consensus: first choose each task's TALL-mask λ_t on its validation data over {0.2, ..., 0.6}, as tall_masks does (instead of --tall-lambda)")
	fs.BoolVar(&sf.lines, "search-lines", false, "search: choose LiNeS's β (several models, α the multi-task default unless --lines-alpha) or α (one model, β = 1 − α) instead of λ")
	fs.StringVar(&sf.finetunedAcc, "finetuned-acc", "", "search: fine-tuned validation accuracies task=acc,... (default: evaluate each --models checkpoint)")
	fs.StringVar(&sf.data, "data", "", "search: folder holding one folder per named dataset (default $EDITKIT_DATA, else ../shared/data/vision)")
	fs.IntVar(&sf.limit, "limit", 0, "search: use only the first N validation examples of each task (0: all)")
	fs.IntVar(&sf.batch, "batch", 64, "search: images per forward pass")
	sf.lin.register(fs)
}

// requested reports whether any search flag was given.
func (sf *searchFlags) requested(cmd *cobra.Command) bool {
	for _, name := range searchOnly {
		if cmd.Flags().Changed(name) {
			return true
		}
	}
	return false
}

// searchEntry is one task of a search.
type searchEntry struct {
	dataset, head string
	acc           float64 // fine-tuned accuracy given inline, 0 when not
}

func parseSearchEntry(s string) (searchEntry, error) {
	ds, rest, ok := strings.Cut(s, "=")
	if !ok || ds == "" || rest == "" {
		return searchEntry{}, fmt.Errorf("--search %q: want dataset=HEAD.safetensors[:finetuned_acc]", s)
	}
	e := searchEntry{dataset: ds, head: rest}
	if i := strings.LastIndex(rest, ":"); i > 0 {
		if _, err := strconv.ParseFloat(rest[i+1:], 64); err == nil {
			acc, err := parseAccuracy(rest[i+1:])
			if err != nil {
				return e, fmt.Errorf("--search %q: fine-tuned accuracy: %w", s, err)
			}
			e.head, e.acc = rest[:i], acc
		}
	}
	return e, nil
}

// maxGridPoints bounds a --grid: each point is an evaluation of every task.
const maxGridPoints = 1000

// parseGrid parses from:to:step.
func parseGrid(s string) ([]float64, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("--grid %q: want from:to:step, e.g. 0:1:0.05", s)
	}
	var v [3]float64
	for i, p := range parts {
		x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("--grid %q: %q is not a finite number", s, p)
		}
		v[i] = x
	}
	if v[2] > 0 && (v[1]-v[0])/v[2] > maxGridPoints {
		return nil, fmt.Errorf("--grid %q has more than %d points: each is a full evaluation; take a larger step", s, maxGridPoints)
	}
	g := eval.Grid(v[0], v[1], v[2])
	if len(g) == 0 {
		return nil, fmt.Errorf("--grid %q is empty: want from ≤ to and step > 0", s)
	}
	return g, nil
}

// searchPlan holds what a search needs once its flags are checked.
type searchPlan struct {
	coef    merge.Coefficient
	negate  bool
	grid    []float64
	entries []searchEntry
	names   []string
}

// runMergeSearch is merge --search: eval.SearchMerge merges once at a unit
// coefficient to get the merged task vector Δ, evaluates θ₀ + c·Δ in
// memory at each c of the grid on the validation split, and the merge is
// written only at the chosen coefficient, with the search's record and
// plot beside it.
func (a *app) runMergeSearch(cmd *cobra.Command, f *mergeFlags, sf *searchFlags) error {
	start := time.Now()
	r, err := a.openSearch(cmd, f, sf)
	if err != nil {
		return err
	}
	defer r.close()
	rec, _, err := eval.SearchMerge(r.set, *r.job.cfg, r.enc.Weights, r.options())
	r.merging.done()
	if err != nil {
		return err
	}
	rec.Output, rec.Split, rec.Limit, rec.Heads = f.o.out, string(datasets.Validation), sf.limit, r.plan.heads()
	if r.lin != nil {
		rec.LinearizedAt = r.lin.Base.Path
	}
	if l, ok := rec.MergeParams["lines"].(map[string]any); ok && rec.LinesAlpha != nil {
		if got, ok := l["alpha"].(float64); ok && got != *rec.LinesAlpha {
			fmt.Fprintf(a.stderr, "editkit: warning: the written merge's LiNeS α %v differs from the searched models' %v\n", got, *rec.LinesAlpha)
		}
	}
	r.searching.finish()
	rec.Seconds = time.Since(start).Seconds()
	md, err := rec.Write(r.recordFiles, a.outputOptions())
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(rec)
	}
	fmt.Fprint(a.stdout, md)
	if !a.quiet {
		fmt.Fprintf(a.stderr, "editkit: merge %s --search: chose %s = %g on validation; wrote %s and %s (%.1fs)\n",
			rec.Method, r.plan.coef.Symbol(), rec.Chosen, f.o.out, strings.Join(rec.Files, ", "), rec.Seconds)
	}
	return nil
}

// searchRun is what a merge --search holds open: the plan, the recipe,
// the models, the encoder and validation tasks, the linearization, the
// scratch folder and the progress displays.
type searchRun struct {
	a           *app
	plan        *searchPlan
	flags       *searchFlags
	job         *mergeJob
	out         string
	recordFiles []string
	set         *tasks.Set
	enc         *encoder.Encoder
	tasks       []evalTask
	lin         *linearize.Encoder
	linMeta     map[string]string
	scratch     string
	finetuned   map[string]float64
	from        map[string]string
	searching   *countProgress // every evaluation
	merging     *progress      // the unit merge, then the written one
	closers     []func()
}

func (r *searchRun) close() {
	r.searching.finish()
	for _, c := range slices.Backward(r.closers) {
		c()
	}
}

// openSearch checks the flags, builds the recipe at the unit coefficient
// (checked in full before anything is read), and opens the models, the
// encoder, the validation tasks and the linearization.
func (a *app) openSearch(cmd *cobra.Command, f *mergeFlags, sf *searchFlags) (r *searchRun, err error) {
	r = &searchRun{a: a, flags: sf, out: f.o.out, recordFiles: eval.RecordPaths(f.o.out)} // checked with the outputs, see mergeCmd
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.plan, err = newSearchPlan(cmd, f, sf); err != nil {
		return r, err
	}
	unit := 1.0 // λ = 1, LiNeS α = 1 (one task) or β = 0
	if r.plan.coef == merge.CoefLinesBeta {
		unit = 0
	}
	if err := setSearchCoefficient(cmd, r.plan.coef, unit); err != nil {
		return r, err
	}
	if r.job, err = prepareMerge(cmd, f); err != nil {
		return r, err
	}
	if r.set, err = a.openSet(r.job.base, r.job.models); err != nil {
		return r, err
	}
	r.closers = append(r.closers, func() { r.set.Close() })
	if err := checkpoint.CheckOutput(f.o.out, r.set.Inputs(), f.o.force); err != nil {
		return r, err
	}
	if r.enc, err = encoder.Load(r.job.base); err != nil {
		return r, err
	}
	r.closers = append(r.closers, r.enc.Close)
	if r.tasks, err = loadEvalTasks(r.plan.datasets(), r.plan.heads(), datasets.Validation, sf.data, sf.limit, r.enc); err != nil {
		return r, err
	}
	if r.lin, r.linMeta, err = a.searchLinearization(r.enc, r.job.models, sf.lin); err != nil {
		return r, err
	}
	if r.lin != nil {
		r.closers = append(r.closers, r.lin.Close)
	}
	for _, t := range r.tasks {
		r.plan.names = append(r.plan.names, t.name)
	}
	if r.finetuned, r.from, err = r.plan.finetunedNeeds(sf, r.plan.goal(), r.job.models); err != nil {
		return r, err
	}
	scratch, remove, err := checkpoint.TempBeside(f.o.out) // removed on a signal; a killed run's by the next
	if err != nil {
		return r, err
	}
	r.scratch = scratch
	r.closers = append(r.closers, remove)
	r.searching = a.newCountProgress("searching "+r.plan.coef.Symbol(), r.plan.images(r.tasks, sf.tall, r.finetuned, r.from))
	return r, nil
}

// options are eval.SearchMerge's options: the plan's goal and grid, the
// tasks' evaluators (through the linearization when there is one), the
// unit merge beside the output, the progress displays, and the writer.
func (r *searchRun) options() eval.MergeSearch {
	on := func(ts ...evalTask) eval.ModelEval { return tasksEval(r.enc, r.lin, ts, r.flags.batch, r.searching) }
	var tensorNames []string
	for _, spec := range r.enc.Specs {
		tensorNames = append(tensorNames, spec.Name)
	}
	o := eval.MergeSearch{
		Choice: eval.Choice{Goal: r.plan.goal(), Metrics: r.plan.names, Steps: eval.Steps{Values: r.plan.grid}, Evaluate: on(r.tasks...),
			EvaluateOne: func(m string) eval.ModelEval { return on(r.tasks[slices.Index(r.plan.names, m)]) },
			Finetuned:   r.finetuned, FinetunedFrom: r.from,
			FinetunedWeights: func(m string) (models.Weights, error) {
				return r.enc.ReadWeights(r.job.models[slices.Index(r.plan.names, m)])
			}},
		Direction: merge.DirectionOptions{Coefficient: r.plan.coef, Negate: r.plan.negate, Tensors: tensorNames,
			ScratchDir: r.scratch, ShardSize: r.job.wo.ShardSize},
		Tall:  r.flags.tall,
		Stage: r.stage,
		Write: r.write,
	}
	if !r.a.quiet {
		o.Direction.Stream.Progress = func(done, total int64) {
			if r.merging != nil {
				r.merging.update(done, total)
			}
		}
	}
	return o
}

// stage switches the progress displays as the search moves on.
func (r *searchRun) stage(name string) {
	r.merging.done()
	switch name {
	case "direction":
		r.merging = r.a.newProgress("merging at the unit coefficient (" + string(r.job.cfg.Method) + ")")
	case "write":
		r.searching.finish()
		r.merging = r.a.newProgress("merging (" + string(r.job.cfg.Method) + ")")
	}
}

// write writes the merge at the chosen coefficient (cfg), as `editkit
// merge` would write it with that value, and reads it back.
func (r *searchRun) write(cfg merge.Config) (models.Weights, map[string]any, error) {
	if _, err := cfg.Resolve(len(r.job.models)); err != nil {
		return nil, nil, flagError(err, false)
	}
	final := *r.job
	final.cfg = &cfg
	if err := final.provenance(setInputs(r.set)); err != nil {
		return nil, nil, err
	}
	final.wo.Metadata = withMetadata(final.wo.Metadata, r.linMeta)
	res, err := merge.Run(r.set, final.cfg, r.out, final.wo, tasks.StreamOptions{Progress: r.merging.callback()})
	r.merging.done()
	if err != nil {
		return nil, nil, err
	}
	w, err := r.enc.ReadWeights(r.out)
	if err != nil {
		return nil, nil, fmt.Errorf("re-reading the written merge: %w", err)
	}
	return w, res.Params, nil
}

// tasksEval is the evaluator of the encoder's weights on tasks (through its
// linearization lin when not nil): each task's per-image outcomes with its
// head, progress reported to p.
func tasksEval(enc *encoder.Encoder, lin *linearize.Encoder, ts []evalTask, batch int, p *countProgress) eval.ModelEval {
	return func(w models.Weights) (map[string][]bool, error) {
		out := make(map[string][]bool, len(ts))
		for _, t := range ts {
			r, err := evalAccuracyLin(enc, lin, w, t, batch, p)
			if err != nil {
				return nil, err
			}
			out[t.name] = r.Hits
		}
		return out, nil
	}
}

// newSearchPlan checks the search flags against the recipe flags and picks
// what is searched, the tasks and the grid.
func newSearchPlan(cmd *cobra.Command, f *mergeFlags, sf *searchFlags) (*searchPlan, error) {
	changed := cmd.Flags().Changed
	if len(sf.entries) == 0 {
		for _, name := range searchOnly[1:] {
			if changed(name) {
				return nil, fmt.Errorf("--%s applies to merge --search: give --search dataset=HEAD.safetensors once per task", name)
			}
		}
		return nil, errors.New("--search needs dataset=HEAD.safetensors, once per task")
	}
	if f.config != "" {
		return nil, errors.New("--search works with the recipe flags (--base, --models, --method), not --config")
	}
	if sf.batch <= 0 || sf.limit < 0 {
		return nil, fmt.Errorf("--batch %d and --limit %d: give a positive batch and a limit ≥ 0", sf.batch, sf.limit)
	}
	n := len(f.models)
	sp := &searchPlan{coef: merge.CoefLambda, negate: sf.negate}
	switch {
	case sf.negate && sf.lines:
		return nil, errors.New("--negate and --search-lines: LiNeS's search is for merging, not negation; give one")
	case sf.lines && n == 1:
		sp.coef = merge.CoefLinesAlpha
	case sf.lines:
		sp.coef = merge.CoefLinesBeta
	}
	if changed("lambda") {
		return nil, errors.New("--lambda is what --search chooses: drop it (or drop --search to merge at a given λ)")
	}
	switch sp.coef {
	case merge.CoefLinesBeta:
		if changed("lines-beta") {
			return nil, errors.New("--lines-beta is what --search --search-lines chooses for several models: drop it")
		}
	case merge.CoefLinesAlpha:
		if changed("lines-alpha") || changed("lines-beta") {
			return nil, errors.New("with one model --search --search-lines chooses LiNeS's α (β = 1 − α): drop --lines-alpha/--lines-beta")
		}
	default:
		if changed("lines-alpha") || changed("lines-beta") {
			return nil, errors.New("LiNeS replaces λ: with --lines-alpha/--lines-beta add --search-lines to search LiNeS's coefficient")
		}
	}
	for _, s := range sf.entries {
		e, err := parseSearchEntry(s)
		if err != nil {
			return nil, err
		}
		sp.entries = append(sp.entries, e)
	}
	switch {
	case sp.negate:
		if n != 1 || len(sp.entries) != 2 {
			return nil, fmt.Errorf("--negate takes one model (the task to forget) and two --search tasks, the target then the control: got %d model(s), %d task(s)", n, len(sp.entries))
		}
	case sp.coef == merge.CoefLinesAlpha:
		if len(sp.entries) < 2 {
			return nil, errors.New("single-task LiNeS search needs the target task then at least one control task (--search target=HEAD --search control=HEAD): it maximizes 2·target + control normalized accuracy")
		}
	}
	var err error
	switch {
	case sf.grid != "":
		sp.grid, err = parseGrid(sf.grid)
	case sp.coef == merge.CoefLinesBeta && strings.EqualFold(f.method, string(merge.TIES)):
		sp.grid = eval.LinesBetaGridTIES()
	case sp.coef == merge.CoefLinesBeta:
		sp.grid = eval.LinesBetaGrid()
	case sp.coef == merge.CoefLinesAlpha:
		sp.grid = eval.LinesAlphaGrid()
	default:
		sp.grid = eval.LambdaGrid()
	}
	if err != nil {
		return nil, err
	}

	if m, err := merge.ParseMethod(f.method); err == nil {
		switch {
		case sf.tall && m != merge.Consensus:
			return nil, fmt.Errorf("--search-tall chooses consensus's TALL-mask λ_t, not a parameter of %s", m)
		case sf.tall && changed("tall-lambda"):
			return nil, errors.New("--search-tall chooses the TALL-mask λ_t on validation data: drop --tall-lambda (or --search-tall to give them)")
		case (m == merge.Linear || m == merge.ModelStock || m == merge.SLERP) && sp.coef == merge.CoefLambda:
			return nil, fmt.Errorf("%s has no merge coefficient to search: --search chooses λ of task-vector methods (task_arithmetic, ties, dare_*, breadcrumbs*, consensus), or LiNeS's with --search-lines", m)
		case sp.negate && m != merge.TaskArithmetic:
			return nil, fmt.Errorf("--negate applies to task_arithmetic (θ₀ − λτ), not %s", m)
		}
	}
	return sp, nil
}

// setSearchCoefficient sets the searched merge parameter on the command
// line, so that prepareMerge builds the recipe with it exactly as if it had
// been typed.
func setSearchCoefficient(cmd *cobra.Command, coef merge.Coefficient, v float64) error {
	name := "lambda"
	switch coef {
	case merge.CoefLinesBeta:
		name = "lines-beta"
	case merge.CoefLinesAlpha:
		name = "lines-alpha"
	}
	return cmd.Flags().Set(name, strconv.FormatFloat(v, 'g', -1, 64))
}

// goal is what the search optimizes.
func (sp *searchPlan) goal() eval.Goal {
	switch {
	case sp.negate:
		return eval.GoalNegation
	case sp.coef == merge.CoefLinesAlpha:
		return eval.GoalTradeoff
	}
	return eval.GoalAddition
}

// datasets and heads are the --search tasks' datasets and heads.
func (sp *searchPlan) datasets() []string {
	out := make([]string, len(sp.entries))
	for i, e := range sp.entries {
		out[i] = e.dataset
	}
	return out
}

func (sp *searchPlan) heads() []string {
	out := make([]string, len(sp.entries))
	for i, e := range sp.entries {
		out[i] = e.head
	}
	return out
}

// images counts the images the search evaluates, for its progress: the
// TALL λ_t, the grid, the written checkpoint, the fine-tuned models whose
// accuracy is not known, θ₀ on the reference tasks.
func (sp *searchPlan) images(ts []evalTask, tall bool, ft map[string]float64, from map[string]string) int {
	goal := sp.goal()
	size := map[string]int{}
	perPass := 0
	for _, t := range ts {
		size[t.name] = t.ds.Len()
		perPass += t.ds.Len()
	}
	total := perPass * (len(sp.grid) + 1)
	if tall {
		total += perPass * len(eval.TallLambdaGrid())
	}
	for _, m := range goal.NeedsFinetuned(sp.names) {
		if from[m] != "" && ft[m] == 0 {
			total += size[m]
		}
	}
	for _, m := range goal.NeedsReference(sp.names) {
		total += size[m]
	}
	return total
}

// finetunedNeeds resolves where each task's fine-tuned accuracy comes
// from: --search's inline value, --finetuned-acc, or evaluating the task's
// model (the i-th --models for the i-th task). ft holds the values known
// now; from names every source.
func (sp *searchPlan) finetunedNeeds(sf *searchFlags, goal eval.Goal, members []string) (ft map[string]float64, from map[string]string, err error) {
	flagAcc, err := parseTaskFloats("finetuned-acc", sf.finetunedAcc, sp.names)
	if err != nil {
		return nil, nil, err
	}
	ft, from = map[string]float64{}, map[string]string{}
	for _, t := range goal.NeedsFinetuned(sp.names) {
		i := slices.Index(sp.names, t)
		switch {
		case sp.entries[i].acc > 0:
			ft[t], from[t] = sp.entries[i].acc, "--search"
		case flagAcc[t] > 0:
			ft[t], from[t] = flagAcc[t], "--finetuned-acc"
		case i < len(members):
			from[t] = "evaluated " + members[i]
		default:
			return nil, nil, fmt.Errorf("no fine-tuned accuracy for task %s: the %d-th --search task has no %d-th --models to evaluate; give it as %s=HEAD:ACC or --finetuned-acc %s=ACC", t, i+1, i+1, sp.entries[i].dataset, t)
		}
	}
	return ft, from, nil
}
