package merge

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

// The determinism promise: the same inputs and seed give the same bytes.
// TestGoldenOutputs pins the bytes of every method's output (and of task
// vectors built and applied by package tasks) on a fixed family that mixes
// bf16, f16 and f32 tensors, tensors longer than a chunk, lengths that are
// no multiple of a vector width, exact zeros, ties and negative zeros. The
// hashes were recorded before the merge loops were vectorized; a change of
// any output bit fails here. Regenerate (only for an intended, explained
// change) with: go test ./merge -run TestGoldenOutputs -update-golden
var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden-outputs.txt")

const goldenFile = "testdata/golden-outputs.txt"

var goldenTensors = []struct {
	name  string
	dtype checkpoint.DType
	shape []int64
}{
	{"model.embed_tokens.weight", checkpoint.BF16, []int64{301, 7}},
	{"model.layers.0.input_layernorm.weight", checkpoint.BF16, []int64{17}},
	{"model.layers.0.self_attn.q_proj.weight", checkpoint.BF16, []int64{97, 701}}, // > one chunk
	{"model.layers.0.mlp.up_proj.weight", checkpoint.F16, []int64{33, 65}},
	{"model.layers.1.self_attn.q_proj.weight", checkpoint.F32, []int64{129, 33}},
	{"model.layers.1.mlp.down_proj.weight", checkpoint.BF16, []int64{31, 63}},
	{"model.layers.2.mlp.down_proj.weight", checkpoint.F16, []int64{3, 5}},
	{"model.norm.weight", checkpoint.F32, []int64{5}},
	{"lm_head.weight", checkpoint.BF16, []int64{45, 11}},
}

// goldenFamily writes a base and three fine-tuned models into dir. ft2 is
// stored in float32 throughout, so its task vectors take the decode-then-
// subtract path; the others keep the base's dtypes. nonfinite is ft0 with
// NaN and ±Inf in a few places.
func goldenFamily(t *testing.T, dir string) (base string, fts []string, nonfinite string) {
	t.Helper()
	r := rand.New(rand.NewPCG(2024, 11))
	baseVals := map[string][]float32{}
	for _, g := range goldenTensors {
		n := int64(1)
		for _, d := range g.shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * 0.05)
		}
		if n > 3 {
			v[0], v[1] = 0, float32(math.Copysign(0, -1))
		}
		baseVals[g.name] = v
	}
	write := func(name string, vals map[string][]float32, allF32 bool) string {
		var specs []checkpoint.TensorSpec
		for _, g := range goldenTensors {
			dt := g.dtype
			if allF32 {
				dt = checkpoint.F32
			}
			specs = append(specs, checkpoint.TensorSpec{Name: g.name, DType: dt, Shape: g.shape})
		}
		specs = append(specs, checkpoint.TensorSpec{Name: "position_ids", DType: checkpoint.I64, Shape: []int64{2}})
		path := filepath.Join(dir, name)
		w, err := checkpoint.Create(path, specs, checkpoint.WriteOptions{AllowNonfinite: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range goldenTensors {
			if err := w.WriteFloat32(g.name, vals[g.name]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Write("position_ids", make([]byte, 16)); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		return path
	}
	base = write("base", baseVals, false)
	for m := range 3 {
		vals := map[string][]float32{}
		for _, g := range goldenTensors {
			b := baseVals[g.name]
			v := make([]float32, len(b))
			for i := range v {
				switch u := r.Float64(); {
				case u < 0.03: // unchanged: τ = 0
					v[i] = b[i]
				case u < 0.06: // a magnitude shared by many entries: ties at thresholds
					v[i] = b[i] + float32(math.Copysign(1.0/256, r.Float64()-0.5))
				default:
					v[i] = b[i] + float32(r.NormFloat64()*0.004*float64(m+1))
				}
			}
			vals[g.name] = v
		}
		fts = append(fts, write(fmt.Sprintf("ft%d", m), vals, m == 2))
		if m == 0 {
			// A copy of ft0 with NaN and ±Inf (merged with --allow-nonfinite).
			for _, name := range []string{"model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.up_proj.weight", "model.norm.weight"} {
				v := slices.Clone(vals[name])
				v[1], v[2], v[3] = float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))
				vals[name] = v
			}
			nonfinite = write("ft-nonfinite", vals, false)
		}
	}
	return base, fts, nonfinite
}

// hashOutput hashes every tensor's raw bytes, in name order.
func hashOutput(t *testing.T, path string) string {
	t.Helper()
	c, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := sha256.New()
	var names []string
	for _, ti := range c.Tensors() {
		names = append(names, ti.Name)
	}
	slices.Sort(names)
	var raw []byte
	for _, n := range names {
		if raw, err = c.ReadRaw(n, raw); err != nil {
			t.Fatal(err)
		}
		info, _ := c.Tensor(n)
		fmt.Fprintf(h, "%s %s %v %d\n", n, info.DType, info.Shape, len(raw))
		h.Write(raw)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

func readGolden(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(goldenFile)
	if err != nil {
		if *updateGolden {
			return map[string]string{}
		}
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("%s: bad line %q", goldenFile, line)
		}
		out[name] = hash
	}
	return out
}

func TestGoldenOutputs(t *testing.T) {
	dir := t.TempDir()
	base, fts, nonfinite := goldenFamily(t, dir)
	f64 := func(v float64) *float64 { return &v }
	bf := checkpoint.BF16
	cases := []struct {
		name  string
		cfg   Config
		n     int // models used (default all)
		dtype checkpoint.DType
	}{
		{name: "task_arithmetic", cfg: Config{Method: TaskArithmetic, Lambda: f64(0.3)}},
		{name: "task_arithmetic weighted f16", cfg: Config{Method: TaskArithmetic, Lambda: f64(0.7), Weights: []float64{1, -0.5, 2}}, dtype: checkpoint.F16},
		{name: "task_arithmetic f32", cfg: Config{Method: TaskArithmetic, Lambda: f64(0.3)}, dtype: checkpoint.F32},
		{name: "task_arithmetic bf16", cfg: Config{Method: TaskArithmetic, Lambda: f64(1)}, dtype: bf},
		{name: "ties", cfg: Config{Method: TIES}},
		{name: "ties f32", cfg: Config{Method: TIES, Density: []float64{0.5}}, dtype: checkpoint.F32},
		{name: "ties tensor scope", cfg: Config{Method: TIES, TIESScope: ScopeTensor, Density: []float64{0.3}}},
		{name: "ties sum", cfg: Config{Method: TIES, TIESAggregate: "sum", Lambda: f64(0.5)}},
		{name: "ties mergekit", cfg: Config{Method: TIES, Semantics: Mergekit, Density: []float64{0.4}, Weights: []float64{1, 0.5, 0.25}}, dtype: checkpoint.F32},
		{name: "dare_linear", cfg: Config{Method: DARELinear, Density: []float64{0.7}, Seed: 3, Lambda: f64(0.4)}},
		{name: "dare_ties", cfg: Config{Method: DARETIES, Density: []float64{0.5}, Seed: 5}, dtype: checkpoint.F32},
		{name: "dare_ties mergekit", cfg: Config{Method: DARETIES, Semantics: Mergekit, Density: []float64{0.5}, Seed: 5, Weights: []float64{1, 1, 1}}},
		{name: "breadcrumbs", cfg: Config{Method: Breadcrumbs, Density: []float64{0.8}, Gamma: []float64{0.05}, Lambda: f64(0.5)}},
		{name: "breadcrumbs_ties", cfg: Config{Method: BreadcrumbsTIES, Density: []float64{0.8}, Gamma: []float64{0.05}}, dtype: checkpoint.F32},
		{name: "consensus", cfg: Config{Method: Consensus, Lambda: f64(0.5)}},
		{name: "consensus ties", cfg: Config{Method: Consensus, ConsensusBase: "ties", K: iptr(1), TallLambda: []float64{0.3}, Lambda: f64(0.5)}, dtype: checkpoint.F32},
		{name: "linear", cfg: Config{Method: Linear, Weights: []float64{1, 2, 3}}},
		{name: "model_stock", cfg: Config{Method: ModelStock}, dtype: checkpoint.F32},
		{name: "model_stock filter-wise", cfg: Config{Method: ModelStock, FilterWise: bptr(true)}},
		{name: "slerp", cfg: Config{Method: SLERP, T: f64(0.3)}, n: 1, dtype: checkpoint.F32},
		{name: "lines task_arithmetic", cfg: Config{Method: TaskArithmetic, Lines: &Lines{Alpha: f64(0.3), Beta: f64(0.6)}}},
		{name: "lines ties", cfg: Config{Method: TIES, Lines: &Lines{Beta: f64(0.5)}}, dtype: checkpoint.F32},
	}
	got := map[string]string{}
	for _, c := range cases {
		n := c.n
		if n == 0 {
			n = len(fts)
		}
		s, err := tasks.OpenSet(base, fts[:n])
		if err != nil {
			t.Fatal(err)
		}
		for _, workers := range []int{1, 3} {
			out := filepath.Join(dir, "out")
			cfg := c.cfg
			wo := tasks.WriteOptions{DType: c.dtype}
			wo.Force = true
			if _, err := Run(s, &cfg, out, wo, tasks.StreamOptions{Workers: workers}); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			h := hashOutput(t, out)
			if prev, ok := got[c.name]; ok && prev != h {
				t.Errorf("%s: %d workers gave other bytes than 1", c.name, workers)
			}
			got[c.name] = h
		}
		s.Close()
	}
	// Task vectors (tasks.Build, WriteCombination, Apply) in each dtype.
	for _, dt := range []checkpoint.DType{checkpoint.F32, checkpoint.BF16, checkpoint.F16} {
		s, err := tasks.OpenSet(base, fts[:1])
		if err != nil {
			t.Fatal(err)
		}
		tv := filepath.Join(dir, "tv-"+dt.String())
		wo := tasks.WriteOptions{DType: dt}
		wo.Force = true
		if err := tasks.Build(s, tv, wo, tasks.StreamOptions{}); err != nil {
			t.Fatal(err)
		}
		s.Close()
		got["taskvector "+dt.String()] = hashOutput(t, tv)
		s, err = tasks.OpenSet(base, []string{tv, fts[1]})
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "applied")
		if err := tasks.Apply(s, []float32{-0.5, 0.8}, out, wo, tasks.StreamOptions{}); err != nil {
			t.Fatal(err)
		}
		got["apply "+dt.String()] = hashOutput(t, out)
		if err := tasks.WriteCombination(s, []float32{1, -1}, out, wo, tasks.StreamOptions{}); err != nil {
			t.Fatal(err)
		}
		got["combination "+dt.String()] = hashOutput(t, out)
		s.Close()
	}
	// NaN and ±Inf let through.
	for _, dt := range []checkpoint.DType{0, checkpoint.F32} {
		label := "task_arithmetic nonfinite"
		if dt != 0 {
			label += " " + dt.String()
		}
		s, err := tasks.OpenSet(base, []string{nonfinite, fts[1]})
		if err != nil {
			t.Fatal(err)
		}
		s.AllowNonfinite = true
		out := filepath.Join(dir, "nonfinite")
		wo := tasks.WriteOptions{DType: dt}
		wo.Force = true
		cfg := Config{Method: TaskArithmetic, Lambda: f64(0.5)}
		if _, err := Run(s, &cfg, out, wo, tasks.StreamOptions{}); err != nil {
			t.Fatal(err)
		}
		got[label] = hashOutput(t, out)
		s.Close()
	}

	if *updateGolden {
		var b strings.Builder
		b.WriteString("# SHA-256 (first 128 bits) of each output's tensors: see golden_test.go.\n")
		for _, k := range slices.Sorted(maps.Keys(got)) {
			fmt.Fprintf(&b, "%s\t%s\n", k, got[k])
		}
		if err := os.MkdirAll(filepath.Dir(goldenFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenFile, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want := readGolden(t)
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if w, ok := want[k]; !ok {
			t.Errorf("%s: no golden hash (run with -update-golden)", k)
		} else if w != got[k] {
			t.Errorf("%s: output bytes changed: hash %s, golden %s", k, got[k], w)
		}
	}
}

func iptr(v int) *int   { return &v }
func bptr(v bool) *bool { return &v }
