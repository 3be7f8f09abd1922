// Package fastgrad replaces GoMLX v0.26's gradients of DotGeneral and
// rank-2 Dot with ones that cost two matrix products, and the gradient of
// Slice with one that every backend can run.
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
// GoMLX's gradient of Slice pads the incoming gradient with zeros (Pad),
// an op the pure-Go backend simplego lacks. Concatenate's gradient is a
// Slice, so any second derivative through a Concatenate (the class token of
// a vision transformer; a Jacobian-vector product built from two reverse
// passes, see package linearize) needs it. SliceVJP concatenates zero blocks
// around the gradient instead, axis by axis, for slices of stride 1 (the
// only ones editkit's models and gradients make; other strides keep the
// built-in gradient).
//
// Install registers them in graph.VJPRegistration for the whole process;
// package models calls it from its init, so every program that uses editkit
// models gets them. GoMLX does not expose a DotGeneral node's axes nor a
// Slice's bounds; they are read from the node by reflection (the field
// names of GoMLX v0.26.0's nodeInputsDotGeneral and nodeInputsSlice). Should
// a GoMLX upgrade rename them, the replacements fall back to the built-in
// gradients (correct, only slow, or without simplego support) and the tests
// of this package fail, which is the signal to update them.
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
	builtinSlice      = graph.VJPRegistration[graph.NodeTypeSlice]
)

// Install registers DotGeneralVJP, DotVJP and SliceVJP as the gradients of
// DotGeneral, Dot and Slice nodes. It is idempotent. It writes a global map that graph
// building reads, so call it before building graphs (package models calls it
// from its init).
func Install() {
	graph.VJPRegistration[graph.NodeTypeDotGeneral] = DotGeneralVJP
	graph.VJPRegistration[graph.NodeTypeDot] = DotVJP
	graph.VJPRegistration[graph.NodeTypeSlice] = SliceVJP
}

// Installed reports whether the replacements are the registered gradients.
func Installed() bool {
	same := func(a, b graph.VJP) bool { return reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer() }
	return same(graph.VJPRegistration[graph.NodeTypeDotGeneral], DotGeneralVJP) &&
		same(graph.VJPRegistration[graph.NodeTypeDot], DotVJP) &&
		same(graph.VJPRegistration[graph.NodeTypeSlice], SliceVJP)
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
	in, ok := nodeInputs(node)
	if !ok {
		return ax, false
	}
	for _, f := range []struct {
		name string
		dst  *[]int
	}{{"lhsContractingAxes", &ax.lhsContracting}, {"lhsBatchAxes", &ax.lhsBatch},
		{"rhsContractingAxes", &ax.rhsContracting}, {"rhsBatchAxes", &ax.rhsBatch}} {
		if *f.dst, ok = intsField(in, f.name); !ok {
			return ax, false
		}
	}
	lhs, rhs := node.Inputs()[0], node.Inputs()[1]
	ok = len(ax.lhsContracting) == len(ax.rhsContracting) && len(ax.lhsBatch) == len(ax.rhsBatch) &&
		validAxes(lhs.Rank(), ax.lhsContracting, ax.lhsBatch) && validAxes(rhs.Rank(), ax.rhsContracting, ax.rhsBatch)
	return ax, ok
}

// nodeInputs returns the struct behind a node's unexported inputs field
// (GoMLX's nodeInputs<Op>), where the op's parameters live.
func nodeInputs(node *graph.Node) (reflect.Value, bool) {
	in := reflect.ValueOf(node).Elem().FieldByName("inputs")
	if !in.IsValid() || in.Kind() != reflect.Interface || in.IsNil() {
		return in, false
	}
	in = in.Elem()
	if in.Kind() != reflect.Pointer || in.IsNil() || in.Elem().Kind() != reflect.Struct {
		return in, false
	}
	return in.Elem(), true
}

// intsField copies the []int field name of s.
func intsField(s reflect.Value, name string) ([]int, bool) {
	f := s.FieldByName(name)
	if !f.IsValid() || f.Kind() != reflect.Slice || f.Type().Elem().Kind() != reflect.Int {
		return nil, false
	}
	out := make([]int, f.Len())
	for i := range out {
		out[i] = int(f.Index(i).Int())
	}
	return out, true
}

// sliceBounds reads a Slice node's starts, limits and strides (GoMLX's
// unexported *nodeInputsSlice).
func sliceBounds(node *graph.Node) (starts, limits, strides []int, ok bool) {
	if node == nil || node.Type() != graph.NodeTypeSlice {
		return nil, nil, nil, false
	}
	in, ok := nodeInputs(node)
	if !ok {
		return nil, nil, nil, false
	}
	starts, ok1 := intsField(in, "starts")
	limits, ok2 := intsField(in, "limits")
	strides, ok3 := intsField(in, "strides")
	rank := node.Inputs()[0].Rank()
	ok = ok1 && ok2 && ok3 && len(starts) == rank && len(limits) == rank && len(strides) == rank
	return starts, limits, strides, ok
}

// SliceVJP is the gradient of a Slice of stride 1: the incoming gradient
// with zero blocks concatenated before and after it along each sliced axis
// (what Pad would do; simplego has Concatenate but no Pad). Strided slices
// keep the built-in gradient.
func SliceVJP(node *graph.Node, vjpOutputs []*graph.Node, outputShape shapes.Shape) []*graph.Node {
	starts, limits, strides, ok := sliceBounds(node)
	if ok {
		for _, s := range strides {
			ok = ok && s == 1
		}
	}
	if !ok {
		return builtinSlice(node, vjpOutputs, outputShape)
	}
	v := vjpOutputs[0]
	g := v.Graph()
	dims := node.Inputs()[0].Shape().Dimensions
	for axis := range dims {
		before, after := starts[axis], dims[axis]-limits[axis]
		if before == 0 && after == 0 {
			continue
		}
		parts := make([]*graph.Node, 0, 3)
		block := func(n int) *graph.Node {
			d := slices.Clone(v.Shape().Dimensions)
			d[axis] = n
			return graph.Zeros(g, shapes.Make(v.DType(), d...))
		}
		if before > 0 {
			parts = append(parts, block(before))
		}
		parts = append(parts, v)
		if after > 0 {
			parts = append(parts, block(after))
		}
		v = graph.Concatenate(parts, axis)
	}
	return []*graph.Node{v}
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
