package merge

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

// This file runs mergekit's six example configurations (testdata/mergekit,
// unchanged) against tiny generated LLaMA-style checkpoints at the paths
// they name, and compares every output tensor with an independent float64
// implementation of mergekit's definitions written here from mergekit's
// source (config.py evaluate_setting, plan.py, merge_methods/*.py), sharing
// no code with the merge package: the configuration is read with a plain
// YAML decode, gradients, filters, slices, TIES, SLERP, passthrough and
// Arcee Fusion are computed from scratch.

// llama is a generated checkpoint: float64 values (on a 1/256 grid, so
// float16 and bfloat16 hold them exactly) by tensor name.
type llama struct {
	layers, hidden, inter, vocab int
	names                        []string
	shapes                       map[string][]int64
	vals                         map[string][]float64
}

func llamaNames(layers int) []string {
	names := []string{"model.embed_tokens.weight"}
	for i := range layers {
		for _, s := range []string{"input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
			"post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"} {
			names = append(names, fmt.Sprintf("model.layers.%d.%s.weight", i, s))
		}
	}
	return append(names, "model.norm.weight", "lm_head.weight")
}

func newLlama(layers int, seed uint64) *llama {
	m := &llama{layers: layers, hidden: 16, inter: 24, vocab: 20, shapes: map[string][]int64{}, vals: map[string][]float64{}}
	r := rand.New(rand.NewPCG(seed, 7))
	for _, n := range llamaNames(layers) {
		var shape []int64
		switch {
		case strings.Contains(n, "norm"):
			shape = []int64{int64(m.hidden)}
		case strings.Contains(n, "embed") || strings.Contains(n, "lm_head"):
			shape = []int64{int64(m.vocab), int64(m.hidden)}
		case strings.Contains(n, "gate") || strings.Contains(n, "up_proj"):
			shape = []int64{int64(m.inter), int64(m.hidden)}
		case strings.Contains(n, "down"):
			shape = []int64{int64(m.hidden), int64(m.inter)}
		default:
			shape = []int64{int64(m.hidden), int64(m.hidden)}
		}
		m.names = append(m.names, n)
		m.shapes[n] = shape
		v := make([]float64, shape[0]*max(1, shapeTail(shape)))
		for i := range v {
			v[i] = float64(r.IntN(401)-200) / 256
		}
		m.vals[n] = v
	}
	return m
}

func shapeTail(s []int64) int64 {
	if len(s) < 2 {
		return 1
	}
	return s[1]
}

// finetune returns m plus deltas on the same grid.
func (m *llama) finetune(seed uint64, scale int) *llama {
	f := &llama{layers: m.layers, hidden: m.hidden, inter: m.inter, vocab: m.vocab, names: m.names, shapes: m.shapes, vals: map[string][]float64{}}
	r := rand.New(rand.NewPCG(seed, 11))
	for _, n := range m.names {
		v := m.vals[n]
		w := make([]float64, len(v))
		for i, x := range v {
			w[i] = x + float64(r.IntN(2*scale+1)-scale)/256
		}
		f.vals[n] = w
	}
	return f
}

// write saves the model as float16 with a LLaMA config.json.
func (m *llama) write(t *testing.T, dir string, arch string) {
	t.Helper()
	var specs []checkpoint.TensorSpec
	for _, n := range m.names {
		specs = append(specs, checkpoint.TensorSpec{Name: n, DType: checkpoint.F16, Shape: m.shapes[n]})
	}
	w, err := checkpoint.Create(dir, specs, checkpoint.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range m.names {
		v := make([]float32, len(m.vals[n]))
		for i, x := range m.vals[n] {
			v[i] = float32(x)
		}
		if err := w.WriteFloat32(n, v); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`{"architectures": ["%sForCausalLM"], "model_type": %q, "hidden_size": %d, "intermediate_size": %d, "num_hidden_layers": %d, "vocab_size": %d, "rms_norm_eps": 1e-05, "torch_dtype": "float16"}`,
		arch, strings.ToLower(arch), m.hidden, m.inter, m.layers, m.vocab)
	if err := w.AddFile("config.json", []byte(cfg)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// exampleModels generates every model the six examples name.
func exampleModels() map[string]*llama {
	llama2 := newLlama(40, 1)
	mistral := newLlama(4, 2)
	a := newLlama(3, 3)
	return map[string]*llama{
		"TheBloke/Llama-2-13B-fp16":          llama2,
		"psmathur/orca_mini_v3_13b":          llama2.finetune(10, 12),
		"garage-bAInd/Platypus2-13B":         llama2.finetune(11, 12),
		"WizardLM/WizardLM-13B-V1.2":         llama2.finetune(12, 12),
		"WizardLM/WizardMath-13B-V1.0":       llama2.finetune(13, 12),
		"mistralai/Mistral-7B-v0.1":          mistral,
		"mistralai/Mistral-7B-Instruct-v0.2": mistral.finetune(20, 12),
		"BioMistral/BioMistral-7B":           mistral.finetune(21, 12),
		"model_a":                            a,
		"model_b":                            a.finetune(30, 60),
	}
}

func TestMergekitExamples(t *testing.T) {
	files, err := filepath.Glob("testdata/mergekit/*.yml")
	if err != nil || len(files) != 6 {
		t.Fatalf("want mergekit's six example configurations in testdata/mergekit, got %v (%v)", files, err)
	}
	configs := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		configs[filepath.Base(f)] = data
	}
	models := exampleModels()
	t.Chdir(t.TempDir())
	for path, m := range models {
		arch := "Llama"
		if strings.Contains(path, "istral") {
			arch = "Mistral"
		}
		m.write(t, path, arch)
	}
	for _, name := range sortedNames(configs) {
		t.Run(name, func(t *testing.T) { checkAgainstReference(t, name, configs[name], models) })
	}
	// More than the examples show: several slices with their own
	// parameters, sources and base position; an unlisted base with a
	// top-level weight; task arithmetic with a λ gradient.
	for _, tc := range []struct{ name, yaml string }{
		{"ties over two slices", `
merge_method: ties
base_model: TheBloke/Llama-2-13B-fp16
slices:
  - sources:
      - model: TheBloke/Llama-2-13B-fp16
        layer_range: [0, 20]
      - model: psmathur/orca_mini_v3_13b
        layer_range: [0, 20]
        parameters: {weight: 1, density: [1, 0.2]}
      - model: garage-bAInd/Platypus2-13B
        layer_range: [0, 20]
        parameters:
          weight:
            - filter: mlp
              value: 0.2
            - value: 0.8
    parameters: {density: 0.6}
  - sources:
      - model: garage-bAInd/Platypus2-13B
        layer_range: [20, 40]
        parameters: {weight: 0.4, density: 0.3}
      - model: TheBloke/Llama-2-13B-fp16
        layer_range: [20, 40]
      - model: WizardLM/WizardMath-13B-V1.0
        layer_range: [10, 30]
        parameters: {weight: 0.6}
    parameters: {density: 0.9}
parameters: {normalize: true}
dtype: float16
`},
		{"linear with an unlisted base", `
merge_method: linear
base_model: TheBloke/Llama-2-13B-fp16
models:
  - model: psmathur/orca_mini_v3_13b
    parameters: {weight: 2}
  - model: garage-bAInd/Platypus2-13B
parameters: {weight: 0.5}
dtype: float16
`},
		{"task arithmetic with a lambda gradient", `
merge_method: task_arithmetic
base_model: mistralai/Mistral-7B-v0.1
models:
  - model: mistralai/Mistral-7B-Instruct-v0.2
    parameters: {weight: 0.7}
  - model: BioMistral/BioMistral-7B
    parameters: {weight: [0.2, 1]}
parameters:
  lambda: [1.5, 0.5]
  normalize: true
dtype: float16
`},
	} {
		t.Run(tc.name, func(t *testing.T) { checkAgainstReference(t, tc.name, []byte(tc.yaml), models) })
	}
	// What only the checkpoints can tell.
	for _, tc := range []struct{ name, yaml, want string }{
		{"range past the layers", "merge_method: passthrough\nslices:\n  - sources: [{model: psmathur/orca_mini_v3_13b, layer_range: [30, 41]}]\n",
			`c.yaml:3: layer_range [30 41] of "psmathur/orca_mini_v3_13b" reaches past its 40 layers`},
		{"missing model", "merge_method: linear\nmodels: [{model: nowhere/model, parameters: {weight: 1}}]\n", `c.yaml: model "nowhere/model": checkpoint nowhere/model does not exist`},
		{"different architectures", "merge_method: linear\nmodels: [{model: model_a, parameters: {weight: 1}}, {model: mistralai/Mistral-7B-v0.1, parameters: {weight: 1}}]\n", "not the same architecture"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := ParseMergekitYAML([]byte(tc.yaml), "c.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if _, err = plan.Open("never"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to say %q", err, tc.want)
			}
		})
	}
}

// checkAgainstReference merges with the configuration and compares the
// output with the reference's.
func checkAgainstReference(t *testing.T, name string, data []byte, models map[string]*llama) {
	t.Helper()
	plan, err := ParseMergekitYAML(data, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Warnings) > 0 {
		t.Errorf("warnings: %q", plan.Warnings)
	}
	out := strings.NewReplacer(".yml", "", " ", "-").Replace(name) + "-out"
	prep, err := plan.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer prep.Close()
	wo := tasks.WriteOptions{DType: prep.OutDType, SideFiles: prep.SideFiles}
	wo.Inputs = prep.Inputs
	if _, err := Run(prep.Set, &prep.Config, out, wo, tasks.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	compareOutput(t, out, referenceMergekit(t, data, models))
}

// refOutput is the reference's expected output.
type refOutput struct {
	names  []string
	vals   map[string][]float64
	dtype  checkpoint.DType
	layers int // config.json's num_hidden_layers
	// unsure marks entries whose value depends on a comparison that float
	// rounding may tip (Arcee Fusion's threshold): either model's value is
	// accepted there.
	unsure map[string][]bool
	alt    map[string][]float64
	// mag is the magnitude of the operands of each entry's last rounding
	// (|θ_0| and |Δ| for θ_0 + Δ), which sets its float16 error; |want|
	// where not given.
	mag map[string][]float64
}

func compareOutput(t *testing.T, out string, want *refOutput) {
	t.Helper()
	c, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	for _, ti := range c.Tensors() {
		got = append(got, ti.Name)
		if ti.DType != want.dtype {
			t.Errorf("%s: dtype %s, want %s", ti.Name, ti.DType, want.dtype)
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want.names))) {
		t.Fatalf("output tensors %v,\nwant %v", got, want.names)
	}
	ulp := ulp16
	if want.dtype == checkpoint.BF16 {
		ulp = ulpBF16
	}
	bad := 0
	for _, n := range want.names {
		v, _, err := c.ReadFloat32(n, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range want.vals[n] {
			g := float64(v[i])
			m := math.Abs(w)
			if want.mag[n] != nil {
				m = math.Max(m, want.mag[n][i])
			}
			ok := math.Abs(g-w) <= 1.5*ulp(m)
			if !ok && want.unsure != nil && want.unsure[n][i] {
				ok = math.Abs(g-want.alt[n][i]) <= 1.5*ulp(want.alt[n][i])
			}
			if !ok {
				if bad < 5 {
					t.Errorf("%s[%d] = %v, want %v", n, i, g, w)
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d entries differ from the reference", bad)
	}
	raw, err := os.ReadFile(filepath.Join(out, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Layers int    `json:"num_hidden_layers"`
		DType  string `json:"torch_dtype"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Layers != want.layers {
		t.Errorf("config.json: num_hidden_layers %d, want %d", cfg.Layers, want.layers)
	}
	if wantDT := map[checkpoint.DType]string{checkpoint.F16: "float16", checkpoint.BF16: "bfloat16"}[want.dtype]; cfg.DType != wantDT {
		t.Errorf("config.json: torch_dtype %q, want %q", cfg.DType, wantDT)
	}
	// The output's layer structure is what LiNeS and inspect detect.
	l, err := checkpoint.NewLayout(got, "")
	if err != nil {
		t.Fatal(err)
	}
	if st := l.Stacks(); st["model.layers."] != want.layers {
		t.Errorf("layout of the output: %v, want %d layers", st, want.layers)
	}
}

// ulp16 is the spacing of float16 numbers at x (normal range, and the
// subnormal spacing below it).
func ulp16(x float64) float64 {
	if x == 0 {
		return math.Ldexp(1, -24)
	}
	_, e := math.Frexp(math.Abs(x))
	return math.Max(math.Ldexp(1, e-11), math.Ldexp(1, -24))
}

func ulpBF16(x float64) float64 {
	if x == 0 {
		return math.Ldexp(1, -133)
	}
	_, e := math.Frexp(math.Abs(x))
	return math.Ldexp(1, e-8)
}

// referenceMergekit computes the output of a configuration from mergekit's
// definitions, in float64.
func referenceMergekit(t *testing.T, data []byte, models map[string]*llama) *refOutput {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	method := cfg["merge_method"].(string)
	base, _ := cfg["base_model"].(string)
	top := asMap(cfg["parameters"])
	out := &refOutput{vals: map[string][]float64{}, dtype: checkpoint.F16}
	if d, _ := cfg["dtype"].(string); d == "bfloat16" {
		out.dtype = checkpoint.BF16
	}
	// mergekit turns models: into one slice of whole models, adding an
	// unlisted base_model.
	type source struct {
		model    string
		from, to int
		params   map[string]any
	}
	type slice struct {
		sources []source
		params  map[string]any
	}
	var slicesDef []slice
	if ms, ok := cfg["models"].([]any); ok {
		var s slice
		hasBase := false
		for _, e := range ms {
			em := e.(map[string]any)
			name := em["model"].(string)
			hasBase = hasBase || name == base
			s.sources = append(s.sources, source{model: name, from: 0, to: models[name].layers, params: asMap(em["parameters"])})
		}
		if base != "" && !hasBase {
			s.sources = append(s.sources, source{model: base, from: 0, to: models[base].layers})
		}
		slicesDef = append(slicesDef, s)
	} else {
		for _, e := range cfg["slices"].([]any) {
			em := e.(map[string]any)
			var s slice
			s.params = asMap(em["parameters"])
			for _, src := range em["sources"].([]any) {
				sm := src.(map[string]any)
				r := sm["layer_range"].([]any)
				s.sources = append(s.sources, source{model: sm["model"].(string), from: r[0].(int), to: r[1].(int), params: asMap(sm["parameters"])})
			}
			slicesDef = append(slicesDef, s)
		}
	}
	// param looks a parameter up as ConfigReader.parameter does.
	param := func(name string, s slice, src *source, tensor string, t float64) (float64, bool) {
		var levels []map[string]any
		if src != nil {
			levels = append(levels, src.params)
		}
		levels = append(levels, s.params, top)
		for _, l := range levels {
			if v, ok := l[name]; ok {
				if x, ok := refEval(v, tensor, t); ok {
					return x, true
				}
			}
		}
		return 0, false
	}
	// merge computes one output tensor from the slice's sources' tensors.
	mergeTensor := func(outName string, s slice, inNames []string, pos float64) []float64 {
		tensors := make([][]float64, len(s.sources))
		for i, src := range s.sources {
			tensors[i] = quantize(models[src.model].vals[inNames[i]], out.dtype)
		}
		switch method {
		case "linear":
			var ws []float64
			for i := range s.sources {
				w, _ := param("weight", s, &s.sources[i], inNames[i], pos)
				ws = append(ws, w)
			}
			return refLinear(tensors, ws)
		case "ties":
			var b []float64
			var taus [][]float64
			var ws, ds []float64
			for i, src := range s.sources {
				if src.model == base {
					b = tensors[i]
					continue
				}
				w, _ := param("weight", s, &s.sources[i], inNames[i], pos)
				d, ok := param("density", s, &s.sources[i], inNames[i], pos)
				if !ok {
					d = 1
				}
				ws, ds = append(ws, w), append(ds, d)
				taus = append(taus, tensors[i])
			}
			normalize := true
			if v, ok := top["normalize"].(bool); ok {
				normalize = v
			}
			res := refTIES(b, taus, ws, ds, normalize)
			if out.mag == nil {
				out.mag = map[string][]float64{}
			}
			mag := make([]float64, len(res))
			for i := range mag {
				mag[i] = math.Max(math.Abs(b[i]), math.Abs(res[i]-b[i]))
			}
			out.mag[outName] = mag
			return res
		case "task_arithmetic":
			var b []float64
			var acc []float64
			var sw float64
			for i, src := range s.sources {
				if src.model == base {
					b = tensors[i]
				}
			}
			acc = make([]float64, len(b))
			for i, src := range s.sources {
				if src.model == base {
					continue
				}
				w, _ := param("weight", s, &s.sources[i], inNames[i], pos)
				sw += w
				for k := range acc {
					acc[k] += w * (tensors[i][k] - b[k])
				}
			}
			lam, _ := param("lambda", s, nil, outName, pos)
			res := make([]float64, len(b))
			mag := make([]float64, len(b))
			for k := range res {
				d := acc[k]
				if top["normalize"] == true {
					d /= sw
				}
				res[k] = b[k] + lam*d
				mag[k] = math.Max(math.Abs(b[k]), math.Abs(d))
			}
			if out.mag == nil {
				out.mag = map[string][]float64{}
			}
			out.mag[outName] = mag
			return res
		case "slerp":
			tt, _ := param("t", s, nil, outName, pos)
			a, b := tensors[0], tensors[1]
			if s.sources[1].model == base {
				a, b = b, a
			}
			return refSLERP(tt, a, b)
		case "passthrough":
			return tensors[0]
		case "arcee_fusion":
			a, b := tensors[0], tensors[1]
			if s.sources[1].model == base {
				a, b = b, a
			}
			res, unsure, alt := refArceeFusion(a, b, models[base].shapes[outName])
			if out.unsure == nil {
				out.unsure, out.alt = map[string][]bool{}, map[string][]float64{}
			}
			out.unsure[outName], out.alt[outName] = unsure, alt
			return res
		}
		t.Fatalf("reference: no method %q", method)
		return nil
	}
	layerName := func(i int, rest string) string { return fmt.Sprintf("model.layers.%d.%s", i, rest) }
	layerParts := []string{"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
		"post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}
	add := func(name string, v []float64) {
		out.names = append(out.names, name)
		out.vals[name] = v
	}
	whole := func(s slice, name string) {
		in := make([]string, len(s.sources))
		for i := range in {
			in[i] = name
		}
		add(name, mergeTensor(name, s, in, 0))
	}
	// pre_weights from the first slice, layers, post_weights from the last.
	whole(slicesDef[0], "model.embed_tokens.weight")
	k := 0
	for _, s := range slicesDef {
		n := s.sources[0].to - s.sources[0].from
		for off := range n {
			t := 1.0
			if n > 1 {
				t = float64(off) / float64(n-1)
			}
			for _, rest := range layerParts {
				in := make([]string, len(s.sources))
				for i, src := range s.sources {
					in[i] = layerName(src.from+off, rest)
				}
				add(layerName(k, rest), mergeTensor(layerName(k, rest), s, in, t))
			}
			k++
		}
	}
	last := slicesDef[len(slicesDef)-1]
	whole(last, "model.norm.weight")
	whole(last, "lm_head.weight")
	out.layers = k
	return out
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	if m == nil {
		return map[string]any{}
	}
	return m
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// refEval is mergekit's evaluate_setting: a number; a list of numbers
// interpolated at t; a list of {filter, value} tried in order.
func refEval(v any, tensor string, t float64) (float64, bool) {
	if x, ok := toFloat(v); ok {
		return x, true
	}
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return 0, false
	}
	if _, isNum := toFloat(list[0]); isNum {
		pos := t * float64(len(list)-1)
		lo := int(math.Floor(pos))
		hi := lo + 1
		if hi > len(list)-1 {
			hi = len(list) - 1
		}
		a, _ := toFloat(list[lo])
		b, _ := toFloat(list[hi])
		return a + (pos-float64(lo))*(b-a), true
	}
	for _, c := range list {
		cm := c.(map[string]any)
		f, _ := cm["filter"].(string)
		if f == "" || f == "*" || strings.Contains(tensor, f) {
			return refEval(cm["value"], tensor, t)
		}
	}
	return 0, false
}

// quantize rounds to the configuration's dtype, as mergekit converts every
// input to it: to the nearest value with the dtype's significand bits (11
// for float16, 8 for bfloat16), ties to even. The fixtures' values are
// normal numbers, well inside both ranges.
func quantize(v []float64, dt checkpoint.DType) []float64 {
	bits := 11
	if dt == checkpoint.BF16 {
		bits = 8
	}
	out := make([]float64, len(v))
	for i, x := range v {
		if x == 0 {
			continue
		}
		frac, exp := math.Frexp(x) // x = frac · 2^exp, 0.5 ≤ |frac| < 1
		out[i] = math.Ldexp(math.RoundToEven(math.Ldexp(frac, bits)), exp-bits)
	}
	return out
}

func refLinear(tensors [][]float64, w []float64) []float64 {
	out := make([]float64, len(tensors[0]))
	var sw float64
	for _, x := range w {
		sw += x
	}
	for i := range out {
		for m, tv := range tensors {
			out[i] += w[m] * tv[i]
		}
		out[i] /= sw
	}
	return out
}

// refTIES is mergekit's ties: per model keep the int(density·n) largest
// |τ| (a stable descending sort), weight, elect the sign of Σ w τ (≥ 0 is
// +), sum the agreeing weighted entries and divide by their weights.
func refTIES(base []float64, models [][]float64, w, density []float64, normalize bool) []float64 {
	n := len(base)
	taus := make([][]float64, len(models))
	for m, x := range models {
		tau := make([]float64, n)
		for i := range tau {
			tau[i] = x[i] - base[i]
		}
		if density[m] < 1 {
			k := int(density[m] * float64(n))
			idx := make([]int, n)
			for i := range idx {
				idx[i] = i
			}
			sort.SliceStable(idx, func(a, b int) bool { return math.Abs(tau[idx[a]]) > math.Abs(tau[idx[b]]) })
			keep := make([]bool, n)
			for _, i := range idx[:k] {
				keep[i] = true
			}
			for i := range tau {
				if !keep[i] {
					tau[i] = 0
				}
			}
		}
		taus[m] = tau
	}
	out := make([]float64, n)
	for i := range out {
		var s float64
		for m := range taus {
			s += w[m] * taus[m][i]
		}
		var acc, div float64
		for m := range taus {
			u := w[m] * taus[m][i]
			if (s >= 0 && u > 0) || (s < 0 && u < 0) {
				acc += u
				div += w[m]
			}
		}
		if normalize {
			if div == 0 {
				div = 1
			}
			acc /= div
		}
		out[i] = base[i] + acc
	}
	return out
}

// refSLERP is mergekit's slerp: angle from the normalised vectors, lerp
// when nearly colinear.
func refSLERP(t float64, a, b []float64) []float64 {
	var na, nb, d float64
	for i := range a {
		na += a[i] * a[i]
		nb += b[i] * b[i]
	}
	na, nb = math.Sqrt(na), math.Sqrt(nb)
	for i := range a {
		d += (a[i] / na) * (b[i] / nb)
	}
	s0, s1 := 1-t, t
	if math.Abs(d) <= 0.9995 {
		th := math.Acos(d)
		s0 = math.Sin(th-th*t) / math.Sin(th)
		s1 = math.Sin(th*t) / math.Sin(th)
	}
	out := make([]float64, len(a))
	for i := range out {
		out[i] = s0*a[i] + s1*b[i]
	}
	return out
}

// refArceeFusion is mergekit's arcee_fusion; unsure marks entries whose
// importance lies within a relative 1e-9 of the threshold, alt holds the
// other outcome there.
func refArceeFusion(base, model []float64, shape []int64) (out []float64, unsure []bool, alt []float64) {
	cols := int(shape[len(shape)-1])
	imp := make([]float64, len(base))
	for r := 0; r < len(base); r += cols {
		sm := func(x []float64) []float64 {
			mx := math.Inf(-1)
			for _, v := range x {
				mx = math.Max(mx, v)
			}
			e := make([]float64, len(x))
			var s float64
			for i, v := range x {
				e[i] = math.Exp(v - mx)
				s += e[i]
			}
			for i := range e {
				e[i] /= s
			}
			return e
		}
		p, q := sm(model[r:r+cols]), sm(base[r:r+cols])
		var kl float64
		for i := range p {
			kl += (p[i] + 1e-8) * math.Log((p[i]+1e-8)/(q[i]+1e-8))
		}
		for i := r; i < r+cols; i++ {
			imp[i] = math.Abs(model[i]-base[i]) * kl
		}
	}
	sorted := slices.Clone(imp)
	sort.Float64s(sorted)
	q := func(f float64) float64 { return sorted[int(f*float64(len(sorted)-1))] }
	thr := q(0.5) + 1.5*(q(0.75)-q(0.25))
	out, alt, unsure = make([]float64, len(base)), make([]float64, len(base)), make([]bool, len(base))
	for i := range out {
		in, outv := model[i], base[i]
		if imp[i] < thr {
			in, outv = outv, in
		}
		out[i], alt[i] = in, outv
		unsure[i] = math.Abs(imp[i]-thr) <= 1e-9*math.Max(math.Abs(thr), 1e-300)
	}
	return out, unsure, alt
}

// TestSlicesWithoutConfigWarn: restacking layers of a checkpoint that has no
// config.json cannot record the output's layer count, and says so.
func TestSlicesWithoutConfigWarn(t *testing.T) {
	t.Chdir(t.TempDir())
	newLlama(3, 1).write(t, "a", "Llama")
	if err := os.Remove(filepath.Join("a", "config.json")); err != nil {
		t.Fatal(err)
	}
	plan, err := ParseMergekitYAML([]byte("merge_method: passthrough\nslices:\n  - sources: [{model: a, layer_range: [0, 2]}]\n"), "config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	prep, err := plan.Open("out")
	if err != nil {
		t.Fatal(err)
	}
	defer prep.Close()
	if len(prep.Warnings) != 1 || !strings.Contains(prep.Warnings[0], "a has no config.json") || !strings.Contains(prep.Warnings[0], "num_hidden_layers 2") {
		t.Errorf("warnings %q, want one naming the missing config.json and the 2 layers", prep.Warnings)
	}
	if _, ok := prep.SideFiles["config.json"]; ok {
		t.Error("a config.json was made up")
	}
}
