package llama

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/internal/reftest"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// TestGradientFiniteDifferences checks the gradients of the loss with
// respect to an adapter weight and to the adapter layer's down_proj weight
// against central finite differences, in float64, on the llama-gqa
// reference model with a masked ResidualLinear adapter at layer 1 (its mask
// is an extra per-call input). The same graph functions run in float64
// here as in float32 in the models.
func TestGradientFiniteDifferences(t *testing.T) {
	m := loadRef(t, "llama-gqa")
	c := m.Config
	const layer = 1
	a := NewResidualLinear(c, layer, "adapter.w")
	specs := append(c.Specs(), a.Specs()...)
	wrt := []string{"adapter.w", DownProjName(layer)}

	// Weights in float64: the model's, and a random adapter.
	rng := rand.New(rand.NewPCG(1, 2))
	w64 := map[string]*tensors.Tensor{}
	for _, s := range c.Specs() {
		f32 := m.Weights.Float32(s.Name)
		f64 := make([]float64, len(f32))
		for i, v := range f32 {
			f64[i] = float64(v)
		}
		w64[s.Name] = tensors.FromFlatDataAndDimensions(f64, dims(s.Shape)...)
	}
	aw := make([]float64, c.HiddenSize*c.IntermediateSize)
	for i := range aw {
		aw[i] = 0.3 * rng.NormFloat64()
	}
	w64["adapter.w"] = tensors.FromFlatDataAndDimensions(aw, c.HiddenSize, c.IntermediateSize)

	const b, s = 2, 7
	ids := make([]int32, b*s)
	targets := make([]int32, b*s)
	mask := make([]float64, b*s)
	amask := make([]float64, b*s*c.IntermediateSize)
	for i := range ids {
		ids[i] = int32(rng.IntN(c.VocabSize))
		targets[i] = int32(rng.IntN(c.VocabSize))
		mask[i] = float64(rng.IntN(2))
	}
	mask[0] = 1
	for i := range amask {
		amask[i] = float64(rng.IntN(2))
	}
	inputs := []any{
		tensors.FromFlatDataAndDimensions(ids, b, s), tensors.FromFlatDataAndDimensions(targets, b, s),
		tensors.FromFlatDataAndDimensions(mask, b, s), tensors.FromFlatDataAndDimensions(amask, b, s, c.IntermediateSize),
	}

	build := func(withGrads bool) *graph.Exec {
		e, err := graph.NewExec(models.Backend(), func(all []*graph.Node) []*graph.Node {
			p := models.Params{}
			for i, sp := range specs {
				p[sp.Name] = all[i]
			}
			in := all[len(specs):]
			r := Forward(c, p, in[0], Options{Adapter: a, Extra: in[3:]})
			loss := Loss(r.Logits, in[1], in[2])
			if !withGrads {
				return []*graph.Node{loss}
			}
			return append([]*graph.Node{loss}, graph.Gradient(loss, p.Get(wrt[0]), p.Get(wrt[1]))...)
		})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	gradExec, lossExec := build(true), build(false)
	args := func() []any {
		out := make([]any, 0, len(specs)+len(inputs))
		for _, sp := range specs {
			out = append(out, w64[sp.Name])
		}
		return append(out, inputs...)
	}
	outs, err := gradExec.Exec(args()...)
	if err != nil {
		t.Fatal(err)
	}
	loss0 := tensors.ToScalar[float64](outs[0])
	lossAt := func() float64 {
		o, err := lossExec.Exec(args()...)
		if err != nil {
			t.Fatal(err)
		}
		return tensors.ToScalar[float64](o[0])
	}
	if d := lossAt() - loss0; d != 0 {
		t.Fatalf("loss-only graph differs from the gradient graph's loss by %g", d)
	}

	const h = 1e-5
	for gi, name := range wrt {
		grad := tensors.MustCopyFlatData[float64](outs[1+gi])
		// A few random elements and the largest gradient.
		picks := []int{0}
		for i := range grad {
			if math.Abs(grad[i]) > math.Abs(grad[picks[0]]) {
				picks[0] = i
			}
		}
		for range 6 {
			picks = append(picks, rng.IntN(len(grad)))
		}
		worst := 0.0
		for _, i := range picks {
			orig := w64[name]
			vals := tensors.MustCopyFlatData[float64](orig)
			perturbed := func(delta float64) float64 {
				v := append([]float64(nil), vals...)
				v[i] += delta
				w64[name] = tensors.FromFlatDataAndDimensions(v, orig.Shape().Dimensions...)
				return lossAt()
			}
			fd := (perturbed(h) - perturbed(-h)) / (2 * h)
			w64[name] = orig
			err := math.Abs(fd - grad[i])
			worst = max(worst, err/(1e-6+math.Abs(grad[i])))
			if err > 1e-8+1e-5*math.Abs(grad[i]) {
				t.Errorf("d loss/d %s[%d]: autodiff %.10g, finite differences %.10g", name, i, grad[i], fd)
			}
		}
		t.Logf("d loss/d %s: largest |grad| %.3g, worst relative error over %d elements %.2g", name, math.Abs(grad[picks[0]]), len(picks), worst)
	}

	// The float32 GradFunc of the model agrees with the float64 gradients.
	st := models.Weights{"adapter.w": toF32(w64["adapter.w"])}
	ma, err := m.WithAdapter(a, st)
	if err != nil {
		t.Fatal(err)
	}
	gf, err := ma.NewGradFunc(wrt...)
	if err != nil {
		t.Fatal(err)
	}
	loss32, grads, err := gf.Call(ma.Weights, inputs[0].(*tensors.Tensor), inputs[1].(*tensors.Tensor),
		toF32(inputs[2].(*tensors.Tensor)), toF32(inputs[3].(*tensors.Tensor)))
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(float64(loss32) - loss0); d > 1e-5 {
		t.Errorf("float32 loss %v, float64 %v", loss32, loss0)
	}
	for gi, name := range wrt {
		g64 := tensors.MustCopyFlatData[float64](outs[1+gi])
		g32 := grads[name].Value().([][]float32)
		cols := len(g32[0])
		worst := 0.0
		for i, v := range g64 {
			worst = max(worst, math.Abs(float64(g32[i/cols][i%cols])-v))
		}
		if worst > 1e-6 {
			t.Errorf("float32 gradient of %s differs from float64 by %g", name, worst)
		}
	}
}

func toF32(t *tensors.Tensor) *tensors.Tensor {
	v := tensors.MustCopyFlatData[float64](t)
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	return tensors.FromFlatDataAndDimensions(f, t.Shape().Dimensions...)
}

func dims(s []int64) []int {
	out := make([]int, len(s))
	for i, d := range s {
		out[i] = int(d)
	}
	return out
}

// TestGradFuncSubset checks that a GradFunc differentiates only with respect
// to the weights asked for, that they match PyTorch (see TestReference),
// and that a gradient step on the adapter alone lowers the loss.
func TestGradFuncSubset(t *testing.T) {
	m := loadRef(t, "llama-qwen2")
	a := NewResidualLinear(m.Config, 0, "")
	zero := models.RandomWeights(a.Specs(), 1, func(checkpoint.TensorSpec) models.Init { return models.Zeros })
	ma, err := m.WithAdapter(a, zero)
	if err != nil {
		t.Fatal(err)
	}
	gf, err := ma.NewGradFunc("adapter.memory")
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := IDs([]int{5, 17, 3, 80, 41, 9}, []int{7, 7, 60, 2, 11, 0})
	targets, _ := IDs([]int{17, 3, 80, 41, 9, 0}, []int{7, 60, 2, 11, 0, 0})
	mask := tensors.FromFlatDataAndDimensions([]float32{1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0}, 2, 6)
	loss, grads, err := gf.Call(ma.Weights, ids, targets, mask)
	if err != nil {
		t.Fatal(err)
	}
	if len(grads) != 1 || grads["adapter.memory"] == nil || !slices.Equal(gf.Wrt(), []string{"adapter.memory"}) {
		t.Fatalf("gradients of %v", gf.Wrt())
	}
	// One step of gradient descent on the adapter alone.
	g := tensors.MustCopyFlatData[float32](grads["adapter.memory"])
	step := make([]float32, len(g))
	for i := range g {
		step[i] = -2 * g[i]
	}
	st := models.Weights{"adapter.memory": tensors.FromFlatDataAndDimensions(step, m.Config.HiddenSize, m.Config.IntermediateSize)}
	m2, err := ma.WithWeights(merge(ma.Weights, st))
	if err != nil {
		t.Fatal(err)
	}
	loss2, _, err := gf.Call(m2.Weights, ids, targets, mask)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loss %.4f → %.4f after one step on the adapter", loss, loss2)
	if !(loss2 < loss) {
		t.Errorf("a gradient step on the adapter did not lower the loss: %v → %v", loss, loss2)
	}
}

// TestContextGradient binds the weights as GoMLX context variables, as
// context-based trainers do (models.Weights.ToContext, ContextParams), runs
// Forward on them and differentiates with respect to one layer's down_proj
// only: the result equals GradFunc's.
func TestContextGradient(t *testing.T) {
	m := loadRef(t, "llama-gqa")
	c, specs := m.Config, m.Config.Specs()
	ctx := context.New()
	if err := m.Weights.ToContext(ctx); err != nil {
		t.Fatal(err)
	}
	name := DownProjName(0)
	exec, err := context.NewExec(models.Backend(), ctx, func(ctx *context.Context, ids, targets, mask *graph.Node) []*graph.Node {
		p := models.ContextParams(ctx, ids.Graph(), specs)
		loss := Loss(Forward(c, p, ids, Options{}).Logits, targets, mask)
		return append([]*graph.Node{loss}, graph.Gradient(loss, p.Get(name))...)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	ids, _ := IDs([]int{1, 20, 30, 40, 50})
	targets, _ := IDs([]int{20, 30, 40, 50, 60})
	mask := tensors.FromFlatDataAndDimensions([]float32{1, 1, 1, 1, 1}, 1, 5)
	outs, err := exec.Exec(ids, targets, mask)
	if err != nil {
		t.Fatal(err)
	}
	gf, err := m.NewGradFunc(name)
	if err != nil {
		t.Fatal(err)
	}
	loss, grads, err := gf.Call(m.Weights, ids, targets, mask)
	if err != nil {
		t.Fatal(err)
	}
	if got := tensors.ToScalar[float32](outs[0]); got != loss {
		t.Errorf("context-bound loss %v, GradFunc's %v", got, loss)
	}
	if d := reftest.MaxAbsDiff(outs[1], grads[name]); d > 1e-7 {
		t.Errorf("context-bound gradient differs from GradFunc's by %g", d)
	}
}
