package eval

import (
	"encoding/json"
	"fmt"
	"maps"
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
}

// Table is the accuracy of several models on several tasks, the papers'
// main table: absolute and normalized accuracy per task and on average.
type Table struct {
	Title string   `json:"title,omitempty"`
	Split string   `json:"split,omitempty"`
	Tasks []string `json:"tasks"`
	// Finetuned holds each task's fine-tuned accuracy, the normalizer.
	Finetuned map[string]float64 `json:"finetuned,omitempty"`
	Rows      []Row              `json:"rows"`
}

// Add appends a row, computing its normalized accuracies and averages. Every
// task of the table must have an accuracy.
func (t *Table) Add(name string, acc, coefficients map[string]float64) error {
	r := Row{Name: name, Accuracy: acc, Coefficients: coefficients}
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
	b.WriteString("| model |")
	for _, task := range t.Tasks {
		fmt.Fprintf(&b, " %s |", task)
	}
	b.WriteString(" average |")
	if hasCoef {
		b.WriteString(" chosen |")
	}
	b.WriteString("\n|---|")
	for range len(t.Tasks) + 1 {
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
		fmt.Fprintf(&b, " %s |", cell(r.MeanAccuracy, r.Normalized, r.MeanNormalized))
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

// JSON renders the table as indented JSON.
func (t *Table) JSON() ([]byte, error) { return json.MarshalIndent(t, "", "  ") }
