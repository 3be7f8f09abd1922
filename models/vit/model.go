package vit

import (
	"fmt"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Model is a ViT with its weights bound, ready to run on models.Backend().
// Models made with WithWeights share compiled graphs.
type Model struct {
	Config  Config
	Weights models.Weights
	fn      *models.Func
}

// Load opens a checkpoint (a folder with config.json and model.safetensors
// or a sharded index, or a .safetensors file with config.json beside it) and
// reads its weights as float32.
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
	specs := c.Specs()
	if err := w.Check(specs); err != nil {
		return nil, err
	}
	withClassifier := c.NumLabels > 0
	fn, err := models.NewFunc(models.Backend(), "vit", specs, func(p models.Params, in []*graph.Node) []*graph.Node {
		pooled, logits := Forward(c, p, in[0])
		if withClassifier {
			return []*graph.Node{pooled, logits}
		}
		return []*graph.Node{pooled}
	})
	if err != nil {
		return nil, err
	}
	return &Model{Config: c, Weights: w, fn: fn}, nil
}

// NewRandom creates a model with seeded random weights, initialised as
// transformers does: N(0, 0.02²) for matrices and embeddings, zero biases,
// unit LayerNorm gains.
func NewRandom(c Config, seed uint64) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return New(c, models.RandomWeights(c.Specs(), seed, initOf))
}

func initOf(s checkpoint.TensorSpec) models.Init {
	if len(s.Shape) == 1 {
		if isNormGain(s.Name) {
			return models.Ones
		}
		return models.Zeros
	}
	return models.Normal(0.02)
}

func isNormGain(name string) bool {
	for _, suffix := range []string{"layernorm_before.weight", "layernorm_after.weight", "layernorm.weight"} {
		if len(name) >= len(suffix) && name[len(name)-len(suffix):] == suffix {
			return true
		}
	}
	return false
}

// WithWeights returns the same model with other weights (a merge, a
// fine-tune), sharing the compiled graphs.
func (m *Model) WithWeights(w models.Weights) (*Model, error) {
	if err := w.Check(m.fn.Specs()); err != nil {
		return nil, err
	}
	return &Model{Config: m.Config, Weights: w, fn: m.fn}, nil
}

// Run computes the pooled features [batch, hidden] and, when the model has a
// classifier, the logits [batch, labels] (else nil) of pixels, a float32
// tensor [batch, image, image, channels]: channels-last, normalized as the
// checkpoint expects.
func (m *Model) Run(pixels *tensors.Tensor) (pooled, logits *tensors.Tensor, err error) {
	outs, err := m.fn.Call(m.Weights, pixels)
	if err != nil {
		return nil, nil, fmt.Errorf("running ViT: %w", err)
	}
	if len(outs) > 1 {
		logits = outs[1]
	}
	return outs[0], logits, nil
}

// Func returns the compiled forward function (weights, pixels) → (pooled[,
// logits]) that the model and those made by WithWeights share.
func (m *Model) Func() *models.Func { return m.fn }

// Save writes the model as a Hugging Face checkpoint: model.safetensors (or
// shards) and config.json in the folder out.
func (m *Model) Save(out string, opts checkpoint.WriteOptions) error {
	return m.Weights.Save(out, m.Config.Specs(), map[string][]byte{"config.json": m.Config.JSON()}, opts)
}
