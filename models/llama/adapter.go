package llama

import (
	"fmt"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/gomlx/gomlx/pkg/core/graph"
)

// Adapter is an edit that lives inside the model, at the MLP
// down-projection of one decoder layer (the site of MEMOIR's residual
// memory and of GRACE's codebook). The model knows nothing else about it.
type Adapter interface {
	// Layer is the decoder layer whose down-projection the adapter sits at.
	Layer() int
	// Specs declares the adapter's own weights (its state: memory, masks,
	// codebook), float32, under names that do not clash with the model's
	// (e.g. "adapter.memory"). They are bound like the model's weights, as
	// graph parameters, so gradients can be taken with respect to them.
	Specs() []checkpoint.TensorSpec
	// Apply returns the site's new output from its input x = silu(gate)·up
	// [batch, seq, intermediate] and the down-projection's output y
	// [batch, seq, hidden]: y + f(x) for a residual adapter, something else
	// for one that replaces y. p holds the model's and the adapter's
	// weights; extra are the per-call inputs given with the ids (nil when
	// none), in the order the caller gave them.
	Apply(p models.Params, x, y *graph.Node, extra []*graph.Node) *graph.Node
}

// ResidualLinear is the simplest adapter: y + x·Wᵀ with W [hidden,
// intermediate] named Name (the shape of the site's down_proj weight), a
// residual memory as in MEMOIR without its sparse masks. When the call
// gives an extra input, it is a mask [batch, seq, intermediate] (or any
// shape that broadcasts to x) multiplied into x first: y + (x⊙mask)·Wᵀ.
type ResidualLinear struct {
	At           int    // the site's layer
	Name         string // the weight's name ("adapter.memory" when empty)
	Hidden       int    // the model's hidden size
	Intermediate int    // the model's MLP size
}

// NewResidualLinear is a ResidualLinear at layer of c's model.
func NewResidualLinear(c Config, layer int, name string) *ResidualLinear {
	return &ResidualLinear{At: layer, Name: name, Hidden: c.HiddenSize, Intermediate: c.IntermediateSize}
}

func (a *ResidualLinear) name() string {
	if a.Name == "" {
		return "adapter.memory"
	}
	return a.Name
}

// Layer is the site's layer.
func (a *ResidualLinear) Layer() int { return a.At }

// Specs declares W [Hidden, Intermediate].
func (a *ResidualLinear) Specs() []checkpoint.TensorSpec {
	return []checkpoint.TensorSpec{models.Spec(a.name(), a.Hidden, a.Intermediate)}
}

// Apply returns y + (x⊙mask)·Wᵀ.
func (a *ResidualLinear) Apply(p models.Params, x, y *graph.Node, extra []*graph.Node) *graph.Node {
	switch len(extra) {
	case 0:
	case 1:
		m := graph.ConvertDType(extra[0], x.DType())
		if m.Rank() < x.Rank() {
			m = graph.ExpandLeftToRank(m, x.Rank())
		}
		x = graph.Mul(x, graph.BroadcastToShape(m, x.Shape()))
	default:
		panic(fmt.Errorf("llama.ResidualLinear: %d extra inputs, want at most one (a mask)", len(extra)))
	}
	return graph.Add(y, models.Linear(x, models.LinearW{Weight: p.Get(a.name())}))
}
