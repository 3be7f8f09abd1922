package linearize

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
)

// Kernel is an empirical neural tangent kernel on a sample of N examples
// with C outputs each:
//
//	K[(i,a), (j,b)] = ∇_θ f_a(x_i; θ₀) · ∇_θ f_b(x_j; θ₀)
//
// that is J Jᵀ for the Jacobian J [N·C, #θ] of the outputs.
type Kernel struct {
	N, C int
	// K is [N·C, N·C], row-major, row i·C + a, column j·C + b.
	K []float64
}

// At returns K[(i,a), (j,b)].
func (k *Kernel) At(i, a, j, b int) float64 { return k.K[(i*k.C+a)*k.N*k.C+j*k.C+b] }

// Trace is the scalar kernel, the trace over outputs: T[i, j] =
// Σ_a K[(i,a), (j,a)], [N, N] row-major.
func (k *Kernel) Trace() []float64 {
	t := make([]float64, k.N*k.N)
	for i := range k.N {
		for j := range k.N {
			for a := range k.C {
				t[i*k.N+j] += k.At(i, a, j, a)
			}
		}
	}
	return t
}

// ntkBlock is the number of outputs of one example whose kernel columns one
// call computes: they share the forward passes.
const ntkBlock = 8

// NTK computes the empirical neural tangent kernel of f's first output,
// [N, C] (e.g. logits), with respect to every weight of specs, at w, on the
// examples of inputs (axis 0 of every input). Column (j, b) is J·(Jᵀe_jb):
// the gradient of output b of example j (a reverse pass over that example
// alone) and its JVP over the whole sample; one compiled graph computes up
// to 8 columns of an example per call, sharing the forward passes, so the
// cost is about 2·N·C forward passes over the sample. progress, when set,
// is called after each call.
func NTK(f models.ForwardFn, specs []checkpoint.TensorSpec, w models.Weights, inputs []*tensors.Tensor, progress func(done, total int)) (*Kernel, error) {
	if len(inputs) == 0 {
		return nil, fmt.Errorf("linearize: NTK needs the sample's inputs")
	}
	n := inputs[0].Shape().Dimensions[0]
	for _, in := range inputs {
		if in.Rank() == 0 || in.Shape().Dimensions[0] != n {
			return nil, fmt.Errorf("linearize: NTK inputs must all hold the %d examples on axis 0, got %s", n, in.Shape())
		}
	}
	fn, err := models.NewFunc(models.Backend(), "ntk", specs, func(p models.Params, in []*graph.Node) []*graph.Node {
		k := len(in) - 2
		xs, j, sel := in[:k], in[k], in[k+1]
		one := make([]*graph.Node, k)
		for i, x := range xs {
			one[i] = graph.Gather(x, graph.Reshape(j, 1, 1))
		}
		yj := f(p, one)[0]
		if yj.Rank() != 2 {
			panic(fmt.Errorf("linearize: NTK needs outputs [examples, outputs], got %s", yj.Shape()))
		}
		names := sortedNames(p)
		wrt := make([]*graph.Node, len(names))
		for i, name := range names {
			wrt[i] = p[name]
		}
		// sel [ntkBlock] holds output indices (−1: none), made one-hot rows.
		c := yj.Shape().Dimensions[1]
		onehot := graph.ConvertDType(graph.Equal(
			graph.Iota(sel.Graph(), shapes.Make(dtypes.Int32, ntkBlock, c), 1),
			graph.BroadcastToDims(graph.ExpandAxes(sel, -1), ntkBlock, c)), yj.DType())
		dirs := make([]models.Params, ntkBlock)
		for r := range ntkBlock {
			row := graph.Gather(onehot, graph.Const(sel.Graph(), [][]int32{{int32(r)}}))
			g := graph.Gradient(graph.ReduceAllSum(graph.Mul(yj, row)), wrt...)
			dirs[r] = make(models.Params, len(names))
			for i, name := range names {
				dirs[r][name] = g[i]
			}
		}
		all := f(p, xs)[0]
		tan := tangentsOf([]*graph.Node{all}, p, dirs)
		cols := make([]*graph.Node, ntkBlock)
		for r := range ntkBlock {
			cols[r] = tan[r][0]
		}
		return []*graph.Node{graph.Stack(cols, 0)}
	})
	if err != nil {
		return nil, err
	}
	defer fn.Finalize()

	var k *Kernel
	done := 0
	for j := range n {
		for first := 0; k == nil || first < k.C; first += ntkBlock {
			sel := make([]int32, ntkBlock)
			for r := range sel {
				sel[r] = int32(first + r)
				if k != nil && first+r >= k.C {
					sel[r] = -1
				}
			}
			args := append(toAny(inputs), tensors.FromScalar(int32(j)), tensors.FromFlatDataAndDimensions(sel, ntkBlock))
			res, err := fn.Call(w, args...)
			if err != nil {
				return nil, fmt.Errorf("linearize: NTK columns of example %d: %w", j, err)
			}
			d := res[0].Shape().Dimensions // [ntkBlock, N, C]
			cols := toFloat64(res[0])
			res[0].FinalizeAll()
			if k == nil {
				if d[1] != n {
					return nil, fmt.Errorf("linearize: NTK needs f's first output to be [%d examples, outputs], got %d rows", n, d[1])
				}
				k = &Kernel{N: n, C: d[2], K: make([]float64, n*d[2]*n*d[2])}
			}
			c := k.C
			for r := range ntkBlock {
				b := first + r
				if b >= c {
					break
				}
				for i := range n {
					for a := range c {
						k.K[(i*c+a)*n*c+j*c+b] = cols[(r*n+i)*c+a]
					}
				}
			}
			done++
			if progress != nil {
				progress(done, n*((c+ntkBlock-1)/ntkBlock))
			}
		}
	}
	return k, nil
}

func toAny(ts []*tensors.Tensor) []any {
	out := make([]any, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out
}

func toFloat64(t *tensors.Tensor) []float64 {
	if t.DType() == dtypes.Float64 {
		return tensors.MustCopyFlatData[float64](t)
	}
	return f64host(tensors.MustCopyFlatData[float32](t))
}

func f64host(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}
