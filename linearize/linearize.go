package linearize

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
)

// Forward is the linearized model as a graph function: for each output k of
// f,
//
//	f_lin,k(x; θ) = f_k(x; θ₀) + J_θ f_k(x; θ₀) · (θ − θ₀)
//
// with θ = theta and θ₀ = base, both keyed by the same weight names. Its
// gradient with respect to theta (for training) is J_θ f(x; θ₀)ᵀ times the
// incoming gradient; base receives a gradient too, which a trainer that
// keeps θ₀ frozen simply does not ask for.
func Forward(f models.ForwardFn, theta, base models.Params, inputs []*graph.Node) []*graph.Node {
	dir := make(models.Params, len(base))
	for name, b := range base {
		dir[name] = graph.Sub(theta.Get(name), b)
	}
	primal, tangents := JVP(f, base, inputs, dir)
	out := make([]*graph.Node, len(primal))
	for k, y := range primal {
		out[k] = graph.Add(y, tangents[0][k])
	}
	return out
}

// baseMark starts the names under which Fn expects θ₀. No checkpoint
// tensor name starts with it.
const baseMark = "linearize:base:"

// BaseName is the name under which Fn and Model bind the base value θ₀ of
// the weight called name.
func BaseName(name string) string { return baseMark + name }

// Specs returns specs followed by the same weights under their BaseName:
// the weights that Fn reads.
func Specs(specs []checkpoint.TensorSpec) []checkpoint.TensorSpec {
	out := make([]checkpoint.TensorSpec, 0, 2*len(specs))
	out = append(out, specs...)
	for _, s := range specs {
		s.Name = BaseName(s.Name)
		out = append(out, s)
	}
	return out
}

// Fn returns the linearization of f around weights bound under their
// BaseName, as a models.ForwardFn of the weights Specs(specs) declares:
// θ under the names of specs, θ₀ under BaseName. Weights of f that specs
// does not name are not linearized and must not be read by f.
func Fn(f models.ForwardFn, specs []checkpoint.TensorSpec) models.ForwardFn {
	return func(p models.Params, inputs []*graph.Node) []*graph.Node {
		theta := make(models.Params, len(specs))
		base := make(models.Params, len(specs))
		for _, s := range specs {
			theta[s.Name] = p.Get(s.Name)
			base[s.Name] = p.Get(BaseName(s.Name))
		}
		return Forward(f, theta, base, inputs)
	}
}

// Model is a model linearized around fixed base weights θ₀, compiled: Call
// evaluates f_lin(x; θ) for any θ of the model's specs, with one compiled
// graph per shape of the inputs (θ₀ and θ are graph parameters, so other
// weights need no recompilation). It is safe for concurrent use.
type Model struct {
	specs []checkpoint.TensorSpec
	base  models.Weights
	fn    *models.Func
}

// New linearizes f, a model of the weights specs declares, around base
// (float32, every weight of specs).
func New(name string, f models.ForwardFn, specs []checkpoint.TensorSpec, base models.Weights) (*Model, error) {
	if err := base.Check(specs); err != nil {
		return nil, fmt.Errorf("linearize: base weights: %w", err)
	}
	fn, err := models.NewFunc(models.Backend(), name+"-linearized", Specs(specs), Fn(f, specs))
	if err != nil {
		return nil, err
	}
	return &Model{specs: specs, base: base, fn: fn}, nil
}

// Base returns the weights θ₀ the model is linearized around.
func (m *Model) Base() models.Weights { return m.base }

// Specs returns the weights the model takes (θ, not θ₀).
func (m *Model) Specs() []checkpoint.TensorSpec { return m.specs }

// Builds is the number of graphs compiled so far.
func (m *Model) Builds() int { return m.fn.Builds() }

// Close frees the compiled graphs.
func (m *Model) Close() { m.fn.Finalize() }

// Call computes f_lin(inputs; theta). A non-finite output is an error
// naming its cause: a non-finite weight of theta or of the base, the base
// model's own output, or (the JVP overflowing) the weight whose difference
// θ − θ₀ alone makes the JVP non-finite.
func (m *Model) Call(theta models.Weights, inputs ...any) ([]*tensors.Tensor, error) {
	outs, err := m.call(theta, inputs)
	if err != nil {
		return nil, err
	}
	if k := nonFiniteOutput(outs); k >= 0 {
		err := m.diagnose(theta, inputs, k)
		for _, o := range outs {
			o.FinalizeAll()
		}
		return nil, err
	}
	return outs, nil
}

func (m *Model) call(theta models.Weights, inputs []any) ([]*tensors.Tensor, error) {
	if err := theta.Check(m.specs); err != nil {
		return nil, err
	}
	w := make(models.Weights, 2*len(m.specs))
	for _, s := range m.specs {
		w[s.Name] = theta[s.Name]
		w[BaseName(s.Name)] = m.base[s.Name]
	}
	return m.fn.Call(w, inputs...)
}

// nonFiniteOutput returns the index of the first floating-point output
// holding a NaN or ±Inf, or −1.
func nonFiniteOutput(outs []*tensors.Tensor) int {
	for k, o := range outs {
		if !finite(o) {
			return k
		}
	}
	return -1
}

func finite(t *tensors.Tensor) bool {
	switch t.DType() {
	case dtypes.Float32:
		return checkpoint.FirstNonFinite(tensors.MustCopyFlatData[float32](t)) < 0
	case dtypes.Float64:
		for _, v := range tensors.MustCopyFlatData[float64](t) {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return false
			}
		}
	}
	return true
}

// ErrNonFinite is wrapped by the errors Call returns for non-finite
// outputs.
var ErrNonFinite = errors.New("non-finite output")

// diagnose finds why output k of f_lin(θ) is not finite. The JVP is linear
// in θ − θ₀, so moving a subset S of the weights (the others kept at θ₀)
// gives the sum of S's contributions; bisection finds a weight whose move
// alone overflows, in about 2·log₂(#weights) evaluations.
func (m *Model) diagnose(theta models.Weights, inputs []any, k int) error {
	for _, w := range []struct {
		what string
		w    models.Weights
	}{{"the weights", theta}, {"the base weights", m.base}} {
		for _, s := range m.specs {
			if i := checkpoint.FirstNonFinite(w.w.Float32(s.Name)); i >= 0 {
				return fmt.Errorf("linearized output %d is not finite: %s hold a non-finite value in tensor %q (flat index %d): %w", k, w.what, s.Name, i, ErrNonFinite)
			}
		}
	}
	moved := func(names []string) (bool, error) {
		w := make(models.Weights, len(m.specs))
		for name, t := range m.base {
			w[name] = t
		}
		for _, n := range names {
			w[n] = theta[n]
		}
		outs, err := m.call(w, inputs)
		if err != nil {
			return false, err
		}
		defer func() {
			for _, o := range outs {
				o.FinalizeAll()
			}
		}()
		return finite(outs[k]), nil
	}
	ok, err := moved(nil)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("linearized output %d is not finite: the base model's own output f(x; θ₀) is not finite: %w", k, ErrNonFinite)
	}
	set := make([]string, len(m.specs))
	for i, s := range m.specs {
		set[i] = s.Name
	}
	for len(set) > 1 {
		half := len(set) / 2
		okLo, err := moved(set[:half])
		if err != nil {
			return err
		}
		if !okLo {
			set = set[:half]
			continue
		}
		okHi, err := moved(set[half:])
		if err != nil {
			return err
		}
		if !okHi {
			set = set[half:]
			continue
		}
		break // only the two halves together overflow
	}
	if len(set) == 1 {
		return fmt.Errorf("linearized output %d is not finite: the JVP in the direction of tensor %q (θ − θ₀ of that tensor alone) overflows; is the model far from the base, or the base the wrong one?: %w", k, set[0], ErrNonFinite)
	}
	return fmt.Errorf("linearized output %d is not finite: the JVP overflows in the direction of tensors %s together: %w", k, listNames(set, 4), ErrNonFinite)
}

func listNames(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(names[:n], "; "), len(names)-n)
}
