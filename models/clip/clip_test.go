package clip

import (
	"math"
	"os"
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

// The reference cases written by tools/torchref.
var refCases = []struct {
	name, file string // file inside the case folder ("" for the folder itself)
	naming     Naming
	config     Config
}{
	{"hf-clip", "", HF, Config{Naming: HF,
		Vision:   &VisionConfig{Tower: Tower{Width: 32, Layers: 2, Heads: 4, MLP: 128, Act: "quick_gelu", Eps: 1e-5}, ImageSize: 32, PatchSize: 8, Channels: 3},
		Text:     &TextConfig{Tower: Tower{Width: 48, Layers: 2, Heads: 4, MLP: 96, Act: "quick_gelu", Eps: 1e-5}, ContextLength: 16, VocabSize: 100},
		EmbedDim: 24}},
	{"openai-clip", "open_clip_model.safetensors", OpenAI, Config{Naming: OpenAI,
		Vision:   &VisionConfig{Tower: Tower{Width: 32, Layers: 2, Heads: 4, MLP: 128, Act: "quick_gelu", Eps: 1e-5}, ImageSize: 32, PatchSize: 8, Channels: 3},
		Text:     &TextConfig{Tower: Tower{Width: 48, Layers: 2, Heads: 4, MLP: 96, Act: "quick_gelu", Eps: 1e-5}, ContextLength: 16, VocabSize: 100},
		EmbedDim: 24}},
}

func sameConfig(a, b Config) bool {
	eqV := (a.Vision == nil) == (b.Vision == nil) && (a.Vision == nil || *a.Vision == *b.Vision)
	eqT := (a.Text == nil) == (b.Text == nil) && (a.Text == nil || *a.Text == *b.Text)
	return a.Naming == b.Naming && a.EmbedDim == b.EmbedDim && eqV && eqT
}

// checkOutputs runs the model on a case's inputs and compares all three
// outputs with the reference.
func checkOutputs(t *testing.T, m *Model, caseName, label string) {
	t.Helper()
	io := reftest.Open(t, caseName)
	pixels, ids := io.Float32("pixel_values"), io.Int64("input_ids")
	img, err := m.EncodeImage(pixels)
	if err != nil {
		t.Fatal(err)
	}
	txt, err := m.EncodeText(ids)
	if err != nil {
		t.Fatal(err)
	}
	logits, img2, txt2, err := m.Logits(pixels, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		got  *tensors.Tensor
	}{{"image_embeds", img}, {"text_embeds", txt}, {"logits_per_image", logits}, {"image_embeds", img2}, {"text_embeds", txt2}} {
		d := reftest.MaxAbsDiff(c.got, io.Float32(c.name))
		t.Logf("%s %s: max abs diff %.3g", label, c.name, d)
		if d > reftest.Tolerance {
			t.Errorf("%s: %s differs from the PyTorch reference by %g (> %g)", label, c.name, d, reftest.Tolerance)
		}
	}
}

func TestReference(t *testing.T) {
	t.Logf("backend: %s", models.Backend().Description())
	for _, rc := range refCases {
		t.Run(rc.name, func(t *testing.T) {
			m, err := Load(filepath.Join(reftest.Dir(rc.name), rc.file))
			if err != nil {
				t.Fatal(err)
			}
			if !sameConfig(m.Config, rc.config) {
				t.Errorf("config %+v %+v %+v, want %+v %+v %+v", m.Config, *m.Config.Vision, *m.Config.Text, rc.config, *rc.config.Vision, *rc.config.Text)
			}
			checkOutputs(t, m, rc.name, rc.name)
		})
	}
}

// TestConvertReference converts each reference model to the other naming,
// checks the outputs, then saves and loads it in that naming.
func TestConvertReference(t *testing.T) {
	for _, rc := range refCases {
		t.Run(rc.name, func(t *testing.T) {
			m, err := Load(filepath.Join(reftest.Dir(rc.name), rc.file))
			if err != nil {
				t.Fatal(err)
			}
			other := OpenAI
			if rc.naming == OpenAI {
				other = HF
			}
			conv, err := m.Convert(other)
			if err != nil {
				t.Fatal(err)
			}
			checkOutputs(t, conv, rc.name, rc.name+"→"+other.String())
			dir := filepath.Join(t.TempDir(), "converted")
			if err := conv.Save(dir, checkpoint.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			back, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !sameConfig(back.Config, conv.Config) {
				t.Errorf("saved and loaded config %+v, want %+v", back.Config, conv.Config)
			}
			checkOutputs(t, back, rc.name, rc.name+"→"+other.String()+" saved")
			// And back to the original naming: the same tensors.
			round, err := back.Convert(rc.naming)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range m.Config.Specs() {
				if !slices.Equal(round.Weights.Float32(s.Name), m.Weights.Float32(s.Name)) {
					t.Fatalf("%s changed in the round trip through %s", s.Name, other)
				}
			}
		})
	}
}

// TestShapeInference loads the OpenAI reference weights without their
// open_clip_config.json: heads default to width/64 (here 1), which
// LoadWithConfig can correct.
func TestShapeInference(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(reftest.Dir("openai-clip"), "open_clip_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "ViT-tiny.safetensors")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ck, err := checkpoint.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	c, err := ReadConfig(ck)
	if err != nil {
		t.Fatal(err)
	}
	want := refCases[1].config
	wv, wt := *want.Vision, *want.Text
	wv.Heads, wt.Heads = 1, 1
	if !sameConfig(c, Config{Naming: OpenAI, Vision: &wv, Text: &wt, EmbedDim: 24}) {
		t.Fatalf("inferred %+v %+v %+v", c, *c.Vision, *c.Text)
	}
	// Heads matter: with the inferred single head the outputs are wrong.
	m1, err := LoadWithConfig(ck, c)
	if err != nil {
		t.Fatal(err)
	}
	txt1, err := m1.EncodeText(reftest.Open(t, "openai-clip").Int64("input_ids"))
	if err != nil {
		t.Fatal(err)
	}
	if d := reftest.MaxAbsDiff(txt1, reftest.Open(t, "openai-clip").Float32("text_embeds")); d < 1e-2 {
		t.Errorf("one head instead of four changes the text embeddings by only %g", d)
	}
	c.Vision.Heads, c.Text.Heads = 4, 4
	m, err := LoadWithConfig(ck, c)
	if err != nil {
		t.Fatal(err)
	}
	checkOutputs(t, m, "openai-clip", "openai-clip with heads set by hand")
}

// TestShortText encodes the reference rows cut after their end token:
// causal attention makes the result that of the padded rows.
func TestShortText(t *testing.T) {
	m, err := Load(reftest.Dir("hf-clip"))
	if err != nil {
		t.Fatal(err)
	}
	io := reftest.Open(t, "hf-clip")
	ids := tensors.MustCopyFlatData[int64](io.Int64("input_ids"))
	want := tensors.MustCopyFlatData[float32](io.Float32("text_embeds"))
	s, e := 16, 24
	var rows [][]int
	n := 0
	for r := 0; r < 2; r++ { // the first two rows end early
		row := ids[r*s : (r+1)*s]
		n = max(n, slices.Index(row, int64(slices.Max(row)))+1)
	}
	for r := 0; r < 2; r++ {
		var row []int
		for _, id := range ids[r*s : r*s+n] {
			row = append(row, int(id))
		}
		rows = append(rows, row)
	}
	short, err := TokenIDs(rows)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.EncodeText(short)
	if err != nil {
		t.Fatal(err)
	}
	d := reftest.MaxAbsDiff(got, tensors.FromFlatDataAndDimensions(want[:2*e], 2, e))
	t.Logf("text of %d tokens instead of %d: max abs diff %.3g", n, s, d)
	if d > reftest.Tolerance {
		t.Errorf("short rows differ by %g", d)
	}
	long := make([][]int, 1)
	long[0] = make([]int, 17)
	tooLong, _ := TokenIDs(long)
	if _, err := m.EncodeText(tooLong); err == nil || !strings.Contains(err.Error(), "seq ≤ 16") {
		t.Errorf("17 tokens for a context of 16: %v", err)
	}
}

func tinyConfig(n Naming) Config {
	return Config{Naming: n,
		Vision:   &VisionConfig{Tower: Tower{Width: 16, Layers: 1, Heads: 2, MLP: 32, Act: "quick_gelu", Eps: 1e-5}, ImageSize: 16, PatchSize: 8, Channels: 3},
		Text:     &TextConfig{Tower: Tower{Width: 8, Layers: 2, Heads: 2, MLP: 16, Act: "quick_gelu", Eps: 1e-5}, ContextLength: 6, VocabSize: 20},
		EmbedDim: 4}
}

func testInputs(c Config) (pixels, ids *tensors.Tensor) {
	if v := c.Vision; v != nil {
		data := make([]float32, 2*v.ImageSize*v.ImageSize*v.Channels)
		for i := range data {
			data[i] = float32(math.Cos(float64(i) * 0.11))
		}
		pixels = tensors.FromFlatDataAndDimensions(data, 2, v.ImageSize, v.ImageSize, v.Channels)
	}
	if t := c.Text; t != nil {
		v := t.VocabSize
		ids, _ = TokenIDs([][]int{{v - 2, 3, v - 1, 0, 0, 0}, {v - 2, 5, 7, 1, 2, v - 1}, {v - 2, v - 1, 0, 0, 0, 0}})
	}
	return pixels, ids
}

// TestNewRandomSaveLoad creates random models of every kind, writes them and
// loads them back through Load.
func TestNewRandomSaveLoad(t *testing.T) {
	visionOnly := func(n Naming, embed int) Config { c := tinyConfig(n); c.Text, c.EmbedDim = nil, embed; return c }
	textOnly := func(n Naming, embed int) Config { c := tinyConfig(n); c.Vision, c.EmbedDim = nil, embed; return c }
	inferable := tinyConfig(OpenAI)
	inferable.Vision.Heads, inferable.Text.Heads = 1, 1
	gelu := tinyConfig(OpenAI)
	gelu.Vision.Act, gelu.Text.Act = "gelu", "gelu"
	for _, tc := range []struct {
		name   string
		config Config
		out    string // "" for a folder
		err    string
	}{
		{name: "CLIPModel", config: tinyConfig(HF)},
		{name: "OpenAI folder", config: tinyConfig(OpenAI)},
		{name: "OpenAI exact GELU", config: gelu},
		{name: "OpenAI file, shapes suffice", config: inferable, out: "model.safetensors"},
		{name: "OpenAI file, heads unknowable", config: tinyConfig(OpenAI), out: "model.safetensors", err: "write to a folder"},
		{name: "HF file", config: tinyConfig(HF), out: "model.safetensors", err: "config.json"},
		{name: "CLIPVisionModelWithProjection", config: visionOnly(HF, 4)},
		{name: "CLIPVisionModel", config: visionOnly(HF, 0)},
		{name: "CLIPTextModelWithProjection", config: textOnly(HF, 4)},
		{name: "OpenAI vision tower only", config: visionOnly(OpenAI, 4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewRandom(tc.config, 7)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "out")
			if tc.out != "" {
				path = filepath.Join(path, tc.out)
			}
			err = m.Save(path, checkpoint.WriteOptions{})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			back, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if !sameConfig(back.Config, m.Config) {
				t.Fatalf("config %+v, want %+v", back.Config, m.Config)
			}
			pixels, ids := testInputs(m.Config)
			for _, mm := range []*Model{m, back} {
				if mm.Config.Vision != nil {
					img, err := mm.EncodeImage(pixels)
					if err != nil {
						t.Fatal(err)
					}
					if want := []int{2, max(mm.Config.EmbedDim, mm.Config.Vision.Width)}; mm.Config.EmbedDim > 0 && !slices.Equal(img.Shape().Dimensions, []int{2, mm.Config.EmbedDim}) ||
						mm.Config.EmbedDim == 0 && !slices.Equal(img.Shape().Dimensions, want) {
						t.Errorf("image embedding shape %v", img.Shape())
					}
				}
				if mm.Config.Text != nil {
					if _, err := mm.EncodeText(ids); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, s := range m.Config.Specs() {
				if !slices.Equal(back.Weights.Float32(s.Name), m.Weights.Float32(s.Name)) {
					t.Fatalf("%s changed in the round trip", s.Name)
				}
			}
		})
	}
}

// TestSameSeedBothNamings: one seed is one model, whatever the naming.
func TestSameSeedBothNamings(t *testing.T) {
	pixels, ids := testInputs(tinyConfig(HF))
	var logits [2]*tensors.Tensor
	for i, n := range []Naming{HF, OpenAI} {
		m, err := NewRandom(tinyConfig(n), 3)
		if err != nil {
			t.Fatal(err)
		}
		if logits[i], _, _, err = m.Logits(pixels, ids); err != nil {
			t.Fatal(err)
		}
	}
	if d := reftest.MaxAbsDiff(logits[0], logits[1]); d > 1e-5 {
		t.Errorf("HF and OpenAI namings of one seed differ by %g", d)
	}
	// logits_per_image of random towers: exp(ln(1/0.07)) = 1/0.07 times
	// cosines, so |logits| ≤ 14.3.
	for _, v := range tensors.MustCopyFlatData[float32](logits[0]) {
		if math.Abs(float64(v)) > 1/0.07+1e-3 {
			t.Fatalf("logit %g exceeds exp(logit_scale)", v)
		}
	}
}

func TestReadConfigErrors(t *testing.T) {
	m, err := NewRandom(tinyConfig(HF), 1)
	if err != nil {
		t.Fatal(err)
	}
	oa, err := m.Convert(OpenAI)
	if err != nil {
		t.Fatal(err)
	}
	write := func(t *testing.T, mm *Model, files map[string]string) string {
		dir := filepath.Join(t.TempDir(), "m")
		side := map[string][]byte{}
		for k, v := range files {
			side[k] = []byte(v)
		}
		if err := mm.Weights.Save(dir, mm.Config.Specs(), side, checkpoint.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	mixed := models.Weights{}
	for k, v := range m.Weights {
		mixed[k] = v
	}
	mixed["visual.proj"] = oa.Weights["visual.proj"]
	mixedSpecs := append(m.Config.Specs(), models.Spec("visual.proj", 16, 4))
	for _, tc := range []struct {
		name string
		dir  func(t *testing.T) string
		err  string
	}{
		{"HF sizes disagree", func(t *testing.T) string {
			return write(t, m, map[string]string{"config.json": strings.Replace(string(m.Config.HFConfigJSON()), `"intermediate_size": 32`, `"intermediate_size": 64`, 1)})
		}, "disagrees with the weights"},
		{"HF without config.json: heads from widths", func(t *testing.T) string { return write(t, m, nil) }, ""},
		{"not CLIP", func(t *testing.T) string {
			dir := filepath.Join(t.TempDir(), "x")
			w := models.Weights{"foo.weight": m.Weights["logit_scale"]}
			if err := w.Save(dir, []checkpoint.TensorSpec{models.Spec("foo.weight")}, nil, checkpoint.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "not a CLIP checkpoint"},
		{"mixed namings", func(t *testing.T) string {
			dir := filepath.Join(t.TempDir(), "mixed")
			if err := mixed.Save(dir, mixedSpecs, nil, checkpoint.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "mixes"},
		{"open_clip layer scale", func(t *testing.T) string {
			return write(t, oa, map[string]string{"open_clip_config.json": `{"model_cfg":{"embed_dim":4,"vision_cfg":{"width":16,"ls_init_value":0.1}}}`})
		}, "ls_init_value"},
		{"open_clip width disagrees", func(t *testing.T) string {
			return write(t, oa, map[string]string{"open_clip_config.json": `{"model_cfg":{"embed_dim":4,"text_cfg":{"width":32}}}`})
		}, "width"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.dir(t))
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.err)
			}
		})
	}
}

func TestTokenIDs(t *testing.T) {
	for _, tc := range []struct {
		name string
		rows [][]int
		err  string
	}{
		{"ok", [][]int{{1, 2, 3}, {4, 5, 6}}, ""},
		{"ragged", [][]int{{1, 2, 3}, {4, 5}}, "pad the rows"},
		{"negative", [][]int{{1, -2}}, "out of range"},
		{"empty", nil, "no token ids"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, err := TokenIDs(tc.rows)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tensors.MustCopyFlatData[int32](ids); !slices.Equal(got, []int32{1, 2, 3, 4, 5, 6}) || !slices.Equal(ids.Shape().Dimensions, []int{2, 3}) {
				t.Errorf("got %v %v", got, ids.Shape())
			}
		})
	}
}

// TestContextGradient differentiates the CLIP logits with respect to every
// weight, bound as context variables, on the default backend: embedding
// lookups, end-token pooling, the causal mask and the fused in_proj must all
// have gradients there. ∂Σlogits/∂logit_scale = Σlogits checks one exactly.
func TestContextGradient(t *testing.T) {
	m, err := NewRandom(tinyConfig(OpenAI), 5)
	if err != nil {
		t.Fatal(err)
	}
	c, specs := m.Config, m.Config.Specs()
	ctx := context.New()
	if err := m.Weights.ToContext(ctx); err != nil {
		t.Fatal(err)
	}
	exec, err := context.NewExec(models.Backend(), ctx, func(ctx *context.Context, pixels, ids *graph.Node) []*graph.Node {
		p := models.ContextParams(ctx, pixels.Graph(), specs)
		logits := Logits(c, p, EncodeImage(c, p, pixels), EncodeText(c, p, ids))
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
	pixels, ids := testInputs(c)
	outs, err := exec.Exec(pixels, ids)
	if err != nil {
		t.Fatal(err)
	}
	want, _, _, err := m.Logits(pixels, ids)
	if err != nil {
		t.Fatal(err)
	}
	if d := reftest.MaxAbsDiff(outs[0], want); d > 1e-5 {
		t.Errorf("context-bound logits differ by %g", d)
	}
	sum := 0.0
	for _, v := range tensors.MustCopyFlatData[float32](outs[0]) {
		sum += float64(v)
	}
	for i, s := range specs {
		g := tensors.MustCopyFlatData[float32](outs[1+i])
		if s.Name == "logit_scale" && math.Abs(float64(g[0])-sum) > 1e-4 {
			t.Errorf("∂Σlogits/∂logit_scale = %g, want Σlogits = %g", g[0], sum)
		}
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
