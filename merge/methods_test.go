package merge

import (
	"math"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/editkit/editkit/tasks"
)

// Tests of mergekit's methods against independent float64 references,
// written from mergekit's merge_methods/*.py.

// refNuSLERP: t = w2/(w1+w2); SLERP of the task vectors (with a base) or
// the models, per vector (flatten: the whole tensor; else rows, or columns
// with rowWise), lerp where |sin θ| < 1e-8.
func refNuSLERP(f *fixture, name string, w []float64, withBase, flatten, rowWise bool) []float64 {
	a, b := f.models[0][name], f.models[1][name]
	if withBase {
		taus := f.taus(name)
		a, b = taus[0], taus[1]
	}
	t := w[1] / (w[0] + w[1])
	shape := f.shapes[name]
	out := make([]float64, len(a))
	var groups [][]int
	switch {
	case flatten || len(shape) == 1:
		g := make([]int, len(a))
		for i := range g {
			g[i] = i
		}
		groups = append(groups, g)
	case rowWise: // columns
		rows, cols := int(shape[0]), int(shape[1])
		for c := range cols {
			var g []int
			for r := range rows {
				g = append(g, r*cols+c)
			}
			groups = append(groups, g)
		}
	default:
		rows, cols := int(shape[0]), int(shape[1])
		for r := range rows {
			var g []int
			for c := range cols {
				g = append(g, r*cols+c)
			}
			groups = append(groups, g)
		}
	}
	for _, g := range groups {
		var na, nb, d float64
		for _, i := range g {
			na += a[i] * a[i]
			nb += b[i] * b[i]
		}
		na, nb = math.Max(math.Sqrt(na), 1e-7), math.Max(math.Sqrt(nb), 1e-7)
		for _, i := range g {
			d += a[i] / na * b[i] / nb
		}
		th := math.Acos(math.Max(-1, math.Min(1, d)))
		s0, s1 := 1-t, t
		if math.Abs(math.Sin(th)) >= 1e-8 {
			s0, s1 = math.Sin((1-t)*th)/math.Sin(th), math.Sin(t*th)/math.Sin(th)
		}
		for _, i := range g {
			out[i] = s0*a[i] + s1*b[i]
			if withBase {
				out[i] += f.base[name][i]
			}
		}
	}
	return out
}

func TestNuSLERPMatchesReference(t *testing.T) {
	f := newFixture(t, 2, 21)
	w := []float64{0.3, 0.9}
	for _, tc := range []struct {
		name             string
		flatten, rowWise bool
	}{{"flatten", true, false}, {"rows", false, false}, {"columns", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Method: NuSLERP, Semantics: Mergekit, Weights: w, Flatten: ptr(tc.flatten), RowWise: ptr(tc.rowWise)}
			got, _, _ := f.run(t, 2, cfg, tasks.StreamOptions{})
			want := map[string][]float64{}
			for _, n := range f.names {
				want[n] = refNuSLERP(f, n, w, true, tc.flatten, tc.rowWise)
			}
			assertClose(t, "nuslerp", got, want, 1e-5)
		})
	}
	t.Run("without base", func(t *testing.T) {
		cfg := Config{Method: NuSLERP, Semantics: Mergekit, Weights: w, BaseIsLayout: true}
		got, _, _ := f.run(t, 2, cfg, tasks.StreamOptions{})
		want := map[string][]float64{}
		for _, n := range f.names {
			want[n] = refNuSLERP(f, n, w, false, true, false)
		}
		assertClose(t, "nuslerp", got, want, 1e-5)
	})
}

// refKarcher: equal weights; iterate u ← exp_u(Σ_i α (θ_i/sin θ_i)(x_i − cos θ_i u))
// from the normalised mean direction; scale by the mean norm.
func refKarcher(xs [][]float64, maxIter int, tol float64) []float64 {
	n := len(xs)
	norm := func(v []float64) float64 {
		var s float64
		for _, x := range v {
			s += x * x
		}
		return math.Sqrt(s)
	}
	var units [][]float64
	var scale float64
	for _, x := range xs {
		nx := norm(x)
		scale += nx / float64(n)
		if nx > tol {
			u := make([]float64, len(x))
			for i := range x {
				u[i] = x[i] / nx
			}
			units = append(units, u)
		}
	}
	size := len(xs[0])
	a := 1 / float64(len(units))
	u := make([]float64, size)
	for _, v := range units {
		for i := range v {
			u[i] += a * v[i]
		}
	}
	nu := norm(u)
	for i := range u {
		u[i] /= nu
	}
	for range maxIter {
		step := make([]float64, size)
		for _, v := range units {
			var c float64
			for i := range v {
				c += u[i] * v[i]
			}
			c = math.Max(-1, math.Min(1, c))
			th := math.Acos(c)
			if th < tol {
				continue
			}
			for i := range v {
				step[i] += a * th / math.Sin(th) * (v[i] - c*u[i])
			}
		}
		ns := norm(step)
		if ns < tol {
			break
		}
		for i := range u {
			u[i] = math.Cos(ns)*u[i] + math.Sin(ns)*step[i]/ns
		}
		nu := norm(u)
		for i := range u {
			u[i] /= nu
		}
	}
	for i := range u {
		u[i] *= scale
	}
	return u
}

func TestKarcherMatchesReference(t *testing.T) {
	f := newFixture(t, 3, 22)
	got, _, _ := f.run(t, 3, Config{Method: Karcher, Semantics: Mergekit}, tasks.StreamOptions{})
	want := map[string][]float64{}
	for _, n := range f.names {
		var xs [][]float64
		for _, m := range f.models {
			xs = append(xs, m[n])
		}
		want[n] = refKarcher(xs, 10, 1e-5)
	}
	assertClose(t, "karcher", got, want, 1e-5)
}

// refMultiSLERP: project the (base-relative) models to the sphere, average
// in the tangent space at the weighted mean direction, map back and scale
// by the weighted mean norm; weights normalised to sum 1.
func refMultiSLERP(xs [][]float64, w []float64, base []float64, eps float64) []float64 {
	var sw float64
	for _, x := range w {
		sw += x
	}
	size := len(xs[0])
	vs := make([][]float64, len(xs))
	norms := make([]float64, len(xs))
	for k, x := range xs {
		v := slices.Clone(x)
		if base != nil {
			for i := range v {
				v[i] -= base[i]
			}
		}
		var s float64
		for _, e := range v {
			s += e * e
		}
		norms[k] = math.Sqrt(s)
		for i := range v {
			v[i] /= norms[k] + eps
		}
		vs[k] = v
	}
	mean := make([]float64, size)
	for k, v := range vs {
		for i := range v {
			mean[i] += w[k] / sw * v[i]
		}
	}
	var mn float64
	for _, e := range mean {
		mn += e * e
	}
	mn = math.Sqrt(mn)
	for i := range mean {
		mean[i] /= mn
	}
	tan := make([]float64, size)
	for k, v := range vs {
		var d float64
		for i := range v {
			d += v[i] * mean[i]
		}
		for i := range v {
			tan[i] += w[k] / sw * (v[i] - d*mean[i])
		}
	}
	var tn float64
	for _, e := range tan {
		tn += e * e
	}
	tn = math.Sqrt(tn) + eps
	var avg float64
	for k := range xs {
		avg += norms[k] * w[k] / sw
	}
	out := make([]float64, size)
	for i := range out {
		out[i] = (mean[i]*math.Cos(tn) + tan[i]*math.Sin(tn)/tn) * avg
		if base != nil {
			out[i] += base[i]
		}
	}
	return out
}

func TestMultiSLERPMatchesReference(t *testing.T) {
	f := newFixture(t, 3, 23)
	w := []float64{1, 2, 0.5}
	for _, withBase := range []bool{true, false} {
		cfg := Config{Method: MultiSLERP, Semantics: Mergekit, Weights: w, BaseIsLayout: !withBase}
		got, _, _ := f.run(t, 3, cfg, tasks.StreamOptions{})
		want := map[string][]float64{}
		for _, n := range f.names {
			var xs [][]float64
			for _, m := range f.models {
				xs = append(xs, m[n])
			}
			var b []float64
			if withBase {
				b = f.base[n]
			}
			want[n] = refMultiSLERP(xs, w, b, 1e-8)
		}
		assertClose(t, "multislerp", got, want, 1e-5)
	}
	// normalize_weights divides by Σw: weights summing to 0 are refused
	// before any work (mergekit would write NaN).
	if _, err := (Config{Method: MultiSLERP, Semantics: Mergekit, Weights: []float64{1, -1}}).Resolve(2); err == nil || !strings.Contains(err.Error(), "sum to 0") {
		t.Errorf("multislerp weights summing to 0: error %v", err)
	}
}

func TestArceeFusionMatchesReference(t *testing.T) {
	f := newFixture(t, 1, 24)
	got, _, _ := f.run(t, 1, Config{Method: ArceeFusion, Semantics: Mergekit}, tasks.StreamOptions{})
	want := map[string][]float64{}
	mixed := false
	for _, n := range f.names {
		w, unsure, _ := refArceeFusion(f.base[n], f.models[0][n], f.shapes[n])
		if slices.Contains(unsure, true) {
			t.Fatalf("%s: the fixture puts an importance on the threshold", n)
		}
		want[n] = w
		for i := range w {
			mixed = mixed || (w[i] != f.base[n][i] && w[i] == f.models[0][n][i] && f.base[n][i] != f.models[0][n][i])
		}
	}
	if !mixed {
		t.Fatal("the reference keeps no entry of the model: the test would not see the mask")
	}
	assertClose(t, "arcee_fusion", got, want, 1e-6)
}

// refSCE: keep the entries of top variance across the task vectors, weight
// each vector by its mean square, erase entries against the sign of Σ τ.
func refSCE(taus [][]float64, base []float64, topk float64) []float64 {
	n := len(base)
	taus = slices.Clone(taus)
	for k := range taus {
		taus[k] = slices.Clone(taus[k])
	}
	if topk < 1 {
		v := make([]float64, n)
		nonzero := 0
		for i := range v {
			var m float64
			for _, tau := range taus {
				m += tau[i] / float64(len(taus))
			}
			for _, tau := range taus {
				v[i] += (tau[i] - m) * (tau[i] - m) / float64(len(taus))
			}
			if v[i] != 0 {
				nonzero++
			}
		}
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return v[idx[a]] > v[idx[b]] })
		keep := make([]bool, n)
		for _, i := range idx[:int(float64(nonzero)*topk)] {
			keep[i] = true
		}
		for _, tau := range taus {
			for i := range tau {
				if !keep[i] {
					tau[i] = 0
				}
			}
		}
	}
	w := make([]float64, len(taus))
	var sw float64
	for k, tau := range taus {
		for _, x := range tau {
			w[k] += x * x / float64(n)
		}
		sw += w[k]
	}
	for k := range w {
		w[k] /= sw
	}
	out := make([]float64, n)
	for i := range out {
		var s float64
		for _, tau := range taus {
			s += tau[i]
		}
		var acc, div float64
		for k, tau := range taus {
			if (s >= 0 && tau[i] > 0) || (s < 0 && tau[i] < 0) {
				acc += tau[i] * w[k]
				div += w[k]
			}
		}
		out[i] = base[i] + acc/math.Max(div, 1e-6)
	}
	return out
}

func TestSCEMatchesReference(t *testing.T) {
	f := newFixture(t, 3, 25)
	for _, topk := range []float64{1, 0.5} {
		got, _, _ := f.run(t, 3, Config{Method: SCE, Semantics: Mergekit, SelectTopK: ptr(topk)}, tasks.StreamOptions{})
		want := map[string][]float64{}
		for _, n := range f.names {
			want[n] = refSCE(f.taus(n), f.base[n], topk)
		}
		assertClose(t, "sce", got, want, 1e-5)
	}
}

// TestDELLAPrunesByRank checks DELLA's sparsification on one model, where
// the merge is θ_0 + the rescaled surviving entries: every survivor is τ
// times one factor, the factor restores the L1 norm, and the keep rate
// rises with the magnitude's rank within each row from density − ε to
// density + ε.
func TestDELLAPrunesByRank(t *testing.T) {
	shapes := []struct {
		name  string
		shape []int64
	}{{"w", []int64{64, 256}}}
	f := newFixtureShaped(t, 1, 26, shapes)
	const density, eps = 0.5, 0.3
	got, _, _ := f.run(t, 1, Config{Method: DELLA, Semantics: Mergekit, Weights: []float64{1}, Density: []float64{density}, Epsilon: []float64{eps}, Seed: 7}, tasks.StreamOptions{})
	tau := f.taus("w")[0]
	var before, kept float64
	factor := math.NaN()
	const buckets = 8
	var hits, counts [buckets]float64
	for r := range 64 {
		row := tau[r*256 : (r+1)*256]
		idx := make([]int, 256)
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return math.Abs(row[idx[a]]) < math.Abs(row[idx[b]]) })
		for rank, i := range idx {
			k := r*256 + i
			d := float64(got["w"][k]) - f.base["w"][k]
			before += math.Abs(tau[k])
			b := rank * buckets / 256
			counts[b]++
			if tau[k] == 0 {
				continue // zero entries look dropped whatever happened
			}
			if math.Abs(d) > 1e-6 {
				hits[b]++
				kept += math.Abs(tau[k])
				if f := d / tau[k]; math.IsNaN(factor) {
					factor = f
				} else if math.Abs(f-factor) > 1e-4*factor {
					t.Fatalf("entry %d scaled by %v, others by %v", k, f, factor)
				}
			}
		}
	}
	if math.Abs(factor-before/kept) > 1e-4*factor {
		t.Errorf("survivors scaled by %v, want the L1 ratio %v", factor, before/kept)
	}
	for b := range buckets {
		want := density - eps + 2*eps*(float64(b)+0.5)/buckets
		if rate := hits[b] / counts[b]; math.Abs(rate-want) > 0.06 {
			t.Errorf("rank bucket %d: kept %.3f, want about %.3f", b, rate, want)
		}
	}
}

func TestSettingEval(t *testing.T) {
	g := &setting{grad: []float64{0, 0.5, 0.3, 0.7, 1}}
	conds := &setting{conds: []condition{
		{filter: "self_attn", value: g},
		{filter: "mlp", value: &setting{scalar: 0.25}},
		{value: &setting{scalar: 0.5}},
	}}
	noFallback := &setting{conds: []condition{{filter: "mlp", value: &setting{scalar: 1.0}}}}
	for _, tc := range []struct {
		s      *setting
		tensor string
		t      float64
		want   float64
		ok     bool
	}{
		{g, "x", 0, 0, true},
		{g, "x", 1, 1, true},
		{g, "x", 0.25, 0.5, true},
		{g, "x", 0.375, 0.4, true}, // halfway between 0.5 and 0.3
		{g, "x", 0.9, 0.88, true},  // 0.4·0.7 + 0.6·1
		{conds, "model.layers.3.self_attn.q_proj.weight", 0.5, 0.3, true},
		{conds, "model.layers.3.mlp.up_proj.weight", 0.5, 0.25, true},
		{conds, "model.norm.weight", 0, 0.5, true},
		{noFallback, "model.norm.weight", 0, 0, false},
		{&setting{scalar: 2.0}, "", 0.3, 2, true},
		{&setting{grad: []float64{0.7}}, "x", 0.6, 0.7, true},
	} {
		v, ok := tc.s.eval(tc.tensor, tc.t)
		if ok != tc.ok || (ok && math.Abs(v.(float64)-tc.want) > 1e-12) {
			t.Errorf("eval(%q, %v) = %v, %v; want %v, %v", tc.tensor, tc.t, v, ok, tc.want, tc.ok)
		}
	}
}

func TestResolveReturnsANewConfig(t *testing.T) {
	in := Config{Method: TIES, Weights: []float64{1}, Density: []float64{0.3}}
	r, err := in.Resolve(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Weights) != 1 || len(in.Density) != 1 || in.Lambda != nil || in.TIESScope != "" {
		t.Errorf("Resolve changed its input: %+v", in)
	}
	if !slices.Equal(r.Density, []float64{0.3, 0.3, 0.3}) || *r.Lambda != 1 || r.TIESScope != ScopeModel || r.TIESAggregate != "mean" {
		t.Errorf("resolved %+v", r)
	}
	r.Density[0] = 0.9
	if in.Density[0] != 0.3 {
		t.Error("the resolved config shares storage with its input")
	}
}

func TestParamErrorWording(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		n    int
		flag string // the CLI's wording
	}{
		{Config{Method: TIES, Density: []float64{1.5}}, 2, "--density 1.5 is outside (0, 1]"},
		{Config{Method: TIES, Density: []float64{0.2, math.NaN()}}, 2, "--density 0.2,NaN (model 2) is not a finite number"},
		{Config{Method: TaskArithmetic, Lambda: ptr(math.Inf(1))}, 2, "--lambda +Inf is not a finite number"},
		{Config{Method: TaskArithmetic}, 2, "--lambda is required for task_arithmetic"},
		{Config{Method: Consensus, Lambda: ptr(1.0), K: ptr(4)}, 3, "--k 4 must be ≤ N = 3"},
		{Config{Method: Consensus, Lambda: ptr(1.0), TallLambda: []float64{-1}}, 3, "--tall-lambda -1 is outside ≥ 0"},
		{Config{Method: TaskArithmetic, Lambda: ptr(1.0), Density: []float64{0.5}}, 2, "--density 0.5 does not apply to task_arithmetic (task_arithmetic takes weight, lambda"},
		{Config{Method: TIES, T: ptr(0.5)}, 2, "--t 0.5 does not apply to ties"},
	} {
		_, err := tc.cfg.Resolve(tc.n)
		pe, ok := err.(*ParamError)
		if !ok {
			t.Errorf("%+v: error %v is not a *ParamError", tc.cfg, err)
			continue
		}
		if got := pe.Message("--" + ParamByName(pe.Param).Flag); !startsWith(got, tc.flag) {
			t.Errorf("message %q, want it to start %q", got, tc.flag)
		}
	}
}

func startsWith(s, prefix string) bool { return len(s) >= len(prefix) && s[:len(prefix)] == prefix }
