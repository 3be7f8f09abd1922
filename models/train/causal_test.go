package train

import (
	"math"
	"strings"
	"testing"

	"github.com/editkit/editkit/models/llama"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// tinyLlama is a LLaMA small enough for gradient checks: grouped-query
// attention, untied output layer.
func tinyLlama() llama.Config {
	c := llama.Config{ModelType: "llama", HiddenSize: 8, IntermediateSize: 12, NumHiddenLayers: 2, NumAttentionHeads: 2,
		NumKeyValueHeads: 1, HeadDim: 4, VocabSize: 11, MaxPositionEmbeddings: 16, RMSNormEps: 1e-5, RopeTheta: 10000,
		HiddenAct: "silu", BOSTokenID: 1, EOSTokenIDs: []int{2}}
	return c
}

// TestGradientCausalLM checks the causal-LM loss's gradient (float64)
// against finite differences: every kind of weight, a padded batch.
func TestGradientCausalLM(t *testing.T) {
	c := tinyLlama()
	w := wideWeights(c.Specs(), 4)
	e, err := newEngine(lmParams(c), w, causalLoss(c), adamW{}, dtypes.Float64)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ids, targets, weights := tokenRows([][]int{{1, 5, 7, 3, 9, 2}, {1, 4, 4, 10}}, 8)
	checkGradient(t, e, []string{
		"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
		"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight", "model.layers.1.self_attn.v_proj.weight",
		"model.layers.1.self_attn.o_proj.weight", "model.layers.0.mlp.gate_proj.weight", "model.layers.1.mlp.down_proj.weight",
		"model.layers.0.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight",
	}, ids, targets, weights)
}

// TestTokenRows: targets are the ids shifted by one, weighted where a next
// token exists; padding is zeros with weight 0.
func TestTokenRows(t *testing.T) {
	ids, targets, weights := tokenRows([][]int{{1, 5, 7}, {1, 4}}, 4)
	for _, tc := range []struct {
		name string
		got  []float64
		want []float64
	}{
		{"ids", flat64i(ids), []float64{1, 5, 7, 0, 1, 4, 0, 0}},
		{"targets", flat64i(targets), []float64{5, 7, 0, 0, 4, 0, 0, 0}},
		{"weights", flat64(weights), []float64{1, 1, 0, 0, 1, 0, 0, 0}},
	} {
		for i := range tc.want {
			if tc.got[i] != tc.want[i] {
				t.Fatalf("%s = %v, want %v", tc.name, tc.got, tc.want)
			}
		}
	}
}

// TestCausalLMLearns trains a tiny model on a toy corpus of two
// alternating patterns: the loss falls from about ln(vocab) to near the
// entropy of the corpus, the model predicts the deterministic tokens, and
// the trained model comes back as a llama.Model.
func TestCausalLMLearns(t *testing.T) {
	c := tinyLlama()
	c.HiddenSize, c.IntermediateSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim = 16, 32, 2, 2, 8
	m, err := llama.NewRandom(c, 1)
	if err != nil {
		t.Fatal(err)
	}
	// After 1, "3" or "4" at random, then a sequence fixed by that choice.
	seqs := [][]int{{1, 3, 5, 6, 7, 8, 2}, {1, 4, 8, 7, 6, 5, 2}}
	var data [][]int
	for i := range 64 {
		data = append(data, seqs[i%2])
	}
	o := Options{LearningRate: 1e-2, Warmup: 5, ClipNorm: 1, BatchSize: 16, Steps: 120, Seed: 3, WeightDecay: 0.01}
	res, err := CausalLM(m, data, o)
	if err != nil {
		t.Fatal(err)
	}
	first, last := res.Losses[0], res.MeanLoss
	// The corpus's entropy: ln 2 at the choice, 0 elsewhere, over 6
	// predicted tokens per sequence.
	floor := math.Log(2) / 6
	t.Logf("loss %.3f → %.3f (floor %.3f, ln vocab %.3f), %.1f steps/s", first, last, floor, math.Log(float64(c.VocabSize)), res.StepsPerSec)
	if first < 0.8*math.Log(float64(c.VocabSize)) || last > floor+0.05 {
		t.Errorf("loss %.3f → %.3f; want about ln %d at first and below %.3f at the end", first, last, c.VocabSize, floor+0.05)
	}
	trained, err := llama.New(c, res.Weights)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range seqs {
		out, _, err := trained.Generate(s[:2], llama.GenerateOptions{Steps: len(s)})
		if err != nil {
			t.Fatal(err)
		}
		// Generation stops at the EOS (2), which it does not return.
		for i := range s[:len(s)-1] {
			if i >= len(out) || out[i] != s[i] {
				t.Fatalf("after %v the trained model generates %v, want %v", s[:2], out, s)
			}
		}
	}
}

func TestCausalLMErrors(t *testing.T) {
	c := tinyLlama()
	m, err := llama.NewRandom(c, 1)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{LearningRate: 1e-3, BatchSize: 2, Steps: 1}
	for _, tc := range []struct {
		seqs [][]int
		want string
	}{
		{nil, "no sequences"},
		{[][]int{{1}}, "at least 2"},
		{[][]int{{1, 11}}, "outside the model's vocabulary of 11"},
		{[][]int{make([]int, 17)}, "more than the model's 16 positions"},
	} {
		if _, err := CausalLM(m, tc.seqs, o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one mentioning %q", tc.seqs, err, tc.want)
		}
	}
}

func flat64i(t *tensors.Tensor) []float64 {
	var out []float64
	for _, v := range tensors.MustCopyFlatData[int32](t) {
		out = append(out, float64(v))
	}
	return out
}
