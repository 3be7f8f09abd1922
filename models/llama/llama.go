package llama

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Model is a LLaMA-family causal LM with its weights bound (and an adapter's,
// when one is attached), ready to run on models.Backend(). Models made with
// WithWeights share compiled graphs.
type Model struct {
	Config Config
	// Weights holds the model's weights (Config.Specs) and, with an
	// adapter, the adapter's (Adapter.Specs).
	Weights models.Weights
	// Adapter is nil for the plain model.
	Adapter Adapter
	funcs   *funcCache
}

// funcCache holds the compiled functions of one (config, adapter) pair.
type funcCache struct {
	mu sync.Mutex
	m  map[string]*models.Func
}

// Load opens a Hugging Face checkpoint (a folder with config.json and
// model.safetensors or a sharded index, or a .safetensors file with
// config.json beside it) and reads its weights as float32.
func Load(path string) (*Model, error) {
	ck, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	c, err := ReadConfig(ck.Dir)
	if err != nil {
		return nil, err
	}
	if c, err = ConfigFor(c, ck); err != nil {
		return nil, err
	}
	w, err := models.ReadWeights(ck, c.Specs())
	if err != nil {
		return nil, err
	}
	return New(c, w)
}

// New binds weights to a configuration; w must hold every tensor of
// c.Specs() with its shape.
func New(c Config, w models.Weights) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := w.Check(c.Specs()); err != nil {
		return nil, err
	}
	return &Model{Config: c, Weights: w, funcs: &funcCache{m: map[string]*models.Func{}}}, nil
}

// NewRandom creates a model with seeded random weights, initialised as
// transformers does: N(0, 0.02²) for matrices and embeddings, zero biases,
// unit RMSNorm gains.
func NewRandom(c Config, seed uint64) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return New(c, models.RandomWeights(c.Specs(), seed, func(s checkpoint.TensorSpec) models.Init {
		switch {
		case len(s.Shape) > 1:
			return models.Normal(0.02)
		case strings.HasSuffix(s.Name, "norm.weight"):
			return models.Ones
		}
		return models.Zeros
	}))
}

// Specs lists the weights the model's functions bind: the model's, then
// the adapter's.
func (m *Model) Specs() []checkpoint.TensorSpec {
	s := m.Config.Specs()
	if m.Adapter != nil {
		s = append(s, m.Adapter.Specs()...)
	}
	return s
}

// WithWeights returns the same model (and adapter) with other weights (a
// merge, a fine-tune, an edited adapter state), sharing the compiled graphs.
// w must hold every tensor of m.Specs().
func (m *Model) WithWeights(w models.Weights) (*Model, error) {
	if err := w.Check(m.Specs()); err != nil {
		return nil, err
	}
	return &Model{Config: m.Config, Weights: w, Adapter: m.Adapter, funcs: m.funcs}, nil
}

// WithAdapter returns the model with adapter a attached at its site, its
// state (the tensors of a.Specs()) taken from state. The model's weights
// are shared, not copied. An adapter replaces any attached before.
func (m *Model) WithAdapter(a Adapter, state models.Weights) (*Model, error) {
	if l := a.Layer(); l < 0 || l >= m.Config.NumHiddenLayers {
		return nil, fmt.Errorf("adapter at layer %d: the model has layers 0..%d", l, m.Config.NumHiddenLayers-1)
	}
	own := m.Config.Specs()
	names := make(map[string]bool, len(own))
	for _, s := range own {
		names[s.Name] = true
	}
	w := make(models.Weights, len(own)+len(a.Specs()))
	for _, s := range own {
		w[s.Name] = m.Weights[s.Name]
	}
	for _, s := range a.Specs() {
		if names[s.Name] {
			return nil, fmt.Errorf("adapter weight %q has the name of a model weight", s.Name)
		}
		w[s.Name] = state[s.Name]
	}
	if err := w.Check(a.Specs()); err != nil {
		return nil, fmt.Errorf("adapter state: %w", err)
	}
	return &Model{Config: m.Config, Weights: w, Adapter: a, funcs: &funcCache{m: map[string]*models.Func{}}}, nil
}

// Without returns the model without its adapter (same model weights).
func (m *Model) Without() *Model {
	if m.Adapter == nil {
		return m
	}
	w := make(models.Weights)
	for _, s := range m.Config.Specs() {
		w[s.Name] = m.Weights[s.Name]
	}
	return &Model{Config: m.Config, Weights: w, funcs: &funcCache{m: map[string]*models.Func{}}}
}

// fn returns the compiled function named key, creating it with build.
func (m *Model) fn(key string, build models.ForwardFn) (*models.Func, error) {
	m.funcs.mu.Lock()
	defer m.funcs.mu.Unlock()
	if f, ok := m.funcs.m[key]; ok {
		return f, nil
	}
	f, err := models.NewFunc(models.Backend(), "llama/"+key, m.Specs(), build)
	if err != nil {
		return nil, err
	}
	m.funcs.m[key] = f
	return f, nil
}

// forwardFunc is the function (weights, ids, extra...) → (logits[,
// features]).
func (m *Model) forwardFunc(features bool, layer, extra int) (*models.Func, error) {
	key := fmt.Sprintf("forward/features=%v/layer=%d/extra=%d", features, layer, extra)
	c, a := m.Config, m.Adapter
	return m.fn(key, func(p models.Params, in []*graph.Node) []*graph.Node {
		if len(in) != 1+extra {
			panic(fmt.Errorf("llama: %d inputs, want ids and %d extra", len(in), extra))
		}
		r := Forward(c, p, in[0], Options{Adapter: a, Extra: in[1:], Features: features, FeatureLayer: layer})
		if features {
			return []*graph.Node{r.Logits, r.Features}
		}
		return []*graph.Node{r.Logits}
	})
}

// Logits runs the model over ids, an integer tensor [batch, seq] (see IDs),
// and returns the logits [batch, seq, vocab]. extra are the adapter's
// per-call inputs, if it takes any.
func (m *Model) Logits(ids *tensors.Tensor, extra ...*tensors.Tensor) (*tensors.Tensor, error) {
	f, err := m.forwardFunc(false, 0, len(extra))
	if err != nil {
		return nil, err
	}
	outs, err := f.Call(m.Weights, tensorArgs(ids, extra)...)
	if err != nil {
		return nil, fmt.Errorf("running the LLaMA model: %w", err)
	}
	return outs[0], nil
}

// Features runs the model over ids and returns the logits and the input of
// layer's MLP down-projection, silu(gate)·up [batch, seq, intermediate]:
// the features MEMOIR-style adapters key on.
func (m *Model) Features(ids *tensors.Tensor, layer int, extra ...*tensors.Tensor) (logits, features *tensors.Tensor, err error) {
	if layer < 0 || layer >= m.Config.NumHiddenLayers {
		return nil, nil, fmt.Errorf("features of layer %d: the model has layers 0..%d", layer, m.Config.NumHiddenLayers-1)
	}
	f, err := m.forwardFunc(true, layer, len(extra))
	if err != nil {
		return nil, nil, err
	}
	outs, err := f.Call(m.Weights, tensorArgs(ids, extra)...)
	if err != nil {
		return nil, nil, fmt.Errorf("running the LLaMA model: %w", err)
	}
	return outs[0], outs[1], nil
}

func tensorArgs(first *tensors.Tensor, rest []*tensors.Tensor) []any {
	args := []any{first}
	for _, t := range rest {
		args = append(args, t)
	}
	return args
}

// Save writes the model's weights (not the adapter's) as a Hugging Face
// checkpoint: model.safetensors (or shards) and config.json in the folder
// out.
func (m *Model) Save(out string, opts checkpoint.WriteOptions) error {
	return m.Weights.Save(out, m.Config.Specs(), map[string][]byte{"config.json": m.Config.JSON()}, opts)
}

// IDs makes an int32 tensor [batch, seq] of token ids; the rows must have
// one length (pad on the right).
func IDs(rows ...[]int) (*tensors.Tensor, error) {
	if len(rows) == 0 || len(rows[0]) == 0 {
		return nil, fmt.Errorf("llama.IDs: no tokens")
	}
	n := len(rows[0])
	flat := make([]int32, 0, len(rows)*n)
	for i, r := range rows {
		if len(r) != n {
			return nil, fmt.Errorf("llama.IDs: row %d has %d tokens, row 0 has %d (pad on the right)", i, len(r), n)
		}
		for _, id := range r {
			flat = append(flat, int32(id))
		}
	}
	return tensors.FromFlatDataAndDimensions(flat, len(rows), n), nil
}

// GradFunc computes the loss of a batch and its gradients with respect to a
// chosen subset of the model's (or the adapter's) weights; the others are
// held fixed. It is what trainers of edits use: MEMOIR trains only its
// memory, FT-L only one layer's down_proj.
type GradFunc struct {
	wrt []string
	fn  *models.Func
}

// NewGradFunc prepares the loss (Loss: masked mean next-token cross-entropy)
// and its gradients with respect to the weights named wrt (names of
// m.Specs()).
func (m *Model) NewGradFunc(wrt ...string) (*GradFunc, error) {
	if len(wrt) == 0 {
		return nil, fmt.Errorf("llama: no weights to differentiate with respect to")
	}
	specs := m.Specs()
	for _, name := range wrt {
		if !slices.ContainsFunc(specs, func(s checkpoint.TensorSpec) bool { return s.Name == name }) {
			return nil, fmt.Errorf("llama: %q is not a weight of the model or its adapter", name)
		}
	}
	wrt = slices.Clone(wrt)
	c, a := m.Config, m.Adapter
	f, err := models.NewFunc(models.Backend(), "llama/grad", specs, func(p models.Params, in []*graph.Node) []*graph.Node {
		ids, targets, mask := in[0], in[1], in[2]
		r := Forward(c, p, ids, Options{Adapter: a, Extra: in[3:]})
		loss := Loss(r.Logits, targets, mask)
		nodes := make([]*graph.Node, len(wrt))
		for i, name := range wrt {
			nodes[i] = p.Get(name)
		}
		return append([]*graph.Node{loss}, graph.Gradient(loss, nodes...)...)
	})
	if err != nil {
		return nil, err
	}
	return &GradFunc{wrt: wrt, fn: f}, nil
}

// Call returns the loss of ids [batch, seq] against targets [batch, seq]
// (integer ids; usually ids shifted left by one) weighted by mask [batch,
// seq] (float32, 1 where a target counts), and the gradients of the loss
// with respect to the chosen weights, under their names. w holds the
// weights of m.Specs() (e.g. m.Weights); extra are the adapter's per-call
// inputs.
func (gf *GradFunc) Call(w models.Weights, ids, targets, mask *tensors.Tensor, extra ...*tensors.Tensor) (float32, models.Weights, error) {
	args := []any{ids, targets, mask}
	for _, t := range extra {
		args = append(args, t)
	}
	outs, err := gf.fn.Call(w, args...)
	if err != nil {
		return 0, nil, fmt.Errorf("llama: computing gradients: %w", err)
	}
	grads := make(models.Weights, len(gf.wrt))
	for i, name := range gf.wrt {
		grads[name] = outs[1+i]
	}
	return tensors.ToScalar[float32](outs[0]), grads, nil
}

// Wrt lists the weights the gradients are taken with respect to.
func (gf *GradFunc) Wrt() []string { return slices.Clone(gf.wrt) }
