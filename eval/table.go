package eval

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// Row is one model's accuracies in a Table.
type Row struct {
	Name string `json:"name"`
	// Coefficients records what was chosen for this row (λ, β, α, ...).
	Coefficients map[string]float64 `json:"coefficients,omitempty"`
	Accuracy     map[string]float64 `json:"accuracy"`
	// Normalized is filled by Table.Add when the fine-tuned accuracies are known.
	Normalized map[string]float64 `json:"normalized,omitempty"`
	// MeanAccuracy and MeanNormalized average over the table's tasks.
	MeanAccuracy   float64 `json:"mean_accuracy"`
	MeanNormalized float64 `json:"mean_normalized,omitempty"`
	// Runs is the number of runs (training seeds) the accuracies average,
	// and Spread the standard deviation of the mean accuracy across them
	// (AddRuns with two or more runs).
	Runs   int     `json:"runs,omitempty"`
	Spread float64 `json:"spread,omitempty"`
	// Interval holds the 95% bootstrap interval of each task's accuracy
	// and of the mean (key "average"); Versus the paired 95% intervals of
	// this row's accuracy minus a reference row's, by reference name and
	// task (Table.Intervals).
	Interval map[string]Interval            `json:"interval,omitempty"`
	Versus   map[string]map[string]Interval `json:"versus,omitempty"`
	// Scores are the per-example outcomes behind Accuracy, averaged over
	// runs, by task: what the intervals resample.
	Scores map[string][]float64 `json:"-"`
}

// Average is the key of the mean over tasks in Row.Interval and Row.Versus.
const Average = "average"

// Table is the accuracy of several models on several tasks, the papers'
// main table: absolute and normalized accuracy per task and on average.
type Table struct {
	Title string   `json:"title,omitempty"`
	Split string   `json:"split,omitempty"`
	Tasks []string `json:"tasks"`
	// Finetuned holds each task's fine-tuned accuracy, the normalizer.
	Finetuned map[string]float64 `json:"finetuned,omitempty"`
	// NoAverage leaves the average column out of the markdown, for tables
	// whose columns do not average into anything (a target and its
	// controls).
	NoAverage bool  `json:"no_average,omitempty"`
	Rows      []Row `json:"rows"`
}

// Add appends a row, computing its normalized accuracies and averages. Every
// task of the table must have an accuracy.
func (t *Table) Add(name string, acc, coefficients map[string]float64) error {
	return t.add(Row{Name: name, Accuracy: acc, Coefficients: coefficients})
}

// AddRuns appends a row measured by per-example outcomes, one map (task →
// outcomes on the table's split, in the same order for every row) per run
// of the model (training seed): its accuracy on a task is the mean over
// runs, its Spread the standard deviation (n − 1) over runs of the mean
// accuracy, and its Scores make the row eligible for Intervals.
func (t *Table) AddRuns(name string, runs []map[string][]bool, coefficients map[string]float64) error {
	if len(runs) == 0 {
		return fmt.Errorf("eval: row %q has no runs", name)
	}
	r := Row{Name: name, Coefficients: coefficients, Accuracy: map[string]float64{}, Scores: map[string][]float64{}, Runs: len(runs)}
	for _, task := range t.Tasks {
		var per [][]bool
		for _, run := range runs {
			h, ok := run[task]
			if !ok {
				return fmt.Errorf("eval: row %q has no outcomes for task %q", name, task)
			}
			per = append(per, h)
		}
		sc, err := Scores(per)
		if err != nil {
			return fmt.Errorf("eval: row %q, task %q: %w", name, task, err)
		}
		r.Scores[task], r.Accuracy[task] = sc, meanOf(sc)
	}
	if len(runs) > 1 {
		means := make([]float64, len(runs))
		for k, run := range runs {
			for _, task := range t.Tasks {
				means[k] += Share(run[task]) / float64(len(t.Tasks))
			}
		}
		m := meanOf(means)
		var ss float64
		for _, x := range means {
			ss += (x - m) * (x - m)
		}
		r.Spread = math.Sqrt(ss / float64(len(runs)-1))
	}
	return t.add(r)
}

// Intervals computes, for every row added with AddRuns, the 95% interval
// of its accuracies and, for each reference row named in refs that the
// table holds, the paired 95% interval of its accuracy minus the
// reference's (Bootstrap: the same resamples of the split's examples for
// every row). Rows without outcomes are left without intervals.
func (t *Table) Intervals(refs []string, o BootstrapOptions) error {
	byName := map[string]*Row{}
	for i := range t.Rows {
		byName[t.Rows[i].Name] = &t.Rows[i]
	}
	type slot struct {
		row *Row
		ref string
	}
	var ests []Estimate
	var slots []slot
	for i := range t.Rows {
		r := &t.Rows[i]
		if r.Scores == nil {
			continue
		}
		ests, slots = append(ests, Estimate{A: r.Scores}), append(slots, slot{r, ""})
		for _, ref := range refs {
			b, ok := byName[ref]
			if !ok || b == r || b.Scores == nil {
				continue
			}
			ests, slots = append(ests, Estimate{A: r.Scores, B: b.Scores}), append(slots, slot{r, ref})
		}
	}
	if len(ests) == 0 {
		return nil
	}
	res, err := Bootstrap(t.Tasks, ests, o)
	if err != nil {
		return err
	}
	for k, s := range slots {
		m := map[string]Interval{Average: res[k].Mean}
		for task, iv := range res[k].PerTask {
			m[task] = iv
		}
		if s.ref == "" {
			s.row.Interval = m
			continue
		}
		if s.row.Versus == nil {
			s.row.Versus = map[string]map[string]Interval{}
		}
		s.row.Versus[s.ref] = m
	}
	return nil
}

func (t *Table) add(r Row) error {
	name, acc := r.Name, r.Accuracy
	for _, task := range t.Tasks {
		a, ok := acc[task]
		if !ok {
			return fmt.Errorf("eval: row %q has no accuracy for task %q", name, task)
		}
		r.MeanAccuracy += a / float64(len(t.Tasks))
	}
	if len(t.Finetuned) > 0 {
		r.Normalized = make(map[string]float64, len(t.Tasks))
		for _, task := range t.Tasks {
			n, err := Normalized(acc[task], t.Finetuned[task])
			if err != nil {
				return fmt.Errorf("eval: row %q, task %q: %w", name, task, err)
			}
			r.Normalized[task] = n
			r.MeanNormalized += n / float64(len(t.Tasks))
		}
	}
	t.Rows = append(t.Rows, r)
	return nil
}

// Markdown renders the table with accuracies in percent: one column per
// task and the average, each cell "absolute (normalized)" when normalized
// accuracies are known, and the chosen coefficients last.
func (t *Table) Markdown() string {
	var b strings.Builder
	if t.Title != "" {
		fmt.Fprintf(&b, "### %s\n\n", t.Title)
	}
	hasCoef := slices.ContainsFunc(t.Rows, func(r Row) bool { return len(r.Coefficients) > 0 })
	hasRuns := slices.ContainsFunc(t.Rows, func(r Row) bool { return r.Runs > 1 })
	b.WriteString("| model |")
	for _, task := range t.columns() {
		fmt.Fprintf(&b, " %s |", task)
	}
	if hasRuns {
		b.WriteString(" seeds (sd) |")
	}
	if hasCoef {
		b.WriteString(" chosen |")
	}
	b.WriteString("\n|---|")
	for range t.columns() {
		b.WriteString("---:|")
	}
	if hasRuns {
		b.WriteString("---:|")
	}
	if hasCoef {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	cell := func(acc float64, norm map[string]float64, n float64) string {
		if norm == nil {
			return fmt.Sprintf("%.1f", 100*acc)
		}
		return fmt.Sprintf("%.1f (%.1f)", 100*acc, 100*n)
	}
	for _, r := range t.Rows {
		fmt.Fprintf(&b, "| %s |", r.Name)
		for _, task := range t.Tasks {
			fmt.Fprintf(&b, " %s |", cell(r.Accuracy[task], r.Normalized, r.Normalized[task]))
		}
		if !t.NoAverage {
			fmt.Fprintf(&b, " %s |", cell(r.MeanAccuracy, r.Normalized, r.MeanNormalized))
		}
		if hasRuns {
			if r.Runs > 1 {
				fmt.Fprintf(&b, " %d (%.1f) |", r.Runs, 100*r.Spread)
			} else {
				b.WriteString(" |")
			}
		}
		if hasCoef {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(r.Coefficients)) {
				parts = append(parts, fmt.Sprintf("%s=%.3g", k, r.Coefficients[k]))
			}
			fmt.Fprintf(&b, " %s |", strings.Join(parts, ", "))
		}
		b.WriteString("\n")
	}
	if len(t.Finetuned) > 0 {
		b.WriteString("\nCells: top-1 accuracy % (normalized accuracy %: accuracy / the task's fine-tuned accuracy)")
		if t.Split != "" {
			fmt.Fprintf(&b, " on the %s split", t.Split)
		}
		b.WriteString(".\n")
	}
	return b.String()
}

// MarkdownIntervals renders the rows' intervals as tables, in percent:
// the 95% interval of each accuracy, then, for each reference, each row's
// paired difference "+1.2 [+0.3, +2.1]" (an interval that excludes 0 is a
// difference at the 95% level). Empty when no row has intervals.
func (t *Table) MarkdownIntervals() string {
	var b strings.Builder
	header := func(first string) {
		fmt.Fprintf(&b, "| %s |", first)
		for _, c := range t.columns() {
			fmt.Fprintf(&b, " %s |", c)
		}
		b.WriteString("\n|---|" + strings.Repeat("---:|", len(t.columns())) + "\n")
	}
	cells := func(m map[string]Interval, signed bool) string {
		var c strings.Builder
		f := "%.1f [%.1f, %.1f]"
		if signed {
			f = "%+.1f [%+.1f, %+.1f]"
		}
		for _, k := range t.columns() {
			iv := m[k]
			fmt.Fprintf(&c, " "+f+" |", 100*iv.Value, 100*iv.Lo, 100*iv.Hi)
		}
		return c.String()
	}
	started := false
	for _, r := range t.Rows {
		if r.Interval != nil {
			if !started {
				b.WriteString("\nAccuracy % with its 95% bootstrap interval over the split's examples:\n\n")
				header("model")
				started = true
			}
			fmt.Fprintf(&b, "| %s |%s\n", r.Name, cells(r.Interval, false))
		}
	}
	var refs []string
	for _, r := range t.Rows {
		for ref := range r.Versus {
			if !slices.Contains(refs, ref) {
				refs = append(refs, ref)
			}
		}
	}
	// References in table order.
	slices.SortFunc(refs, func(a, c string) int { return t.index(a) - t.index(c) })
	for _, ref := range refs {
		fmt.Fprintf(&b, "\nPaired difference with %s, accuracy points, 95%% bootstrap interval:\n\n", ref)
		header("model − " + ref)
		for _, r := range t.Rows {
			if m, ok := r.Versus[ref]; ok {
				fmt.Fprintf(&b, "| %s |%s\n", r.Name, cells(m, true))
			}
		}
	}
	return b.String()
}

// columns are the tasks, then Average unless NoAverage.
func (t *Table) columns() []string {
	if t.NoAverage {
		return t.Tasks
	}
	return append(slices.Clone(t.Tasks), Average)
}

func (t *Table) index(name string) int {
	return slices.IndexFunc(t.Rows, func(r Row) bool { return r.Name == name })
}

// JSON renders the table as indented JSON.
func (t *Table) JSON() ([]byte, error) { return json.MarshalIndent(t, "", "  ") }
