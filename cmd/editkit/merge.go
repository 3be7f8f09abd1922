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

// mergeFlags are the merge command's flags.
type mergeFlags struct {
	o                                       outFlags
	config, base, method                    string
	models                                  []string
	weights, density, tallLambda            string
	lambda, gamma, t, linesAlpha, linesBeta float64
	seed                                    uint64
	k                                       int
	consensusBase, tiesScope, tiesAggregate string
	saveMasks, layerPattern                 string
	filterWise                              bool
}

// recipeFlags set the recipe, which a --config file sets instead.
var recipeFlags = []string{"base", "models", "method", "weights", "density", "lambda", "gamma", "t", "seed", "k",
	"tall-lambda", "consensus-base", "ties-scope", "ties-aggregate", "lines-alpha", "lines-beta", "layer-pattern", "filter-wise"}

func (a *app) mergeCmd() *cobra.Command {
	f := &mergeFlags{}
	sf := &searchFlags{}
	c := &cobra.Command{
		Use:   "merge --base BASE --models FT1 FT2... --method METHOD -o OUT | merge --config FILE.yaml -o OUT",
		Short: "Merge fine-tuned models (task arithmetic, TIES, DARE, Breadcrumbs, consensus, Model Stock, SLERP, LiNeS)",
		Long: `merge combines fine-tuned models of one base into one model.

With flags, methods follow their papers' reference code (see the merge
package): task_arithmetic (needs --lambda for several models), ties (trims
to --density 0.2 over the whole model by default, --ties-scope tensor for
per-tensor trimming), dare_linear and dare_ties (need --density, seeded by
--seed), breadcrumbs and breadcrumbs_ties (need --density, --gamma), consensus
(TALL masks: --k, --tall-lambda, --consensus-base, --save-masks), linear
(weighted average of the --models; the base only supplies the layout and the
integer tensors), model_stock (--filter-wise) and slerp (--t; one model).
--lines-alpha/--lines-beta add LiNeS layer scaling to any task-vector method.
The models may be fine-tuned checkpoints or stored task vectors.

With --config, a mergekit YAML configuration sets the recipe with mergekit's
semantics: merge_method (any method above; consensus is an editkit extension),
base_model, models with per-model weight, density and gamma, top-level
parameters (weight, density, gamma, lambda, normalize, rescale, t,
filter_wise; editkit's extensions ties_scope, seed, k, tall_lambda,
consensus_base), dtype/out_dtype and tokenizer_source: base. Anything editkit
cannot honour exactly (slices, modules, layer gradients, filtered
parameters, ...) is an error naming it. The recipe flags conflict with
--config. Model paths in the file are used as given, relative to the current
directory, as mergekit does.

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
	fs.StringVar(&f.method, "method", "", "merge method: "+methodNames())
	fs.StringVar(&f.weights, "weights", "", "per-model weights w1,w2,... (default all 1)")
	fs.StringVar(&f.density, "density", "", "fraction of entries kept (TIES, DARE, Breadcrumbs): one value or one per model")
	fs.Float64Var(&f.lambda, "lambda", 0, "scaling coefficient of the merged task vector")
	fs.Float64Var(&f.gamma, "gamma", 0, "Breadcrumbs: fraction of largest entries dropped (default 0.01)")
	fs.Float64Var(&f.t, "t", 0, "SLERP interpolation factor: 0 gives the base, 1 the other model")
	fs.Uint64Var(&f.seed, "seed", 0, "seed of DARE's random drops")
	fs.IntVar(&f.k, "k", 0, "consensus: number of TALL masks that must keep an entry (default 2)")
	fs.StringVar(&f.tallLambda, "tall-lambda", "", "consensus: TALL-mask λ, one value or one per model (default 0.4)")
	fs.StringVar(&f.consensusBase, "consensus-base", "", "consensus: multi-task vector to mask, ta (Σ τ) or ties (default ta)")
	fs.StringVar(&f.tiesScope, "ties-scope", "", "TIES trimming over the whole model (model, the paper's) or per tensor (tensor)")
	fs.StringVar(&f.tiesAggregate, "ties-aggregate", "", "TIES disjoint merge: mean (default) or sum")
	fs.StringVar(&f.saveMasks, "save-masks", "", "consensus: where to save the TALL and consensus masks, bit-packed (a .safetensors file, or a folder)")
	fs.Float64Var(&f.linesAlpha, "lines-alpha", 0, "LiNeS: scale of the first block (α)")
	fs.Float64Var(&f.linesBeta, "lines-beta", 0, "LiNeS: added scale at the last block (β)")
	fs.StringVar(&f.layerPattern, "layer-pattern", "", "LiNeS: regular expression with a capture group around the block index, overriding layout detection")
	fs.BoolVar(&f.filterWise, "filter-wise", false, "model_stock: one interpolation ratio per output row instead of per tensor")
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
		var heads []string
		for _, s := range sf.entries {
			if e, err := parseSearchEntry(s); err == nil {
				heads = append(heads, e.head)
			}
		}
		var outs []checkpoint.Output
		for _, p := range eval.RecordPaths(f.o.out) {
			outs = append(outs, checkpoint.Output{Flag: "the search record", Path: p})
		}
		return heads, outs, nil
	})
	return c
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
	fromCfg bool
}

func (a *app) runMerge(cmd *cobra.Command, f *mergeFlags) error {
	start := time.Now()
	job, err := prepareMerge(cmd, f)
	if err != nil {
		return err
	}
	s, err := a.openSet(job.base, job.models)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := checkpoint.CheckOutput(f.o.out, s.Inputs(), f.o.force); err != nil {
		return err
	}
	if err := job.provenance(s); err != nil {
		return err
	}
	linMeta, err := linearizedMergeMeta(job.base, job.models)
	if err != nil {
		return err
	}
	job.wo.Metadata = withMetadata(job.wo.Metadata, linMeta)
	p := a.newProgress("merging (" + string(job.cfg.Method) + ")")
	res, err := merge.Run(s, job.cfg, f.o.out, job.wo, tasks.StreamOptions{Progress: p.callback()})
	p.done()
	if err != nil {
		return err
	}
	return a.finish(writeSummary{
		Command: "merge", Output: f.o.out, Method: string(res.Method), Params: res.Params,
		Passes: res.Passes, InputBytes: inputBytes(s),
	}, start)
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
	job.wo = wo
	job.cfg.MasksOut = f.saveMasks
	if err := job.cfg.Validate(len(job.models)); err != nil {
		return nil, err
	}
	return job, nil
}

func (job *mergeJob) fromConfig(cmd *cobra.Command, f *mergeFlags) error {
	for _, name := range recipeFlags {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s conflicts with --config %s: the configuration file sets the recipe; edit it instead", name, f.config)
		}
	}
	data, err := os.ReadFile(f.config)
	if err != nil {
		return fmt.Errorf("reading merge configuration: %w", err)
	}
	plan, err := merge.ParseMergekitYAML(data, f.config)
	if err != nil {
		return err
	}
	if plan.DType != "" {
		if cmd.Flags().Changed("dtype") {
			return fmt.Errorf("--dtype conflicts with --config %s, which sets the output dtype (%s)", f.config, plan.DType)
		}
		job.dtype = plan.DType
	}
	cfg := plan.Config
	job.cfg, job.base, job.models, job.recipe, job.fromCfg = &cfg, plan.Base, plan.Models, plan.Raw, true
	return nil
}

func (job *mergeJob) fromFlags(cmd *cobra.Command, f *mergeFlags) error {
	if f.method == "" {
		return fmt.Errorf("no --method given (one of %s), or pass --config FILE.yaml", methodNames())
	}
	m, err := merge.ParseMethod(f.method)
	if err != nil {
		return fmt.Errorf("--method: %w", err)
	}
	if f.base == "" {
		return errors.New("no --base given: pass the pre-trained checkpoint the models were fine-tuned from")
	}
	if len(f.models) == 0 {
		return errors.New("no --models given: pass the fine-tuned checkpoints or task vectors to merge, --models FT1 FT2 ...")
	}
	cfg := &merge.Config{Method: m, Semantics: merge.Paper}
	changed := cmd.Flags().Changed
	if changed("weights") {
		if cfg.Weights, err = parseFloats("weights", f.weights); err != nil {
			return err
		}
	}
	if changed("density") {
		if cfg.Density, err = parseFloats("density", f.density); err != nil {
			return err
		}
	}
	if changed("tall-lambda") {
		if cfg.TallLambda, err = parseFloats("tall-lambda", f.tallLambda); err != nil {
			return err
		}
	}
	if changed("lambda") {
		cfg.Lambda = &f.lambda
	}
	if changed("gamma") {
		cfg.Gamma = &f.gamma
	}
	if changed("t") {
		cfg.T = &f.t
	}
	if changed("k") {
		if f.k <= 0 {
			return fmt.Errorf("--k %d: give the number of masks (≥ 1) that must keep an entry", f.k)
		}
		cfg.K = f.k
	}
	cfg.Seed = f.seed
	cfg.ConsensusBase, cfg.TIESScope, cfg.TIESAggregate = f.consensusBase, f.tiesScope, f.tiesAggregate
	cfg.FilterWise = f.filterWise
	if changed("lines-alpha") || changed("lines-beta") {
		cfg.Lines = &merge.Lines{LayerPattern: f.layerPattern}
		if changed("lines-alpha") {
			cfg.Lines.Alpha = &f.linesAlpha
		}
		if changed("lines-beta") {
			cfg.Lines.Beta = &f.linesBeta
		}
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

// provenance fills the output's metadata and side file. Everything in them
// is derived from the command line and the inputs' sizes, never from the
// clock or the working directory, so two runs write identical files.
func (job *mergeJob) provenance(s *tasks.Set) error {
	params, err := json.Marshal(job.cfg.Params())
	if err != nil {
		return fmt.Errorf("recording merge parameters: %w", err)
	}
	inputs := []inputRecord{{Path: s.Base.Path, Bytes: s.Base.Size()}}
	for _, m := range s.Members {
		inputs = append(inputs, inputRecord{Path: m.Path, Bytes: m.Size()})
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
	job.wo.SideFiles = map[string][]byte{mergeSideFile: job.recipe}
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

func methodNames() string {
	names := make([]string, len(merge.Methods))
	for i, m := range merge.Methods {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}
