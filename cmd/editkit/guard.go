package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
)

// Every command runs the same checks once its flags are parsed and before
// its own work (guardCommands): float flags must be finite and in their
// range, inputs must be files or folders, and every output goes through
// checkpoint.Outputs. What a flag is comes from its annotations, set where
// the flag is registered, so the checks and the test that enumerates every
// command's flags read one declaration.
const (
	// pathKey annotates a flag that names a path with its kind.
	pathKey = "editkit_path"
	// rangeKey annotates a float flag with the interval its value must lie
	// in, e.g. "[0, 1]", "(0, inf)", "(-inf, inf)" (finite only).
	rangeKey = "editkit_range"
	// argsKey annotates a command whose positional arguments are inputs.
	argsKey = "editkit_args"
)

// The kinds of path flags.
const (
	// pathInput is read: no output may be it, lie inside it or hold it.
	pathInput = "input"
	// pathDataset is a dataset: a path, or a name found under the
	// command's --data folder (datasets.Resolve); both are inputs.
	pathDataset = "dataset"
	// pathRoot is a folder searched for inputs (--data): outputs may lie
	// inside it, but may not be it or hold it.
	pathRoot = "root"
	// pathOutput is written, through the guard.
	pathOutput = "output"
	// pathWork is a folder the command owns and reuses (bench --dir); it is
	// neither an input nor an output.
	pathWork = "work"
)

// markPaths annotates flags of fs as paths of a kind. A name that is not a
// flag of fs is a programming error, which the tests meet at once.
func markPaths(fs *pflag.FlagSet, kind string, names ...string) {
	for _, n := range names {
		if err := fs.SetAnnotation(n, pathKey, []string{kind}); err != nil {
			panic(err)
		}
	}
}

// markRange annotates a float flag with the interval its value must lie in.
func markRange(fs *pflag.FlagSet, name, interval string) {
	if _, err := parseInterval(interval); err != nil {
		panic(fmt.Errorf("--%s: %w", name, err))
	}
	if err := fs.SetAnnotation(name, rangeKey, []string{interval}); err != nil {
		panic(err)
	}
}

// argsAreInputs marks a command's positional arguments as inputs.
func argsAreInputs(c *cobra.Command) *cobra.Command {
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations[argsKey] = pathInput
	return c
}

// derivedPaths are the inputs and outputs a command knows only from its
// flags' values (merge --search's records beside -o, the heads and datasets named in
// --search entries).
type derivedPaths func(cmd *cobra.Command) (inputs []string, outputs []checkpoint.Output, err error)

// derive registers c's derived paths.
func (a *app) derive(c *cobra.Command, fn derivedPaths) {
	if a.derived == nil {
		a.derived = map[*cobra.Command]derivedPaths{}
	}
	a.derived[c] = fn
}

// guardCommands wraps the RunE of c and of every command under it with
// checkFlags.
func (a *app) guardCommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		a.guardCommands(sub)
	}
	if c.RunE == nil {
		return
	}
	run := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if err := a.checkFlags(cmd, args); err != nil {
			return err
		}
		return run(cmd, args)
	}
}

// checkFlags checks a command's float flags and paths before it starts
// work, and removes the stale temporaries of its outputs with a notice.
func (a *app) checkFlags(cmd *cobra.Command, args []string) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err == nil {
			err = checkFloatFlag(f)
		}
	})
	if err != nil {
		return err
	}
	o := &checkpoint.Outputs{}
	if f := cmd.Flags().Lookup("force"); f != nil {
		o.Force = f.Value.String() == "true"
	}
	// addInput records an existing input path; label names its flag ("" for
	// arguments).
	addInput := func(label, p string) error {
		if p == "" {
			return nil
		}
		if _, err := os.Stat(p); err != nil {
			return nil // a dataset name, or missing: the command says so
		}
		if err := checkpoint.CheckReadable(p); err != nil {
			if label == "" {
				return err
			}
			return fmt.Errorf("%s: %w", label, err)
		}
		o.Inputs = append(o.Inputs, p)
		return nil
	}
	type dataset struct{ label, name string }
	var sets []dataset
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		kind := f.Annotations[pathKey]
		if err != nil || len(kind) == 0 {
			return
		}
		for _, p := range flagValues(f) {
			switch kind[0] {
			case pathInput:
				err = addInput(flagLabel(f), p)
			case pathDataset:
				err = addInput(flagLabel(f), p) // a folder or file given as a path
				sets = append(sets, dataset{flagLabel(f), p})
			case pathRoot:
				if p != "" {
					o.Roots = append(o.Roots, p)
				}
			case pathOutput:
				if p != "" {
					o.List = append(o.List, checkpoint.Output{Flag: flagLabel(f), Path: p})
				}
			}
			if err != nil {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	for _, d := range sets {
		if dir := resolveDataset(d.name, o.Roots); dir != "" && dir != d.name {
			if err := addInput(d.label, dir); err != nil {
				return err
			}
		}
	}
	if cmd.Annotations[argsKey] == pathInput {
		for _, p := range args {
			if err := addInput("", p); err != nil {
				return err
			}
		}
	}
	if fn := a.derived[cmd]; fn != nil {
		ins, outs, err := fn(cmd)
		if err != nil {
			return err
		}
		for _, p := range ins {
			if err := addInput("", p); err != nil {
				return err
			}
		}
		o.List = append(o.List, outs...)
	}
	removed, err := o.Check()
	for _, r := range removed {
		if r.RestoredTo != "" {
			fmt.Fprintf(a.stderr, "editkit: notice: %s, the previous output a killed run had moved aside\n", r)
		} else {
			fmt.Fprintf(a.stderr, "editkit: notice: removed %s, a partial output left by an interrupted run\n", r)
		}
	}
	a.out = o
	return err
}

// resolveDataset returns the folder a dataset flag's value names, found
// as the command will find it (under roots[0], the command's --data, when
// given), or "" when there is none: the command then says why.
func resolveDataset(name string, roots []string) string {
	var o datasets.Options
	if len(roots) > 0 {
		o.DataDir = roots[0] // "": $EDITKIT_DATA or the default
	}
	dir, err := datasets.Resolve(name, o)
	if err != nil {
		return ""
	}
	return dir
}

// flagLabel is how messages name a flag: -o for --output, else --name.
func flagLabel(f *pflag.Flag) string {
	if f.Shorthand != "" {
		return "-" + f.Shorthand
	}
	return "--" + f.Name
}

// flagValues are a string or list flag's values.
func flagValues(f *pflag.Flag) []string {
	if s, ok := f.Value.(pflag.SliceValue); ok {
		return s.GetSlice()
	}
	return []string{f.Value.String()}
}

// writeFile writes a side output (a table, a record) through the guard the
// command's outputs were checked by: atomically, never over an input,
// never over an existing file without --force.
func (a *app) writeFile(path string, data []byte) error {
	return checkpoint.WriteFile(path, data, a.outputOptions())
}

// outputOptions are the write options of the command's checked outputs.
func (a *app) outputOptions() checkpoint.WriteOptions {
	if a.out == nil {
		return checkpoint.WriteOptions{}
	}
	return checkpoint.WriteOptions{Force: a.out.Force, Inputs: a.out.Inputs}
}

// interval is a closed, open or half-open range of float values.
type interval struct {
	lo, hi         float64
	loOpen, hiOpen bool
	text           string
}

// parseInterval parses "[a, b]", "(a, b)", "[a, b)" or "(a, b]"; a and b
// are numbers, -inf or inf.
func parseInterval(s string) (interval, error) {
	iv := interval{text: s}
	t := strings.TrimSpace(s)
	if len(t) < 5 || !strings.ContainsAny(t[:1], "[(") || !strings.ContainsAny(t[len(t)-1:], "])") {
		return iv, fmt.Errorf("range %q: want [a, b], (a, b), [a, b) or (a, b]", s)
	}
	iv.loOpen, iv.hiOpen = t[0] == '(', t[len(t)-1] == ')'
	lo, hi, ok := strings.Cut(t[1:len(t)-1], ",")
	if !ok {
		return iv, fmt.Errorf("range %q: want two bounds", s)
	}
	var err error
	if iv.lo, err = strconv.ParseFloat(strings.TrimSpace(lo), 64); err != nil || math.IsNaN(iv.lo) {
		return iv, fmt.Errorf("range %q: lower bound %q", s, lo)
	}
	if iv.hi, err = strconv.ParseFloat(strings.TrimSpace(hi), 64); err != nil || math.IsNaN(iv.hi) || iv.hi < iv.lo {
		return iv, fmt.Errorf("range %q: upper bound %q", s, hi)
	}
	return iv, nil
}

func (iv interval) contains(x float64) bool {
	if x < iv.lo || x > iv.hi || (iv.loOpen && x == iv.lo) || (iv.hiOpen && x == iv.hi) {
		return false
	}
	return true
}

// describe says what the interval allows, in words.
func (iv interval) describe() string {
	lo, hi := !math.IsInf(iv.lo, -1), !math.IsInf(iv.hi, 1)
	op := func(open bool, strict, loose string) string {
		if open {
			return strict
		}
		return loose
	}
	switch {
	case lo && hi:
		return "in " + iv.text
	case lo:
		return op(iv.loOpen, "> ", "≥ ") + strconv.FormatFloat(iv.lo, 'g', -1, 64)
	case hi:
		return op(iv.hiOpen, "< ", "≤ ") + strconv.FormatFloat(iv.hi, 'g', -1, 64)
	}
	return "a finite number"
}

// checkFloatFlag refuses NaN, ±Inf and values outside the flag's range for
// a float flag that declares one.
func checkFloatFlag(f *pflag.Flag) error {
	r := f.Annotations[rangeKey]
	if len(r) == 0 {
		return nil
	}
	iv, err := parseInterval(r[0])
	if err != nil {
		return err
	}
	for _, s := range flagValues(f) {
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%s %s: not a number", flagLabel(f), s)
		}
		switch {
		case (math.IsNaN(x) || math.IsInf(x, 0)) && math.IsInf(iv.lo, -1) && math.IsInf(iv.hi, 1):
			return fmt.Errorf("%s %s: give a finite number", flagLabel(f), s)
		case math.IsNaN(x) || math.IsInf(x, 0):
			return fmt.Errorf("%s %s: give a finite number %s", flagLabel(f), s, iv.describe())
		case !iv.contains(x):
			return fmt.Errorf("%s %s: it must be %s", flagLabel(f), s, iv.describe())
		}
	}
	return nil
}
