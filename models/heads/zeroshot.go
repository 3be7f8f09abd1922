package heads

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/models/clip"
)

// Metadata keys of the heads this package builds (Head.Meta).
const (
	MetaType            = "head.type"             // "zeroshot" or "probe"
	MetaDataset         = "head.dataset"          // the dataset the classes come from
	MetaModel           = "head.model"            // the checkpoint the head was built with
	MetaFeatures        = "head.features"         // what the head classifies (see FeaturesCLIP, FeaturesViT)
	MetaTemplates       = "head.templates"        // zero-shot: the templates, a JSON list
	MetaTemplatesSource = "head.templates_source" // zero-shot: "builtin:<dataset>", "fallback" or a file
	MetaLogitScale      = "head.logit_scale"      // zero-shot: the checkpoint's logit_scale (Scale = its exp)
)

// Values of MetaType and MetaFeatures.
const (
	TypeZeroShot = "zeroshot"
	TypeProbe    = "probe"
	// FeaturesCLIP: CLIP image embeddings (the projected image tower output,
	// get_image_features / encode_image), unnormalized.
	FeaturesCLIP = "clip-image-embeds"
	// FeaturesViT: a ViT's pooled feature (CLS token after the final
	// layernorm, what ViTForImageClassification's classifier reads).
	FeaturesViT = "vit-pooled"
)

// TextOptions configure EncodeTexts.
type TextOptions struct {
	// BatchSize is the number of texts per call of the text tower (default
	// 64). Every call has this many rows (the last batch is padded), so the
	// tower is compiled once.
	BatchSize int
	// Progress, when set, is called after each batch with the number of
	// texts encoded and the total.
	Progress func(done, total int)
}

// CheckTokenizer checks that tok fits the text tower of m: its ids lie
// inside the model's vocabulary, and its end-of-text token has the highest
// id, where CLIP's text tower pools (the argmax of the ids).
func CheckTokenizer(m *clip.Model, tok *clip.Tokenizer) error {
	t := m.Config.Text
	if t == nil {
		return errors.New("the CLIP checkpoint has no text tower")
	}
	if tok.VocabSize() > t.VocabSize {
		return fmt.Errorf("the tokenizer has %d token ids, the model's text tower %d: they do not belong together", tok.VocabSize(), t.VocabSize)
	}
	if tok.EndOfTextID() != tok.VocabSize()-1 {
		return fmt.Errorf("the tokenizer's end-of-text token has id %d, not the highest (%d): CLIP's text tower pools at the highest id", tok.EndOfTextID(), tok.VocabSize()-1)
	}
	return nil
}

// EncodeTexts tokenizes texts as clip.tokenize does (truncated to the text
// tower's context length) and returns their text embeddings, [len(texts),
// EmbedDim] row-major, unnormalized (encode_text), and the embedding size.
func EncodeTexts(m *clip.Model, tok *clip.Tokenizer, texts []string, o TextOptions) ([]float32, int, error) {
	if err := CheckTokenizer(m, tok); err != nil {
		return nil, 0, err
	}
	if len(texts) == 0 {
		return nil, 0, errors.New("no texts to encode")
	}
	ctx := m.Config.Text.ContextLength
	bs := o.BatchSize
	if bs <= 0 {
		bs = 64
	}
	bs = min(bs, len(texts))
	var out []float32
	dim := 0
	rows := make([][]int, bs)
	for start := 0; start < len(texts); start += bs {
		end := min(start+bs, len(texts))
		for k := range bs {
			i := min(start+k, end-1) // pad the last batch with its last text
			ids, _, err := tok.TokenizeLength(texts[i], ctx, true)
			if err != nil {
				return nil, 0, err
			}
			rows[k] = ids
		}
		idt, err := clip.TokenIDs(rows)
		if err != nil {
			return nil, 0, err
		}
		emb, err := m.EncodeText(idt)
		idt.FinalizeAll()
		if err != nil {
			return nil, 0, err
		}
		flat := tensors.MustCopyFlatData[float32](emb)
		d := emb.Shape().Dimensions
		emb.FinalizeAll()
		if len(d) != 2 || d[0] != bs {
			return nil, 0, fmt.Errorf("the text tower returned %s for %d texts", emb.Shape(), bs)
		}
		if out == nil {
			dim = d[1]
			out = make([]float32, 0, len(texts)*dim)
		}
		out = append(out, flat[:(end-start)*dim]...)
		if o.Progress != nil {
			o.Progress(end, len(texts))
		}
	}
	return out, dim, nil
}

// LogitScale returns the checkpoint's logit_scale (the log of CLIP's
// temperature; exp of it is 100 for OpenAI's released models). ok is false
// for a checkpoint without one (a single tower).
func LogitScale(m *clip.Model) (v float64, ok bool) {
	w := m.Weights.Float32("logit_scale")
	if len(w) != 1 {
		return 0, false
	}
	return float64(w[0]), true
}

// ZeroShotOptions configure ZeroShot.
type ZeroShotOptions struct {
	TextOptions
	// Scale overrides exp(logit_scale) of the checkpoint (0: use the
	// checkpoint's; a checkpoint without logit_scale needs it).
	Scale float64
	// Dataset, Model and TemplatesSource are recorded in the head's Meta.
	Dataset, Model, TemplatesSource string
}

// ZeroShot builds CLIP's zero-shot classification head as the task-vectors
// reference does (mlfoundations/task_vectors, build_zero_shot_classifier):
// for each class, every template is filled with the class name, encoded
// by the text tower, L2-normalized; the class's row is the mean of these,
// L2-normalized again. The head has Scale exp(logit_scale) (100 for CLIP),
// Normalize set (image features are L2-normalized first) and no bias, so its
// logits are CLIP's: exp(logit_scale)·cos(image, class). The reference folds
// the scale into the weights; here the rows stay unit vectors and Scale holds
// it, which gives the same logits. The averaging runs in float64.
//
// The classes are the names written into the prompts, in label order.
func ZeroShot(m *clip.Model, tok *clip.Tokenizer, classes, templates []string, o ZeroShotOptions) (*Head, error) {
	if len(classes) == 0 {
		return nil, errors.New("zero-shot head: no classes")
	}
	if len(templates) == 0 {
		return nil, errors.New("zero-shot head: no templates")
	}
	for i, t := range templates {
		if !containsPlaceholder(t) {
			return nil, fmt.Errorf("zero-shot head: template %d (%q) has no %s for the class name", i+1, t, Placeholder)
		}
	}
	scale := o.Scale
	logitScale, hasScale := LogitScale(m)
	if scale == 0 {
		if !hasScale {
			return nil, errors.New("zero-shot head: the checkpoint has no logit_scale (a single CLIP tower?): give the scale explicitly (CLIP's is 100)")
		}
		scale = math.Exp(logitScale)
	}
	if !(scale > 0) || math.IsInf(scale, 0) {
		return nil, fmt.Errorf("zero-shot head: scale %v, want a finite positive value", scale)
	}
	prompts := make([]string, 0, len(classes)*len(templates))
	for _, c := range classes {
		for _, t := range templates {
			prompts = append(prompts, Prompt(t, c))
		}
	}
	emb, dim, err := EncodeTexts(m, tok, prompts, o.TextOptions)
	if err != nil {
		return nil, fmt.Errorf("zero-shot head: %w", err)
	}
	nt := len(templates)
	weight := make([]float32, len(classes)*dim)
	acc := make([]float64, dim)
	for c := range classes {
		clear(acc)
		for t := range nt {
			row := emb[(c*nt+t)*dim : (c*nt+t+1)*dim]
			n := norm32(row)
			if !(n > 0) || math.IsInf(n, 0) {
				return nil, fmt.Errorf("zero-shot head: the text embedding of %q has norm %v", prompts[c*nt+t], n)
			}
			for j, v := range row {
				acc[j] += float64(v) / n
			}
		}
		// The mean's direction is the sum's: dividing by nt is left out.
		n := norm64(acc)
		if !(n > 0) {
			return nil, fmt.Errorf("zero-shot head: the templates' embeddings of class %q cancel out", classes[c])
		}
		for j, v := range acc {
			weight[c*dim+j] = float32(v / n)
		}
	}
	tj, err := json.Marshal(templates)
	if err != nil {
		return nil, err
	}
	meta := map[string]string{
		MetaType:      TypeZeroShot,
		MetaFeatures:  FeaturesCLIP,
		MetaTemplates: string(tj),
	}
	if hasScale {
		meta[MetaLogitScale] = strconv.FormatFloat(logitScale, 'g', -1, 64)
	}
	setIf(meta, MetaDataset, o.Dataset)
	setIf(meta, MetaModel, o.Model)
	setIf(meta, MetaTemplatesSource, o.TemplatesSource)
	h := &Head{
		Classes:   append([]string(nil), classes...),
		Dim:       dim,
		Weight:    weight,
		Scale:     float32(scale),
		Normalize: true,
		Meta:      meta,
	}
	return h, h.Validate()
}

func containsPlaceholder(t string) bool { return Prompt(t, "") != t }

func setIf(m map[string]string, k, v string) {
	if v != "" {
		m[k] = v
	}
}

func norm32(v []float32) float64 {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	return math.Sqrt(ss)
}

func norm64(v []float64) float64 {
	var ss float64
	for _, x := range v {
		ss += x * x
	}
	return math.Sqrt(ss)
}
