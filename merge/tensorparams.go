package merge

import (
	"fmt"
	"math"
	"slices"

	"github.com/editkit/editkit/checkpoint"
)

// tensorParams are a resolved recipe's parameters for one tensor. A
// command-line recipe has one set for every tensor; a mergekit configuration
// with gradients or filters has one per tensor.
type tensorParams struct {
	w          []float32 // weights, per member
	wf         []float64 // the same in float64
	density    []float64
	gamma      []float64
	epsilon    []float64
	scale      []float64 // passthrough, nil when not given
	lambda     float64
	t          float64
	normalize  bool
	rescale    bool
	selectTopK float64
	rowWise    bool
	flatten    bool
	filterWise bool
	maxIter    int
	tol        float64
	normWeight bool
	eps        float64
}

// baseParams returns the parameters of a resolved config with no
// per-tensor values. A parameter the config leaves unset takes the
// method's default from its row (the one table of defaults); Resolve has
// set every one the method reads unless it varies per tensor.
func baseParams(c *Config, n int) *tensorParams {
	tp := &tensorParams{lambda: 1}
	tp.setWeights(c.Weights, n)
	tp.density = orRepeat(c.Density, 1, n)
	tp.gamma = orRepeat(c.Gamma, defaultGamma, n)
	tp.epsilon = orRepeat(c.Epsilon, defaultEpsilon, n)
	tp.scale = slices.Clone(c.Scale)
	if c.Lambda != nil {
		tp.lambda = *c.Lambda
	}
	if c.T != nil {
		tp.t = *c.T
	}
	tp.normalize = orDefault(c.Normalize, c, "normalize")
	tp.rescale = orDefault(c.Rescale, c, "rescale")
	tp.selectTopK = orDefault(c.SelectTopK, c, "select_topk")
	tp.rowWise = orDefault(c.RowWise, c, "nuslerp_row_wise")
	tp.flatten = orDefault(c.Flatten, c, "nuslerp_flatten")
	tp.filterWise = orDefault(c.FilterWise, c, "filter_wise")
	tp.maxIter = orDefault(c.MaxIter, c, "max_iter")
	tp.tol = orDefault(c.Tol, c, "tol")
	tp.normWeight = orDefault(c.NormalizeWeights, c, "normalize_weights")
	tp.eps = orDefault(c.Eps, c, "eps")
	return tp
}

// orDefault is *v when set, else the default of the named parameter for
// c's method and semantics (the zero value when the method has none). A
// default of another type than the field is a bug in the method table.
func orDefault[T any](v *T, c *Config, name string) T {
	if v != nil {
		return *v
	}
	var zero T
	u := rowOf(c.Method).use(name)
	if u == nil {
		return zero
	}
	d := u.paper
	if c.Semantics == Mergekit {
		d = u.mergekit
	}
	if d.v == nil {
		return zero
	}
	x, ok := d.v.(T)
	if !ok {
		panic(fmt.Sprintf("merge: %s's default for %s is a %T, its field a %T", c.Method, name, d.v, zero))
	}
	return x
}

func (tp *tensorParams) setWeights(w []float64, n int) {
	tp.wf = orRepeat(w, 1, n)
	tp.w = make([]float32, n)
	for i, v := range tp.wf {
		tp.w[i] = float32(v)
	}
}

func orRepeat(v []float64, def float64, n int) []float64 {
	if len(v) == 0 {
		return slices.Repeat([]float64{def}, n)
	}
	if len(v) == 1 && n > 1 {
		return slices.Repeat(v, n)
	}
	return slices.Clone(v)
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// tensorParamsFor resolves the per-tensor parameters of every float tensor
// of a configuration with gradients or filters, checking each value as the
// table and the method require. It fails before any data is read.
func tensorParamsFor(c *Config, n int, floats []checkpoint.TensorInfo) ([]*tensorParams, error) {
	base := baseParams(c, n)
	out := make([]*tensorParams, len(floats))
	if c.tensorwise == nil {
		for i := range out {
			out[i] = base
		}
		return out, nil
	}
	row := rowOf(c.Method)
	for ti, t := range floats {
		tp := *base
		tp.wf, tp.density, tp.gamma, tp.epsilon = slices.Clone(base.wf), slices.Clone(base.density), slices.Clone(base.gamma), slices.Clone(base.epsilon)
		if base.scale != nil {
			tp.scale = slices.Clone(base.scale)
		}
		for _, u := range row.params {
			p := ParamByName(u.name)
			if u.noEffect || !u.in(c.Semantics) || !c.tensorwise.varies(p.Name) {
				continue
			}
			d := u.mergekit
			if c.Semantics == Paper {
				d = u.paper
			}
			if p.Kind == Floats {
				vals := tp.perModel(p.Name)
				for m := range n {
					v, ok := c.tensorwise.value(p.Name, m, t.Name)
					if !ok {
						if _, set := p.Get(c); set || d.v != nil {
							continue // the scalar value or default
						}
						if d.required != "" {
							return nil, fmt.Errorf("tensor %q: model %d has no %s: %s", t.Name, m+1, p.Name, d.required)
						}
						continue
					}
					if p.Name == "scale" && tp.scale == nil {
						tp.scale = slices.Repeat([]float64{math.NaN()}, n) // NaN: not scaled
						vals = &tp.scale
					}
					(*vals)[m] = v.(float64)
				}
				continue
			}
			v, ok := c.tensorwise.value(p.Name, -1, t.Name)
			if !ok {
				if _, set := p.Get(c); !set && d.required != "" {
					return nil, fmt.Errorf("tensor %q: no value of %s: %s", t.Name, p.Name, d.required)
				}
				continue
			}
			tp.setScalar(p.Name, v)
		}
		tp.setWeights(tp.wf, n)
		if err := tp.check(c.Method, t.Name); err != nil {
			return nil, err
		}
		out[ti] = &tp
	}
	return out, nil
}

// perModel returns the per-model slice named by a Floats parameter.
func (tp *tensorParams) perModel(name string) *[]float64 {
	switch name {
	case "weight":
		return &tp.wf
	case "density":
		return &tp.density
	case "gamma":
		return &tp.gamma
	case "epsilon":
		return &tp.epsilon
	case "scale":
		return &tp.scale
	}
	panic("merge: no per-model field for " + name)
}

func (tp *tensorParams) setScalar(name string, v any) {
	switch name {
	case "lambda":
		tp.lambda = v.(float64)
	case "t":
		tp.t = v.(float64)
	case "normalize":
		tp.normalize = v.(bool)
	case "rescale":
		tp.rescale = v.(bool)
	case "select_topk":
		tp.selectTopK = v.(float64)
	case "nuslerp_row_wise":
		tp.rowWise = v.(bool)
	case "nuslerp_flatten":
		tp.flatten = v.(bool)
	case "filter_wise":
		tp.filterWise = v.(bool)
	case "max_iter":
		tp.maxIter = v.(int)
	case "tol":
		tp.tol = v.(float64)
	case "normalize_weights":
		tp.normWeight = v.(bool)
	case "eps":
		tp.eps = v.(float64)
	}
}

// check applies the checks that combine parameters to one tensor's values
// (of a mergekit configuration: Breadcrumbs' density + gamma may exceed 1,
// see checkSparsity).
func (tp *tensorParams) check(m Method, tensor string) error {
	row := rowOf(m)
	for i, d := range tp.density {
		if row.sparsify == magprune && d < 1 && (d+tp.epsilon[i] >= 1 || d-tp.epsilon[i] <= 0) {
			return fmt.Errorf("tensor %q: model %d: DELLA's keep probabilities density ± epsilon (%v ± %v) must lie in (0, 1)", tensor, i+1, d, tp.epsilon[i])
		}
	}
	if dividesByWeights(m, tp.normalize, tp.normWeight) {
		var sum float64
		for _, w := range tp.wf {
			sum += w
		}
		if sum == 0 {
			return fmt.Errorf("tensor %q: the weights %v sum to 0: a weighted average needs a non-zero total weight", tensor, tp.wf)
		}
	}
	return nil
}
