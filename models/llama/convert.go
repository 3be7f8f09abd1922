package llama

// Conversion of llama2.c checkpoints (Karpathy's run.c "legacy" format,
// export.py --version 0) into Hugging Face LLaMA folders. This file is
// self-contained: it shares no types with the model code of the package.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models/tokenizers"
)

// Llama2CHeaderSize is the size of a llama2.c checkpoint's header: seven
// little-endian int32.
const Llama2CHeaderSize = 7 * 4

// llama2cMagic starts the version 1 and 2 exports of llama2.c's export.py
// ("ak42" as a little-endian uint32), which this reader does not take.
const llama2cMagic = 0x616b3432

// Llama2CConfig is the header of a llama2.c checkpoint.
type Llama2CConfig struct {
	Dim       int `json:"dim"`
	HiddenDim int `json:"hidden_dim"`
	NLayers   int `json:"n_layers"`
	NHeads    int `json:"n_heads"`
	NKVHeads  int `json:"n_kv_heads"`
	// VocabSize is the header's vocab_size without its sign.
	VocabSize int `json:"vocab_size"`
	SeqLen    int `json:"seq_len"`
	// SharedClassifier is true when the header's vocab_size is positive: the
	// output layer is the token embedding and the file holds no wcls.
	SharedClassifier bool `json:"shared_classifier"`
}

// HeadSize is dim / n_heads.
func (c Llama2CConfig) HeadSize() int { return c.Dim / c.NHeads }

// KVDim is the width of the key and value projections, n_kv_heads × head size.
func (c Llama2CConfig) KVDim() int { return c.NKVHeads * c.HeadSize() }

// validate checks what run.c assumes of a header.
func (c Llama2CConfig) validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"dim", c.Dim}, {"hidden_dim", c.HiddenDim}, {"n_layers", c.NLayers}, {"n_heads", c.NHeads}, {"n_kv_heads", c.NKVHeads}, {"vocab_size", c.VocabSize}, {"seq_len", c.SeqLen}} {
		if f.v <= 0 {
			return fmt.Errorf("%s is %d: it must be positive", f.name, f.v)
		}
	}
	switch {
	case c.Dim%c.NHeads != 0:
		return fmt.Errorf("dim %d is not a multiple of n_heads %d", c.Dim, c.NHeads)
	case c.HeadSize()%2 != 0:
		return fmt.Errorf("head size %d (dim %d / n_heads %d) is odd: rotary embeddings need pairs", c.HeadSize(), c.Dim, c.NHeads)
	case c.NKVHeads > c.NHeads || c.NHeads%c.NKVHeads != 0:
		return fmt.Errorf("n_heads %d is not a multiple of n_kv_heads %d", c.NHeads, c.NKVHeads)
	}
	return nil
}

// Llama2CTensor is one weight of a llama2.c checkpoint under its Hugging Face
// name. Per-layer weights are one tensor per layer.
type Llama2CTensor struct {
	Name  string
	Shape []int64
	// Offset is the byte offset of the first element in the file.
	Offset int64
	// RotaryHeads is the head count of a q_proj or k_proj weight, whose rows
	// are permuted from llama2.c's interleaved rotary layout to Hugging
	// Face's half-split one when read; 0 for the other tensors.
	RotaryHeads int
}

// Elements is the tensor's element count.
func (t Llama2CTensor) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Llama2CFile is an open llama2.c checkpoint.
type Llama2CFile struct {
	Path    string
	Config  Llama2CConfig
	Size    int64 // bytes
	f       *os.File
	tensors []Llama2CTensor
	index   map[string]int
}

// ReadLlama2CConfig reads and validates a llama2.c header.
func ReadLlama2CConfig(r io.Reader) (Llama2CConfig, error) {
	var h [7]int32
	if err := binary.Read(r, binary.LittleEndian, &h); err != nil {
		return Llama2CConfig{}, fmt.Errorf("reading the 28-byte header: %w", err)
	}
	if uint32(h[0]) == llama2cMagic {
		return Llama2CConfig{}, fmt.Errorf("this is a version %d export of llama2.c's export.py (magic \"ak42\"), not the legacy format: re-export it with --version 0", h[1])
	}
	c := Llama2CConfig{
		Dim: int(h[0]), HiddenDim: int(h[1]), NLayers: int(h[2]), NHeads: int(h[3]), NKVHeads: int(h[4]),
		VocabSize: int(h[5]), SeqLen: int(h[6]), SharedClassifier: h[5] > 0,
	}
	if c.VocabSize < 0 {
		c.VocabSize = -c.VocabSize
	}
	if err := c.validate(); err != nil {
		return c, fmt.Errorf("invalid header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d): %w",
			h[0], h[1], h[2], h[3], h[4], h[5], h[6], err)
	}
	return c, nil
}

// OpenLlama2C opens a llama2.c checkpoint: it reads the header and checks
// that the file is exactly as long as the header's shapes make it.
func OpenLlama2C(path string) (*Llama2CFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("llama2.c checkpoint: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("llama2.c checkpoint %s: %w", path, err)
	}
	if st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("llama2.c checkpoint %s is a folder: give the .bin file", path)
	}
	cfg, err := ReadLlama2CConfig(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("llama2.c checkpoint %s: %w", path, err)
	}
	tensors, end, err := llama2cLayout(cfg)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("llama2.c checkpoint %s: %w", path, err)
	}
	if size := st.Size(); size != end {
		f.Close()
		what := "truncated"
		if size > end {
			what = "longer than its header says"
		}
		hint := ""
		if cfg.SharedClassifier && size == end+int64(cfg.VocabSize)*int64(cfg.Dim)*4 {
			hint = " (exactly one classifier longer: the header's vocab_size should be negative for an unshared classifier)"
		}
		return nil, fmt.Errorf("llama2.c checkpoint %s is %s: %d bytes, but the header (dim %d, hidden_dim %d, %d layers, %d heads, %d kv heads, vocab %d, seq_len %d, %s classifier) needs %d%s",
			path, what, size, cfg.Dim, cfg.HiddenDim, cfg.NLayers, cfg.NHeads, cfg.NKVHeads, cfg.VocabSize, cfg.SeqLen, sharedWord(cfg), end, hint)
	}
	m := &Llama2CFile{Path: path, Config: cfg, Size: end, f: f, tensors: tensors, index: make(map[string]int, len(tensors))}
	for i, t := range tensors {
		m.index[t.Name] = i
	}
	return m, nil
}

func sharedWord(c Llama2CConfig) string {
	if c.SharedClassifier {
		return "shared"
	}
	return "unshared"
}

// llama2cLayout lists the tensors in Hugging Face order with their offsets
// in run.c's layout (token embedding, then each kind of weight for all
// layers: rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3; rms_final; the
// unused freq_cis_real and freq_cis_imag; wcls when unshared), and returns
// the file size that layout needs.
func llama2cLayout(c Llama2CConfig) ([]Llama2CTensor, int64, error) {
	var overflow bool
	mul := func(xs ...int) int64 {
		n := uint64(1)
		for _, x := range xs {
			hi, lo := bits.Mul64(n, uint64(x))
			if hi != 0 || lo > math.MaxInt64/8 {
				overflow = true
				return 0
			}
			n = lo
		}
		return int64(n)
	}
	d, h, L, kv, hs := c.Dim, c.HiddenDim, c.NLayers, c.KVDim(), c.HeadSize()
	// Offsets in floats of each block, in file order.
	off := int64(0)
	block := func(n int64) int64 { o := off; off += n; return o }
	emb := block(mul(c.VocabSize, d))
	rmsAtt := block(mul(L, d))
	wq := block(mul(L, d, d))
	wk := block(mul(L, kv, d))
	wv := block(mul(L, kv, d))
	wo := block(mul(L, d, d))
	rmsFFN := block(mul(L, d))
	w1 := block(mul(L, h, d))
	w2 := block(mul(L, d, h))
	w3 := block(mul(L, h, d))
	rmsFinal := block(int64(d))
	block(mul(c.SeqLen, hs/2)) // freq_cis_real
	block(mul(c.SeqLen, hs/2)) // freq_cis_imag
	wcls := int64(-1)
	if !c.SharedClassifier {
		wcls = block(mul(c.VocabSize, d))
	}
	if overflow || off > (math.MaxInt64-Llama2CHeaderSize)/4 {
		return nil, 0, errors.New("the header's shapes overflow a file size")
	}
	byteOff := func(floats int64) int64 { return Llama2CHeaderSize + 4*floats }
	var ts []Llama2CTensor
	add := func(name string, at int64, rotary int, shape ...int) {
		s := make([]int64, len(shape))
		for i, x := range shape {
			s[i] = int64(x)
		}
		ts = append(ts, Llama2CTensor{Name: name, Shape: s, Offset: byteOff(at), RotaryHeads: rotary})
	}
	add("model.embed_tokens.weight", emb, 0, c.VocabSize, d)
	for l := 0; l < L; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		ll := int64(l)
		add(p+"input_layernorm.weight", rmsAtt+ll*int64(d), 0, d)
		add(p+"self_attn.q_proj.weight", wq+ll*int64(d)*int64(d), c.NHeads, d, d)
		add(p+"self_attn.k_proj.weight", wk+ll*int64(kv)*int64(d), c.NKVHeads, kv, d)
		add(p+"self_attn.v_proj.weight", wv+ll*int64(kv)*int64(d), 0, kv, d)
		add(p+"self_attn.o_proj.weight", wo+ll*int64(d)*int64(d), 0, d, d)
		add(p+"post_attention_layernorm.weight", rmsFFN+ll*int64(d), 0, d)
		add(p+"mlp.gate_proj.weight", w1+ll*int64(h)*int64(d), 0, h, d)
		add(p+"mlp.up_proj.weight", w3+ll*int64(h)*int64(d), 0, h, d)
		add(p+"mlp.down_proj.weight", w2+ll*int64(d)*int64(h), 0, d, h)
	}
	add("model.norm.weight", rmsFinal, 0, d)
	if wcls >= 0 {
		add("lm_head.weight", wcls, 0, c.VocabSize, d)
	}
	return ts, byteOff(off), nil
}

// Tensors lists the checkpoint's tensors under their Hugging Face names, in
// the order a Hugging Face checkpoint stores them.
func (m *Llama2CFile) Tensors() []Llama2CTensor { return m.tensors }

// Close closes the file.
func (m *Llama2CFile) Close() error { return m.f.Close() }

// ReadTensor reads a tensor by its Hugging Face name, in Hugging Face's
// layout: q_proj and k_proj rows permuted with [PermuteRotary].
func (m *Llama2CFile) ReadTensor(name string) ([]float32, error) {
	i, ok := m.index[name]
	if !ok {
		return nil, fmt.Errorf("llama2.c checkpoint %s has no tensor %q", m.Path, name)
	}
	t := m.tensors[i]
	raw := make([]byte, 4*t.Elements())
	if _, err := m.f.ReadAt(raw, t.Offset); err != nil {
		return nil, fmt.Errorf("llama2.c checkpoint %s: reading %s: %w", m.Path, name, err)
	}
	data := make([]float32, t.Elements())
	for j := range data {
		data[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
	}
	if t.RotaryHeads > 0 {
		return PermuteRotary(data, t.RotaryHeads, int(t.Shape[0]), int(t.Shape[1]))
	}
	return data, nil
}

// PermuteRotary reorders the rows of a query or key projection weight
// [rows, cols] (rows = heads × head size) from the interleaved rotary layout
// of Meta's LLaMA code and llama2.c, where each head rotates the row pairs
// (2i, 2i+1), to the half-split layout of Hugging Face's LlamaAttention,
// where it rotates rows (i, i + head_size/2). It is the permute of
// transformers' convert_llama_weights_to_hf.py,
// w.view(heads, head_size/2, 2, cols).transpose(1, 2).reshape(rows, cols):
// row h·hs + j·hs/2 + i of the result is row h·hs + 2i + j of w.
func PermuteRotary(w []float32, heads, rows, cols int) ([]float32, error) {
	switch {
	case heads <= 0 || rows <= 0 || cols <= 0:
		return nil, fmt.Errorf("rotary permutation: heads %d, rows %d, cols %d must be positive", heads, rows, cols)
	case len(w) != rows*cols:
		return nil, fmt.Errorf("rotary permutation: %d values for a [%d, %d] matrix", len(w), rows, cols)
	case rows%heads != 0 || (rows/heads)%2 != 0:
		return nil, fmt.Errorf("rotary permutation: %d rows do not split into %d heads of an even size", rows, heads)
	}
	hs := rows / heads
	out := make([]float32, len(w))
	for h := 0; h < heads; h++ {
		for i := 0; i < hs/2; i++ {
			for j := 0; j < 2; j++ {
				dst := (h*hs + j*hs/2 + i) * cols
				src := (h*hs + 2*i + j) * cols
				copy(out[dst:dst+cols], w[src:src+cols])
			}
		}
	}
	return out, nil
}

// HFLlamaConfig is the config.json written for a converted model: the fields
// of transformers' LlamaConfig that describe it.
type HFLlamaConfig struct {
	Architectures         []string `json:"architectures"`
	ModelType             string   `json:"model_type"`
	HiddenSize            int      `json:"hidden_size"`
	IntermediateSize      int      `json:"intermediate_size"`
	NumHiddenLayers       int      `json:"num_hidden_layers"`
	NumAttentionHeads     int      `json:"num_attention_heads"`
	NumKeyValueHeads      int      `json:"num_key_value_heads"`
	HeadDim               int      `json:"head_dim"`
	VocabSize             int      `json:"vocab_size"`
	MaxPositionEmbeddings int      `json:"max_position_embeddings"`
	RMSNormEps            float64  `json:"rms_norm_eps"`
	RopeTheta             float64  `json:"rope_theta"`
	RopeScaling           any      `json:"rope_scaling"`
	HiddenAct             string   `json:"hidden_act"`
	AttentionBias         bool     `json:"attention_bias"`
	MLPBias               bool     `json:"mlp_bias"`
	TieWordEmbeddings     bool     `json:"tie_word_embeddings"`
	BOSTokenID            int      `json:"bos_token_id"`
	EOSTokenID            int      `json:"eos_token_id"`
	InitializerRange      float64  `json:"initializer_range"`
	TorchDType            string   `json:"torch_dtype"`
	UseCache              bool     `json:"use_cache"`
}

// HFConfig returns the Hugging Face config of the model: llama2.c's fixed
// choices are RMSNorm ε 1e-5, RoPE θ 10000, SiLU, BOS 1 and EOS 2.
func (c Llama2CConfig) HFConfig(dtype string) HFLlamaConfig {
	return HFLlamaConfig{
		Architectures: []string{"LlamaForCausalLM"}, ModelType: "llama",
		HiddenSize: c.Dim, IntermediateSize: c.HiddenDim, NumHiddenLayers: c.NLayers,
		NumAttentionHeads: c.NHeads, NumKeyValueHeads: c.NKVHeads, HeadDim: c.HeadSize(),
		VocabSize: c.VocabSize, MaxPositionEmbeddings: c.SeqLen,
		RMSNormEps: 1e-5, RopeTheta: 10000, HiddenAct: "silu",
		TieWordEmbeddings: c.SharedClassifier, BOSTokenID: 1, EOSTokenID: 2,
		InitializerRange: 0.02, TorchDType: dtype, UseCache: true,
	}
}

// Llama2CConvertOptions configure [ConvertLlama2C].
type Llama2CConvertOptions struct {
	// Tokenizer is the llama2.c tokenizer.bin to copy beside the weights
	// (none when empty); its vocabulary must have the model's size.
	Tokenizer string
	// DType is the dtype of the written tensors (F32 when 0).
	DType checkpoint.DType
	// ShardSize is the largest shard (checkpoint.DefaultShardSize when 0).
	ShardSize int64
	// Force replaces an existing output.
	Force bool
	// AllowNonfinite lets NaN and ±Inf weights through.
	AllowNonfinite bool
	// Saturate and Saturated are checkpoint.WriteOptions': values beyond
	// the range of DType are saturated (and counted) instead of failing.
	Saturate  bool
	Saturated *atomic.Int64
	// Progress, when set, is called with the bytes read so far and the total.
	Progress func(done, total int64)
}

// Llama2CConvertResult describes a finished conversion.
type Llama2CConvertResult struct {
	Config     Llama2CConfig `json:"config"`
	Tensors    int           `json:"tensors"`
	Parameters int64         `json:"parameters"`
	InputBytes int64         `json:"input_bytes"`
	Tokenizer  string        `json:"tokenizer,omitempty"`
}

// ConvertLlama2C converts the llama2.c checkpoint at model into a Hugging
// Face LLaMA folder at out: config.json, model.safetensors (sharded when
// larger than the shard size) with the q_proj and k_proj rows permuted to
// Hugging Face's rotary layout, lm_head.weight only for an unshared
// classifier (tie_word_embeddings otherwise), and the tokenizer.bin. The
// folder appears only when complete.
func ConvertLlama2C(model, out string, opts Llama2CConvertOptions) (*Llama2CConvertResult, error) {
	m, err := OpenLlama2C(model)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	cfg := m.Config
	var tokData []byte
	if opts.Tokenizer != "" {
		tok, err := tokenizers.LoadLlama2C(opts.Tokenizer)
		if err != nil {
			return nil, err
		}
		if tok.VocabSize() != cfg.VocabSize {
			return nil, fmt.Errorf("tokenizer %s has %d tokens but model %s has a vocabulary of %d: give the tokenizer the model was trained with", opts.Tokenizer, tok.VocabSize(), model, cfg.VocabSize)
		}
		if tokData, err = checkpoint.ReadSideFile(opts.Tokenizer); err != nil {
			return nil, fmt.Errorf("llama2.c tokenizer: %w", err)
		}
	}
	dt := opts.DType
	if dt == 0 {
		dt = checkpoint.F32
	}
	if !checkpoint.IsFloat(dt) {
		return nil, fmt.Errorf("output dtype %s is not a float type", dt)
	}
	specs := make([]checkpoint.TensorSpec, len(m.tensors))
	var total, params int64
	for i, t := range m.tensors {
		specs[i] = checkpoint.TensorSpec{Name: t.Name, DType: dt, Shape: t.Shape}
		params += t.Elements()
	}
	total = 4 * params
	inputs := []string{model}
	if opts.Tokenizer != "" {
		inputs = append(inputs, opts.Tokenizer)
	}
	w, err := checkpoint.Create(out, specs, checkpoint.WriteOptions{
		ShardSize: opts.ShardSize, Force: opts.Force, Inputs: inputs,
		AllowNonfinite: opts.AllowNonfinite, Saturate: opts.Saturate, Saturated: opts.Saturated,
		Metadata: map[string]string{"editkit.converted_from": "llama2.c", "editkit.source": filepath.Base(model)},
	})
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	var done int64
	for _, t := range m.tensors {
		data, err := m.ReadTensor(t.Name)
		if err != nil {
			return nil, err
		}
		if !opts.AllowNonfinite {
			if i := checkpoint.FirstNonFinite(data); i >= 0 {
				return nil, fmt.Errorf("llama2.c checkpoint %s: tensor %s holds a non-finite value (%v at flat index %d): fix the checkpoint, or pass --allow-nonfinite to convert it anyway", model, t.Name, data[i], i)
			}
		}
		if err := w.WriteFloat32(t.Name, data); err != nil {
			return nil, err
		}
		done += 4 * t.Elements()
		if opts.Progress != nil {
			opts.Progress(done, total)
		}
	}
	js, err := json.MarshalIndent(cfg.HFConfig(torchDType(dt)), "", "  ")
	if err != nil {
		return nil, err
	}
	if err := w.AddFile("config.json", append(js, '\n')); err != nil {
		return nil, err
	}
	res := &Llama2CConvertResult{Config: cfg, Tensors: len(m.tensors), Parameters: params, InputBytes: m.Size}
	if tokData != nil {
		if err := w.AddFile(tokenizers.Llama2CFile, tokData); err != nil {
			return nil, err
		}
		res.Tokenizer = tokenizers.Llama2CFile
	}
	if err := w.Commit(); err != nil {
		return nil, err
	}
	return res, nil
}

// torchDType is PyTorch's name of a dtype, as config.json's torch_dtype.
func torchDType(dt checkpoint.DType) string {
	switch dt {
	case checkpoint.BF16:
		return "bfloat16"
	case checkpoint.F16:
		return "float16"
	case checkpoint.F64:
		return "float64"
	}
	return "float32"
}
