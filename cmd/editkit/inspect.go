package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

// inspectReport is what inspect prints; its JSON form is the --json output.
type inspectReport struct {
	Path       string            `json:"path"`
	Files      []fileReport      `json:"files"`
	FileBytes  int64             `json:"file_bytes"`
	Tensors    int               `json:"tensors"`
	Params     int64             `json:"params"`
	DataBytes  int64             `json:"data_bytes"`
	DTypes     []dtypeReport     `json:"dtypes"`
	TaskVector bool              `json:"task_vector"`
	Metadata   map[string]string `json:"metadata"`
	Layout     layoutReport      `json:"layout"`
	TensorList []tensorReport    `json:"tensor_list,omitempty"`
}

type fileReport struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
}

type dtypeReport struct {
	DType   string `json:"dtype"`
	Tensors int    `json:"tensors"`
	Params  int64  `json:"params"`
	Bytes   int64  `json:"bytes"`
}

type layoutReport struct {
	Family string        `json:"family"`
	Stacks []stackReport `json:"stacks"`
}

type stackReport struct {
	Stack  string `json:"stack"`
	Blocks int    `json:"blocks"`
}

type tensorReport struct {
	Name  string  `json:"name"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
	Stack string  `json:"stack,omitempty"`
	Block *int    `json:"block,omitempty"`
}

func (a *app) inspectCmd() *cobra.Command {
	var pattern string
	var list bool
	c := &cobra.Command{
		Use:   "inspect CHECKPOINT",
		Short: "Describe a checkpoint: files, tensors, dtypes, metadata and block layout",
		Long: `inspect reads a checkpoint's headers (no tensor data) and prints its files,
number of tensors and parameters, dtypes, metadata (with editkit's provenance
when editkit wrote it), whether it is a task vector, and the residual-block
layout editkit detects (used by LiNeS and norms --blocks).`,
		Args: exactArgs(1, "CHECKPOINT"),
		RunE: func(_ *cobra.Command, args []string) error {
			r, err := inspect(args[0], pattern, list)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(r)
			}
			return r.print(a.stdout)
		},
	}
	c.Flags().StringVar(&pattern, "layer-pattern", "", "regular expression with a capture group around the block index, overriding layout detection")
	c.Flags().BoolVar(&list, "tensors", false, "list every tensor with its dtype, shape and block depth")
	return argsAreInputs(c)
}

func inspect(path, pattern string, list bool) (*inspectReport, error) {
	ck, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	r := &inspectReport{Path: path, Metadata: ck.Metadata, TaskVector: tasks.IsTaskVector(ck)}
	if r.Metadata == nil {
		r.Metadata = map[string]string{}
	}
	paths, sizes := ck.Files()
	for i, p := range paths {
		r.Files = append(r.Files, fileReport{Path: p, Bytes: sizes[i]})
		r.FileBytes += sizes[i]
	}
	dtypes := map[string]*dtypeReport{}
	var names []string
	for _, t := range ck.Tensors() {
		names = append(names, t.Name)
		r.Tensors++
		r.Params += t.NumElements()
		r.DataBytes += t.Bytes
		d := dtypes[t.DType.String()]
		if d == nil {
			d = &dtypeReport{DType: t.DType.String()}
			dtypes[d.DType] = d
		}
		d.Tensors++
		d.Params += t.NumElements()
		d.Bytes += t.Bytes
	}
	for _, k := range slices.Sorted(maps.Keys(dtypes)) {
		r.DTypes = append(r.DTypes, *dtypes[k])
	}
	layout, err := checkpoint.NewLayout(names, pattern)
	if err != nil {
		return nil, err
	}
	r.Layout.Family = layout.Family
	stacks := layout.Stacks()
	r.Layout.Stacks = []stackReport{}
	for _, s := range slices.Sorted(maps.Keys(stacks)) {
		r.Layout.Stacks = append(r.Layout.Stacks, stackReport{Stack: s, Blocks: stacks[s]})
	}
	if list {
		for _, t := range ck.Tensors() {
			tr := tensorReport{Name: t.Name, DType: t.DType.String(), Shape: t.Shape}
			if tr.Shape == nil {
				tr.Shape = []int64{}
			}
			if d := layout.Depth(t.Name); d.InBlock() {
				b := d.Block
				tr.Stack, tr.Block = d.Stack, &b
			}
			r.TensorList = append(r.TensorList, tr)
		}
	}
	return r, nil
}

func (r *inspectReport) print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	kind := "model"
	if r.TaskVector {
		kind = "task vector"
		if b := r.Metadata[tasks.BaseKey]; b != "" {
			kind += " (against base " + b + ")"
		}
	}
	fmt.Fprintf(tw, "checkpoint\t%s\n", r.Path)
	fmt.Fprintf(tw, "kind\t%s\n", kind)
	fmt.Fprintf(tw, "files\t%d (%s)\n", len(r.Files), humanBytes(r.FileBytes))
	if len(r.Files) > 1 {
		for _, f := range r.Files {
			fmt.Fprintf(tw, "\t  %s\t%s\n", f.Path, humanBytes(f.Bytes))
		}
	}
	fmt.Fprintf(tw, "tensors\t%d\n", r.Tensors)
	params := fmt.Sprint(r.Params)
	if r.Params >= 1000 {
		params += " (" + humanCount(r.Params) + ")"
	}
	fmt.Fprintf(tw, "parameters\t%s\n", params)
	fmt.Fprintf(tw, "dtypes\t")
	for i, d := range r.DTypes {
		if i > 0 {
			fmt.Fprintf(tw, "\t")
		}
		fmt.Fprintf(tw, "%s: %d tensors, %s params, %s\n", d.DType, d.Tensors, humanCount(d.Params), humanBytes(d.Bytes))
	}
	if len(r.DTypes) == 0 {
		fmt.Fprintln(tw, "-")
	}
	fmt.Fprintf(tw, "layout\t%s\n", r.Layout.Family)
	for _, s := range r.Layout.Stacks {
		fmt.Fprintf(tw, "\t  %s\t%d blocks\n", s.Stack, s.Blocks)
	}
	if len(r.Metadata) > 0 {
		fmt.Fprintf(tw, "metadata\n")
		for _, k := range slices.Sorted(maps.Keys(r.Metadata)) {
			fmt.Fprintf(tw, "\t  %s\t%s\n", k, oneLine(r.Metadata[k], 200))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.TensorList != nil {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TENSOR\tDTYPE\tSHAPE\tBLOCK")
		for _, t := range r.TensorList {
			block := "-"
			if t.Block != nil {
				block = fmt.Sprintf("%s%d", t.Stack, *t.Block)
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", t.Name, t.DType, t.Shape, block)
		}
		return tw.Flush()
	}
	return nil
}

// humanCount formats a parameter count as 1.2M, 7.0B.
func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

// oneLine shortens a metadata value for the table.
func oneLine(s string, max int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// exactArgs is cobra.ExactArgs with a message naming the arguments.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s takes %s (got %d argument(s)); see 'editkit %s --help'", c.Name(), names, len(args), strings.TrimPrefix(c.CommandPath(), "editkit "))
		}
		return nil
	}
}
