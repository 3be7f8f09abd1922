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
	return checkpoint.CheckShapes(enc.Path, enc.Specs, base.Path, base.Specs)
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
	// Elsewhere is set by ForMerge when Base holds other weights than the
	// merge's base θ₀: the candidates θ₀ + λΔ are then linearized around a
	// point they do not start from.
	Elsewhere bool
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
	paths := make([]string, len(encs))
	for i, enc := range encs {
		paths[i] = enc.Path
	}
	rec, err := readRecords(paths, at, plain)
	if err != nil {
		return nil, Choice{}, err
	}
	infos, linearized := rec.infos, rec.linearized
	var ch Choice
	switch {
	case plain:
		return nil, ch, nil
	case at != "":
		ch.Base = at
	case len(infos) == 0:
		return nil, ch, nil
	default:
		if _, err := os.Stat(infos[0].Path); err != nil {
			return nil, ch, fmt.Errorf("%s was fine-tuned linearized around %s (sha256 %s…), which is not there: pass that base with --linearize-at", linearized[0], infos[0].Path, short(infos[0].Digest))
		}
		ch = Choice{Base: infos[0].Path, Recorded: true}
	}
	var info *BaseInfo
	if len(infos) > 0 {
		info = &infos[0]
	}
	lin, err := loadBase(ch.Base, encs, info, linearized)
	return lin, ch, err
}

// records are the linearization records of a set of checkpoints.
type records struct {
	infos      []BaseInfo // of the linearized fine-tunes, all of one base
	linearized []string   // their paths
}

// readRecords reads the linearization metadata of checkpoints: either all
// or none are linearized fine-tunes (unless at or plain decides for them),
// and all of one base.
func readRecords(paths []string, at string, plain bool) (records, error) {
	var r records
	if plain && at != "" {
		return r, fmt.Errorf("evaluate plainly or linearized around %s, not both", at)
	}
	var notLinearized []string
	for _, path := range paths {
		ck, err := checkpoint.Open(path)
		if err != nil {
			return r, err
		}
		meta := ck.Metadata
		ck.Close()
		info, ok, err := ReadMetadata(meta)
		if err != nil {
			return r, fmt.Errorf("%s: %w", path, err)
		}
		if !ok {
			notLinearized = append(notLinearized, path)
			continue
		}
		if len(r.infos) > 0 && info.Digest != r.infos[0].Digest {
			return r, fmt.Errorf("%s and %s were fine-tuned linearized around different bases (%s and %s)", r.linearized[0], path, r.infos[0].Path, info.Path)
		}
		r.infos = append(r.infos, info)
		r.linearized = append(r.linearized, path)
	}
	if len(r.infos) > 0 && len(notLinearized) > 0 && at == "" && !plain {
		return r, fmt.Errorf("%s is a linearized fine-tune but %s is not: give the base to linearize all of them around with --linearize-at, or --no-linearize", r.linearized[0], notLinearized[0])
	}
	return r, nil
}

// ForMerge returns what evaluates merges of the checkpoints members into
// base (θ₀ = base.Weights, base.Path its checkpoint): linearized around
// at when given, else, when the members are linearized fine-tunes, around
// base itself, which must then hold the weights they record (Recorded is
// set, and Metadata gives the merge's own record); else nil. See ForModels
// for the rest.
func ForMerge(base *encoder.Encoder, members []string, at string, plain bool) (*Encoder, Choice, error) {
	rec, err := readRecords(members, at, plain)
	if err != nil || plain {
		return nil, Choice{}, err
	}
	if len(rec.infos) > 0 {
		if err := rec.infos[0].Verify(base.Path, base.Specs, base.Weights); err != nil {
			return nil, Choice{}, fmt.Errorf("%s: %w", rec.linearized[0], err)
		}
	}
	if at != "" {
		var info *BaseInfo
		if len(rec.infos) > 0 {
			info = &rec.infos[0]
		}
		lin, err := loadBase(at, []*encoder.Encoder{base}, info, rec.linearized)
		if err != nil {
			return nil, Choice{}, err
		}
		ch := Choice{Base: at}
		if info == nil {
			ours, err := Digest(base.Specs, base.Weights)
			if err != nil {
				lin.Close()
				return nil, Choice{}, err
			}
			theirs, err := Digest(lin.Base.Specs, lin.Base.Weights)
			if err != nil {
				lin.Close()
				return nil, Choice{}, err
			}
			ch.Elsewhere = ours != theirs
		}
		return lin, ch, nil
	}
	if len(rec.infos) == 0 {
		return nil, Choice{}, nil
	}
	lin, err := NewEncoder(base)
	return lin, Choice{Base: base.Path, Recorded: true}, err
}

// loadBase loads the linearization base at path, checks that it matches
// the models (family, tensor names and shapes) and, when info is set, that
// it holds the weights the linearized fine-tunes (recordedBy) record.
func loadBase(path string, models []*encoder.Encoder, info *BaseInfo, recordedBy []string) (*Encoder, error) {
	base, err := encoder.Load(path)
	if err != nil {
		return nil, fmt.Errorf("linearization base: %w", err)
	}
	for _, enc := range models {
		if err := matchEncoders(enc, base); err != nil {
			return nil, fmt.Errorf("base %s does not match model %s: %w", path, enc.Path, err)
		}
	}
	if info != nil {
		if err := info.Verify(path, base.Specs, base.Weights); err != nil {
			return nil, fmt.Errorf("%s: %w", recordedBy[0], err)
		}
	}
	return NewEncoder(base)
}

// Linearized returns the checkpoints of paths that are linearized
// fine-tunes (reading their metadata only), in order, and the base they
// record; linearized fine-tunes of different bases are an error.
func Linearized(paths []string) ([]string, BaseInfo, error) {
	rec, err := readRecords(paths, "", true)
	if err != nil || len(rec.infos) == 0 {
		return nil, BaseInfo{}, err
	}
	return rec.linearized, rec.infos[0], nil
}
