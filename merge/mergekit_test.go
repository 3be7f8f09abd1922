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
		name     string
		yaml     string
		base     string
		models   []string
		dtype    string
		paper    bool     // Semantics Paper, else Mergekit
		warnings []string // substrings, one per warning, in order
		check    func(t *testing.T, c Config)
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
			base: "", models: []string{"a", "b"}, dtype: "bfloat16",
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
			base: "base", models: []string{"ft1", "ft2"}, paper: true,
			warnings: []string{`config.yaml:12: parameter "normalize" has no effect on ties`, `config.yaml:13: parameter "rescale" has no effect`},
			check: func(t *testing.T, c Config) {
				yamlWant(t, c.Density, []float64{0.5, 0.3})
				yamlWant(t, c.TIESScope, ScopeModel)
				if c.Normalize != nil || c.Rescale != nil {
					t.Errorf("normalize %v, rescale %v: the paper's TIES has neither", c.Normalize, c.Rescale)
				}
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
				yamlWant(t, c.Gamma, []float64{0.05, 0.05})
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
			base: "base", models: []string{"ft1", "ft2"}, paper: true,
			check: func(t *testing.T, c Config) {
				yamlWant(t, *c.K, 2)
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
				yamlWant(t, c.FilterWise, yamlBoolPtr(true))
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
			yamlWant(t, planModels(plan), tc.models)
			if plan.OutDType != tc.dtype {
				t.Errorf("OutDType = %q, want %q", plan.OutDType, tc.dtype)
			}
			want := Mergekit
			if tc.paper {
				want = Paper
			}
			if plan.Config.Semantics != want {
				t.Errorf("Semantics = %v, want %v", plan.Config.Semantics, want)
			}
			if len(plan.Warnings) != len(tc.warnings) {
				t.Errorf("warnings %q, want %d", plan.Warnings, len(tc.warnings))
			}
			for i, w := range tc.warnings {
				if i < len(plan.Warnings) && !strings.Contains(plan.Warnings[i], w) {
					t.Errorf("warning %q does not say %q", plan.Warnings[i], w)
				}
			}
			if string(plan.Raw) != tc.yaml {
				t.Error("Raw is not the file's content")
			}
			if tc.check != nil {
				tc.check(t, plan.Config)
			}
			// The plan must resolve.
			if _, err := plan.Config.Resolve(len(planModels(plan))); err != nil {
				t.Errorf("Resolve: %v", err)
			}
		})
	}
}

// planModels lists the merge's members.
func planModels(plan *YAMLPlan) []string {
	var out []string
	for _, m := range plan.Members(0) {
		out = append(out, m.Model)
	}
	return out
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
		{"unknown method", "merge_method: frankenstein\n" + head, []string{"config.yaml:1", `unknown merge_method "frankenstein"`, "task_arithmetic", "della", "consensus"}},
		{"modules", "merge_method: linear\nmodules: {}\n" + head, []string{"config.yaml:2", "modules"}},
		{"multi-stage", "name: first\nmerge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}]\n---\nmerge_method: linear\nmodels: [{model: first, parameters: {weight: 1}}]\n",
			[]string{"2 YAML documents", "multi-stage (mergekit-multi)", "stages first", "editkit merge --config"}},
		{"chat_template name", "merge_method: ties\nchat_template: chatml\n" + head, []string{"config.yaml:2", `chat_template "chatml"`, "auto"}},
		{"tokenizer and tokenizer_source", "merge_method: ties\ntokenizer: {source: union}\ntokenizer_source: base\n" + head, []string{"config.yaml:2", "not both"}},
		{"duplicate key", "merge_method: ties\nmerge_method: linear\n" + head, []string{`"merge_method" given twice`}},
		{"lora", "merge_method: ties\nbase_model: base+adapter\nmodels: [{model: ft1, parameters: {weight: 1}}]\n", []string{"config.yaml:2", "LoRA"}},
		{"revision", "merge_method: ties\nbase_model: base@main\nmodels: [{model: ft1, parameters: {weight: 1}}]\n", []string{"config.yaml:2", "revision"}},
		{"conditional mapping", "merge_method: slerp\nbase_model: base\nmodels: [{model: base}, {model: b}]\nparameters:\n  t: {filter: mlp, value: 0.3}\n",
			[]string{"config.yaml:5", "t: a single {filter, value} mapping", "as a list"}},
		{"gradient of a bool", "merge_method: ties\nparameters: {normalize: [true, false]}\n" + head, []string{"config.yaml:2", "normalize takes one value"}},
		{"gradient of an integer", "merge_method: karcher\nparameters: {max_iter: [1, 5]}\nmodels: [{model: a}, {model: b}]\n", []string{"config.yaml:2", "max_iter takes one value"}},
		{"condition without value", "merge_method: slerp\nbase_model: base\nmodels: [{model: base}, {model: b}]\nparameters:\n  t:\n    - filter: mlp\n", []string{"config.yaml:6", "condition without a value"}},
		{"missing weight", "merge_method: ties\nbase_model: base\nmodels:\n  - {model: ft1, parameters: {weight: 1}}\n  - {model: ft2}\n",
			[]string{`model "ft2" has no weight`, "config.yaml:5"}},
		{"missing weight linear", "merge_method: linear\nmodels:\n  - {model: a}\n", []string{`model "a" has no weight`}},
		{"linear unlisted base without a weight", "merge_method: linear\nbase_model: base\nmodels:\n  - {model: a, parameters: {weight: 1}}\n", []string{`model "base" has no weight`}},
		{"gta without base", "merge_method: ties\nmodels:\n  - {model: ft1, parameters: {weight: 1}}\n", []string{"ties needs a base_model"}},
		{"gta only base", "merge_method: task_arithmetic\nbase_model: base\nmodels:\n  - {model: base, parameters: {weight: 1}}\n", []string{"no models besides base_model"}},
		{"slerp three models", "merge_method: slerp\nbase_model: base\nmodels: [{model: base}, {model: a}, {model: b}]\nparameters: {t: 0.5}\n", []string{"exactly one model"}},
		{"slerp without base", "merge_method: slerp\nmodels: [{model: a}, {model: b}]\nparameters: {t: 0.5}\n", []string{"slerp needs a base_model"}},
		{"slerp without t", "merge_method: slerp\nbase_model: base\nmodels: [{model: base}, {model: a}]\n", []string{"config.yaml", "t is required for slerp"}},
		{"model_stock one model", "merge_method: model_stock\nbase_model: base\nmodels: [{model: base}, {model: a}]\n", []string{"at least 2 models"}},
		{"density out of range", "merge_method: ties\nparameters: {density: 1.5}\n" + head, []string{"config.yaml:2", "density 1.5 is outside (0, 1]"}},
		{"lambda NaN", "merge_method: ties\nparameters: {lambda: .nan}\n" + head, []string{"config.yaml:2", "lambda NaN is not a finite number"}},
		{"weight NaN", "merge_method: ties\nbase_model: base\nmodels:\n  - {model: ft1, parameters: {weight: .nan}}\n", []string{"config.yaml:4", "weight NaN is not a finite number"}},
		{"weight Inf in a gradient", "merge_method: ties\nbase_model: base\nmodels:\n  - {model: ft1, parameters: {weight: [0, .inf]}}\n", []string{"config.yaml:4", "weight +Inf is not a finite number"}},
		{"t NaN in a condition", "merge_method: slerp\nbase_model: base\nmodels: [{model: base}, {model: b}]\nparameters:\n  t:\n    - filter: mlp\n      value: .nan\n    - value: 0.5\n", []string{"config.yaml:7", "t NaN is not a finite number"}},
		{"tall_lambda negative", "merge_method: consensus\nparameters: {tall_lambda: -1, lambda: 1}\n" + head, []string{"config.yaml:2", "tall_lambda -1 is outside ≥ 0"}},
		{"k above N", "merge_method: consensus\nparameters: {k: 3, lambda: 1}\n" + head, []string{"config.yaml:2", "k 3 must be ≤ N = 2"}},
		{"k zero", "merge_method: consensus\nparameters: {k: 0, lambda: 1}\n" + head, []string{"config.yaml:2", "k 0 is outside ≥ 1"}},
		{"weight not a number", "merge_method: ties\nbase_model: base\nmodels:\n  - {model: ft1, parameters: {weight: heavy}}\n", []string{"config.yaml:4", `weight must be a number, got "heavy"`}},
		{"weight quoted", "merge_method: ties\nbase_model: base\nmodels:\n  - {model: ft1, parameters: {weight: \"0.5\"}}\n", []string{"config.yaml:4", `weight must be a number, got "0.5" (a quoted string: write the number without quotes)`}},
		{"normalize not a bool", "merge_method: ties\nparameters: {normalize: 1}\n" + head, []string{`normalize must be true or false`}},
		{"seed negative", "merge_method: dare_ties\nparameters: {seed: -1}\n" + head, []string{`seed must be a non-negative whole number`}},
		{"ties_scope bad", "merge_method: ties\nparameters: {ties_scope: layer}\n" + head, []string{"config.yaml:2", `ties_scope layer is not one of model, tensor`}},
		{"della epsilon", "merge_method: della\nbase_model: base\nparameters: {density: 0.1, epsilon: 0.2}\nmodels: [{model: a, parameters: {weight: 1}}]\n", []string{"epsilon 0.2 (model 1) with density 0.1"}},
		{"model twice", "merge_method: ties\nbase_model: base\nmodels:\n  - {model: a, parameters: {weight: 1}}\n  - {model: a, parameters: {weight: 1}}\n", []string{`model "a" is listed twice`}},
		{"model entry without model", "merge_method: ties\nbase_model: base\nmodels:\n  - {parameters: {weight: 1}}\n", []string{"without a model path"}},
		{"models empty", "merge_method: ties\nbase_model: base\nmodels: []\n", []string{"models is empty"}},
		{"models missing", "merge_method: ties\nbase_model: base\n", []string{"models is missing"}},
		{"models and slices", "merge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}]\nslices: [{sources: [{model: a, layer_range: [0, 1]}]}]\n", []string{"config.yaml:3", "not both"}},
		{"slice without layer_range", "merge_method: passthrough\nslices:\n  - sources:\n      - model: a\n", []string{"config.yaml:4", `source "a" has no layer_range`}},
		{"slice with uneven ranges", "merge_method: slerp\nbase_model: a\nparameters: {t: 0.5}\nslices:\n  - sources:\n      - {model: a, layer_range: [0, 4]}\n      - {model: b, layer_range: [0, 3]}\n", []string{"config.yaml:7", "spans 3 layers where the slice's first source spans 4"}},
		{"empty layer_range", "merge_method: passthrough\nslices:\n  - sources:\n      - {model: a, layer_range: [4, 4]}\n", []string{"config.yaml:4", "is empty"}},
		{"passthrough with two sources", "merge_method: passthrough\nslices:\n  - sources:\n      - {model: a, layer_range: [0, 2]}\n      - {model: b, layer_range: [0, 2]}\n", []string{"passthrough merges exactly 1 models, got 2"}},
		{"slice lacking the base", "merge_method: ties\nbase_model: base\nslices:\n  - sources:\n      - {model: a, layer_range: [0, 2], parameters: {weight: 1}}\n", []string{"config.yaml:4", `base_model "base" is not among the sources`}},
		{"gradient with ties_scope model", "merge_method: ties\nparameters: {ties_scope: model, density: [0.1, 0.5]}\n" + head, []string{"config.yaml:2", "density varies by tensor", "ties_scope: model takes one value per model"}},
		{"filter with consensus", "merge_method: consensus\nparameters:\n  lambda: 1\n  tall_lambda:\n    - filter: mlp\n      value: 0.2\n    - value: 0.4\n" + head, []string{"config.yaml:4", "tall_lambda varies by tensor"}},
		{"bad dtype", "merge_method: ties\ndtype: int8\n" + head, []string{"config.yaml:2", `"int8"`}},
		{"bad pad", "merge_method: ties\ntokenizer: {source: union, pad_to_multiple_of: 0}\n" + head, []string{"config.yaml:2", "pad_to_multiple_of"}},
		// Every problem at once.
		{"several problems", "merge_method: ties\nbase_model: base\nparameters: {lambda: .nan, density: 2}\nmodules: {}\nmodels:\n  - {model: ft1, parameters: {weight: .inf}}\n",
			[]string{"config.yaml:3: lambda NaN", "config.yaml:3: density 2", "config.yaml:4: per-module", "config.yaml:6: weight +Inf"}},
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

func TestParseMergekitYAMLWarnsAsMergekitIgnores(t *testing.T) {
	const head = "base_model: base\nmodels:\n  - {model: ft1, parameters: {weight: 1}}\n  - {model: ft2, parameters: {weight: 1}}\n"
	tests := []struct {
		name, yaml string
		warnings   []string
	}{
		{"unknown top-level key", "merge_method: ties\nfoo: 1\n" + head, []string{`config.yaml:2: unknown key "foo" ignored`}},
		{"name of a stage", "name: stage1\nmerge_method: ties\n" + head, []string{`config.yaml:1: name: "stage1"`}},
		{"unknown parameter", "merge_method: ties\nparameters: {densty: 0.5}\n" + head, []string{`config.yaml:2: unknown parameter "densty" ignored`}},
		{"parameter for another method", "merge_method: ties\nparameters: {gamma: 0.1, seed: 3}\n" + head,
			[]string{`config.yaml:2: parameter "gamma" has no effect on ties`, `config.yaml:2: parameter "seed" has no effect on ties`}},
		{"density with task_arithmetic", "merge_method: task_arithmetic\nparameters: {density: 0.5}\n" + head, []string{`parameter "density" has no effect on task_arithmetic (mergekit declares it`}},
		{"method parameter per model", "merge_method: ties\nbase_model: base\nmodels:\n  - {model: ft1, parameters: {weight: 1, lambda: 2}}\n",
			[]string{`config.yaml:4: model "ft1": parameter "lambda" is a method parameter`}},
		{"layer_range in models", "merge_method: ties\nbase_model: base\nmodels:\n  - {model: a, layer_range: [0, 4], parameters: {weight: 1}}\n", []string{"config.yaml:4: layer_range in a models entry ignored"}},
		{"int8_mask is quiet", "merge_method: ties\nparameters: {int8_mask: true}\n" + head, nil},
		{"empty parameters", "merge_method: ties\nbase_model: base\nparameters:\nmodels:\n  - model: ft1\n    parameters:\n      weight: 1\n  - model: base\n    parameters:\n", nil},
		{"residual_weight", "merge_method: passthrough\nslices:\n  - sources: [{model: a, layer_range: [0, 1]}]\n    residual_weight: 0.5\n", []string{"config.yaml:4: residual_weight has no effect"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := ParseMergekitYAML([]byte(tc.yaml), "config.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Warnings) != len(tc.warnings) {
				t.Fatalf("warnings %q, want %d", plan.Warnings, len(tc.warnings))
			}
			for i, w := range tc.warnings {
				if !strings.Contains(plan.Warnings[i], w) {
					t.Errorf("warning %q does not say %q", plan.Warnings[i], w)
				}
			}
		})
	}
}

// TestParseMergekitYAMLLeavesDefaults checks that parsing leaves defaults
// unset: Resolve fills them in, in Run.
func TestParseMergekitYAMLLeavesDefaults(t *testing.T) {
	plan, err := ParseMergekitYAML([]byte("merge_method: ties\nbase_model: b\nmodels: [{model: a, parameters: {weight: 1}}]\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := plan.Config
	if c.Density != nil || c.Lambda != nil || c.Normalize != nil || c.TIESScope != "" || c.Gamma != nil {
		t.Errorf("parsing filled in defaults: %+v", c)
	}
	r, err := c.Resolve(1)
	if err != nil {
		t.Fatal(err)
	}
	if c.Density != nil || r.Density[0] != 1 || !*r.Normalize || *r.Lambda != 1 || r.TIESScope != ScopeTensor {
		t.Errorf("Resolve: %+v (input now %+v)", r, c)
	}
}
