package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/clip"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/vit"
	"github.com/gomlx/gomlx/pkg/core/graph"
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
	panic(fmt.Errorf("train: unknown encoder family %q", e.Family))
}

// Features names what Forward computes, as heads record it
// (heads.MetaFeatures): heads.FeaturesViT or heads.FeaturesCLIP.
func (e *Encoder) Features() string {
	if e.Family == ViT {
		return heads.FeaturesViT
	}
	return heads.FeaturesCLIP
}

// NewViTEncoder makes an encoder of a ViT configuration and its weights
// (which may hold more tensors, such as a classifier: they are ignored).
func NewViTEncoder(c vit.Config, w models.Weights) (*Encoder, error) {
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

// NewCLIPEncoder makes an encoder of a CLIP configuration's image tower and
// its weights (which may hold the text tower too: it is ignored).
func NewCLIPEncoder(c clip.Config, w models.Weights) (*Encoder, error) {
	if c.Vision == nil {
		return nil, errors.New("train: the CLIP model has no image tower")
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

// LoadEncoder opens a checkpoint (folder or .safetensors file) of a Hugging
// Face ViT or a CLIP model in either naming and reads its image encoder's
// weights as float32; a CLIP text tower is not read. The preprocessing is
// the family's (datasets.ViT or datasets.CLIP at the model's image size),
// with mean and std from a preprocessor_config.json beside the weights when
// there is one.
func LoadEncoder(path string) (*Encoder, error) {
	ck, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	var enc *Encoder
	if isViT(ck) {
		c, err := vit.ReadConfig(ck.Dir)
		if err != nil {
			return nil, err
		}
		if c, err = vit.ConfigFor(c, ck); err != nil {
			return nil, err
		}
		c.NumLabels = 0
		w, err := models.ReadWeights(ck, c.Specs())
		if err != nil {
			return nil, err
		}
		if enc, err = NewViTEncoder(c, w); err != nil {
			return nil, err
		}
	} else {
		c, err := clip.ReadConfig(ck)
		if err != nil {
			return nil, fmt.Errorf("%w (editkit fine-tunes Hugging Face ViT and CLIP image encoders)", err)
		}
		if c.Vision == nil {
			return nil, fmt.Errorf("%s holds a CLIP text tower only: fine-tuning needs an image tower", path)
		}
		c.Text = nil
		w, err := models.ReadWeights(ck, c.ImageSpecs())
		if err != nil {
			return nil, err
		}
		if enc, err = NewCLIPEncoder(c, w); err != nil {
			return nil, err
		}
	}
	enc.Path = path
	if err := readPreprocessorConfig(ck.Dir, &enc.Preprocess); err != nil {
		return nil, err
	}
	return enc, nil
}

func isViT(ck *checkpoint.Checkpoint) bool {
	for _, n := range []string{"vit.embeddings.cls_token", "embeddings.cls_token"} {
		if _, ok := ck.Tensor(n); ok {
			return true
		}
	}
	return false
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

// Func compiles the encoder's forward pass for inference: (weights,
// pixels) → features, for evaluation and for computing heads.
func (e *Encoder) Func() (*models.Func, error) {
	return models.NewFunc(models.Backend(), string(e.Family)+"-encoder", e.Specs, func(p models.Params, in []*graph.Node) []*graph.Node {
		return []*graph.Node{e.Forward(p, in[0])}
	})
}
