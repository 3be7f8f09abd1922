package fastgrad

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

func testBackend(t *testing.T) backends.Backend {
	t.Helper()
	b, err := backends.NewWithConfig("go:ops_sequential")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randTensor(rng *rand.Rand, dims ...int) *tensors.Tensor {
	n := 1
	for _, d := range dims {
		n *= d
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(rng.NormFloat64())
	}
	return tensors.FromFlatDataAndDimensions(data, dims...)
}

// withVJPs runs f with the given gradients registered for DotGeneral and
// Dot, restoring the previous ones afterwards.
func withVJPs(dotGeneral, dot graph.VJP, f func()) {
	oldDG, oldDot := graph.VJPRegistration[graph.NodeTypeDotGeneral], graph.VJPRegistration[graph.NodeTypeDot]
	graph.VJPRegistration[graph.NodeTypeDotGeneral], graph.VJPRegistration[graph.NodeTypeDot] = dotGeneral, dot
	defer func() {
		graph.VJPRegistration[graph.NodeTypeDotGeneral], graph.VJPRegistration[graph.NodeTypeDot] = oldDG, oldDot
	}()
	f()
}

// largestNode is the number of elements of the largest node that out
// depends on.
func largestNode(outs ...*graph.Node) int {
	seen := map[*graph.Node]bool{}
	largest := 0
	var walk func(n *graph.Node)
	walk = func(n *graph.Node) {
		if seen[n] {
			return
		}
		seen[n] = true
		largest = max(largest, n.Shape().Size())
		for _, in := range n.Inputs() {
			walk(in)
		}
	}
	for _, o := range outs {
		walk(o)
	}
	return largest
}

type product struct {
	name           string
	lhs, rhs       []int
	lc, lb, rc, rb []int
	dot            bool // graph.Dot instead of DotGeneral
}

var products = []product{
	{name: "matmul", lhs: []int{3, 4}, lc: []int{1}, rhs: []int{4, 5}, rc: []int{0}},
	{name: "batched", lhs: []int{2, 3, 4}, lc: []int{2}, lb: []int{0}, rhs: []int{2, 4, 5}, rc: []int{1}, rb: []int{0}},
	{name: "permuted axes", lhs: []int{4, 2, 3}, lc: []int{0}, lb: []int{2}, rhs: []int{3, 5, 4}, rc: []int{2}, rb: []int{0}},
	{name: "two contracting axes, crossed", lhs: []int{2, 3, 4, 5}, lc: []int{1, 3}, lb: []int{0}, rhs: []int{2, 5, 6, 3}, rc: []int{3, 1}, rb: []int{0}},
	{name: "outer product", lhs: []int{3, 2}, rhs: []int{4}},
	{name: "linear x·Wᵀ", lhs: []int{2, 6, 4}, lc: []int{2}, rhs: []int{5, 4}, rc: []int{1}},
	{name: "attention scores", lhs: []int{2, 3, 4, 5}, lc: []int{3}, lb: []int{0, 2}, rhs: []int{2, 6, 4, 5}, rc: []int{3}, rb: []int{0, 2}},
	{name: "attention context", lhs: []int{2, 4, 3, 6}, lc: []int{3}, lb: []int{0, 1}, rhs: []int{2, 6, 4, 5}, rc: []int{1}, rb: []int{0, 2}},
	{name: "Dot matrix·matrix", lhs: []int{3, 4}, rhs: []int{4, 5}, dot: true},
	{name: "Dot matrix·vector (built-in)", lhs: []int{3, 4}, rhs: []int{4}, dot: true},
}

// gradients returns ∂/∂lhs and ∂/∂rhs of Σ(p(lhs, rhs)·r) and the size of
// the largest node of the gradient graph.
func gradients(t *testing.T, b backends.Backend, p product, lhs, rhs *tensors.Tensor, seed uint64) (gl, gr []float32, largest int) {
	t.Helper()
	exec, err := graph.NewExec(b, func(l, r *graph.Node) (*graph.Node, *graph.Node) {
		var out *graph.Node
		if p.dot {
			out = graph.Dot(l, r)
		} else {
			out = graph.DotGeneral(l, p.lc, p.lb, r, p.rc, p.rb)
		}
		weights := graph.Const(l.Graph(), randTensor(rand.New(rand.NewPCG(seed, 1)), out.Shape().Dimensions...))
		grads := graph.Gradient(graph.ReduceAllSum(graph.Mul(out, weights)), l, r)
		largest = largestNode(grads...)
		return grads[0], grads[1]
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	outs, err := exec.Exec(lhs, rhs)
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	return tensors.MustCopyFlatData[float32](outs[0]), tensors.MustCopyFlatData[float32](outs[1]), largest
}

func TestGradientsMatchBuiltin(t *testing.T) {
	b := testBackend(t)
	for i, p := range products {
		t.Run(p.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			lhs, rhs := randTensor(rng, p.lhs...), randTensor(rng, p.rhs...)
			var wantL, wantR, gotL, gotR []float32
			var builtinLargest, fastLargest int
			withVJPs(builtinDotGeneral, builtinDot, func() {
				wantL, wantR, builtinLargest = gradients(t, b, p, lhs, rhs, uint64(i))
			})
			withVJPs(DotGeneralVJP, DotVJP, func() {
				gotL, gotR, fastLargest = gradients(t, b, p, lhs, rhs, uint64(i))
			})
			if d := maxDiff(gotL, wantL); d > 1e-5 {
				t.Errorf("∂lhs differs from the built-in gradient by %g", d)
			}
			if d := maxDiff(gotR, wantR); d > 1e-5 {
				t.Errorf("∂rhs differs from the built-in gradient by %g", d)
			}
			// No intermediate larger than an operand or the product.
			bound := max(lhs.Shape().Size(), rhs.Shape().Size(), product1(p, lhs, rhs))
			if fastLargest > bound {
				t.Errorf("gradient graph holds a node of %d elements, more than the %d of the largest operand or product", fastLargest, bound)
			}
			if p.name == "batched" && builtinLargest <= bound {
				t.Errorf("the built-in gradient's largest node (%d) should exceed %d: the size check is not measuring what it should", builtinLargest, bound)
			}
		})
	}
}

// product1 is the number of elements of the product's result.
func product1(p product, lhs, rhs *tensors.Tensor) int {
	n := 1
	for a, d := range lhs.Shape().Dimensions {
		if !contains(p.lc, a) {
			n *= d
		}
	}
	for a, d := range rhs.Shape().Dimensions {
		if !contains(p.rc, a) && !contains(p.rb, a) {
			n *= d
		}
	}
	if p.dot {
		n = lhs.Shape().Dimensions[0]
		if rhs.Rank() == 2 {
			n *= rhs.Shape().Dimensions[1]
		}
	}
	return n
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// TestSliceGradient checks SliceVJP against the gradient written out: the
// gradient of Σ Slice(x)·r is r inside the slice and 0 elsewhere. It also
// runs a second derivative through Concatenate (whose gradient is a Slice),
// which the built-in gradient of Slice cannot run on simplego (no Pad).
func TestSliceGradient(t *testing.T) {
	b := testBackend(t)
	old := graph.VJPRegistration[graph.NodeTypeSlice]
	graph.VJPRegistration[graph.NodeTypeSlice] = SliceVJP
	defer func() { graph.VJPRegistration[graph.NodeTypeSlice] = old }()

	rng := rand.New(rand.NewPCG(3, 3))
	x := randTensor(rng, 4, 5, 3)
	r := randTensor(rng, 2, 5, 2) // the slice x[1:3, :, 1:3]
	exec, err := graph.NewExec(b, func(x, r *graph.Node) *graph.Node {
		s := graph.Slice(x, graph.AxisRange(1, 3), graph.AxisRange(), graph.AxisRange(1, 3))
		return graph.Gradient(graph.ReduceAllSum(graph.Mul(s, r)), x)[0]
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	outs, err := exec.Exec(x, r)
	if err != nil {
		t.Fatal(err)
	}
	got := tensors.MustCopyFlatData[float32](outs[0])
	rv := tensors.MustCopyFlatData[float32](r)
	for i := range 4 {
		for j := range 5 {
			for k := range 3 {
				want := float32(0)
				if i >= 1 && i < 3 && k >= 1 && k < 3 {
					want = rv[((i-1)*5+j)*2+k-1]
				}
				if g := got[(i*5+j)*3+k]; g != want {
					t.Fatalf("gradient at [%d,%d,%d] = %g, want %g", i, j, k, g, want)
				}
			}
		}
	}

	// Second order through Concatenate: d/dc of ∂/∂a Σ (concat(a·c, b)²)
	// = d/dc (2·a·c·c) summed = 4·Σ a·c for scalar c.
	exec2, err := graph.NewExec(b, func(a, bb, c *graph.Node) *graph.Node {
		cat := graph.Concatenate([]*graph.Node{graph.Mul(a, c), bb}, 0)
		ga := graph.Gradient(graph.ReduceAllSum(graph.Mul(cat, cat)), a)[0]
		return graph.Gradient(graph.ReduceAllSum(ga), c)[0]
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec2.Finalize()
	a := tensors.FromFlatDataAndDimensions([]float32{1, 2, 3}, 3)
	outs, err = exec2.Exec(a, tensors.FromFlatDataAndDimensions([]float32{5, 7}, 2), float32(0.5))
	if err != nil {
		t.Fatalf("second derivative through Concatenate: %v", err)
	}
	if got, want := tensors.MustCopyFlatData[float32](outs[0])[0], float32(4*(1+2+3)*0.5); got != want {
		t.Errorf("second derivative = %g, want %g", got, want)
	}
}

func TestSliceBoundsByReflection(t *testing.T) {
	g := graph.NewGraph(testBackend(t), "slice")
	x := graph.Parameter(g, "x", randTensor(rand.New(rand.NewPCG(1, 1)), 4, 6).Shape())
	starts, limits, strides, ok := sliceBounds(graph.Slice(x, graph.AxisRange(1, 3), graph.AxisRange(2).Stride(2)))
	if !ok {
		t.Fatal("cannot read Slice bounds from the node: GoMLX's nodeInputsSlice changed; update sliceBounds")
	}
	if !equal(starts, []int{1, 2}) || !equal(limits, []int{3, 6}) || !equal(strides, []int{1, 2}) {
		t.Fatalf("bounds %v %v %v, want [1 2] [3 6] [1 2]", starts, limits, strides)
	}
}

func TestInstall(t *testing.T) {
	withVJPs(builtinDotGeneral, builtinDot, func() {
		if Installed() {
			t.Fatal("Installed() is true with the built-in gradients registered")
		}
	})
	withVJPs(builtinDotGeneral, builtinDot, func() {
		Install()
		if !Installed() {
			t.Fatal("Installed() is false after Install")
		}
	})
}

func TestAxesByReflection(t *testing.T) {
	b := testBackend(t)
	g := graph.NewGraph(b, "axes")
	l := graph.Parameter(g, "l", randTensor(rand.New(rand.NewPCG(1, 1)), 2, 3, 4, 5).Shape())
	r := graph.Parameter(g, "r", randTensor(rand.New(rand.NewPCG(1, 2)), 2, 5, 6, 3).Shape())
	n := graph.DotGeneral(l, []int{1, 3}, []int{0}, r, []int{3, 1}, []int{0})
	ax, ok := dotGeneralAxes(n)
	if !ok {
		t.Fatal("cannot read DotGeneral axes from the node: GoMLX's nodeInputsDotGeneral changed; update dotGeneralAxes")
	}
	want := dotAxes{lhsContracting: []int{1, 3}, lhsBatch: []int{0}, rhsContracting: []int{3, 1}, rhsBatch: []int{0}}
	if !equal(ax.lhsContracting, want.lhsContracting) || !equal(ax.lhsBatch, want.lhsBatch) ||
		!equal(ax.rhsContracting, want.rhsContracting) || !equal(ax.rhsBatch, want.rhsBatch) {
		t.Fatalf("axes %+v, want %+v", ax, want)
	}
	if _, ok := dotGeneralAxes(graph.Add(l, l)); ok {
		t.Fatal("dotGeneralAxes accepted an Add node")
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
