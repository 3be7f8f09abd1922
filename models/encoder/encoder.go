package encoder

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/clip"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/vit"
	"github.com/editkit/editkit/tasks"
)

// Family names an image-encoder architecture.
type Family string

const (
	// ViT is a Hugging Face ViTModel / ViTForImageClassification; its
	// feature is the CLS token after the final layernorm.
	ViT Family = "vit"
	// CLIP is the image tower of a CLIP model in Hugging Face or OpenAI
	// naming; its feature is the (projected) image embedding.
	CLIP Family = "clip"
)

// Encoder is an image encoder as a pure graph function of its weights: the
// part of a checkpoint that fine-tuning trains. For a ViT that is every
// tensor but the checkpoint's own classifier (and the unused pooler); for
// CLIP the image tower with its projection (visual.* or vision_model.* and
// visual_projection), not the text tower nor logit_scale.
type Encoder struct {
	Family Family
	// Specs are the encoder's tensors, which Forward reads and training
	// updates; Weights their values (float32).
	Specs   []checkpoint.TensorSpec
	Weights models.Weights
	// Dim is the size of the feature Forward returns.
	Dim int
	// Preprocess is the model's image preprocessing (input size, resize,
	// normalization).
	Preprocess datasets.Preprocess
	// Path is the checkpoint the encoder was loaded from ("" otherwise).
	Path string

	ViTConfig  *vit.Config  // for ViT
	CLIPConfig *clip.Config // for CLIP (the image tower only: Text is nil)

	mu sync.Mutex
	fn *models.Func // the compiled forward pass, made by Func
}

// Forward computes features [batch, Dim] of pixels [batch, size, size, 3]
// (channels-last, normalized) with the weights in p.
func (e *Encoder) Forward(p models.Params, pixels *graph.Node) *graph.Node {
	switch e.Family {
	case ViT:
		pooled, _ := vit.Forward(*e.ViTConfig, p, pixels)
		return pooled
	case CLIP:
		return clip.EncodeImage(*e.CLIPConfig, p, pixels)
	}
	panic(fmt.Errorf("encoder: unknown encoder family %q", e.Family))
}

// Features names what Forward computes, as heads record it
// (heads.MetaFeatures): heads.FeaturesViT or heads.FeaturesCLIP.
func (e *Encoder) Features() string {
	if e.Family == ViT {
		return heads.FeaturesViT
	}
	return heads.FeaturesCLIP
}

// NewViT makes an encoder of a ViT configuration and its weights (which may
// hold more tensors, such as a classifier: they are ignored).
func NewViT(c vit.Config, w models.Weights) (*Encoder, error) {
	c.NumLabels = 0
	if err := c.Validate(); err != nil {
		return nil, err
	}
	specs := c.Specs()
	if err := w.Check(specs); err != nil {
		return nil, err
	}
	return &Encoder{Family: ViT, Specs: specs, Weights: subset(w, specs), Dim: c.HiddenSize,
		Preprocess: datasets.ViT(c.ImageSize), ViTConfig: &c}, nil
}

// NewCLIP makes an encoder of a CLIP configuration's image tower and its
// weights (which may hold the text tower too: it is ignored).
func NewCLIP(c clip.Config, w models.Weights) (*Encoder, error) {
	if c.Vision == nil {
		return nil, errors.New("encoder: the CLIP model has no image tower")
	}
	c.Text = nil
	if err := c.Validate(); err != nil {
		return nil, err
	}
	specs := c.ImageSpecs()
	if err := w.Check(specs); err != nil {
		return nil, err
	}
	dim := c.EmbedDim
	if dim == 0 {
		dim = c.Vision.Width
	}
	return &Encoder{Family: CLIP, Specs: specs, Weights: subset(w, specs), Dim: dim,
		Preprocess: datasets.CLIP(c.Vision.ImageSize), CLIPConfig: &c}, nil
}

func subset(w models.Weights, specs []checkpoint.TensorSpec) models.Weights {
	out := make(models.Weights, len(specs))
	for _, s := range specs {
		out[s.Name] = w[s.Name]
	}
	return out
}

// Load opens a checkpoint (folder or .safetensors file) of a Hugging Face
// ViT or a CLIP model in either naming and reads its image encoder (see
// Read).
func Load(path string) (*Encoder, error) {
	ck, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	return Read(ck)
}

// Detect tells a checkpoint's family by its tensor names: ViT when it has
// a ViT's CLS token, else CLIP (whose configuration may still fail to
// read).
func Detect(ck *checkpoint.Checkpoint) Family {
	for _, n := range []string{"vit.embeddings.cls_token", "embeddings.cls_token"} {
		if _, ok := ck.Tensor(n); ok {
			return ViT
		}
	}
	return CLIP
}

// Read reads the image encoder's weights of an open checkpoint as float32;
// a CLIP text tower, logit_scale or a ViT classifier is not read. The
// preprocessing is the family's (datasets.ViT or datasets.CLIP at the
// model's image size), with mean and std from a preprocessor_config.json
// beside the weights when there is one. Path is ck.Path.
func Read(ck *checkpoint.Checkpoint) (*Encoder, error) {
	var enc *Encoder
	if Detect(ck) == ViT {
		c, err := vit.ReadConfig(ck.Dir)
		if err != nil {
			return nil, fmt.Errorf("%s looks like a Hugging Face ViT checkpoint: %w", ck.Path, err)
		}
		if c, err = vit.ConfigFor(c, ck); err != nil {
			return nil, err
		}
		c.NumLabels = 0
		w, err := models.ReadWeights(ck, c.Specs())
		if err != nil {
			return nil, err
		}
		if enc, err = NewViT(c, w); err != nil {
			return nil, err
		}
	} else {
		c, err := clip.ReadConfig(ck)
		if err != nil {
			return nil, fmt.Errorf("%s is neither a Hugging Face ViT nor a CLIP checkpoint: %w", ck.Path, err)
		}
		if c.Vision == nil {
			return nil, fmt.Errorf("%s holds a CLIP text tower only: it has no image encoder", ck.Path)
		}
		c.Text = nil
		w, err := models.ReadWeights(ck, c.ImageSpecs())
		if err != nil {
			return nil, err
		}
		if enc, err = NewCLIP(c, w); err != nil {
			return nil, err
		}
	}
	enc.Path = ck.Path
	if err := readPreprocessorConfig(ck.Dir, &enc.Preprocess); err != nil {
		return nil, err
	}
	return enc, nil
}

// readPreprocessorConfig takes image_mean and image_std from a Hugging Face
// preprocessor_config.json in dir, when present.
func readPreprocessorConfig(dir string, p *datasets.Preprocess) error {
	path := filepath.Join(dir, "preprocessor_config.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var cfg struct {
		Mean []float32 `json:"image_mean"`
		Std  []float32 `json:"image_std"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(cfg.Mean) == 3 && len(cfg.Std) == 3 {
		copy(p.Mean[:], cfg.Mean)
		copy(p.Std[:], cfg.Std)
	}
	return p.Validate()
}

// ReadWeights reads the encoder's tensors from another checkpoint of its
// architecture (a fine-tune, a merge); a stored task vector τ gives the
// model θ + τ, θ the encoder's own weights.
func (e *Encoder) ReadWeights(path string) (models.Weights, error) {
	ck, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	w, err := models.ReadWeights(ck, e.Specs)
	if err != nil {
		return nil, err
	}
	if tasks.IsTaskVector(ck) {
		for _, s := range e.Specs {
			base := e.Weights[s.Name]
			tensors.MustMutableFlatData(w[s.Name], func(tau []float32) {
				tensors.MustConstFlatData(base, func(b []float32) {
					for i := range tau {
						tau[i] += b[i]
					}
				})
			})
		}
	}
	return w, nil
}

// Func returns the encoder's forward pass compiled for inference:
// (weights, pixels) → features. It is made on the first call and shared by
// later calls, Encode and Classifier: one graph per batch shape serves any
// weights of the encoder's specs. Close frees it.
func (e *Encoder) Func() (*models.Func, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fn == nil {
		fn, err := models.NewFunc(models.Backend(), string(e.Family)+"-encoder", e.Specs, func(p models.Params, in []*graph.Node) []*graph.Node {
			return []*graph.Node{e.Forward(p, in[0])}
		})
		if err != nil {
			return nil, err
		}
		e.fn = fn
	}
	return e.fn, nil
}

// Close frees the compiled forward pass; a later use compiles it again.
func (e *Encoder) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fn != nil {
		e.fn.Finalize()
		e.fn = nil
	}
}

// Encode computes the features [batch, Dim] (row-major, on the host) of
// pixels, a float32 tensor [batch, size, size, 3] (channels-last, the
// encoder's Preprocess applied), with weights w (the encoder's own when
// nil).
func (e *Encoder) Encode(w models.Weights, pixels *tensors.Tensor) ([]float32, error) {
	if w == nil {
		w = e.Weights
	}
	fn, err := e.Func()
	if err != nil {
		return nil, err
	}
	outs, err := fn.Call(w, pixels)
	if err != nil {
		return nil, err
	}
	// Device memory is freed as soon as the features are copied, not left
	// to the garbage collector.
	defer func() {
		for _, o := range outs {
			o.FinalizeAll()
		}
	}()
	return tensors.MustCopyFlatData[float32](outs[0]), nil
}

// Classifier returns an eval.Classifier that computes the features of a
// batch with weights w (the encoder's own when nil) and classifies them
// with the head on the host.
func (e *Encoder) Classifier(w models.Weights, head *heads.Head) (eval.Classifier, error) {
	if w == nil {
		w = e.Weights
	}
	if err := w.Check(e.Specs); err != nil {
		return nil, err
	}
	return ClassifierOf(func(px *tensors.Tensor) ([]float32, error) { return e.Encode(w, px) }, e.Dim, head)
}

// ClassifierOf returns an eval.Classifier that computes the features
// [batch, dim] of a batch's pixels with encode (e.g. Encode with some
// weights, or a linearized encoder's) and classifies them with the head on
// the host.
func ClassifierOf(encode func(pixels *tensors.Tensor) ([]float32, error), dim int, head *heads.Head) (eval.Classifier, error) {
	if head.Dim != dim {
		return nil, fmt.Errorf("the head takes %d-d features but the encoder gives %d-d ones", head.Dim, dim)
	}
	return func(b *datasets.Batch) ([]float32, error) {
		px, err := models.Pixels(b.Images, b.Size, b.Height, b.Width)
		if err != nil {
			return nil, err
		}
		defer px.FinalizeAll()
		feats, err := encode(px)
		if err != nil {
			return nil, err
		}
		return head.Logits(feats, b.Size)
	}, nil
}
