package merge

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/editkit/editkit/tasks"
)

// depthOf is the fixture's block index ℓ of L = 3 blocks, -1 outside.
func depthOf(name string) int {
	for l, p := range []string{"model.layers.0.", "model.layers.1.", "model.layers.2."} {
		if strings.HasPrefix(name, p) {
			return l
		}
	}
	return -1
}

// at is θ(c) of every fixture tensor, formed with Direction.At from the
// base's values.
func at(t *testing.T, f *fixture, d *Direction, c float64) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, name := range f.names {
		base := make([]float32, len(f.base[name]))
		for i, v := range f.base[name] {
			base[i] = float32(v)
		}
		dst := make([]float32, len(base))
		if err := d.At(c, name, base, dst); err != nil {
			t.Fatal(err)
		}
		out[name] = dst
	}
	return out
}

// TestDirectionMatchesReferenceAndRun: θ(c) from one unit merge equals the
// float64 formula θ₀ + s(ℓ, c)·Δ written out here, and the merge that
// Config(c) makes Run write.
func TestDirectionMatchesReferenceAndRun(t *testing.T) {
	f := newFixture(t, 2, 11)
	sum := func(n int, scale func(name string) float64) map[string][]float64 {
		want := map[string][]float64{}
		for _, name := range f.names {
			taus := f.taus(name)
			v := make([]float64, len(f.base[name]))
			for i := range v {
				var s float64
				for _, tau := range taus[:n] {
					s += tau[i]
				}
				v[i] = f.base[name][i] + scale(name)*s
			}
			want[name] = v
		}
		return want
	}
	lines := func(alpha, beta float64) func(string) float64 {
		return func(name string) float64 {
			if l := depthOf(name); l >= 0 {
				return alpha + beta*float64(l)/2
			}
			return alpha
		}
	}
	const c = 0.35
	for _, tc := range []struct {
		name   string
		n      int
		recipe Config
		o      DirectionOptions
		alpha  float64 // Direction.Alpha expected for β
		want   map[string][]float64
		params map[string]any // Config(c) resolved, compared with this recipe's
	}{
		{"lambda", 2, Config{Method: TaskArithmetic}, DirectionOptions{}, 0,
			sum(2, func(string) float64 { return c }), Config{Method: TaskArithmetic, Lambda: lam(c)}.resolved(t, 2)},
		{"negation", 1, Config{Method: TaskArithmetic}, DirectionOptions{Negate: true}, 0,
			sum(1, func(string) float64 { return -c }), Config{Method: TaskArithmetic, Lambda: lam(-c)}.resolved(t, 1)},
		{"ties", 2, Config{Method: TIES, Lambda: lam(0.9)}, DirectionOptions{}, 0,
			referenceTIES(f, 0.2, c), Config{Method: TIES, Lambda: lam(c)}.resolved(t, 2)},
		{"lines beta", 2, Config{Method: TaskArithmetic, Lines: &Lines{}}, DirectionOptions{Coefficient: CoefLinesBeta}, 0.5,
			sum(2, lines(0.5, c)), Config{Method: TaskArithmetic, Lines: &Lines{Beta: lam(c)}}.resolved(t, 2)},
		{"lines beta, given alpha", 2, Config{Method: TaskArithmetic, Lines: &Lines{Alpha: lam(0.3), Beta: lam(0.8)}}, DirectionOptions{Coefficient: CoefLinesBeta}, 0.3,
			sum(2, lines(0.3, c)), Config{Method: TaskArithmetic, Lines: &Lines{Alpha: lam(0.3), Beta: lam(c)}}.resolved(t, 2)},
		{"lines alpha", 1, Config{Method: TaskArithmetic}, DirectionOptions{Coefficient: CoefLinesAlpha}, 0,
			sum(1, lines(c, 1-c)), Config{Method: TaskArithmetic, Lines: &Lines{Alpha: lam(c)}}.resolved(t, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.recipe.clone()
			d, err := NewDirection(f.set(t, tc.n), tc.recipe, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(before, tc.recipe) {
				t.Errorf("NewDirection modified the recipe: %+v", tc.recipe)
			}
			if d.Alpha != tc.alpha {
				t.Errorf("α = %v, want %v", d.Alpha, tc.alpha)
			}
			got := at(t, f, d, c)
			assertClose(t, "At", got, tc.want, tol)
			cfg := d.Config(c)
			written, res, _ := f.run(t, tc.n, cfg, tasks.StreamOptions{})
			assertClose(t, "Run(Config(c))", written, tc.want, tol)
			for k, v := range tc.params {
				if k == "lines" { // the written α is computed from the data
					continue
				}
				if !reflect.DeepEqual(res.Params[k], v) {
					t.Errorf("Config(c) param %s = %v, the recipe given c directly: %v", k, res.Params[k], v)
				}
			}
			if want, ok := tc.params["lines"].(map[string]any); ok {
				l := res.Params["lines"].(map[string]any)
				if l["beta"] != want["beta"] || (want["alpha"] != nil && l["alpha"] != want["alpha"]) {
					t.Errorf("Config(c) LiNeS %v, want %v", l, want)
				}
			}
			if len(d.Tensors()) != len(f.names) {
				t.Errorf("holds %d tensors, want every float tensor (%d)", len(d.Tensors()), len(f.names))
			}
		})
	}
}

// resolved resolves c and returns its parameters.
func (c Config) resolved(t *testing.T, n int) map[string]any {
	t.Helper()
	v, err := c.Resolve(n)
	if err != nil {
		t.Fatal(err)
	}
	return v.Params()
}

func TestDirectionOptions(t *testing.T) {
	f := newFixture(t, 2, 12)
	d, err := NewDirection(f.set(t, 2), Config{Method: TaskArithmetic}, DirectionOptions{Tensors: []string{"model.norm.weight"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Tensors(); len(got) != 1 || got[0] != "model.norm.weight" {
		t.Errorf("Tensors() = %v", got)
	}
	buf := make([]float32, 4)
	if err := d.At(1, "model.embed_tokens.weight", make([]float32, 20), make([]float32, 20)); err == nil || !strings.Contains(err.Error(), "no tensor") {
		t.Errorf("At on a tensor not held: %v", err)
	}
	if err := d.At(1, "model.norm.weight", buf[:3], buf); err == nil {
		t.Error("At with a base of the wrong size: no error")
	}
	// dst may be base: θ(c) in place.
	base := make([]float32, 4)
	for i, v := range f.base["model.norm.weight"] {
		base[i] = float32(v)
	}
	if err := d.At(0.5, "model.norm.weight", base, base); err != nil {
		t.Fatal(err)
	}
	taus := f.taus("model.norm.weight")
	for i := range base {
		if want := f.base["model.norm.weight"][i] + 0.5*(taus[0][i]+taus[1][i]); math.Abs(float64(base[i])-want) > tol {
			t.Errorf("in place [%d] = %v, want %v", i, base[i], want)
		}
	}
	for _, tc := range []struct {
		n      int
		recipe Config
		o      DirectionOptions
		want   string
	}{
		{2, Config{Method: TaskArithmetic, Lines: &Lines{Beta: lam(0.1)}}, DirectionOptions{}, "replaces λ"},
		{2, Config{Method: TaskArithmetic}, DirectionOptions{Coefficient: CoefLinesAlpha}, "one model"},
		{1, Config{Method: TaskArithmetic}, DirectionOptions{Coefficient: CoefLinesBeta, Negate: true}, "negation varies λ"},
		{1, Config{Method: TaskArithmetic}, DirectionOptions{Coefficient: "gamma"}, "unknown coefficient"},
		{2, Config{Method: Linear}, DirectionOptions{}, "does not apply"},
	} {
		if _, err := NewDirection(f.set(t, tc.n), tc.recipe, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v %+v: err %v, want %q", tc.recipe, tc.o, err, tc.want)
		}
	}
	if CoefLambda.Symbol() != "λ" || CoefLinesBeta.Symbol() != "β" || CoefLinesAlpha.Symbol() != "α" {
		t.Error("symbols")
	}
}
