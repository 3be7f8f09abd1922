// Package vit is the Hugging Face Vision Transformer (ViTModel,
// ViTForImageClassification) in GoMLX, loading real checkpoints.
//
// Tensor names are transformers' own: vit.embeddings.{cls_token,
// position_embeddings, patch_embeddings.projection.{weight,bias}},
// vit.encoder.layer.{i}.{layernorm_before, attention.attention.{query,key,
// value}, attention.output.dense, layernorm_after, intermediate.dense,
// output.dense}, vit.layernorm and classifier; a bare ViTModel saves them
// without the "vit." prefix, which Load detects. The architecture comes from
// config.json beside the weights; the number of labels from the classifier's
// shape. ViTModel's tanh pooler (pooler.dense), when present, is not used:
// the pooled feature is the CLS token after the final layernorm, which is
// what ViTForImageClassification classifies.
//
// Forward is the model as a pure graph function of its weights; Model binds
// weights read from a checkpoint and runs it:
//
//	m, err := vit.Load("path/to/checkpoint")     // folder with config.json
//	pooled, logits, err := m.Run(pixels)         // float32 [B, H, W, 3], normalized
//	m2, err := m.WithWeights(merged)             // same compiled graphs
package vit

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/gomlx/gomlx/pkg/core/graph"
)

// Config is the architecture, as in transformers' ViTConfig (config.json).
type Config struct {
	HiddenSize        int     `json:"hidden_size"`
	NumHiddenLayers   int     `json:"num_hidden_layers"`
	NumAttentionHeads int     `json:"num_attention_heads"`
	IntermediateSize  int     `json:"intermediate_size"`
	ImageSize         int     `json:"image_size"`
	PatchSize         int     `json:"patch_size"`
	NumChannels       int     `json:"num_channels"`
	LayerNormEps      float64 `json:"layer_norm_eps"`
	HiddenAct         string  `json:"hidden_act"`
	QKVBias           bool    `json:"qkv_bias"`

	// NumLabels is the classifier's number of outputs; 0 means no
	// classifier (a bare ViTModel).
	NumLabels int `json:"-"`
	// Prefix is the prefix of the backbone's tensor names: "vit." in
	// ViTForImageClassification checkpoints, "" in a bare ViTModel's.
	Prefix string `json:"-"`
}

// DefaultConfig is ViTConfig's defaults (ViT-B/16 at 224 pixels) with a
// "vit." prefix and no classifier.
func DefaultConfig() Config {
	return Config{
		HiddenSize: 768, NumHiddenLayers: 12, NumAttentionHeads: 12, IntermediateSize: 3072,
		ImageSize: 224, PatchSize: 16, NumChannels: 3, LayerNormEps: 1e-12, HiddenAct: "gelu",
		QKVBias: true, Prefix: "vit.",
	}
}

// ParseConfig reads a config.json; fields it lacks keep ViTConfig's
// defaults. NumLabels comes from num_labels or id2label.
func ParseConfig(data []byte) (Config, error) {
	c := DefaultConfig()
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("parsing ViT config: %w", err)
	}
	var extra struct {
		ModelType string            `json:"model_type"`
		NumLabels *int              `json:"num_labels"`
		ID2Label  map[string]string `json:"id2label"`
	}
	if err := json.Unmarshal(data, &extra); err != nil {
		return c, fmt.Errorf("parsing ViT config: %w", err)
	}
	if extra.ModelType != "" && extra.ModelType != "vit" {
		return c, fmt.Errorf("config is for model_type %q, not vit", extra.ModelType)
	}
	switch {
	case extra.NumLabels != nil:
		c.NumLabels = *extra.NumLabels
	case len(extra.ID2Label) > 0:
		c.NumLabels = len(extra.ID2Label)
	}
	return c, c.Validate()
}

// Validate checks that the sizes fit together.
func (c Config) Validate() error {
	switch {
	case c.HiddenSize <= 0 || c.NumHiddenLayers < 0 || c.IntermediateSize <= 0 || c.NumChannels <= 0:
		return fmt.Errorf("ViT config: sizes must be positive: %+v", c)
	case c.NumAttentionHeads <= 0 || c.HiddenSize%c.NumAttentionHeads != 0:
		return fmt.Errorf("ViT config: hidden_size %d is not divisible into %d heads", c.HiddenSize, c.NumAttentionHeads)
	case c.PatchSize <= 0 || c.ImageSize <= 0 || c.ImageSize%c.PatchSize != 0:
		return fmt.Errorf("ViT config: image_size %d is not a whole number of %d-pixel patches", c.ImageSize, c.PatchSize)
	case c.NumLabels < 0:
		return fmt.Errorf("ViT config: negative number of labels %d", c.NumLabels)
	}
	_, err := models.ParseActivation(c.HiddenAct)
	return err
}

// NumPatches is the number of patches per image.
func (c Config) NumPatches() int { return (c.ImageSize / c.PatchSize) * (c.ImageSize / c.PatchSize) }

// JSON renders the config as a Hugging Face config.json.
func (c Config) JSON() []byte {
	m := map[string]any{
		"model_type":                   "vit",
		"architectures":                []string{"ViTModel"},
		"hidden_size":                  c.HiddenSize,
		"num_hidden_layers":            c.NumHiddenLayers,
		"num_attention_heads":          c.NumAttentionHeads,
		"intermediate_size":            c.IntermediateSize,
		"image_size":                   c.ImageSize,
		"patch_size":                   c.PatchSize,
		"num_channels":                 c.NumChannels,
		"layer_norm_eps":               c.LayerNormEps,
		"hidden_act":                   c.HiddenAct,
		"qkv_bias":                     c.QKVBias,
		"hidden_dropout_prob":          0.0,
		"attention_probs_dropout_prob": 0.0,
		"initializer_range":            0.02,
		"torch_dtype":                  "float32",
	}
	if c.NumLabels > 0 {
		m["architectures"] = []string{"ViTForImageClassification"}
		id2label := map[string]string{}
		label2id := map[string]int{}
		for i := range c.NumLabels {
			l := fmt.Sprintf("LABEL_%d", i)
			id2label[fmt.Sprint(i)], label2id[l] = l, i
		}
		m["id2label"], m["label2id"] = id2label, label2id
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		panic(err) // plain maps of plain values always marshal
	}
	return append(data, '\n')
}

func (c Config) layer(i int) string { return fmt.Sprintf("%sencoder.layer.%d.", c.Prefix, i) }

// Specs lists the model's tensors with their shapes, in the order
// transformers saves them.
func (c Config) Specs() []checkpoint.TensorSpec {
	w, inter, p, e := c.HiddenSize, c.IntermediateSize, c.PatchSize, c.Prefix+"embeddings."
	specs := []checkpoint.TensorSpec{
		models.Spec(e+"cls_token", 1, 1, w),
		models.Spec(e+"position_embeddings", 1, c.NumPatches()+1, w),
		models.Spec(e+"patch_embeddings.projection.weight", w, c.NumChannels, p, p),
		models.Spec(e+"patch_embeddings.projection.bias", w),
	}
	linear := func(name string, out, in int, bias bool) {
		specs = append(specs, models.Spec(name+".weight", out, in))
		if bias {
			specs = append(specs, models.Spec(name+".bias", out))
		}
	}
	norm := func(name string) {
		specs = append(specs, models.Spec(name+".weight", w), models.Spec(name+".bias", w))
	}
	for i := range c.NumHiddenLayers {
		l := c.layer(i)
		linear(l+"attention.attention.query", w, w, c.QKVBias)
		linear(l+"attention.attention.key", w, w, c.QKVBias)
		linear(l+"attention.attention.value", w, w, c.QKVBias)
		linear(l+"attention.output.dense", w, w, true)
		linear(l+"intermediate.dense", inter, w, true)
		linear(l+"output.dense", w, inter, true)
		norm(l + "layernorm_before")
		norm(l + "layernorm_after")
	}
	norm(c.Prefix + "layernorm")
	if c.NumLabels > 0 {
		linear("classifier", c.NumLabels, w, true)
	}
	return specs
}

// Forward is the ViT forward pass over pixels [batch, image, image,
// channels] (channels-last, already normalized). It returns the pooled
// feature [batch, hidden] (the CLS token after the final layernorm) and the
// classifier's logits [batch, labels], nil without a classifier.
func Forward(c Config, p models.Params, pixels *graph.Node) (pooled, logits *graph.Node) {
	d := pixels.Shape().Dimensions
	if len(d) != 4 || d[1] != c.ImageSize || d[2] != c.ImageSize || d[3] != c.NumChannels {
		panic(fmt.Errorf("vit: pixels must be [batch, %d, %d, %d] (channels-last), got %s", c.ImageSize, c.ImageSize, c.NumChannels, pixels.Shape()))
	}
	act, err := models.ParseActivation(c.HiddenAct)
	if err != nil {
		panic(err)
	}
	w, e := c.HiddenSize, c.Prefix+"embeddings."
	x := models.PatchEmbed(pixels, p.Get(e+"patch_embeddings.projection.weight"), p.Get(e+"patch_embeddings.projection.bias"))
	x = models.PrependToken(x, graph.Reshape(p.Get(e+"cls_token"), w))
	x = graph.Add(x, graph.Reshape(p.Get(e+"position_embeddings"), 1, c.NumPatches()+1, w))
	bc := models.BlockConfig{Heads: c.NumAttentionHeads, Eps: c.LayerNormEps, Act: act}
	for i := range c.NumHiddenLayers {
		l := c.layer(i)
		x = models.Block(x, models.BlockW{
			LN1: p.Norm(l + "layernorm_before"),
			Attn: models.AttentionW{
				Q:   p.Linear(l + "attention.attention.query"),
				K:   p.Linear(l + "attention.attention.key"),
				V:   p.Linear(l + "attention.attention.value"),
				Out: p.Linear(l + "attention.output.dense"),
			},
			LN2: p.Norm(l + "layernorm_after"),
			MLP: models.MLPW{FC1: p.Linear(l + "intermediate.dense"), FC2: p.Linear(l + "output.dense")},
		}, bc)
	}
	x = models.LayerNorm(x, p.Norm(c.Prefix+"layernorm"), c.LayerNormEps)
	pooled = models.Token(x, 0)
	if c.NumLabels > 0 {
		logits = models.Linear(pooled, p.Linear("classifier"))
	}
	return pooled, logits
}

// ReadConfig reads config.json from dir.
func ReadConfig(dir string) (Config, error) {
	data, err := checkpoint.ReadSideFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return Config{}, fmt.Errorf("reading the ViT config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return c, fmt.Errorf("%s: %w", filepath.Join(dir, "config.json"), err)
	}
	return c, nil
}

// ConfigFor completes c for checkpoint ck: the name prefix ("vit." or "")
// and the number of labels (from classifier.weight; 0 without one).
func ConfigFor(c Config, ck *checkpoint.Checkpoint) (Config, error) {
	switch {
	case has(ck, "vit.embeddings.cls_token"):
		c.Prefix = "vit."
	case has(ck, "embeddings.cls_token"):
		c.Prefix = ""
	default:
		return c, fmt.Errorf("%s is not a Hugging Face ViT checkpoint: it has neither vit.embeddings.cls_token nor embeddings.cls_token", ck.Path)
	}
	c.NumLabels = 0
	if t, ok := ck.Tensor("classifier.weight"); ok && len(t.Shape) == 2 {
		c.NumLabels = int(t.Shape[0])
	}
	if _, ok := ck.Tensor(c.layer(0) + "attention.attention.query.bias"); c.NumHiddenLayers > 0 {
		c.QKVBias = ok
	}
	return c, c.Validate()
}

func has(ck *checkpoint.Checkpoint, name string) bool {
	_, ok := ck.Tensor(name)
	return ok
}
