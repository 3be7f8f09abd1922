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
func (e *Encoder) Match(enc *encoder.Encoder) error { return matchEncoders(enc, e.Base) }

func matchEncoders(enc, base *encoder.Encoder) error {
	if enc.Family != base.Family {
		return fmt.Errorf("the model is a %s encoder, the base a %s one", enc.Family, base.Family)
	}
	return CheckBase(enc.Specs, base.Specs)
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

// Choice says how model checkpoints are evaluated: around which base
// ("": plainly), and whether their metadata chose it.
type Choice struct {
	Base     string
	Recorded bool // the checkpoints are linearized fine-tunes that record Base
}

// ForModel returns what evaluates enc, an encoder loaded from a checkpoint
// (enc.Path): see ForModels.
func ForModel(enc *encoder.Encoder, at string, plain bool) (*Encoder, Choice, error) {
	return ForModels([]*encoder.Encoder{enc}, at, plain)
}

// ForModels returns what evaluates encoders loaded from checkpoints
// (their Path) and combinations of them: the encoders linearized around at
// when given (post-hoc linearization, or the base of linearized fine-tunes
// given explicitly), else around the base that linearized fine-tunes
// record in their metadata, else nil (evaluate them as they are; plain
// forces that). Linearized fine-tunes must all record the same base; a
// mix of linearized and plain checkpoints needs at (or plain). The base
// must match the models (family, tensor names and shapes: the error names
// the first mismatches) and hold the weights linearized fine-tunes record
// (the error says which base was expected).
func ForModels(encs []*encoder.Encoder, at string, plain bool) (*Encoder, Choice, error) {
	if plain && at != "" {
		return nil, Choice{}, fmt.Errorf("evaluate plainly or linearized around %s, not both", at)
	}
	var infos []BaseInfo
	var linearized, notLinearized []string
	for _, enc := range encs {
		ck, err := checkpoint.Open(enc.Path)
		if err != nil {
			return nil, Choice{}, err
		}
		meta := ck.Metadata
		ck.Close()
		info, ok, err := ReadMetadata(meta)
		if err != nil {
			return nil, Choice{}, fmt.Errorf("%s: %w", enc.Path, err)
		}
		if !ok {
			notLinearized = append(notLinearized, enc.Path)
			continue
		}
		if len(infos) > 0 && info.Digest != infos[0].Digest {
			return nil, Choice{}, fmt.Errorf("%s and %s were fine-tuned linearized around different bases (%s and %s)", linearized[0], enc.Path, infos[0].Path, info.Path)
		}
		infos = append(infos, info)
		linearized = append(linearized, enc.Path)
	}
	var ch Choice
	switch {
	case plain:
		return nil, ch, nil
	case at != "":
		ch.Base = at
	case len(infos) == 0:
		return nil, ch, nil
	case len(notLinearized) > 0:
		return nil, ch, fmt.Errorf("%s is a linearized fine-tune but %s is not: give the base to linearize all of them around with --linearize-at, or --no-linearize", linearized[0], notLinearized[0])
	default:
		if _, err := os.Stat(infos[0].Path); err != nil {
			return nil, ch, fmt.Errorf("%s was fine-tuned linearized around %s (sha256 %s…), which is not there: pass that base with --linearize-at", linearized[0], infos[0].Path, short(infos[0].Digest))
		}
		ch = Choice{Base: infos[0].Path, Recorded: true}
	}
	base, err := encoder.Load(ch.Base)
	if err != nil {
		return nil, ch, fmt.Errorf("linearization base: %w", err)
	}
	for _, enc := range encs {
		if err := matchEncoders(enc, base); err != nil {
			return nil, ch, fmt.Errorf("base %s does not match model %s: %w", ch.Base, enc.Path, err)
		}
	}
	if len(infos) > 0 {
		if err := infos[0].Verify(ch.Base, base.Specs, base.Weights); err != nil {
			return nil, ch, fmt.Errorf("%s: %w", linearized[0], err)
		}
	}
	lin, err := NewEncoder(base)
	return lin, ch, err
}
