package memoir

import (
	"fmt"
	"slices"
	"time"

	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/llama"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// FTLConfig is FT-L's settings; DefaultFTLConfig gives EasyEdit's
// (hparams/FT/llama-7b.yaml: objective prompt_last, Adam lr 5e-4, weight
// decay 0, 25 steps, no norm constraint; a step is skipped and training
// stops once the loss is below 1e-2).
type FTLConfig struct {
	// Layer is the decoder layer whose down_proj weight is fine-tuned; −1
	// means DefaultLayer (the MEMOIR layer, so that the methods edit the
	// same site; EasyEdit's LLaMA-2-7B setting is layer 21 of 32).
	Layer       int     `json:"layer"`
	LR          float64 `json:"lr"`
	WeightDecay float64 `json:"weight_decay"`
	Steps       int     `json:"steps"`
	StopLoss    float64 `json:"stop_loss"`
}

// DefaultFTLConfig returns EasyEdit's FT-L settings.
func DefaultFTLConfig() FTLConfig {
	return FTLConfig{Layer: -1, LR: 5e-4, Steps: 25, StopLoss: 1e-2}
}

// FTL is FT-L (EasyEdit's FT with objective prompt_last): each edit
// fine-tunes one layer's down_proj weight in place with Adam (a fresh
// optimizer per edit), on the negative log-likelihood of each target token
// at the last prompt position.
type FTL struct {
	cfg    FTLConfig
	base   *Base
	w0, w  []float32 // the original and the edited down_proj [hidden, intermediate]
	edits  int
	edited *llama.Model
	grad   *llama.GradFunc
	info   modelInfo
}

// NewFTL prepares FT-L on base.
func NewFTL(base *Base, c FTLConfig) (*FTL, error) {
	var err error
	if c.Layer, err = base.resolveLayer(c.Layer); err != nil {
		return nil, err
	}
	if c.LR <= 0 || c.Steps < 0 {
		return nil, fmt.Errorf("ft-l: invalid settings %+v", c)
	}
	f := &FTL{cfg: c, base: base, info: base.info(c.Layer)}
	f.w0 = base.Model.Weights.Float32(llama.DownProjName(c.Layer))
	f.w = slices.Clone(f.w0)
	if f.grad, err = base.Model.NewGradFunc(llama.DownProjName(c.Layer)); err != nil {
		return nil, err
	}
	return f, f.update()
}

// update rebuilds the edited model from w.
func (f *FTL) update() error {
	mc := f.base.Model.Config
	var err error
	f.edited, err = f.base.Model.WithWeights(withWeights(f.base.Model.Weights,
		models.Weights{llama.DownProjName(f.cfg.Layer): tensorOf(f.w, mc.HiddenSize, mc.IntermediateSize)}))
	return err
}

// Method is MethodFTL.
func (f *FTL) Method() Method { return MethodFTL }

// Reset implements Editor: the original down_proj.
func (f *FTL) Reset() error {
	copy(f.w, f.w0)
	f.edits = 0
	return f.update()
}

// Layer is the edited layer.
func (f *FTL) Layer() int { return f.cfg.Layer }

// Edits is the number of edits applied.
func (f *FTL) Edits() int { return f.edits }

// Config returns the settings (layer resolved).
func (f *FTL) Config() FTLConfig { return f.cfg }

// Delta returns the edited down_proj minus the original.
func (f *FTL) Delta() []float32 {
	d := make([]float32, len(f.w))
	for i := range d {
		d[i] = f.w[i] - f.w0[i]
	}
	return d
}

// Model returns the edited model.
func (f *FTL) Model() *llama.Model { return f.edited }

// Edit fine-tunes the down_proj weight on one edit. The loss is EasyEdit's
// prompt_last: the mean over the target's tokens t_j of −log p(t_j) under
// the logits of the last prompt token (one row per target token).
func (f *FTL) Edit(req EditRequest) (EditStats, error) {
	start := time.Now()
	var st EditStats
	ids, pl, err := f.base.Encode(req.Prompt, req.Target)
	if err != nil {
		return st, err
	}
	target := ids[pl:]
	rows := make([][]int, len(target))
	for i := range rows {
		rows[i] = ids[:pl]
	}
	t, n, err := f.base.padRows(rows...)
	if err != nil {
		return st, err
	}
	tgt := make([]int32, len(rows)*n)
	w := make([]float32, len(rows)*n)
	for i, tok := range target {
		tgt[i*n+pl-1] = int32(tok)
		w[i*n+pl-1] = 1
	}
	targets := tensors.FromFlatDataAndDimensions(tgt, len(rows), n)
	weights := tensors.FromFlatDataAndDimensions(w, len(rows), n)
	mc := f.base.Model.Config
	name := llama.DownProjName(f.cfg.Layer)
	opt := newAdam(len(f.w), f.cfg.LR, f.cfg.WeightDecay)
	for i := range f.cfg.Steps {
		wts := withWeights(f.base.Model.Weights, models.Weights{name: tensorOf(f.w, mc.HiddenSize, mc.IntermediateSize)})
		loss, grads, err := f.grad.Call(wts, t, targets, weights)
		if err != nil {
			return st, err
		}
		st.Loss, st.Iterations = float64(loss), i+1
		if st.Loss < f.cfg.StopLoss {
			break
		}
		opt.step(f.w, tensors.MustCopyFlatData[float32](grads[name]))
	}
	f.edits++
	st.Seconds = time.Since(start).Seconds()
	return st, f.update()
}

// Predict implements Editor (the edited weight is always in place).
func (f *FTL) Predict(ids []int, promptLen int) ([]int, bool, error) {
	p, err := predictWith(f.base, f.edited, ids)
	return p, true, err
}
