// Package heads holds classification heads on top of image features: CLIP's
// zero-shot head (class-name embeddings) and linear probes. A head is data
// (a [classes × dim] matrix, an optional bias, a scale), saved as its own
// safetensors file next to the model it was built for, so a merged or
// fine-tuned image encoder is evaluated with the same, frozen head.
package heads

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
)

// Metadata keys of a saved head.
const (
	kindKey      = "editkit.kind"
	kindHead     = "head"
	classesKey   = "classes"
	scaleKey     = "scale"
	normalizeKey = "normalize"
)

// Head computes logits = Scale · f·Wᵀ + b from an image feature f, which is
// first L2-normalized when Normalize is set (as CLIP's zero-shot
// classification does).
type Head struct {
	Classes   []string
	Dim       int
	Weight    []float32 // [len(Classes), Dim], row-major
	Bias      []float32 // [len(Classes)], or nil
	Scale     float32
	Normalize bool
	// Meta records how the head was made (type, dataset, model, templates).
	Meta map[string]string
}

// Validate checks the head's shapes and values.
func (h *Head) Validate() error {
	c := len(h.Classes)
	switch {
	case c == 0:
		return errors.New("head has no classes")
	case h.Dim <= 0:
		return fmt.Errorf("head feature dimension %d, want > 0", h.Dim)
	case len(h.Weight) != c*h.Dim:
		return fmt.Errorf("head weight has %d values, want %d classes × %d", len(h.Weight), c, h.Dim)
	case h.Bias != nil && len(h.Bias) != c:
		return fmt.Errorf("head bias has %d values, want %d", len(h.Bias), c)
	case h.Scale == 0 || math.IsNaN(float64(h.Scale)) || math.IsInf(float64(h.Scale), 0):
		return fmt.Errorf("head scale %v, want a finite non-zero value", h.Scale)
	}
	if i := checkpoint.FirstNonFinite(h.Weight); i >= 0 {
		return fmt.Errorf("head weight holds %v at %d", h.Weight[i], i)
	}
	return nil
}

// Logits computes the logits of n features ([n, Dim] row-major) on the host.
func (h *Head) Logits(features []float32, n int) ([]float32, error) {
	if len(features) != n*h.Dim {
		return nil, fmt.Errorf("head: %d feature values for %d images of dimension %d (does the head belong to this model?)", len(features), n, h.Dim)
	}
	c := len(h.Classes)
	out := make([]float32, n*c)
	for i := range n {
		f := features[i*h.Dim : (i+1)*h.Dim]
		scale := float64(h.Scale)
		if h.Normalize {
			var ss float64
			for _, v := range f {
				ss += float64(v) * float64(v)
			}
			if ss > 0 {
				scale /= math.Sqrt(ss)
			}
		}
		for k := range c {
			w := h.Weight[k*h.Dim : (k+1)*h.Dim]
			var dot float64
			for j, v := range f {
				dot += float64(v) * float64(w[j])
			}
			logit := scale * dot
			if h.Bias != nil {
				logit += float64(h.Bias[k])
			}
			out[i*c+k] = float32(logit)
		}
	}
	return out, nil
}

// Apply computes the logits of features [batch, Dim] inside a graph, with
// the head's values as constants: the head stays frozen when the graph is
// differentiated with respect to the encoder's weights.
func (h *Head) Apply(features *graph.Node) *graph.Node {
	g := features.Graph()
	c := len(h.Classes)
	w := graph.Const(g, tensors.FromFlatDataAndDimensions(h.Weight, c, h.Dim))
	if h.Normalize {
		ss := graph.ReduceAndKeep(graph.Square(features), graph.ReduceSum, -1)
		features = graph.Div(features, graph.Sqrt(graph.Max(ss, graph.Scalar(g, features.DType(), 1e-24))))
	}
	logits := graph.MulScalar(graph.Einsum("bd,cd->bc", features, w), float64(h.Scale))
	if h.Bias != nil {
		b := graph.Const(g, tensors.FromFlatDataAndDimensions(h.Bias, 1, c))
		logits = graph.Add(logits, b)
	}
	return logits
}

// Save writes the head as a safetensors file ("weight" [C, D], "bias" [C])
// with its classes, scale and provenance in the metadata; path may be a
// .safetensors file or a folder.
func (h *Head) Save(path string, force bool) error {
	if err := h.Validate(); err != nil {
		return err
	}
	classes, err := json.Marshal(h.Classes)
	if err != nil {
		return err
	}
	meta := map[string]string{}
	for k, v := range h.Meta {
		meta[k] = v
	}
	meta[kindKey] = kindHead
	meta[classesKey] = string(classes)
	meta[scaleKey] = strconv.FormatFloat(float64(h.Scale), 'g', -1, 32)
	meta[normalizeKey] = strconv.FormatBool(h.Normalize)
	c := int64(len(h.Classes))
	specs := []checkpoint.TensorSpec{{Name: "weight", DType: checkpoint.F32, Shape: []int64{c, int64(h.Dim)}}}
	if h.Bias != nil {
		specs = append(specs, checkpoint.TensorSpec{Name: "bias", DType: checkpoint.F32, Shape: []int64{c}})
	}
	w, err := checkpoint.Create(path, specs, checkpoint.WriteOptions{Metadata: meta, Force: force})
	if err != nil {
		return err
	}
	defer w.Abort()
	if err := w.WriteFloat32("weight", h.Weight); err != nil {
		return err
	}
	if h.Bias != nil {
		if err := w.WriteFloat32("bias", h.Bias); err != nil {
			return err
		}
	}
	return w.Commit()
}

// Load reads a head saved by Save.
func Load(path string) (*Head, error) {
	c, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if c.Metadata[kindKey] != kindHead {
		return nil, fmt.Errorf("%s is not a classification head (no %s=%s in its metadata): build one with editkit head", path, kindKey, kindHead)
	}
	h := &Head{Meta: map[string]string{}}
	if err := json.Unmarshal([]byte(c.Metadata[classesKey]), &h.Classes); err != nil {
		return nil, fmt.Errorf("%s: metadata %q: %w", path, classesKey, err)
	}
	scale, err := strconv.ParseFloat(c.Metadata[scaleKey], 32)
	if err != nil {
		return nil, fmt.Errorf("%s: metadata %q: %w", path, scaleKey, err)
	}
	h.Scale = float32(scale)
	h.Normalize = c.Metadata[normalizeKey] == "true"
	for k, v := range c.Metadata {
		switch k {
		case kindKey, classesKey, scaleKey, normalizeKey, "format":
		default:
			h.Meta[k] = v
		}
	}
	t, ok := c.Tensor("weight")
	if !ok || len(t.Shape) != 2 {
		return nil, fmt.Errorf("%s: no 2-D tensor \"weight\"", path)
	}
	h.Dim = int(t.Shape[1])
	if h.Weight, _, err = c.ReadFloat32("weight", nil, nil); err != nil {
		return nil, err
	}
	if _, ok := c.Tensor("bias"); ok {
		if h.Bias, _, err = c.ReadFloat32("bias", nil, nil); err != nil {
			return nil, err
		}
	}
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}
