package llama

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
)

// envLLMData names a folder holding stories260K.bin and tok512.bin, for
// running the tests against a copy outside ../shared.
const envLLMData = "EDITKIT_LLM_DATA"

const stories260KMD5 = "961b3bc7c4d82d90ca963f02b7e0de5d"

// llmData returns the path of a file of the shared llama2.c data, or skips.
func llmData(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv(envLLMData)
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "data", "llm")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("skipping: %s is absent (the llama2.c stories260K model and tok512 tokenizer live in ../shared/data/llm beside the repository, or set %s to a folder holding them)", p, envLLMData)
	}
	return p
}

func stories260K(t *testing.T) string {
	t.Helper()
	p := llmData(t, "stories260K.bin")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if sum := md5.Sum(data); hex.EncodeToString(sum[:]) != stories260KMD5 {
		t.Fatalf("%s has md5 %x, want %s", p, sum, stories260KMD5)
	}
	return p
}

// rawFloats reads n float32 at byte offset off, independently of the
// package.
func rawFloats(t *testing.T, path string, off int64, n int) []float32 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4*n)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
	}
	return out
}

func TestOpenStories260K(t *testing.T) {
	p := stories260K(t)
	m, err := OpenLlama2C(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := Llama2CConfig{Dim: 64, HiddenDim: 172, NLayers: 5, NHeads: 8, NKVHeads: 4, VocabSize: 512, SeqLen: 512, SharedClassifier: true}
	if m.Config != want {
		t.Fatalf("config %+v, want %+v", m.Config, want)
	}
	shapes := map[string][]int64{
		"model.embed_tokens.weight":                      {512, 64},
		"model.layers.0.input_layernorm.weight":          {64},
		"model.layers.4.self_attn.q_proj.weight":         {64, 64},
		"model.layers.4.self_attn.k_proj.weight":         {32, 64},
		"model.layers.4.self_attn.v_proj.weight":         {32, 64},
		"model.layers.4.self_attn.o_proj.weight":         {64, 64},
		"model.layers.2.post_attention_layernorm.weight": {64},
		"model.layers.2.mlp.gate_proj.weight":            {172, 64},
		"model.layers.2.mlp.up_proj.weight":              {172, 64},
		"model.layers.2.mlp.down_proj.weight":            {64, 172},
		"model.norm.weight":                              {64},
	}
	ts := m.Tensors()
	if len(ts) != 1+5*9+1 {
		t.Errorf("%d tensors, want 47 (no lm_head: the classifier is shared)", len(ts))
	}
	for _, x := range ts {
		if want, ok := shapes[x.Name]; ok && !slices.Equal(x.Shape, want) {
			t.Errorf("%s: shape %v, want %v", x.Name, x.Shape, want)
		}
		if x.Name == "lm_head.weight" {
			t.Errorf("lm_head.weight listed for a shared classifier")
		}
	}

	// Offsets computed here from run.c's memory_map_weights, independently:
	// floats after the 28-byte header.
	const d, h, L, kv, V = 64, 172, 5, 32, 512
	off := func(floats int) int64 { return int64(28 + 4*floats) }
	emb := 0
	rmsAtt := emb + V*d
	wq := rmsAtt + L*d
	wk := wq + L*d*d
	wv := wk + L*kv*d
	wo := wv + L*kv*d
	rmsFFN := wo + L*d*d
	w1 := rmsFFN + L*d
	w2 := w1 + L*h*d
	w3 := w2 + L*d*h
	rmsFinal := w3 + L*h*d
	plain := []struct {
		name string
		at   int
		n    int
	}{
		{"model.embed_tokens.weight", emb, V * d},
		{"model.layers.3.input_layernorm.weight", rmsAtt + 3*d, d},
		{"model.layers.3.self_attn.v_proj.weight", wv + 3*kv*d, kv * d},
		{"model.layers.3.self_attn.o_proj.weight", wo + 3*d*d, d * d},
		{"model.layers.3.post_attention_layernorm.weight", rmsFFN + 3*d, d},
		{"model.layers.3.mlp.gate_proj.weight", w1 + 3*h*d, h * d},
		{"model.layers.3.mlp.down_proj.weight", w2 + 3*d*h, d * h},
		{"model.layers.3.mlp.up_proj.weight", w3 + 3*h*d, h * d},
		{"model.norm.weight", rmsFinal, d},
	}
	for _, c := range plain {
		got, err := m.ReadTensor(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if want := rawFloats(t, p, off(c.at), c.n); !slices.Equal(got, want) {
			t.Errorf("%s differs from the file's floats at %d", c.name, c.at)
		}
	}

	// q_proj and k_proj: the result must be torch's
	// w.view(heads, hs/2, 2, dim).transpose(1, 2).reshape(rows, dim),
	// written here as strided indexing: element (h, j, i, c) of the
	// transposed view is element (h, i, j, c) of the original view.
	for _, c := range []struct {
		name      string
		at, heads int
	}{
		{"model.layers.0.self_attn.q_proj.weight", wq, 8},
		{"model.layers.4.self_attn.q_proj.weight", wq + 4*d*d, 8},
		{"model.layers.0.self_attn.k_proj.weight", wk, 4},
		{"model.layers.4.self_attn.k_proj.weight", wk + 4*kv*d, 4},
	} {
		rows := c.heads * 8
		raw := rawFloats(t, p, off(c.at), rows*d)
		got, err := m.ReadTensor(c.name)
		if err != nil {
			t.Fatal(err)
		}
		const half = 4 // head size 8 / 2
		n := 0
		for hh := 0; hh < c.heads; hh++ {
			for j := 0; j < 2; j++ {
				for i := 0; i < half; i++ {
					for col := 0; col < d; col++ {
						dst := ((hh*2+j)*half+i)*d + col
						src := ((hh*half+i)*2+j)*d + col
						if got[dst] != raw[src] {
							t.Fatalf("%s: element (%d, %d, %d, %d) is %v, want %v", c.name, hh, j, i, col, got[dst], raw[src])
						}
						n++
					}
				}
			}
		}
		if n != rows*d {
			t.Fatalf("checked %d elements of %d", n, rows*d)
		}
		if slices.Equal(got, raw) {
			t.Errorf("%s: permutation left the rows in place", c.name)
		}
	}
}

// TestPermuteRotaryAttention checks what the permutation is for: with the
// permuted weights, Hugging Face's rotary embedding (rotate_half: pairs i,
// i + hs/2) gives the same attention scores as llama2.c's (pairs 2i, 2i+1)
// with the original weights.
func TestPermuteRotaryAttention(t *testing.T) {
	const heads, hs, dim = 3, 8, 5
	rng := rand.New(rand.NewPCG(1, 2))
	rnd := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	wq, wk := rnd(heads*hs*dim), rnd(heads*hs*dim)
	pq, err := PermuteRotary(wq, heads, heads*hs, dim)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := PermuteRotary(wk, heads, heads*hs, dim)
	matvec := func(w, x []float32) []float64 {
		out := make([]float64, len(w)/len(x))
		for r := range out {
			for c, xc := range x {
				out[r] += float64(w[r*len(x)+c]) * float64(xc)
			}
		}
		return out
	}
	freq := func(i int) float64 { return math.Pow(10000, -float64(2*i)/hs) }
	// llama2.c (run.c): rotate (v[2i], v[2i+1]) of each head by pos·θ_i.
	interleaved := func(v []float64, pos int) {
		for h := 0; h < heads; h++ {
			for i := 0; i < hs/2; i++ {
				a, b := h*hs+2*i, h*hs+2*i+1
				s, c := math.Sincos(float64(pos) * freq(i))
				v[a], v[b] = v[a]*c-v[b]*s, v[a]*s+v[b]*c
			}
		}
	}
	// Hugging Face: q·cos + rotate_half(q)·sin, pairs (i, i + hs/2).
	halfSplit := func(v []float64, pos int) {
		for h := 0; h < heads; h++ {
			for i := 0; i < hs/2; i++ {
				a, b := h*hs+i, h*hs+i+hs/2
				s, c := math.Sincos(float64(pos) * freq(i))
				v[a], v[b] = v[a]*c-v[b]*s, v[b]*c+v[a]*s
			}
		}
	}
	for trial := 0; trial < 5; trial++ {
		x1, x2 := rnd(dim), rnd(dim)
		p1, p2 := rng.IntN(50), rng.IntN(50)
		q, k := matvec(wq, x1), matvec(wk, x2)
		interleaved(q, p1)
		interleaved(k, p2)
		hq, hk := matvec(pq, x1), matvec(pk, x2)
		halfSplit(hq, p1)
		halfSplit(hk, p2)
		for h := 0; h < heads; h++ {
			var s1, s2 float64
			for i := h * hs; i < (h+1)*hs; i++ {
				s1 += q[i] * k[i]
				s2 += hq[i] * hk[i]
			}
			if math.Abs(s1-s2) > 1e-9*(1+math.Abs(s1)) {
				t.Fatalf("head %d, positions %d/%d: score %v (llama2.c) vs %v (HF)", h, p1, p2, s1, s2)
			}
		}
	}
	for _, c := range []struct {
		heads, rows, cols, n int
		want                 string
	}{
		{3, 9, 2, 18, "even size"},
		{2, 8, 2, 15, "15 values"},
		{0, 8, 2, 16, "must be positive"},
	} {
		if _, err := PermuteRotary(make([]float32, c.n), c.heads, c.rows, c.cols); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("PermuteRotary(%d, %d, %d): %v, want %q", c.heads, c.rows, c.cols, err, c.want)
		}
	}
}

func TestConvertStories260K(t *testing.T) {
	p := stories260K(t)
	tokPath := llmData(t, "tok512.bin")
	out := filepath.Join(t.TempDir(), "stories260K-hf")
	res, err := ConvertLlama2C(p, out, Llama2CConvertOptions{Tokenizer: tokPath})
	if err != nil {
		t.Fatal(err)
	}
	if res.Tensors != 47 || res.Parameters != (1056540-28)/4-2*512*4 {
		t.Errorf("result %+v: want 47 tensors and the file's floats less freq_cis", res)
	}
	var cfg map[string]any
	js, err := os.ReadFile(filepath.Join(out, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"hidden_size": 64.0, "intermediate_size": 172.0, "num_hidden_layers": 5.0, "num_attention_heads": 8.0,
		"num_key_value_heads": 4.0, "vocab_size": 512.0, "max_position_embeddings": 512.0, "rms_norm_eps": 1e-5,
		"rope_theta": 10000.0, "tie_word_embeddings": true, "bos_token_id": 1.0, "eos_token_id": 2.0,
		"model_type": "llama", "hidden_act": "silu", "torch_dtype": "float32",
	} {
		if cfg[k] != want {
			t.Errorf("config.json %s = %v, want %v", k, cfg[k], want)
		}
	}
	if a, _ := cfg["architectures"].([]any); len(a) != 1 || a[0] != "LlamaForCausalLM" {
		t.Errorf("architectures %v", cfg["architectures"])
	}
	tok, _ := os.ReadFile(filepath.Join(out, "tokenizer.bin"))
	orig, _ := os.ReadFile(tokPath)
	if !bytes.Equal(tok, orig) {
		t.Errorf("tokenizer.bin was not copied as is")
	}

	c, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := len(c.Tensors()); n != 47 {
		t.Errorf("%d tensors in model.safetensors", n)
	}
	if _, ok := c.Tensor("lm_head.weight"); ok {
		t.Errorf("lm_head.weight written for tied embeddings")
	}
	m, err := OpenLlama2C(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, x := range m.Tensors() {
		got, _, err := c.ReadFloat32(x.Name, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		want, err := m.ReadTensor(x.Name)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := c.Tensor(x.Name)
		if !slices.Equal(got, want) || !slices.Equal(info.Shape, x.Shape) {
			t.Errorf("%s: written tensor differs (shape %v vs %v)", x.Name, info.Shape, x.Shape)
		}
	}

	// An existing output needs Force.
	if _, err := ConvertLlama2C(p, out, Llama2CConvertOptions{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("existing output: %v", err)
	}
	if _, err := ConvertLlama2C(p, out, Llama2CConvertOptions{Force: true, DType: checkpoint.BF16}); err != nil {
		t.Errorf("--force: %v", err)
	}
	if info, _ := checkpoint.Open(out); info != nil {
		if ti, _ := info.Tensor("model.norm.weight"); ti.DType != checkpoint.BF16 {
			t.Errorf("dtype %v, want BF16", ti.DType)
		}
		info.Close()
	}
}

// tinyLlama2C writes a llama2.c checkpoint with the given header and
// extra floats beyond what it needs (negative: fewer).
func tinyLlama2C(t *testing.T, hdr [7]int32, extra int) string {
	t.Helper()
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, hdr)
	cfg := Llama2CConfig{Dim: int(hdr[0]), HiddenDim: int(hdr[1]), NLayers: int(hdr[2]), NHeads: int(hdr[3]), NKVHeads: int(hdr[4]), VocabSize: int(hdr[5]), SeqLen: int(hdr[6]), SharedClassifier: hdr[5] > 0}
	if cfg.VocabSize < 0 {
		cfg.VocabSize = -cfg.VocabSize
	}
	_, end, err := llama2cLayout(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := int((end-28)/4) + extra
	for i := 0; i < n; i++ {
		binary.Write(&b, binary.LittleEndian, float32(i%97)/97)
	}
	p := filepath.Join(t.TempDir(), "model.bin")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConvertUnsharedClassifier(t *testing.T) {
	p := tinyLlama2C(t, [7]int32{8, 12, 2, 2, 1, -7, 4}, 0)
	out := filepath.Join(t.TempDir(), "out")
	res, err := ConvertLlama2C(p, out, Llama2CConvertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Config.SharedClassifier || res.Config.VocabSize != 7 {
		t.Errorf("config %+v", res.Config)
	}
	c, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	head, _, err := c.ReadFloat32("lm_head.weight", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// wcls is the last 7×8 floats of the file.
	st, _ := os.Stat(p)
	if want := rawFloats(t, p, st.Size()-4*56, 56); !slices.Equal(head, want) {
		t.Errorf("lm_head.weight is not the file's trailing wcls")
	}
	js, _ := os.ReadFile(filepath.Join(out, "config.json"))
	if !strings.Contains(string(js), `"tie_word_embeddings": false`) {
		t.Errorf("config.json does not untie the embeddings:\n%s", js)
	}
	if _, err := os.Stat(filepath.Join(out, "tokenizer.bin")); err == nil {
		t.Errorf("tokenizer.bin written without a tokenizer")
	}
}

func TestOpenLlama2CErrors(t *testing.T) {
	good := [7]int32{8, 12, 2, 2, 1, 7, 4}
	magic := [7]int32{0x616b3432, 2, 8, 12, 2, 2, 1}
	cases := []struct {
		name  string
		hdr   [7]int32
		extra int
		want  string
	}{
		// 1072 floats: 56 embedding, 16+128+64+64+128+16+3·192 layers, 8
		// final norm, 16 freq_cis; 28 + 4·1072 = 4316 bytes.
		{"truncated", good, -1, "is truncated: 4312 bytes, but the header (dim 8, hidden_dim 12, 2 layers, 2 heads, 1 kv heads, vocab 7, seq_len 4, shared classifier) needs 4316"},
		{"oversized", good, 1, "is longer than its header says: 4320 bytes"},
		{"unshared classifier with a positive vocab", good, 56, "the header's vocab_size should be negative"},
		{"zero heads", [7]int32{8, 12, 2, 0, 1, 7, 4}, 0, "n_heads is 0"},
		{"dim not divisible", [7]int32{9, 12, 2, 2, 1, 7, 4}, 0, "dim 9 is not a multiple of n_heads 2"},
		{"odd head size", [7]int32{6, 12, 2, 2, 1, 7, 4}, 0, "head size 3"},
		{"kv heads", [7]int32{8, 12, 2, 2, 3, 7, 4}, 0, "not a multiple of n_kv_heads 3"},
		{"version 2 export", magic, 0, "version 2 export"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var p string
			if c.name == "version 2 export" || strings.Contains(c.want, "n_heads is 0") || strings.Contains(c.want, "not a multiple") || strings.Contains(c.want, "head size") {
				var b bytes.Buffer
				binary.Write(&b, binary.LittleEndian, c.hdr)
				b.Write(make([]byte, 64))
				p = filepath.Join(t.TempDir(), "m.bin")
				os.WriteFile(p, b.Bytes(), 0o644)
			} else {
				p = tinyLlama2C(t, c.hdr, c.extra)
			}
			_, err := OpenLlama2C(p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	short := filepath.Join(t.TempDir(), "short.bin")
	os.WriteFile(short, []byte{1, 2, 3}, 0o644)
	if _, err := OpenLlama2C(short); err == nil || !strings.Contains(err.Error(), "28-byte header") {
		t.Errorf("short file: %v", err)
	}
	if _, err := OpenLlama2C(filepath.Join(t.TempDir(), "missing.bin")); err == nil {
		t.Errorf("missing file opened")
	}
	// NaN weights are refused unless allowed.
	p := tinyLlama2C(t, good, 0)
	data, _ := os.ReadFile(p)
	binary.LittleEndian.PutUint32(data[28+4*3:], math.Float32bits(float32(math.NaN())))
	os.WriteFile(p, data, 0o644)
	if _, err := ConvertLlama2C(p, filepath.Join(t.TempDir(), "o"), Llama2CConvertOptions{}); err == nil || !strings.Contains(err.Error(), "model.embed_tokens.weight holds a non-finite value (NaN at flat index 3)") {
		t.Errorf("NaN: %v", err)
	}
	if _, err := ConvertLlama2C(p, filepath.Join(t.TempDir(), "o"), Llama2CConvertOptions{AllowNonfinite: true}); err != nil {
		t.Errorf("NaN allowed: %v", err)
	}
}

func TestStories260KResized(t *testing.T) {
	data, err := os.ReadFile(stories260K(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", data[:len(data)-4], "is truncated: 1056536 bytes, but the header (dim 64, hidden_dim 172, 5 layers, 8 heads, 4 kv heads, vocab 512, seq_len 512, shared classifier) needs 1056540"},
		{"oversized", append(slices.Clone(data), 0, 0, 0, 0), "is longer than its header says: 1056544 bytes"},
		{"header only", data[:28], "is truncated: 28 bytes"},
	} {
		p := filepath.Join(t.TempDir(), "stories260K.bin")
		if err := os.WriteFile(p, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenLlama2C(p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

func TestConvertTokenizerMismatch(t *testing.T) {
	tokPath := llmData(t, "tok512.bin")
	p := tinyLlama2C(t, [7]int32{8, 12, 2, 2, 1, 7, 4}, 0)
	out := filepath.Join(t.TempDir(), "o")
	_, err := ConvertLlama2C(p, out, Llama2CConvertOptions{Tokenizer: tokPath})
	if err == nil || !strings.Contains(err.Error(), "has 512 tokens but model") {
		t.Errorf("mismatch: %v", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a failed conversion left %s behind", out)
	}
}
