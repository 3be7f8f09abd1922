package merge

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseMergekitYAML feeds arbitrary text to the mergekit configuration
// reader. It must never panic; every error names the file (and a line when
// it has one); an accepted configuration names a method, models for every
// slice, finite parameters within their ranges, and resolves for its
// number of models; and reading is deterministic.
func FuzzParseMergekitYAML(f *testing.F) {
	files, _ := filepath.Glob("testdata/mergekit/*.yml")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		"",
		"merge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}]\n",
		"merge_method: ties\nbase_model: b\nmodels: [{model: a, parameters: {weight: [0, 1], density: [{filter: mlp, value: 0.5}, {value: 1}]}}]\n",
		"merge_method: passthrough\nslices:\n  - sources: [{model: a, layer_range: [0, 2]}]\n  - sources: [{model: b, layer_range: [1, 3], parameters: {scale: 0.5}}]\n",
		"merge_method: consensus\nbase_model: b\nparameters: {k: 2, lambda: 1, tall_lambda: .nan}\nmodels: [{model: a}, {model: c}]\n",
		"merge_method: slerp\nbase_model: a\nmodels: [{model: a}, {model: c}]\nparameters: {t: &x [0, 1]}\ndtype: bfloat16\nfoo: *x\n",
		"merge_method: della\nbase_model: b\nmodels: [{model: a, parameters: {weight: 1, density: 0.5, epsilon: 0.6}}]\n",
		"merge_method: task_arithmetic\nbase_model: b\ntokenizer: {source: union, pad_to_multiple_of: 64, tokens: {x: {source: {kind: zero}}}}\nmodels: [{model: a, parameters: {weight: 1}}]\n---\nname: x\n",
		"merge_method: nuslerp\nmodels: [{model: a, parameters: {weight: 1}}, {model: c, parameters: {weight: 2}}]\nparameters: {nuslerp_row_wise: true}\n",
		"{merge_method: [1], models: {a: b}}",
		"merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n    parameters: {weight: 1e400}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		plan, err := ParseMergekitYAML(data, "fuzz.yaml")
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.yaml") {
					t.Fatalf("error line %q does not name the file", line)
				}
			}
			if plan != nil {
				t.Fatal("a plan returned with an error")
			}
			return
		}
		if rowOf(plan.Config.Method) == nil {
			t.Fatalf("accepted method %q", plan.Config.Method)
		}
		if len(plan.Slices) == 0 {
			t.Fatal("accepted without models")
		}
		n := len(plan.Members(0))
		for i, s := range plan.Slices {
			if len(plan.Members(i)) != n || len(s.Sources) == 0 {
				t.Fatalf("slice %d: %d members, slice 1 has %d", i, len(plan.Members(i)), n)
			}
			for _, src := range s.Sources {
				if src.Model == "" {
					t.Fatal("a source without a model")
				}
			}
		}
		if _, err := plan.Config.Resolve(n); err != nil {
			t.Fatalf("accepted, but Resolve(%d): %v", n, err)
		}
		check := func(params map[string]*setting) {
			for name, s := range params {
				p := ParamByName(name)
				var vals []any
				if s.scalar != nil {
					vals = append(vals, s.scalar)
				}
				for _, g := range s.grad {
					vals = append(vals, g)
				}
				for _, c := range s.conds {
					if c.value.scalar != nil {
						vals = append(vals, c.value.scalar)
					}
					for _, g := range c.value.grad {
						vals = append(vals, g)
					}
				}
				for _, v := range vals {
					if x, ok := v.(float64); ok && (math.IsNaN(x) || math.IsInf(x, 0)) {
						t.Fatalf("%s: accepted %v", name, x)
					}
					if why, _ := p.checkValue(v); why != "" {
						t.Fatalf("%s: accepted %v, which %s", name, v, why)
					}
				}
			}
		}
		check(plan.top)
		for _, s := range plan.Slices {
			check(s.params)
			for _, src := range s.Sources {
				check(src.params)
			}
		}
		again, err := ParseMergekitYAML(data, "fuzz.yaml")
		if err != nil || !reflect.DeepEqual(again.Warnings, plan.Warnings) || again.Config.Method != plan.Config.Method {
			t.Fatalf("a second read differs: %v", err)
		}
	})
}
