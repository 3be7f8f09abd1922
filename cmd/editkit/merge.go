package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/tasks"
)

// mergeSideFile is the record of the recipe written beside the merged model.
const mergeSideFile = "editkit_merge.yaml"

// Provenance metadata keys of a merged model.
const (
	methodKey = "editkit.method"
	paramsKey = "editkit.params"
	inputsKey = "editkit.inputs"
)

// mergeFlags are the merge command's flags. The recipe's parameters are
// generated from merge.Params: values holds each one's text as given.
type mergeFlags struct {
	o                       outFlags
	config, base, method    string
	models                  []string
	values                  map[string]*string
	bools                   map[string]*bool
	saveMasks, layerPattern string
}

// recipeFlags set the recipe, which a --config file sets instead.
func recipeFlags() []string {
	names := []string{"base", "models", "method", "layer-pattern"}
	for _, p := range merge.Params() {
		if p.Flag != "" {
			names = append(names, p.Flag)
		}
	}
	return names
}

func (a *app) mergeCmd() *cobra.Command {
	f := &mergeFlags{values: map[string]*string{}, bools: map[string]*bool{}}
	sf := &searchFlags{}
	c := &cobra.Command{
		Use:   "merge --base BASE --models FT1 FT2... --method METHOD -o OUT | merge --config FILE.yaml -o OUT",
		Short: "Merge fine-tuned models (task arithmetic, TIES, DARE, Breadcrumbs, DELLA, consensus, Model Stock, SLERP, LiNeS, ...)",
		Long: `merge combines fine-tuned models of one base into one model.

With flags, methods follow their papers' reference code (see the merge
package): task_arithmetic (needs --lambda for several models), ties (trims
to --density 0.2 over the whole model by default, --ties-scope tensor for
per-tensor trimming), dare_linear and dare_ties (need --density, seeded by
--seed), breadcrumbs and breadcrumbs_ties (need --density, --gamma), consensus
(TALL masks: --k, --tall-lambda, --consensus-base, --save-masks), linear
(weighted average of the --models; the base only supplies the layout and the
integer tensors), model_stock (--filter-wise) and slerp (--t; one model);
della, della_linear, sce, nuslerp, karcher, multislerp and arcee_fusion as
mergekit defines them with a base_model (karcher, like linear, averages the
--models only; a configuration's base_model takes part in its mean, as in
mergekit). --lines-alpha/--lines-beta add LiNeS layer scaling to
any method (to its merged θ − θ₀). The models may be fine-tuned checkpoints
or stored task vectors. A flag the method does not read is an error.

With --config, a mergekit YAML configuration sets the recipe with mergekit's
semantics: merge_method (any method above; consensus is an editkit
extension), base_model, models with per-model parameters or slices with
layer_range (passthrough stacks layers: config.json's layer count follows),
parameters as numbers, gradients over the layers ([0, 0.5, 1]) and
{filter, value} conditions on tensor names, dtype (the arithmetic's
precision) and out_dtype, tokenizer_source (base, union or a model) or
tokenizer, and chat_template. int8_mask is accepted: it only changes how
mergekit stores its masks, never the result. What mergekit ignores (unknown
keys, parameters the method does not read) is reported as a warning; what
editkit cannot do (modules, multi-stage files) is an error, and every
problem of a file is reported at once with its line. The recipe flags
conflict with --config. Model paths in the file are used as given, relative
to the current directory, as mergekit does.

Parameters (--flag, or the YAML key in parentheses):
` + paramHelp() + `
The output gets the recipe as ` + mergeSideFile + ` and provenance metadata
(editkit.method, editkit.params, editkit.inputs).`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected argument %q: list the models right after --models", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if sf.requested(cmd) {
				return a.runMergeSearch(cmd, f, sf)
			}
			return a.runMerge(cmd, f)
		},
	}
	fs := c.Flags()
	fs.StringVar(&f.config, "config", "", "mergekit YAML configuration (instead of the recipe flags)")
	fs.StringVar(&f.base, "base", "", "pre-trained checkpoint the models were fine-tuned from")
	fs.StringSliceVar(&f.models, "models", nil, "fine-tuned checkpoints or task vectors: --models FT1 FT2 ...")
	fs.StringVar(&f.method, "method", "", "merge method: "+merge.MethodNames())
	for _, p := range merge.Params() {
		if p.Flag == "" {
			continue
		}
		if p.Kind == merge.Bool {
			f.bools[p.Name] = fs.Bool(p.Flag, false, flagHelp(&p))
			continue
		}
		f.values[p.Name] = fs.String(p.Flag, "", flagHelp(&p))
	}
	fs.StringVar(&f.saveMasks, "save-masks", "", "consensus: where to save the TALL and consensus masks, bit-packed (a .safetensors file, or a folder)")
	fs.StringVar(&f.layerPattern, "layer-pattern", "", "LiNeS: regular expression with a capture group around the block index, overriding layout detection")
	f.o.register(fs, "dtype of the output's float tensors (default: the base's)")
	a.addNonfinite(c)
	sf.register(fs)
	markPaths(fs, pathInput, "config", "base", "models")
	markPaths(fs, pathOutput, "save-masks")
	markPaths(fs, pathRoot, "data")
	a.derive(c, func(cmd *cobra.Command) ([]string, []checkpoint.Output, error) {
		if !sf.requested(cmd) || f.o.out == "" {
			return nil, nil, nil
		}
		var ins []string
		for _, s := range sf.entries {
			if e, err := parseSearchEntry(s); err == nil {
				ins = append(ins, e.head, e.dataset)
				if dir := resolveDataset(e.dataset, []string{sf.data}); dir != "" {
					ins = append(ins, dir)
				}
			}
		}
		var outs []checkpoint.Output
		for _, p := range eval.RecordPaths(f.o.out) {
			outs = append(outs, checkpoint.Output{Flag: "the search record", Path: p})
		}
		return ins, outs, nil
	})
	return c
}

// flagHelp is a parameter's --help line, from the table.
func flagHelp(p *merge.Param) string {
	var b strings.Builder
	b.WriteString(p.Doc)
	if r := p.Range(); r != "" {
		b.WriteString(", in " + r)
	}
	if len(p.Choices) > 0 {
		b.WriteString(": " + strings.Join(p.Choices, " or "))
	}
	if p.Kind == merge.Floats {
		b.WriteString("; one value, or one per model (comma-separated)")
	}
	methods := p.MethodsUsing(merge.Paper)
	if len(methods) > 0 {
		names := make([]string, len(methods))
		for i, m := range methods {
			names[i] = string(m)
		}
		b.WriteString(" [" + strings.Join(names, ", ") + "]")
	}
	if p.Name != "lines_alpha" && p.Name != "lines_beta" {
		b.WriteString(" (default: " + p.DefaultText(merge.Paper) + ")")
	}
	return b.String()
}

// paramHelp lists the parameters of a mergekit configuration, from the
// table.
func paramHelp() string {
	var b strings.Builder
	for _, p := range merge.Params() {
		if !p.YAML {
			continue
		}
		name := p.Name
		if p.Flag != "" {
			name = "--" + p.Flag + " (" + p.Name + ")"
		}
		fmt.Fprintf(&b, "  %s: %s", name, p.Doc)
		if p.Kind == merge.Floats {
			b.WriteString("; per model")
		}
		fmt.Fprintf(&b, "; mergekit default %s\n", p.DefaultText(merge.Mergekit))
	}
	return b.String()
}

// mergeJob is a merge ready to run: everything checked that can be checked
// without reading tensor data.
type mergeJob struct {
	cfg     *merge.Config
	base    string
	models  []string
	wo      tasks.WriteOptions
	recipe  []byte // the side file
	dtype   string
	plan    *merge.YAMLPlan
	fromCfg bool
}

func (a *app) runMerge(cmd *cobra.Command, f *mergeFlags) error {
	start := time.Now()
	job, err := prepareMerge(cmd, f)
	if err != nil {
		return err
	}
	if job.plan != nil && !a.quiet {
		for _, w := range job.plan.Warnings {
			fmt.Fprintf(a.stderr, "editkit: warning: %s\n", w)
		}
	}
	var s *tasks.Set
	var inputs []inputRecord
	if job.plan != nil {
		prep, err := job.plan.Open(f.o.out)
		if err != nil {
			return err
		}
		defer prep.Close()
		if !a.quiet {
			for _, w := range prep.Warnings {
				fmt.Fprintf(a.stderr, "editkit: warning: %s\n", w)
			}
		}
		s = prep.Set
		s.AllowNonfinite = a.allowNonfinite
		job.cfg = &prep.Config
		for name, data := range prep.SideFiles {
			job.wo.SideFiles[name] = data
		}
		job.wo.Inputs = prep.Inputs
		if job.wo.DType == 0 {
			job.wo.DType = prep.OutDType
		}
		for i, p := range prep.Inputs {
			inputs = append(inputs, inputRecord{Path: p, Bytes: prep.InputSizes[i]})
		}
	} else {
		if s, err = a.openSet(job.base, job.models); err != nil {
			return err
		}
		defer s.Close()
		inputs = setInputs(s)
	}
	if err := checkpoint.CheckOutput(f.o.out, append(job.wo.Inputs, s.Inputs()...), f.o.force); err != nil {
		return err
	}
	if err := job.provenance(inputs); err != nil {
		return err
	}
	linMeta, err := a.linearizedMeta("merge", job.base, job.models)
	if err != nil {
		return err
	}
	job.wo.Metadata = withMetadata(job.wo.Metadata, linMeta)
	p := a.newProgress("merging (" + string(job.cfg.Method) + ")")
	res, err := merge.Run(s, job.cfg, f.o.out, job.wo, tasks.StreamOptions{Progress: p.callback()})
	p.done()
	if err != nil {
		return flagError(err, job.fromCfg)
	}
	var read int64
	for _, in := range inputs {
		read += in.Bytes
	}
	return a.finish(writeSummary{
		Command: "merge", Output: f.o.out, Method: string(res.Method), Params: res.Params,
		Passes: res.Passes, InputBytes: read, Saturated: f.o.saturatedCount(),
	}, start)
}

// flagError words a merge.ParamError in command-line terms (--density ...).
func flagError(err error, fromConfig bool) error {
	var pe *merge.ParamError
	if fromConfig || !errors.As(err, &pe) {
		return err
	}
	if p := merge.ParamByName(pe.Param); p != nil && p.Flag != "" {
		return errors.New(pe.Message("--" + p.Flag))
	}
	return err
}

// prepareMerge turns the flags (or the YAML file) into a validated recipe,
// so every mistake in them is reported before any input is opened.
func prepareMerge(cmd *cobra.Command, f *mergeFlags) (*mergeJob, error) {
	job := &mergeJob{dtype: f.o.dtype}
	var err error
	if f.config != "" {
		err = job.fromConfig(cmd, f)
	} else {
		err = job.fromFlags(cmd, f)
	}
	if err != nil {
		return nil, err
	}
	wo, err := f.o.options()
	if err != nil {
		return nil, err
	}
	if job.dtype != f.o.dtype { // set by the configuration
		if wo.DType, err = checkpoint.ParseFloatDType(job.dtype); err != nil {
			return nil, fmt.Errorf("%s: %w", f.config, err)
		}
	}
	wo.SideFiles = map[string][]byte{}
	job.wo = wo
	if job.plan != nil {
		return job, nil // checked when parsed; resolved per tensor when opened
	}
	job.cfg.MasksOut = f.saveMasks
	if _, err := job.cfg.Resolve(len(job.models)); err != nil {
		return nil, flagError(err, false)
	}
	return job, nil
}

func (job *mergeJob) fromConfig(cmd *cobra.Command, f *mergeFlags) error {
	for _, name := range recipeFlags() {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s conflicts with --config %s: the configuration file sets the recipe; edit it instead", name, f.config)
		}
	}
	if f.saveMasks != "" {
		return fmt.Errorf("--save-masks works with the recipe flags, not --config %s", f.config)
	}
	data, err := os.ReadFile(f.config)
	if err != nil {
		return fmt.Errorf("reading merge configuration: %w", err)
	}
	plan, err := merge.ParseMergekitYAML(data, f.config)
	if err != nil {
		return err
	}
	if plan.OutDType != "" {
		if cmd.Flags().Changed("dtype") {
			return fmt.Errorf("--dtype conflicts with --config %s, which sets the output dtype (%s)", f.config, plan.OutDType)
		}
		job.dtype = plan.OutDType
	}
	cfg := plan.Config
	job.cfg, job.base, job.recipe, job.fromCfg, job.plan = &cfg, plan.Base, plan.Raw, true, plan
	for i := range plan.Slices {
		for _, m := range plan.Members(i) {
			job.models = append(job.models, m.Model)
		}
	}
	return nil
}

func (job *mergeJob) fromFlags(cmd *cobra.Command, f *mergeFlags) error {
	if f.method == "" {
		return fmt.Errorf("no --method given (one of %s), or pass --config FILE.yaml", merge.MethodNames())
	}
	m, err := merge.ParseMethod(f.method)
	if err != nil {
		return fmt.Errorf("--method: %w", err)
	}
	if !m.CLI() {
		return fmt.Errorf("--method %s stacks layer ranges of models: give it in a configuration with slices: (--config FILE.yaml)", m)
	}
	if f.base == "" {
		return errors.New("no --base given: pass the pre-trained checkpoint the models were fine-tuned from")
	}
	if len(f.models) == 0 {
		return errors.New("no --models given: pass the fine-tuned checkpoints or task vectors to merge, --models FT1 FT2 ...")
	}
	cfg := &merge.Config{Method: m, Semantics: merge.Paper}
	changed := cmd.Flags().Changed
	for _, p := range merge.Params() {
		if p.Flag == "" || !changed(p.Flag) {
			continue
		}
		var v any
		if p.Kind == merge.Bool {
			v = *f.bools[p.Name]
		} else if v, err = p.ParseFlag(*f.values[p.Name]); err != nil {
			return flagError(err, false)
		}
		if err := m.Applies(p.Name, merge.Paper); err != nil {
			err.Value = v
			return errors.New(err.Message("--" + p.Flag))
		}
		p.Set(cfg, v)
	}
	if cfg.Lines != nil {
		cfg.Lines.LayerPattern = f.layerPattern
	} else if changed("layer-pattern") {
		return errors.New("--layer-pattern applies to LiNeS: give --lines-alpha and/or --lines-beta")
	}
	job.cfg, job.base, job.models = cfg, f.base, f.models
	return nil
}

// inputRecord is one entry of the editkit.inputs metadata.
type inputRecord struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
}

// setInputs records a set's base and members.
func setInputs(s *tasks.Set) []inputRecord {
	inputs := []inputRecord{{Path: s.Base.Path, Bytes: s.Base.Size()}}
	for _, m := range s.Members {
		inputs = append(inputs, inputRecord{Path: m.Path, Bytes: m.Size()})
	}
	return inputs
}

// provenance fills the output's metadata and side file. Everything in them
// is derived from the command line and the inputs' sizes, never from the
// clock or the working directory, so two runs write identical files.
func (job *mergeJob) provenance(inputs []inputRecord) error {
	params, err := json.Marshal(job.cfg.Params())
	if err != nil {
		return fmt.Errorf("recording merge parameters: %w", err)
	}
	ins, err := json.Marshal(inputs)
	if err != nil {
		return fmt.Errorf("recording merge inputs: %w", err)
	}
	job.wo.Metadata = map[string]string{
		methodKey: string(job.cfg.Method),
		paramsKey: string(params),
		inputsKey: string(ins),
	}
	if !job.fromCfg {
		if job.recipe, err = job.recipeYAML(); err != nil {
			return err
		}
	}
	if job.wo.SideFiles == nil {
		job.wo.SideFiles = map[string][]byte{}
	}
	job.wo.SideFiles[mergeSideFile] = job.recipe
	return nil
}

// recipeYAML records a command-line merge. It is editkit's own record, not
// a mergekit configuration: the command line follows the papers' semantics,
// which mergekit does not implement.
func (job *mergeJob) recipeYAML() ([]byte, error) {
	params := job.cfg.Params()
	delete(params, "method")
	semantics, _ := params["semantics"].(string)
	delete(params, "semantics")
	rec := struct {
		Method     string         `yaml:"method"`
		Semantics  string         `yaml:"semantics"`
		Base       string         `yaml:"base_model"`
		Models     []string       `yaml:"models"`
		Parameters map[string]any `yaml:"parameters"`
		DType      string         `yaml:"dtype,omitempty"`
	}{string(job.cfg.Method), semantics, job.base, job.models, params, job.dtype}
	var b bytes.Buffer
	b.WriteString("# editkit merge recipe (" + semantics + " semantics): the command line's\n" +
		"# parameters with editkit's defaults filled in. This is editkit's record,\n" +
		"# not a mergekit configuration.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(rec); err != nil {
		return nil, fmt.Errorf("recording the merge recipe: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("recording the merge recipe: %w", err)
	}
	return b.Bytes(), nil
}
