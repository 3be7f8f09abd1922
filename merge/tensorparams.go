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
// per-tensor values.
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
	tp.normalize = boolOr(c.Normalize, false)
	tp.rescale = boolOr(c.Rescale, false)
	tp.selectTopK = floatOr(c.SelectTopK, 1)
	tp.rowWise = boolOr(c.RowWise, false)
	tp.flatten = boolOr(c.Flatten, true)
	tp.filterWise = boolOr(c.FilterWise, false)
	tp.maxIter = 10
	if c.MaxIter != nil {
		tp.maxIter = *c.MaxIter
	}
	tp.tol = floatOr(c.Tol, 1e-5)
	tp.normWeight = boolOr(c.NormalizeWeights, true)
	tp.eps = floatOr(c.Eps, 1e-8)
	return tp
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

func floatOr(f *float64, def float64) float64 {
	if f == nil {
		return def
	}
	return *f
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
