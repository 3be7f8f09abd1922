package models

import (
	"fmt"
	"math"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// The building blocks below are pure graph functions: every weight comes in
// as an explicit node (see Params), nothing is read from a context. They use
// no Slice (whose gradient needs Pad, which simplego lacks), so models built
// from them can be differentiated on every backend: selecting a token or a
// row goes through Gather, whose gradient is a ScatterSum.

// Activation names an MLP nonlinearity.
type Activation string

// Activations, named as Hugging Face configs name them.
const (
	// GELU is the exact GELU, x·Φ(x) = x/2·(1+erf(x/√2)) (torch.nn.GELU()).
	GELU Activation = "gelu"
	// QuickGELU is x·sigmoid(1.702x), used by OpenAI's CLIP.
	QuickGELU Activation = "quick_gelu"
	// GELUTanh is the tanh approximation of GELU ("gelu_new",
	// "gelu_pytorch_tanh").
	GELUTanh Activation = "gelu_new"
	// ReLU is max(x, 0).
	ReLU Activation = "relu"
)

// ParseActivation maps a Hugging Face hidden_act name to an Activation.
func ParseActivation(name string) (Activation, error) {
	switch strings.ToLower(name) {
	case "gelu", "gelu_python":
		return GELU, nil
	case "quick_gelu":
		return QuickGELU, nil
	case "gelu_new", "gelu_pytorch_tanh", "gelu_fast":
		return GELUTanh, nil
	case "relu":
		return ReLU, nil
	}
	return "", fmt.Errorf("unsupported activation %q (supported: gelu, quick_gelu, gelu_new, gelu_pytorch_tanh, relu)", name)
}

// Activate applies act to x.
func Activate(x *graph.Node, act Activation) *graph.Node {
	switch act {
	case GELU:
		// 0.5·x·(1 + erf(x/√2))
		return graph.Mul(graph.MulScalar(x, 0.5), graph.OnePlus(graph.Erf(graph.MulScalar(x, 1/math.Sqrt2))))
	case QuickGELU:
		return graph.Mul(x, graph.Logistic(graph.MulScalar(x, 1.702)))
	case GELUTanh:
		// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
		inner := graph.MulScalar(graph.Add(x, graph.MulScalar(graph.Mul(x, graph.Mul(x, x)), 0.044715)), math.Sqrt(2/math.Pi))
		return graph.Mul(graph.MulScalar(x, 0.5), graph.OnePlus(graph.Tanh(inner)))
	case ReLU:
		return graph.Max(x, graph.ZerosLike(x))
	}
	panic(fmt.Errorf("models: unknown activation %q", act))
}

// LinearW holds the weights of a linear layer in PyTorch's layout: Weight
// [out, in], Bias [out] or nil.
type LinearW struct{ Weight, Bias *graph.Node }

// NormW holds a LayerNorm's gain and bias, both [width].
type NormW struct{ Weight, Bias *graph.Node }

// AttentionW holds a multi-head self-attention's weights: either the fused
// input projection of torch.nn.MultiheadAttention (OpenAI/open_clip naming:
// InProj.Weight [3·width, width] holding q, k and v in that order) or
// separate Q, K and V projections (Hugging Face naming), and the output
// projection.
type AttentionW struct {
	InProj  LinearW
	Q, K, V LinearW
	Out     LinearW
}

// MLPW holds a transformer MLP's two linear layers.
type MLPW struct{ FC1, FC2 LinearW }

// BlockW holds a pre-LN residual block's weights.
type BlockW struct {
	LN1  NormW
	Attn AttentionW
	LN2  NormW
	MLP  MLPW
}

// BlockConfig configures a pre-LN residual block.
type BlockConfig struct {
	Heads  int
	Eps    float64
	Act    Activation
	Causal bool // mask attention to earlier positions (text towers)
}

// Linear computes x·Wᵀ + b over x's last axis, W in PyTorch's [out, in]
// layout.
func Linear(x *graph.Node, w LinearW) *graph.Node {
	y := graph.DotGeneral(x, []int{x.Rank() - 1}, nil, w.Weight, []int{1}, nil)
	if w.Bias != nil {
		y = graph.Add(y, graph.ExpandLeftToRank(w.Bias, y.Rank()))
	}
	return y
}

// Project computes x·P over x's last axis, P in [in, out] layout (OpenAI's
// visual.proj and text_projection).
func Project(x, p *graph.Node) *graph.Node {
	return graph.DotGeneral(x, []int{x.Rank() - 1}, nil, p, []int{0}, nil)
}

// LayerNorm normalizes x over its last axis, as torch.nn.LayerNorm does
// (biased variance, eps inside the square root).
func LayerNorm(x *graph.Node, w NormW, eps float64) *graph.Node {
	mean := graph.ReduceAndKeep(x, graph.ReduceMean, -1)
	xc := graph.Sub(x, mean)
	variance := graph.ReduceAndKeep(graph.Mul(xc, xc), graph.ReduceMean, -1)
	// Div by Sqrt, not Mul by Rsqrt: GoMLX v0.26 has no gradient for Rsqrt.
	y := graph.Div(xc, graph.Sqrt(graph.AddScalar(variance, eps)))
	if w.Weight != nil {
		y = graph.Mul(y, graph.ExpandLeftToRank(w.Weight, y.Rank()))
	}
	if w.Bias != nil {
		y = graph.Add(y, graph.ExpandLeftToRank(w.Bias, y.Rank()))
	}
	return y
}

// SelfAttention is multi-head scaled dot-product self-attention over
// x [batch, seq, width], with an optional causal mask.
func SelfAttention(x *graph.Node, w AttentionW, heads int, causal bool) *graph.Node {
	dims := x.Shape().Dimensions
	if len(dims) != 3 {
		panic(fmt.Errorf("models.SelfAttention: x must be [batch, seq, width], got %s", x.Shape()))
	}
	b, s, width := dims[0], dims[1], dims[2]
	if heads <= 0 || width%heads != 0 {
		panic(fmt.Errorf("models.SelfAttention: width %d is not divisible into %d heads", width, heads))
	}
	d := width / heads
	qw, kw, vw := w.Q, w.K, w.V
	if w.InProj.Weight != nil {
		qw, kw, vw = splitInProj(w.InProj, width)
	}
	split := func(t *graph.Node) *graph.Node { return graph.Reshape(t, b, s, heads, d) }
	q := split(graph.MulScalar(Linear(x, qw), 1/math.Sqrt(float64(d))))
	k := split(Linear(x, kw))
	v := split(Linear(x, vw))
	// scores[b, h, i, j] = q[b, i, h, :]·k[b, j, h, :]
	scores := graph.DotGeneral(q, []int{3}, []int{0, 2}, k, []int{3}, []int{0, 2})
	if causal {
		g := x.Graph()
		keep := graph.LowerTriangular(g, s) // [s, s]: key j ≤ query i
		keep = graph.BroadcastToShape(graph.ExpandLeftToRank(keep, 4), scores.Shape())
		scores = graph.Where(keep, scores, graph.BroadcastToShape(graph.Infinity(g, scores.DType(), -1), scores.Shape()))
	}
	probs := graph.Softmax(scores, -1)
	// ctx[b, h, i, :] = Σ_j probs[b, h, i, j]·v[b, j, h, :]
	ctx := graph.DotGeneral(probs, []int{3}, []int{0, 1}, v, []int{1}, []int{0, 2})
	ctx = graph.Reshape(graph.TransposeAllAxes(ctx, 0, 2, 1, 3), b, s, width)
	return Linear(ctx, w.Out)
}

// splitInProj splits a fused [3·width, width] input projection into q, k
// and v. It gathers rows of the weights (cheap, and differentiable on every
// backend) rather than slicing the activations.
func splitInProj(in LinearW, width int) (q, k, v LinearW) {
	g := in.Weight.Graph()
	w3 := graph.Reshape(in.Weight, 3, width, width)
	var b3 *graph.Node
	if in.Bias != nil {
		b3 = graph.Reshape(in.Bias, 3, width)
	}
	part := func(i int) LinearW {
		idx := graph.Const(g, []int32{int32(i)})
		l := LinearW{Weight: graph.Gather(w3, idx)}
		if b3 != nil {
			l.Bias = graph.Gather(b3, idx)
		}
		return l
	}
	return part(0), part(1), part(2)
}

// MLP is the transformer feed-forward layer: FC2(act(FC1(x))).
func MLP(x *graph.Node, w MLPW, act Activation) *graph.Node {
	return Linear(Activate(Linear(x, w.FC1), act), w.FC2)
}

// Block is a pre-LN residual block:
// x += Attn(LN1(x)); x += MLP(LN2(x)).
func Block(x *graph.Node, w BlockW, cfg BlockConfig) *graph.Node {
	x = graph.Add(x, SelfAttention(LayerNorm(x, w.LN1, cfg.Eps), w.Attn, cfg.Heads, cfg.Causal))
	return graph.Add(x, MLP(LayerNorm(x, w.LN2, cfg.Eps), w.MLP, cfg.Act))
}

// PatchEmbed is a convolution with kernel = stride = patch over channels-last
// pixels [batch, H, W, C], written as a reshape and a matmul: it returns
// [batch, (H/patch)·(W/patch), width] with patches in row-major order, as
// PyTorch's conv(x).flatten(2).transpose(1, 2) does. weight is PyTorch's
// Conv2d layout [width, C, patch, patch]; bias is [width] or nil.
func PatchEmbed(pixels, weight, bias *graph.Node) *graph.Node {
	pd := pixels.Shape().Dimensions
	wd := weight.Shape().Dimensions
	if len(pd) != 4 || len(wd) != 4 || wd[2] != wd[3] || pd[3] != wd[1] {
		panic(fmt.Errorf("models.PatchEmbed: want pixels [batch, H, W, C] and weight [width, C, p, p], got %s and %s", pixels.Shape(), weight.Shape()))
	}
	b, h, w, c, p := pd[0], pd[1], pd[2], pd[3], wd[2]
	if h%p != 0 || w%p != 0 {
		panic(fmt.Errorf("models.PatchEmbed: image %dx%d is not a whole number of %dx%d patches", h, w, p, p))
	}
	gh, gw := h/p, w/p
	x := graph.Reshape(pixels, b, gh, p, gw, p, c)
	x = graph.TransposeAllAxes(x, 0, 1, 3, 5, 2, 4) // [b, gh, gw, c, py, px]
	x = graph.Reshape(x, b, gh*gw, c*p*p)
	return Linear(x, LinearW{Weight: graph.Reshape(weight, wd[0], c*p*p), Bias: bias})
}

// PrependToken puts tok [width] in front of x [batch, seq, width]: the class
// token of vision transformers.
func PrependToken(x, tok *graph.Node) *graph.Node {
	dims := x.Shape().Dimensions
	t := graph.BroadcastToShape(graph.Reshape(tok, 1, 1, dims[2]), shapes.Make(x.DType(), dims[0], 1, dims[2]))
	return graph.Concatenate([]*graph.Node{t, x}, 1)
}

// Token returns x[:, i, :] for x [batch, seq, width].
func Token(x *graph.Node, i int) *graph.Node {
	seqFirst := graph.TransposeAllAxes(x, 1, 0, 2)
	return graph.Gather(seqFirst, graph.Const(x.Graph(), []int32{int32(i)}))
}

// TokenAt returns x[b, pos[b], :] for x [batch, seq, width] and integer
// positions pos [batch].
func TokenAt(x, pos *graph.Node) *graph.Node {
	g := x.Graph()
	batch := x.Shape().Dimensions[0]
	pos = graph.ConvertDType(pos, dtypes.Int32)
	rows := graph.Iota(g, shapes.Make(dtypes.Int32, batch), 0)
	idx := graph.Stack([]*graph.Node{rows, pos}, -1) // [batch, 2]
	return graph.Gather(x, idx)
}

// FirstRows returns table[:n] for a table [rows, ...], n ≤ rows.
func FirstRows(table *graph.Node, n int) *graph.Node {
	rows := table.Shape().Dimensions[0]
	if n == rows {
		return table
	}
	if n > rows {
		panic(fmt.Errorf("models.FirstRows: %d rows asked of a table of %d", n, rows))
	}
	idx := graph.Iota(table.Graph(), shapes.Make(dtypes.Int32, n, 1), 0)
	return graph.Gather(table, idx, true)
}

// Embed looks up ids [batch, seq] (any integer type) in table [vocab, width]:
// [batch, seq, width].
func Embed(table, ids *graph.Node) *graph.Node {
	return graph.Gather(table, graph.ExpandAxes(graph.ConvertDType(ids, dtypes.Int32), -1))
}

// NormalizeL2 divides x by its Euclidean norm over the last axis (no
// epsilon, as CLIP's x / x.norm(dim=-1, keepdim=True)).
func NormalizeL2(x *graph.Node) *graph.Node {
	return graph.Div(x, graph.Sqrt(graph.ReduceAndKeep(graph.Mul(x, x), graph.ReduceSum, -1)))
}
