package linearize

import (
	"fmt"
	"slices"

	"github.com/editkit/editkit/models"
	"github.com/gomlx/gomlx/pkg/core/graph"
)

// JVP builds, in the current graph, the outputs of f at the weights base and
// their Jacobian-vector products in each direction:
//
//	primal[k]     = f_k(inputs; base)
//	tangents[d][k] = J_θ f_k(inputs; base) · dirs[d]
//
// dirs[d] maps weight names to nodes of the weights' shapes; a weight a
// direction leaves out does not move. Outputs must be floating point.
//
// GoMLX v0.26 has reverse mode only. The JVP is the transpose of the VJP,
// obtained by differentiating the VJP with respect to its cotangent
// ("double-VJP"): with u a placeholder cotangent of the outputs' shapes,
// g(u) = J_θᵀu is linear in u, and ∂/∂u ⟨g(u), d⟩ = J_θ d. The placeholder's
// value (zero) never reaches the result: the second pass reads only the
// primal activations and d, so the backends skip computing g(u) itself.
// Each direction costs one more pass over the VJP graph; the primal
// activations are shared by all directions.
func JVP(f models.ForwardFn, base models.Params, inputs []*graph.Node, dirs ...models.Params) (primal []*graph.Node, tangents [][]*graph.Node) {
	primal = f(base, inputs)
	return primal, tangentsOf(primal, base, dirs)
}

// tangentsOf returns the JVPs of the outputs primal, computed from the
// weights base, in each direction (see JVP).
func tangentsOf(primal []*graph.Node, base models.Params, dirs []models.Params) (tangents [][]*graph.Node) {
	names := sortedNames(base)
	if len(names) == 0 {
		panic(fmt.Errorf("linearize: no weights to differentiate"))
	}
	if len(primal) == 0 {
		panic(fmt.Errorf("linearize: the model returned no outputs"))
	}
	wrt := make([]*graph.Node, len(names))
	for i, n := range names {
		wrt[i] = base[n]
	}
	g := wrt[0].Graph()
	cot := make([]*graph.Node, len(primal))
	var pairing *graph.Node
	for k, y := range primal {
		if !y.DType().IsFloat() {
			panic(fmt.Errorf("linearize: output %d is %s; only floating-point outputs can be linearized", k, y.Shape()))
		}
		cot[k] = graph.Zeros(g, y.Shape())
		pairing = addOrSet(pairing, graph.ReduceAllSum(graph.Mul(y, cot[k])))
	}
	vjp := graph.Gradient(pairing, wrt...) // J_θᵀ u, one node per weight
	for _, d := range dirs {
		var dot *graph.Node
		for i, n := range names {
			dn, ok := d[n]
			if !ok || dn == nil {
				continue
			}
			if !dn.Shape().Equal(wrt[i].Shape()) {
				panic(fmt.Errorf("linearize: direction of weight %q is %s, the weight is %s", n, dn.Shape(), wrt[i].Shape()))
			}
			dot = addOrSet(dot, graph.ReduceAllSum(graph.Mul(vjp[i], dn)))
		}
		if dot == nil {
			t := make([]*graph.Node, len(primal))
			for k, y := range primal {
				t[k] = graph.ZerosLike(y)
			}
			tangents = append(tangents, t)
			continue
		}
		tangents = append(tangents, graph.Gradient(dot, cot...))
	}
	return tangents
}

func addOrSet(acc, x *graph.Node) *graph.Node {
	if acc == nil {
		return x
	}
	return graph.Add(acc, x)
}

func sortedNames(p models.Params) []string {
	names := make([]string, 0, len(p))
	for n := range p {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
