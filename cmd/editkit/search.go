package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
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
	finetunedAcc string
	data         string
	limit, batch int
}

// searchOnly lists the flags that mean nothing without --search.
var searchOnly = []string{"search", "grid", "negate", "search-lines", "finetuned-acc", "data", "limit", "batch"}

// register adds the --search flags to merge's flag set.
func (sf *searchFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&sf.entries, "search", nil, "choose the coefficient on validation data: dataset=HEAD.safetensors[:finetuned_acc], once per task (the i-th is the task of the i-th --models)")
	fs.StringVar(&sf.grid, "grid", "", "search grid from:to:step (default: λ 0:1:0.05; LiNeS β 0.1:1:0.1, 0.1:1.5:0.1 for ties; single-task LiNeS α 0:1:0.1)")
	fs.BoolVar(&sf.negate, "negate", false, "search: task negation θ₀ − λτ of one model; the first --search task is the target, the second the control (kept ≥ 95% of the pre-trained model's accuracy)")
	fs.BoolVar(&sf.lines, "search-lines", false, "search: choose LiNeS's β (several models, α the multi-task default unless --lines-alpha) or α (one model, β = 1 − α) instead of λ")
	fs.StringVar(&sf.finetunedAcc, "finetuned-acc", "", "search: fine-tuned validation accuracies task=acc,... (default: evaluate each --models checkpoint)")
	fs.StringVar(&sf.data, "data", "", "search: folder holding one folder per named dataset (default $EDITKIT_DATA, else ../shared/data/vision)")
	fs.IntVar(&sf.limit, "limit", 0, "search: use only the first N validation examples of each task (0: all)")
	fs.IntVar(&sf.batch, "batch", 64, "search: images per forward pass")
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

// searchMode is what the search chooses.
type searchMode int

const (
	searchLambda     searchMode = iota // λ of θ₀ + λΔ
	searchNegation                     // λ of θ₀ − λτ
	searchLinesBeta                    // LiNeS β, several tasks
	searchLinesAlpha                   // LiNeS α with β = 1 − α, one task
)

func (m searchMode) coefficient() string {
	switch m {
	case searchLinesBeta:
		return "lines_beta"
	case searchLinesAlpha:
		return "lines_alpha"
	}
	return "lambda"
}

func (m searchMode) symbol() string {
	switch m {
	case searchLinesBeta:
		return "β"
	case searchLinesAlpha:
		return "α"
	}
	return "λ"
}

// searchRecord is the record of a search written beside the output (and
// printed with --json).
type searchRecord struct {
	Output      string  `json:"output"`
	Method      string  `json:"method"`
	Coefficient string  `json:"coefficient"`
	Chosen      float64 `json:"chosen"`
	// Applied is the merge parameter written: λ, −λ for negation, β or α.
	Applied float64   `json:"applied"`
	Grid    []float64 `json:"grid"`
	Split   string    `json:"split"`
	Limit   int       `json:"limit,omitempty"`
	Tasks   []string  `json:"tasks"`
	Heads   []string  `json:"heads"`
	// Finetuned holds the fine-tuned validation accuracies (normalizers);
	// FinetunedFrom says where each came from.
	Finetuned     map[string]float64 `json:"finetuned,omitempty"`
	FinetunedFrom map[string]string  `json:"finetuned_from,omitempty"`
	// Pretrained holds the pre-trained model's validation accuracy where the
	// objective needs it (negation's and single-task LiNeS's controls).
	Pretrained map[string]float64 `json:"pretrained,omitempty"`
	// LinesAlpha is LiNeS's α during a β search.
	LinesAlpha *float64     `json:"lines_alpha,omitempty"`
	Search     *eval.Search `json:"search"`
	// Written holds the validation accuracy of the checkpoint as written
	// (its dtype, the merge's own arithmetic), re-measured.
	Written     map[string]float64 `json:"written_accuracy"`
	MergeParams map[string]any     `json:"merge_params"`
	Files       []string           `json:"files"`
	Seconds     float64            `json:"seconds"`
}

// searchPlan holds what a search needs once its inputs are checked.
type searchPlan struct {
	mode    searchMode
	grid    []float64
	entries []searchEntry
	names   []string
	enc     *encoder.Encoder
	ts      []evalTask
	// delta holds D = θ(extraction) − θ₀ per encoder tensor, and a the
	// scale the extraction merge applied, so Δ = D/a.
	delta  map[string][]float32
	a      float64
	alpha  float64 // LiNeS α for a β search
	layout *checkpoint.Layout
	batch  int
	p      *countProgress
}

// runMergeSearch is merge --search: it merges once at a unit coefficient to
// get the merged task vector Δ (which, for every task-vector method, does
// not depend on the coefficient), evaluates θ₀ + c·Δ in memory for each c
// of the grid on the validation split, and writes the merge only at the
// chosen coefficient, with the search's record and plot beside it.
func (a *app) runMergeSearch(cmd *cobra.Command, f *mergeFlags, sf *searchFlags) error {
	start := time.Now()
	n := len(f.models)
	sp, err := newSearchPlan(cmd, f, sf)
	if err != nil {
		return err
	}
	// The recipe at the extraction's unit coefficient, checked in full
	// before anything is read.
	unit := 1.0 // the extraction's coefficient: λ = 1, LiNeS α = 1 (one task) or β = 0
	if sp.mode == searchLinesBeta {
		unit = 0
	}
	if err := setSearchCoefficient(cmd, sp.mode, unit); err != nil {
		return err
	}
	job, err := prepareMerge(cmd, f)
	if err != nil {
		return err
	}
	recordFiles := searchRecordPaths(f.o.out) // checked with the outputs, see mergeCmd
	s, err := a.openSet(job.base, job.models)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := checkpoint.CheckOutput(f.o.out, s.Inputs(), f.o.force); err != nil {
		return err
	}

	// The encoder and the validation data.
	if sp.enc, err = encoder.Load(job.base); err != nil {
		return err
	}
	heads := make([]string, len(sp.entries))
	dsNames := make([]string, len(sp.entries))
	for i, e := range sp.entries {
		dsNames[i], heads[i] = e.dataset, e.head
	}
	if sp.ts, err = loadEvalTasks(dsNames, heads, datasets.Validation, sf.data, sf.limit, sp.enc); err != nil {
		return err
	}
	for _, t := range sp.ts {
		sp.names = append(sp.names, t.name)
	}
	rec := &searchRecord{Output: f.o.out, Method: string(job.cfg.Method), Coefficient: sp.mode.coefficient(), Grid: sp.grid,
		Split: string(datasets.Validation), Limit: sf.limit, Tasks: sp.names, Heads: heads}
	ft, from, err := sp.finetunedNeeds(sf, job.models, n)
	if err != nil {
		return err
	}

	// Δ, from one merge at the unit coefficient into a scratch folder beside
	// the output.
	if err := sp.extract(s, job, f.o.out, a.newProgress("merging at the unit coefficient ("+string(job.cfg.Method)+")")); err != nil {
		return err
	}
	if sp.mode == searchLinesBeta {
		rec.LinesAlpha = &sp.alpha
	}

	// Progress over every evaluation the search makes: the grid, the
	// written checkpoint, fine-tuned models, the pre-trained model.
	perPass := 0
	for _, t := range sp.ts {
		perPass += t.ds.Len()
	}
	total := perPass * (len(sp.grid) + 1)
	for _, t := range sp.ts {
		if from[t.name] != "" && ft[t.name] == 0 {
			total += t.ds.Len()
		}
	}
	if sp.mode == searchNegation || sp.mode == searchLinesAlpha {
		for _, t := range sp.ts[1:] {
			total += t.ds.Len()
		}
	}
	sp.p = a.newCountProgress("searching "+sp.mode.symbol(), total)
	defer sp.p.finish()

	// Normalizers: fine-tuned accuracies, pre-trained ones.
	for i, t := range sp.ts {
		if ft[t.name] > 0 || from[t.name] == "" {
			continue
		}
		w, err := sp.enc.ReadWeights(job.models[i])
		if err != nil {
			return fmt.Errorf("evaluating the fine-tuned model of %s: %w", t.name, err)
		}
		r, err := evalAccuracy(sp.enc, w, t, sp.batch, sp.p)
		finalizeWeights(w)
		if err != nil {
			return err
		}
		if r.Accuracy == 0 {
			return fmt.Errorf("the fine-tuned model %s has accuracy 0 on %s's validation split, so normalized accuracy is undefined: is %s its head?", job.models[i], t.name, sp.entries[i].head)
		}
		ft[t.name] = r.Accuracy
	}
	if len(ft) > 0 {
		rec.Finetuned, rec.FinetunedFrom = ft, from
	}
	if sp.mode == searchNegation || sp.mode == searchLinesAlpha {
		rec.Pretrained = map[string]float64{}
		for i, t := range sp.ts[1:] {
			r, err := evalAccuracy(sp.enc, sp.enc.Weights, t, sp.batch, sp.p)
			if err != nil {
				return err
			}
			if r.Accuracy == 0 {
				return fmt.Errorf("the pre-trained model has accuracy 0 on the control task %s: check its head %s", t.name, heads[i+1])
			}
			rec.Pretrained[t.name] = r.Accuracy
		}
	}

	// The search.
	evalAt := func(c float64) (map[string]float64, error) {
		w := sp.candidate(c)
		defer finalizeWeights(w)
		acc := map[string]float64{}
		for _, t := range sp.ts {
			r, err := evalAccuracy(sp.enc, w, t, sp.batch, sp.p)
			if err != nil {
				return nil, err
			}
			acc[t.name] = r.Accuracy
		}
		return acc, nil
	}
	switch sp.mode {
	case searchNegation:
		target, control := sp.names[0], sp.names[1]
		rec.Search, err = eval.SearchNegation(sp.grid, target, control, 0.95*rec.Pretrained[control], evalAt)
	case searchLinesAlpha:
		norm := map[string]float64{sp.names[0]: ft[sp.names[0]]}
		for k, v := range rec.Pretrained {
			norm[k] = v
		}
		rec.Search, err = eval.SearchTradeoff(sp.grid, sp.names[0], sp.names[1:], norm, 2, evalAt)
	default:
		rec.Search, err = eval.SearchAddition(sp.grid, sp.names, ft, evalAt)
	}
	if err != nil {
		if rec.Search != nil && len(rec.Search.Points) > 0 {
			return fmt.Errorf("%w (validation accuracies: %s)", err, pointsSummary(rec.Search))
		}
		return err
	}
	rec.Chosen = rec.Search.Chosen()
	rec.Applied = rec.Chosen
	if sp.mode == searchNegation {
		rec.Applied = -rec.Chosen
	}

	// The merge at the chosen coefficient: the command line's recipe with
	// that value, as `editkit merge` would write it.
	if err := setSearchCoefficient(cmd, sp.mode, rec.Applied); err != nil {
		return err
	}
	final, err := prepareMerge(cmd, f)
	if err != nil {
		return err
	}
	if err := final.provenance(s); err != nil {
		return err
	}
	sp.p.finish()
	mp := a.newProgress("merging (" + string(final.cfg.Method) + ")")
	res, err := merge.Run(s, final.cfg, f.o.out, final.wo, tasks.StreamOptions{Progress: mp.callback()})
	mp.done()
	if err != nil {
		return err
	}
	rec.MergeParams = res.Params
	if sp.mode == searchLinesBeta {
		if l, ok := res.Params["lines"].(map[string]any); ok {
			if got, ok := l["alpha"].(float64); ok && got != sp.alpha {
				fmt.Fprintf(a.stderr, "editkit: warning: the written merge's LiNeS α %v differs from the searched models' %v\n", got, sp.alpha)
			}
		}
	}

	// Re-measure the written checkpoint, so the record says what the file
	// does (its dtype may be narrower than the float32 searched).
	w, err := sp.enc.ReadWeights(f.o.out)
	if err != nil {
		return fmt.Errorf("re-reading the written merge: %w", err)
	}
	rec.Written = map[string]float64{}
	for _, t := range sp.ts {
		r, err := evalAccuracy(sp.enc, w, t, sp.batch, sp.p)
		if err != nil {
			return err
		}
		rec.Written[t.name] = r.Accuracy
	}
	finalizeWeights(w)
	sp.p.finish()
	rec.Seconds = time.Since(start).Seconds()
	md, err := writeSearchRecord(rec, recordFiles, sp.mode, a.writeFile)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(rec)
	}
	fmt.Fprint(a.stdout, md)
	if !a.quiet {
		fmt.Fprintf(a.stderr, "editkit: merge %s --search: chose %s = %g on validation; wrote %s and %s (%.1fs)\n",
			rec.Method, sp.mode.symbol(), rec.Chosen, f.o.out, strings.Join(recordFiles, ", "), rec.Seconds)
	}
	return nil
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
	sp := &searchPlan{batch: sf.batch}
	switch {
	case sf.negate && sf.lines:
		return nil, errors.New("--negate and --search-lines: LiNeS's search is for merging, not negation; give one")
	case sf.negate:
		sp.mode = searchNegation
	case sf.lines && n == 1:
		sp.mode = searchLinesAlpha
	case sf.lines:
		sp.mode = searchLinesBeta
	}
	if changed("lambda") {
		return nil, errors.New("--lambda is what --search chooses: drop it (or drop --search to merge at a given λ)")
	}
	switch sp.mode {
	case searchLinesBeta:
		if changed("lines-beta") {
			return nil, errors.New("--lines-beta is what --search --search-lines chooses for several models: drop it")
		}
	case searchLinesAlpha:
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
	switch sp.mode {
	case searchNegation:
		if n != 1 || len(sp.entries) != 2 {
			return nil, fmt.Errorf("--negate takes one model (the task to forget) and two --search tasks, the target then the control: got %d model(s), %d task(s)", n, len(sp.entries))
		}
	case searchLinesAlpha:
		if len(sp.entries) < 2 {
			return nil, errors.New("single-task LiNeS search needs the target task then at least one control task (--search target=HEAD --search control=HEAD): it maximizes 2·target + control normalized accuracy")
		}
	}
	var err error
	switch {
	case sf.grid != "":
		sp.grid, err = parseGrid(sf.grid)
	case sp.mode == searchLinesBeta && strings.EqualFold(f.method, string(merge.TIES)):
		sp.grid = eval.LinesBetaGridTIES
	case sp.mode == searchLinesBeta:
		sp.grid = eval.LinesBetaGrid
	case sp.mode == searchLinesAlpha:
		sp.grid = eval.LinesAlphaGrid
	default:
		sp.grid = eval.LambdaGrid
	}
	if err != nil {
		return nil, err
	}

	if m, err := merge.ParseMethod(f.method); err == nil {
		switch {
		case (m == merge.Linear || m == merge.ModelStock || m == merge.SLERP) && sp.mode != searchLinesBeta && sp.mode != searchLinesAlpha:
			return nil, fmt.Errorf("%s has no merge coefficient to search: --search chooses λ of task-vector methods (task_arithmetic, ties, dare_*, breadcrumbs*, consensus), or LiNeS's with --search-lines", m)
		case sp.mode == searchNegation && m != merge.TaskArithmetic:
			return nil, fmt.Errorf("--negate applies to task_arithmetic (θ₀ − λτ), not %s", m)
		}
	}
	return sp, nil
}

// setSearchCoefficient sets the searched merge parameter on the command
// line, so that prepareMerge builds the recipe with it exactly as if it had
// been typed.
func setSearchCoefficient(cmd *cobra.Command, mode searchMode, v float64) error {
	name := "lambda"
	switch mode {
	case searchLinesBeta:
		name = "lines-beta"
	case searchLinesAlpha:
		name = "lines-alpha"
	}
	return cmd.Flags().Set(name, strconv.FormatFloat(v, 'g', -1, 64))
}

// finetunedNeeds resolves where each task's fine-tuned accuracy comes
// from: --search's inline value, --finetuned-acc, or evaluating the task's
// model (the i-th --models for the i-th task). ft holds the values known
// now; from names every source.
func (sp *searchPlan) finetunedNeeds(sf *searchFlags, members []string, n int) (ft map[string]float64, from map[string]string, err error) {
	flagAcc, err := parseTaskFloats("finetuned-acc", sf.finetunedAcc, sp.names)
	if err != nil {
		return nil, nil, err
	}
	ft, from = map[string]float64{}, map[string]string{}
	needed := func(i int) bool {
		switch sp.mode {
		case searchNegation:
			return false
		case searchLinesAlpha:
			return i == 0
		}
		return true
	}
	for i, t := range sp.names {
		switch {
		case !needed(i):
		case sp.entries[i].acc > 0:
			ft[t], from[t] = sp.entries[i].acc, "--search"
		case flagAcc[t] > 0:
			ft[t], from[t] = flagAcc[t], "--finetuned-acc"
		case i < n:
			from[t] = "evaluated " + members[i]
		default:
			return nil, nil, fmt.Errorf("no fine-tuned accuracy for task %s: the %d-th --search task has no %d-th --models to evaluate; give it as %s=HEAD:ACC or --finetuned-acc %s=ACC", t, i+1, i+1, sp.entries[i].dataset, t)
		}
	}
	return ft, from, nil
}

// extract merges once at the unit coefficient into a scratch folder beside
// the output and keeps D = θ − θ₀ for the encoder's tensors. For task
// arithmetic and negation the unit coefficient is λ = 1; for LiNeS it is
// the schedule with β = 0, i.e. α everywhere (the multi-task α when not
// given, computed by the merge itself), or α = 1 for a single task.
func (sp *searchPlan) extract(s *tasks.Set, job *mergeJob, out string, mp *progress) error {
	cfg := *job.cfg
	cfg.MasksOut = ""
	sp.a = 1
	var userAlpha *float64 // --lines-alpha during a β search
	if cfg.Lines != nil {
		l := *cfg.Lines
		if sp.mode == searchLinesBeta && l.Alpha != nil {
			userAlpha, l.Alpha = l.Alpha, new(1.0)
		}
		cfg.Lines = &l
	}
	tmp, remove, err := checkpoint.TempBeside(out)
	if err != nil {
		return err
	}
	defer remove()
	wo := tasks.WriteOptions{DType: checkpoint.F32}
	wo.ShardSize = job.wo.ShardSize
	scratch := filepath.Join(tmp, "delta")
	res, err := merge.Run(s, &cfg, scratch, wo, tasks.StreamOptions{Progress: mp.callback()})
	mp.done()
	if err != nil {
		return err
	}
	if sp.mode == searchLinesBeta {
		l, _ := res.Params["lines"].(map[string]any)
		a, ok := l["alpha"].(float64)
		if !ok {
			return errors.New("LiNeS: the merge did not report its α")
		}
		sp.a, sp.alpha = a, a
		if userAlpha != nil {
			sp.alpha = *userAlpha
		}
		if sp.a == 0 {
			return errors.New("LiNeS: α is 0, so the merged task vector cannot be recovered: give --lines-alpha")
		}
	}
	if cfg.Lines != nil {
		var names []string
		for _, t := range s.Base.Tensors() {
			names = append(names, t.Name)
		}
		if sp.layout, err = checkpoint.NewLayout(names, cfg.Lines.LayerPattern); err != nil {
			return err
		}
	}
	ck, err := checkpoint.Open(scratch)
	if err != nil {
		return err
	}
	defer ck.Close()
	w, err := models.ReadWeights(ck, sp.enc.Specs)
	if err != nil {
		return err
	}
	sp.delta = make(map[string][]float32, len(w))
	for _, spec := range sp.enc.Specs {
		d := tensors.MustCopyFlatData[float32](w[spec.Name])
		tensors.MustConstFlatData(sp.enc.Weights[spec.Name], func(b []float32) {
			for i := range d {
				d[i] -= b[i]
			}
		})
		sp.delta[spec.Name] = d
	}
	finalizeWeights(w)
	return nil
}

// scale is the coefficient of Δ for a tensor at the searched value c.
func (sp *searchPlan) scale(name string, c float64) float64 {
	lines := func(alpha, beta float64) float64 {
		d := sp.layout.Depth(name)
		if !d.InBlock() || d.Blocks <= 1 {
			return alpha
		}
		return alpha + beta*float64(d.Block)/float64(d.Blocks-1)
	}
	switch sp.mode {
	case searchNegation:
		return -c
	case searchLinesBeta:
		return lines(sp.alpha, c)
	case searchLinesAlpha:
		return lines(c, 1-c)
	}
	return c
}

// candidate returns θ₀ + scale·Δ for the encoder's tensors as new host
// tensors.
func (sp *searchPlan) candidate(c float64) models.Weights {
	w := make(models.Weights, len(sp.enc.Specs))
	for _, spec := range sp.enc.Specs {
		base := sp.enc.Weights[spec.Name]
		t := tensors.FromShape(shapes.Make(base.DType(), base.Shape().Dimensions...))
		k := float32(sp.scale(spec.Name, c) / sp.a)
		d := sp.delta[spec.Name]
		tensors.MustConstFlatData(base, func(b []float32) {
			tensors.MustMutableFlatData(t, func(dst []float32) {
				for i := range dst {
					dst[i] = b[i] + k*d[i]
				}
			})
		})
		w[spec.Name] = t
	}
	return w
}

func finalizeWeights(w models.Weights) {
	for _, t := range w {
		t.FinalizeAll()
	}
}

// searchRecordPaths are the files written beside the output: the record as
// JSON and markdown, and the plot.
func searchRecordPaths(out string) []string {
	stem := strings.TrimSuffix(filepath.Clean(out), ".safetensors")
	return []string{stem + ".search.json", stem + ".search.md", stem + ".search.png"}
}

// pointsSummary is a one-line account of a search's points, for errors.
func pointsSummary(s *eval.Search) string {
	var parts []string
	for _, p := range s.Points {
		var accs []string
		for k, v := range p.Accuracy {
			accs = append(accs, fmt.Sprintf("%s %.4f", k, v))
		}
		parts = append(parts, fmt.Sprintf("%g: %s", p.Coef, strings.Join(accs, ", ")))
	}
	return strings.Join(parts, "; ")
}

// writeSearchRecord writes the record's JSON, markdown and plot with write
// and returns the markdown.
func writeSearchRecord(rec *searchRecord, paths []string, mode searchMode, write func(string, []byte) error) (string, error) {
	rec.Files = paths
	sym := mode.symbol()
	tab := &eval.Table{Split: rec.Split, Tasks: rec.Tasks}
	if mode == searchLambda || mode == searchLinesBeta {
		tab.Finetuned = rec.Finetuned
	}
	for i, p := range rec.Search.Points {
		name := fmt.Sprintf("%s = %g", sym, p.Coef)
		if i == rec.Search.Best {
			name = "**" + name + " (chosen)**"
		} else if !p.Feasible {
			name += " (infeasible)"
		}
		if err := tab.Add(name, p.Accuracy, map[string]float64{"score": p.Score}); err != nil {
			return "", err
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## editkit merge --search: %s\n\n", rec.Method)
	fmt.Fprintf(&b, "Chosen on the validation split only: %s = %g (merge parameter %s = %g), objective: %s.\n\n",
		sym, rec.Chosen, rec.Coefficient, rec.Applied, rec.Search.Objective)
	if rec.LinesAlpha != nil {
		fmt.Fprintf(&b, "LiNeS α = %.6g (fixed), β searched.\n\n", *rec.LinesAlpha)
	}
	if len(rec.Finetuned) > 0 {
		b.WriteString("Fine-tuned validation accuracies (normalizers):")
		for _, t := range rec.Tasks {
			if v, ok := rec.Finetuned[t]; ok {
				fmt.Fprintf(&b, " %s %.2f%% (%s);", t, 100*v, rec.FinetunedFrom[t])
			}
		}
		b.WriteString("\n\n")
	}
	if len(rec.Pretrained) > 0 {
		b.WriteString("Pre-trained validation accuracies:")
		for _, t := range rec.Tasks {
			if v, ok := rec.Pretrained[t]; ok {
				fmt.Fprintf(&b, " %s %.2f%%;", t, 100*v)
			}
		}
		b.WriteString("\n\n")
	}
	b.WriteString(tab.Markdown())
	b.WriteString("\nWritten checkpoint, re-measured on validation:")
	for _, t := range rec.Tasks {
		fmt.Fprintf(&b, " %s %.2f%%;", t, 100*rec.Written[t])
	}
	fmt.Fprintf(&b, "\n\nOutput: %s\n", rec.Output)
	md := b.String()
	js, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return "", err
	}
	png, err := eval.PlotSearch(rec.Search, fmt.Sprintf("%s: %s on validation (chosen %g)", rec.Method, sym, rec.Chosen), sym)
	if err != nil {
		return "", err
	}
	for i, data := range [][]byte{js, []byte(md), png} {
		if err := write(paths[i], data); err != nil {
			return "", err
		}
	}
	return md, nil
}
