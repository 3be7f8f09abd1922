package linearize

import (
	"fmt"
	"os"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
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

// Choice says how a model checkpoint is evaluated: around which base
// ("": plainly), and whether the checkpoint's metadata chose it.
type Choice struct {
	Base     string
	Recorded bool // the checkpoint is a linearized fine-tune that records Base
}

// ForModel returns what evaluates enc, an encoder loaded from a
// checkpoint (enc.Path): the encoder linearized around at when given
// (post-hoc linearization, or a linearized fine-tune's base given
// explicitly), else around the base that a linearized fine-tune records in
// its metadata, else nil (evaluate enc as it is; plain forces that). The
// base must match the model (family, tensor names and shapes: the error
// names the first mismatches) and, for a linearized fine-tune, hold the
// weights it records (the error says which base was expected).
func ForModel(enc *encoder.Encoder, at string, plain bool) (*Encoder, Choice, error) {
	ch, info, err := choose(enc.Path, at, plain)
	if err != nil || ch.Base == "" {
		return nil, ch, err
	}
	base, err := encoder.Load(ch.Base)
	if err != nil {
		return nil, ch, fmt.Errorf("linearization base: %w", err)
	}
	lin, err := NewEncoder(base)
	if err != nil {
		return nil, ch, err
	}
	if err := lin.Match(enc); err != nil {
		lin.Close()
		return nil, ch, fmt.Errorf("base %s does not match model %s: %w", ch.Base, enc.Path, err)
	}
	if info != nil {
		if err := info.Verify(ch.Base, base.Specs, base.Weights); err != nil {
			lin.Close()
			return nil, ch, fmt.Errorf("%s: %w", enc.Path, err)
		}
	}
	return lin, ch, nil
}

func choose(modelPath string, at string, plain bool) (Choice, *BaseInfo, error) {
	ck, err := checkpoint.Open(modelPath)
	if err != nil {
		return Choice{}, nil, err
	}
	meta := ck.Metadata
	ck.Close()
	info, linearized, err := ReadMetadata(meta)
	if err != nil {
		return Choice{}, nil, fmt.Errorf("%s: %w", modelPath, err)
	}
	switch {
	case plain && at != "":
		return Choice{}, nil, fmt.Errorf("evaluate %s plainly or linearized around %s, not both", modelPath, at)
	case plain:
		return Choice{}, nil, nil
	case at != "" && linearized:
		return Choice{Base: at}, &info, nil
	case at != "":
		return Choice{Base: at}, nil, nil
	case linearized:
		if _, err := os.Stat(info.Path); err != nil {
			return Choice{}, nil, fmt.Errorf("%s was fine-tuned linearized around %s (sha256 %s…), which is not there: pass that base with --linearize-at", modelPath, info.Path, short(info.Digest))
		}
		return Choice{Base: info.Path, Recorded: true}, &info, nil
	}
	return Choice{}, nil, nil
}
