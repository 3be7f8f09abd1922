package merge

import (
	"reflect"
	"strings"
	"testing"
)

func yamlF64(v float64) *float64 { return &v }
func yamlBoolPtr(v bool) *bool   { return &v }

func TestParseMergekitYAMLValid(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		base   string
		models []string
		dtype  string
		check  func(t *testing.T, c Config)
	}{
		{
			name: "linear without base",
			yaml: `
merge_method: linear
models:
  - model: a
    parameters: {weight: 0.7}
  - model: b
    parameters: {weight: 0.3}
dtype: bfloat16
`,
			base: "a", models: []string{"a", "b"}, dtype: "bfloat16",
			check: func(t *testing.T, c Config) {
				yamlWant(t, c.Weights, []float64{0.7, 0.3})
			},
		},
		{
			name: "linear with listed base and normalize",
			yaml: `
merge_method: linear
base_model: b
models:
  - model: a
    parameters: {weight: 1}
  - model: b
    parameters: {weight: 2}
parameters: {normalize: false}
`,
			base: "b", models: []string{"a", "b"},
			check: func(t *testing.T, c Config) {
				yamlWant(t, c.Weights, []float64{1, 2})
				yamlWant(t, c.Normalize, yamlBoolPtr(false))
			},
		},
		{
			name: "task arithmetic with top-level weight and lambda, base entry dropped",
			yaml: `
merge_method: task_arithmetic
base_model: base
models:
  - model: base
  - model: ft1
  - model: ft2
    parameters:
      weight: 0.5
parameters:
  weight: 1.0
  lambda: 0.4
out_dtype: float32
dtype: bfloat16
`,
			base: "base", models: []string{"ft1", "ft2"}, dtype: "float32",
			check: func(t *testing.T, c Config) {
				yamlWant(t, c.Weights, []float64{1, 0.5})
				yamlWant(t, c.Lambda, yamlF64(0.4))
				yamlWant(t, c.Semantics, Mergekit)
			},
		},
		{
			name: "ties with per-model density and model scope",
			yaml: `
merge_method: ties
base_model: base
tokenizer_source: base
models:
  - model: ft1
    parameters: {weight: 1, density: 0.5}
  - model: ft2
    parameters: {weight: 1}
parameters:
  density: 0.3
  normalize: true
  rescale: false
  ties_scope: model
`,
			base: "base", models: []string{"ft1", "ft2"},
			check: func(t *testing.T, c Config) {
				yamlWant(t, c.Density, []float64{0.5, 0.3})
				yamlWant(t, c.TIESScope, ScopeModel)
				yamlWant(t, c.Normalize, yamlBoolPtr(true))
				yamlWant(t, c.Rescale, yamlBoolPtr(false))
			},
		},
		{
			name: "ties density defaults to mergekit's 1 for models without one",
			yaml: `
merge_method: ties
base_model: base
models:
  - model: ft1
    parameters: {weight: 1, density: 0.5}
  - model: ft2
    parameters: {weight: 1}
`,
			base: "base", models: []string{"ft1", "ft2"},
			check: func(t *testing.T, c Config) {
				yamlWant(t, c.Density, []float64{0.5, 1})
			},
		},
		{
			name: "dare_ties with seed",
			yaml: `
merge_method: dare_ties
base_model: base
models:
  - {model: ft1, parameters: {weight: 0.5, density: 0.7}}
  - {model: ft2, parameters: {weight: 0.5, density: 0.7}}
parameters: {seed: 42, rescale: true}
`,
			base: "base", models: []string{"ft1", "ft2"},
			check: func(t *testing.T, c Config) {
				yamlWant(t, c.Seed, uint64(42))
				yamlWant(t, c.Density, []float64{0.7, 0.7})
			},
		},
		{
			name: "dare_linear",
			yaml: `
merge_method: dare_linear
base_model: base
models:
  - {model: ft1, parameters: {weight: 1, density: 0.9}}
`,
			base: "base", models: []string{"ft1"},
		},
		{
			name: "breadcrumbs with one gamma given per model",
			yaml: `
merge_method: breadcrumbs
base_model: base
models:
  - {model: ft1, parameters: {weight: 1, density: 0.9, gamma: 0.05}}
  - {model: ft2, parameters: {weight: 1, density: 0.9, gamma: 0.05}}
`,
			base: "base", models: []string{"ft1", "ft2"},
			check: func(t *testing.T, c Config) {
				yamlWant(t, c.Gamma, yamlF64(0.05))
			},
		},
		{
			name: "breadcrumbs_ties",
			yaml: `
merge_method: breadcrumbs_ties
base_model: base
models:
  - {model: ft1, parameters: {weight: 1}}
  - {model: ft2, parameters: {weight: 1}}
parameters: {density: 0.8, gamma: 0.01, lambda: 0.9}
`,
			base: "base", models: []string{"ft1", "ft2"},
		},
		{
			name: "consensus extension, weights optional",
			yaml: `
merge_method: consensus
base_model: base
models:
  - {model: ft1, parameters: {tall_lambda: 0.3}}
  - model: ft2
parameters: {k: 2, lambda: 0.8, consensus_base: ties}
`,
			base: "base", models: []string{"ft1", "ft2"},
			check: func(t *testing.T, c Config) {
				yamlWant(t, c.K, 2)
				yamlWant(t, c.TallLambda, []float64{0.3, 0.4})
				yamlWant(t, c.ConsensusBase, "ties")
				if c.Weights != nil {
					t.Errorf("Weights = %v, want nil", c.Weights)
				}
			},
		},
		{
			name: "model_stock",
			yaml: `
merge_method: model_stock
base_model: base
models:
  - model: base
  - model: ft1
  - model: ft2
parameters: {filter_wise: true}
`,
			base: "base", models: []string{"ft1", "ft2"},
			check: func(t *testing.T, c Config) {
				yamlWant(t, c.FilterWise, true)
			},
		},
		{
			name: "slerp",
			yaml: `
merge_method: slerp
base_model: base
models:
  - model: base
  - model: other
parameters:
  t: 0.25
dtype: float16
`,
			base: "base", models: []string{"other"}, dtype: "float16",
			check: func(t *testing.T, c Config) {
				yamlWant(t, c.T, yamlF64(0.25))
			},
		},
		{
			name: "slerp with unlisted base",
			yaml: `
merge_method: slerp
base_model: base
models: [{model: other}]
parameters: {t: 1}
`,
			base: "base", models: []string{"other"},
		},
		{
			name: "anchors and aliases",
			yaml: `
merge_method: task_arithmetic
base_model: base
models:
  - {model: ft1, parameters: &p {weight: 0.5}}
  - {model: ft2, parameters: *p}
`,
			base: "base", models: []string{"ft1", "ft2"},
			check: func(t *testing.T, c Config) {
				yamlWant(t, c.Weights, []float64{0.5, 0.5})
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := ParseMergekitYAML([]byte(tc.yaml), "config.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if plan.Base != tc.base {
				t.Errorf("Base = %q, want %q", plan.Base, tc.base)
			}
			yamlWant(t, plan.Models, tc.models)
			if plan.DType != tc.dtype {
				t.Errorf("DType = %q, want %q", plan.DType, tc.dtype)
			}
			if plan.Config.Semantics != Mergekit {
				t.Errorf("Semantics = %v, want Mergekit", plan.Config.Semantics)
			}
			if string(plan.Raw) != tc.yaml {
				t.Error("Raw is not the file's content")
			}
			if tc.check != nil {
				tc.check(t, plan.Config)
			}
			// The plan must validate, and parsing must not have filled in
			// defaults (Run does that).
			c := plan.Config
			if err := c.Validate(len(plan.Models)); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func yamlWant[T any](t *testing.T, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", yamlShow(got), yamlShow(want))
	}
}

func yamlShow(v any) any {
	switch p := v.(type) {
	case *float64:
		if p != nil {
			return *p
		}
	case *bool:
		if p != nil {
			return *p
		}
	}
	return v
}

func TestParseMergekitYAMLRejects(t *testing.T) {
	const head = "base_model: base\nmodels:\n  - {model: ft1, parameters: {weight: 1}}\n  - {model: ft2, parameters: {weight: 1}}\n"
	tests := []struct {
		name string
		yaml string
		errs []string // substrings the error must contain
	}{
		{"invalid yaml", "merge_method: [", []string{"config.yaml", "invalid YAML"}},
		{"empty", "", []string{"config.yaml", "empty"}},
		{"not a mapping", "- a\n- b\n", []string{"config.yaml:1", "mapping"}},
		{"missing method", head, []string{"merge_method is missing"}},
		{"unknown method", "merge_method: della\n" + head, []string{"config.yaml:1", `unknown merge_method "della"`, "task_arithmetic", "slerp", "consensus"}},
		{"slices", "merge_method: linear\nslices:\n  - sources: []\n", []string{`"slices"`, "config.yaml:2"}},
		{"modules", "merge_method: linear\nmodules: {}\n" + head, []string{`"modules"`}},
		{"chat_template", "merge_method: ties\nchat_template: chatml\n" + head, []string{`"chat_template"`}},
		{"tokenizer", "merge_method: ties\ntokenizer: {source: union}\n" + head, []string{`"tokenizer"`}},
		{"unknown top-level key", "merge_method: ties\nfoo: 1\n" + head, []string{`unknown key "foo"`}},
		{"duplicate key", "merge_method: ties\nmerge_method: linear\n" + head, []string{`"merge_method" given twice`}},
		{"tokenizer_source union", "merge_method: ties\ntokenizer_source: union\n" + head, []string{`tokenizer_source "union"`}},
		{"int8_mask", "merge_method: ties\nparameters: {int8_mask: true}\n" + head, []string{`"int8_mask"`, "not supported"}},
		{"epsilon", "merge_method: ties\nparameters: {epsilon: 0.1}\n" + head, []string{`"epsilon"`, "della"}},
		{"unknown parameter", "merge_method: ties\nparameters: {densty: 0.5}\n" + head, []string{`unknown parameter "densty"`}},
		{"gradient", "merge_method: slerp\nbase_model: base\nmodels: [{model: base}, {model: b}]\nparameters:\n  t: [0, 0.5, 1]\n",
			[]string{"config.yaml:5", `parameter "t" given as a list (a layer gradient); editkit supports scalar parameters only`}},
		{"conditional list", "merge_method: slerp\nbase_model: base\nmodels: [{model: base}, {model: b}]\nparameters:\n  t:\n    - filter: self_attn\n      value: 0.3\n    - value: 0.5\n",
			[]string{`parameter "t"`, "{filter, value}"}},
		{"conditional mapping", "merge_method: slerp\nbase_model: base\nmodels: [{model: base}, {model: b}]\nparameters:\n  t: {filter: mlp, value: 0.3}\n",
			[]string{`parameter "t"`, "condition"}},
		{"per-model gradient", "merge_method: ties\nbase_model: base\nmodels:\n  - {model: ft1, parameters: {weight: [1, 0]}}\n",
			[]string{`model "ft1"`, `parameter "weight" given as a list`}},
		{"per-model lambda", "merge_method: ties\nbase_model: base\nmodels:\n  - {model: ft1, parameters: {weight: 1, lambda: 2}}\n",
			[]string{`model "ft1"`, `"lambda"`, "method parameter", "ignores per model"}},
		{"per-model t", "merge_method: slerp\nbase_model: base\nmodels:\n  - {model: base}\n  - {model: b, parameters: {t: 0.5}}\n",
			[]string{`"t"`, "method parameter"}},
		{"parameter for another method", "merge_method: task_arithmetic\nparameters: {density: 0.5}\n" + head, []string{`"density" does not apply to task_arithmetic`}},
		{"gamma for ties", "merge_method: ties\nparameters: {gamma: 0.1}\n" + head, []string{`"gamma" does not apply to ties`}},
		{"seed for ties", "merge_method: ties\nparameters: {seed: 1}\n" + head, []string{`"seed" does not apply`}},
		{"ties_scope for linear", "merge_method: linear\nparameters: {ties_scope: model}\nmodels: [{model: a, parameters: {weight: 1}}]\n", []string{`"ties_scope" does not apply to linear`}},
		{"missing weight", "merge_method: ties\nbase_model: base\nmodels:\n  - {model: ft1, parameters: {weight: 1}}\n  - {model: ft2}\n",
			[]string{`model "ft2" has no weight`, "config.yaml:5"}},
		{"missing weight linear", "merge_method: linear\nmodels:\n  - {model: a}\n", []string{`model "a" has no weight`}},
		{"gta without base", "merge_method: ties\nmodels:\n  - {model: ft1, parameters: {weight: 1}}\n", []string{"ties needs a base_model"}},
		{"gta only base", "merge_method: task_arithmetic\nbase_model: base\nmodels:\n  - {model: base, parameters: {weight: 1}}\n", []string{"no models besides base_model"}},
		{"linear unlisted base", "merge_method: linear\nbase_model: base\nmodels:\n  - {model: a, parameters: {weight: 1}}\n", []string{`base_model "base" is not listed`}},
		{"slerp three models", "merge_method: slerp\nbase_model: base\nmodels: [{model: base}, {model: a}, {model: b}]\nparameters: {t: 0.5}\n", []string{"exactly two models"}},
		{"slerp without base", "merge_method: slerp\nmodels: [{model: a}, {model: b}]\nparameters: {t: 0.5}\n", []string{"slerp needs a base_model"}},
		{"slerp without t", "merge_method: slerp\nbase_model: base\nmodels: [{model: base}, {model: a}]\n", []string{"config.yaml", "slerp needs --t"}},
		{"model_stock one model", "merge_method: model_stock\nbase_model: base\nmodels: [{model: base}, {model: a}]\n", []string{"at least 2 other models"}},
		{"model_stock weight", "merge_method: model_stock\nbase_model: base\nmodels: [{model: a, parameters: {weight: 1}}, {model: b}]\n", []string{`"weight" does not apply to model_stock`}},
		{"density out of range", "merge_method: ties\nparameters: {density: 1.5}\n" + head, []string{"config.yaml", "density 1.5"}},
		{"weight not a number", "merge_method: ties\nbase_model: base\nmodels:\n  - {model: ft1, parameters: {weight: heavy}}\n", []string{`parameter "weight" must be a number`}},
		{"normalize not a bool", "merge_method: ties\nparameters: {normalize: 1}\n" + head, []string{`"normalize" must be true or false`}},
		{"seed negative", "merge_method: dare_ties\nparameters: {seed: -1}\n" + head, []string{`"seed" must be a non-negative integer`}},
		{"ties_scope bad", "merge_method: ties\nparameters: {ties_scope: layer}\n" + head, []string{"config.yaml", `"layer"`}},
		{"gamma differs", "merge_method: breadcrumbs\nbase_model: base\nmodels:\n  - {model: a, parameters: {weight: 1, gamma: 0.1}}\n  - {model: b, parameters: {weight: 1}}\n", []string{"gamma differs", "one gamma"}},
		{"model twice", "merge_method: ties\nbase_model: base\nmodels:\n  - {model: a, parameters: {weight: 1}}\n  - {model: a, parameters: {weight: 1}}\n", []string{`model "a" is listed twice`}},
		{"model entry key", "merge_method: ties\nbase_model: base\nmodels:\n  - {model: a, layer_range: [0, 4], parameters: {weight: 1}}\n", []string{`unknown key "layer_range"`}},
		{"model entry without model", "merge_method: ties\nbase_model: base\nmodels:\n  - {parameters: {weight: 1}}\n", []string{"without a model path"}},
		{"models empty", "merge_method: ties\nbase_model: base\nmodels: []\n", []string{"models is empty"}},
		{"models missing", "merge_method: ties\nbase_model: base\n", []string{"models is missing"}},
		{"bad dtype", "merge_method: ties\ndtype: int8\n" + head, []string{"config.yaml:2", `"int8"`}},
		{"k zero", "merge_method: consensus\nparameters: {k: 0}\n" + head, []string{"k: 0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMergekitYAML([]byte(tc.yaml), "config.yaml")
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), "config.yaml") {
				t.Errorf("error %q does not start with the file name", err)
			}
			for _, s := range tc.errs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

// TestParseMergekitYAMLLeavesDefaults checks that parsing validates a copy:
// the plan's Config still has its zero values for Run to resolve.
func TestParseMergekitYAMLLeavesDefaults(t *testing.T) {
	plan, err := ParseMergekitYAML([]byte("merge_method: ties\nbase_model: b\nmodels: [{model: a, parameters: {weight: 1}}]\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := plan.Config
	if c.Density != nil || c.Lambda != nil || c.Normalize != nil || c.TIESScope != "" || c.Gamma != nil {
		t.Errorf("parsing filled in defaults: %+v", c)
	}
}
