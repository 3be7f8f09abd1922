package llama

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models/tokenizers"
)

// llama2cExpected is the text llama2.c's test_all.py asserts that greedy
// decoding (temperature 0) of 200 tokens from BOS gives with stories260K,
// for run.c and for its PyTorch model alike.
const llama2cExpected = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"\nLily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\nLily didn't want to help her mom, so she"

// TestConvertedGreedyDecoding runs the converted folder through a plain
// forward pass written the Hugging Face way (LlamaForCausalLM: rotate_half
// rotary embedding on the half-split layout, grouped-query attention,
// SwiGLU, RMSNorm ε from config) and checks that greedy decoding gives
// llama2.c's reference text: the end-to-end test of the conversion, the
// q_proj/k_proj permutation above all (without it the text differs after a
// few tokens: it diverges at byte 38).
func TestConvertedGreedyDecoding(t *testing.T) {
	p := stories260K(t)
	tokPath := llmData(t, "tok512.bin")
	out := filepath.Join(t.TempDir(), "hf")
	if _, err := ConvertLlama2C(p, out, Llama2CConvertOptions{Tokenizer: tokPath}); err != nil {
		t.Fatal(err)
	}
	c, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := func(name string) []float32 {
		v, _, err := c.ReadFloat32(name, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tok, err := tokenizers.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	const dim, hidden, layers, heads, kvHeads, vocab, steps = 64, 172, 5, 8, 4, 512, 200
	const hs = dim / heads
	m := convTestModel{dim: dim, hidden: hidden, heads: heads, kvHeads: kvHeads, vocab: vocab, emb: w("model.embed_tokens.weight"), norm: w("model.norm.weight")}
	for l := range layers {
		pre := fmt.Sprintf("model.layers.%d.", l)
		m.layers = append(m.layers, convTestLayer{
			attnNorm: w(pre + "input_layernorm.weight"), q: w(pre + "self_attn.q_proj.weight"), k: w(pre + "self_attn.k_proj.weight"),
			v: w(pre + "self_attn.v_proj.weight"), o: w(pre + "self_attn.o_proj.weight"), ffnNorm: w(pre + "post_attention_layernorm.weight"),
			gate: w(pre + "mlp.gate_proj.weight"), up: w(pre + "mlp.up_proj.weight"), down: w(pre + "mlp.down_proj.weight"),
		})
	}
	var sb strings.Builder
	token := tok.BOS()
	for pos := range steps {
		logits := m.forward(token, pos)
		next := 0
		for i, x := range logits {
			if x > logits[next] {
				next = i
			}
		}
		if next == tok.BOS() {
			break // run.c stops at BOS
		}
		sb.WriteString(tok.DecodeToken(token, next))
		token = next
	}
	if got := sb.String(); got != llama2cExpected {
		n := 0
		for n < len(got) && n < len(llama2cExpected) && got[n] == llama2cExpected[n] {
			n++
		}
		t.Fatalf("greedy text differs from llama2.c's from byte %d:\ngot  %q\nwant %q", n, got, llama2cExpected)
	}
}

// convTestModel is a minimal LlamaForCausalLM forward pass with a KV cache,
// on Hugging Face's weight layout, for the test above.
type convTestModel struct {
	dim, hidden, heads, kvHeads, vocab int
	emb, norm                          []float32
	layers                             []convTestLayer
}

type convTestLayer struct {
	attnNorm, q, k, v, o, ffnNorm, gate, up, down []float32
	kCache, vCache                                [][]float32
}

func convTestMatVec(w, x []float32) []float32 {
	out := make([]float32, len(w)/len(x))
	for r := range out {
		var s float32
		row := w[r*len(x) : (r+1)*len(x)]
		for c, xc := range x {
			s += row[c] * xc
		}
		out[r] = s
	}
	return out
}

func convTestRMSNorm(x, w []float32) []float32 {
	var ss float32
	for _, v := range x {
		ss += v * v
	}
	scale := float32(1 / math.Sqrt(float64(ss/float32(len(x))+1e-5)))
	out := make([]float32, len(x))
	for i := range x {
		out[i] = w[i] * x[i] * scale
	}
	return out
}

// convTestRope applies Hugging Face's rotary embedding to each head of v:
// v·cos + rotate_half(v)·sin, with pair (i, i + hs/2) at angle pos·θ_i.
func convTestRope(v []float32, hs, pos int) {
	for h := 0; h < len(v)/hs; h++ {
		for i := 0; i < hs/2; i++ {
			theta := float64(pos) * math.Pow(10000, -float64(2*i)/float64(hs))
			s, c := math.Sincos(theta)
			a, b := v[h*hs+i], v[h*hs+i+hs/2]
			v[h*hs+i] = a*float32(c) - b*float32(s)
			v[h*hs+i+hs/2] = b*float32(c) + a*float32(s)
		}
	}
}

func (m *convTestModel) forward(token, pos int) []float32 {
	hs := m.dim / m.heads
	x := append([]float32(nil), m.emb[token*m.dim:(token+1)*m.dim]...)
	for l := range m.layers {
		L := &m.layers[l]
		h := convTestRMSNorm(x, L.attnNorm)
		q, k, v := convTestMatVec(L.q, h), convTestMatVec(L.k, h), convTestMatVec(L.v, h)
		convTestRope(q, hs, pos)
		convTestRope(k, hs, pos)
		L.kCache = append(L.kCache, k)
		L.vCache = append(L.vCache, v)
		att := make([]float32, m.dim)
		for hd := 0; hd < m.heads; hd++ {
			kv := hd / (m.heads / m.kvHeads)
			scores := make([]float64, pos+1)
			mx := math.Inf(-1)
			for t := 0; t <= pos; t++ {
				var s float32
				for i := 0; i < hs; i++ {
					s += q[hd*hs+i] * L.kCache[t][kv*hs+i]
				}
				scores[t] = float64(s) / math.Sqrt(float64(hs))
				mx = math.Max(mx, scores[t])
			}
			var sum float64
			for t := range scores {
				scores[t] = math.Exp(scores[t] - mx)
				sum += scores[t]
			}
			for t := range scores {
				a := float32(scores[t] / sum)
				for i := 0; i < hs; i++ {
					att[hd*hs+i] += a * L.vCache[t][kv*hs+i]
				}
			}
		}
		for i, v := range convTestMatVec(L.o, att) {
			x[i] += v
		}
		h = convTestRMSNorm(x, L.ffnNorm)
		g, u := convTestMatVec(L.gate, h), convTestMatVec(L.up, h)
		for i := range g {
			g[i] = g[i] / (1 + float32(math.Exp(float64(-g[i])))) * u[i]
		}
		for i, v := range convTestMatVec(L.down, g) {
			x[i] += v
		}
	}
	return convTestMatVec(m.emb, convTestRMSNorm(x, m.norm)) // tied lm_head
}
