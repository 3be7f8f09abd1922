package cpukernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// withOp runs f with exec registered for op.
func withOp(op backends.OpType, exec executor, f func()) {
	old := nodeExecutors[op]
	nodeExecutors[op] = exec
	defer func() { nodeExecutors[op] = old }()
	f()
}

// runGraph builds fn over the inputs, runs it and returns its float32
// output.
func runGraph(t *testing.T, b backends.Backend, fn func(x, y *graph.Node) *graph.Node, inputs ...any) []float32 {
	t.Helper()
	exec, err := graph.NewExec(b, fn)
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

func randomTensor(rng *rand.Rand, dims []int, special bool) *tensors.Tensor {
	v := make([]float32, max(size(dims), 1))
	for i := range v {
		v[i] = float32(rng.NormFloat64())
		if special && rng.IntN(50) == 0 {
			v[i] = []float32{0, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}[rng.IntN(4)]
		}
	}
	if len(dims) == 0 {
		return tensors.FromScalar(v[0])
	}
	return tensors.FromFlatDataAndDimensions(v, dims...)
}

// The binary ops must give simplego's bits: same IEEE operations, only
// without its per-element broadcast iterator.
func TestBinaryOpsMatchBuiltin(t *testing.T) {
	if ok, why := Installed(); !ok {
		t.Skipf("not installed: %s", why)
	}
	b := testBackend(t)
	ops := []struct {
		op backends.OpType
		fn func(x, y *graph.Node) *graph.Node
	}{
		{backends.OpTypeAdd, graph.Add}, {backends.OpTypeSub, graph.Sub},
		{backends.OpTypeMul, graph.Mul}, {backends.OpTypeDiv, graph.Div},
	}
	pairs := [][2][]int{
		{{2, 3}, {2, 3}},
		{{3, 1, 5}, {3, 4, 5}},
		{{1, 4, 1}, {3, 4, 5}},
		{{}, {2, 3}},
		{{1, 1}, {2, 3}},
		{{4, 1}, {1, 5}},
		{{2, 1, 3, 1}, {2, 5, 3, 7}},
		{{64, 1000}, {1, 1000}}, // large enough to be split over workers
		{{64, 1000}, {64, 1}},
		{{5, 1, 1}, {1, 1, 1}},
	}
	rng := rand.New(rand.NewPCG(4, 5))
	for _, o := range ops {
		for _, p := range pairs {
			for _, swap := range []bool{false, true} {
				ld, rd := p[0], p[1]
				if swap {
					ld, rd = rd, ld
				}
				name := fmt.Sprintf("%s %v %v", o.op, ld, rd)
				l, r := randomTensor(rng, ld, true), randomTensor(rng, rd, true)
				var got, want []float32
				calls := 0
				withOp(o.op, func(backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, owned []bool) (*simplego.Buffer, error) {
					calls++
					return replacements[o.op](backend, node, inputs, owned)
				}, func() { got = runGraph(t, b, o.fn, l, r) })
				withOp(o.op, builtins[o.op], func() { want = runGraph(t, b, o.fn, l, r) })
				if calls == 0 {
					t.Fatalf("%s: replacement not called", name)
				}
				if len(got) != len(want) {
					t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
				}
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
						t.Fatalf("%s: value %d = %v, simplego gives %v", name, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// runUnary runs fn on x with exec registered for op and returns the output.
func runUnary(t *testing.T, b backends.Backend, op backends.OpType, exec executor, fn func(x *graph.Node) *graph.Node, x *tensors.Tensor) (out []float32, calls int) {
	t.Helper()
	withOp(op, func(backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, owned []bool) (*simplego.Buffer, error) {
		calls++
		return exec(backend, node, inputs, owned)
	}, func() {
		e, err := graph.NewExec(b, fn)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Finalize()
		outs, err := e.Exec(x)
		if err != nil {
			t.Fatal(err)
		}
		out = tensors.MustCopyFlatData[float32](outs[0])
	})
	return out, calls
}

// Erf, Exp and Logistic agree with simplego's (float64 math rounded) within
// the SIMD kernels' error bounds (tested in internal/simd), on a graph
// where the input is owned (computed in place) and one where it is not.
func TestUnaryOpsMatchBuiltin(t *testing.T) {
	if ok, why := Installed(); !ok {
		t.Skipf("not installed: %s", why)
	}
	b := testBackend(t)
	ops := []struct {
		op  backends.OpType
		fn  func(x *graph.Node) *graph.Node
		ulp float64
	}{
		{backends.OpTypeErf, graph.Erf, 6},
		{backends.OpTypeExp, graph.Exp, 1},
		{backends.OpTypeLogistic, graph.Logistic, 3},
	}
	rng := rand.New(rand.NewPCG(6, 7))
	x := randomTensor(rng, []int{3, 50, 77}, true)
	for _, o := range ops {
		for _, owned := range []bool{true, false} {
			fn := o.fn
			if owned { // the op's input is an intermediate result
				fn = func(x *graph.Node) *graph.Node { return o.fn(graph.MulScalar(x, 2)) }
			}
			got, calls := runUnary(t, b, o.op, replacements[o.op], fn, x)
			want, _ := runUnary(t, b, o.op, builtins[o.op], fn, x)
			if calls == 0 {
				t.Fatalf("%s: replacement not called", o.op)
			}
			for i := range got {
				g, w := float64(got[i]), float64(want[i])
				if math.IsNaN(w) != math.IsNaN(g) || (!math.IsNaN(w) && math.Abs(g-w) > o.ulp*ulp(float32(w))+0x1p-149*3) {
					t.Fatalf("%s: value %d = %v, simplego gives %v", o.op, i, g, w)
				}
			}
		}
	}
}

// ulp is the spacing of float32 at |v|.
func ulp(v float32) float64 {
	a := float32(math.Abs(float64(v)))
	if math.IsInf(float64(a), 0) {
		return 0
	}
	return float64(math.Nextafter32(a, float32(math.Inf(1))) - a)
}

// ReduceSum and ReduceMax over every pattern of axes: bitwise equal to
// simplego except a sum over a contiguous run (summed in eight partial
// sums), which is checked against a float64 sum.
func TestReduceOpsMatchBuiltin(t *testing.T) {
	if ok, why := Installed(); !ok {
		t.Skipf("not installed: %s", why)
	}
	b := testBackend(t)
	cases := []struct {
		dims []int
		axes []int
	}{
		{[]int{7}, []int{0}},
		{[]int{5, 300}, []int{1}},
		{[]int{300, 5}, []int{0}},
		{[]int{4, 6, 9}, []int{1}},
		{[]int{4, 1, 6, 9}, []int{1, 2}},
		{[]int{4, 6, 9}, []int{0, 1}},
		{[]int{4, 6, 9}, []int{0, 2}}, // not one run: simplego's
		{[]int{2, 3, 4}, []int{0, 1, 2}},
		{[]int{64, 50, 20}, []int{2}}, // split over workers
		{[]int{64, 50, 20}, []int{1}},
	}
	rng := rand.New(rand.NewPCG(8, 9))
	for _, c := range cases {
		x := randomTensor(rng, c.dims, false)
		xs := tensors.MustCopyFlatData[float32](x)
		for _, op := range []backends.OpType{backends.OpTypeReduceSum, backends.OpTypeReduceMax} {
			fn := func(x *graph.Node) *graph.Node {
				if op == backends.OpTypeReduceSum {
					return graph.ReduceSum(x, c.axes...)
				}
				return graph.ReduceMax(x, c.axes...)
			}
			got, calls := runUnary(t, b, op, replacements[op], fn, x)
			want, _ := runUnary(t, b, op, builtins[op], fn, x)
			if calls == 0 {
				t.Fatalf("%s %v: replacement not called", op, c)
			}
			_, reduced, inner, ok := reducePlan(c.dims, c.axes)
			for i := range got {
				if math.Float32bits(got[i]) == math.Float32bits(want[i]) {
					continue
				}
				if !(op == backends.OpTypeReduceSum && ok && inner == 1) {
					t.Fatalf("%s %v: value %d = %v, simplego gives %v", op, c, i, got[i], want[i])
				}
				var exact, abs float64
				for _, v := range xs[i*reduced : (i+1)*reduced] {
					exact += float64(v)
					abs += math.Abs(float64(v))
				}
				if math.Abs(float64(got[i])-exact) > float64(reduced)*0x1p-24*abs {
					t.Fatalf("%s %v: value %d = %v, want %v", op, c, i, got[i], exact)
				}
			}
		}
	}
}
