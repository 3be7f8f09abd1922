package clip

import (
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// TestNewRandomInit checks every tensor's empirical mean and standard
// deviation against the scales of transformers' CLIPPreTrainedModel.
// _init_weights, written out here per name: the two towers have different
// widths and depths so that a scale taken from the wrong tower shows.
func TestNewRandomInit(t *testing.T) {
	c := Config{Naming: HF,
		Vision:   &VisionConfig{Tower: Tower{Width: 64, Layers: 3, Heads: 2, MLP: 128, Act: "quick_gelu", Eps: 1e-5}, ImageSize: 32, PatchSize: 4, Channels: 3},
		Text:     &TextConfig{Tower: Tower{Width: 32, Layers: 2, Heads: 2, MLP: 64, Act: "quick_gelu", Eps: 1e-5}, ContextLength: 16, VocabSize: 300},
		EmbedDim: 24}
	m, err := NewRandom(c, 11)
	if err != nil {
		t.Fatal(err)
	}
	v, tx := 64.0, 32.0
	want := map[string]float64{ // standard deviations; absent: constant
		"vision_model.embeddings.class_embedding":           1 / math.Sqrt(v),
		"vision_model.embeddings.patch_embedding.weight":    0.02,
		"vision_model.embeddings.position_embedding.weight": 0.02,
		"visual_projection.weight":                          1 / math.Sqrt(v),
		"text_model.embeddings.token_embedding.weight":      0.02,
		"text_model.embeddings.position_embedding.weight":   0.02,
		"text_projection.weight":                            1 / math.Sqrt(tx),
	}
	for i := 0; i < 3; i++ {
		p := "vision_model.encoder.layers." + string(rune('0'+i)) + "."
		for _, n := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.fc2"} {
			want[p+n+".weight"] = 1 / math.Sqrt(v*2*3)
		}
		want[p+"self_attn.out_proj.weight"] = 1 / math.Sqrt(v)
		want[p+"mlp.fc1.weight"] = 1 / math.Sqrt(2*v)
	}
	for i := 0; i < 2; i++ {
		p := "text_model.encoder.layers." + string(rune('0'+i)) + "."
		for _, n := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.fc2"} {
			want[p+n+".weight"] = 1 / math.Sqrt(tx*2*2)
		}
		want[p+"self_attn.out_proj.weight"] = 1 / math.Sqrt(tx)
		want[p+"mlp.fc1.weight"] = 1 / math.Sqrt(2*tx)
	}
	for name, w := range m.Weights {
		vals := tensors.MustCopyFlatData[float32](w)
		var sum, sq float64
		for _, x := range vals {
			sum += float64(x)
			sq += float64(x) * float64(x)
		}
		n := float64(len(vals))
		mean, std := sum/n, math.Sqrt(sq/n-(sum/n)*(sum/n))
		s, random := want[name]
		switch {
		case random:
			// 4 standard errors of the sample std (≈ s/√(2n)), at least 64 values.
			if tol := 4 * s / math.Sqrt(2*n); math.Abs(std-s) > tol || math.Abs(mean) > 4*s/math.Sqrt(n) {
				t.Errorf("%s (%d values): mean %.4g, std %.4g, want 0, %.4g ± %.2g", name, len(vals), mean, std, s, tol)
			}
		case std != 0:
			t.Errorf("%s: std %.4g, want a constant tensor", name, std)
		}
	}
	for name := range want {
		if _, ok := m.Weights[name]; !ok {
			t.Errorf("no tensor %s", name)
		}
	}
	ls := tensors.MustCopyFlatData[float32](m.Weights["logit_scale"])[0]
	if math.Abs(float64(ls)-math.Log(1/0.07)) > 1e-6 {
		t.Errorf("logit_scale %g, want ln(1/0.07)", ls)
	}
}
