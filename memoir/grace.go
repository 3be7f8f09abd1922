package memoir

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/llama"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// GRACEConfig is GRACE's settings; DefaultGRACEConfig gives EasyEdit's
// (hparams/GRACE/llama-7b.yaml: eps 1.0, edit_lr 1.0, n_iter 50, euclidean
// distance, cold values, replace_last, eps_expand coverage).
type GRACEConfig struct {
	// Layer is the decoder layer whose down_proj the codebook sits at; −1
	// means DefaultLayer.
	Layer int `json:"layer"`
	// EpsInit is a new key's radius ε_init (1.0).
	EpsInit float64 `json:"eps_init"`
	// LR and Iterations: Adam on the chosen value, lr 1.0, 50 steps.
	LR         float64 `json:"lr"`
	Iterations int     `json:"iterations"`
	// Seed of the cold value initialisation (uniform [0, 1), as
	// torch.rand), drawn per edit from PCG(Seed, edit number).
	Seed uint64 `json:"seed"`
}

// DefaultGRACEConfig returns EasyEdit's GRACE settings.
func DefaultGRACEConfig() GRACEConfig {
	return GRACEConfig{Layer: -1, EpsInit: 1.0, LR: 1.0, Iterations: 50, Seed: 42}
}

// Codebook is GRACE's key–value codebook (Hartvigsen et al., 2023): keys
// are the edited layer's down-projection inputs at the last prompt token,
// values replace the layer's output there, each key has a radius ε and
// the label (target tokens) of its edit.
type Codebook struct {
	Keys    [][]float32
	Values  [][]float32
	Eps     []float64
	Labels  [][]int
	EpsInit float64
}

// Codebook actions of Update.
const (
	ActionAdd    = "add"    // no key within ε_init + ε_nearest: a new entry
	ActionSplit  = "split"  // the nearest key has another label: a new entry, both radii d/2
	ActionExpand = "expand" // same label, beyond its radius: ε_nearest ← d
	ActionNone   = "none"   // same label, within its radius: nothing changes
)

// Len is the number of entries.
func (cb *Codebook) Len() int { return len(cb.Keys) }

// Nearest returns the entry whose key is closest to q (Euclidean; the
// first of equals) and the distance; −1 when the codebook is empty.
func (cb *Codebook) Nearest(q []float32) (int, float64) {
	best, bd := -1, math.Inf(1)
	for i, k := range cb.Keys {
		if d := euclid(k, q); d < bd {
			best, bd = i, d
		}
	}
	return best, bd
}

// Lookup returns the nearest entry and whether q lies within its radius
// (the value then replaces the layer's output).
func (cb *Codebook) Lookup(q []float32) (int, bool) {
	i, d := cb.Nearest(q)
	return i, i >= 0 && d <= cb.Eps[i]
}

func euclid(a, b []float32) float64 {
	var s float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		s += d * d
	}
	return math.Sqrt(s)
}

func (cb *Codebook) add(key []float32, label []int, value []float32) {
	cb.Keys = append(cb.Keys, slices.Clone(key))
	cb.Values = append(cb.Values, slices.Clone(value))
	cb.Eps = append(cb.Eps, cb.EpsInit)
	cb.Labels = append(cb.Labels, slices.Clone(label))
}

// Update applies GRACE's codebook rule for an edit with key and label
// (value is the new entry's initial value, used when one is added), as
// EasyEdit's GRACEAdapter does on an edit's first iteration: with no key
// within ε_init + ε_nearest of it, a new entry; within it, if the nearest
// key's label differs, a new entry and both radii set to d/2 (the old one
// d/2 − 1e-5); if it is the same, the nearest radius grows to d when d
// exceeds it. It returns the action and the entry whose value the edit
// trains: the nearest key after the update, and whether the key lies
// within its radius (else the value is not used, and not trained).
func (cb *Codebook) Update(key []float32, label []int, value []float32) (action string, entry int, within bool) {
	action = ActionAdd
	if cb.Len() == 0 {
		cb.add(key, label, value)
	} else {
		j, d := cb.Nearest(key)
		switch {
		case d > cb.EpsInit+cb.Eps[j]:
			cb.add(key, label, value)
		case !slices.Equal(label, cb.Labels[j]):
			action = ActionSplit
			cb.add(key, label, value)
			cb.Eps[j] = d/2 - 1e-5
			cb.Eps[len(cb.Eps)-1] = d / 2
		case d > cb.Eps[j]:
			action = ActionExpand
			cb.Eps[j] = d
		default:
			action = ActionNone
		}
	}
	entry, within = cb.Lookup(key)
	return action, entry, within
}

// GRACE is the GRACE editor: a codebook at one layer's down-projection
// whose values, trained per edit with Adam, replace the layer's output at
// the last prompt token when the query's key there lies within a stored
// key's radius.
type GRACE struct {
	cfg    GRACEConfig
	base   *Base
	book   Codebook
	edits  int
	edited *llama.Model
	grad   *llama.GradFunc
	info   modelInfo
}

// NewGRACE creates an empty codebook on base.
func NewGRACE(base *Base, c GRACEConfig) (*GRACE, error) {
	var err error
	if c.Layer, err = base.resolveLayer(c.Layer); err != nil {
		return nil, err
	}
	if c.EpsInit < 0 || c.LR <= 0 || c.Iterations < 0 {
		return nil, fmt.Errorf("grace: invalid settings %+v", c)
	}
	mc := base.Model.Config
	g := &GRACE{cfg: c, base: base, book: Codebook{EpsInit: c.EpsInit}, info: base.info(c.Layer)}
	a := &graceAdapter{layer: c.Layer, hidden: mc.HiddenSize}
	if g.edited, err = base.Model.WithAdapter(a, models.Weights{valueName: tensorOf(make([]float32, mc.HiddenSize), mc.HiddenSize)}); err != nil {
		return nil, err
	}
	if g.grad, err = g.edited.NewGradFunc(valueName); err != nil {
		return nil, err
	}
	return g, nil
}

// Method is MethodGRACE.
func (g *GRACE) Method() Method { return MethodGRACE }

// Reset implements Editor: an empty codebook.
func (g *GRACE) Reset() error {
	g.book = Codebook{EpsInit: g.cfg.EpsInit}
	g.edits = 0
	return nil
}

// Layer is the edited layer.
func (g *GRACE) Layer() int { return g.cfg.Layer }

// Edits is the number of edits applied.
func (g *GRACE) Edits() int { return g.edits }

// Codebook returns the codebook (shared).
func (g *GRACE) Codebook() *Codebook { return &g.book }

// Config returns the settings (layer resolved).
func (g *GRACE) Config() GRACEConfig { return g.cfg }

// key is the down-projection input at the last prompt token.
func (g *GRACE) key(prompt []int) ([]float32, error) {
	xs, err := g.base.features(g.cfg.Layer, prompt)
	if err != nil {
		return nil, err
	}
	return slices.Clone(xs[0][len(prompt)-1]), nil
}

// sel marks position p of a padded row of n positions.
func sel(p, n int) *tensors.Tensor {
	s := make([]float32, n)
	s[p] = 1
	return tensors.FromFlatDataAndDimensions(s, 1, n)
}

// Edit updates the codebook with the edit's key and trains the chosen
// value: Adam (lr, 50 steps) on the target cross-entropy of prompt + " " +
// target with the value replacing the layer's output at the last prompt
// token.
func (g *GRACE) Edit(req EditRequest) (EditStats, error) {
	start := time.Now()
	var st EditStats
	ids, pl, err := g.base.Encode(req.Prompt, req.Target)
	if err != nil {
		return st, err
	}
	key, err := g.key(ids[:pl])
	if err != nil {
		return st, err
	}
	mc := g.base.Model.Config
	rng := rand.New(rand.NewPCG(g.cfg.Seed, uint64(g.edits)))
	init := make([]float32, mc.HiddenSize)
	for i := range init {
		init[i] = rng.Float32()
	}
	action, entry, within := g.book.Update(key, ids[pl:], init)
	st.Note = fmt.Sprintf("%s (entry %d of %d)", action, entry, g.book.Len())
	g.edits++
	if !within {
		st.Seconds = time.Since(start).Seconds()
		return st, nil
	}
	t, n, err := g.base.padRows(ids)
	if err != nil {
		return st, err
	}
	tgt := make([]int32, n)
	w := make([]float32, n)
	for i := pl - 1; i < len(ids)-1; i++ {
		tgt[i] = int32(ids[i+1])
		w[i] = 1
	}
	targets := tensors.FromFlatDataAndDimensions(tgt, 1, n)
	weights := tensors.FromFlatDataAndDimensions(w, 1, n)
	where := sel(pl-1, n)
	v := g.book.Values[entry]
	opt := newAdam(len(v), g.cfg.LR, 0)
	for i := range g.cfg.Iterations {
		wts := withWeights(g.edited.Weights, models.Weights{valueName: tensorOf(v, mc.HiddenSize)})
		loss, grads, err := g.grad.Call(wts, t, targets, weights, where)
		if err != nil {
			return st, err
		}
		st.Loss, st.Iterations = float64(loss), i+1
		opt.step(v, tensors.MustCopyFlatData[float32](grads[valueName]))
	}
	st.Seconds = time.Since(start).Seconds()
	return st, nil
}

// Predict implements Editor: the layer's output at the query's last prompt
// token is replaced by the value of the nearest key when the key there
// lies within that key's radius.
func (g *GRACE) Predict(ids []int, promptLen int) ([]int, bool, error) {
	if promptLen < 1 || promptLen > len(ids) {
		return nil, false, fmt.Errorf("grace: prompt length %d of a %d-token query", promptLen, len(ids))
	}
	key, err := g.key(ids[:promptLen])
	if err != nil {
		return nil, false, err
	}
	entry, ok := g.book.Lookup(key)
	if !ok {
		p, err := g.base.Predict(ids)
		return p, false, err
	}
	mc := g.base.Model.Config
	em, err := g.edited.WithWeights(withWeights(g.edited.Weights, models.Weights{valueName: tensorOf(g.book.Values[entry], mc.HiddenSize)}))
	if err != nil {
		return nil, false, err
	}
	n := g.base.padTo(len(ids))
	p, err := predictWith(g.base, em, ids, sel(promptLen-1, n))
	return p, true, err
}

// Generate decodes n tokens greedily after prompt, as EasyEdit scores GRACE
// (test_prediction_acc with vanilla_generation: model.generate with
// use_cache=False, greedy): GRACE.generate sets key_id = −1, so the adapter
// takes its key at the last position of the first forward pass, the
// prompt's last token, and keeps that position for the following steps.
// The key depends on the prompt alone (attention is causal), so the
// codebook decision is made once: when the key lies within the nearest
// entry's radius, its value replaces the layer's output at the prompt's
// last token at every step, and the generated tokens see it through the
// layers above.
func (g *GRACE) Generate(prompt []int, n int) ([]int, bool, error) {
	if len(prompt) == 0 {
		return nil, false, fmt.Errorf("grace: an empty prompt")
	}
	key, err := g.key(prompt)
	if err != nil {
		return nil, false, err
	}
	entry, ok := g.book.Lookup(key)
	if !ok {
		out, err := g.base.Greedy(prompt, n)
		return out, false, err
	}
	mc := g.base.Model.Config
	em, err := g.edited.WithWeights(withWeights(g.edited.Weights, models.Weights{valueName: tensorOf(g.book.Values[entry], mc.HiddenSize)}))
	if err != nil {
		return nil, false, err
	}
	out, err := greedyWith(g.base, em, prompt, n, func(padded int) []*tensors.Tensor {
		return []*tensors.Tensor{sel(len(prompt)-1, padded)}
	})
	return out, true, err
}

// adam is torch.optim.Adam (β 0.9, 0.999, ε 1e-8, L2 weight decay).
type adam struct {
	lr, wd float64
	t      int
	m, v   []float64
}

func newAdam(n int, lr, wd float64) *adam {
	return &adam{lr: lr, wd: wd, m: make([]float64, n), v: make([]float64, n)}
}

func (a *adam) step(w, g []float32) {
	const b1, b2, eps = 0.9, 0.999, 1e-8
	a.t++
	c1 := 1 - math.Pow(b1, float64(a.t))
	c2 := 1 - math.Pow(b2, float64(a.t))
	for i := range w {
		gi := float64(g[i]) + a.wd*float64(w[i])
		a.m[i] = b1*a.m[i] + (1-b1)*gi
		a.v[i] = b2*a.v[i] + (1-b2)*gi*gi
		w[i] -= float32(a.lr * (a.m[i] / c1) / (math.Sqrt(a.v[i]/c2) + eps))
	}
}
