package linearize

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
)

// TestJVPFiniteDifferences compares the JVP with central finite
// differences of the model itself, (f(θ₀ + h·d) − f(θ₀ − h·d))/2h, in
// float64, on every reference model (ViT, CLIP image towers in both
// namings, LLaMA).
func TestJVPFiniteDifferences(t *testing.T) {
	for _, name := range refCases {
		t.Run(name, func(t *testing.T) {
			m := loadRef(t, name)
			d := randomDirection(m.specs, m.w, 0.1, 1)
			w0, d64 := to64(m.w), to64(d)
			const h = 1e-5
			plus, minus := map[string]*tensors.Tensor{}, map[string]*tensors.Tensor{}
			for _, s := range m.specs {
				a, b := tensors.MustCopyFlatData[float64](w0[s.Name]), tensors.MustCopyFlatData[float64](d64[s.Name])
				p, q := make([]float64, len(a)), make([]float64, len(a))
				for i := range a {
					p[i], q[i] = a[i]+h*b[i], a[i]-h*b[i]
				}
				dims := m.w[s.Name].Shape().Dimensions
				plus[s.Name], minus[s.Name] = tensors.FromFlatDataAndDimensions(p, dims...), tensors.FromFlatDataAndDimensions(q, dims...)
			}
			outs := run64(t, m.specs, []map[string]*tensors.Tensor{w0, d64, plus, minus}, input64(m.input),
				func(ps []models.Params, in *graph.Node) []*graph.Node {
					_, tan := JVP(m.f, ps[0], []*graph.Node{in}, ps[1])
					return []*graph.Node{tan[0][0], m.f(ps[2], []*graph.Node{in})[0], m.f(ps[3], []*graph.Node{in})[0]}
				})
			jvp := outs[0]
			fd := make([]float64, len(jvp))
			for i := range fd {
				fd[i] = (outs[1][i] - outs[2][i]) / (2 * h)
			}
			scale := maxAbs(fd)
			diff := maxDiff(jvp, fd)
			t.Logf("%s: max |JVP − finite differences| = %.3g (max |JVP| %.3g, %d outputs)", name, diff, scale, len(fd))
			if scale < 1e-2 {
				t.Fatalf("the JVP is nearly zero (%g): the check says little", scale)
			}
			if diff > 1e-7*max(1, scale) {
				t.Errorf("JVP differs from finite differences by %g", diff)
			}
		})
	}
}

// TestJVPMatchesPyTorch compares the primal outputs and JVPs with
// PyTorch's forward-mode autodiff (torch.autograd.forward_ad, written by
// tools/torchref/jvp.py) on the image encoders, in float64 (the graph run
// on the float32 weights and direction converted exactly, as PyTorch did)
// and in float32 through Model (f_lin(θ₀ + d) = f(θ₀) + J·d).
func TestJVPMatchesPyTorch(t *testing.T) {
	for _, name := range refCases[:3] {
		t.Run(name, func(t *testing.T) {
			m := loadRef(t, name)
			ref := readRef(t, name)
			if len(ref.direction) != len(m.specs) {
				t.Fatalf("the reference moves %d tensors, the encoder has %d", len(ref.direction), len(m.specs))
			}
			outs := run64(t, m.specs, []map[string]*tensors.Tensor{to64(m.w), to64(ref.direction)}, input64(ref.pixels),
				func(ps []models.Params, in *graph.Node) []*graph.Node {
					prim, tan := JVP(m.f, ps[0], []*graph.Node{in}, ps[1])
					return []*graph.Node{prim[0], tan[0][0]}
				})
			prim, jvp := f64(ref.primal), f64(ref.jvp)
			dp, dj := maxDiff(outs[0], prim), maxDiff(outs[1], jvp)
			t.Logf("float64: max diff to PyTorch: primal %.3g, JVP %.3g (max |JVP| %.3g)", dp, dj, maxAbs(jvp))
			if dp > 1e-6 || dj > 1e-6 {
				t.Errorf("float64 primal/JVP differ from PyTorch's by %g/%g (> 1e-6, the reference's float32 rounding)", dp, dj)
			}

			lin, err := New(name, m.f, m.specs, m.w)
			if err != nil {
				t.Fatal(err)
			}
			defer lin.Close()
			theta := make(models.Weights, len(m.specs))
			for _, s := range m.specs {
				a, b := m.w.Float32(s.Name), ref.direction.Float32(s.Name)
				for i := range a {
					a[i] += b[i]
				}
				theta[s.Name] = tensors.FromFlatDataAndDimensions(a, m.w[s.Name].Shape().Dimensions...)
			}
			got, err := lin.Call(theta, ref.pixels)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]float64, len(prim))
			for i := range want {
				want[i] = prim[i] + jvp[i]
			}
			d := maxDiff(f64(tensors.MustCopyFlatData[float32](got[0])), want)
			t.Logf("float32: max |f_lin(θ₀+d) − (f + J·d)_PyTorch| = %.3g", d)
			if d > 1e-4 {
				t.Errorf("float32 f_lin differs from PyTorch's f + J·d by %g (> 1e-4)", d)
			}
		})
	}
}

// TestExactAtBase checks f_lin(θ₀) == f(θ₀) bit for bit: θ − θ₀ is exactly
// zero there, and so is the JVP.
func TestExactAtBase(t *testing.T) {
	for _, name := range refCases {
		t.Run(name, func(t *testing.T) {
			m := loadRef(t, name)
			plain, err := models.NewFunc(models.Backend(), name, m.specs, m.f)
			if err != nil {
				t.Fatal(err)
			}
			defer plain.Finalize()
			want, err := plain.Call(m.w, m.input)
			if err != nil {
				t.Fatal(err)
			}
			lin, err := New(name, m.f, m.specs, m.w)
			if err != nil {
				t.Fatal(err)
			}
			defer lin.Close()
			got, err := lin.Call(m.w, m.input)
			if err != nil {
				t.Fatal(err)
			}
			a, b := tensors.MustCopyFlatData[float32](got[0]), tensors.MustCopyFlatData[float32](want[0])
			if !slices.Equal(a, b) {
				t.Errorf("f_lin(θ₀) differs from f(θ₀): max diff %g", maxDiff(f64(a), f64(b)))
			}
		})
	}
}

// TestAffine checks that f_lin is affine in θ: f_lin(θ₀ + aΔ) − f_lin(θ₀) =
// a·(f_lin(θ₀ + Δ) − f_lin(θ₀)), in float64, for coefficients of both
// signs and beyond 1; and that f_lin is not f away from θ₀.
func TestAffine(t *testing.T) {
	for _, name := range []string{"hf-vit", "openai-clip"} {
		t.Run(name, func(t *testing.T) {
			m := loadRef(t, name)
			delta := to64(randomDirection(m.specs, m.w, 0.3, 2))
			w0 := to64(m.w)
			coefs := []float64{1, 0.5, -2, 3}
			groups := []map[string]*tensors.Tensor{w0}
			for _, a := range coefs {
				g := map[string]*tensors.Tensor{}
				for _, s := range m.specs {
					x, d := tensors.MustCopyFlatData[float64](w0[s.Name]), tensors.MustCopyFlatData[float64](delta[s.Name])
					for i := range x {
						x[i] += a * d[i]
					}
					g[s.Name] = tensors.FromFlatDataAndDimensions(x, w0[s.Name].Shape().Dimensions...)
				}
				groups = append(groups, g)
			}
			outs := run64(t, m.specs, groups, input64(m.input), func(ps []models.Params, in *graph.Node) []*graph.Node {
				var res []*graph.Node
				for _, p := range ps {
					res = append(res, Forward(m.f, p, ps[0], []*graph.Node{in})[0])
				}
				return append(res, m.f(ps[1], []*graph.Node{in})[0])
			})
			base, unit := outs[0], outs[1]
			step := make([]float64, len(base))
			for i := range step {
				step[i] = unit[i] - base[i]
			}
			for k, a := range coefs[1:] {
				got := outs[2+k]
				worst := 0.0
				for i := range got {
					worst = max(worst, math.Abs((got[i]-base[i])-a*step[i]))
				}
				if worst > 1e-12*max(1, maxAbs(step)*math.Abs(a)) {
					t.Errorf("a = %g: f_lin(θ₀+aΔ) − f_lin(θ₀) differs from a·(f_lin(θ₀+Δ) − f_lin(θ₀)) by %g", a, worst)
				}
			}
			if d := maxDiff(unit, outs[len(outs)-1]); d < 1e-3 {
				t.Errorf("f_lin(θ₀+Δ) is within %g of f(θ₀+Δ): the model is nearly linear here and the test says little", d)
			}
		})
	}
}

// TestGradientFiniteDifferences checks the gradient of a loss of f_lin
// with respect to θ (graph.Gradient through the JVP, what training uses)
// against central finite differences, in float64, away from θ₀.
func TestGradientFiniteDifferences(t *testing.T) {
	m := loadRef(t, "hf-clip")
	rng := rand.New(rand.NewPCG(5, 5))
	w0 := to64(m.w)
	theta := to64(addScaled(m.w, randomDirection(m.specs, m.w, 0.2, 3), 1))
	names := make([]string, len(m.specs))
	for i, s := range m.specs {
		names[i] = s.Name
	}
	var r []float64
	exec, err := graph.NewExec(models.Backend(), func(all []*graph.Node) []*graph.Node {
		n := len(names)
		base, th := models.Params{}, models.Params{}
		for i, name := range names {
			base[name], th[name] = all[i], all[n+i]
		}
		y := Forward(m.f, th, base, []*graph.Node{all[2*n]})[0]
		if r == nil {
			r = make([]float64, y.Shape().Size())
			for i := range r {
				r[i] = rng.NormFloat64()
			}
		}
		// A loss that is not linear in f_lin: Σ r·y + ½Σ y².
		rc := graph.Const(y.Graph(), tensors.FromFlatDataAndDimensions(r, y.Shape().Dimensions...))
		loss := graph.Add(graph.ReduceAllSum(graph.Mul(rc, y)), graph.MulScalar(graph.ReduceAllSum(graph.Mul(y, y)), 0.5))
		return append([]*graph.Node{loss}, graph.Gradient(loss, all[n:2*n]...)...)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	in := input64(m.input)
	call := func(th map[string]*tensors.Tensor) []*tensors.Tensor {
		args := make([]any, 0, 2*len(names)+1)
		for _, n := range names {
			args = append(args, w0[n])
		}
		for _, n := range names {
			args = append(args, th[n])
		}
		outs, err := exec.Exec(append(args, in)...)
		if err != nil {
			t.Fatal(err)
		}
		return outs
	}
	outs := call(theta)
	const h = 1e-5
	checked, largest := 0, 0.0
	for k, name := range names {
		if k%3 != 0 {
			continue
		}
		g := tensors.MustCopyFlatData[float64](outs[1+k])
		vals := tensors.MustCopyFlatData[float64](theta[name])
		dims := theta[name].Shape().Dimensions
		for _, j := range []int{0, len(vals) / 2, len(vals) - 1} {
			loss := func(delta float64) float64 {
				v := slices.Clone(vals)
				v[j] += delta
				th := maps(theta)
				th[name] = tensors.FromFlatDataAndDimensions(v, dims...)
				return tensors.MustCopyFlatData[float64](call(th)[0])[0]
			}
			fd := (loss(h) - loss(-h)) / (2 * h)
			if math.Abs(fd-g[j]) > 1e-8+1e-6*math.Abs(fd) {
				t.Errorf("∂loss/∂%s[%d]: gradient %.10g, finite differences %.10g", name, j, g[j], fd)
			}
			checked++
			largest = max(largest, math.Abs(fd))
		}
	}
	t.Logf("%d gradient entries match finite differences (largest %.3g)", checked, largest)
	if largest < 1e-3 {
		t.Errorf("the checked entries are all below %g: the check says little", largest)
	}
}

func maps(m map[string]*tensors.Tensor) map[string]*tensors.Tensor {
	out := make(map[string]*tensors.Tensor, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// addScaled returns w + a·d (float32).
func addScaled(w, d models.Weights, a float32) models.Weights {
	out := make(models.Weights, len(w))
	for name, t := range w {
		x, y := w.Float32(name), d.Float32(name)
		for i := range x {
			x[i] += a * y[i]
		}
		out[name] = tensors.FromFlatDataAndDimensions(x, t.Shape().Dimensions...)
	}
	return out
}

// TestNonFinite checks that a non-finite f_lin is an error naming the
// tensor responsible: a NaN in θ, or a finite θ whose difference from θ₀
// makes the JVP overflow.
func TestNonFinite(t *testing.T) {
	m := loadRef(t, "hf-vit")
	lin, err := New("vit", m.f, m.specs, m.w)
	if err != nil {
		t.Fatal(err)
	}
	defer lin.Close()
	const culprit = "vit.encoder.layer.1.intermediate.dense.weight"
	for _, tc := range []struct {
		name string
		set  func([]float32)
		want string
	}{
		{"NaN", func(v []float32) { v[3] = float32(math.NaN()) }, `the weights hold a non-finite value in tensor "` + culprit + `"`},
		{"overflow", func(v []float32) {
			for i := range v {
				v[i] += 3e38 * float32(1-2*(i%2))
			}
		}, `the JVP in the direction of tensor "` + culprit + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			theta := maps(m.w)
			v := m.w.Float32(culprit)
			tc.set(v)
			theta[culprit] = tensors.FromFlatDataAndDimensions(v, m.w[culprit].Shape().Dimensions...)
			_, err := lin.Call(theta, m.input)
			if err == nil || !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestEncoderMismatch(t *testing.T) {
	vitEnc, err := encoder.Load(modelsTestdata("hf-vit"))
	if err != nil {
		t.Fatal(err)
	}
	clipEnc, err := encoder.Load(modelsTestdata("hf-clip"))
	if err != nil {
		t.Fatal(err)
	}
	lin, err := NewEncoder(vitEnc)
	if err != nil {
		t.Fatal(err)
	}
	defer lin.Close()
	if err := lin.Match(clipEnc); err == nil || !strings.Contains(err.Error(), "clip encoder, the base a vit one") {
		t.Errorf("CLIP model around a ViT base: %v", err)
	}
	if err := lin.Match(vitEnc); err != nil {
		t.Errorf("same encoder: %v", err)
	}
}

func TestDigest(t *testing.T) {
	m := loadRef(t, "hf-vit")
	d1, err := Digest(m.specs, m.w)
	if err != nil {
		t.Fatal(err)
	}
	rev := slices.Clone(m.specs)
	slices.Reverse(rev)
	if d2, _ := Digest(rev, maps(m.w)); d2 != d1 {
		t.Error("the digest depends on the order of the specs")
	}
	changed := maps(m.w)
	v := m.w.Float32(m.specs[5].Name)
	v[0] = math.Nextafter32(v[0], 10)
	changed[m.specs[5].Name] = tensors.FromFlatDataAndDimensions(v, m.w[m.specs[5].Name].Shape().Dimensions...)
	if d3, _ := Digest(m.specs, changed); d3 == d1 {
		t.Error("a one-ulp change keeps the digest")
	}
	meta, err := Metadata("/models/base", m.specs, m.w)
	if err != nil {
		t.Fatal(err)
	}
	info, ok, err := ReadMetadata(meta)
	if !ok || err != nil || info.Path != "/models/base" || info.Digest != d1 {
		t.Fatalf("ReadMetadata(%v) = %+v, %v, %v", meta, info, ok, err)
	}
	if err := info.Verify("/elsewhere/base", m.specs, m.w); err != nil {
		t.Errorf("the same weights elsewhere: %v", err)
	}
	err = info.Verify("/other", m.specs, changed)
	if err == nil || !strings.Contains(err.Error(), "expected /models/base") {
		t.Errorf("other weights: %v", err)
	}
	if _, ok, _ := ReadMetadata(map[string]string{"format": "pt"}); ok {
		t.Error("a plain checkpoint reads as linearized")
	}
	if _, ok, err := ReadMetadata(map[string]string{MetaLinearized: "true"}); !ok || err == nil {
		t.Error("a linearized checkpoint without its base: no error")
	}
}
