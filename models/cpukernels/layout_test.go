package cpukernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
)

// Transpose and BroadcastInDim copy values: bit for bit what simplego's
// executors give, for every pattern of axes.
func TestLayoutOpsMatchBuiltin(t *testing.T) {
	if ok, why := Installed(); !ok {
		t.Skipf("not installed: %s", why)
	}
	b := testBackend(t)
	rng := rand.New(rand.NewPCG(12, 12))
	type layoutCase struct {
		op   backends.OpType
		dims []int
		fn   func(x *graph.Node) *graph.Node
	}
	var cases []layoutCase
	for _, p := range []struct {
		dims []int
		perm []int
	}{
		{[]int{3, 4}, []int{1, 0}},
		{[]int{2, 3, 4, 5}, []int{0, 2, 1, 3}}, // attention heads: runs of 5
		{[]int{2, 3, 4, 5}, []int{3, 2, 1, 0}},
		{[]int{2, 1, 4, 5}, []int{0, 3, 1, 2}},
		{[]int{64, 50, 30}, []int{2, 0, 1}}, // split over workers
		{[]int{6, 7}, []int{0, 1}},
	} {
		cases = append(cases, layoutCase{backends.OpTypeTranspose, p.dims, func(x *graph.Node) *graph.Node { return graph.TransposeAllAxes(x, p.perm...) }})
	}
	for _, c := range []struct {
		dims, out, axes []int
	}{
		{[]int{5}, []int{3, 5}, []int{1}},
		{[]int{3}, []int{3, 4}, []int{0}},
		{[]int{3, 1}, []int{3, 4, 2}, []int{0, 1}},
		{[]int{1, 5}, []int{2, 4, 5}, []int{1, 2}},
		{[]int{2, 5}, []int{2, 3, 5, 7}, []int{0, 2}},
		{[]int{1000}, []int{64, 1000}, []int{1}},
	} {
		cases = append(cases, layoutCase{backends.OpTypeBroadcastInDim, c.dims, func(x *graph.Node) *graph.Node {
			return graph.ExpandAndBroadcast(x, c.out, missing(len(c.out), c.axes))
		}})
	}
	for _, c := range cases {
		name := fmt.Sprintf("%s %v", c.op, c.dims)
		x := randomTensor(rng, c.dims, true)
		got, calls := runUnary(t, b, c.op, replacements[c.op], c.fn, x)
		want, _ := runUnary(t, b, c.op, builtins[c.op], c.fn, x)
		if calls == 0 {
			t.Fatalf("%s: replacement not called", name)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s: value %d = %v, simplego gives %v", name, i, got[i], want[i])
			}
		}
	}
}

// missing lists the axes below n not in axes.
func missing(n int, axes []int) []int {
	var out []int
	for i := range n {
		found := false
		for _, a := range axes {
			found = found || a == i
		}
		if !found {
			out = append(out, i)
		}
	}
	return out
}
