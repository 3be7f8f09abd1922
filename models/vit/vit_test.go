package vit

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/internal/reftest"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// tiny is the architecture of the hf-vit reference case.
func tiny() Config {
	c := DefaultConfig()
	c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize = 32, 2, 4, 64
	c.ImageSize, c.PatchSize, c.NumLabels = 32, 8, 5
	return c
}

func TestReference(t *testing.T) {
	t.Logf("backend: %s", models.Backend().Description())
	m, err := Load(reftest.Dir("hf-vit"))
	if err != nil {
		t.Fatal(err)
	}
	if want := tiny(); m.Config != want {
		t.Errorf("config %+v, want %+v", m.Config, want)
	}
	io := reftest.Open(t, "hf-vit")
	pooled, logits, err := m.Run(io.Float32("pixel_values"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		got  *tensors.Tensor
	}{{"pooled", pooled}, {"logits", logits}} {
		d := reftest.MaxAbsDiff(c.got, io.Float32(c.name))
		t.Logf("hf-vit %s: max abs diff %.3g", c.name, d)
		if d > reftest.Tolerance {
			t.Errorf("%s differs from the PyTorch reference by %g (> %g)", c.name, d, reftest.Tolerance)
		}
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		check      func(Config) bool
		err        string
	}{
		{name: "defaults", json: `{}`, check: func(c Config) bool { return c == DefaultConfig() }},
		{name: "id2label", json: `{"model_type":"vit","id2label":{"0":"a","1":"b","2":"c"}}`, check: func(c Config) bool { return c.NumLabels == 3 }},
		{name: "num_labels wins", json: `{"num_labels":7,"id2label":{"0":"a"}}`, check: func(c Config) bool { return c.NumLabels == 7 }},
		{name: "sizes", json: `{"hidden_size":64,"num_attention_heads":2,"image_size":48,"patch_size":16,"hidden_act":"gelu_new"}`,
			check: func(c Config) bool { return c.HiddenSize == 64 && c.NumPatches() == 9 && c.HiddenAct == "gelu_new" }},
		{name: "heads", json: `{"hidden_size":64,"num_attention_heads":3}`, err: "heads"},
		{name: "patches", json: `{"image_size":30,"patch_size":16}`, err: "patches"},
		{name: "activation", json: `{"hidden_act":"swish"}`, err: "activation"},
		{name: "model type", json: `{"model_type":"clip"}`, err: "not vit"},
		{name: "syntax", json: `{"hidden_size":`, err: "parsing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.json))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
			// The config round-trips through JSON.
			back, err := ParseConfig(c.JSON())
			if err != nil || back != c {
				t.Errorf("JSON round trip: %+v, %v; want %+v", back, err, c)
			}
		})
	}
}

func testPixels(c Config, batch int) *tensors.Tensor {
	data := make([]float32, batch*c.ImageSize*c.ImageSize*c.NumChannels)
	for i := range data {
		data[i] = float32(math.Sin(float64(i) * 0.37))
	}
	return tensors.FromFlatDataAndDimensions(data, batch, c.ImageSize, c.ImageSize, c.NumChannels)
}

// TestSaveLoad writes random models in both layouts (ViTForImageClassification
// and a bare ViTModel) and dtypes, and loads them back through Load.
func TestSaveLoad(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prefix string
		labels int
		dtype  checkpoint.DType
	}{
		{"classifier F32", "vit.", 3, checkpoint.F32},
		{"bare ViTModel F32", "", 0, checkpoint.F32},
		{"classifier BF16", "vit.", 2, checkpoint.BF16},
		{"classifier F16", "vit.", 2, checkpoint.F16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tiny()
			c.Prefix, c.NumLabels, c.HiddenAct = tc.prefix, tc.labels, "quick_gelu"
			m, err := NewRandom(c, 42)
			if err != nil {
				t.Fatal(err)
			}
			specs := c.Specs()
			for i := range specs {
				specs[i].DType = tc.dtype
			}
			dir := filepath.Join(t.TempDir(), "model")
			if err := m.Weights.Save(dir, specs, map[string][]byte{"config.json": c.JSON()}, checkpoint.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			back, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if back.Config != c {
				t.Fatalf("config %+v, want %+v", back.Config, c)
			}
			for _, s := range c.Specs() {
				want := m.Weights.Float32(s.Name)
				raw, _ := checkpoint.EncodeFloat32(tc.dtype, want, nil)
				want, _ = checkpoint.DecodeFloat32(tc.dtype, raw, nil) // rounded as stored
				if got := back.Weights.Float32(s.Name); !slices.Equal(got, want) {
					t.Fatalf("weight %s changed in the round trip", s.Name)
				}
			}
			pooled, logits, err := back.Run(testPixels(c, 2))
			if err != nil {
				t.Fatal(err)
			}
			if d := pooled.Shape().Dimensions; !slices.Equal(d, []int{2, c.HiddenSize}) {
				t.Errorf("pooled shape %v", d)
			}
			if (logits != nil) != (tc.labels > 0) {
				t.Errorf("logits %v with %d labels", logits, tc.labels)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	c := tiny()
	m, err := NewRandom(c, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Weights of one architecture under the config of another.
	bad := c
	bad.IntermediateSize = 96
	if err := m.Weights.Save(filepath.Join(dir, "mismatch"), c.Specs(), map[string][]byte{"config.json": bad.JSON()}, checkpoint.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(dir, "mismatch")); err == nil || !strings.Contains(err.Error(), "intermediate.dense.weight") {
		t.Errorf("loading mismatched shapes: %v", err)
	}
	// A checkpoint without config.json.
	if err := m.Weights.Save(filepath.Join(dir, "noconfig"), c.Specs(), nil, checkpoint.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(dir, "noconfig")); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("loading without config.json: %v", err)
	}
	// Wrong image size at run time.
	if _, _, err := m.Run(testPixels(Config{ImageSize: 16, NumChannels: 3}, 1)); err == nil || !strings.Contains(err.Error(), "pixels must be") {
		t.Errorf("running on 16x16 pixels: %v", err)
	}
}

// TestWithWeights runs other weights through the same compiled graph.
func TestWithWeights(t *testing.T) {
	c := tiny()
	m1, err := NewRandom(c, 1)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := NewRandom(c, 2)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := m1.WithWeights(fresh.Weights)
	if err != nil {
		t.Fatal(err)
	}
	x := testPixels(c, 3)
	p1, _, err := m1.Run(x)
	if err != nil {
		t.Fatal(err)
	}
	p2, _, err := m2.Run(x)
	if err != nil {
		t.Fatal(err)
	}
	if n := m1.Func().Builds(); n != 1 {
		t.Errorf("%d graphs built for two weight sets of one shape, want 1", n)
	}
	want, _, err := fresh.Run(x) // its own compiled graph
	if err != nil {
		t.Fatal(err)
	}
	if d := reftest.MaxAbsDiff(p2, want); d != 0 {
		t.Errorf("shared graph with other weights differs by %g from a graph of its own", d)
	}
	if d := reftest.MaxAbsDiff(p1, p2); d == 0 {
		t.Error("two weight sets gave the same output")
	}
	bad := models.Weights{}
	for k, v := range fresh.Weights {
		bad[k] = v
	}
	delete(bad, "classifier.bias")
	if _, err := m1.WithWeights(bad); err == nil || !strings.Contains(err.Error(), "classifier.bias") {
		t.Errorf("WithWeights without classifier.bias: %v", err)
	}
}

// TestContextGradient binds the reference weights as context variables,
// checks the forward pass against the graph-input one, and differentiates
// with respect to every weight on the default backend (simplego has no Pad,
// so a Slice on the way would fail here).
func TestContextGradient(t *testing.T) {
	m, err := Load(reftest.Dir("hf-vit"))
	if err != nil {
		t.Fatal(err)
	}
	c, specs := m.Config, m.Config.Specs()
	ctx := context.New()
	if err := m.Weights.ToContext(ctx); err != nil {
		t.Fatal(err)
	}
	x := reftest.Open(t, "hf-vit").Float32("pixel_values")
	batch := x.Shape().Dimensions[0]
	exec, err := context.NewExec(models.Backend(), ctx, func(ctx *context.Context, pixels *graph.Node) []*graph.Node {
		p := models.ContextParams(ctx, pixels.Graph(), specs)
		_, logits := Forward(c, p, pixels)
		nodes := make([]*graph.Node, len(specs))
		for i, s := range specs {
			nodes[i] = p[s.Name]
		}
		return append([]*graph.Node{logits}, graph.Gradient(graph.ReduceAllSum(logits), nodes...)...)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	outs, err := exec.Exec(x)
	if err != nil {
		t.Fatal(err)
	}
	_, want, err := m.Run(x)
	if err != nil {
		t.Fatal(err)
	}
	if d := reftest.MaxAbsDiff(outs[0], want); d > 1e-6 {
		t.Errorf("context-bound forward differs by %g", d)
	}
	for i, s := range specs {
		g := tensors.MustCopyFlatData[float32](outs[1+i])
		switch s.Name {
		case "classifier.bias": // ∂Σlogits/∂b_j = batch
			for _, v := range g {
				if v != float32(batch) {
					t.Fatalf("gradient of classifier.bias %v, want all %d", g, batch)
				}
			}
		case c.layer(0) + "attention.attention.key.bias", c.layer(1) + "attention.attention.key.bias":
			// Softmax ignores a shift shared by all keys: zero gradient.
		default:
			nonzero := false
			for _, v := range g {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("gradient of %s is not finite", s.Name)
				}
				nonzero = nonzero || v != 0
			}
			if !nonzero {
				t.Errorf("gradient of %s is all zero", s.Name)
			}
		}
	}
	// New values for the variables: the same compiled graph, new outputs.
	other, err := NewRandom(c, 9)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Weights.ToContext(ctx); err != nil {
		t.Fatal(err)
	}
	outs, err = exec.Exec(x)
	if err != nil {
		t.Fatal(err)
	}
	_, want, _ = other.Run(x)
	if d := reftest.MaxAbsDiff(outs[0], want); d > 1e-6 {
		t.Errorf("after rebinding the context, forward differs by %g", d)
	}
	back, err := models.WeightsFromContext(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Float32("classifier.weight"), other.Weights.Float32("classifier.weight")) {
		t.Error("WeightsFromContext does not return the bound weights")
	}
}
