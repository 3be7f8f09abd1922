package memoir

import (
	"fmt"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/llama"
	"github.com/gomlx/gomlx/pkg/core/graph"
)

// Names of the adapters' weights (their state, bound next to the model's).
const (
	memoryName = "memoir.memory" // W_m [hidden, intermediate]
	maskName   = "memoir.mask"   // M [intermediate], 0/1
	valueName  = "grace.value"   // the chosen codebook value [hidden]
)

// maskedResidual is MEMOIR's adapter at the down-projection of one layer:
// y + W_m (M ⊙ x), the same mask M at every position. W_m and M are the
// adapter's state (weights), so a mask chosen for a prompt stays in place
// through KV-cache generation; evaluation and training swap them with
// WithWeights, without recompiling.
type maskedResidual struct {
	layer, hidden, inter int
}

func (a *maskedResidual) Layer() int { return a.layer }

func (a *maskedResidual) Specs() []checkpoint.TensorSpec {
	return []checkpoint.TensorSpec{models.Spec(memoryName, a.hidden, a.inter), models.Spec(maskName, a.inter)}
}

func (a *maskedResidual) Apply(p models.Params, x, y *graph.Node, extra []*graph.Node) *graph.Node {
	if len(extra) != 0 {
		panic(fmt.Errorf("memoir: the MEMOIR adapter takes no extra inputs, got %d", len(extra)))
	}
	m := graph.ConvertDType(p.Get(maskName), x.DType())
	m = graph.BroadcastToShape(graph.ExpandLeftToRank(m, x.Rank()), x.Shape())
	return graph.Add(y, models.Linear(graph.Mul(x, m), models.LinearW{Weight: p.Get(memoryName)}))
}

// graceAdapter is GRACE's codebook lookup at the down-projection of one
// layer: at the positions an extra input sel [batch, seq] marks with 1 (the
// last prompt token), the layer's output is replaced by the chosen value;
// elsewhere it is left alone: y + sel·(v − y).
type graceAdapter struct {
	layer, hidden int
}

func (a *graceAdapter) Layer() int { return a.layer }

func (a *graceAdapter) Specs() []checkpoint.TensorSpec {
	return []checkpoint.TensorSpec{models.Spec(valueName, a.hidden)}
}

func (a *graceAdapter) Apply(p models.Params, x, y *graph.Node, extra []*graph.Node) *graph.Node {
	if len(extra) != 1 {
		panic(fmt.Errorf("memoir: the GRACE adapter takes one extra input (the positions to replace), got %d", len(extra)))
	}
	d := y.Shape().Dimensions
	sel := graph.ConvertDType(extra[0], y.DType())
	sel = graph.BroadcastToShape(graph.Reshape(sel, d[0], d[1], 1), y.Shape())
	v := graph.BroadcastToShape(graph.Reshape(p.Get(valueName), 1, 1, d[2]), y.Shape())
	return graph.Add(y, graph.Mul(sel, graph.Sub(v, y)))
}

var (
	_ llama.Adapter = (*maskedResidual)(nil)
	_ llama.Adapter = (*graceAdapter)(nil)
)
