package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/tasks"
)

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

// mergeConfig is the method's recipe without its coefficient; DARE's drops
// are seeded by the fine-tuning seed.
func mergeConfig(mm method, seed int) merge.Config {
	cfg := merge.Config{Method: mm.Method}
	if mm.Method == merge.DARETIES {
		cfg.Density, cfg.Seed = []float64{0.5}, uint64(seed)
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

// mergeRecord is what one merge of one seed's models found on validation.
type mergeRecord struct {
	Name        string  `json:"name"`
	Seed        int     `json:"seed"`
	Coefficient string  `json:"coefficient"` // lambda, lines_beta, none
	Chosen      float64 `json:"chosen"`
	LinesAlpha  float64 `json:"lines_alpha,omitempty"`
	// Tall holds consensus's TALL-mask λ_t search.
	Tall   *eval.TallSearch `json:"tall,omitempty"`
	Search *eval.Search     `json:"search,omitempty"`
	// ValScore is the mean normalized validation accuracy at the chosen
	// coefficient (as merged, without one), ValMean the mean accuracy.
	ValScore   float64        `json:"val_score"`
	ValMean    float64        `json:"val_mean"`
	Checkpoint string         `json:"checkpoint"`
	Params     map[string]any `json:"merge_params,omitempty"`
}

// mergeSummary is one method over every seed.
type mergeSummary struct {
	Name  string         `json:"name"`
	Seeds []*mergeRecord `json:"seeds"`
	// ValScore averages the seeds' ValScore: what chooses the best method.
	ValScore float64 `json:"val_score"`
	// test[s] holds seed s's test outcomes by task.
	test []map[string][]bool
}

func mergeAll(o options, st settings, x *experiment, ts []*task, rep *report, logf func(string, ...any)) ([]*mergeSummary, error) {
	var out []*mergeSummary
	for _, mm := range methods() {
		sum := &mergeSummary{Name: mm.Name}
		for s := 1; s <= st.Seeds; s++ {
			rec, hits, err := runMerge(o, st, x.ev, x.preDir, ts, x.members(ts, rep.LR.Chosen, s, false), s, mm, x.finetunedVal[s-1], nil, logf)
			if err != nil {
				return nil, fmt.Errorf("%s (seed %d): %w", mm.Name, s, err)
			}
			sum.Seeds = append(sum.Seeds, rec)
			sum.test = append(sum.test, hits)
			sum.ValScore += rec.ValScore / float64(st.Seeds)
		}
		out = append(out, sum)
	}
	return out, nil
}

// bestOnValidation names the method with the best mean normalized
// validation accuracy over seeds (the first on ties).
func bestOnValidation(ms []*mergeSummary) string {
	best := -1.0
	name := ""
	for _, m := range ms {
		if m.ValScore > best {
			best, name = m.ValScore, m.Name
		}
	}
	return name
}

// runMerge merges one seed's fine-tuned models with one method, choosing
// consensus's TALL λ_t and then λ (or LiNeS's β) on validation, writes the
// merge at the chosen values (with meta in its metadata) and measures the
// written checkpoint on test, every model measured by ev.
func runMerge(o options, st settings, ev *evaluator, preDir string, ts []*task, members []string, seed int, mm method, ftVal map[string]float64, meta map[string]string, logf func(string, ...any)) (*mergeRecord, map[string][]bool, error) {
	dir := filepath.Join(o.Out, "merged", fmt.Sprintf("seed%d", seed))
	recPath, ckPath := filepath.Join(dir, mm.Name+".json"), filepath.Join(dir, mm.Name)
	probes := taskProbes(ts)
	rec := &mergeRecord{}
	reuse := false
	if !o.Redo && exists(recPath) && exists(ckPath) {
		if data, err := os.ReadFile(recPath); err == nil && json.Unmarshal(data, rec) == nil {
			reuse = true
		}
	}
	if !reuse {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, nil, err
		}
		var err error
		if rec, err = searchMerge(st, ev, preDir, ts, members, seed, mm, ftVal, ckPath, meta); err != nil {
			return nil, nil, err
		}
		if rec.Search != nil {
			png, err := eval.PlotSearch(rec.Search, fmt.Sprintf("%s, seed %d: %s on validation (chosen %g)", mm.Name, seed, rec.Coefficient, rec.Chosen), rec.Coefficient)
			if err != nil {
				return nil, nil, err
			}
			if err := checkpoint.WriteFileAtomic(filepath.Join(dir, mm.Name+".search.png"), png); err != nil {
				return nil, nil, err
			}
		}
		js, err := json.MarshalIndent(rec, "", "  ")
		if err != nil {
			return nil, nil, err
		}
		if err := checkpoint.WriteFileAtomic(recPath, js); err != nil {
			return nil, nil, err
		}
	}
	acc, hits, err := ev.checkpointAt(ckPath, probes, true)
	if err != nil {
		return nil, nil, err
	}
	logf("%-24s seed %d: %s = %-5g validation score %.3f, test mean %.2f%%", mm.Name, seed, rec.Coefficient, rec.Chosen, rec.ValScore, 100*mean(acc))
	return rec, hits, nil
}

// searchMerge is eval.SearchMerge of the members by mm, choosing on the
// validation splits by mean normalized accuracy (ftVal the normalizers),
// with the merge written to ckPath.
func searchMerge(st settings, ev *evaluator, preDir string, ts []*task, members []string, seed int, mm method, ftVal map[string]float64, ckPath string, meta map[string]string) (*mergeRecord, error) {
	probes := taskProbes(ts)
	cfg := mergeConfig(mm, seed)
	rec := &mergeRecord{Name: mm.Name, Seed: seed, Checkpoint: ckPath, Coefficient: "none"}
	s, err := tasks.OpenSet(preDir, members)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	write := func(c merge.Config) (models.Weights, map[string]any, error) {
		wo := tasks.WriteOptions{WriteOptions: checkpoint.WriteOptions{Force: true, Metadata: meta}, DType: checkpoint.F32}
		res, err := merge.Run(s, &c, ckPath, wo, tasks.StreamOptions{})
		if err != nil {
			return nil, nil, err
		}
		return nil, res.Params, nil // the written merge is measured on test later
	}
	coef, ok := searched(mm)
	if !ok { // no coefficient: scored as written
		if _, rec.Params, err = write(cfg); err != nil {
			return nil, err
		}
		acc, _, err := ev.checkpointAt(ckPath, probes, false)
		if err != nil {
			return nil, err
		}
		sc, _, err := eval.Addition(probeNames(probes), ftVal).Score(acc)
		if err != nil {
			return nil, err
		}
		rec.ValScore, rec.ValMean = sc, mean(acc)
		return rec, nil
	}
	grid := st.LambdaGrid
	if mm.Lines {
		grid = st.BetaGrid
		if mm.Method == merge.TIES {
			grid = st.BetaGridTIES
		}
	}
	o := eval.MergeSearch{Choice: ev.choice(eval.GoalAddition, probes, grid),
		Direction: merge.DirectionOptions{Coefficient: coef, Tensors: ev.tensors()}, Tall: mm.Method == merge.Consensus, Write: write}
	o.Finetuned = ftVal
	r, _, err := eval.SearchMerge(s, cfg, ev.enc.Weights, o)
	if err != nil {
		return nil, err
	}
	rec.Coefficient, rec.Chosen, rec.Tall, rec.Search, rec.Params = r.Coefficient, r.Chosen, r.Tall, r.Search, r.MergeParams
	if r.LinesAlpha != nil {
		rec.LinesAlpha = *r.LinesAlpha
	}
	best := r.Search.Points[r.Search.Best]
	rec.ValScore, rec.ValMean = best.Score, mean(best.Accuracy)
	return rec, nil
}

// mergeTable is the test table: zero-shot, the fine-tuned models (one per
// task), every merge, each with its seeds, and the paired intervals
// against task arithmetic and zero-shot.
func mergeTable(o options, st settings, x *experiment, ts []*task, rep *report) (*eval.Table, error) {
	kind := "full run"
	if o.Quick {
		kind = "quick run"
	}
	tab := &eval.Table{Title: "editkit task arithmetic, " + kind, Split: "test", Tasks: rep.Tasks, Finetuned: rep.Finetuned}
	zs := map[string][]bool{}
	for _, t := range ts {
		zs[t.name] = x.zeroShotTest[t.name]
	}
	if err := tab.AddRuns(zeroShotRow, []map[string][]bool{zs}, nil); err != nil {
		return nil, err
	}
	if err := tab.AddRuns(finetunedRow, x.finetunedTest, nil); err != nil {
		return nil, err
	}
	for _, m := range rep.Merges {
		var co map[string]float64
		if r := m.Seeds[0]; r.Coefficient != "none" {
			co = map[string]float64{r.Coefficient: meanChosen(m)}
		}
		if err := tab.AddRuns(m.Name, m.test, co); err != nil {
			return nil, err
		}
	}
	if err := tab.Intervals([]string{string(merge.TaskArithmetic), zeroShotRow}, eval.BootstrapOptions{Replicates: st.Replicates}); err != nil {
		return nil, err
	}
	return tab, nil
}

// The table's reference rows.
const (
	zeroShotRow  = "zero-shot (pre-trained)"
	finetunedRow = "fine-tuned (one model per task)"
)

// meanChosen is the mean over seeds of a merge's chosen coefficient.
func meanChosen(m *mergeSummary) float64 {
	s := 0.0
	for _, r := range m.Seeds {
		s += r.Chosen
	}
	return math.Round(s/float64(len(m.Seeds))*1000) / 1000
}

// linesEffect is, for each method, the paired difference of the average
// test accuracy with LiNeS minus without (the same resamples of the test
// images for both).
func linesEffect(st settings, tab *eval.Table) (map[string]eval.Interval, error) {
	rows := map[string]eval.Row{}
	for _, r := range tab.Rows {
		rows[r.Name] = r
	}
	var names []string
	var ests []eval.Estimate
	for _, mm := range methods() {
		with, ok := rows[mm.Name+"+lines"]
		if mm.Lines || !ok {
			continue
		}
		names = append(names, mm.Name)
		ests = append(ests, eval.Estimate{A: with.Scores, B: rows[mm.Name].Scores})
	}
	res, err := eval.Bootstrap(tab.Tasks, ests, eval.BootstrapOptions{Replicates: st.Replicates})
	if err != nil {
		return nil, err
	}
	out := map[string]eval.Interval{}
	for i, n := range names {
		out[n] = res[i].Mean
	}
	return out, nil
}
