package llama

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/internal/reftest"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// The reference cases of tools/torchref/llama_ref.py: tiny random models
// laid out as transformers' LlamaForCausalLM / Qwen2ForCausalLM.
var refCases = []string{"llama-gqa", "llama-tied-bias", "llama-qwen2"}

// refFeatureLayer is llama_ref.py's FEATURE_LAYER.
const refFeatureLayer = 1

func loadRef(t *testing.T, name string) *Model {
	t.Helper()
	m, err := Load(reftest.Dir(name))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestReferenceConfigs(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		heads, kvHeads, headDim int
		qkvBias, outBias, tied  bool
		bos                     int
		eos                     []int
		ropeScaling             string
	}{
		{"llama-gqa", 4, 2, 12, false, false, false, 1, []int{2}, ""},
		{"llama-tied-bias", 4, 1, 8, true, true, true, 1, []int{2, 3}, "llama3"},
		{"llama-qwen2", 4, 2, 8, true, false, true, -1, []int{95}, ""},
	} {
		c := loadRef(t, tc.name).Config
		rs := ""
		if c.RopeScaling != nil {
			rs = c.RopeScaling.Type
		}
		if c.NumAttentionHeads != tc.heads || c.NumKeyValueHeads != tc.kvHeads || c.HeadDim != tc.headDim ||
			c.QKVBias != tc.qkvBias || c.OutBias != tc.outBias || c.TieWordEmbeddings != tc.tied ||
			c.BOSTokenID != tc.bos || !slices.Equal(c.EOSTokenIDs, tc.eos) || rs != tc.ropeScaling {
			t.Errorf("%s: config %+v", tc.name, c)
		}
	}
}

// shiftedTargets returns ids shifted left by one (0 at the end) and a mask
// that leaves the last position out: the loss of llama_ref.py.
func shiftedTargets(ids *tensors.Tensor) (targets, mask *tensors.Tensor) {
	d := ids.Shape().Dimensions
	b, s := d[0], d[1]
	flat := tensors.MustCopyFlatData[int64](ids)
	tg := make([]int64, b*s)
	mk := make([]float32, b*s)
	for i := range b {
		for j := 0; j+1 < s; j++ {
			tg[i*s+j] = flat[i*s+j+1]
			mk[i*s+j] = 1
		}
	}
	return tensors.FromFlatDataAndDimensions(tg, b, s), tensors.FromFlatDataAndDimensions(mk, b, s)
}

// TestReference checks the logits, the features at the adapter site, the
// loss and the gradient of a down_proj weight against PyTorch (float64
// references, float32 here).
func TestReference(t *testing.T) {
	t.Logf("backend: %s", models.Backend().Description())
	for _, name := range refCases {
		t.Run(name, func(t *testing.T) {
			m := loadRef(t, name)
			io := reftest.Open(t, name)
			ids := io.Int64("input_ids")
			logits, feats, err := m.Features(ids, refFeatureLayer)
			if err != nil {
				t.Fatal(err)
			}
			only, err := m.Logits(ids)
			if err != nil {
				t.Fatal(err)
			}
			gname := DownProjName(refFeatureLayer)
			gf, err := m.NewGradFunc(gname)
			if err != nil {
				t.Fatal(err)
			}
			targets, mask := shiftedTargets(ids)
			loss, grads, err := gf.Call(m.Weights, ids, targets, mask)
			if err != nil {
				t.Fatal(err)
			}
			lossT := tensors.FromFlatDataAndDimensions([]float32{loss}, 1)
			for _, c := range []struct {
				name string
				got  *tensors.Tensor
				want string
				tol  float64
			}{
				{"logits", logits, "logits", reftest.Tolerance},
				{"logits (Logits)", only, "logits", reftest.Tolerance},
				{"features", feats, "features", reftest.Tolerance},
				{"loss", lossT, "loss", 1e-5},
				{"grad", grads[gname], "grad." + gname, 1e-6},
			} {
				d := reftest.MaxAbsDiff(c.got, io.Float32(c.want))
				t.Logf("%s %s: max abs diff %.3g", name, c.name, d)
				if d > c.tol {
					t.Errorf("%s differs from the PyTorch reference by %g (> %g)", c.name, d, c.tol)
				}
			}
		})
	}
}

// TestKVCacheMatchesForward checks that generation with the key/value cache
// (a prefill of several tokens, then one token per step, batch 2) gives the
// logits of the full forward pass at every position.
func TestKVCacheMatchesForward(t *testing.T) {
	for _, name := range refCases {
		t.Run(name, func(t *testing.T) {
			m := loadRef(t, name)
			io := reftest.Open(t, name)
			ids := io.Int64("input_ids")
			full, err := m.Logits(ids)
			if err != nil {
				t.Fatal(err)
			}
			d := ids.Shape().Dimensions
			b, s, v := d[0], d[1], m.Config.VocabSize
			fullF := tensors.MustCopyFlatData[float32](full)
			flat := tensors.MustCopyFlatData[int64](ids)
			cols := func(from, to int) *tensors.Tensor {
				var out []int64
				for i := range b {
					out = append(out, flat[i*s+from:i*s+to]...)
				}
				return tensors.FromFlatDataAndDimensions(out, b, to-from)
			}
			g, err := m.NewGenerator(16)
			if err != nil {
				t.Fatal(err)
			}
			sess, err := g.NewSession(b)
			if err != nil {
				t.Fatal(err)
			}
			const prefill = 5
			worst := 0.0
			for pos := prefill - 1; pos < s; pos++ {
				from := pos
				if pos == prefill-1 {
					from = 0
				}
				out, err := sess.Feed(cols(from, pos+1))
				if err != nil {
					t.Fatal(err)
				}
				got := tensors.MustCopyFlatData[float32](out)
				for i := range b {
					for j := range v {
						worst = max(worst, math.Abs(float64(got[i*v+j]-fullF[(i*s+pos)*v+j])))
					}
				}
			}
			t.Logf("%s: cached vs full logits: max abs diff %.3g over positions %d..%d (dus=%v)", name, worst, prefill-1, s-1, g.dus)
			if worst > 1e-5 {
				t.Errorf("cached generation differs from the full forward pass by %g", worst)
			}
			if _, err := sess.Feed(cols(0, 5)); err == nil || !strings.Contains(err.Error(), "cache length") {
				t.Errorf("feeding past the cache length: err %v", err)
			}
		})
	}
}

// TestShardedRoundTrip saves a reference model in small shards and loads it
// back.
func TestShardedRoundTrip(t *testing.T) {
	m := loadRef(t, "llama-tied-bias")
	out := filepath.Join(t.TempDir(), "sharded")
	if err := m.Save(out, checkpoint.WriteOptions{ShardSize: 20000}); err != nil {
		t.Fatal(err)
	}
	ck, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := ck.Files()
	ck.Close()
	if len(files) < 2 {
		t.Fatalf("expected several shards, got %d", len(files))
	}
	m2, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Config.TieWordEmbeddings != true || m2.Config.QKVBias != true || m2.Config.RopeScaling == nil {
		t.Errorf("reloaded config %+v", m2.Config)
	}
	ids, _ := IDs([]int{1, 5, 9, 14})
	a, err := m.Logits(ids)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m2.Logits(ids)
	if err != nil {
		t.Fatal(err)
	}
	if d := reftest.MaxAbsDiff(a, b); d != 0 {
		t.Errorf("sharded copy gives other logits (%g)", d)
	}
}

// TestAdapterHook attaches a residual adapter at layer 1: with zero state
// the logits are the model's, with a random state they change, and a mask
// input of zeros switches it off again.
func TestAdapterHook(t *testing.T) {
	m := loadRef(t, "llama-gqa")
	a := NewResidualLinear(m.Config, 1, "")
	ids, _ := IDs([]int{1, 7, 3, 40, 2}, []int{1, 9, 9, 9, 0})
	base, err := m.Logits(ids)
	if err != nil {
		t.Fatal(err)
	}
	zero := models.RandomWeights(a.Specs(), 1, func(checkpoint.TensorSpec) models.Init { return models.Zeros })
	mz, err := m.WithAdapter(a, zero)
	if err != nil {
		t.Fatal(err)
	}
	got, err := mz.Logits(ids)
	if err != nil {
		t.Fatal(err)
	}
	if d := reftest.MaxAbsDiff(got, base); d > 1e-6 {
		t.Errorf("a zero adapter changes the logits by %g", d)
	}
	rnd := models.RandomWeights(a.Specs(), 1, func(checkpoint.TensorSpec) models.Init { return models.Normal(0.5) })
	mr, err := mz.WithWeights(merge(mz.Weights, rnd))
	if err != nil {
		t.Fatal(err)
	}
	got, err = mr.Logits(ids)
	if err != nil {
		t.Fatal(err)
	}
	if d := reftest.MaxAbsDiff(got, base); d < 1e-2 {
		t.Errorf("a random adapter changes the logits only by %g", d)
	}
	// The features of the site do not depend on the adapter at that site.
	_, f0, err := m.Features(ids, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, f1, err := mr.Features(ids, 1)
	if err != nil {
		t.Fatal(err)
	}
	if d := reftest.MaxAbsDiff(f0, f1); d != 0 {
		t.Errorf("features at the adapter's site changed by %g", d)
	}
	// A zero mask as the adapter's extra input switches it off.
	mask := tensors.FromShape(f0.Shape())
	got, err = mr.Logits(ids, mask)
	if err != nil {
		t.Fatal(err)
	}
	if d := reftest.MaxAbsDiff(got, base); d > 1e-6 {
		t.Errorf("a masked-off adapter changes the logits by %g", d)
	}
	if mr.Without().Adapter != nil || len(mr.Without().Weights) != len(m.Config.Specs()) {
		t.Error("Without kept the adapter")
	}
	if _, err := m.WithAdapter(NewResidualLinear(m.Config, 5, ""), zero); err == nil {
		t.Error("an adapter past the last layer was accepted")
	}
	if _, err := m.WithAdapter(&ResidualLinear{At: 0, Name: DownProjName(0), Hidden: 32, Intermediate: 64}, zero); err == nil {
		t.Error("an adapter weight named like a model weight was accepted")
	}
}

func merge(ws ...models.Weights) models.Weights {
	out := models.Weights{}
	for _, w := range ws {
		for k, v := range w {
			out[k] = v
		}
	}
	return out
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		check      func(Config) bool
		err        string
	}{
		{name: "llama defaults", json: `{"model_type":"llama"}`, check: func(c Config) bool {
			return c.HiddenSize == 4096 && c.NumKeyValueHeads == 32 && c.HeadDim == 128 && c.RMSNormEps == 1e-6 && c.BOSTokenID == 1
		}},
		{name: "attention_bias", json: `{"attention_bias":true}`, check: func(c Config) bool { return c.QKVBias && c.OutBias }},
		{name: "qwen2 bias", json: `{"model_type":"qwen2","hidden_size":64,"num_attention_heads":4}`, check: func(c Config) bool {
			return c.QKVBias && !c.OutBias && c.BOSTokenID == -1 && c.HeadDim == 16
		}},
		{name: "eos list", json: `{"eos_token_id":[128001,128009],"bos_token_id":null}`, check: func(c Config) bool {
			return slices.Equal(c.EOSTokenIDs, []int{128001, 128009}) && c.BOSTokenID == -1 && c.IsEOS(128009)
		}},
		{name: "linear scaling", json: `{"rope_scaling":{"type":"linear","factor":2}}`, check: func(c Config) bool {
			return c.RopeScaling != nil && c.InvFreq()[0] == 0.5
		}},
		{name: "unknown type", json: `{"model_type":"gpt2"}`, err: "model_type"},
		{name: "gqa mismatch", json: `{"num_attention_heads":6,"num_key_value_heads":4,"hidden_size":48}`, err: "multiple"},
		{name: "act", json: `{"hidden_act":"gelu"}`, err: "hidden_act"},
		{name: "yarn", json: `{"rope_scaling":{"rope_type":"yarn","factor":4}}`, err: "yarn"},
		{name: "sliding", json: `{"model_type":"qwen2","use_sliding_window":true}`, err: "sliding"},
	} {
		c, err := ParseConfig([]byte(tc.json))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want one mentioning %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !tc.check(c) {
			t.Errorf("%s: config %+v", tc.name, c)
		}
		// JSON round trip.
		c2, err := ParseConfig(c.JSON())
		if err != nil || c2.HiddenSize != c.HiddenSize || c2.QKVBias != c.QKVBias || c2.BOSTokenID != c.BOSTokenID ||
			!slices.Equal(c2.EOSTokenIDs, c.EOSTokenIDs) || (c2.RopeScaling == nil) != (c.RopeScaling == nil) {
			t.Errorf("%s: JSON round trip gives %+v (%v)", tc.name, c2, err)
		}
	}
}

func TestNewRandom(t *testing.T) {
	c, err := ParseConfig([]byte(`{"hidden_size":16,"intermediate_size":24,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"vocab_size":20,"max_position_embeddings":8}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewRandom(c, 3)
	if err != nil {
		t.Fatal(err)
	}
	if v := m.Weights.Float32("model.layers.0.input_layernorm.weight"); v[0] != 1 {
		t.Errorf("norm gain %v, want 1", v[0])
	}
	ids, _ := IDs([]int{1, 2, 3})
	out, err := m.Logits(ids)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Shape().Dimensions; !slices.Equal(got, []int{1, 3, 20}) {
		t.Errorf("logits shape %v", got)
	}
	if _, err := m.NewGenerator(9); err == nil {
		t.Error("a generator longer than max_position_embeddings was accepted")
	}
	if _, err := m.NewGradFunc("nope"); err == nil {
		t.Error("a gradient with respect to an unknown weight was accepted")
	}
}
