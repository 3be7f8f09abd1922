package train

import (
	"fmt"
	"math"
	"sync"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// The optimizer: one compiled graph per batch shape computes the loss, its
// gradient with respect to the trained weights (graph.Gradient, the
// weights being graph parameters as everywhere in editkit's models), the
// global-norm clipping and the AdamW update, and returns the new weights and
// moments. The host keeps the state between steps and computes the
// per-step scalars (learning rate, bias corrections) in float64.
//
// Why not GoMLX's context variables and optimizers.Adam: its AdamW is
// decoupled (the step adds lr·wd·θ, as torch.optim.AdamW's θ·(1 − lr·wd)),
// but it decays every trainable variable (no per-tensor exclusion, which
// CLIP-style pre-training needs for gains, biases and logit_scale), has no
// global-norm clipping of the gradient, and defaults to ε = 1e-7. Writing the
// update here (a dozen graph operations) keeps it exactly torch's
// and testable against a hand computation.

// param is a trained tensor.
type param struct {
	checkpoint.TensorSpec
	decay bool        // weight decay applies
	clamp *[2]float64 // clamp to [lo, hi] after each update (logit_scale)
}

// LossFunc builds the scalar loss of a batch from the trained weights and the
// batch inputs; acc is an optional scalar (the batch's accuracy, or any
// other measure) reported with the loss.
type LossFunc func(p models.Params, inputs []*graph.Node) (loss, acc *graph.Node)

// adamW holds AdamW's constants.
type adamW struct {
	beta1, beta2, eps, weightDecay, clipNorm float64
}

// engine trains params with AdamW on a loss.
type engine struct {
	backend backends.Backend
	dtype   dtypes.DType
	params  []param
	loss    LossFunc
	opt     adamW

	mu      sync.Mutex
	step    *graph.Exec
	grads   *graph.Exec
	p, m, v []*tensors.Tensor
	// frozen are graph inputs the loss reads but training does not change
	// (θ₀ of a linearized model), passed before each batch's inputs;
	// ownFrozen says whether the engine made them (and frees them).
	frozen    []*tensors.Tensor
	ownFrozen bool
	t         int // steps taken
}

// stepOut is what a step reports.
type stepOut struct {
	loss, gradNorm, accuracy float64
}

// newEngine prepares training of params, whose initial values w holds. The
// engine copies them, so w is left as it is. What the loss reads besides
// the params (a frozen head) it holds as graph constants.
func newEngine(params []param, w models.Weights, loss LossFunc, opt adamW, dtype dtypes.DType) (*engine, error) {
	e := &engine{backend: models.Backend(), dtype: dtype, params: params, loss: loss, opt: opt}
	load := func(s checkpoint.TensorSpec) (*tensors.Tensor, error) {
		t, ok := w[s.Name]
		if !ok || t == nil {
			return nil, fmt.Errorf("train: no initial value for weight %q", s.Name)
		}
		want := make([]int, len(s.Shape))
		for i, d := range s.Shape {
			want[i] = int(d)
		}
		if !t.Shape().Equal(shapes.Make(t.DType(), want...)) {
			return nil, fmt.Errorf("train: weight %q is %s, want %v", s.Name, t.Shape(), want)
		}
		return convert(t, dtype)
	}
	for _, s := range params {
		t, err := load(s.TensorSpec)
		if err != nil {
			return nil, err
		}
		e.p = append(e.p, t)
		e.m = append(e.m, tensors.FromShape(shapes.Make(dtype, t.Shape().Dimensions...)))
		e.v = append(e.v, tensors.FromShape(shapes.Make(dtype, t.Shape().Dimensions...)))
	}
	var err error
	if e.step, err = graph.NewExec(e.backend, e.buildStep); err != nil {
		return nil, err
	}
	e.step = e.step.WithName("train-step").SetMaxCache(8)
	return e, nil
}

// freeze makes the tensors of specs, from w, inputs of every step's loss
// ahead of the batch's: the loss finds them first in its inputs, in the
// order of specs. They are shared with w when already in the training
// dtype, else converted.
func (e *engine) freeze(specs []checkpoint.TensorSpec, w models.Weights) error {
	if err := w.Check(specs); err != nil {
		return fmt.Errorf("train: frozen weights: %w", err)
	}
	e.ownFrozen = e.dtype != dtypes.Float32
	for _, s := range specs {
		t := w[s.Name]
		if e.ownFrozen {
			var err error
			if t, err = convert(t, e.dtype); err != nil {
				return err
			}
		}
		e.frozen = append(e.frozen, t)
	}
	return nil
}

// convert returns a copy of t in dtype (float32 or float64).
func convert(t *tensors.Tensor, dtype dtypes.DType) (*tensors.Tensor, error) {
	dims := t.Shape().Dimensions
	switch {
	case t.DType() == dtype:
		return t.LocalClone()
	case t.DType() == dtypes.Float32 && dtype == dtypes.Float64:
		src := tensors.MustCopyFlatData[float32](t)
		dst := make([]float64, len(src))
		for i, v := range src {
			dst[i] = float64(v)
		}
		return tensors.FromFlatDataAndDimensions(dst, dims...), nil
	case t.DType() == dtypes.Float64 && dtype == dtypes.Float32:
		src := tensors.MustCopyFlatData[float64](t)
		dst := make([]float32, len(src))
		for i, v := range src {
			dst[i] = float32(v)
		}
		return tensors.FromFlatDataAndDimensions(dst, dims...), nil
	}
	return nil, fmt.Errorf("train: cannot convert a %s tensor to %s", t.DType(), dtype)
}

// bind maps the graph's leading parameters, the trained tensors, to their
// names.
func (e *engine) bind(trained []*graph.Node) models.Params {
	p := make(models.Params, len(trained))
	for i, s := range e.params {
		p[s.Name] = trained[i]
	}
	return p
}

// Step graph arguments: trained (n), m (n), v (n), then the scalars
// decayMul = 1 − lr·wd, stepSize = lr/(1 − β1ᵗ), sqrtBC2 = √(1 − β2ᵗ),
// then the frozen tensors and the batch inputs (the loss's inputs). Outputs: loss, gradient norm, accuracy, new
// trained (n), new m (n), new v (n).
func (e *engine) buildStep(all []*graph.Node) []*graph.Node {
	n := len(e.params)
	P, M, V := all[:n], all[n:2*n], all[2*n:3*n]
	decayMul, stepSize, sqrtBC2 := all[3*n], all[3*n+1], all[3*n+2]
	inputs := all[3*n+3:]
	g := P[0].Graph()

	loss, acc := e.loss(e.bind(P), inputs)
	if acc == nil {
		acc = graph.ScalarZero(g, loss.DType())
	}
	grads := graph.Gradient(loss, P...)

	// Global L2 norm over all gradients; clip as torch.nn.utils.clip_grad_norm_:
	// coef = min(1, max_norm/(norm + 1e-6)).
	var sq *graph.Node
	for _, gr := range grads {
		s := graph.ReduceAllSum(graph.Square(gr))
		if sq == nil {
			sq = s
		} else {
			sq = graph.Add(sq, s)
		}
	}
	norm := graph.Sqrt(sq)
	if c := e.opt.clipNorm; c > 0 {
		coef := graph.Min(graph.ScalarOne(g, norm.DType()),
			graph.Div(graph.Scalar(g, norm.DType(), c), graph.AddScalar(norm, 1e-6)))
		for i := range grads {
			grads[i] = graph.Mul(grads[i], coef)
		}
	}

	b1, b2, eps := e.opt.beta1, e.opt.beta2, e.opt.eps
	newP, newM, newV := make([]*graph.Node, n), make([]*graph.Node, n), make([]*graph.Node, n)
	for i, s := range e.params {
		gr := grads[i]
		m := graph.Add(graph.MulScalar(M[i], b1), graph.MulScalar(gr, 1-b1))
		v := graph.Add(graph.MulScalar(V[i], b2), graph.MulScalar(graph.Square(gr), 1-b2))
		p := P[i]
		if s.decay {
			p = graph.Mul(p, decayMul)
		}
		denom := graph.AddScalar(graph.Div(graph.Sqrt(v), sqrtBC2), eps)
		p = graph.Sub(p, graph.Mul(stepSize, graph.Div(m, denom)))
		if s.clamp != nil {
			p = graph.ClipScalar(p, s.clamp[0], s.clamp[1])
		}
		newP[i], newM[i], newV[i] = p, m, v
	}
	out := []*graph.Node{loss, norm, acc}
	out = append(out, newP...)
	out = append(out, newM...)
	return append(out, newV...)
}

func (e *engine) scalar(v float64) *tensors.Tensor {
	if e.dtype == dtypes.Float64 {
		return tensors.FromScalar(v)
	}
	return tensors.FromScalar(float32(v))
}

// Step runs one AdamW step at learning rate lr on a batch.
func (e *engine) Step(lr float64, inputs ...any) (out stepOut, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := float64(e.t + 1)
	args := make([]any, 0, 3*len(e.p)+3+len(e.frozen)+len(inputs))
	for _, l := range [][]*tensors.Tensor{e.p, e.m, e.v} {
		for _, x := range l {
			args = append(args, x)
		}
	}
	args = append(args,
		e.scalar(1-lr*e.opt.weightDecay),
		e.scalar(lr/(1-math.Pow(e.opt.beta1, t))),
		e.scalar(math.Sqrt(1-math.Pow(e.opt.beta2, t))))
	for _, x := range e.frozen {
		args = append(args, x)
	}
	args = append(args, inputs...)
	res, err := execSafe(e.step, args)
	if err != nil {
		return out, fmt.Errorf("train step %d: %w", e.t+1, err)
	}
	n := len(e.p)
	out.loss, out.gradNorm, out.accuracy = scalarValue(res[0]), scalarValue(res[1]), scalarValue(res[2])
	for i, l := range [][]*tensors.Tensor{e.p, e.m, e.v} {
		for j := range l {
			l[j].FinalizeAll()
			l[j] = res[3+i*n+j]
		}
	}
	for _, x := range res[:3] {
		x.FinalizeAll()
	}
	e.t++
	if math.IsNaN(out.loss) || math.IsInf(out.loss, 0) {
		return out, fmt.Errorf("train step %d: the loss is %v (learning rate too high?)", e.t, out.loss)
	}
	return out, nil
}

// execSafe runs an Exec, turning panics into errors.
func execSafe(ex *graph.Exec, args []any) (res []*tensors.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("%v", r)
		}
	}()
	return ex.Exec(args...)
}

func scalarValue(t *tensors.Tensor) float64 {
	switch v := t.Value().(type) {
	case float32:
		return float64(v)
	case float64:
		return v
	}
	panic(fmt.Errorf("train: scalar of dtype %s", t.DType()))
}

// Gradients computes the loss of a batch and its gradient with respect to
// the trained weights at their current values: the same loss and
// graph.Gradient call as Step, before clipping.
func (e *engine) Gradients(inputs ...any) (loss float64, grads map[string]*tensors.Tensor, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.grads == nil {
		e.grads, err = graph.NewExec(e.backend, func(all []*graph.Node) []*graph.Node {
			n := len(e.params)
			l, _ := e.loss(e.bind(all[:n]), all[n:])
			return append([]*graph.Node{l}, graph.Gradient(l, all[:n]...)...)
		})
		if err != nil {
			return 0, nil, err
		}
	}
	args := make([]any, 0, len(e.p)+len(e.frozen)+len(inputs))
	for _, x := range e.p {
		args = append(args, x)
	}
	for _, x := range e.frozen {
		args = append(args, x)
	}
	args = append(args, inputs...)
	res, err := execSafe(e.grads, args)
	if err != nil {
		return 0, nil, err
	}
	grads = make(map[string]*tensors.Tensor, len(e.params))
	for i, s := range e.params {
		grads[s.Name] = res[1+i]
	}
	return scalarValue(res[0]), grads, nil
}

// Weights returns copies of the trained tensors, in float32.
func (e *engine) Weights() (models.Weights, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := make(models.Weights, len(e.p))
	for i, s := range e.params {
		t, err := convert(e.p[i], dtypes.Float32)
		if err != nil {
			return nil, err
		}
		w[s.Name] = t
	}
	return w, nil
}

// Close frees the compiled graphs and the state.
func (e *engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range [][]*tensors.Tensor{e.p, e.m, e.v} {
		for _, x := range l {
			x.FinalizeAll()
		}
	}
	if e.ownFrozen {
		for _, x := range e.frozen {
			x.FinalizeAll()
		}
	}
	e.p, e.m, e.v, e.frozen = nil, nil, nil, nil
	if e.step != nil {
		e.step.Finalize()
	}
	if e.grads != nil {
		e.grads.Finalize()
	}
}
