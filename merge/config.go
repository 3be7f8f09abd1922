package merge

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Method names a merging method. Names follow mergekit where the method
// exists there.
type Method string

// The merging methods.
const (
	Linear          Method = "linear"
	TaskArithmetic  Method = "task_arithmetic"
	TIES            Method = "ties"
	DARELinear      Method = "dare_linear"
	DARETIES        Method = "dare_ties"
	Breadcrumbs     Method = "breadcrumbs"
	BreadcrumbsTIES Method = "breadcrumbs_ties"
	Consensus       Method = "consensus"
	ModelStock      Method = "model_stock"
	SLERP           Method = "slerp"
)

// Methods lists every method.
var Methods = []Method{Linear, TaskArithmetic, TIES, DARELinear, DARETIES, Breadcrumbs, BreadcrumbsTIES, Consensus, ModelStock, SLERP}

// Semantics selects whose definition of a method is followed where the
// papers and mergekit differ.
type Semantics int

const (
	// Paper follows the papers' reference code: TIES trims over the whole
	// model, elects signs by the sign of Σ τ with the global majority where
	// it is 0, and takes the unweighted mean of agreeing entries; DARE
	// rescales survivors by 1/(1−p). The CLI's default.
	Paper Semantics = iota
	// Mergekit follows mergekit's generalized task arithmetic: per-tensor
	// sparsification keeping exactly int(density·n) entries, weighted sign
	// election (0 counts as +), division by the agreeing weights when
	// normalizing, L1-norm-matching rescale. What a mergekit YAML means.
	Mergekit
)

// TIES trimming scopes.
const (
	ScopeModel  = "model"
	ScopeTensor = "tensor"
)

// Config is a merge recipe with its parameters. Zero values mean "the
// method's published default" where one exists; Validate fills them in.
type Config struct {
	Method    Method
	Semantics Semantics
	// Weights has one weight per model (all 1 when empty).
	Weights []float64
	// Density is the fraction of entries kept by TIES trimming, DARE and
	// Breadcrumbs: one value for all models or one per model.
	Density []float64
	// Lambda scales the merged task vector; nil means the method default.
	Lambda *float64
	// Gamma is the fraction of largest entries Breadcrumbs drops.
	Gamma *float64
	// T is the SLERP interpolation factor (0 = base, 1 = the other model).
	T *float64
	// Seed seeds DARE's random drops.
	Seed uint64
	// TIESScope is ScopeModel (the paper) or ScopeTensor (mergekit's).
	TIESScope string
	// TIESAggregate is "mean" (disjoint mean, the paper's default) or "sum".
	TIESAggregate string
	// K is the number of TALL masks that must select an entry for Consensus.
	K int
	// TallLambda holds the TALL-mask λ_t, one for all tasks or one per task.
	TallLambda []float64
	// ConsensusBase is the multi-task vector consensus masks: "ta" (Σ τ_t)
	// or "ties" (TIES with disjoint sum, density 0.2).
	ConsensusBase string
	// Normalize and Rescale override mergekit's per-method defaults.
	Normalize *bool
	Rescale   *bool
	// FilterWise makes Model Stock compute one cosine per output row.
	FilterWise bool
	// Lines applies LiNeS layer scaling to the merged task vector.
	Lines *Lines
	// MasksOut, when set, receives the TALL and consensus masks, bit-packed
	// (a .safetensors file, or a folder holding model.safetensors).
	MasksOut string
}

// Lines configures LiNeS (Wang et al., ICLR 2025): the merged task vector's
// block ℓ of L is scaled by α + β ℓ/(L−1), tensors outside blocks by α; the
// schedule replaces the merge coefficient λ.
type Lines struct {
	// Alpha defaults, for several tasks, to (‖Σ_t τ_t‖₁/‖τ_merged‖₁)/T.
	Alpha *float64
	// Beta defaults, for one task, to 1 − α.
	Beta *float64
	// LayerPattern overrides block detection (see checkpoint.NewLayout).
	LayerPattern string
}

// defaults used where the caller gives none.
const (
	defaultTIESDensity = 0.2  // TIES: top-20% (K=20)
	defaultGamma       = 0.01 // Breadcrumbs (mergekit)
	defaultK           = 2    // Consensus: kept by ≥ 2 masks
	defaultTallLambda  = 0.4  // middle of the TALL-mask grid {0.2, ..., 0.6}
)

// ParseMethod parses a method name.
func ParseMethod(s string) (Method, error) {
	m := Method(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(Methods, m) {
		return m, nil
	}
	names := make([]string, len(Methods))
	for i, m := range Methods {
		names[i] = string(m)
	}
	return "", fmt.Errorf("unknown merge method %q (known: %s)", s, strings.Join(names, ", "))
}

// usesTaskVectors reports whether the method combines task vectors (as
// opposed to whole models: linear, model_stock, slerp).
func (m Method) usesTaskVectors() bool {
	switch m {
	case Linear, ModelStock, SLERP:
		return false
	}
	return true
}

func (m Method) electsSign() bool {
	return m == TIES || m == DARETIES || m == BreadcrumbsTIES
}

func f64(v float64) *float64 { return &v }
func boolp(v bool) *bool     { return &v }

// Validate checks the recipe for n models and fills in the published
// defaults. Errors name the flag to fix.
func (c *Config) Validate(n int) error {
	if n == 0 {
		return errors.New("no models to merge: give fine-tuned checkpoints or task vectors with --models")
	}
	if _, err := ParseMethod(string(c.Method)); err != nil {
		return err
	}
	if c.Method == Consensus {
		c.Semantics = Paper // one definition: the paper's (a YAML extension too)
	}
	if c.Semantics == Mergekit && c.Method == TIES && c.TIESScope == ScopeModel {
		// The YAML extension "ties_scope: model" asks for the paper's TIES:
		// whole-model trim, majority fill, unweighted disjoint mean.
		c.Semantics = Paper
		c.Normalize, c.Rescale = nil, nil
	}
	if len(c.Weights) == 0 {
		c.Weights = make([]float64, n)
		for i := range c.Weights {
			c.Weights[i] = 1
		}
	} else if len(c.Weights) != n {
		return fmt.Errorf("--weights has %d values for %d models", len(c.Weights), n)
	}
	if c.Method == Linear {
		var sum float64
		for _, w := range c.Weights {
			sum += w
		}
		if sum == 0 {
			return errors.New("--weights sum to 0: a weighted average needs a non-zero total weight")
		}
	}
	if c.Semantics == Paper && c.Method.electsSign() && !allOnes(c.Weights) {
		return fmt.Errorf("weights %v: %s as published has no per-model weights (leave them at 1); mergekit's weighted variant is what a mergekit YAML config without ties_scope: model gives", c.Weights, c.Method)
	}
	density := 1.0 // mergekit's default: no sparsification
	if c.Semantics == Paper {
		switch c.Method {
		case TIES:
			density = defaultTIESDensity
		case Consensus:
			if c.ConsensusBase == "ties" {
				density = defaultTIESDensity // tall_masks: TIES at top-20%
			}
		case DARELinear, DARETIES, Breadcrumbs, BreadcrumbsTIES:
			if len(c.Density) == 0 {
				return fmt.Errorf("--density is required for %s (the fraction of entries kept)", c.Method)
			}
		}
	}
	if len(c.Density) == 0 {
		c.Density = []float64{density}
	}
	if len(c.Density) == 1 && n > 1 {
		d := c.Density[0]
		c.Density = make([]float64, n)
		for i := range c.Density {
			c.Density[i] = d
		}
	}
	if len(c.Density) != n {
		return fmt.Errorf("--density has %d values for %d models", len(c.Density), n)
	}
	for _, d := range c.Density {
		if !(d > 0 && d <= 1) {
			return fmt.Errorf("--density %v is outside (0, 1]: it is the fraction of entries kept", d)
		}
	}
	if c.Gamma == nil {
		c.Gamma = f64(defaultGamma)
	}
	if *c.Gamma < 0 || *c.Gamma >= 1 {
		return fmt.Errorf("--gamma %v is outside [0, 1)", *c.Gamma)
	}
	if c.Method == Breadcrumbs || c.Method == BreadcrumbsTIES {
		for _, d := range c.Density {
			if d+*c.Gamma > 1 {
				return fmt.Errorf("--density %v plus --gamma %v exceed 1: Breadcrumbs keeps density and drops gamma of the largest entries", d, *c.Gamma)
			}
		}
	}
	switch c.TIESScope {
	case "":
		c.TIESScope = ScopeModel
		if c.Semantics == Mergekit {
			c.TIESScope = ScopeTensor
		}
	case ScopeModel, ScopeTensor:
	default:
		return fmt.Errorf("--ties-scope %q: use %q (the paper) or %q (mergekit)", c.TIESScope, ScopeModel, ScopeTensor)
	}
	switch c.TIESAggregate {
	case "":
		c.TIESAggregate = "mean"
	case "mean", "sum":
	default:
		return fmt.Errorf("--ties-aggregate %q: use mean or sum", c.TIESAggregate)
	}
	if c.Method == Consensus {
		if c.K == 0 {
			c.K = defaultK
		}
		if c.K < 0 {
			return fmt.Errorf("--k %d must be ≥ 0", c.K)
		}
		if len(c.TallLambda) == 0 {
			c.TallLambda = []float64{defaultTallLambda}
		}
		if len(c.TallLambda) == 1 && n > 1 {
			c.TallLambda = slices.Repeat(c.TallLambda, n)
		}
		if len(c.TallLambda) != n {
			return fmt.Errorf("--tall-lambda has %d values for %d models", len(c.TallLambda), n)
		}
		switch c.ConsensusBase {
		case "":
			c.ConsensusBase = "ta"
		case "ta", "ties":
		default:
			return fmt.Errorf("--consensus-base %q: use ta or ties", c.ConsensusBase)
		}
	} else if c.MasksOut != "" {
		return errors.New("--save-masks applies to the consensus method only")
	}
	switch c.Method {
	case SLERP:
		if n != 1 {
			return fmt.Errorf("slerp interpolates between the base and exactly one model, got %d models", n)
		}
		if c.T == nil {
			return errors.New("slerp needs --t (0 gives the base, 1 the other model)")
		}
	case ModelStock:
		if n < 2 {
			return fmt.Errorf("model_stock needs at least 2 fine-tuned models, got %d", n)
		}
	}
	if c.Lines != nil {
		if c.Lambda != nil {
			return errors.New("--lambda and LiNeS both set the merge coefficient: LiNeS's schedule α + β ℓ/(L−1) replaces λ, so give only --lines-alpha/--lines-beta")
		}
		if n == 1 && c.Lines.Alpha == nil {
			return errors.New("LiNeS on one task needs --lines-alpha (β defaults to 1 − α)")
		}
		if n > 1 && c.Lines.Beta == nil {
			return errors.New("LiNeS on several tasks needs --lines-beta (α defaults to (‖Σ τ‖₁/‖τ_merged‖₁)/T)")
		}
		if n == 1 && c.Lines.Beta == nil {
			c.Lines.Beta = f64(1 - *c.Lines.Alpha)
		}
	} else if c.Lambda == nil && c.Method.usesTaskVectors() {
		switch {
		case c.Method == TaskArithmetic && n > 1 && c.Semantics == Paper:
			return errors.New("task_arithmetic with several models needs --lambda (the papers choose it on validation data, typically 0.3–0.4 for 8 tasks)")
		case c.Method == Consensus && c.Semantics == Paper:
			return errors.New("consensus needs --lambda (chosen on validation data in the paper)")
		default:
			c.Lambda = f64(1) // TIES, DARE, Breadcrumbs, and mergekit: λ = 1
		}
	} else if c.Lambda != nil && !c.Method.usesTaskVectors() {
		return fmt.Errorf("--lambda does not apply to %s", c.Method)
	}
	if c.Semantics == Mergekit {
		def := mergekitDefaults[c.Method]
		if c.Normalize == nil {
			c.Normalize = boolp(def.normalize)
		}
		if c.Rescale == nil {
			c.Rescale = boolp(def.rescale)
		}
	}
	return nil
}

// mergekitDefaults are mergekit's per-method normalize and rescale defaults.
var mergekitDefaults = map[Method]struct{ normalize, rescale bool }{
	Linear:          {normalize: true},
	TaskArithmetic:  {},
	TIES:            {normalize: true},
	DARETIES:        {rescale: true},
	DARELinear:      {rescale: true},
	Breadcrumbs:     {},
	BreadcrumbsTIES: {},
}

func allOnes(w []float64) bool {
	for _, v := range w {
		if v != 1 {
			return false
		}
	}
	return true
}

// Params returns the resolved parameters for provenance and --json output.
func (c *Config) Params() map[string]any {
	p := map[string]any{"method": string(c.Method)}
	if c.Semantics == Mergekit {
		p["semantics"] = "mergekit"
	} else {
		p["semantics"] = "paper"
	}
	p["weights"] = c.Weights
	switch c.Method {
	case TIES, DARELinear, DARETIES, Breadcrumbs, BreadcrumbsTIES:
		p["density"] = c.Density
	}
	if c.Lambda != nil {
		p["lambda"] = *c.Lambda
	}
	switch c.Method {
	case Breadcrumbs, BreadcrumbsTIES:
		p["gamma"] = *c.Gamma
	case DARELinear, DARETIES:
		p["seed"] = c.Seed
	case SLERP:
		p["t"] = *c.T
	case Consensus:
		p["k"], p["tall_lambda"], p["consensus_base"] = c.K, c.TallLambda, c.ConsensusBase
	case ModelStock:
		p["filter_wise"] = c.FilterWise
	}
	if c.Method.electsSign() {
		p["ties_scope"], p["ties_aggregate"] = c.TIESScope, c.TIESAggregate
	}
	if c.Normalize != nil {
		p["normalize"] = *c.Normalize
	}
	if c.Rescale != nil {
		p["rescale"] = *c.Rescale
	}
	if c.Lines != nil {
		l := map[string]any{}
		if c.Lines.Alpha != nil {
			l["alpha"] = *c.Lines.Alpha
		}
		if c.Lines.Beta != nil {
			l["beta"] = *c.Lines.Beta
		}
		if c.Lines.LayerPattern != "" {
			l["layer_pattern"] = c.Lines.LayerPattern
		}
		p["lines"] = l
	}
	return p
}
