package merge

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/editkit/editkit/checkpoint"
)

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

func (s Semantics) String() string {
	if s == Mergekit {
		return "mergekit"
	}
	return "paper"
}

// TIES trimming scopes.
const (
	ScopeModel  = "model"
	ScopeTensor = "tensor"
)

// Config is a merge recipe with its parameters. An unset parameter (nil,
// empty) takes the method's published default: Resolve returns the config
// with every default filled in. Each parameter is described once, in the
// table [Params].
type Config struct {
	Method    Method
	Semantics Semantics
	// Weights has one weight per model (or one for all).
	Weights []float64
	// Density is the fraction of entries kept by TIES trimming, DARE,
	// Breadcrumbs and DELLA: one value for all models or one per model.
	Density []float64
	// Lambda scales the merged task vector.
	Lambda *float64
	// Gamma is the fraction of largest entries Breadcrumbs drops.
	Gamma []float64
	// Epsilon is DELLA's spread of keep probabilities around density.
	Epsilon []float64
	// T is the SLERP interpolation factor (0 = base, 1 = the other model).
	T *float64
	// Seed seeds the random drops of DARE and DELLA.
	Seed uint64
	// TIESScope is ScopeModel (the paper) or ScopeTensor (mergekit's).
	TIESScope string
	// TIESAggregate is "mean" (disjoint mean, the paper's default) or "sum".
	TIESAggregate string
	// K is the number of TALL masks that must select an entry for Consensus.
	K *int
	// TallLambda holds the TALL-mask λ_t, one for all tasks or one per task.
	TallLambda []float64
	// ConsensusBase is the multi-task vector consensus masks: "ta" (Σ τ_t)
	// or "ties" (TIES with disjoint sum, density 0.2).
	ConsensusBase string
	// Normalize and Rescale override mergekit's per-method defaults.
	Normalize *bool
	Rescale   *bool
	// Int8Mask is accepted for mergekit configurations; it changes nothing.
	Int8Mask *bool
	// FilterWise makes Model Stock compute one cosine per output row.
	FilterWise *bool
	// SelectTopK is SCE's fraction of entries kept by cross-model variance.
	SelectTopK *float64
	// RowWise and Flatten choose NuSLERP's vectors.
	RowWise, Flatten *bool
	// MaxIter and Tol bound the Karcher mean's iterations.
	MaxIter *int
	Tol     *float64
	// NormalizeWeights and Eps are Multi-SLERP's.
	NormalizeWeights *bool
	Eps              *float64
	// Scale multiplies passthrough's tensors, per model.
	Scale []float64
	// Lines applies LiNeS layer scaling to the merged task vector.
	Lines *Lines
	// MasksOut, when set, receives the TALL and consensus masks, bit-packed
	// (a .safetensors file, or a folder holding model.safetensors).
	MasksOut string
	// BaseIsLayout says the set's base is no model of the merge: it only
	// supplies the tensor layout and the non-float tensors (methods whose
	// base is optional, run without one).
	BaseIsLayout bool
	// DType, when set, is the precision mergekit's `dtype` asks for: every
	// input is rounded to it and the arithmetic rounds to it after each
	// operation (see precision.go). Zero: float32 throughout.
	DType checkpoint.DType

	// tensorwise holds parameters that vary by tensor (a mergekit
	// configuration's gradients and filters).
	tensorwise tensorwise
}

// tensorwise gives a parameter's value for one tensor and model (member −1
// for method parameters); ok is false where the configuration leaves the
// parameter to the scalar value or default.
type tensorwise interface {
	value(param string, member int, tensor string) (v any, ok bool)
	// varies reports whether the parameter varies by tensor anywhere.
	varies(param string) bool
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

func f64(v float64) *float64 { return &v }

// clone copies c deeply enough that changing the copy's lists or LiNeS
// settings leaves c as it is (pointers to scalars are never written
// through: Param.Set allocates).
func (c Config) clone() Config {
	c.Weights, c.Density, c.Gamma = slices.Clone(c.Weights), slices.Clone(c.Density), slices.Clone(c.Gamma)
	c.Epsilon, c.TallLambda, c.Scale = slices.Clone(c.Epsilon), slices.Clone(c.TallLambda), slices.Clone(c.Scale)
	if c.Lines != nil {
		l := *c.Lines
		c.Lines = &l
	}
	return c
}

// Resolve checks the recipe for n models and returns it with the
// published defaults filled in; c itself is left as it is. A bad or
// missing parameter is reported as a *ParamError, which each front end
// words in its own terms.
func (c Config) Resolve(n int) (Config, error) {
	if n == 0 {
		return c, errors.New("no models to merge: give fine-tuned checkpoints or task vectors")
	}
	row := rowOf(c.Method)
	if row == nil {
		_, err := ParseMethod(string(c.Method))
		return c, err
	}
	c = c.clone()
	if c.Method == Consensus {
		c.Semantics = Paper // one definition: the paper's (a YAML extension too)
	}
	if c.Semantics == Mergekit && c.Method == TIES && c.TIESScope == ScopeModel {
		// The YAML extension "ties_scope: model" asks for the paper's TIES:
		// whole-model trim, majority fill, unweighted disjoint mean.
		c.Semantics = Paper
		c.Normalize, c.Rescale, c.Int8Mask = nil, nil, nil
	}
	if c.Lines != nil && c.Lambda != nil {
		return c, errors.New("--lambda and LiNeS both set the merge coefficient: LiNeS's schedule α + β ℓ/(L−1) replaces λ, so give only --lines-alpha/--lines-beta")
	}
	if n < row.minModels || (row.maxModels > 0 && n > row.maxModels) {
		return c, modelCountError(row, n)
	}
	for _, p := range paramTable {
		if err := c.resolveParam(p, row, n); err != nil {
			return c, err
		}
	}
	for _, check := range []func(*Config, int) error{checkWeights, checkSparsity, checkConsensus, checkLines} {
		if err := check(&c, n); err != nil {
			return c, err
		}
	}
	return c, nil
}

func modelCountError(row *methodRow, n int) error {
	switch {
	case row.method == SLERP || row.method == ArceeFusion:
		return fmt.Errorf("%s combines the base and exactly one model, got %d models", row.method, n)
	case row.maxModels == row.minModels:
		return fmt.Errorf("%s merges exactly %d models, got %d", row.method, row.minModels, n)
	case n < row.minModels:
		return fmt.Errorf("%s needs at least %d models besides the base, got %d", row.method, row.minModels, n)
	}
	return fmt.Errorf("%s merges at most %d models, got %d", row.method, row.maxModels, n)
}

// resolveParam checks one parameter of c against the method and fills in
// its default.
func (c *Config) resolveParam(p *Param, row *methodRow, n int) error {
	v, set := p.Get(c)
	lines := p.Name == "lines_alpha" || p.Name == "lines_beta"
	if err := row.method.Applies(p.Name, c.Semantics); err != nil {
		if set && !(p.Kind == Uint && v == uint64(0)) {
			err.Value = v
			return err
		}
		return nil
	}
	if set {
		if why, model := p.checkValue(v); why != "" {
			return &ParamError{Param: p.Name, Model: model, Value: v, Reason: why}
		}
		if fs, ok := v.([]float64); ok {
			switch {
			case len(fs) == 1 && n > 1:
				p.Set(c, slices.Repeat(fs, n))
			case len(fs) != n:
				return &ParamError{Param: p.Name, Model: -1, Value: v, Reason: fmt.Sprintf("has %d values for %d models: give one value, or one per model", len(fs), n)}
			}
		}
		return nil
	}
	if lines || (p.Name == "lambda" && c.Lines != nil) {
		return nil // LiNeS's schedule replaces λ
	}
	u := row.use(p.Name)
	d := u.paper
	if c.Semantics == Mergekit {
		d = u.mergekit
	}
	if c.tensorwise != nil && c.tensorwise.varies(p.Name) {
		// Given per tensor by the configuration; the default (or the
		// requirement) applies where it gives none, tensor by tensor.
		return nil
	}
	switch {
	case d.required != "" && !(p.Name == "lambda" && row.method == TaskArithmetic && n == 1):
		return &ParamError{Param: p.Name, Model: -1, Reason: fmt.Sprintf("is required for %s: %s", row.method, d.required)}
	case d.v == nil && p.Name == "lambda":
		p.Set(c, 1.0) // one task under the papers: λ = 1
	case d.v == nil:
	case p.Kind == Floats:
		p.Set(c, slices.Repeat([]float64{d.v.(float64)}, n))
	default:
		p.Set(c, d.v)
	}
	return nil
}

// Applies returns nil when the method reads the parameter under the
// semantics, else a *ParamError saying what the method takes.
func (m Method) Applies(param string, sem Semantics) *ParamError {
	row := rowOf(m)
	lines := param == "lines_alpha" || param == "lines_beta"
	if m.Uses(param, sem) || (lines && row.cli && sem == Paper) {
		return nil
	}
	return &ParamError{Param: param, Model: -1, Reason: fmt.Sprintf("does not apply to %s (%s)", m, takesText(m, sem))}
}

// takesText lists what the method reads: "ties takes weight, density, ...".
func takesText(m Method, sem Semantics) string {
	names := m.ParamNames(sem)
	if rowOf(m).cli && sem == Paper {
		names = append(names, "lines_alpha", "lines_beta")
	}
	if len(names) == 0 {
		return fmt.Sprintf("%s takes no parameters", m)
	}
	return fmt.Sprintf("%s takes %s", m, strings.Join(names, ", "))
}

// checkWeights: a weighted average (linear's normalize, Multi-SLERP's
// normalize_weights, both on by default) needs a non-zero total; the
// papers' TIES has no per-model weights.
func checkWeights(c *Config, n int) error {
	if c.tensorwise == nil && dividesByWeights(c.Method, boolOr(c.Normalize, true), boolOr(c.NormalizeWeights, true)) {
		var sum float64
		for _, w := range c.Weights {
			sum += w
		}
		if sum == 0 {
			return &ParamError{Param: "weight", Model: -1, Value: c.Weights, Reason: "sum to 0: a weighted average needs a non-zero total weight"}
		}
	}
	if c.Semantics == Paper && c.Method.electsSign() {
		for _, w := range c.Weights {
			if w != 1 {
				return &ParamError{Param: "weight", Model: -1, Value: c.Weights, Reason: fmt.Sprintf("does not apply: %s as published has no per-model weights (leave them at 1); mergekit's weighted variant is what a mergekit YAML config without ties_scope: model gives", c.Method)}
			}
		}
	}
	return nil
}

// dividesByWeights reports whether the method divides by the sum of the
// weights, given its normalize and normalize_weights settings.
func dividesByWeights(m Method, normalize, normalizeWeights bool) bool {
	return (m == Linear && normalize) || (m == MultiSLERP && normalizeWeights)
}

// checkSparsity: the papers' Breadcrumbs cannot keep more than 1 − γ (under
// mergekit's definition density wins: fewer large entries are dropped, so
// its default density 1 keeps the task vectors whole); DELLA's keep
// probabilities density ± ε must lie in (0, 1).
func checkSparsity(c *Config, _ int) error {
	for i, d := range c.Density {
		if c.Semantics == Paper && i < len(c.Gamma) && d+c.Gamma[i] > 1 {
			return &ParamError{Param: "density", Model: i, Value: d, Reason: fmt.Sprintf("plus gamma %v exceeds 1: Breadcrumbs keeps density and drops gamma of the largest entries", c.Gamma[i])}
		}
		if i < len(c.Epsilon) && d < 1 && (d+c.Epsilon[i] >= 1 || d-c.Epsilon[i] <= 0) {
			return &ParamError{Param: "epsilon", Model: i, Value: c.Epsilon[i], Reason: fmt.Sprintf("with density %v: DELLA's keep probabilities density ± epsilon must lie in (0, 1)", d)}
		}
	}
	return nil
}

func checkConsensus(c *Config, n int) error {
	if c.Method != Consensus {
		if c.MasksOut != "" {
			return errors.New("--save-masks applies to the consensus method only")
		}
		return nil
	}
	if *c.K > n {
		return &ParamError{Param: "k", Model: -1, Value: *c.K, Reason: fmt.Sprintf("must be ≤ N = %d, the number of models: no entry can be selected by more masks than there are models", n)}
	}
	if c.ConsensusBase != "ties" {
		c.Density = nil // TIES's trim only: the TA base keeps everything
	}
	return nil
}

func checkLines(c *Config, n int) error {
	if c.Lines == nil {
		return nil
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
	return nil
}

// Params returns the resolved parameters that change the method's result,
// by their table names, for provenance and --json output.
func (c Config) Params() map[string]any {
	p := map[string]any{"method": string(c.Method), "semantics": c.Semantics.String()}
	for _, prm := range paramTable {
		if !c.Method.Affects(prm.Name, c.Semantics) {
			continue
		}
		if c.tensorwise != nil && c.tensorwise.varies(prm.Name) {
			p[prm.Name] = "per tensor (gradient or filter; see the configuration)"
			continue
		}
		if v, ok := prm.Get(&c); ok {
			p[prm.Name] = v
		}
	}
	if c.DType != 0 {
		p["dtype"] = c.DType.String()
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
