package linearize

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/models"
)

// TestNTK compares the kernel with J·Jᵀ formed from the explicit Jacobian:
// one reverse pass per output, in float64 (a different route: no JVP).
func TestNTK(t *testing.T) {
	m := loadRef(t, "hf-clip")
	const n = 3
	rng := rand.New(rand.NewPCG(9, 9))
	px := make([]float32, n*32*32*3)
	for i := range px {
		px[i] = float32(rng.NormFloat64())
	}
	input := tensors.FromFlatDataAndDimensions(px, n, 32, 32, 3)
	var calls int
	k, err := NTK(m.f, m.specs, m.w, []*tensors.Tensor{input}, func(done, total int) { calls = done })
	if err != nil {
		t.Fatal(err)
	}
	c := k.C
	if k.N != n || c != 24 || calls != n*3 {
		t.Fatalf("kernel %d×%d outputs after %d calls, want %d×24 after %d", k.N, c, calls, n, n*3)
	}

	// The explicit Jacobian, row (i, a) = ∇_θ y[i, a], in float64.
	exec, err := graph.NewExec(models.Backend(), func(all []*graph.Node) []*graph.Node {
		p := models.Params{}
		for i, s := range m.specs {
			p[s.Name] = all[i]
		}
		y := m.f(p, []*graph.Node{all[len(m.specs)]})[0]
		g := graph.Gradient(graph.ReduceAllSum(graph.Mul(y, all[len(m.specs)+1])), all[:len(m.specs)]...)
		flat := make([]*graph.Node, len(g))
		for i, x := range g {
			flat[i] = graph.Reshape(x, -1)
		}
		return []*graph.Node{graph.Concatenate(flat, 0)}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	w64 := to64(m.w)
	var jac [][]float64
	for i := range n {
		for a := range c {
			e := make([]float64, n*c)
			e[i*c+a] = 1
			args := []any{}
			for _, s := range m.specs {
				args = append(args, w64[s.Name])
			}
			args = append(args, input64(input), tensors.FromFlatDataAndDimensions(e, n, c))
			out, err := exec.Exec(args...)
			if err != nil {
				t.Fatal(err)
			}
			jac = append(jac, tensors.MustCopyFlatData[float64](out[0]))
		}
	}
	worst, scale, asym := 0.0, 0.0, 0.0
	for r := range jac {
		for q := range jac {
			want := 0.0
			for p := range jac[r] {
				want += jac[r][p] * jac[q][p]
			}
			got := k.K[r*n*c+q]
			worst = max(worst, math.Abs(got-want))
			scale = max(scale, math.Abs(want))
			asym = max(asym, math.Abs(got-k.K[q*n*c+r]))
		}
	}
	t.Logf("max |K − J·Jᵀ| = %.3g (max |K| %.3g), max asymmetry %.3g", worst, scale, asym)
	if worst > 1e-5*scale {
		t.Errorf("the kernel differs from J·Jᵀ by %g (scale %g)", worst, scale)
	}
	tr := k.Trace()
	for i := range n {
		for j := range n {
			want := 0.0
			for a := range c {
				want += k.At(i, a, j, a)
			}
			if tr[i*n+j] != want {
				t.Fatalf("Trace[%d,%d] = %g, want %g", i, j, tr[i*n+j], want)
			}
		}
	}
}
