package llama

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
)

// Config is the architecture of a LLaMA-family causal language model, as in
// transformers' LlamaConfig (config.json); Qwen2 and Mistral configs read
// into it too.
type Config struct {
	// ModelType is config.json's model_type: "llama", "qwen2" or "mistral".
	ModelType             string
	HiddenSize            int
	IntermediateSize      int
	NumHiddenLayers       int
	NumAttentionHeads     int
	NumKeyValueHeads      int
	HeadDim               int
	VocabSize             int
	MaxPositionEmbeddings int
	RMSNormEps            float64
	RopeTheta             float64
	// RopeScaling is rope_scaling: nil for none, else "linear" or "llama3".
	RopeScaling *RopeScaling
	HiddenAct   string

	// QKVBias: q_proj, k_proj and v_proj have biases (Qwen2; LLaMA's
	// attention_bias). OutBias: o_proj has one (LLaMA's attention_bias).
	// MLPBias: gate_proj, up_proj and down_proj have biases (mlp_bias).
	QKVBias, OutBias, MLPBias bool
	// TieWordEmbeddings: the output layer is model.embed_tokens.weight and
	// the checkpoint needs no lm_head.weight.
	TieWordEmbeddings bool

	// BOSTokenID is -1 when the config names none; EOSTokenIDs may hold
	// several ids (LLaMA 3 lists its end-of-turn tokens).
	BOSTokenID  int
	EOSTokenIDs []int
}

// RopeScaling is a config's rope_scaling.
type RopeScaling struct {
	// Type is rope_type (or the older type): "linear" divides positions by
	// Factor; "llama3" rescales the low frequencies as LLaMA 3.1 does.
	Type                          string  `json:"rope_type"`
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor"`
	HighFreqFactor                float64 `json:"high_freq_factor"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings"`
}

// rawConfig holds config.json's fields, pointers where a default applies.
type rawConfig struct {
	ModelType             string          `json:"model_type"`
	HiddenSize            *int            `json:"hidden_size"`
	IntermediateSize      *int            `json:"intermediate_size"`
	NumHiddenLayers       *int            `json:"num_hidden_layers"`
	NumAttentionHeads     *int            `json:"num_attention_heads"`
	NumKeyValueHeads      *int            `json:"num_key_value_heads"`
	HeadDim               *int            `json:"head_dim"`
	VocabSize             *int            `json:"vocab_size"`
	MaxPositionEmbeddings *int            `json:"max_position_embeddings"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	RopeTheta             *float64        `json:"rope_theta"`
	RopeScaling           json.RawMessage `json:"rope_scaling"`
	HiddenAct             *string         `json:"hidden_act"`
	AttentionBias         *bool           `json:"attention_bias"`
	MLPBias               *bool           `json:"mlp_bias"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	BOSTokenID            json.RawMessage `json:"bos_token_id"`
	EOSTokenID            json.RawMessage `json:"eos_token_id"`
	PartialRotaryFactor   *float64        `json:"partial_rotary_factor"`
	UseSlidingWindow      *bool           `json:"use_sliding_window"`
}

// ParseConfig reads a config.json of model_type llama, qwen2 or mistral.
// Fields it lacks take transformers' defaults for that model type (LLaMA-2
// 7B's sizes for LlamaConfig). Qwen2 has q/k/v biases; LLaMA's
// attention_bias puts biases on q, k, v and o.
func ParseConfig(data []byte) (Config, error) {
	var r rawConfig
	if err := json.Unmarshal(data, &r); err != nil {
		return Config{}, fmt.Errorf("parsing the LLaMA config: %w", err)
	}
	c := Config{
		ModelType: r.ModelType, HiddenSize: 4096, IntermediateSize: 11008, NumHiddenLayers: 32, NumAttentionHeads: 32,
		VocabSize: 32000, MaxPositionEmbeddings: 2048, RMSNormEps: 1e-6, RopeTheta: 10000, HiddenAct: "silu",
		BOSTokenID: 1, EOSTokenIDs: []int{2},
	}
	switch r.ModelType {
	case "llama", "":
		c.ModelType = "llama"
	case "qwen2":
		c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.VocabSize = 4096, 22016, 32, 151936
		c.MaxPositionEmbeddings, c.BOSTokenID, c.EOSTokenIDs = 32768, -1, nil
		c.QKVBias = true
		if r.UseSlidingWindow != nil && *r.UseSlidingWindow {
			return c, fmt.Errorf("Qwen2 config: use_sliding_window is true; sliding-window attention is not supported")
		}
	case "mistral":
		c.IntermediateSize, c.MaxPositionEmbeddings, c.VocabSize, c.RMSNormEps = 14336, 4096*32, 32000, 1e-6
	default:
		return c, fmt.Errorf("config is for model_type %q: this package runs llama, qwen2 and mistral", r.ModelType)
	}
	setInt := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	setInt(&c.HiddenSize, r.HiddenSize)
	setInt(&c.IntermediateSize, r.IntermediateSize)
	setInt(&c.NumHiddenLayers, r.NumHiddenLayers)
	setInt(&c.NumAttentionHeads, r.NumAttentionHeads)
	c.NumKeyValueHeads = c.NumAttentionHeads
	setInt(&c.NumKeyValueHeads, r.NumKeyValueHeads)
	if c.NumAttentionHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	setInt(&c.HeadDim, r.HeadDim)
	setInt(&c.VocabSize, r.VocabSize)
	setInt(&c.MaxPositionEmbeddings, r.MaxPositionEmbeddings)
	if r.RMSNormEps != nil {
		c.RMSNormEps = *r.RMSNormEps
	}
	if r.RopeTheta != nil {
		c.RopeTheta = *r.RopeTheta
	}
	if r.HiddenAct != nil {
		c.HiddenAct = *r.HiddenAct
	}
	if r.AttentionBias != nil && c.ModelType != "qwen2" {
		c.QKVBias, c.OutBias = *r.AttentionBias, *r.AttentionBias
	}
	if r.MLPBias != nil {
		c.MLPBias = *r.MLPBias
	}
	if r.TieWordEmbeddings != nil {
		c.TieWordEmbeddings = *r.TieWordEmbeddings
	}
	if r.PartialRotaryFactor != nil && *r.PartialRotaryFactor != 1 {
		return c, fmt.Errorf("LLaMA config: partial_rotary_factor %v is not supported (only 1)", *r.PartialRotaryFactor)
	}
	var err error
	if c.RopeScaling, err = parseRopeScaling(r.RopeScaling); err != nil {
		return c, err
	}
	if ids, ok, err := tokenIDs(r.BOSTokenID); err != nil {
		return c, fmt.Errorf("LLaMA config: bos_token_id: %w", err)
	} else if ok {
		c.BOSTokenID = -1
		if len(ids) > 0 {
			c.BOSTokenID = ids[0]
		}
	}
	if ids, ok, err := tokenIDs(r.EOSTokenID); err != nil {
		return c, fmt.Errorf("LLaMA config: eos_token_id: %w", err)
	} else if ok {
		c.EOSTokenIDs = ids
	}
	return c, c.Validate()
}

// tokenIDs reads a token id field: an int, a list of ints or null (ok is
// false when the field is absent).
func tokenIDs(raw json.RawMessage) (ids []int, ok bool, err error) {
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return nil, false, nil
	}
	if s == "null" {
		return nil, true, nil
	}
	var one int
	if err := json.Unmarshal(raw, &one); err == nil {
		return []int{one}, true, nil
	}
	if err := json.Unmarshal(raw, &ids); err != nil {
		return nil, false, fmt.Errorf("want an integer or a list of integers, got %s", s)
	}
	return ids, true, nil
}

func parseRopeScaling(raw json.RawMessage) (*RopeScaling, error) {
	if s := strings.TrimSpace(string(raw)); s == "" || s == "null" {
		return nil, nil
	}
	var rs RopeScaling
	var old struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &rs); err != nil {
		return nil, fmt.Errorf("LLaMA config: rope_scaling: %w", err)
	}
	if err := json.Unmarshal(raw, &old); err != nil {
		return nil, fmt.Errorf("LLaMA config: rope_scaling: %w", err)
	}
	if rs.Type == "" {
		rs.Type = old.Type
	}
	switch rs.Type {
	case "default", "":
		return nil, nil
	case "linear", "llama3":
		return &rs, nil
	}
	return nil, fmt.Errorf("LLaMA config: rope_scaling type %q is not supported (supported: linear, llama3)", rs.Type)
}

// Validate checks that the sizes fit together.
func (c Config) Validate() error {
	switch {
	case c.HiddenSize <= 0 || c.IntermediateSize <= 0 || c.NumHiddenLayers < 0 || c.VocabSize <= 0 || c.MaxPositionEmbeddings <= 0:
		return fmt.Errorf("LLaMA config: sizes must be positive: %+v", c)
	case c.NumAttentionHeads <= 0 || c.NumKeyValueHeads <= 0 || c.NumAttentionHeads%c.NumKeyValueHeads != 0:
		return fmt.Errorf("LLaMA config: num_attention_heads %d is not a multiple of num_key_value_heads %d", c.NumAttentionHeads, c.NumKeyValueHeads)
	case c.HeadDim <= 0 || c.HeadDim%2 != 0:
		return fmt.Errorf("LLaMA config: head_dim %d must be positive and even (rotary embeddings rotate pairs)", c.HeadDim)
	case c.RMSNormEps <= 0 || c.RopeTheta <= 0:
		return fmt.Errorf("LLaMA config: rms_norm_eps %v and rope_theta %v must be positive", c.RMSNormEps, c.RopeTheta)
	}
	switch strings.ToLower(c.HiddenAct) {
	case "silu", "swish":
	default:
		return fmt.Errorf("LLaMA config: hidden_act %q is not supported (only silu)", c.HiddenAct)
	}
	if rs := c.RopeScaling; rs != nil {
		if rs.Factor <= 0 {
			return fmt.Errorf("LLaMA config: rope_scaling factor %v must be positive", rs.Factor)
		}
		if rs.Type == "llama3" && (rs.LowFreqFactor <= 0 || rs.HighFreqFactor <= rs.LowFreqFactor || rs.OriginalMaxPositionEmbeddings <= 0) {
			return fmt.Errorf("LLaMA config: llama3 rope_scaling needs 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings: %+v", *rs)
		}
	}
	return nil
}

// InvFreq returns the rotary inverse frequencies θ^(-2i/head_dim), i <
// head_dim/2, with rope_scaling applied, in float64.
func (c Config) InvFreq() []float64 {
	n := c.HeadDim / 2
	f := make([]float64, n)
	for i := range f {
		f[i] = 1 / math.Pow(c.RopeTheta, float64(2*i)/float64(c.HeadDim))
	}
	rs := c.RopeScaling
	if rs == nil {
		return f
	}
	switch rs.Type {
	case "linear":
		for i := range f {
			f[i] /= rs.Factor
		}
	case "llama3":
		// transformers' _compute_llama3_parameters.
		old := float64(rs.OriginalMaxPositionEmbeddings)
		lowWavelen, highWavelen := old/rs.LowFreqFactor, old/rs.HighFreqFactor
		for i, freq := range f {
			wavelen := 2 * math.Pi / freq
			switch {
			case wavelen < highWavelen:
			case wavelen > lowWavelen:
				f[i] = freq / rs.Factor
			default:
				smooth := (old/wavelen - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
				f[i] = (1-smooth)*freq/rs.Factor + smooth*freq
			}
		}
	}
	return f
}

// JSON renders the config as a Hugging Face config.json.
func (c Config) JSON() []byte {
	arch := map[string]string{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}[c.ModelType]
	m := map[string]any{
		"model_type":              c.ModelType,
		"architectures":           []string{arch},
		"hidden_size":             c.HiddenSize,
		"intermediate_size":       c.IntermediateSize,
		"num_hidden_layers":       c.NumHiddenLayers,
		"num_attention_heads":     c.NumAttentionHeads,
		"num_key_value_heads":     c.NumKeyValueHeads,
		"head_dim":                c.HeadDim,
		"vocab_size":              c.VocabSize,
		"max_position_embeddings": c.MaxPositionEmbeddings,
		"rms_norm_eps":            c.RMSNormEps,
		"rope_theta":              c.RopeTheta,
		"rope_scaling":            c.RopeScaling,
		"hidden_act":              c.HiddenAct,
		"mlp_bias":                c.MLPBias,
		"tie_word_embeddings":     c.TieWordEmbeddings,
		"torch_dtype":             "float32",
	}
	if c.ModelType != "qwen2" {
		m["attention_bias"] = c.QKVBias
	}
	m["bos_token_id"] = nil
	if c.BOSTokenID >= 0 {
		m["bos_token_id"] = c.BOSTokenID
	}
	switch len(c.EOSTokenIDs) {
	case 0:
		m["eos_token_id"] = nil
	case 1:
		m["eos_token_id"] = c.EOSTokenIDs[0]
	default:
		m["eos_token_id"] = c.EOSTokenIDs
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		panic(err) // plain maps of plain values always marshal
	}
	return append(data, '\n')
}

// ReadConfig reads config.json from dir.
func ReadConfig(dir string) (Config, error) {
	p := filepath.Join(dir, "config.json")
	data, err := checkpoint.ReadSideFile(p)
	if err != nil {
		return Config{}, fmt.Errorf("reading the LLaMA config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return c, fmt.Errorf("%s: %w", p, err)
	}
	return c, nil
}

// ConfigFor completes c from the tensors of checkpoint ck: biases are
// present where the checkpoint has them (q_proj.bias: q/k/v biases;
// o_proj.bias; mlp.gate_proj.bias), and the output layer is tied to the
// token embedding when tie_word_embeddings is set or lm_head.weight is
// absent.
func ConfigFor(c Config, ck *checkpoint.Checkpoint) (Config, error) {
	if !has(ck, "model.embed_tokens.weight") {
		return c, fmt.Errorf("%s is not a Hugging Face LLaMA checkpoint: it has no model.embed_tokens.weight", ck.Path)
	}
	if c.NumHiddenLayers > 0 {
		l := layerPrefix(0)
		c.QKVBias = has(ck, l+"self_attn.q_proj.bias")
		c.OutBias = has(ck, l+"self_attn.o_proj.bias")
		c.MLPBias = has(ck, l+"mlp.gate_proj.bias")
	}
	if !has(ck, "lm_head.weight") {
		c.TieWordEmbeddings = true
	}
	return c, c.Validate()
}

func has(ck *checkpoint.Checkpoint, name string) bool {
	_, ok := ck.Tensor(name)
	return ok
}

func layerPrefix(i int) string { return fmt.Sprintf("model.layers.%d.", i) }

// DownProjName is the weight name of layer's MLP down-projection, the
// adapter site (what FT-L fine-tunes).
func DownProjName(layer int) string { return layerPrefix(layer) + "mlp.down_proj.weight" }

// Specs lists the model's tensors with their shapes, in the order
// transformers saves them.
func (c Config) Specs() []checkpoint.TensorSpec {
	d, f, hd := c.HiddenSize, c.IntermediateSize, c.HeadDim
	qd, kvd := c.NumAttentionHeads*hd, c.NumKeyValueHeads*hd
	specs := []checkpoint.TensorSpec{models.Spec("model.embed_tokens.weight", c.VocabSize, d)}
	linear := func(name string, out, in int, bias bool) {
		specs = append(specs, models.Spec(name+".weight", out, in))
		if bias {
			specs = append(specs, models.Spec(name+".bias", out))
		}
	}
	for i := range c.NumHiddenLayers {
		l := layerPrefix(i)
		linear(l+"self_attn.q_proj", qd, d, c.QKVBias)
		linear(l+"self_attn.k_proj", kvd, d, c.QKVBias)
		linear(l+"self_attn.v_proj", kvd, d, c.QKVBias)
		linear(l+"self_attn.o_proj", d, qd, c.OutBias)
		linear(l+"mlp.gate_proj", f, d, c.MLPBias)
		linear(l+"mlp.up_proj", f, d, c.MLPBias)
		linear(l+"mlp.down_proj", d, f, c.MLPBias)
		specs = append(specs, models.Spec(l+"input_layernorm.weight", d), models.Spec(l+"post_attention_layernorm.weight", d))
	}
	specs = append(specs, models.Spec("model.norm.weight", d))
	if !c.TieWordEmbeddings {
		specs = append(specs, models.Spec("lm_head.weight", c.VocabSize, d))
	}
	return specs
}

// IsEOS reports whether id is one of the config's end-of-sequence tokens.
func (c Config) IsEOS(id int) bool {
	for _, e := range c.EOSTokenIDs {
		if e == id {
			return true
		}
	}
	return false
}
