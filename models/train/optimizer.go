package train

import (
	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// AdamOptions configure an Optimizer: Adam with decoupled weight decay, as
// Finetune's (torch.optim.AdamW; with WeightDecay 0, torch.optim.Adam).
// Beta1, Beta2 and Eps at 0 take PyTorch's defaults (0.9, 0.999, 1e-8);
// ClipNorm ≤ 0 does not clip; WeightDecay applies to every tensor.
type AdamOptions struct {
	Beta1, Beta2, Eps     float64
	WeightDecay, ClipNorm float64
}

// Optimizer minimises a loss over named float32 tensors with the step
// Finetune and Contrastive run (one compiled graph per input shape:
// loss, graph.Gradient, clipping, Adam update), for optimisations that are
// not a training run over a dataset, such as trigger inversion
// (unlearn.Invert). What the loss reads besides the optimised tensors
// comes in as the step's inputs, or as graph constants.
type Optimizer struct{ e *engine }

// NewOptimizer prepares the optimisation of the tensors specs, starting
// from their values in init (copied; init is left as it is).
func NewOptimizer(specs []checkpoint.TensorSpec, init models.Weights, loss LossFunc, o AdamOptions) (*Optimizer, error) {
	opts := Options{Beta1: o.Beta1, Beta2: o.Beta2, Eps: o.Eps}.withDefaults()
	params := make([]param, len(specs))
	for i, s := range specs {
		params[i] = param{TensorSpec: s, decay: o.WeightDecay != 0}
	}
	e, err := newEngine(params, init, loss, adamW{beta1: opts.Beta1, beta2: opts.Beta2, eps: opts.Eps, weightDecay: o.WeightDecay, clipNorm: o.ClipNorm}, dtypes.Float32)
	if err != nil {
		return nil, err
	}
	return &Optimizer{e: e}, nil
}

// Step computes the loss at the current values with the given inputs
// (tensors or Go values, in the order the loss reads them), updates the
// tensors with learning rate lr, and returns the loss and the loss
// function's second output (0 when it has none), both before the update.
func (o *Optimizer) Step(lr float64, inputs ...any) (loss, aux float64, err error) {
	out, err := o.e.Step(lr, inputs...)
	return out.loss, out.accuracy, err
}

// Weights returns copies of the current values.
func (o *Optimizer) Weights() (models.Weights, error) { return o.e.Weights() }

// Close frees the compiled graph and the state.
func (o *Optimizer) Close() { o.e.Close() }
