package linearize

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
)

// Encoder is an image encoder linearized around its base: the features of
// any weights θ of the base's architecture are f_lin(x; θ), computed around
// θ₀ = Base.Weights. Only the encoder is linearized: a head applied to its
// features (normalization included) stays as it is, as in the reference.
type Encoder struct {
	// Base is the encoder at the linearization point: its architecture,
	// preprocessing and weights θ₀.
	Base  *encoder.Encoder
	model *Model
}

// NewEncoder linearizes an image encoder around its own weights.
func NewEncoder(base *encoder.Encoder) (*Encoder, error) {
	f := func(p models.Params, in []*graph.Node) []*graph.Node {
		return []*graph.Node{base.Forward(p, in[0])}
	}
	m, err := New(string(base.Family)+"-encoder", f, base.Specs, base.Weights)
	if err != nil {
		return nil, err
	}
	return &Encoder{Base: base, model: m}, nil
}

// Match checks that an encoder can be evaluated linearized around this
// base: the same family and the same tensors (names, shapes). The error
// names the first mismatches.
func (e *Encoder) Match(enc *encoder.Encoder) error {
	if enc.Family != e.Base.Family {
		return fmt.Errorf("the model is a %s encoder, the base a %s one", enc.Family, e.Base.Family)
	}
	return CheckBase(enc.Specs, e.Base.Specs)
}

// Model returns the compiled linearized forward pass (θ → features).
func (e *Encoder) Model() *Model { return e.model }

// Close frees the compiled graphs.
func (e *Encoder) Close() { e.model.Close() }

// Encode computes the linearized features [batch, Dim] (row-major, on the
// host) of pixels [batch, size, size, 3] with weights w (θ₀ itself when
// nil, where f_lin = f).
func (e *Encoder) Encode(w models.Weights, pixels *tensors.Tensor) ([]float32, error) {
	if w == nil {
		w = e.Base.Weights
	}
	outs, err := e.model.Call(w, pixels)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, o := range outs {
			o.FinalizeAll()
		}
	}()
	return tensors.MustCopyFlatData[float32](outs[0]), nil
}

// Classifier returns an eval.Classifier of the linearized features of
// weights w (θ₀ when nil) through the head, on the host.
func (e *Encoder) Classifier(w models.Weights, head *heads.Head) (eval.Classifier, error) {
	if w == nil {
		w = e.Base.Weights
	}
	if err := w.Check(e.Base.Specs); err != nil {
		return nil, err
	}
	return encoder.ClassifierOf(func(px *tensors.Tensor) ([]float32, error) { return e.Encode(w, px) }, e.Base.Dim, head)
}
