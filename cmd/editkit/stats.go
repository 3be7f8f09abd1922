package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

// normRow is one line of the norms table: a tensor, a block or the total.
type normRow struct {
	Name string    `json:"name"`
	L1   []float64 `json:"l1"`
	L2   []float64 `json:"l2"`
}

type normsReport struct {
	Members []string  `json:"members"`
	Layout  string    `json:"layout,omitempty"`
	Rows    []normRow `json:"rows"`
	Total   normRow   `json:"total"`
}

func (a *app) normsCmd() *cobra.Command {
	var base, pattern string
	var blocks bool
	c := &cobra.Command{
		Use:   "norms --base BASE TV... [--blocks]",
		Short: "L1 and L2 norms of task vectors, per tensor or per residual block",
		Long: `norms prints each task vector's L1 and L2 norm per tensor (or, with --blocks,
per residual block of the detected layout) and over the whole vector. The
operands may be stored task vectors or fine-tuned checkpoints.`,
		Args: minArgs(1, "at least one task vector"),
		RunE: func(_ *cobra.Command, args []string) error {
			if pattern != "" && !blocks {
				return errors.New("--layer-pattern applies with --blocks")
			}
			s, stats, err := a.stats(base, args, "norms")
			if err != nil {
				return err
			}
			defer s.Close()
			r := normsReport{Members: args}
			if blocks {
				if r.Rows, r.Layout, err = blockRows(s, stats, pattern); err != nil {
					return err
				}
			} else {
				for _, ts := range stats {
					row := normRow{Name: ts.Name, L1: ts.L1, L2: make([]float64, len(ts.L2Sq))}
					for i, v := range ts.L2Sq {
						row.L2[i] = math.Sqrt(v)
					}
					r.Rows = append(r.Rows, row)
				}
			}
			r.Total = normRow{Name: "(total)"}
			for _, n := range tasks.Totals(stats) {
				r.Total.L1 = append(r.Total.L1, n.L1)
				r.Total.L2 = append(r.Total.L2, n.L2)
			}
			if a.json {
				return a.printJSON(r)
			}
			return r.print(a.stdout)
		},
	}
	c.Flags().StringVar(&base, "base", "", "the pre-trained checkpoint (required)")
	c.Flags().BoolVar(&blocks, "blocks", false, "group tensors by residual block")
	c.Flags().StringVar(&pattern, "layer-pattern", "", "regular expression with a capture group around the block index, overriding layout detection (with --blocks)")
	markPaths(c.Flags(), pathInput, "base")
	a.addNonfinite(c)
	return argsAreInputs(c)
}

func blockRows(s *tasks.Set, stats []tasks.TensorStats, pattern string) ([]normRow, string, error) {
	var names []string
	for _, t := range s.Base.Tensors() {
		names = append(names, t.Name)
	}
	layout, err := checkpoint.NewLayout(names, pattern)
	if err != nil {
		return nil, "", err
	}
	var rows []normRow
	for i := range s.Members {
		keys, norms := tasks.BlockNorms(stats, i, layout)
		if i == 0 {
			for _, k := range keys {
				rows = append(rows, normRow{Name: k})
			}
		}
		for j := range rows {
			n := norms[rows[j].Name]
			rows[j].L1 = append(rows[j].L1, n.L1)
			rows[j].L2 = append(rows[j].L2, n.L2)
		}
	}
	return rows, layout.Family, nil
}

func (r normsReport) print(w io.Writer) error {
	legend(w, r.Members)
	head := []string{"tensor"}
	if r.Layout != "" {
		head[0] = "block (" + r.Layout + ")"
	}
	for i := range r.Members {
		head = append(head, fmt.Sprintf("L1[%d]", i+1), fmt.Sprintf("L2[%d]", i+1))
	}
	table := [][]string{head}
	for _, row := range append(r.Rows, r.Total) {
		cells := []string{row.Name}
		for i := range row.L1 {
			cells = append(cells, fmt.Sprintf("%.6g", row.L1[i]), fmt.Sprintf("%.6g", row.L2[i]))
		}
		table = append(table, cells)
	}
	return printTable(w, table)
}

// printTable prints rows as aligned columns: the first (names) left-aligned,
// the others (numbers) right-aligned.
func printTable(w io.Writer, rows [][]string) error {
	var width []int
	for _, row := range rows {
		for j, c := range row {
			if j == len(width) {
				width = append(width, 0)
			}
			width[j] = max(width[j], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, row := range rows {
		for j, c := range row {
			pad := strings.Repeat(" ", width[j]-utf8.RuneCountInString(c))
			switch {
			case j == 0:
				b.WriteString(c + pad)
			default:
				b.WriteString("  " + pad + c)
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

type cosineReport struct {
	Members []string    `json:"members"`
	Cosine  [][]float64 `json:"cosine"`
}

func (a *app) cosineCmd() *cobra.Command {
	var base string
	c := &cobra.Command{
		Use:   "cosine --base BASE TV...",
		Short: "Pairwise cosine similarity between task vectors",
		Long: `cosine prints the matrix of cosine similarities between whole task vectors
(all float tensors flattened into one vector each), accumulated in float64.`,
		Args: minArgs(1, "at least one task vector"),
		RunE: func(_ *cobra.Command, args []string) error {
			s, stats, err := a.stats(base, args, "cosine")
			if err != nil {
				return err
			}
			defer s.Close()
			r := cosineReport{Members: args, Cosine: tasks.Cosine(stats)}
			if r.Cosine == nil {
				r.Cosine = [][]float64{}
			}
			if a.json {
				return a.printJSON(r)
			}
			legend(a.stdout, args)
			table := [][]string{{""}}
			for i := range args {
				table[0] = append(table[0], fmt.Sprintf("[%d]", i+1))
			}
			for i, row := range r.Cosine {
				cells := []string{fmt.Sprintf("[%d]", i+1)}
				for _, v := range row {
					cells = append(cells, fmt.Sprintf("%.4f", v))
				}
				table = append(table, cells)
			}
			return printTable(a.stdout, table)
		},
	}
	c.Flags().StringVar(&base, "base", "", "the pre-trained checkpoint (required)")
	markPaths(c.Flags(), pathInput, "base")
	a.addNonfinite(c)
	return argsAreInputs(c)
}

// stats opens the set and runs the statistics pass.
func (a *app) stats(base string, members []string, desc string) (*tasks.Set, []tasks.TensorStats, error) {
	s, err := a.openSet(base, members)
	if err != nil {
		return nil, nil, err
	}
	p := a.newProgress(desc)
	stats, err := tasks.Stats(s, tasks.StreamOptions{Progress: p.callback()})
	p.done()
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, stats, nil
}

// legend names the numbered columns.
func legend(w io.Writer, members []string) {
	for i, m := range members {
		fmt.Fprintf(w, "[%d] %s\n", i+1, m)
	}
	fmt.Fprintln(w)
}
