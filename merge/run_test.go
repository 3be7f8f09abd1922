package merge

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

// fixture is a small model family: a base and fine-tuned models whose
// values lie on a 1/64 grid, so every τ = θ_t − θ_0 is exact in float32 and
// the float64 references below see the same numbers the merge sees.
type fixture struct {
	dir    string
	names  []string
	shapes map[string][]int64
	base   map[string][]float64
	models []map[string][]float64
}

var fixtureShapes = []struct {
	name  string
	shape []int64
}{
	{"model.embed_tokens.weight", []int64{5, 4}},
	{"model.layers.0.mlp.weight", []int64{4, 6}},
	{"model.layers.1.mlp.weight", []int64{3, 4}},
	{"model.layers.2.mlp.weight", []int64{4, 4}},
	{"model.layers.2.norm.weight", []int64{4}},
	{"model.norm.weight", []int64{4}},
}

func newFixture(t *testing.T, n int, seed uint64) *fixture {
	return newFixtureShaped(t, n, seed, fixtureShapes)
}

// newFixtureShaped is newFixture with other tensors.
func newFixtureShaped(t *testing.T, n int, seed uint64, shapes []struct {
	name  string
	shape []int64
}) *fixture {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 99))
	f := &fixture{dir: t.TempDir(), shapes: map[string][]int64{}, base: map[string][]float64{}}
	grid := func(scale int) float64 { return float64(r.IntN(2*scale+1)-scale) / 64 }
	for _, s := range shapes {
		f.names = append(f.names, s.name)
		f.shapes[s.name] = s.shape
		size := int64(1)
		for _, d := range s.shape {
			size *= d
		}
		v := make([]float64, size)
		for i := range v {
			v[i] = grid(64)
		}
		f.base[s.name] = v
	}
	for range n {
		m := map[string][]float64{}
		for _, name := range f.names {
			v := make([]float64, len(f.base[name]))
			for i, b := range f.base[name] {
				v[i] = b + grid(16)
			}
			m[name] = v
		}
		f.models = append(f.models, m)
	}
	f.write(t, "base", f.base)
	for i, m := range f.models {
		f.write(t, modelName(i), m)
	}
	return f
}

func modelName(i int) string { return "ft" + string(rune('0'+i)) }

// write saves values as F32 plus an I64 tensor that must pass through.
func (f *fixture) write(t *testing.T, name string, vals map[string][]float64) {
	t.Helper()
	var specs []checkpoint.TensorSpec
	for _, n := range f.names {
		specs = append(specs, checkpoint.TensorSpec{Name: n, DType: checkpoint.F32, Shape: f.shapes[n]})
	}
	specs = append(specs, checkpoint.TensorSpec{Name: "position_ids", DType: checkpoint.I64, Shape: []int64{3}})
	w, err := checkpoint.Create(filepath.Join(f.dir, name), specs, checkpoint.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range f.names {
		v := make([]float32, len(vals[n]))
		for i, x := range vals[n] {
			v[i] = float32(x)
		}
		if err := w.WriteFloat32(n, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Write("position_ids", []byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) set(t *testing.T, n int) *tasks.Set {
	t.Helper()
	var ms []string
	for i := range n {
		ms = append(ms, filepath.Join(f.dir, modelName(i)))
	}
	s, err := tasks.OpenSet(filepath.Join(f.dir, "base"), ms)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (f *fixture) taus(name string) [][]float64 {
	var out [][]float64
	for _, m := range f.models {
		tau := make([]float64, len(f.base[name]))
		for i := range tau {
			tau[i] = m[name][i] - f.base[name][i]
		}
		out = append(out, tau)
	}
	return out
}

// run merges with cfg and returns the output's float tensors.
func (f *fixture) run(t *testing.T, n int, cfg Config, so tasks.StreamOptions) (map[string][]float32, *Result, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "merged")
	res, err := Run(f.set(t, n), &cfg, out, tasks.WriteOptions{}, so)
	if err != nil {
		t.Fatal(err)
	}
	c, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := map[string][]float32{}
	for _, name := range f.names {
		v, _, err := c.ReadFloat32(name, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		got[name] = append([]float32(nil), v...)
	}
	raw, err := c.ReadRaw("position_ids", nil)
	if err != nil || raw[8] != 1 || raw[16] != 2 {
		t.Fatalf("integer tensor not passed through: %v %v", raw, err)
	}
	return got, res, out
}

func assertClose(t *testing.T, what string, got map[string][]float32, want map[string][]float64, tol float64) {
	t.Helper()
	for name, w := range want {
		for i, x := range w {
			if d := math.Abs(float64(got[name][i]) - x); d > tol || math.IsNaN(d) {
				t.Fatalf("%s: %s[%d] = %v, want %v (|diff| %g > %g)", what, name, i, got[name][i], x, d, tol)
			}
		}
	}
}

const tol = 1e-6

func lam(v float64) *float64 { return &v }

func TestTaskArithmeticMatchesReference(t *testing.T) {
	f := newFixture(t, 3, 1)
	got, _, _ := f.run(t, 3, Config{Method: TaskArithmetic, Lambda: lam(0.3)}, tasks.StreamOptions{})
	want := map[string][]float64{}
	for _, name := range f.names {
		taus := f.taus(name)
		v := make([]float64, len(f.base[name]))
		for i := range v {
			v[i] = f.base[name][i] + 0.3*(taus[0][i]+taus[1][i]+taus[2][i])
		}
		want[name] = v
	}
	assertClose(t, "task arithmetic", got, want, tol)
}

func TestProperties(t *testing.T) {
	f := newFixture(t, 2, 2)
	ta1 := Config{Method: TaskArithmetic, Lambda: lam(1)}
	taOne, _, _ := f.run(t, 1, ta1, tasks.StreamOptions{})
	tests := []struct {
		name string
		n    int
		cfg  Config
		want map[string][]float64 // nil: equal to TA λ=1 on one model
	}{
		{"lambda 0 gives the base", 2, Config{Method: TaskArithmetic, Lambda: lam(0)}, f.base},
		{"one model with lambda 1 gives it back", 1, ta1, f.models[0]},
		{"TIES at density 1 on one model is TA", 1, Config{Method: TIES, Density: []float64{1}}, nil},
		{"DARE with p=0 is TA", 1, Config{Method: DARELinear, Density: []float64{1}}, nil},
		// λ(ℓ) = α + β ℓ/(L−1) is 1 everywhere for α = 1, β = 0 (with α = β = 1
		// the last block would get 2).
		{"LiNeS alpha=1 beta=0 is the identity", 1, Config{Method: TaskArithmetic, Lines: &Lines{Alpha: lam(1), Beta: lam(0)}}, nil},
		{"SLERP t=1 gives the model", 1, Config{Method: SLERP, T: lam(1)}, f.models[0]},
		{"SLERP t=0 gives the base", 1, Config{Method: SLERP, T: lam(0)}, f.base},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, _ := f.run(t, tc.n, tc.cfg, tasks.StreamOptions{})
			if tc.want != nil {
				assertClose(t, tc.name, got, tc.want, 0)
				return
			}
			for _, name := range f.names {
				for i := range got[name] {
					if got[name][i] != taOne[name][i] {
						t.Fatalf("%s[%d] = %v, TA gives %v", name, i, got[name][i], taOne[name][i])
					}
				}
			}
		})
	}
}

// referenceTIES follows prateeky2806/ties-merging over the whole flattened
// model: trim with kthvalue, elect with majority fill, disjoint mean.
func referenceTIES(f *fixture, density, lambda float64) map[string][]float64 {
	n := len(f.models)
	flat := make([][]float64, n)
	for _, name := range f.names {
		for t, tau := range f.taus(name) {
			flat[t] = append(flat[t], tau...)
		}
	}
	d := len(flat[0])
	for t := range flat {
		abs := make([]float64, d)
		for i, v := range flat[t] {
			abs[i] = math.Abs(v)
		}
		sort.Float64s(abs)
		k := d - int(float64(d)*density)
		thr := abs[k-1]
		for i, v := range flat[t] {
			if math.Abs(v) < thr {
				flat[t][i] = 0
			}
		}
	}
	s := make([]float64, d)
	var total float64
	for i := range s {
		for t := range flat {
			s[i] += flat[t][i]
		}
		s[i] = signf(s[i])
		total += s[i]
	}
	merged := make([]float64, d)
	for i := range s {
		if s[i] == 0 {
			s[i] = signf(total)
		}
		var sum float64
		count := 0
		for t := range flat {
			v := flat[t][i]
			if (s[i] > 0 && v > 0) || (s[i] <= 0 && v < 0) {
				sum += v
				count++
			}
		}
		merged[i] = sum / math.Max(float64(count), 1)
	}
	out := map[string][]float64{}
	off := 0
	for _, name := range f.names {
		v := make([]float64, len(f.base[name]))
		for i := range v {
			v[i] = f.base[name][i] + lambda*merged[off+i]
		}
		off += len(v)
		out[name] = v
	}
	return out
}

func signf(v float64) float64 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

func TestTIESGlobalMatchesReference(t *testing.T) {
	f := newFixture(t, 3, 3)
	for _, density := range []float64{0.2, 0.5, 0.9} {
		// Whole small tensors are sampled, so the estimated windows hold the
		// thresholds: one counting pass and the write.
		got, res, _ := f.run(t, 3, Config{Method: TIES, Density: []float64{density}, Lambda: lam(0.7)}, tasks.StreamOptions{})
		assertClose(t, "ties", got, referenceTIES(f, density, 0.7), tol)
		if res.Passes != 2 {
			t.Errorf("density %v: passes = %d, want 2", density, res.Passes)
		}
		// Chunks of 5 make the sample a poor estimate here: the windows miss,
		// and a coarse pass and a second counting pass resolve the exact
		// bins.
		got, res, _ = f.run(t, 3, Config{Method: TIES, Density: []float64{density}, Lambda: lam(0.7)}, tasks.StreamOptions{ChunkElems: 5})
		assertClose(t, "ties, chunks of 5", got, referenceTIES(f, density, 0.7), tol)
		if res.Passes != 4 {
			t.Errorf("density %v, chunks of 5: passes = %d, want 4", density, res.Passes)
		}
	}
}

func TestDeterministicAcrossChunkingAndWorkers(t *testing.T) {
	f := newFixture(t, 3, 4)
	cfgs := []Config{
		{Method: DARETIES, Density: []float64{0.5}, Seed: 11},
		{Method: TIES, Lines: &Lines{Beta: lam(0.5)}},
		{Method: Consensus, Lambda: lam(0.8), ConsensusBase: "ties"},
	}
	for _, cfg := range cfgs {
		_, _, a := f.run(t, 3, cfg, tasks.StreamOptions{ChunkElems: 3, Workers: 3})
		_, _, b := f.run(t, 3, cfg, tasks.StreamOptions{Workers: 1})
		da, _ := os.ReadFile(filepath.Join(a, checkpoint.SingleFile))
		db, _ := os.ReadFile(filepath.Join(b, checkpoint.SingleFile))
		if !bytes.Equal(da, db) {
			t.Errorf("%s: output depends on chunking or workers", cfg.Method)
		}
	}
}

func TestLinesMultiTaskMatchesReference(t *testing.T) {
	f := newFixture(t, 2, 5)
	got, res, _ := f.run(t, 2, Config{Method: TaskArithmetic, Lines: &Lines{Beta: lam(0.6)}}, tasks.StreamOptions{})
	// For plain TA the merged vector is Σ τ, so α = 1/T = 0.5; 3 blocks.
	lines := res.Params["lines"].(map[string]any)
	if a := lines["alpha"].(float64); math.Abs(a-0.5) > 1e-12 {
		t.Fatalf("alpha = %v, want 0.5", a)
	}
	scale := map[string]float64{
		"model.embed_tokens.weight":  0.5,
		"model.layers.0.mlp.weight":  0.5,
		"model.layers.1.mlp.weight":  0.5 + 0.6*0.5,
		"model.layers.2.mlp.weight":  0.5 + 0.6,
		"model.layers.2.norm.weight": 0.5 + 0.6,
		"model.norm.weight":          0.5,
	}
	want := map[string][]float64{}
	for _, name := range f.names {
		taus := f.taus(name)
		v := make([]float64, len(f.base[name]))
		for i := range v {
			v[i] = f.base[name][i] + scale[name]*(taus[0][i]+taus[1][i])
		}
		want[name] = v
	}
	assertClose(t, "lines", got, want, tol)
}

func TestConsensusMatchesReference(t *testing.T) {
	f := newFixture(t, 3, 6)
	got, _, _ := f.run(t, 3, Config{Method: Consensus, Lambda: lam(0.9), K: ptr(2), TallLambda: []float64{0.4}}, tasks.StreamOptions{})
	want := map[string][]float64{}
	for _, name := range f.names {
		taus := f.taus(name)
		v := make([]float64, len(f.base[name]))
		for i := range v {
			mtl := taus[0][i] + taus[1][i] + taus[2][i]
			count := 0
			for _, tau := range taus {
				if math.Abs(tau[i]) > 0.4*math.Abs(mtl-tau[i]) {
					count++
				}
			}
			if count >= 2 {
				v[i] = f.base[name][i] + 0.9*mtl
			} else {
				v[i] = f.base[name][i]
			}
		}
		want[name] = v
	}
	assertClose(t, "consensus", got, want, tol)
}

func TestModelStockAndLinearMatchReference(t *testing.T) {
	f := newFixture(t, 3, 7)
	got, _, _ := f.run(t, 3, Config{Method: ModelStock}, tasks.StreamOptions{})
	want := map[string][]float64{}
	for _, name := range f.names {
		taus := f.taus(name)
		var cos float64
		for i := range 3 {
			for j := i + 1; j < 3; j++ {
				var dot, a, b float64
				for k := range taus[i] {
					dot += taus[i][k] * taus[j][k]
					a += taus[i][k] * taus[i][k]
					b += taus[j][k] * taus[j][k]
				}
				cos += dot / math.Sqrt(a*b) / 3
			}
		}
		tt := 3 * cos / (1 + 2*cos)
		v := make([]float64, len(f.base[name]))
		for i := range v {
			avg := (f.models[0][name][i] + f.models[1][name][i] + f.models[2][name][i]) / 3
			v[i] = tt*avg + (1-tt)*f.base[name][i]
		}
		want[name] = v
	}
	assertClose(t, "model stock", got, want, 1e-5)

	got, _, _ = f.run(t, 3, Config{Method: Linear, Weights: []float64{1, 2, 1}}, tasks.StreamOptions{})
	for _, name := range f.names {
		v := make([]float64, len(f.base[name]))
		for i := range v {
			v[i] = (f.models[0][name][i] + 2*f.models[1][name][i] + f.models[2][name][i]) / 4
		}
		want[name] = v
	}
	assertClose(t, "linear", got, want, tol)

	// mergekit's normalize: false is the weighted sum, whose weights may
	// sum to 0 (a difference of models).
	got, _, _ = f.run(t, 3, Config{Method: Linear, Semantics: Mergekit, Weights: []float64{1, -1, 0}, Normalize: ptr(false)}, tasks.StreamOptions{})
	for _, name := range f.names {
		v := make([]float64, len(f.base[name]))
		for i := range v {
			v[i] = f.models[0][name][i] - f.models[1][name][i]
		}
		want[name] = v
	}
	assertClose(t, "linear without normalize", got, want, tol)
	if _, err := (Config{Method: Linear, Semantics: Mergekit, Weights: []float64{1, -1, 0}}).Resolve(3); err == nil ||
		!strings.Contains(err.Error(), "sum to 0") {
		t.Errorf("a normalized average of weights summing to 0: error %v", err)
	}
}

func TestBreadcrumbsMatchesReference(t *testing.T) {
	f := newFixture(t, 2, 8)
	for _, tc := range []struct {
		name           string
		sem            Semantics
		density, gamma float64
	}{
		{"paper", Paper, 0.6, 0.1},
		// mergekit's magnitude_outliers: when density + gamma > 1, fewer
		// large entries are dropped (n_top += n_bot, n_bot = 0); density 1,
		// its default, keeps the task vectors whole.
		{"mergekit, density + gamma > 1", Mergekit, 0.95, 0.1},
		{"mergekit default density", Mergekit, 1, 0.01},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Method: Breadcrumbs, Semantics: tc.sem, Density: []float64{tc.density}, Gamma: []float64{tc.gamma}, Lambda: lam(1)}
			if tc.sem == Mergekit {
				cfg.Weights = []float64{1}
			}
			got, _, _ := f.run(t, 2, cfg, tasks.StreamOptions{})
			want := map[string][]float64{}
			for _, name := range f.names {
				taus := f.taus(name)
				v := append([]float64(nil), f.base[name]...)
				for _, tau := range taus {
					n := int64(len(tau))
					nTop := int64(tc.gamma * float64(n))
					nBot := n - int64(tc.density*float64(n)) - nTop
					if nBot < 0 {
						nTop, nBot = nTop+nBot, 0
					}
					tau32 := make([]float32, n)
					for i, x := range tau {
						tau32[i] = float32(x)
					}
					keep := rankKeepBySort(tau32, nBot, n-nTop)
					for i, k := range keep {
						if k || tc.density >= 1 {
							v[i] += tau[i]
						}
					}
				}
				want[name] = v
			}
			assertClose(t, "breadcrumbs", got, want, tol)
		})
	}
	if _, err := (Config{Method: Breadcrumbs, Density: []float64{0.95}, Gamma: []float64{0.1}}).Resolve(2); err == nil ||
		!strings.Contains(err.Error(), "density 0.95 (model 1) plus gamma 0.1 exceeds 1") {
		t.Errorf("paper Breadcrumbs with density + gamma > 1: error %v", err)
	}
}

func TestMergekitTIESMatchesReference(t *testing.T) {
	// mergekit ties per tensor: keep exactly int(density·n) largest, weight,
	// sign by Σ w τ ≥ 0, divide by the agreeing weights.
	f := newFixture(t, 2, 9)
	w := []float64{0.7, 0.3}
	cfg := Config{Method: TIES, Semantics: Mergekit, Weights: w, Density: []float64{0.5}}
	got, _, _ := f.run(t, 2, cfg, tasks.StreamOptions{})
	want := map[string][]float64{}
	for _, name := range f.names {
		taus := f.taus(name)
		for _, tau := range taus {
			n := int64(len(tau))
			tau32 := make([]float32, n)
			for i, x := range tau {
				tau32[i] = float32(x)
			}
			keep := topKBySort(tau32, int(0.5*float64(n)))
			for i, k := range keep {
				if !k {
					tau[i] = 0
				}
			}
		}
		v := make([]float64, len(f.base[name]))
		for i := range v {
			total := w[0]*taus[0][i] + w[1]*taus[1][i]
			var acc, div float64
			for t, tau := range taus {
				u := w[t] * tau[i]
				if (total >= 0 && u > 0) || (total < 0 && u < 0) {
					acc += u
					div += w[t]
				}
			}
			if div == 0 {
				div = 1
			}
			v[i] = f.base[name][i] + acc/div
		}
		want[name] = v
	}
	assertClose(t, "mergekit ties", got, want, tol)
}

func TestYAMLGlobalTIESIsThePapersTIES(t *testing.T) {
	f := newFixture(t, 3, 10)
	yml := "merge_method: ties\nbase_model: base\nparameters:\n  ties_scope: model\n  density: 0.5\n  lambda: 0.7\nmodels:\n"
	for i := range 3 {
		yml += "  - model: " + modelName(i) + "\n    parameters:\n      weight: 1\n"
	}
	plan, err := ParseMergekitYAML([]byte(yml), "config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, _, _ := f.run(t, 3, plan.Config, tasks.StreamOptions{})
	assertClose(t, "yaml ties_scope: model", got, referenceTIES(f, 0.5, 0.7), tol)
}

func TestConsensusSavesPackedMasks(t *testing.T) {
	f := newFixture(t, 3, 11)
	masks := filepath.Join(t.TempDir(), "masks.safetensors")
	cfg := Config{Method: Consensus, Lambda: lam(1), TallLambda: []float64{0.3, 0.4, 0.5}, MasksOut: masks}
	f.run(t, 3, cfg, tasks.StreamOptions{ChunkElems: 8, Workers: 2})
	c, err := checkpoint.Open(masks)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Metadata["bit_order"] != "big" || c.Metadata["k"] != "2" {
		t.Errorf("metadata = %v", c.Metadata)
	}
	bit := func(packed []byte, i int) bool { return packed[i/8]&(0x80>>(i%8)) != 0 }
	for _, name := range f.names {
		taus := f.taus(name)
		lambdas := []float64{0.3, 0.4, 0.5}
		var packed [][]byte
		for i := range 3 {
			p, err := c.ReadRaw("mask."+string(rune('0'+i))+"."+name, nil)
			if err != nil {
				t.Fatal(err)
			}
			packed = append(packed, p)
		}
		cons, err := c.ReadRaw("consensus."+name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := (len(taus[0]) + 7) / 8; len(cons) != want {
			t.Fatalf("%s: %d packed bytes, want %d", name, len(cons), want)
		}
		for e := range taus[0] {
			mtl := taus[0][e] + taus[1][e] + taus[2][e]
			count := 0
			for i := range 3 {
				want := math.Abs(taus[i][e]) > lambdas[i]*math.Abs(mtl-taus[i][e])
				if bit(packed[i], e) != want {
					t.Fatalf("%s: mask %d entry %d = %v, want %v", name, i, e, !want, want)
				}
				if want {
					count++
				}
			}
			if bit(cons, e) != (count >= 2) {
				t.Fatalf("%s: consensus entry %d wrong", name, e)
			}
		}
	}
}

// referenceDARE drops with the documented generator (keep element i of
// member t when uniform(streamKey(seed, t, name), i) < density) and rescales
// the survivors by 1/density, as in the DARE paper.
func referenceDARE(f *fixture, seed uint64, density float64) map[string][][]float64 {
	out := map[string][][]float64{}
	for _, name := range f.names {
		taus := f.taus(name)
		for t, tau := range taus {
			key := streamKey(seed, t, name)
			for i := range tau {
				if uniform(key, int64(i)) < density {
					tau[i] = float64(float32(tau[i]) * float32(1/density))
				} else {
					tau[i] = 0
				}
			}
		}
		out[name] = taus
	}
	return out
}

func TestDAREMatchesReference(t *testing.T) {
	f := newFixture(t, 3, 12)
	dropped := referenceDARE(f, 5, 0.5)
	got, _, _ := f.run(t, 3, Config{Method: DARELinear, Density: []float64{0.5}, Seed: 5, Lambda: lam(0.5)}, tasks.StreamOptions{ChunkElems: 4})
	want := map[string][]float64{}
	for _, name := range f.names {
		v := make([]float64, len(f.base[name]))
		for i := range v {
			v[i] = f.base[name][i] + 0.5*(dropped[name][0][i]+dropped[name][1][i]+dropped[name][2][i])
		}
		want[name] = v
	}
	assertClose(t, "dare_linear", got, want, tol)

	// dare_ties: the dropped vectors go through TIES's election with the
	// whole-model majority sign and the disjoint mean.
	got, _, _ = f.run(t, 3, Config{Method: DARETIES, Density: []float64{0.5}, Seed: 5}, tasks.StreamOptions{})
	var total float64
	for _, name := range f.names {
		for i := range f.base[name] {
			total += signf(dropped[name][0][i] + dropped[name][1][i] + dropped[name][2][i])
		}
	}
	for _, name := range f.names {
		v := make([]float64, len(f.base[name]))
		for i := range v {
			s := signf(dropped[name][0][i] + dropped[name][1][i] + dropped[name][2][i])
			if s == 0 {
				s = signf(total)
			}
			var sum float64
			n := 0
			for _, tau := range dropped[name] {
				if (s > 0 && tau[i] > 0) || (s <= 0 && tau[i] < 0) {
					sum += tau[i]
					n++
				}
			}
			v[i] = f.base[name][i] + sum/math.Max(float64(n), 1)
		}
		want[name] = v
	}
	assertClose(t, "dare_ties", got, want, tol)
}

func TestLinesOnTIESUsesTheNormRatio(t *testing.T) {
	f := newFixture(t, 3, 13)
	got, res, _ := f.run(t, 3, Config{Method: TIES, Lines: &Lines{Beta: lam(0.5)}}, tasks.StreamOptions{})
	ties := referenceTIES(f, 0.2, 1)
	var sumL1, mergedL1 float64
	for _, name := range f.names {
		taus := f.taus(name)
		for i := range f.base[name] {
			sumL1 += math.Abs(taus[0][i] + taus[1][i] + taus[2][i])
			mergedL1 += math.Abs(ties[name][i] - f.base[name][i])
		}
	}
	alpha := sumL1 / mergedL1 / 3
	if a := res.Params["lines"].(map[string]any)["alpha"].(float64); math.Abs(a-alpha) > 1e-9 {
		t.Fatalf("alpha = %v, want %v", a, alpha)
	}
	block := map[string]float64{"model.layers.0.mlp.weight": 0, "model.layers.1.mlp.weight": 0.5, "model.layers.2.mlp.weight": 1, "model.layers.2.norm.weight": 1}
	want := map[string][]float64{}
	for _, name := range f.names {
		scale := alpha + 0.5*block[name]
		v := make([]float64, len(f.base[name]))
		for i := range v {
			v[i] = f.base[name][i] + scale*(ties[name][i]-f.base[name][i])
		}
		want[name] = v
	}
	assertClose(t, "lines on ties", got, want, 1e-5)
}

func ptr[T any](v T) *T { return &v }
