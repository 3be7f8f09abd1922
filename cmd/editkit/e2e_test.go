package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
)

// cli runs the built editkit binary in a work folder holding generated
// checkpoints: base, ft1, ft2, ft3.
type cli struct {
	bin, dir string
	base     *model
	fts      []*model
}

// newCLI builds the binary into a temporary folder and writes the fixtures.
func newCLI(t *testing.T) *cli {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the editkit binary")
	}
	c := &cli{bin: filepath.Join(t.TempDir(), "editkit"), dir: t.TempDir()}
	build := exec.Command("go", "build", "-o", c.bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	c.base = baseModel(1)
	c.base.write(t, c.path("base"))
	for i := range 3 {
		ft := finetune(c.base, uint64(10+i))
		ft.write(t, c.path("ft"+string(rune('1'+i))))
		c.fts = append(c.fts, ft)
	}
	return c
}

func (c *cli) path(name string) string { return filepath.Join(c.dir, name) }

// run runs editkit with args in the work folder.
func (c *cli) run(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(c.bin, args...)
	cmd.Dir = c.dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// ok runs editkit and fails the test unless it succeeds.
func (c *cli) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := c.run(args...)
	if err != nil {
		t.Fatalf("editkit %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// fails runs editkit, expects exit status 1 and an "editkit: " error
// mentioning every one of want, and checks that the output out (a name in
// the work folder) was not created, nor left a temporary folder behind.
func (c *cli) fails(t *testing.T, out string, want []string, args ...string) {
	t.Helper()
	_, errOut, err := c.run(args...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("editkit %s: want exit status 1, got %v\n%s", strings.Join(args, " "), err, errOut)
	}
	if !strings.HasPrefix(errOut, "editkit: ") {
		t.Errorf("stderr %q does not start with \"editkit: \"", errOut)
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("error %q does not mention %q", errOut, w)
		}
	}
	if out != "" {
		if _, err := os.Lstat(c.path(out)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("output %s exists after a failed run", out)
		}
	}
	c.noTemps(t)
}

// noTemps checks that no temporary output (.NAME.tmp-*) is left.
func (c *cli) noTemps(t *testing.T) {
	t.Helper()
	tmps, _ := filepath.Glob(filepath.Join(c.dir, ".*.tmp-*"))
	if len(tmps) > 0 {
		t.Errorf("temporary outputs left behind: %v", tmps)
	}
}

// expectModel compares every tensor of the model at path with want: float
// tensors within their dtype's rounding, the I64 tensor byte for byte.
func (c *cli) expectModel(t *testing.T, path string, want map[string][]float64, dt checkpoint.DType) {
	t.Helper()
	for _, s := range fixtureTensors {
		if s.DType == i64 {
			got, ok := readRaw(t, path, s.Name)
			base, _ := readRaw(t, c.path("base"), s.Name)
			if !ok || !bytes.Equal(got, base) {
				t.Errorf("%s: integer tensor %q did not pass through from the base", path, s.Name)
			}
			continue
		}
		got, gotDT := readFloats(t, path, s.Name)
		wantDT := s.DType
		if dt != 0 {
			wantDT = dt
		}
		if gotDT != wantDT {
			t.Errorf("%s: tensor %q has dtype %s, want %s", path, s.Name, gotDT, wantDT)
		}
		checkClose(t, path, s.Name, gotDT, got, want[s.Name])
	}
}

// combine computes base + Σ_i c_i (ft_i − base) in float64 from the
// generated values: the independent reference for the commands' results.
func (c *cli) combine(withBase bool, coeffs ...float64) map[string][]float64 {
	out := map[string][]float64{}
	for name, b := range c.base.floats {
		v := make([]float64, len(b))
		for k := range v {
			if withBase {
				v[k] = b[k]
			}
			for i, co := range coeffs {
				v[k] += co * (c.fts[i].floats[name][k] - b[k])
			}
		}
		out[name] = v
	}
	return out
}

func TestCLI(t *testing.T) {
	c := newCLI(t)

	t.Run("taskvector", func(t *testing.T) {
		c.ok(t, "taskvector", "--base", "base", "--finetuned", "ft1", "-o", "tv1", "-q")
		c.ok(t, "taskvector", "--base", "base", "--finetuned", "ft2", "-o", "tv2.safetensors", "-q")
		want := c.combine(false, 1)
		for _, s := range fixtureTensors {
			if s.DType == i64 {
				if _, ok := readRaw(t, c.path("tv1"), s.Name); ok {
					t.Errorf("task vector holds integer tensor %q", s.Name)
				}
				continue
			}
			got, dt := readFloats(t, c.path("tv1"), s.Name)
			if dt != checkpoint.F32 {
				t.Errorf("task vector tensor %q has dtype %s, want F32", s.Name, dt)
			}
			checkClose(t, "tv1", s.Name, dt, got, want[s.Name])
		}
	})

	t.Run("apply", func(t *testing.T) {
		// λ = 0 gives the base exactly, byte for byte.
		c.ok(t, "apply", "--base", "base", "tv1", "--lambda", "0", "-o", "a0", "-q", "--shard-size", "200")
		for _, s := range fixtureTensors {
			got, _ := readRaw(t, c.path("a0"), s.Name)
			want, _ := readRaw(t, c.path("base"), s.Name)
			if !bytes.Equal(got, want) {
				t.Errorf("apply λ=0: tensor %q differs from the base", s.Name)
			}
		}
		// One task vector with λ = 1 gives the fine-tuned model back.
		c.ok(t, "apply", "--base", "base", "tv1", "--lambda", "1", "-o", "a1", "-q")
		c.expectModel(t, c.path("a1"), c.combine(true, 1), 0)
		// A stored vector and a fine-tuned checkpoint, one λ each, one
		// negative (negation).
		c.ok(t, "apply", "--base", "base", "tv1", "ft2", "--lambda", "0.5,-1", "-o", "a2", "-q")
		c.expectModel(t, c.path("a2"), c.combine(true, 0.5, -1), 0)
		c.fails(t, "a3", []string{"--lambda has 3 values for 2 task vectors"}, "apply", "--base", "base", "tv1", "ft2", "--lambda", "1,2,3", "-o", "a3")
		c.fails(t, "a3", []string{"--lambda"}, "apply", "--base", "base", "tv1", "-o", "a3")
	})

	t.Run("tv", func(t *testing.T) {
		c.ok(t, "tv", "sub", "--base", "base", "tv1", "ft2", "-o", "sub", "-q")
		c.ok(t, "tv", "add", "--base", "base", "tv1", "ft2", "ft3", "-o", "add", "-q")
		c.ok(t, "tv", "scale", "--base", "base", "tv1", "--by", "2.5", "-o", "scale", "-q")
		c.ok(t, "tv", "neg", "--base", "base", "ft3", "-o", "neg", "-q")
		cases := map[string][]float64{"sub": {1, -1}, "add": {1, 1, 1}, "scale": {2.5}, "neg": {0, 0, -1}}
		for out, coeffs := range cases {
			want := c.combine(false, coeffs...)
			for name := range c.base.floats {
				got, dt := readFloats(t, c.path(out), name)
				checkClose(t, "tv "+out, name, dt, got, want[name])
			}
		}
		c.fails(t, "x", []string{"scale needs --by"}, "tv", "scale", "--base", "base", "tv1", "-o", "x")
		c.fails(t, "x", []string{"no base given", "--base"}, "tv", "neg", "tv1", "-o", "x")
	})

	t.Run("merge task_arithmetic", func(t *testing.T) {
		out := c.ok(t, "merge", "--base", "base", "--models", "ft1", "ft2", "ft3", "--method", "task_arithmetic",
			"--lambda", "0.5", "-o", "ta", "--shard-size", "200", "--json")
		c.expectModel(t, c.path("ta"), c.combine(true, 0.5, 0.5, 0.5), 0)
		var sum writeSummary
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatalf("--json output %q: %v", out, err)
		}
		if sum.Output != "ta" || sum.Method != "task_arithmetic" || sum.Passes < 1 || sum.Params["lambda"] != 0.5 || sum.InputBytes <= 0 {
			t.Errorf("--json summary %+v", sum)
		}
		// Provenance and the recipe side file.
		ck, err := checkpoint.Open(c.path("ta"))
		if err != nil {
			t.Fatal(err)
		}
		meta := ck.Metadata
		ck.Close()
		if meta[methodKey] != "task_arithmetic" {
			t.Errorf("metadata %s = %q", methodKey, meta[methodKey])
		}
		var inputs []inputRecord
		if err := json.Unmarshal([]byte(meta[inputsKey]), &inputs); err != nil || len(inputs) != 4 || inputs[0].Path != "base" || inputs[3].Path != "ft3" || inputs[1].Bytes <= 0 {
			t.Errorf("metadata %s = %q (%v)", inputsKey, meta[inputsKey], err)
		}
		var params map[string]any
		if err := json.Unmarshal([]byte(meta[paramsKey]), &params); err != nil || params["lambda"] != 0.5 {
			t.Errorf("metadata %s = %q (%v)", paramsKey, meta[paramsKey], err)
		}
		recipe, err := os.ReadFile(filepath.Join(c.path("ta"), mergeSideFile))
		if err != nil || !bytes.Contains(recipe, []byte("method: task_arithmetic")) || !bytes.Contains(recipe, []byte("- ft2")) {
			t.Errorf("%s: %q (%v)", mergeSideFile, recipe, err)
		}
	})

	t.Run("merge config", func(t *testing.T) {
		yml := `merge_method: task_arithmetic
base_model: base
models:
  - model: ft1
    parameters: {weight: 1.0}
  - model: ft2
    parameters: {weight: 0.5}
parameters:
  lambda: 0.8
dtype: float32
`
		if err := os.WriteFile(c.path("ta.yaml"), []byte(yml), 0o644); err != nil {
			t.Fatal(err)
		}
		c.ok(t, "merge", "--config", "ta.yaml", "-o", "cfg", "-q")
		// mergekit's task_arithmetic: base + λ Σ w_i τ_i, no normalization.
		c.expectModel(t, c.path("cfg"), c.combine(true, 0.8, 0.4), checkpoint.F32)
		side, err := os.ReadFile(filepath.Join(c.path("cfg"), mergeSideFile))
		if err != nil || string(side) != yml {
			t.Errorf("%s is not the configuration given: %q (%v)", mergeSideFile, side, err)
		}
		c.fails(t, "cfg2", []string{"--method conflicts with --config"}, "merge", "--config", "ta.yaml", "--method", "ties", "-o", "cfg2")
		c.fails(t, "cfg2", []string{"--dtype conflicts with --config"}, "merge", "--config", "ta.yaml", "--dtype", "bf16", "-o", "cfg2")
		if err := os.WriteFile(c.path("bad.yaml"), []byte("merge_method: slerp\nbase_model: base\nmodels: [{model: ft1}]\nparameters:\n  t: [0, .nan]\n  lambda: .inf\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		c.fails(t, "cfg2", []string{"bad.yaml:5: t NaN is not a finite number", "bad.yaml:6: lambda +Inf is not a finite number"}, "merge", "--config", "bad.yaml", "-o", "cfg2")

		// Layer stacking: ft1's two layers, then ft2's second scaled by
		// 0.5; what mergekit ignores is a warning on stderr.
		stack := "merge_method: passthrough\nslices:\n  - sources: [{model: ft1, layer_range: [0, 2]}]\n  - sources: [{model: ft2, layer_range: [1, 2], parameters: {scale: 0.5}}]\nparameters: {int8_mask: true}\nfoo: 1\n"
		if err := os.WriteFile(c.path("stack.yaml"), []byte(stack), 0o644); err != nil {
			t.Fatal(err)
		}
		_, errOut, err := c.run("merge", "--config", "stack.yaml", "-o", "stacked")
		if err != nil {
			t.Fatalf("merge --config stack.yaml: %v\n%s", err, errOut)
		}
		for _, w := range []string{`editkit: warning: stack.yaml:6: unknown key "foo" ignored`, `editkit: warning: stack.yaml:5: parameter "int8_mask" has no effect on passthrough`} {
			if !strings.Contains(errOut, w) {
				t.Errorf("stderr %q does not warn %q", errOut, w)
			}
		}
		for out, in := range map[string]struct {
			model *model
			name  string
			scale float64
		}{
			"vit.encoder.layer.0.attention.weight": {c.fts[0], "vit.encoder.layer.0.attention.weight", 1},
			"vit.encoder.layer.1.output.bias":      {c.fts[0], "vit.encoder.layer.1.output.bias", 1},
			"vit.encoder.layer.2.attention.weight": {c.fts[1], "vit.encoder.layer.1.attention.weight", 0.5},
			"vit.encoder.layer.2.output.bias":      {c.fts[1], "vit.encoder.layer.1.output.bias", 0.5},
		} {
			got, dt := readFloats(t, c.path("stacked"), out)
			want := make([]float64, len(in.model.floats[in.name]))
			for i, v := range in.model.floats[in.name] {
				want[i] = v * in.scale
			}
			checkClose(t, "stacked", out, dt, got, want)
		}
		c.fails(t, "pt", []string{"--method passthrough stacks layer ranges", "slices"}, "merge", "--base", "base", "--models", "ft1", "--method", "passthrough", "-o", "pt")
		// --help documents the YAML parameters from the table, int8_mask's
		// lack of effect included.
		help := c.ok(t, "merge", "--help")
		for _, w := range []string{"int8_mask is accepted", "int8_mask: accepted and without effect", "--density (density)", "nuslerp_flatten", "(default: 0.2 for ties"} {
			if !strings.Contains(help, w) {
				t.Errorf("merge --help does not say %q", w)
			}
		}
	})

	t.Run("inspect", func(t *testing.T) {
		var r inspectReport
		if err := json.Unmarshal([]byte(c.ok(t, "inspect", "base", "--json", "--tensors")), &r); err != nil {
			t.Fatal(err)
		}
		var params int64
		for _, s := range fixtureTensors {
			params += int64(numel(s.Shape))
		}
		if len(r.Files) < 2 || r.Tensors != len(fixtureTensors) || r.Params != params || r.TaskVector {
			t.Errorf("inspect base: %+v", r)
		}
		var dts []string
		for _, d := range r.DTypes {
			dts = append(dts, d.DType)
		}
		if !slices.Equal(dts, []string{"BF16", "F32", "I64"}) {
			t.Errorf("dtypes %v", dts)
		}
		if r.Layout.Family != "hf-vit" || len(r.Layout.Stacks) != 1 || r.Layout.Stacks[0].Blocks != 2 {
			t.Errorf("layout %+v", r.Layout)
		}
		for _, tr := range r.TensorList {
			if strings.Contains(tr.Name, "layer.1.") && (tr.Block == nil || *tr.Block != 1) {
				t.Errorf("tensor %s: block %v, want 1", tr.Name, tr.Block)
			}
		}
		r = inspectReport{}
		if err := json.Unmarshal([]byte(c.ok(t, "inspect", "tv1", "--json")), &r); err != nil {
			t.Fatal(err)
		}
		if !r.TaskVector || r.Metadata["editkit.base"] != "base" {
			t.Errorf("inspect tv1: task_vector %v, metadata %v", r.TaskVector, r.Metadata)
		}
		if out := c.ok(t, "inspect", "base"); !strings.Contains(out, "hf-vit") || !strings.Contains(out, "I64") {
			t.Errorf("inspect text output:\n%s", out)
		}
	})

	t.Run("norms and cosine", func(t *testing.T) {
		var n normsReport
		if err := json.Unmarshal([]byte(c.ok(t, "norms", "--base", "base", "tv1", "ft2", "--json")), &n); err != nil {
			t.Fatal(err)
		}
		want := c.combine(false, 1)
		var sq float64
		for _, v := range want {
			for _, x := range v {
				sq += x * x
			}
		}
		if len(n.Total.L2) != 2 || math.Abs(n.Total.L2[0]-math.Sqrt(sq)) > 1e-4*math.Sqrt(sq) {
			t.Errorf("norms total %+v, want L2[0] = %v", n.Total, math.Sqrt(sq))
		}
		n = normsReport{}
		if err := json.Unmarshal([]byte(c.ok(t, "norms", "--base", "base", "tv1", "--blocks", "--json")), &n); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range n.Rows {
			names = append(names, r.Name)
		}
		if !slices.Contains(names, "vit.encoder.layer.1") || !slices.Contains(names, "(outside blocks)") {
			t.Errorf("block rows %v", names)
		}
		var cr cosineReport
		if err := json.Unmarshal([]byte(c.ok(t, "cosine", "--base", "base", "tv1", "ft1", "ft2", "--json")), &cr); err != nil {
			t.Fatal(err)
		}
		if len(cr.Cosine) != 3 || math.Abs(cr.Cosine[0][1]-1) > 1e-6 || math.Abs(cr.Cosine[1][2]-cr.Cosine[2][1]) > 1e-12 || math.Abs(cr.Cosine[0][2]) > 0.9 {
			t.Errorf("cosine %v", cr.Cosine)
		}
		if out := c.ok(t, "cosine", "--base", "base", "tv1", "ft2"); !strings.Contains(out, "[1] tv1") || !strings.Contains(out, "1.0000") {
			t.Errorf("cosine table:\n%s", out)
		}
	})

	t.Run("determinism", func(t *testing.T) {
		args := []string{"merge", "--base", "base", "--models", "ft1", "ft2", "ft3", "--method", "ties", "--density", "0.3", "--shard-size", "200", "-q"}
		c.ok(t, append(args, "-o", "det1")...)
		c.ok(t, append(args, "-o", "det2")...)
		a, b := readTree(t, c.path("det1")), readTree(t, c.path("det2"))
		if len(a) < 3 {
			t.Errorf("expected a sharded output, got files %v", sortedNames(a))
		}
		if !slices.Equal(sortedNames(a), sortedNames(b)) {
			t.Fatalf("runs wrote different files: %v and %v", sortedNames(a), sortedNames(b))
		}
		for name, data := range a {
			if !bytes.Equal(data, b[name]) {
				t.Errorf("file %s differs between two identical runs", name)
			}
		}
	})

	t.Run("bad inputs", func(t *testing.T) {
		merge := func(out string, extra ...string) []string {
			return append([]string{"merge", "--base", "base", "--models", "ft1", "ft2", "--method", "task_arithmetic", "--lambda", "0.5", "-o", out}, extra...)
		}
		// A truncated shard.
		copyDir(t, c.path("ft2"), c.path("trunc"))
		shards, _ := filepath.Glob(filepath.Join(c.path("trunc"), "model-*.safetensors"))
		last := shards[len(shards)-1]
		st, _ := os.Stat(last)
		if err := os.Truncate(last, st.Size()-3); err != nil {
			t.Fatal(err)
		}
		c.fails(t, "o1", []string{filepath.Base(last), "truncated"},
			"merge", "--base", "base", "--models", "ft1", "trunc", "--method", "task_arithmetic", "--lambda", "0.5", "-o", "o1")

		// An existing output without --force is left alone.
		if err := os.Mkdir(c.path("exists"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.path("exists"), "keep"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		c.fails(t, "", []string{"exists", "--force"}, merge("exists")...)
		if _, err := os.Stat(filepath.Join(c.path("exists"), "keep")); err != nil {
			t.Errorf("existing output was touched: %v", err)
		}
		c.ok(t, merge("exists", "--force", "-q")...)
		if _, err := os.Stat(filepath.Join(c.path("exists"), "keep")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("--force did not replace the output")
		}

		// The output is an input.
		before := readTree(t, c.path("ft1"))
		c.fails(t, "", []string{"ft1", "input"}, merge("ft1", "--force")...)
		after := readTree(t, c.path("ft1"))
		for name, data := range before {
			if !bytes.Equal(data, after[name]) {
				t.Errorf("input ft1/%s changed", name)
			}
		}

		// Bad flags are reported before anything is read or written.
		c.fails(t, "o2", []string{`unknown merge method "tiez"`, "task_arithmetic", "slerp"},
			"merge", "--base", "base", "--models", "ft1", "--method", "tiez", "-o", "o2")
		c.fails(t, "o2", []string{"--weights 1,2,3 has 3 values for 2 models"}, merge("o2", "--weights", "1,2,3")...)
		c.fails(t, "o2", []string{"--lambda NaN is not a finite number"}, merge("o2", "--lambda", "NaN")...)
		c.fails(t, "o2", []string{"--lambda +Inf is not a finite number"}, merge("o2", "--lambda", "Inf")...)
		c.fails(t, "o2", []string{"--density 0.5 does not apply to task_arithmetic", "task_arithmetic takes weight, lambda"}, merge("o2", "--density", "0.5")...)
		c.fails(t, "o2", []string{"--lines-beta NaN is not a finite number"}, "merge", "--base", "base", "--models", "ft1", "ft2", "--method", "ties", "--lines-beta", "NaN", "-o", "o2")
		c.fails(t, "o2", []string{"--t NaN is not a finite number"}, "merge", "--base", "base", "--models", "ft1", "--method", "slerp", "--t", "NaN", "-o", "o2")
		c.fails(t, "o2", []string{"--tall-lambda -1 is outside ≥ 0"}, "merge", "--base", "base", "--models", "ft1", "ft2", "--method", "consensus", "--lambda", "1", "--tall-lambda", "-1", "-o", "o2")
		c.fails(t, "o2", []string{"--k 3 must be ≤ N = 2"}, "merge", "--base", "base", "--models", "ft1", "ft2", "--method", "consensus", "--lambda", "1", "--k", "3", "-o", "o2")
		for _, flag := range [][]string{{"--t", "0.5"}, {"--k", "2"}, {"--gamma", "0.1"}, {"--seed", "0"}} {
			c.fails(t, "o2", []string{flag[0] + " " + flag[1] + " does not apply to ties"}, append([]string{"merge", "--base", "base", "--models", "ft1", "ft2", "--method", "ties", "-o", "o2"}, flag...)...)
		}
		c.fails(t, "o2", []string{"--density 1.5 is outside (0, 1]"},
			"merge", "--base", "base", "--models", "ft1", "ft2", "--method", "ties", "--density", "1.5", "-o", "o2")
		c.fails(t, "", []string{"no output given", "-o"},
			"merge", "--base", "base", "--models", "ft1", "ft2", "--method", "ties")
		c.fails(t, "o2", []string{"--shard-size", `"5XB"`}, merge("o2", "--shard-size", "5XB")...)
		c.fails(t, "o2", []string{"unknown flag: --lamda"}, "merge", "--lamda", "1", "-o", "o2")

		// NaN in an input: an error naming the file and tensor, unless
		// --allow-nonfinite.
		nanModel := c.fts[1].clone()
		nanModel.floats["vit.encoder.layer.1.output.bias"][2] = math.NaN()
		nanModel.write(t, c.path("ftnan"))
		c.fails(t, "o3", []string{"ftnan", "vit.encoder.layer.1.output.bias", "non-finite", "--allow-nonfinite"},
			"merge", "--base", "base", "--models", "ft1", "ftnan", "--method", "task_arithmetic", "--lambda", "0.5", "-o", "o3")
		c.ok(t, "merge", "--base", "base", "--models", "ft1", "ftnan", "--method", "task_arithmetic", "--lambda", "0.5", "-o", "o3", "--allow-nonfinite", "-q")
		if got, _ := readFloats(t, c.path("o3"), "vit.encoder.layer.1.output.bias"); !math.IsNaN(got[2]) {
			t.Errorf("--allow-nonfinite: NaN did not propagate, got %v", got[2])
		}

		// Mismatched shapes.
		bad := c.fts[2].clone()
		bad.shapes["classifier.weight"] = []int64{6, 3}
		bad.write(t, c.path("ftshape"))
		c.fails(t, "o4", []string{"classifier.weight", "ftshape", "shape"},
			"merge", "--base", "base", "--models", "ft1", "ftshape", "--method", "task_arithmetic", "--lambda", "0.5", "-o", "o4")
		c.noTemps(t)
	})

	// Values beyond a 16-bit dtype's range, or beyond float32's after the
	// arithmetic, are errors naming the tensor; --saturate clamps and counts.
	t.Run("overflow", func(t *testing.T) {
		big := c.fts[0].clone()
		big.floats["classifier.weight"][4] += 1e5 // τ beyond float16's ±65504
		big.write(t, c.path("ftbig"))
		c.fails(t, "tv16", []string{"tv16", "classifier.weight", "F16", "index 4", "65504", "--saturate", "--dtype"},
			"taskvector", "--base", "base", "--finetuned", "ftbig", "--dtype", "float16", "-o", "tv16")
		_, errOut, err := c.run("taskvector", "--base", "base", "--finetuned", "ftbig", "--dtype", "float16", "--saturate", "-o", "tv16")
		if err != nil || !strings.Contains(errOut, "1 values beyond the dtype's range saturated") {
			t.Fatalf("--saturate: %v, stderr %q", err, errOut)
		}
		if got, _ := readFloats(t, c.path("tv16"), "classifier.weight"); got[4] != 65504 {
			t.Errorf("--saturate wrote %v, want 65504", got[4])
		}
		c.fails(t, "huge", []string{"huge", "vit.embeddings.patch_embeddings.projection.weight", "flat index 0", "overflowed"},
			"merge", "--base", "base", "--models", "ft1", "ft2", "--method", "task_arithmetic", "--lambda", "1e39", "-o", "huge")
	})
}

// readTree reads every file of a folder output.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = data
	}
	return out
}

func sortedNames(m map[string][]byte) []string {
	return slices.Sorted(maps.Keys(m))
}
