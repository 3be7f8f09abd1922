package merge

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

// Coefficient names the merge parameter that a Direction varies.
type Coefficient string

// The coefficients a Direction can vary. In each, Δ is the method's merged
// task vector (TIES's disjoint mean, consensus's masked sum, ...), which does
// not depend on the coefficient, and block ℓ of a stack of L residual blocks
// is scaled by LiNeS's schedule (the one linesScale computes for Run).
const (
	// CoefLambda is task arithmetic's λ: θ(c) = θ₀ + c·Δ, or θ₀ − c·Δ for
	// task negation (DirectionOptions.Negate).
	CoefLambda Coefficient = "lambda"
	// CoefLinesBeta is LiNeS's multi-task β with α fixed:
	// θ(c) = θ₀ + (α + c·ℓ/(L−1))·Δ inside blocks, θ₀ + α·Δ outside them.
	CoefLinesBeta Coefficient = "lines_beta"
	// CoefLinesAlpha is LiNeS's single-task α with β = 1 − α:
	// θ(c) = θ₀ + (c + (1−c)·ℓ/(L−1))·Δ inside blocks, θ₀ + c·Δ outside.
	CoefLinesAlpha Coefficient = "lines_alpha"
)

// Symbol is the coefficient's usual letter: λ, β or α.
func (c Coefficient) Symbol() string {
	switch c {
	case CoefLinesBeta:
		return "β"
	case CoefLinesAlpha:
		return "α"
	}
	return "λ"
}

// DirectionOptions configure NewDirection.
type DirectionOptions struct {
	// Coefficient is what Scale and At vary (zero value: CoefLambda).
	Coefficient Coefficient
	// Negate makes CoefLambda's θ(c) = θ₀ − c·Δ (task negation).
	Negate bool
	// Tensors names the float tensors whose Δ is kept in memory (e.g. an
	// image encoder's); nil keeps every float tensor of the base.
	Tensors []string
	// ScratchDir is where the unit merge is written while NewDirection
	// runs, in a temporary folder it removes ("": the system's temporary
	// folder). Put it on a disk with room for a float32 copy of the model.
	ScratchDir string
	// ShardSize of the scratch copy (0: checkpoint's default).
	ShardSize int64
	// Stream configures the unit merge's passes (workers, progress).
	Stream tasks.StreamOptions
}

// Direction is the line of models that a merge recipe spans as its
// coefficient varies, θ(c) = θ₀ + s(ℓ, c)·Δ, with Δ held in memory for the
// tensors asked for. For every task-vector method Δ is independent of the
// coefficient (λ or LiNeS's schedule only scales it), so one merge at a
// unit coefficient gives Δ, and each point of a search is formed in memory
// instead of merged from disk: the reference code's λ searches
// (mlfoundations/task_vectors, wang-kee/LiNeS) likewise apply each
// coefficient to one merged vector.
type Direction struct {
	// Coefficient is what Scale varies; Negate is DirectionOptions.Negate.
	Coefficient Coefficient
	Negate      bool
	// Alpha is LiNeS's α during a CoefLinesBeta search: the recipe's, or
	// the multi-task default (‖Σ_t τ_t‖₁/‖τ_merged‖₁)/T that the unit merge
	// computed.
	Alpha float64
	// Params are the unit merge's resolved parameters (see Result.Params).
	Params map[string]any

	recipe    Config   // as given, not validated
	userAlpha *float64 // the recipe's LiNeS α during a β search
	unit      float64  // the scale the unit merge applied: D = unit·Δ
	layout    *checkpoint.Layout
	delta     map[string][]float32 // D = θ(unit) − θ₀
	names     []string
}

// NewDirection merges the members of s once, as recipe says, at the
// coefficient's unit value into a scratch folder, and keeps
// D = θ(unit) − θ₀ for the tensors asked for. The unit value is λ = 1 for
// CoefLambda; for CoefLinesBeta it is β = 0 with α = 1 when the recipe
// gives α, else the multi-task α, so D = α·Δ; for CoefLinesAlpha α = 1
// (β = 0). The recipe's own coefficient (Lambda, Lines.Beta, or
// Lines.Alpha for CoefLinesAlpha) is ignored; recipe is not modified.
func NewDirection(s *tasks.Set, recipe Config, o DirectionOptions) (*Direction, error) {
	if o.Coefficient == "" {
		o.Coefficient = CoefLambda
	}
	d := &Direction{Coefficient: o.Coefficient, Negate: o.Negate, recipe: recipe.clone(), unit: 1}
	if o.Negate && o.Coefficient != CoefLambda {
		return nil, fmt.Errorf("merge: negation varies λ, not %s", o.Coefficient)
	}
	cfg := recipe.clone()
	cfg.MasksOut = ""
	switch o.Coefficient {
	case CoefLambda:
		if cfg.Lines != nil {
			return nil, errors.New("merge: LiNeS's schedule α + β ℓ/(L−1) replaces λ: vary lines_beta or lines_alpha instead")
		}
		cfg.Lambda = f64(1)
	case CoefLinesBeta:
		if cfg.Lines == nil {
			cfg.Lines = &Lines{}
		}
		cfg.Lambda = nil
		if cfg.Lines.Alpha != nil {
			a := *cfg.Lines.Alpha
			d.userAlpha, d.Alpha = &a, a
			cfg.Lines.Alpha = f64(1)
		}
		cfg.Lines.Beta = f64(0)
	case CoefLinesAlpha:
		if n := len(s.Members); n != 1 {
			return nil, fmt.Errorf("merge: lines_alpha is single-task LiNeS (β = 1 − α) and takes one model, got %d: vary lines_beta for several", n)
		}
		if cfg.Lines == nil {
			cfg.Lines = &Lines{}
		}
		cfg.Lambda = nil
		cfg.Lines.Alpha, cfg.Lines.Beta = f64(1), nil
	default:
		return nil, fmt.Errorf("merge: unknown coefficient %q (want %s, %s or %s)", o.Coefficient, CoefLambda, CoefLinesBeta, CoefLinesAlpha)
	}

	tmp, remove, err := checkpoint.TempDir(o.ScratchDir, ".editkit-search-") // also removed on a signal
	if err != nil {
		return nil, fmt.Errorf("merge: scratch folder for the unit merge: %w", err)
	}
	defer remove()
	scratch := filepath.Join(tmp, "delta")
	wo := tasks.WriteOptions{DType: checkpoint.F32}
	wo.ShardSize = o.ShardSize
	res, err := Run(s, &cfg, scratch, wo, o.Stream)
	if err != nil {
		return nil, err
	}
	d.Params = res.Params
	if o.Coefficient == CoefLinesBeta {
		l, _ := res.Params["lines"].(map[string]any)
		a, ok := l["alpha"].(float64)
		if !ok {
			return nil, errors.New("merge: LiNeS: the unit merge did not report its α")
		}
		d.unit = a
		if d.userAlpha == nil {
			d.Alpha = a
		}
		if a == 0 {
			return nil, errors.New("merge: LiNeS: α is 0, so the merged task vector cannot be recovered from the unit merge: give the recipe's α (--lines-alpha)")
		}
	}
	if cfg.Lines != nil {
		var names []string
		for _, t := range s.Base.Tensors() {
			names = append(names, t.Name)
		}
		if d.layout, err = checkpoint.NewLayout(names, cfg.Lines.LayerPattern); err != nil {
			return nil, err
		}
	}
	if err := d.read(s, scratch, o.Tensors); err != nil {
		return nil, err
	}
	return d, nil
}

// read keeps D = θ(unit) − θ₀ of the named tensors (every float tensor of
// the base when names is nil).
func (d *Direction) read(s *tasks.Set, scratch string, names []string) error {
	if names == nil {
		for _, t := range s.Floats() {
			names = append(names, t.Name)
		}
	}
	ck, err := checkpoint.Open(scratch)
	if err != nil {
		return err
	}
	defer ck.Close()
	d.delta = make(map[string][]float32, len(names))
	var raw []byte
	for _, name := range names {
		if _, ok := d.delta[name]; ok {
			continue
		}
		v, _, err := ck.ReadFloat32(name, nil, nil)
		if err != nil {
			return fmt.Errorf("merge: direction: %w", err)
		}
		var b []float32
		if b, raw, err = s.Base.ReadFloat32(name, raw, nil); err != nil {
			return fmt.Errorf("merge: direction: %w", err)
		}
		for i := range v {
			v[i] -= b[i]
		}
		d.delta[name] = v
		d.names = append(d.names, name)
	}
	return nil
}

// Tensors names the tensors whose Δ the direction holds, in the order
// they were asked for.
func (d *Direction) Tensors() []string { return d.names }

// Delta returns Δ of tensor name (the merged task vector before any
// coefficient), or false when the direction does not hold it. Do not
// modify it.
func (d *Direction) Delta(name string) ([]float32, bool) {
	v, ok := d.delta[name]
	if !ok || d.unit == 1 {
		return v, ok
	}
	out := make([]float32, len(v))
	k := float32(1 / d.unit)
	for i, x := range v {
		out[i] = k * x
	}
	return out, true
}

// Scale is the coefficient of Δ in tensor name at c (see Coefficient): c or
// −c for λ, LiNeS's α + β ℓ/(L−1) for β and α.
func (d *Direction) Scale(name string, c float64) float64 {
	switch d.Coefficient {
	case CoefLinesBeta:
		return d.lines(name, d.Alpha, c)
	case CoefLinesAlpha:
		return d.lines(name, c, 1-c)
	}
	if d.Negate {
		return -c
	}
	return c
}

// lines is LiNeS's scale of a tensor, the one Run applies: α outside
// blocks (whose depth is zero) and in stacks of one block.
func (d *Direction) lines(name string, alpha, beta float64) float64 {
	dp := d.layout.Depth(name)
	return linesScale(alpha, beta, dp.Block, dp.Blocks)
}

// At writes tensor name of θ(c) into dst: dst = base + Scale(name, c)·Δ,
// computed in float32 as base + k·D with k = Scale/unit, base being θ₀'s
// values of the tensor. dst may be base.
func (d *Direction) At(c float64, name string, base, dst []float32) error {
	delta, ok := d.delta[name]
	if !ok {
		return fmt.Errorf("merge: the direction holds no tensor %q (it was made for %d tensors)", name, len(d.delta))
	}
	if len(base) != len(delta) || len(dst) != len(delta) {
		return fmt.Errorf("merge: direction: tensor %q has %d values, base %d, destination %d", name, len(delta), len(base), len(dst))
	}
	k := float32(d.Scale(name, c) / d.unit)
	for i, b := range base {
		dst[i] = b + k*delta[i]
	}
	return nil
}

// Applied is the merge parameter that writes θ(c): c, or −c for negation.
func (d *Direction) Applied(c float64) float64 {
	if d.Negate {
		return -c
	}
	return c
}

// Config returns the recipe at coefficient c, not yet validated: what Run
// needs to write θ(c) to disk exactly as a merge given that coefficient
// would (λ = Applied(c); LiNeS β = c with the recipe's α or the default
// one, which Run computes again; LiNeS α = c with β = 1 − α).
func (d *Direction) Config(c float64) Config {
	cfg := d.recipe.clone()
	if d.Coefficient != CoefLambda {
		if cfg.Lines == nil {
			cfg.Lines = &Lines{}
		}
		cfg.Lambda = nil
	}
	switch d.Coefficient {
	case CoefLinesBeta:
		cfg.Lines.Alpha, cfg.Lines.Beta = nil, f64(c)
		if d.userAlpha != nil {
			cfg.Lines.Alpha = f64(*d.userAlpha)
		}
	case CoefLinesAlpha:
		cfg.Lines.Alpha, cfg.Lines.Beta = f64(c), nil
	default:
		cfg.Lambda = f64(d.Applied(c))
	}
	return cfg
}
