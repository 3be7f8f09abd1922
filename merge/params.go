package merge

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Kind is the type of a parameter's value.
type Kind int

// Parameter kinds.
const (
	// Float is one number for the whole merge (a method parameter).
	Float Kind = iota
	// Floats is a number per model: one value for all models, or one each
	// (mergekit's tensor parameters).
	Floats
	// Int is a whole number.
	Int
	// Uint is a non-negative whole number (seeds).
	Uint
	// Bool is true or false.
	Bool
	// String is one of Param.Choices, or free text when there are none.
	String
)

// Param declares one merge parameter. The table of them, [Params], is the
// only place a parameter is spelled out: the command line's flags and
// --help, the mergekit YAML reader, Config.Resolve's defaults and range
// checks, and Config.Params all read it.
type Param struct {
	// Name is mergekit's key (YAML) and the name in provenance records.
	Name string
	// Flag is the command-line flag without dashes; empty when only a
	// configuration file sets the parameter.
	Flag string
	Kind Kind
	// Doc says what the parameter is, in one line.
	Doc string
	// Min and Max bound a number (±Inf: unbounded); MinOpen and MaxOpen
	// exclude the bound itself. Every number must also be finite.
	Min, Max         float64
	MinOpen, MaxOpen bool
	// Choices lists the values a String parameter takes.
	Choices []string
	// Source is where the parameter and its default come from.
	Source string
	// Mergekit marks parameters that exist in mergekit (the others are
	// editkit's own, accepted in a YAML configuration as extensions or not
	// at all).
	Mergekit bool
	// YAML is false for command-line-only parameters (LiNeS's).
	YAML bool

	field func(c *Config) fieldRef
}

// fieldRef points at the Config field that holds a parameter.
type fieldRef struct {
	f  **float64
	fs *[]float64
	i  **int
	u  *uint64
	b  **bool
	s  *string
	// set and get reach fields behind a pointer (LiNeS's).
	set func(any)
	get func() any
}

// Params returns the parameter table, a copy callers may keep.
func Params() []Param {
	out := make([]Param, len(paramTable))
	for i, p := range paramTable {
		out[i] = *p
	}
	return out
}

// paramTable is the parameter table; [Params] and [ParamByName] hand out
// copies, so no caller can change what the others read.
var paramTable = []*Param{
	{Name: "weight", Flag: "weights", Kind: Floats, Mergekit: true, YAML: true, Min: math.Inf(-1), Max: math.Inf(1),
		Doc:    "per-model weight of each model (or task vector)",
		Source: "mergekit tensor parameter `weight`",
		field:  func(c *Config) fieldRef { return fieldRef{fs: &c.Weights} }},
	{Name: "density", Flag: "density", Kind: Floats, Mergekit: true, YAML: true, Min: 0, Max: 1, MinOpen: true,
		Doc:    "fraction of each task vector's entries kept",
		Source: "TIES (Yadav et al. 2023) K = 20%; mergekit tensor parameter `density`, default 1",
		field:  func(c *Config) fieldRef { return fieldRef{fs: &c.Density} }},
	{Name: "gamma", Flag: "gamma", Kind: Floats, Mergekit: true, YAML: true, Min: 0, Max: 1, MaxOpen: true,
		Doc:    "fraction of largest entries dropped per tensor",
		Source: "mergekit magnitude_outliers, default 0.01",
		field:  func(c *Config) fieldRef { return fieldRef{fs: &c.Gamma} }},
	{Name: "epsilon", Flag: "epsilon", Kind: Floats, Mergekit: true, YAML: true, Min: 0, Max: 1, MaxOpen: true,
		Doc:    "DELLA: keep probabilities range over density ± epsilon by magnitude rank",
		Source: "mergekit della_magprune, default 0.15",
		field:  func(c *Config) fieldRef { return fieldRef{fs: &c.Epsilon} }},
	{Name: "lambda", Flag: "lambda", Kind: Float, Mergekit: true, YAML: true, Min: math.Inf(-1), Max: math.Inf(1),
		Doc:    "scaling coefficient of the merged task vector",
		Source: "task arithmetic (Ilharco et al. 2023) λ; mergekit `lambda`, default 1",
		field:  func(c *Config) fieldRef { return fieldRef{f: &c.Lambda} }},
	{Name: "t", Flag: "t", Kind: Float, Mergekit: true, YAML: true, Min: math.Inf(-1), Max: math.Inf(1),
		Doc:    "interpolation factor: 0 gives the base, 1 the other model",
		Source: "mergekit slerp `t` (required)",
		field:  func(c *Config) fieldRef { return fieldRef{f: &c.T} }},
	{Name: "normalize", Kind: Bool, Mergekit: true, YAML: true,
		Doc:    "divide the combined task vectors (or models) by the sum of the weights",
		Source: "mergekit `normalize`, default per method",
		field:  func(c *Config) fieldRef { return fieldRef{b: &c.Normalize} }},
	{Name: "rescale", Kind: Bool, Mergekit: true, YAML: true,
		Doc:    "rescale each sparsified task vector to its L1 norm before sparsification",
		Source: "mergekit `rescale` (rescaled_masked_tensor), default per method",
		field:  func(c *Config) fieldRef { return fieldRef{b: &c.Rescale} }},
	{Name: "int8_mask", Kind: Bool, Mergekit: true, YAML: true,
		Doc:    "accepted and without effect: mergekit stores its sign masks as int8 to save memory, which never changes the result",
		Source: "mergekit `int8_mask`, default false",
		field:  func(c *Config) fieldRef { return fieldRef{b: &c.Int8Mask} }},
	{Name: "seed", Flag: "seed", Kind: Uint, YAML: true,
		Doc:    "seed of the random drops (editkit's counter-based stream)",
		Source: "editkit; mergekit draws from PyTorch's global generator",
		field:  func(c *Config) fieldRef { return fieldRef{u: &c.Seed} }},
	{Name: "ties_scope", Flag: "ties-scope", Kind: String, YAML: true, Choices: []string{ScopeModel, ScopeTensor},
		Doc:    "TIES trimming over the whole model (model, the paper's) or per tensor (tensor, mergekit's)",
		Source: "prateeky2806/ties-merging trims the flattened model; mergekit per tensor",
		field:  func(c *Config) fieldRef { return fieldRef{s: &c.TIESScope} }},
	{Name: "ties_aggregate", Flag: "ties-aggregate", Kind: String, Choices: []string{"mean", "sum"},
		Doc:    "TIES disjoint merge: mean of the agreeing entries or their sum",
		Source: "prateeky2806/ties-merging disjoint_merge, default mean",
		field:  func(c *Config) fieldRef { return fieldRef{s: &c.TIESAggregate} }},
	{Name: "k", Flag: "k", Kind: Int, YAML: true, Min: 1, Max: math.Inf(1),
		Doc:    "number of TALL masks that must select an entry (at most the number of models)",
		Source: "nik-dim/tall_masks, default 2",
		field:  func(c *Config) fieldRef { return fieldRef{i: &c.K} }},
	{Name: "tall_lambda", Flag: "tall-lambda", Kind: Floats, YAML: true, Min: 0, Max: math.Inf(1),
		Doc:    "TALL-mask λ_t: keep |τ_t| > λ_t |τ_MTL − τ_t|",
		Source: "nik-dim/tall_masks, grid {0.2, ..., 0.6}; default 0.4, its middle",
		field:  func(c *Config) fieldRef { return fieldRef{fs: &c.TallLambda} }},
	{Name: "consensus_base", Flag: "consensus-base", Kind: String, YAML: true, Choices: []string{"ta", "ties"},
		Doc:    "multi-task vector the consensus mask applies to: ta (Σ τ) or ties (TIES with disjoint sum, density 0.2)",
		Source: "nik-dim/tall_masks, default ta",
		field:  func(c *Config) fieldRef { return fieldRef{s: &c.ConsensusBase} }},
	{Name: "filter_wise", Flag: "filter-wise", Kind: Bool, Mergekit: true, YAML: true,
		Doc:    "one interpolation ratio per output row instead of per tensor",
		Source: "mergekit model_stock `filter_wise`, default false",
		field:  func(c *Config) fieldRef { return fieldRef{b: &c.FilterWise} }},
	{Name: "select_topk", Flag: "select-topk", Kind: Float, Mergekit: true, YAML: true, Min: 0, Max: 1,
		Doc:    "SCE: fraction of entries kept, by the variance of the task vectors across models",
		Source: "mergekit sce `select_topk`, default 1",
		field:  func(c *Config) fieldRef { return fieldRef{f: &c.SelectTopK} }},
	{Name: "nuslerp_row_wise", Flag: "nuslerp-row-wise", Kind: Bool, Mergekit: true, YAML: true,
		Doc:    "NuSLERP: interpolate column vectors (along dimension 0) instead of rows",
		Source: "mergekit nuslerp, default false",
		field:  func(c *Config) fieldRef { return fieldRef{b: &c.RowWise} }},
	{Name: "nuslerp_flatten", Flag: "nuslerp-flatten", Kind: Bool, Mergekit: true, YAML: true,
		Doc:    "NuSLERP: one angle for the whole tensor instead of one per row",
		Source: "mergekit nuslerp, default true",
		field:  func(c *Config) fieldRef { return fieldRef{b: &c.Flatten} }},
	{Name: "max_iter", Flag: "max-iter", Kind: Int, Mergekit: true, YAML: true, Min: 1, Max: math.Inf(1),
		Doc:    "Karcher mean: most fixed-point iterations",
		Source: "mergekit karcher, default 10",
		field:  func(c *Config) fieldRef { return fieldRef{i: &c.MaxIter} }},
	{Name: "tol", Flag: "tol", Kind: Float, Mergekit: true, YAML: true, Min: 0, Max: math.Inf(1), MinOpen: true,
		Doc:    "Karcher mean: convergence tolerance",
		Source: "mergekit karcher, default 1e-5",
		field:  func(c *Config) fieldRef { return fieldRef{f: &c.Tol} }},
	{Name: "normalize_weights", Flag: "normalize-weights", Kind: Bool, Mergekit: true, YAML: true,
		Doc:    "Multi-SLERP: divide the weights by their sum",
		Source: "mergekit multislerp, default true",
		field:  func(c *Config) fieldRef { return fieldRef{b: &c.NormalizeWeights} }},
	{Name: "eps", Flag: "eps", Kind: Float, Mergekit: true, YAML: true, Min: 0, Max: math.Inf(1),
		Doc:    "Multi-SLERP: added to norms before dividing",
		Source: "mergekit multislerp, default 1e-8",
		field:  func(c *Config) fieldRef { return fieldRef{f: &c.Eps} }},
	{Name: "scale", Kind: Floats, Mergekit: true, YAML: true, Min: math.Inf(-1), Max: math.Inf(1),
		Doc:    "passthrough: multiply the model's tensors by this factor",
		Source: "mergekit passthrough `scale`, default none",
		field:  func(c *Config) fieldRef { return fieldRef{fs: &c.Scale} }},
	{Name: "lines_alpha", Flag: "lines-alpha", Kind: Float, Min: math.Inf(-1), Max: math.Inf(1),
		Doc:    "LiNeS: scale of the first block and of tensors outside blocks (α)",
		Source: "wang-kee/LiNeS; for several tasks α = (‖Σ_t τ_t‖₁/‖τ_merged‖₁)/T",
		field:  func(c *Config) fieldRef { return linesFloat(c, func(l *Lines) **float64 { return &l.Alpha }) }},
	{Name: "lines_beta", Flag: "lines-beta", Kind: Float, Min: math.Inf(-1), Max: math.Inf(1),
		Doc:    "LiNeS: scale added at the last block (β); for one task β = 1 − α",
		Source: "wang-kee/LiNeS",
		field:  func(c *Config) fieldRef { return linesFloat(c, func(l *Lines) **float64 { return &l.Beta }) }},
}

// linesFloat reaches a LiNeS coefficient; setting one turns LiNeS on.
func linesFloat(c *Config, at func(*Lines) **float64) fieldRef {
	return fieldRef{
		set: func(v any) {
			if c.Lines == nil {
				c.Lines = &Lines{}
			} else {
				l := *c.Lines
				c.Lines = &l
			}
			x := v.(float64)
			*at(c.Lines) = &x
		},
		get: func() any {
			if c.Lines == nil || *at(c.Lines) == nil {
				return nil
			}
			return **at(c.Lines)
		},
	}
}

// ParamByName returns the named parameter, or nil.
func ParamByName(name string) *Param {
	for _, p := range paramTable {
		if p.Name == name {
			q := *p
			return &q
		}
	}
	return nil
}

// ParamByFlag returns the parameter a command-line flag sets, or nil.
func ParamByFlag(flag string) *Param {
	for _, p := range paramTable {
		if p.Flag != "" && p.Flag == flag {
			q := *p
			return &q
		}
	}
	return nil
}

// Get returns the parameter's value in c (float64, []float64, int, uint64,
// bool or string) and whether it is set.
func (p *Param) Get(c *Config) (any, bool) {
	r := p.field(c)
	switch {
	case r.get != nil:
		v := r.get()
		return v, v != nil
	case r.f != nil:
		if *r.f == nil {
			return nil, false
		}
		return **r.f, true
	case r.fs != nil:
		return *r.fs, *r.fs != nil
	case r.i != nil:
		if *r.i == nil {
			return nil, false
		}
		return **r.i, true
	case r.u != nil:
		return *r.u, true // 0 is a seed like any other
	case r.b != nil:
		if *r.b == nil {
			return nil, false
		}
		return **r.b, true
	default:
		return *r.s, *r.s != ""
	}
}

// Set stores v (of the parameter's kind: float64, []float64, int, uint64,
// bool, string) in c. It allocates fresh storage, so configs copied by
// value never share a parameter's value.
func (p *Param) Set(c *Config, v any) {
	r := p.field(c)
	switch {
	case r.set != nil:
		r.set(v)
	case r.f != nil:
		x := v.(float64)
		*r.f = &x
	case r.fs != nil:
		*r.fs = slices.Clone(v.([]float64))
	case r.i != nil:
		x := v.(int)
		*r.i = &x
	case r.u != nil:
		*r.u = v.(uint64)
	case r.b != nil:
		x := v.(bool)
		*r.b = &x
	default:
		*r.s = v.(string)
	}
}

// Range describes the values a number may take, e.g. "(0, 1]"; empty when
// any finite number is allowed.
func (p *Param) Range() string {
	if p.Kind == Bool || p.Kind == String || p.Kind == Uint {
		return ""
	}
	lo, hi := !math.IsInf(p.Min, -1), !math.IsInf(p.Max, 1)
	switch {
	case !lo && !hi:
		return ""
	case !hi && p.Kind == Int:
		return fmt.Sprintf("≥ %g", p.Min)
	case !hi && p.MinOpen:
		return fmt.Sprintf("> %g", p.Min)
	case !hi:
		return fmt.Sprintf("≥ %g", p.Min)
	}
	l, r := "[", "]"
	if p.MinOpen {
		l = "("
	}
	if p.MaxOpen {
		r = ")"
	}
	return fmt.Sprintf("%s%g, %g%s", l, p.Min, p.Max, r)
}

// check returns why the number v is not a valid value, or "".
func (p *Param) check(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "is not a finite number"
	}
	if v < p.Min || v > p.Max || (p.MinOpen && v == p.Min) || (p.MaxOpen && v == p.Max) {
		return "is outside " + p.Range()
	}
	return ""
}

// checkValue checks every number of a value of the parameter's kind, and a
// String's choice. model is the offending model's index for per-model
// lists, −1 otherwise.
func (p *Param) checkValue(v any) (why string, model int) {
	switch x := v.(type) {
	case float64:
		return p.check(x), -1
	case []float64:
		for i, f := range x {
			if why := p.check(f); why != "" {
				if len(x) == 1 {
					i = -1
				}
				return why, i
			}
		}
	case int:
		return p.check(float64(x)), -1
	case string:
		if len(p.Choices) > 0 && !slices.Contains(p.Choices, x) {
			return "is not one of " + strings.Join(p.Choices, ", "), -1
		}
	}
	return "", -1
}

// ParseFlag parses a command-line value of the parameter. Per-model lists
// are comma-separated.
func (p *Param) ParseFlag(s string) (any, error) {
	bad := func(what string) error {
		return &ParamError{Param: p.Name, Model: -1, Value: s, Reason: "is not " + what}
	}
	switch p.Kind {
	case Float:
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return nil, bad("a number")
		}
		return v, nil
	case Floats:
		var out []float64
		for part := range strings.SplitSeq(s, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
			if err != nil {
				return nil, bad("a number or a comma-separated list of numbers, one per model")
			}
			out = append(out, v)
		}
		return out, nil
	case Int:
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return nil, bad("a whole number")
		}
		return v, nil
	case Uint:
		v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, bad("a non-negative whole number")
		}
		return v, nil
	case Bool:
		v, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, bad("true or false")
		}
		return v, nil
	}
	return strings.TrimSpace(s), nil
}

// ParamError reports a bad parameter value. Each front end shows it in its
// own terms: the command line names the flag (--density), a configuration
// file the key and its line (file.yaml:12: density).
type ParamError struct {
	// Param is the parameter's Name.
	Param string
	// Model is the index of the model whose value is wrong, or −1.
	Model int
	// Value is the offending value, nil when the parameter is missing.
	Value any
	// Reason completes a sentence about the value: "is outside (0, 1]".
	Reason string
}

// Error names the parameter by its Name.
func (e *ParamError) Error() string { return e.Message(e.Param) }

// Message is the error with the parameter called name (e.g. "--density").
func (e *ParamError) Message(name string) string {
	var b strings.Builder
	b.WriteString(name)
	if e.Value != nil {
		fmt.Fprintf(&b, " %v", formatValue(e.Value))
	}
	if e.Model >= 0 {
		fmt.Fprintf(&b, " (model %d)", e.Model+1)
	}
	b.WriteString(" ")
	b.WriteString(e.Reason)
	return b.String()
}

func formatValue(v any) string {
	switch x := v.(type) {
	case []float64:
		parts := make([]string, len(x))
		for i, f := range x {
			parts[i] = strconv.FormatFloat(f, 'g', -1, 64)
		}
		return strings.Join(parts, ",")
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}
