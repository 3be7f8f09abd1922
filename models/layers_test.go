package models

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// arr is a host float64 array with a shape, for reference computations.
type arr struct {
	d []int
	v []float64
}

func randArr(rng *rand.Rand, dims ...int) arr {
	n := 1
	for _, d := range dims {
		n *= d
	}
	a := arr{d: dims, v: make([]float64, n)}
	for i := range a.v {
		a.v[i] = float64(float32(rng.NormFloat64())) // float32-representable
	}
	return a
}

func (a arr) tensor() *tensors.Tensor {
	f := make([]float32, len(a.v))
	for i, v := range a.v {
		f[i] = float32(v)
	}
	return tensors.FromFlatDataAndDimensions(f, a.d...)
}

// run executes fn on the default backend.
func run(t *testing.T, fn func(in []*graph.Node) *graph.Node, inputs ...any) []float32 {
	t.Helper()
	exec, err := graph.NewExec(Backend(), fn)
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	outs, err := exec.Exec(inputs...)
	if err != nil {
		t.Fatal(err)
	}
	return tensors.MustCopyFlatData[float32](outs[0])
}

func maxDiff(got []float32, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range got {
		d = max(d, math.Abs(float64(got[i])-want[i]))
	}
	return d
}

func TestActivations(t *testing.T) {
	var xs []float64
	for x := -4.0; x <= 4; x += 0.25 {
		xs = append(xs, x)
	}
	x := arr{d: []int{len(xs)}, v: xs}
	for _, tc := range []struct {
		name string
		act  Activation
		f    func(float64) float64
	}{
		{"gelu", GELU, func(x float64) float64 { return x / 2 * (1 + math.Erf(x/math.Sqrt2)) }},
		{"quick_gelu", QuickGELU, func(x float64) float64 { return x / (1 + math.Exp(-1.702*x)) }},
		{"gelu_new", GELUTanh, func(x float64) float64 {
			return x / 2 * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
		}},
		{"relu", ReLU, func(x float64) float64 { return max(x, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			act, err := ParseActivation(tc.name)
			if err != nil || act != tc.act {
				t.Fatalf("ParseActivation(%q) = %q, %v", tc.name, act, err)
			}
			got := run(t, func(in []*graph.Node) *graph.Node { return Activate(in[0], tc.act) }, x.tensor())
			want := make([]float64, len(xs))
			for i, v := range xs {
				want[i] = tc.f(v)
			}
			if d := maxDiff(got, want); d > 1e-6 {
				t.Errorf("differs from the reference by %g", d)
			}
		})
	}
	if _, err := ParseActivation("swish"); err == nil {
		t.Error("ParseActivation accepted swish")
	}
}

func TestLayerNormLinearProject(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x, g, b := randArr(rng, 2, 3, 8), randArr(rng, 8), randArr(rng, 8)
	w, bias, p := randArr(rng, 5, 8), randArr(rng, 5), randArr(rng, 8, 5)
	for _, eps := range []float64{1e-5, 1e-12} {
		got := run(t, func(in []*graph.Node) *graph.Node {
			return LayerNorm(in[0], NormW{Weight: in[1], Bias: in[2]}, eps)
		}, x.tensor(), g.tensor(), b.tensor())
		want := make([]float64, len(x.v))
		for r := 0; r < 6; r++ {
			row := x.v[r*8 : r*8+8]
			mean, vr := 0.0, 0.0
			for _, v := range row {
				mean += v / 8
			}
			for _, v := range row {
				vr += (v - mean) * (v - mean) / 8
			}
			for j, v := range row {
				want[r*8+j] = (v-mean)/math.Sqrt(vr+eps)*g.v[j] + b.v[j]
			}
		}
		if d := maxDiff(got, want); d > 1e-5 {
			t.Errorf("LayerNorm(eps %g) differs by %g", eps, d)
		}
	}
	got := run(t, func(in []*graph.Node) *graph.Node { return Linear(in[0], LinearW{Weight: in[1], Bias: in[2]}) },
		x.tensor(), w.tensor(), bias.tensor())
	want := make([]float64, 6*5)
	for r := 0; r < 6; r++ {
		for o := 0; o < 5; o++ {
			s := bias.v[o]
			for i := 0; i < 8; i++ {
				s += x.v[r*8+i] * w.v[o*8+i]
			}
			want[r*5+o] = s
		}
	}
	if d := maxDiff(got, want); d > 1e-5 {
		t.Errorf("Linear differs by %g", d)
	}
	got = run(t, func(in []*graph.Node) *graph.Node { return Project(in[0], in[1]) }, x.tensor(), p.tensor())
	for r := 0; r < 6; r++ {
		for o := 0; o < 5; o++ {
			s := 0.0
			for i := 0; i < 8; i++ {
				s += x.v[r*8+i] * p.v[i*5+o]
			}
			want[r*5+o] = s
		}
	}
	if d := maxDiff(got, want); d > 1e-5 {
		t.Errorf("Project differs by %g", d)
	}
}

// refAttention is multi-head attention on the host, float64.
func refAttention(x arr, q, k, v, o [2]arr, heads int, causal bool) []float64 {
	b, s, w := x.d[0], x.d[1], x.d[2]
	d := w / heads
	lin := func(l [2]arr) []float64 {
		out := make([]float64, b*s*w)
		for r := 0; r < b*s; r++ {
			for j := 0; j < w; j++ {
				acc := l[1].v[j]
				for i := 0; i < w; i++ {
					acc += x.v[r*w+i] * l[0].v[j*w+i]
				}
				out[r*w+j] = acc
			}
		}
		return out
	}
	Q, K, V := lin(q), lin(k), lin(v)
	ctx := make([]float64, b*s*w)
	for bi := 0; bi < b; bi++ {
		for h := 0; h < heads; h++ {
			for i := 0; i < s; i++ {
				scores := make([]float64, s)
				mx := math.Inf(-1)
				for j := 0; j < s; j++ {
					if causal && j > i {
						scores[j] = math.Inf(-1)
						continue
					}
					acc := 0.0
					for e := 0; e < d; e++ {
						acc += Q[(bi*s+i)*w+h*d+e] * K[(bi*s+j)*w+h*d+e]
					}
					scores[j] = acc / math.Sqrt(float64(d))
					mx = max(mx, scores[j])
				}
				sum := 0.0
				for j := range scores {
					scores[j] = math.Exp(scores[j] - mx)
					sum += scores[j]
				}
				for j := 0; j < s; j++ {
					for e := 0; e < d; e++ {
						ctx[(bi*s+i)*w+h*d+e] += scores[j] / sum * V[(bi*s+j)*w+h*d+e]
					}
				}
			}
		}
	}
	out := make([]float64, b*s*w)
	for r := 0; r < b*s; r++ {
		for j := 0; j < w; j++ {
			acc := o[1].v[j]
			for i := 0; i < w; i++ {
				acc += ctx[r*w+i] * o[0].v[j*w+i]
			}
			out[r*w+j] = acc
		}
	}
	return out
}

func TestSelfAttention(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const w = 8
	x := randArr(rng, 2, 5, w)
	lin := func() [2]arr { return [2]arr{randArr(rng, w, w), randArr(rng, w)} }
	q, k, v, o := lin(), lin(), lin(), lin()
	fusedW := arr{d: []int{3 * w, w}, v: append(append(append([]float64{}, q[0].v...), k[0].v...), v[0].v...)}
	fusedB := arr{d: []int{3 * w}, v: append(append(append([]float64{}, q[1].v...), k[1].v...), v[1].v...)}
	for _, tc := range []struct {
		name   string
		heads  int
		causal bool
		fused  bool
	}{
		{"separate q k v, 2 heads", 2, false, false},
		{"fused in_proj, 2 heads", 2, false, true},
		{"one head, causal", 1, true, false},
		{"fused, 4 heads, causal", 4, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := run(t, func(in []*graph.Node) *graph.Node {
				aw := AttentionW{Out: LinearW{in[7], in[8]}}
				if tc.fused {
					aw.InProj = LinearW{in[9], in[10]}
				} else {
					aw.Q, aw.K, aw.V = LinearW{in[1], in[2]}, LinearW{in[3], in[4]}, LinearW{in[5], in[6]}
				}
				return SelfAttention(in[0], aw, tc.heads, tc.causal)
			}, x.tensor(), q[0].tensor(), q[1].tensor(), k[0].tensor(), k[1].tensor(), v[0].tensor(), v[1].tensor(),
				o[0].tensor(), o[1].tensor(), fusedW.tensor(), fusedB.tensor())
			if d := maxDiff(got, refAttention(x, q, k, v, o, tc.heads, tc.causal)); d > 1e-5 {
				t.Errorf("differs from the reference by %g", d)
			}
		})
	}
}

func TestPatchEmbed(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const b, h, wd, c, p, out = 2, 8, 12, 3, 4, 5
	x, w, bias := randArr(rng, b, h, wd, c), randArr(rng, out, c, p, p), randArr(rng, out)
	got := run(t, func(in []*graph.Node) *graph.Node { return PatchEmbed(in[0], in[1], in[2]) }, x.tensor(), w.tensor(), bias.tensor())
	gh, gw := h/p, wd/p
	want := make([]float64, b*gh*gw*out)
	for bi := 0; bi < b; bi++ {
		for py := 0; py < gh; py++ {
			for px := 0; px < gw; px++ {
				for o := 0; o < out; o++ {
					acc := bias.v[o]
					for ci := 0; ci < c; ci++ {
						for ky := 0; ky < p; ky++ {
							for kx := 0; kx < p; kx++ {
								pix := x.v[((bi*h+py*p+ky)*wd+px*p+kx)*c+ci]
								acc += pix * w.v[((o*c+ci)*p+ky)*p+kx]
							}
						}
					}
					want[((bi*gh+py)*gw+px)*out+o] = acc
				}
			}
		}
	}
	if d := maxDiff(got, want); d > 1e-5 {
		t.Errorf("PatchEmbed differs from a stride-%d convolution by %g", p, d)
	}
}

func TestTokenSelection(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	x := randArr(rng, 3, 4, 2)
	at := func(b, s, j int) float64 { return x.v[(b*4+s)*2+j] }
	pos := tensors.FromFlatDataAndDimensions([]int64{3, 0, 2}, 3)
	ids := tensors.FromFlatDataAndDimensions([]int32{1, 3, 0, 3, 2, 2}, 2, 3)
	table := randArr(rng, 4, 2)
	tok := randArr(rng, 2)
	for _, tc := range []struct {
		name string
		fn   func(in []*graph.Node) *graph.Node
		in   []any
		want func() []float64
	}{
		{"Token(x, 0)", func(in []*graph.Node) *graph.Node { return Token(in[0], 0) }, []any{x.tensor()},
			func() []float64 {
				return []float64{at(0, 0, 0), at(0, 0, 1), at(1, 0, 0), at(1, 0, 1), at(2, 0, 0), at(2, 0, 1)}
			}},
		{"Token(x, 2)", func(in []*graph.Node) *graph.Node { return Token(in[0], 2) }, []any{x.tensor()},
			func() []float64 {
				return []float64{at(0, 2, 0), at(0, 2, 1), at(1, 2, 0), at(1, 2, 1), at(2, 2, 0), at(2, 2, 1)}
			}},
		{"TokenAt", func(in []*graph.Node) *graph.Node { return TokenAt(in[0], in[1]) }, []any{x.tensor(), pos},
			func() []float64 {
				return []float64{at(0, 3, 0), at(0, 3, 1), at(1, 0, 0), at(1, 0, 1), at(2, 2, 0), at(2, 2, 1)}
			}},
		{"FirstRows", func(in []*graph.Node) *graph.Node { return FirstRows(in[0], 3) }, []any{table.tensor()},
			func() []float64 { return table.v[:6] }},
		{"FirstRows all", func(in []*graph.Node) *graph.Node { return FirstRows(in[0], 4) }, []any{table.tensor()},
			func() []float64 { return table.v }},
		{"Embed", func(in []*graph.Node) *graph.Node { return Embed(in[0], in[1]) }, []any{table.tensor(), ids},
			func() []float64 {
				var out []float64
				for _, id := range []int{1, 3, 0, 3, 2, 2} {
					out = append(out, table.v[2*id:2*id+2]...)
				}
				return out
			}},
		{"PrependToken", func(in []*graph.Node) *graph.Node { return PrependToken(in[0], in[1]) }, []any{x.tensor(), tok.tensor()},
			func() []float64 {
				var out []float64
				for b := 0; b < 3; b++ {
					out = append(out, tok.v...)
					out = append(out, x.v[b*8:b*8+8]...)
				}
				return out
			}},
		{"NormalizeL2", func(in []*graph.Node) *graph.Node { return NormalizeL2(in[0]) }, []any{table.tensor()},
			func() []float64 {
				out := make([]float64, 8)
				for r := 0; r < 4; r++ {
					n := math.Hypot(table.v[2*r], table.v[2*r+1])
					out[2*r], out[2*r+1] = table.v[2*r]/n, table.v[2*r+1]/n
				}
				return out
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := maxDiff(run(t, tc.fn, tc.in...), tc.want()); d > 1e-6 {
				t.Errorf("differs by %g", d)
			}
		})
	}
}

// TestBlockGradientNoSlice differentiates a block with every weight on the
// default backend (simplego has no Pad, so a Slice's gradient would fail).
func TestBlockGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	const w = 8
	in := []any{randArr(rng, 2, 3, w).tensor(),
		randArr(rng, w).tensor(), randArr(rng, w).tensor(), // LN1
		randArr(rng, 3*w, w).tensor(), randArr(rng, 3*w).tensor(), // in_proj
		randArr(rng, w, w).tensor(), randArr(rng, w).tensor(), // out
		randArr(rng, w).tensor(), randArr(rng, w).tensor(), // LN2
		randArr(rng, 2*w, w).tensor(), randArr(rng, 2*w).tensor(), randArr(rng, w, 2*w).tensor(), randArr(rng, w).tensor()}
	got := run(t, func(n []*graph.Node) *graph.Node {
		bw := BlockW{LN1: NormW{n[1], n[2]}, Attn: AttentionW{InProj: LinearW{n[3], n[4]}, Out: LinearW{n[5], n[6]}},
			LN2: NormW{n[7], n[8]}, MLP: MLPW{FC1: LinearW{n[9], n[10]}, FC2: LinearW{n[11], n[12]}}}
		y := Block(n[0], bw, BlockConfig{Heads: 2, Eps: 1e-5, Act: GELU, Causal: true})
		grads := graph.Gradient(graph.ReduceAllSum(graph.Mul(y, y)), n...)
		total := graph.ReduceAllSum(graph.Mul(grads[0], grads[0]))
		for _, g := range grads[1:] {
			total = graph.Add(total, graph.ReduceAllSum(graph.Mul(g, g)))
		}
		return total
	}, in...)
	if math.IsNaN(float64(got[0])) || got[0] <= 0 {
		t.Errorf("sum of squared gradients %v", got[0])
	}
}
