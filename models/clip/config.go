package clip

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"strings"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
)

// Naming is a checkpoint's tensor-naming convention.
type Naming int

const (
	// HF is transformers' naming (CLIPModel, CLIPVisionModel(WithProjection),
	// CLIPTextModel(WithProjection)): vision_model.*, text_model.*,
	// visual_projection, text_projection, logit_scale; config.json beside.
	HF Naming = iota
	// OpenAI is the naming of OpenAI's clip/model.py state dicts, kept by
	// open_clip: visual.*, transformer.resblocks.*, token_embedding, ...
	// The architecture is inferred from shapes, or read from an
	// open_clip_config.json beside the weights.
	OpenAI
)

func (n Naming) String() string {
	switch n {
	case HF:
		return "hf"
	case OpenAI:
		return "openai"
	}
	return fmt.Sprintf("Naming(%d)", int(n))
}

// ParseNaming parses "hf" or "openai" ("open_clip" is accepted too).
func ParseNaming(s string) (Naming, error) {
	switch strings.ToLower(s) {
	case "hf", "huggingface", "transformers":
		return HF, nil
	case "openai", "open_clip", "openclip":
		return OpenAI, nil
	}
	return 0, fmt.Errorf("unknown CLIP naming %q (use hf or openai)", s)
}

// Tower is what the image and text transformers share.
type Tower struct {
	Width  int     // hidden size
	Layers int     // residual blocks
	Heads  int     // attention heads
	MLP    int     // MLP hidden size
	Act    string  // activation, as Hugging Face names it (quick_gelu, gelu)
	Eps    float64 // LayerNorm epsilon
}

// VisionConfig is the image tower.
type VisionConfig struct {
	Tower
	ImageSize, PatchSize, Channels int
}

// TextConfig is the text tower.
type TextConfig struct {
	Tower
	ContextLength, VocabSize int
}

// Config is a CLIP architecture. A nil tower is absent (CLIPVisionModel has
// no text tower); EmbedDim is the size of the projected embeddings, 0 for
// towers without projection (CLIPVisionModel, CLIPTextModel). logit_scale
// exists when both towers do.
type Config struct {
	Naming   Naming
	Vision   *VisionConfig
	Text     *TextConfig
	EmbedDim int
}

// NumPatches is the number of patches per image.
func (v VisionConfig) NumPatches() int { g := v.ImageSize / v.PatchSize; return g * g }

func (t Tower) validate(name string) error {
	switch {
	case t.Width <= 0 || t.Layers < 0 || t.MLP <= 0:
		return fmt.Errorf("CLIP %s tower: sizes must be positive: %+v", name, t)
	case t.Heads <= 0 || t.Width%t.Heads != 0:
		return fmt.Errorf("CLIP %s tower: width %d is not divisible into %d heads", name, t.Width, t.Heads)
	case !(t.Eps > 0):
		return fmt.Errorf("CLIP %s tower: LayerNorm epsilon %g must be positive", name, t.Eps)
	}
	_, err := models.ParseActivation(t.Act)
	return err
}

// Validate checks that the sizes fit together.
func (c Config) Validate() error {
	if c.Vision == nil && c.Text == nil {
		return errors.New("CLIP config has neither an image nor a text tower")
	}
	if c.Naming != HF && c.Naming != OpenAI {
		return fmt.Errorf("CLIP config: unknown naming %d", int(c.Naming))
	}
	if c.Naming == OpenAI && c.EmbedDim <= 0 {
		return errors.New("CLIP config: the OpenAI naming always has projections: set EmbedDim")
	}
	if c.EmbedDim < 0 {
		return fmt.Errorf("CLIP config: negative EmbedDim %d", c.EmbedDim)
	}
	if v := c.Vision; v != nil {
		if err := v.validate("image"); err != nil {
			return err
		}
		if v.PatchSize <= 0 || v.ImageSize <= 0 || v.ImageSize%v.PatchSize != 0 || v.Channels <= 0 {
			return fmt.Errorf("CLIP image tower: image %d is not a whole number of %d-pixel patches (or %d channels)", v.ImageSize, v.PatchSize, v.Channels)
		}
	}
	if t := c.Text; t != nil {
		if err := t.validate("text"); err != nil {
			return err
		}
		if t.ContextLength <= 0 || t.VocabSize <= 0 {
			return fmt.Errorf("CLIP text tower: context length %d and vocabulary %d must be positive", t.ContextLength, t.VocabSize)
		}
	}
	return nil
}

// Default architectures: transformers' CLIPVisionConfig and CLIPTextConfig
// defaults (ViT-B/32 at 224 pixels, 77 tokens, 512-d embeddings).
func defaultVision() VisionConfig {
	return VisionConfig{Tower: Tower{Width: 768, Layers: 12, Heads: 12, MLP: 3072, Act: "quick_gelu", Eps: 1e-5}, ImageSize: 224, PatchSize: 32, Channels: 3}
}

func defaultText() TextConfig {
	return TextConfig{Tower: Tower{Width: 512, Layers: 12, Heads: 8, MLP: 2048, Act: "quick_gelu", Eps: 1e-5}, ContextLength: 77, VocabSize: 49408}
}

// DetectNaming tells the naming of a checkpoint's tensors.
func DetectNaming(ck *checkpoint.Checkpoint) (Naming, error) {
	hf, oa := 0, 0
	for _, t := range ck.Tensors() {
		switch {
		case strings.HasPrefix(t.Name, "vision_model.") || strings.HasPrefix(t.Name, "text_model."):
			hf++
		case strings.HasPrefix(t.Name, "visual.") || strings.HasPrefix(t.Name, "transformer.resblocks.") || t.Name == "token_embedding.weight":
			oa++
		}
	}
	switch {
	case hf > 0 && oa == 0:
		return HF, nil
	case oa > 0 && hf == 0:
		return OpenAI, nil
	case hf > 0:
		return 0, fmt.Errorf("%s mixes Hugging Face (vision_model., text_model.) and OpenAI (visual., transformer.) CLIP names", ck.Path)
	}
	return 0, fmt.Errorf("%s is not a CLIP checkpoint: no vision_model./text_model. (Hugging Face) or visual./transformer.resblocks. (OpenAI, open_clip) tensors", ck.Path)
}

// ReadConfig determines a checkpoint's architecture: its naming, the towers
// present and their sizes from the tensor shapes, then the attention heads,
// activation and LayerNorm epsilon from config.json (Hugging Face) or
// open_clip_config.json (OpenAI naming) in the checkpoint's folder, checking
// that file against the shapes. Without such a file, heads are width/64 (as
// OpenAI's build_model infers them), the activation QuickGELU and epsilon
// 1e-5, which is right for OpenAI's released models.
func ReadConfig(ck *checkpoint.Checkpoint) (Config, error) {
	n, err := DetectNaming(ck)
	if err != nil {
		return Config{}, err
	}
	c, err := inferConfig(ck, n)
	if err != nil {
		return c, err
	}
	switch n {
	case HF:
		err = applyHFConfigFile(&c, filepath.Join(ck.Dir, "config.json"))
	case OpenAI:
		err = applyOpenCLIPConfigFile(&c, filepath.Join(ck.Dir, "open_clip_config.json"))
	}
	if err != nil {
		return c, err
	}
	return c, c.Validate()
}

// inferConfig reads the architecture from the tensor shapes.
func inferConfig(ck *checkpoint.Checkpoint, n Naming) (Config, error) {
	c := Config{Naming: n}
	nm := namesOf(n)
	shape := func(name string) []int {
		t, ok := ck.Tensor(name)
		if !ok {
			return nil
		}
		d := make([]int, len(t.Shape))
		for i, s := range t.Shape {
			d[i] = int(s)
		}
		return d
	}
	bad := func(name string, want string) error {
		return fmt.Errorf("%s: tensor %q has shape %v, want %s", ck.Path, name, shape(name), want)
	}
	tower := func(tn towerNames, width int) (Tower, error) {
		t := Tower{Width: width, Act: "quick_gelu", Eps: 1e-5, Heads: max(1, width/64)}
		for shape(tn.block(t.Layers).ln1+".weight") != nil {
			t.Layers++
		}
		if t.Layers > 0 {
			fc1 := tn.block(0).fc1 + ".weight"
			s := shape(fc1)
			if len(s) != 2 || s[1] != width {
				return t, bad(fc1, fmt.Sprintf("[mlp, %d]", width))
			}
			t.MLP = s[0]
		} else {
			t.MLP = 4 * width
		}
		return t, nil
	}
	if s := shape(nm.vision.patch); s != nil {
		if len(s) != 4 || s[2] != s[3] {
			return c, bad(nm.vision.patch, "[width, channels, patch, patch]")
		}
		v := VisionConfig{PatchSize: s[2], Channels: s[1]}
		pos := shape(nm.vision.pos)
		if len(pos) != 2 || pos[1] != s[0] {
			return c, bad(nm.vision.pos, fmt.Sprintf("[patches+1, %d]", s[0]))
		}
		grid := int(math.Round(math.Sqrt(float64(pos[0] - 1))))
		if grid*grid != pos[0]-1 {
			return c, bad(nm.vision.pos, "[grid²+1, width]: a square grid of patches")
		}
		v.ImageSize = grid * v.PatchSize
		var err error
		if v.Tower, err = tower(nm.vision, s[0]); err != nil {
			return c, err
		}
		c.Vision = &v
	} else if n == OpenAI && (shape("visual.attnpool.c_proj.weight") != nil || shape("visual.layer1.0.conv1.weight") != nil) {
		return c, fmt.Errorf("%s: ResNet CLIP image towers (visual.attnpool, visual.layer1...) are not supported, only ViT ones", ck.Path)
	}
	if s := shape(nm.text.tok); s != nil {
		if len(s) != 2 {
			return c, bad(nm.text.tok, "[vocab, width]")
		}
		t := TextConfig{VocabSize: s[0]}
		pos := shape(nm.text.pos)
		if len(pos) != 2 || pos[1] != s[1] {
			return c, bad(nm.text.pos, fmt.Sprintf("[context, %d]", s[1]))
		}
		t.ContextLength = pos[0]
		var err error
		if t.Tower, err = tower(nm.text, s[1]); err != nil {
			return c, err
		}
		c.Text = &t
	}
	if c.Vision == nil && c.Text == nil {
		return c, fmt.Errorf("%s: no CLIP image tower (%s) or text tower (%s)", ck.Path, nm.vision.patch, nm.text.tok)
	}
	// Embedding size from the projections: HF Linear weights are [embed,
	// width], OpenAI's matrices [width, embed].
	for _, p := range []struct {
		name  string
		width int
		on    bool
	}{{nm.vision.proj, widthOf(c.Vision), c.Vision != nil}, {nm.text.proj, widthOfText(c.Text), c.Text != nil}} {
		if !p.on {
			continue
		}
		s := shape(p.name)
		if s == nil {
			continue
		}
		e, w := s[0], s[len(s)-1]
		if n == OpenAI {
			e, w = s[len(s)-1], s[0]
		}
		if len(s) != 2 || w != p.width {
			return c, bad(p.name, fmt.Sprintf("a projection of width %d", p.width))
		}
		if c.EmbedDim != 0 && c.EmbedDim != e {
			return c, fmt.Errorf("%s: the image and text projections have different sizes (%d and %d)", ck.Path, c.EmbedDim, e)
		}
		c.EmbedDim = e
	}
	if n == OpenAI {
		for _, t := range ck.Tensors() {
			if strings.Contains(t.Name, ".ls_1.") || strings.Contains(t.Name, ".ls_2.") || strings.HasPrefix(t.Name, "visual.attn_pool") || t.Name == "text_projection.weight" {
				return c, fmt.Errorf("%s: tensor %q belongs to an open_clip variant that is not supported (layer scale, attentional pooling or a linear text projection)", ck.Path, t.Name)
			}
		}
	}
	return c, nil
}

func widthOf(v *VisionConfig) int {
	if v == nil {
		return 0
	}
	return v.Width
}

func widthOfText(t *TextConfig) int {
	if t == nil {
		return 0
	}
	return t.Width
}

// hfTowerConfig is a tower's part of a Hugging Face CLIP config.json.
type hfTowerConfig struct {
	ModelType             string   `json:"model_type,omitempty"`
	HiddenSize            int      `json:"hidden_size"`
	IntermediateSize      int      `json:"intermediate_size"`
	NumHiddenLayers       int      `json:"num_hidden_layers"`
	NumAttentionHeads     int      `json:"num_attention_heads"`
	HiddenAct             string   `json:"hidden_act"`
	LayerNormEps          float64  `json:"layer_norm_eps"`
	ProjectionDim         int      `json:"projection_dim,omitempty"`
	ImageSize             int      `json:"image_size,omitempty"`
	PatchSize             int      `json:"patch_size,omitempty"`
	NumChannels           int      `json:"num_channels,omitempty"`
	VocabSize             int      `json:"vocab_size,omitempty"`
	MaxPositionEmbeddings int      `json:"max_position_embeddings,omitempty"`
	EOSTokenID            *int     `json:"eos_token_id,omitempty"`
	BOSTokenID            *int     `json:"bos_token_id,omitempty"`
	PadTokenID            *int     `json:"pad_token_id,omitempty"`
	Architectures         []string `json:"architectures,omitempty"`
}

type hfConfig struct {
	ModelType        string          `json:"model_type"`
	ProjectionDim    int             `json:"projection_dim"`
	VisionConfig     json.RawMessage `json:"vision_config"`
	TextConfig       json.RawMessage `json:"text_config"`
	VisionConfigDict json.RawMessage `json:"vision_config_dict"`
	TextConfigDict   json.RawMessage `json:"text_config_dict"`
}

// applyHFConfigFile takes heads, activation and epsilon from a Hugging Face
// config.json and checks its sizes against the shapes.
func applyHFConfigFile(c *Config, path string) error {
	data, err := checkpoint.ReadSideFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // shapes only
	}
	if err != nil {
		return fmt.Errorf("reading the CLIP config: %w", err)
	}
	var top hfConfig
	if err := json.Unmarshal(data, &top); err != nil {
		return fmt.Errorf("%s: invalid JSON: %w", path, err)
	}
	vision, text := defaultVision(), defaultText()
	var vj, tj json.RawMessage
	switch top.ModelType {
	case "clip", "":
		vj, tj = firstRaw(top.VisionConfig, top.VisionConfigDict), firstRaw(top.TextConfig, top.TextConfigDict)
	case "clip_vision_model":
		vj = data
	case "clip_text_model":
		tj = data
	default:
		return fmt.Errorf("%s: model_type %q is not a CLIP model", path, top.ModelType)
	}
	if c.Vision != nil {
		if vj == nil {
			return fmt.Errorf("%s: the checkpoint has an image tower, the config has no vision_config", path)
		}
		hc := hfTowerOf(vision.Tower)
		hc.ImageSize, hc.PatchSize, hc.NumChannels = vision.ImageSize, vision.PatchSize, vision.Channels
		if err := json.Unmarshal(vj, &hc); err != nil {
			return fmt.Errorf("%s: vision config: %w", path, err)
		}
		if err := mergeTower(&c.Vision.Tower, hc, path, "vision"); err != nil {
			return err
		}
		if hc.ImageSize != c.Vision.ImageSize || hc.PatchSize != c.Vision.PatchSize {
			return fmt.Errorf("%s: vision image_size %d and patch_size %d disagree with the weights (%d and %d)", path, hc.ImageSize, hc.PatchSize, c.Vision.ImageSize, c.Vision.PatchSize)
		}
	}
	if c.Text != nil {
		if tj == nil {
			return fmt.Errorf("%s: the checkpoint has a text tower, the config has no text_config", path)
		}
		hc := hfTowerOf(text.Tower)
		hc.VocabSize, hc.MaxPositionEmbeddings = text.VocabSize, text.ContextLength
		if err := json.Unmarshal(tj, &hc); err != nil {
			return fmt.Errorf("%s: text config: %w", path, err)
		}
		if err := mergeTower(&c.Text.Tower, hc, path, "text"); err != nil {
			return err
		}
		if hc.VocabSize != c.Text.VocabSize || hc.MaxPositionEmbeddings != c.Text.ContextLength {
			return fmt.Errorf("%s: text vocab_size %d and max_position_embeddings %d disagree with the weights (%d and %d)", path, hc.VocabSize, hc.MaxPositionEmbeddings, c.Text.VocabSize, c.Text.ContextLength)
		}
	}
	return nil
}

func firstRaw(a, b json.RawMessage) json.RawMessage {
	if len(a) > 0 && string(a) != "null" {
		return a
	}
	if len(b) > 0 && string(b) != "null" {
		return b
	}
	return nil
}

func hfTowerOf(t Tower) hfTowerConfig {
	return hfTowerConfig{HiddenSize: t.Width, IntermediateSize: t.MLP, NumHiddenLayers: t.Layers,
		NumAttentionHeads: t.Heads, HiddenAct: t.Act, LayerNormEps: t.Eps}
}

// mergeTower takes heads, activation and epsilon from hc into t, after
// checking hc's sizes against t's (from the shapes).
func mergeTower(t *Tower, hc hfTowerConfig, path, name string) error {
	if hc.HiddenSize != t.Width || hc.IntermediateSize != t.MLP || hc.NumHiddenLayers != t.Layers {
		return fmt.Errorf("%s: %s config (hidden_size %d, intermediate_size %d, num_hidden_layers %d) disagrees with the weights (%d, %d, %d)",
			path, name, hc.HiddenSize, hc.IntermediateSize, hc.NumHiddenLayers, t.Width, t.MLP, t.Layers)
	}
	t.Heads, t.Act, t.Eps = hc.NumAttentionHeads, hc.HiddenAct, hc.LayerNormEps
	return nil
}

// openCLIPConfig is open_clip's model config (open_clip_config.json on the
// Hugging Face hub, or a model_configs/*.json file).
type openCLIPConfig struct {
	ModelCfg *openCLIPModel `json:"model_cfg"`
}

type openCLIPModel struct {
	EmbedDim  int            `json:"embed_dim"`
	QuickGELU bool           `json:"quick_gelu"`
	VisionCfg map[string]any `json:"vision_cfg"`
	TextCfg   map[string]any `json:"text_cfg"`
}

// applyOpenCLIPConfigFile takes heads and activation from an
// open_clip_config.json and checks its sizes against the shapes.
func applyOpenCLIPConfigFile(c *Config, path string) error {
	data, err := checkpoint.ReadSideFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the open_clip config: %w", err)
	}
	var oc openCLIPConfig
	if err := json.Unmarshal(data, &oc); err != nil {
		return fmt.Errorf("%s: invalid JSON: %w", path, err)
	}
	m := oc.ModelCfg
	if m == nil { // a bare model config, as in open_clip's model_configs/
		m = new(openCLIPModel)
		if err := json.Unmarshal(data, m); err != nil {
			return fmt.Errorf("%s: invalid JSON: %w", path, err)
		}
	}
	act := "gelu"
	if m.QuickGELU {
		act = "quick_gelu"
	}
	num := func(cfg map[string]any, key string, def float64) float64 {
		if v, ok := cfg[key].(float64); ok {
			return v
		}
		return def
	}
	check := func(cfg map[string]any, key string, got int) error {
		if v, ok := cfg[key].(float64); ok && int(v) != got {
			return fmt.Errorf("%s: %s %v disagrees with the weights (%d)", path, key, v, got)
		}
		return nil
	}
	unsupported := func(cfg map[string]any, tower string, keys map[string]any) error {
		for k, ok := range keys {
			if v, set := cfg[k]; set && v != nil && v != ok {
				return fmt.Errorf("%s: open_clip %s option %s=%v is not supported", path, tower, k, v)
			}
		}
		return nil
	}
	if m.EmbedDim != 0 && m.EmbedDim != c.EmbedDim {
		return fmt.Errorf("%s: embed_dim %d disagrees with the weights (%d)", path, m.EmbedDim, c.EmbedDim)
	}
	if v := c.Vision; v != nil && m.VisionCfg != nil {
		cfg := m.VisionCfg
		if _, ok := cfg["timm_model_name"]; ok {
			return fmt.Errorf("%s: timm image towers are not supported", path)
		}
		for key, got := range map[string]int{"width": v.Width, "layers": v.Layers, "patch_size": v.PatchSize, "image_size": v.ImageSize} {
			if err := check(cfg, key, got); err != nil {
				return err
			}
		}
		if err := unsupported(cfg, "vision", map[string]any{"attentional_pool": false, "no_ln_pre": false,
			"final_ln_after_pool": false, "pool_type": "tok", "global_average_pool": false, "ls_init_value": nil}); err != nil {
			return err
		}
		hw := int(num(cfg, "head_width", 64))
		if hw <= 0 || v.Width%hw != 0 {
			return fmt.Errorf("%s: vision width %d is not a multiple of head_width %d", path, v.Width, hw)
		}
		v.Heads, v.Act = v.Width/hw, act
	}
	if t := c.Text; t != nil && m.TextCfg != nil {
		cfg := m.TextCfg
		if _, ok := cfg["hf_model_name"]; ok {
			return fmt.Errorf("%s: Hugging Face text towers inside open_clip are not supported", path)
		}
		for key, got := range map[string]int{"width": t.Width, "layers": t.Layers, "context_length": t.ContextLength, "vocab_size": t.VocabSize} {
			if err := check(cfg, key, got); err != nil {
				return err
			}
		}
		if err := unsupported(cfg, "text", map[string]any{"pool_type": "argmax", "no_causal_mask": false,
			"proj_bias": false, "final_ln_after_pool": false, "embed_cls": false, "ls_init_value": nil}); err != nil {
			return err
		}
		t.Heads, t.Act = int(num(cfg, "heads", 8)), act
	}
	return nil
}
