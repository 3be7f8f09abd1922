package eval

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/merge"
)

// Record is the account of a coefficient search written beside the merge
// it chose (merge --search): as JSON, as markdown and as a PNG plot.
type Record struct {
	Output string `json:"output"`
	Method string `json:"method"`
	// Coefficient is the merge parameter searched: lambda, lines_beta or
	// lines_alpha (merge.Coefficient).
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
	LinesAlpha *float64 `json:"lines_alpha,omitempty"`
	// Tall is consensus's search of the TALL-mask λ_t (merge --search-tall).
	Tall *TallSearch `json:"tall,omitempty"`
	// LinearizedAt is the base around which the candidates were evaluated
	// linearized (tangent-space task arithmetic), "" when plainly.
	LinearizedAt string  `json:"linearized_at,omitempty"`
	Search       *Search `json:"search"`
	// Written holds the validation accuracy of the checkpoint as written
	// (its dtype, the merge's own arithmetic), re-measured.
	Written     map[string]float64 `json:"written_accuracy"`
	MergeParams map[string]any     `json:"merge_params"`
	Files       []string           `json:"files"`
	Seconds     float64            `json:"seconds"`
}

// RecordPaths are the files a search writes beside its output out: the
// record as JSON and markdown, and the plot.
func RecordPaths(out string) []string {
	stem := strings.TrimSuffix(filepath.Clean(out), ".safetensors")
	return []string{stem + ".search.json", stem + ".search.md", stem + ".search.png"}
}

// symbol is the searched coefficient's letter.
func (r *Record) symbol() string { return merge.Coefficient(r.Coefficient).Symbol() }

// table is the record's table: one row per point of the search, and,
// where the evaluator gave per-example outcomes, 95% intervals of each
// point's accuracies and of their paired difference with the chosen point.
func (r *Record) table() (*Table, error) {
	sym := r.symbol()
	tab := &Table{Split: r.Split, Tasks: r.Tasks}
	if r.Coefficient != string(merge.CoefLinesAlpha) {
		tab.Finetuned = r.Finetuned
	}
	var chosen string
	for i, p := range r.Search.Points {
		name := fmt.Sprintf("%s = %g", sym, p.Coef)
		if i == r.Search.Best {
			name = "**" + name + " (chosen)**"
			chosen = name
		} else if !p.Feasible {
			name += " (infeasible)"
		}
		co := map[string]float64{"score": p.Score}
		var err error
		if p.Hits != nil {
			err = tab.AddRuns(name, []map[string][]bool{p.Hits}, co)
		} else {
			err = tab.Add(name, p.Accuracy, co)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := tab.Intervals([]string{chosen}, BootstrapOptions{}); err != nil {
		return nil, err
	}
	return tab, nil
}

// Markdown renders the record: the choice, the normalizers, every point
// of the search as a table row with its intervals, and the written
// checkpoint's accuracies.
func (r *Record) Markdown() (string, error) {
	tab, err := r.table()
	if err != nil {
		return "", err
	}
	return r.markdown(tab), nil
}

func (r *Record) markdown(tab *Table) string {
	sym := r.symbol()
	var b strings.Builder
	fmt.Fprintf(&b, "## editkit merge --search: %s\n\n", r.Method)
	fmt.Fprintf(&b, "Chosen on the validation split only: %s = %g (merge parameter %s = %g), objective: %s.\n\n",
		sym, r.Chosen, r.Coefficient, r.Applied, r.Search.Objective)
	if r.LinesAlpha != nil {
		fmt.Fprintf(&b, "LiNeS α = %.6g (fixed), β searched.\n\n", *r.LinesAlpha)
	}
	if r.Tall != nil {
		b.WriteString("TALL-mask λ_t chosen per task on its validation data:")
		for i, t := range r.Tasks {
			fmt.Fprintf(&b, " %s %g (accuracy %.2f%%);", t, r.Tall.Lambdas[i], 100*r.Tall.Accuracy[t][slices.Index(r.Tall.Grid, r.Tall.Lambdas[i])])
		}
		b.WriteString("\n\n")
	}
	if r.LinearizedAt != "" {
		fmt.Fprintf(&b, "Every model evaluated linearized around %s: f(x; θ₀) + J·(θ − θ₀).\n\n", r.LinearizedAt)
	}
	if len(r.Finetuned) > 0 {
		b.WriteString("Fine-tuned validation accuracies (normalizers):")
		for _, t := range r.Tasks {
			if v, ok := r.Finetuned[t]; ok {
				fmt.Fprintf(&b, " %s %.2f%% (%s);", t, 100*v, r.FinetunedFrom[t])
			}
		}
		b.WriteString("\n\n")
	}
	if len(r.Pretrained) > 0 {
		b.WriteString("Pre-trained validation accuracies:")
		for _, t := range r.Tasks {
			if v, ok := r.Pretrained[t]; ok {
				fmt.Fprintf(&b, " %s %.2f%%;", t, 100*v)
			}
		}
		b.WriteString("\n\n")
	}
	b.WriteString(tab.Markdown())
	b.WriteString("\nWritten checkpoint, re-measured on validation:")
	for _, t := range r.Tasks {
		fmt.Fprintf(&b, " %s %.2f%%;", t, 100*r.Written[t])
	}
	fmt.Fprintf(&b, "\n\nOutput: %s\n", r.Output)
	if iv := tab.MarkdownIntervals(); iv != "" {
		b.WriteString(iv)
	}
	return b.String()
}

// Write writes the record's JSON, markdown and plot to paths (see
// RecordPaths) as a unit, through checkpoint.WriteFiles (atomically, all
// or none; refused over one of opts.Inputs and, without opts.Force, over
// an existing file), records them in Files and returns the markdown.
func (r *Record) Write(paths []string, opts checkpoint.WriteOptions) (string, error) {
	r.Files = paths
	tab, err := r.table()
	if err != nil {
		return "", err
	}
	for i := range r.Search.Points {
		row := tab.Rows[i]
		r.Search.Points[i].Interval = row.Interval
		for _, v := range row.Versus {
			r.Search.Points[i].VsChosen = v
		}
	}
	md := r.markdown(tab)
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	sym := r.symbol()
	png, err := PlotSearch(r.Search, fmt.Sprintf("%s: %s on validation (chosen %g)", r.Method, sym, r.Chosen), sym)
	if err != nil {
		return "", err
	}
	if err := checkpoint.WriteFiles(paths, [][]byte{js, []byte(md), png}, opts); err != nil {
		return "", err
	}
	return md, nil
}
