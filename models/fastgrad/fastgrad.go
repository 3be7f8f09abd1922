// Package fastgrad replaces GoMLX v0.26's gradients of DotGeneral and
// rank-2 Dot with ones that cost two matrix products.
//
// GoMLX's built-in VJP of a product lhs·rhs broadcasts the incoming gradient
// against the other operand and reduces: it materialises a
// [batch, M, N, K] intermediate. That is 10-17x slower than necessary and, at
// ViT-B MLP sizes, needs over 100 GB. The replacements compute the textbook
// gradients instead,
//
//	∂lhs = DotGeneral(v, rhs) contracting the rhs-only axes,
//	∂rhs = DotGeneral(v, lhs) contracting the lhs-only axes,
//
// followed by a transpose back to the operand's axis order, so the largest
// intermediate is the size of an operand.
//
// Install registers them in graph.VJPRegistration for the whole process;
// package models calls it from its init, so every program that uses editkit
// models gets them. GoMLX does not expose a DotGeneral node's axes; they are
// read from the node by reflection (the field names of GoMLX v0.26.0's
// nodeInputsDotGeneral). Should a GoMLX upgrade rename them, the replacement
// falls back to the built-in gradient (correct, only slow) and the tests of
// this package fail, which is the signal to update it.
package fastgrad

import (
	"reflect"
	"slices"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// The built-in VJPs, captured before any replacement.
var (
	builtinDotGeneral = graph.VJPRegistration[graph.NodeTypeDotGeneral]
	builtinDot        = graph.VJPRegistration[graph.NodeTypeDot]
)

// Install registers DotGeneralVJP and DotVJP as the gradients of DotGeneral
// and Dot nodes. It is idempotent. It writes a global map that graph
// building reads, so call it before building graphs (package models calls it
// from its init).
func Install() {
	graph.VJPRegistration[graph.NodeTypeDotGeneral] = DotGeneralVJP
	graph.VJPRegistration[graph.NodeTypeDot] = DotVJP
}

// Installed reports whether the replacements are the registered gradients.
func Installed() bool {
	same := func(a, b graph.VJP) bool { return reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer() }
	return same(graph.VJPRegistration[graph.NodeTypeDotGeneral], DotGeneralVJP) &&
		same(graph.VJPRegistration[graph.NodeTypeDot], DotVJP)
}

// DotGeneralVJP is the gradient of a DotGeneral node as two DotGenerals.
func DotGeneralVJP(node *graph.Node, vjpOutputs []*graph.Node, outputShape shapes.Shape) []*graph.Node {
	ax, ok := dotGeneralAxes(node)
	if !ok {
		return builtinDotGeneral(node, vjpOutputs, outputShape)
	}
	v := vjpOutputs[0]
	lhs, rhs := node.Inputs()[0], node.Inputs()[1]
	lhsCross := crossAxes(lhs.Rank(), ax.lhsContracting, ax.lhsBatch)
	rhsCross := crossAxes(rhs.Rank(), ax.rhsContracting, ax.rhsBatch)
	nb := len(ax.lhsBatch)
	// v's axes: [batch..., lhs cross..., rhs cross...].
	vBatch := iota(0, nb)
	vLhsCross := iota(nb, len(lhsCross))
	vRhsCross := iota(nb+len(lhsCross), len(rhsCross))

	// ∂lhs: contract v's rhs-cross axes with rhs's cross axes. The result is
	// [batch..., lhs cross..., rhs contracting axes in ascending order].
	gl := graph.DotGeneral(v, vRhsCross, vBatch, rhs, rhsCross, ax.rhsBatch)
	gl = transposeTo(gl, lhs.Rank(), ax.lhsBatch, lhsCross, ax.lhsContracting, ax.rhsContracting)

	// ∂rhs: contract v's lhs-cross axes with lhs's cross axes. The result is
	// [batch..., rhs cross..., lhs contracting axes in ascending order].
	gr := graph.DotGeneral(v, vLhsCross, vBatch, lhs, lhsCross, ax.lhsBatch)
	gr = transposeTo(gr, rhs.Rank(), ax.rhsBatch, rhsCross, ax.rhsContracting, ax.lhsContracting)
	return []*graph.Node{gl, gr}
}

// transposeTo puts the axes of a gradient computed as
// [batch..., cross..., contracted...] back in the operand's order. The
// contracted axes come out in ascending order of the other operand's
// contracting axes (otherContracting), paired one to one with contracting.
func transposeTo(x *graph.Node, rank int, batch, cross, contracting, otherContracting []int) *graph.Node {
	perm := make([]int, rank)
	for i, a := range batch {
		perm[a] = i
	}
	for j, a := range cross {
		perm[a] = len(batch) + j
	}
	sorted := slices.Sorted(slices.Values(otherContracting))
	for k, a := range contracting {
		perm[a] = len(batch) + len(cross) + slices.Index(sorted, otherContracting[k])
	}
	for i, p := range perm {
		if i != p {
			return graph.TransposeAllAxes(x, perm...)
		}
	}
	return x
}

// DotVJP is the gradient of a rank-2 Dot (matrix product) as two
// DotGenerals; other ranks use the built-in gradient, which is cheap there.
func DotVJP(node *graph.Node, vjpOutputs []*graph.Node, outputShape shapes.Shape) []*graph.Node {
	a, b := node.Inputs()[0], node.Inputs()[1]
	if a.Rank() != 2 || b.Rank() != 2 {
		return builtinDot(node, vjpOutputs, outputShape)
	}
	v := vjpOutputs[0] // [i, k] for a [i, j], b [j, k]
	return []*graph.Node{
		graph.DotGeneral(v, []int{1}, nil, b, []int{1}, nil), // [i, j]
		graph.DotGeneral(a, []int{0}, nil, v, []int{0}, nil), // [j, k]
	}
}

type dotAxes struct {
	lhsContracting, lhsBatch, rhsContracting, rhsBatch []int
}

// dotGeneralAxes reads a DotGeneral node's axes, which GoMLX keeps in the
// unexported node.inputs (*nodeInputsDotGeneral).
func dotGeneralAxes(node *graph.Node) (ax dotAxes, ok bool) {
	if node == nil || node.Type() != graph.NodeTypeDotGeneral {
		return ax, false
	}
	in := reflect.ValueOf(node).Elem().FieldByName("inputs")
	if !in.IsValid() || in.Kind() != reflect.Interface || in.IsNil() {
		return ax, false
	}
	in = in.Elem()
	if in.Kind() != reflect.Pointer || in.IsNil() || in.Elem().Kind() != reflect.Struct {
		return ax, false
	}
	in = in.Elem()
	field := func(name string) []int {
		f := in.FieldByName(name)
		if !f.IsValid() || f.Kind() != reflect.Slice || f.Type().Elem().Kind() != reflect.Int {
			ok = false
			return nil
		}
		out := make([]int, f.Len())
		for i := range out {
			out[i] = int(f.Index(i).Int())
		}
		return out
	}
	ok = true
	ax.lhsContracting = field("lhsContractingAxes")
	ax.lhsBatch = field("lhsBatchAxes")
	ax.rhsContracting = field("rhsContractingAxes")
	ax.rhsBatch = field("rhsBatchAxes")
	if ok {
		lhs, rhs := node.Inputs()[0], node.Inputs()[1]
		ok = len(ax.lhsContracting) == len(ax.rhsContracting) && len(ax.lhsBatch) == len(ax.rhsBatch) &&
			validAxes(lhs.Rank(), ax.lhsContracting, ax.lhsBatch) && validAxes(rhs.Rank(), ax.rhsContracting, ax.rhsBatch)
	}
	return ax, ok
}

func validAxes(rank int, lists ...[]int) bool {
	seen := make([]bool, rank)
	for _, l := range lists {
		for _, a := range l {
			if a < 0 || a >= rank || seen[a] {
				return false
			}
			seen[a] = true
		}
	}
	return true
}

func crossAxes(rank int, contracting, batch []int) []int {
	var out []int
	for a := range rank {
		if !slices.Contains(contracting, a) && !slices.Contains(batch, a) {
			out = append(out, a)
		}
	}
	return out
}

func iota(start, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = start + i
	}
	return out
}
