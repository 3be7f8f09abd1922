package llama

import (
	"fmt"
	"math"

	"github.com/editkit/editkit/models"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// The forward pass as pure graph functions of the weights (Params keyed by
// the Hugging Face tensor names of Config.Specs, plus an adapter's own).
// Every constant takes the dtype of the weights, so the same code runs in
// float32 (the models) and float64 (the gradient checks). Nothing uses
// Slice, whose gradient needs Pad, which simplego lacks.

// Options select what Forward computes besides the logits.
type Options struct {
	// Adapter, when set, sits at the MLP down-projection of its layer: that
	// layer's down_proj output y becomes Adapter.Apply(p, x, y, Extra).
	Adapter Adapter
	// Extra are graph inputs handed to Adapter.Apply as they are (per-call
	// adapter inputs such as masks).
	Extra []*graph.Node
	// Features asks for the input of the MLP down-projection of layer
	// FeatureLayer, x = silu(gate)·up [batch, seq, intermediate], as
	// Result.Features.
	Features     bool
	FeatureLayer int
}

// Result is what Forward returns.
type Result struct {
	// Logits [batch, seq, vocab].
	Logits *graph.Node
	// Features is the down-projection input of Options.FeatureLayer, nil
	// unless Options.Features.
	Features *graph.Node
}

// Forward is the causal language model over token ids [batch, seq] (any
// integer type) at positions 0..seq-1. Rows of different lengths are padded
// on the right: causal attention keeps padding from reaching earlier
// tokens, so the logits of the real tokens do not depend on it.
func Forward(c Config, p models.Params, ids *graph.Node, o Options) Result {
	if ids.Rank() != 2 {
		panic(fmt.Errorf("llama: ids must be [batch, seq], got %s", ids.Shape()))
	}
	checkOptions(c, o)
	seq := ids.Shape().Dimensions[1]
	g := ids.Graph()
	pos := graph.Iota(g, shapes.Make(dtypes.Int32, seq), 0)
	x, feats, _ := decoder(c, p, ids, pos, nil, o)
	return Result{Logits: head(c, p, x, models.Linear), Features: feats}
}

func checkOptions(c Config, o Options) {
	if o.Adapter != nil {
		if l := o.Adapter.Layer(); l < 0 || l >= c.NumHiddenLayers {
			panic(fmt.Errorf("llama: the adapter sits at layer %d; the model has layers 0..%d", l, c.NumHiddenLayers-1))
		}
	}
	if o.Features && (o.FeatureLayer < 0 || o.FeatureLayer >= c.NumHiddenLayers) {
		panic(fmt.Errorf("llama: features asked of layer %d; the model has layers 0..%d", o.FeatureLayer, c.NumHiddenLayers-1))
	}
}

// kvCache is the key/value cache of a generation step: per layer, keys
// [batch, kvHeads, maxLen, headDim] and values [batch, kvHeads, headDim,
// maxLen] of the positions so far (zeros at the positions not yet written),
// and the position of the step's first token (an int32 scalar). The layouts
// are the ones simplego's DotGeneral takes without transposing (batch axes,
// then free axes, then contracted axes), so a step does not copy the cache
// to attend over it.
type kvCache struct {
	pos    *graph.Node
	maxLen int
	k, v   []*graph.Node
	// dus writes with DynamicUpdateSlice (backends that have it) instead of
	// a scatter-add.
	dus bool
}

// decoder runs the embedding and the decoder layers over ids at positions
// pos [seq] (int32); it returns the last hidden state (before the final
// norm), the features asked for, and, with a cache, the updated cache.
func decoder(c Config, p models.Params, ids, pos *graph.Node, cache *kvCache, o Options) (x, feats *graph.Node, next *kvCache) {
	g := ids.Graph()
	x = models.Embed(p.Get("model.embed_tokens.weight"), ids)
	dt := x.DType()
	cos, sin := rope(c, pos, dt)
	b, seq := x.Shape().Dimensions[0], x.Shape().Dimensions[1]
	kvh, grp := c.NumKeyValueHeads, c.NumAttentionHeads/c.NumKeyValueHeads
	keys, lin := seq, models.Linear
	var w *cacheWriter
	if cache != nil {
		next = &kvCache{pos: cache.pos, maxLen: cache.maxLen, dus: cache.dus}
		keys, lin = cache.maxLen, fewRowsLinear
		w = newCacheWriter(cache.pos, b, kvh, c.HeadDim, seq, cache.dus)
	}
	// The attention mask, broadcast once for all layers: key s is seen by
	// the query at position pos[t] when s ≤ pos[t].
	keep := graph.LessOrEqual(graph.ExpandAxes(graph.Iota(g, shapes.Make(dtypes.Int32, keys), 0), 0), graph.ExpandAxes(pos, -1)) // [seq, keys]
	keep = graph.BroadcastToShape(graph.Reshape(keep, 1, 1, seq, 1, keys), shapes.Make(dtypes.Bool, b, kvh, seq, grp, keys))
	for i := range c.NumHiddenLayers {
		l := layerPrefix(i)
		// Attention.
		h := RMSNorm(x, p.Get(l+"input_layernorm.weight"), c.RMSNormEps)
		q := splitHeads(lin(h, p.Linear(l+"self_attn.q_proj")), c.NumAttentionHeads)
		k := splitHeads(lin(h, p.Linear(l+"self_attn.k_proj")), kvh)
		v := splitHeads(lin(h, p.Linear(l+"self_attn.v_proj")), kvh)
		q, k = applyRope(q, cos, sin), applyRope(k, cos, sin)
		var a *graph.Node
		if cache == nil {
			a = attend(q, k, []int{0, 2}, []int{3}, v, []int{0, 2}, []int{1}, keep)
		} else {
			k, v = w.writeK(cache.k[i], k), w.writeV(cache.v[i], v)
			next.k, next.v = append(next.k, k), append(next.v, v)
			a = attend(q, k, []int{0, 1}, []int{3}, v, []int{0, 1}, []int{3}, keep)
		}
		x = graph.Add(x, lin(a, p.Linear(l+"self_attn.o_proj")))
		// MLP, with the adapter site at its down-projection.
		h = RMSNorm(x, p.Get(l+"post_attention_layernorm.weight"), c.RMSNormEps)
		gate := lin(h, p.Linear(l+"mlp.gate_proj"))
		act := graph.Mul(graph.Mul(gate, graph.Logistic(gate)), lin(h, p.Linear(l+"mlp.up_proj")))
		y := lin(act, p.Linear(l+"mlp.down_proj"))
		if o.Features && i == o.FeatureLayer {
			feats = act
		}
		if o.Adapter != nil && i == o.Adapter.Layer() {
			y = o.Adapter.Apply(p, act, y, o.Extra)
			if !y.Shape().Equal(x.Shape()) {
				panic(fmt.Errorf("llama: the adapter at layer %d returned %s, want %s", i, y.Shape(), x.Shape()))
			}
		}
		x = graph.Add(x, y)
	}
	return x, feats, next
}

// head is the final norm and the output layer: logits over the vocabulary.
func head(c Config, p models.Params, x *graph.Node, lin func(*graph.Node, models.LinearW) *graph.Node) *graph.Node {
	x = RMSNorm(x, p.Get("model.norm.weight"), c.RMSNormEps)
	w := p.Opt("lm_head.weight")
	if c.TieWordEmbeddings || w == nil {
		w = p.Get("model.embed_tokens.weight")
	}
	return lin(x, models.LinearW{Weight: w})
}

// smallCross is the largest product of the two free sizes of a matrix
// product that simplego computes with its direct kernel; above it, it
// copies both operands into 32×32 blocks, which for a product with a few
// rows (a generation step) pads them to 32 and re-blocks the whole weight
// matrix at every call: measured on a stories15M-shaped model, the 32000-row
// output layer alone made a step 40x slower.
const smallCross = 16 * 32 * 32

// fewRowsLinear is models.Linear for inputs of a few rows (generation
// steps): a weight matrix with more rows than smallCross allows is split
// into equal groups, given as a batch axis of the product, so that each
// group stays under it. The result is the same; on XLA the split costs a
// broadcast of the few input rows.
func fewRowsLinear(x *graph.Node, w models.LinearW) *graph.Node {
	xd, wd := x.Shape().Dimensions, w.Weight.Shape().Dimensions
	rows, out, in := x.Shape().Size()/xd[len(xd)-1], wd[0], wd[1]
	if rows*out <= smallCross || rows > 16 {
		return models.Linear(x, w)
	}
	groups := 0
	for n := 2; n <= 256 && groups == 0; n++ {
		if out%n == 0 && rows*(out/n) <= smallCross {
			groups = n
		}
	}
	if groups == 0 {
		return models.Linear(x, w)
	}
	x3 := graph.BroadcastToShape(graph.Reshape(x, 1, rows, in), shapes.Make(x.DType(), groups, rows, in))
	w3 := graph.Reshape(w.Weight, groups, out/groups, in)
	y := graph.DotGeneral(x3, []int{2}, []int{0}, w3, []int{2}, []int{0}) // [groups, rows, out/groups]
	y = graph.Reshape(graph.TransposeAllAxes(y, 1, 0, 2), append(xd[:len(xd)-1:len(xd)-1], out)...)
	if w.Bias != nil {
		y = graph.Add(y, graph.ExpandLeftToRank(w.Bias, y.Rank()))
	}
	return y
}

// RMSNorm is LlamaRMSNorm: w·x/√(mean(x²) + eps) over the last axis.
func RMSNorm(x, w *graph.Node, eps float64) *graph.Node {
	ms := graph.ReduceAndKeep(graph.Mul(x, x), graph.ReduceMean, -1)
	// Div by Sqrt, not Mul by Rsqrt: GoMLX v0.26 has no gradient for Rsqrt.
	y := graph.Div(x, graph.Sqrt(graph.AddScalar(ms, eps)))
	return graph.Mul(y, graph.ExpandLeftToRank(w, y.Rank()))
}

// splitHeads reshapes [batch, seq, heads·headDim] to [batch, seq, heads,
// headDim].
func splitHeads(x *graph.Node, heads int) *graph.Node {
	d := x.Shape().Dimensions
	return graph.Reshape(x, d[0], d[1], heads, d[2]/heads)
}

// rope returns the rotary cos and sin [seq, headDim] of positions pos
// [seq] (int32), each frequency repeated over the two halves as Hugging
// Face's LlamaRotaryEmbedding lays them out. Angles are computed in float64
// (exact positions times float64 frequencies), then cast to dt.
func rope(c Config, pos *graph.Node, dt dtypes.DType) (cos, sin *graph.Node) {
	g := pos.Graph()
	inv := c.InvFreq()
	full := append(append([]float64(nil), inv...), inv...)
	ang := graph.Mul(graph.ExpandAxes(graph.ConvertDType(pos, dtypes.Float64), -1),
		graph.ExpandAxes(graph.Const(g, full), 0)) // [seq, headDim]
	return graph.ConvertDType(graph.Cos(ang), dt), graph.ConvertDType(graph.Sin(ang), dt)
}

// applyRope rotates x [batch, seq, heads, headDim] in Hugging Face's
// half-split layout: x·cos + rotate_half(x)·sin, rotate_half(x) = [−x₂, x₁]
// for the halves x₁, x₂ of each head. rotate_half is a product with a 2×2
// matrix over the halves axis (no slicing, so it is differentiable on every
// backend).
func applyRope(x, cos, sin *graph.Node) *graph.Node {
	d := x.Shape().Dimensions
	b, s, h, hd := d[0], d[1], d[2], d[3]
	g := x.Graph()
	// out_j = Σ_i x_i·R[i][j]: out_0 = −x_1, out_1 = x_0.
	r := graph.ConvertDType(graph.Const(g, [][]float32{{0, 1}, {-1, 0}}), x.DType())
	halves := graph.Reshape(x, b, s, h, 2, hd/2)
	rot := graph.DotGeneral(halves, []int{3}, nil, r, []int{0}, nil) // [b, s, h, hd/2, 2]
	rot = graph.Reshape(graph.TransposeAllAxes(rot, 0, 1, 2, 4, 3), b, s, h, hd)
	cos = graph.Reshape(cos, 1, s, 1, hd)
	sin = graph.Reshape(sin, 1, s, 1, hd)
	return graph.Add(graph.Mul(x, cos), graph.Mul(rot, sin))
}

// Attention is grouped-query scaled dot-product attention: q [batch, seq,
// heads, headDim] over k, v [batch, keys, kvHeads, headDim], query head h
// reading key/value head h / (heads/kvHeads) as Hugging Face's repeat_kv
// does. keep [seq, keys] (bool) masks the keys each query sees (nil: all).
// It returns [batch, seq, heads·headDim].
func Attention(q, k, v, keep *graph.Node) *graph.Node {
	qd, kd := q.Shape().Dimensions, k.Shape().Dimensions
	if len(qd) != 4 || len(kd) != 4 || qd[2]%kd[2] != 0 || kd[3] != qd[3] || !k.Shape().Equal(v.Shape()) {
		panic(fmt.Errorf("llama.Attention: q %s, k %s and v %s do not fit", q.Shape(), k.Shape(), v.Shape()))
	}
	if keep != nil {
		b, s, kvh, grp, keys := qd[0], qd[1], kd[2], qd[2]/kd[2], kd[1]
		keep = graph.BroadcastToShape(graph.Reshape(keep, 1, 1, s, 1, keys), shapes.Make(dtypes.Bool, b, kvh, s, grp, keys))
	}
	return attend(q, k, []int{0, 2}, []int{3}, v, []int{0, 2}, []int{1}, keep)
}

// attend is Attention over keys and values in any layout: kBatch, vBatch
// name their batch and kv-head axes, kContract the head-dim axis of k,
// vContract the keys axis of v. keep, when not nil, is the mask broadcast
// to the scores' shape [batch, kvHeads, seq, heads/kvHeads, keys].
func attend(q, k *graph.Node, kBatch, kContract []int, v *graph.Node, vBatch, vContract []int, keep *graph.Node) *graph.Node {
	qd := q.Shape().Dimensions
	b, s, h, hd := qd[0], qd[1], qd[2], qd[3]
	kvh := k.Shape().Dimensions[kBatch[1]]
	grp := h / kvh
	q = graph.Reshape(graph.MulScalar(q, 1/math.Sqrt(float64(hd))), b, s, kvh, grp, hd)
	// scores[b, kv, t, g, s'] = q[b, t, kv, g, :]·k[b, s', kv, :]
	scores := graph.DotGeneral(q, []int{4}, []int{0, 2}, k, kContract, kBatch)
	if keep != nil {
		scores = graph.Where(keep, scores, graph.Infinity(q.Graph(), scores.DType(), -1))
	}
	probs := graph.Softmax(scores, -1)
	// out[b, kv, t, g, :] = Σ_s' probs[b, kv, t, g, s']·v[b, s', kv, :]
	out := graph.DotGeneral(probs, []int{4}, []int{0, 1}, v, vContract, vBatch)
	return graph.Reshape(graph.TransposeAllAxes(out, 0, 2, 1, 3, 4), b, s, h*hd)
}

// cacheWriter writes the keys and values of one step's tokens (positions
// pos..pos+seq-1) into the caches. With DynamicUpdateSlice (XLA) it writes
// in place. Without it (simplego) it scatter-adds the new rows at their
// positions: the cache holds zeros at the positions not yet written (a
// session only moves forward), so the sum is exactly the written cache, and
// one compiled graph serves every position. Measured with simplego on
// stories260K (BenchmarkGenerateStories260K, 256 positions, 2 cores): a
// Where over a broadcast position mask with [batch, maxLen, kvHeads,
// headDim] caches, 410 tok/s; one-hot products in the present layouts, 675;
// this scatter-add, which touches only the new rows besides a copy of the
// cache, 880.
type cacheWriter struct {
	pos        *graph.Node
	dus        bool
	idxK, idxV *graph.Node // scatter indices: [b, kv, seq, 3] into keys, [b, kv, hd, seq, 4] into values
}

func newCacheWriter(pos *graph.Node, b, kvh, hd, seq int, dus bool) *cacheWriter {
	w := &cacheWriter{pos: pos, dus: dus}
	if dus {
		return w
	}
	g := pos.Graph()
	grid := func(dims []int, axis int) *graph.Node { return graph.Iota(g, shapes.Make(dtypes.Int32, dims...), axis) }
	kd := []int{b, kvh, seq}
	w.idxK = graph.Stack([]*graph.Node{grid(kd, 0), grid(kd, 1), graph.Add(grid(kd, 2), pos)}, -1)
	vd := []int{b, kvh, hd, seq}
	w.idxV = graph.Stack([]*graph.Node{grid(vd, 0), grid(vd, 1), grid(vd, 2), graph.Add(grid(vd, 3), pos)}, -1)
	return w
}

// writeK writes k [batch, seq, kvHeads, headDim] into cache [batch,
// kvHeads, maxLen, headDim].
func (w *cacheWriter) writeK(cache, k *graph.Node) *graph.Node {
	kt := graph.TransposeAllAxes(k, 0, 2, 1, 3) // [b, kv, seq, hd]
	if w.dus {
		zero := graph.ScalarZero(k.Graph(), dtypes.Int32)
		return graph.DynamicUpdateSlice(cache, kt, []*graph.Node{zero, zero, w.pos, zero})
	}
	return graph.ScatterSum(cache, w.idxK, kt, true, true)
}

// writeV writes v [batch, seq, kvHeads, headDim] into cache [batch,
// kvHeads, headDim, maxLen].
func (w *cacheWriter) writeV(cache, v *graph.Node) *graph.Node {
	vt := graph.TransposeAllAxes(v, 0, 2, 3, 1) // [b, kv, hd, seq]
	if w.dus {
		zero := graph.ScalarZero(v.Graph(), dtypes.Int32)
		return graph.DynamicUpdateSlice(cache, vt, []*graph.Node{zero, zero, zero, w.pos})
	}
	return graph.ScatterSum(cache, w.idxV, vt, true, true)
}

// Loss is the mean next-token cross-entropy of logits [batch, seq, vocab]
// against targets [batch, seq] (integer ids), weighted by mask [batch, seq]
// (1 where a target counts, 0 elsewhere): Σ mask·(−log p(target)) / Σ mask.
// A nil mask counts every position.
func Loss(logits, targets, mask *graph.Node) *graph.Node {
	v := logits.Shape().Dimensions[2]
	logp := graph.LogSoftmax(logits, -1)
	onehot := graph.OneHot(graph.ConvertDType(targets, dtypes.Int32), v, logits.DType())
	nll := graph.Neg(graph.ReduceSum(graph.Mul(logp, onehot), -1)) // [batch, seq]
	if mask == nil {
		return graph.ReduceAllMean(nll)
	}
	mask = graph.ConvertDType(mask, logits.DType())
	return graph.Div(graph.ReduceAllSum(graph.Mul(nll, mask)), graph.ReduceAllSum(mask))
}
