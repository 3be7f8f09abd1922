package memoir

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/llama"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Config is MEMOIR's settings. DefaultConfig gives the reference's
// (qym7/MEMOIR, hparams/MEMOIR/llama3-8b.yaml and easyeditor/models/memoir).
type Config struct {
	// Layer is the decoder layer whose down_proj gets the memory; −1 means
	// DefaultLayer (the reference's relative depth 27/32).
	Layer int `json:"layer"`
	// TopK is the number of features a mask keeps; 0 means DefaultTopK
	// (the reference's 4096/14336 of the MLP width).
	TopK int `json:"top_k"`
	// Threshold τ: a query uses the stored mask of best overlap when
	// |M_q ∧ M_i|/k ≥ τ (0.4, the reference's ZsRE setting).
	Threshold float64 `json:"threshold"`
	// FalseRoutingRate, when positive, replaces Threshold by the automatic
	// τ = ChanceThreshold(intermediate, k, stored masks, FalseRoutingRate),
	// recomputed as edits are stored: the least overlap that masks
	// overlapping only by chance would reach for an unrelated query with
	// probability at most FalseRoutingRate (DefaultFalseRoutingRate, 1%,
	// for 'editkit memoir edit --threshold auto'). 0: the fixed Threshold.
	FalseRoutingRate float64 `json:"false_routing_rate,omitempty"`
	// Seed of the TopHash permutation (42).
	Seed uint64 `json:"seed"`

	// LR, WeightDecay and ClipNorm: SGD on W_m with learning rate 1.0,
	// weight decay 1e-5 and gradient-norm clipping at 1.0.
	LR          float64 `json:"lr"`
	WeightDecay float64 `json:"weight_decay"`
	ClipNorm    float64 `json:"clip_norm"`
	// Iterations is the most training iterations per edit (30).
	Iterations int `json:"iterations"`
	// Training stops early, before a step, when the last two losses differ
	// by at most StopDelta (1e-4) and the last is at most StopLoss (0.02),
	// as the reference's EarlyStopMeter.
	StopDelta float64 `json:"stop_delta"`
	StopLoss  float64 `json:"stop_loss"`

	// PrefixSeeds and PrefixLengths drive the augmentation: for each length
	// and seed, the model's greedy continuation of the seed by that many
	// tokens is a prefix, and each edit trains on the prompt alone and
	// after each prefix (EasyEdit's get_context_templates: seeds "I",
	// "You", "Because", "Yes", "Q: ", lengths 5 and 10: 10 prefixes).
	PrefixSeeds   []string `json:"prefix_seeds"`
	PrefixLengths []int    `json:"prefix_lengths"`

	// Background are the irrelevant prompts whose mean feature μ_bg is
	// subtracted before the top-k; nil means BackgroundPrompts (100).
	Background []string `json:"-"`
}

// DefaultConfig returns the reference's settings.
func DefaultConfig() Config {
	return Config{
		Layer: -1, Threshold: 0.4, Seed: 42,
		LR: 1.0, WeightDecay: 1e-5, ClipNorm: 1.0, Iterations: 30, StopDelta: 1e-4, StopLoss: 0.02,
		PrefixSeeds: []string{"I", "You", "Because", "Yes", "Q: "}, PrefixLengths: []int{5, 10},
	}
}

// MEMOIR is the MEMOIR editor (Wang et al., 2025): a residual memory W_m,
// zero-initialised with the shape of one layer's down_proj, added to that
// layer's output through a sparse, prompt-dependent mask:
//
//	y = W_0 x + W_m (M ⊙ x),  x = silu(gate(h)) ⊙ up(h).
//
// An edit's mask is TopHash of its prompt's mean feature minus the
// background mean μ_bg; only the masked columns of W_m are trained, with
// the same mask at every position of the prompt, its target and its
// augmented copies. At inference a query's mask is computed the same way
// and compared with the stored ones: when the best overlap reaches τ, that
// edit's mask is applied, else the memory is left out (the model is the
// unedited one).
type MEMOIR struct {
	cfg        Config
	base       *Base
	hash       *TopHash
	background []float32 // μ_bg [intermediate]
	templates  []string  // "{}" and the prefixes, "<prefix> {}"
	memory     []float32 // W_m [hidden, intermediate], row-major
	masks      []Mask    // one per edit
	edited     *llama.Model
	grad       *llama.GradFunc
	info       modelInfo
}

// NewMEMOIR creates an empty MEMOIR memory on base: it computes μ_bg from
// the background prompts and the augmentation prefixes with the model.
func NewMEMOIR(base *Base, c Config) (*MEMOIR, error) {
	m, err := newMEMOIR(base, c)
	if err != nil {
		return nil, err
	}
	bg := c.Background
	if bg == nil {
		bg = BackgroundPrompts
	}
	if m.background, err = m.backgroundMean(bg); err != nil {
		return nil, err
	}
	if m.templates, err = contextTemplates(base, c.PrefixSeeds, c.PrefixLengths); err != nil {
		return nil, err
	}
	return m, nil
}

// newMEMOIR sets up the memory without background and templates.
func newMEMOIR(base *Base, c Config) (*MEMOIR, error) {
	var err error
	if c.Layer, err = base.resolveLayer(c.Layer); err != nil {
		return nil, err
	}
	mc := base.Model.Config
	if c.TopK == 0 {
		c.TopK = DefaultTopK(mc.IntermediateSize)
	}
	switch {
	case c.Threshold < 0 || c.Threshold > 1:
		return nil, fmt.Errorf("memoir: threshold %v must be in [0, 1]", c.Threshold)
	case c.FalseRoutingRate < 0 || c.FalseRoutingRate >= 1:
		return nil, fmt.Errorf("memoir: false-routing rate %v must be in (0, 1), or 0 for the fixed threshold", c.FalseRoutingRate)
	case c.Iterations < 0:
		return nil, fmt.Errorf("memoir: %d iterations", c.Iterations)
	case c.LR <= 0:
		return nil, fmt.Errorf("memoir: learning rate %v must be positive", c.LR)
	}
	hash, err := NewTopHash(mc.IntermediateSize, c.TopK, c.Seed)
	if err != nil {
		return nil, err
	}
	m := &MEMOIR{cfg: c, base: base, hash: hash, memory: make([]float32, mc.HiddenSize*mc.IntermediateSize), info: base.info(c.Layer)}
	return m, m.attach()
}

// attach builds the model with the adapter and the gradient function.
func (m *MEMOIR) attach() error {
	mc := m.base.Model.Config
	a := &maskedResidual{layer: m.cfg.Layer, hidden: mc.HiddenSize, inter: mc.IntermediateSize}
	var err error
	m.edited, err = m.base.Model.WithAdapter(a, m.state(make([]float32, mc.IntermediateSize)))
	if err != nil {
		return err
	}
	m.grad, err = m.edited.NewGradFunc(memoryName)
	return err
}

// state is the adapter's state: the memory and a mask.
func (m *MEMOIR) state(mask []float32) models.Weights {
	mc := m.base.Model.Config
	return models.Weights{
		memoryName: tensorOf(m.memory, mc.HiddenSize, mc.IntermediateSize),
		maskName:   tensorOf(mask, mc.IntermediateSize),
	}
}

// Method is MethodMEMOIR.
func (m *MEMOIR) Method() Method { return MethodMEMOIR }

// Reset implements Editor: W_m back to zero, no masks.
func (m *MEMOIR) Reset() error {
	clear(m.memory)
	m.masks = nil
	return nil
}

// Layer is the edited layer.
func (m *MEMOIR) Layer() int { return m.cfg.Layer }

// Edits is the number of stored edits.
func (m *MEMOIR) Edits() int { return len(m.masks) }

// Config returns the settings (layer and k resolved).
func (m *MEMOIR) Config() Config { return m.cfg }

// Masks returns the stored masks, one per edit.
func (m *MEMOIR) Masks() []Mask { return m.masks }

// Memory returns W_m [hidden, intermediate], row-major (shared).
func (m *MEMOIR) Memory() []float32 { return m.memory }

// Background returns μ_bg.
func (m *MEMOIR) Background() []float32 { return m.background }

// Templates returns the augmentation templates: "{}" and "<prefix> {}".
func (m *MEMOIR) Templates() []string { return m.templates }

// TopHash returns the mask function.
func (m *MEMOIR) TopHash() *TopHash { return m.hash }

// backgroundMean is the mean over prompts of their mean feature.
func (m *MEMOIR) backgroundMean(prompts []string) ([]float32, error) {
	if len(prompts) == 0 {
		return nil, fmt.Errorf("memoir: no background prompts")
	}
	rows := make([][]int, len(prompts))
	for i, p := range prompts {
		var err error
		if rows[i], err = m.base.EncodePrompt(p); err != nil {
			return nil, err
		}
	}
	means, err := m.base.meanFeatures(m.cfg.Layer, rows...)
	if err != nil {
		return nil, err
	}
	return meanOf(means), nil
}

// PromptFeature is x̄ − μ_bg: the mean down-projection input of the edited
// layer over the prompt's tokens (BOS included), minus the background mean.
func (m *MEMOIR) PromptFeature(prompt []int) ([]float32, error) {
	means, err := m.base.meanFeatures(m.cfg.Layer, prompt)
	if err != nil {
		return nil, err
	}
	v := means[0]
	for i := range v {
		v[i] -= m.background[i]
	}
	return v, nil
}

// MaskOf is the TopHash mask of a prompt (token ids, BOS first).
func (m *MEMOIR) MaskOf(prompt []int) (Mask, error) {
	v, err := m.PromptFeature(prompt)
	if err != nil {
		return nil, err
	}
	return m.hash.Mask(v), nil
}

// SetRouting changes the routing settings, Config.Threshold and
// Config.FalseRoutingRate. Routing only matters at inference (training an
// edit uses the edit's own mask), so one memory can be evaluated at several
// thresholds.
func (m *MEMOIR) SetRouting(threshold, falseRoutingRate float64) error {
	if threshold < 0 || threshold > 1 || falseRoutingRate < 0 || falseRoutingRate >= 1 {
		return fmt.Errorf("memoir: threshold %v must be in [0, 1] and the false-routing rate %v in [0, 1)", threshold, falseRoutingRate)
	}
	m.cfg.Threshold, m.cfg.FalseRoutingRate = threshold, falseRoutingRate
	return nil
}

// Threshold is the τ routing uses now: Config.Threshold, or with
// Config.FalseRoutingRate the automatic τ for the masks stored so far.
func (m *MEMOIR) Threshold() float64 {
	if m.cfg.FalseRoutingRate > 0 {
		return ChanceThreshold(m.base.Model.Config.IntermediateSize, m.cfg.TopK, max(1, len(m.masks)), m.cfg.FalseRoutingRate)
	}
	return m.cfg.Threshold
}

// Route finds the stored mask a prompt's mask overlaps most and whether
// it reaches the threshold.
func (m *MEMOIR) Route(prompt []int) (Match, error) {
	q, err := m.MaskOf(prompt)
	if err != nil {
		return Match{}, err
	}
	return BestMatch(q, m.masks, m.cfg.TopK, m.Threshold()), nil
}

// ModelFor returns the model a query with this prompt runs: the unedited
// model when it is routed to no edit, else the model with the memory under
// the matched edit's mask (for generation: the mask stays in place for
// every generated token).
func (m *MEMOIR) ModelFor(prompt []int) (*llama.Model, Match, error) {
	r, err := m.Route(prompt)
	if err != nil || !r.Active {
		return m.base.Model, r, err
	}
	em, err := m.withMask(m.masks[r.Index])
	return em, r, err
}

// withMask is the edited model with W_m under a mask.
func (m *MEMOIR) withMask(mask Mask) (*llama.Model, error) {
	n := m.base.Model.Config.IntermediateSize
	return m.edited.WithWeights(withWeights(m.edited.Weights, m.state(mask.Floats(n))))
}

// Logits runs ids (a query whose prompt is ids[:promptLen]) through the
// edited model, routing on the prompt; it returns the logits [1, seq,
// vocab] of the first len(ids) positions' padded run and the routing.
func (m *MEMOIR) Logits(ids []int, promptLen int) (*tensors.Tensor, Match, error) {
	if promptLen < 1 || promptLen > len(ids) {
		return nil, Match{}, fmt.Errorf("memoir: prompt length %d of a %d-token query", promptLen, len(ids))
	}
	em, r, err := m.ModelFor(ids[:promptLen])
	if err != nil {
		return nil, r, err
	}
	t, _, err := m.base.padRows(ids)
	if err != nil {
		return nil, r, err
	}
	logits, err := em.Logits(t)
	return logits, r, err
}

// Predict implements Editor.
func (m *MEMOIR) Predict(ids []int, promptLen int) ([]int, bool, error) {
	logits, r, err := m.Logits(ids, promptLen)
	if err != nil {
		return nil, false, err
	}
	return argmaxRow(logits, 0, len(ids)), r.Active, nil
}

// batch is a set of training rows as tensors: ids, next-token targets and
// loss weights [rows, seq], and the weights' sum.
type batch struct {
	ids, targets, weights *tensors.Tensor
	sum                   float64
}

// trainChunk is the most rows per gradient call: simplego runs the
// forward pass of stories260K on 11 rows of 24 tokens about twice as slowly
// per token as on 4 (its DotGeneral kernel changes strategy with size), so
// the batch is split and the gradients summed.
var trainChunk = 4

// trainingBatch builds the edit's sequences: the prompt and target under
// each template, padded on the right, with next-token targets and loss
// weights 1/((n_i+1)·B) on the n_i target tokens of row i. The weighted sum
// of the cross-entropies over all rows is then the mean over rows of each
// row's target cross-entropy summed and divided by n_i + 1, the
// reference's loss (WISE's _cal_ft_loss, which MEMOIR keeps: its label mask
// starts one position before the first target, at a position whose label is
// the ignored last prompt token, so it counts n_i + 1 positions of which n_i
// carry a loss; with EasyEdit's left padding no padding is counted). The
// rows are split in chunks of at most chunk.
func trainingBatch(b *Base, templates []string, prompt, target string, chunk int) ([]batch, error) {
	type row struct {
		ids []int
		pl  int
	}
	rows := make([]row, len(templates))
	n := 0
	for i, t := range templates {
		p := strings.Replace(t, "{}", prompt, 1)
		full, pl, err := b.Encode(p, target)
		if err != nil {
			return nil, err
		}
		rows[i] = row{full, pl}
		n = max(n, len(full))
	}
	n = b.padTo(n)
	B := len(rows)
	var out []batch
	for start := 0; start < B; start += chunk {
		part := rows[start:min(start+chunk, B)]
		idsFlat := make([]int32, len(part)*n)
		tgtFlat := make([]int32, len(part)*n)
		wFlat := make([]float32, len(part)*n)
		sum := 0.0
		for i, r := range part {
			for t, id := range r.ids {
				idsFlat[i*n+t] = int32(id)
				if t+1 < len(r.ids) {
					tgtFlat[i*n+t] = int32(r.ids[t+1])
				}
			}
			w := 1 / float64((len(r.ids)-r.pl+1)*B)
			for t := r.pl - 1; t < len(r.ids)-1; t++ {
				wFlat[i*n+t] = float32(w)
				sum += w
			}
		}
		out = append(out, batch{
			ids:     tensors.FromFlatDataAndDimensions(idsFlat, len(part), n),
			targets: tensors.FromFlatDataAndDimensions(tgtFlat, len(part), n),
			weights: tensors.FromFlatDataAndDimensions(wFlat, len(part), n),
			sum:     sum,
		})
	}
	return out, nil
}

// lossAndGrad is the loss of the batches and its gradient with respect to
// the weight name: llama.Loss of each chunk is its weighted mean, so the
// chunks are combined with their weight sums.
func lossAndGrad(gf *llama.GradFunc, w models.Weights, name string, batches []batch) (float64, []float32, error) {
	var loss float64
	var grad []float32
	for _, b := range batches {
		l, g, err := gf.Call(w, b.ids, b.targets, b.weights)
		if err != nil {
			return 0, nil, err
		}
		loss += b.sum * float64(l)
		gc := tensors.MustCopyFlatData[float32](g[name])
		if grad == nil {
			grad = make([]float32, len(gc))
		}
		for i, v := range gc {
			grad[i] += float32(b.sum) * v
		}
	}
	return loss, grad, nil
}

// Edit trains W_m on one edit under its mask: SGD (lr, weight decay, clip)
// on the target cross-entropy of the prompt and its augmented copies, up
// to Iterations steps with the reference's early stop. The edit's mask is
// stored.
func (m *MEMOIR) Edit(req EditRequest) (EditStats, error) {
	start := time.Now()
	var st EditStats
	prompt, err := m.base.EncodePrompt(req.Prompt)
	if err != nil {
		return st, err
	}
	mask, err := m.MaskOf(prompt)
	if err != nil {
		return st, err
	}
	if len(m.masks) > 0 {
		r := BestMatch(mask, m.masks, m.cfg.TopK, m.Threshold())
		st.Note = fmt.Sprintf("overlap %.3f with edit %d", r.Overlap, r.Index)
	}
	batches, err := trainingBatch(m.base, m.templates, req.Prompt, req.Target, trainChunk)
	if err != nil {
		return st, err
	}
	mc := m.base.Model.Config
	maskT := tensorOf(mask.Floats(mc.IntermediateSize), mc.IntermediateSize)
	pre, val := 0.0, 1e9 // the reference's EarlyStopMeter
	for i := 0; i < m.cfg.Iterations; i++ {
		w := withWeights(m.edited.Weights, models.Weights{memoryName: tensorOf(m.memory, mc.HiddenSize, mc.IntermediateSize), maskName: maskT})
		loss, grad, err := lossAndGrad(m.grad, w, memoryName, batches)
		if err != nil {
			return st, err
		}
		st.Loss = loss
		if math.IsNaN(st.Loss) || math.IsInf(st.Loss, 0) {
			return st, fmt.Errorf("memoir: edit %q → %q: the loss is %v at iteration %d", req.Prompt, req.Target, loss, i)
		}
		st.Iterations = i + 1
		if math.Abs(val-pre) <= m.cfg.StopDelta && val <= m.cfg.StopLoss {
			break
		}
		sgdStep(m.memory, grad, m.cfg.LR, m.cfg.WeightDecay, m.cfg.ClipNorm)
		pre, val = val, st.Loss
	}
	m.masks = append(m.masks, mask)
	st.Seconds = time.Since(start).Seconds()
	return st, nil
}

// clipScale is PyTorch's clip_grad_norm_ factor: max/(‖g‖+1e-6) when that
// is below 1, else 1 (no clipping when max ≤ 0).
func clipScale(g []float32, maxNorm float64) float64 {
	if maxNorm <= 0 {
		return 1
	}
	var ss float64
	for _, v := range g {
		ss += float64(v) * float64(v)
	}
	return min(1, maxNorm/(math.Sqrt(ss)+1e-6))
}

// sgdStep is torch.optim.SGD's step (no momentum) after gradient clipping:
// w ← w − lr·(c·g + wd·w).
func sgdStep(w, g []float32, lr, wd, clip float64) {
	c := clipScale(g, clip)
	for i := range w {
		w[i] -= float32(lr * (c*float64(g[i]) + wd*float64(w[i])))
	}
}

// contextTemplates generates the augmentation templates as EasyEdit's
// get_context_templates does: "{}" first, then for each length and each
// seed the greedy continuation of the seed by that many tokens (stopping
// early at BOS or EOS), decoded, followed by " {}".
func contextTemplates(b *Base, seeds []string, lengths []int) ([]string, error) {
	out := []string{"{}"}
	for _, n := range lengths {
		for _, s := range seeds {
			ids := b.Tok.Encode(s, true, false)
			if len(ids) == 0 {
				return nil, fmt.Errorf("memoir: augmentation seed %q has no tokens", s)
			}
			gen, _, err := b.Model.Generate(ids, llama.GenerateOptions{Steps: len(ids) + n - 1})
			if err != nil {
				return nil, fmt.Errorf("memoir: generating an augmentation prefix: %w", err)
			}
			text := strings.TrimSpace(b.Tok.Decode(gen))
			out = append(out, strings.ReplaceAll(text, "{}", "")+" {}")
		}
	}
	return out, nil
}
