package linearize

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
)

// Pair evaluates two combinations of task vectors on one image encoder in
// one compiled graph per batch shape:
//
//	θ_A = θ₀ + a₁τ₁ + a₂τ₂,   θ_B = θ₀ + b₁τ₁ + b₂τ₂
//
// plainly, f(x; θ_A) and f(x; θ_B), or linearized around a base θ_L,
// f(x; θ_L) + J·(θ_A − θ_L) and the same for θ_B, where both share the
// forward pass at θ_L. The weights are combined inside the graph from θ₀,
// τ₁ and τ₂, which are bound once; the coefficients are inputs, so every
// grid point of a search or of ξ reuses the same compiled graph.
type Pair struct {
	enc  *encoder.Encoder
	args models.Weights // θ₀, τ₁, τ₂ (and θ_L) under the names the graph takes
	fn   *models.Func
}

// Names under which Pair binds τ₁, τ₂ and θ_L (θ₀ keeps the checkpoint
// names).
const (
	tauMark = "linearize:tau%d:"
	linMark = "linearize:at:"
)

// NewPair prepares the pair evaluation of enc's architecture with θ₀ =
// enc.Weights and the task vectors tau1 and tau2 (same tensors as enc),
// linearized around at when it is not nil (same tensors too).
func NewPair(enc *encoder.Encoder, tau1, tau2, at models.Weights) (*Pair, error) {
	specs := enc.Specs
	all := make([]checkpoint.TensorSpec, 0, 4*len(specs))
	args := make(models.Weights, 4*len(specs))
	bind := func(prefix string, w models.Weights, what string) error {
		if err := w.Check(specs); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		for _, s := range specs {
			t := s
			t.Name = prefix + s.Name
			all = append(all, t)
			args[t.Name] = w[s.Name]
		}
		return nil
	}
	if err := bind("", enc.Weights, "base"); err != nil {
		return nil, err
	}
	for i, tau := range []models.Weights{tau1, tau2} {
		if err := bind(fmt.Sprintf(tauMark, i+1), tau, fmt.Sprintf("task vector %d", i+1)); err != nil {
			return nil, err
		}
	}
	linearized := at != nil
	if linearized {
		if err := bind(linMark, at, "linearization base"); err != nil {
			return nil, err
		}
	}
	f := func(p models.Params, in []*graph.Node) []*graph.Node {
		return []*graph.Node{enc.Forward(p, in[0])}
	}
	fn, err := models.NewFunc(models.Backend(), string(enc.Family)+"-pair", all, func(p models.Params, in []*graph.Node) []*graph.Node {
		coef, pixels := in[0], in[1] // coef [4]: a₁, a₂, b₁, b₂
		c := func(i int) *graph.Node {
			return graph.Reshape(graph.Gather(coef, graph.Const(coef.Graph(), [][]int32{{int32(i)}})))
		}
		// The move from θ₀ of each model: a₁τ₁ + a₂τ₂ (b for B).
		moves := [2]models.Params{{}, {}}
		for _, s := range specs {
			t1, t2 := p.Get(fmt.Sprintf(tauMark, 1)+s.Name), p.Get(fmt.Sprintf(tauMark, 2)+s.Name)
			for m := range 2 {
				moves[m][s.Name] = graph.Add(graph.Mul(t1, c(2*m)), graph.Mul(t2, c(2*m+1)))
			}
		}
		base := make(models.Params, len(specs))
		for _, s := range specs {
			base[s.Name] = p.Get(s.Name)
		}
		if !linearized {
			var out []*graph.Node
			for m := range 2 {
				w := make(models.Params, len(specs))
				for _, s := range specs {
					w[s.Name] = graph.Add(base[s.Name], moves[m][s.Name])
				}
				out = append(out, f(w, []*graph.Node{pixels})[0])
			}
			return out
		}
		// Around θ_L: the direction of each model is (θ₀ − θ_L) + its move.
		at := make(models.Params, len(specs))
		dirs := [2]models.Params{{}, {}}
		for _, s := range specs {
			at[s.Name] = p.Get(linMark + s.Name)
			offset := graph.Sub(base[s.Name], at[s.Name])
			for m := range 2 {
				dirs[m][s.Name] = graph.Add(offset, moves[m][s.Name])
			}
		}
		primal, tangents := JVP(f, at, []*graph.Node{pixels}, dirs[0], dirs[1])
		return []*graph.Node{graph.Add(primal[0], tangents[0][0]), graph.Add(primal[0], tangents[1][0])}
	})
	if err != nil {
		return nil, err
	}
	return &Pair{enc: enc, args: args, fn: fn}, nil
}

// Close frees the compiled graphs.
func (p *Pair) Close() { p.fn.Finalize() }

// Features computes the features [batch, Dim] of pixels under the two
// combinations a and b.
func (p *Pair) Features(a, b [2]float64, pixels *tensors.Tensor) (fa, fb []float32, err error) {
	coef := tensors.FromFlatDataAndDimensions([]float32{float32(a[0]), float32(a[1]), float32(b[0]), float32(b[1])}, 4)
	outs, err := p.fn.Call(p.args, coef, pixels)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		for _, o := range outs {
			o.FinalizeAll()
		}
	}()
	for k, o := range outs {
		if !finite(o) {
			return nil, nil, fmt.Errorf("the features of combination %v are not finite: %w", [][2]float64{a, b}[k], ErrNonFinite)
		}
	}
	return tensors.MustCopyFlatData[float32](outs[0]), tensors.MustCopyFlatData[float32](outs[1]), nil
}

// Predictor returns an eval.PairPredictor over the examples of two tasks
// (their datasets and heads). The images are preprocessed once, in batches
// of batchSize, and kept in memory for every later call.
func (p *Pair) Predictor(ds [2]*datasets.Dataset, hs [2]*heads.Head, batchSize int) (eval.PairPredictor, error) {
	var batches [2][]*tensors.Tensor
	for t := range 2 {
		if hs[t].Dim != p.enc.Dim {
			return nil, fmt.Errorf("the head of %s takes %d-d features but the encoder gives %d-d ones", ds[t].Name(), hs[t].Dim, p.enc.Dim)
		}
		if len(hs[t].Classes) != ds[t].NumClasses() {
			return nil, fmt.Errorf("the head of %s has %d classes, the dataset %d", ds[t].Name(), len(hs[t].Classes), ds[t].NumClasses())
		}
		it, err := ds[t].Batches(p.enc.Preprocess, datasets.BatchOptions{BatchSize: batchSize})
		if err != nil {
			return nil, err
		}
		for it.Next() {
			b := it.Batch()
			px, err := models.Pixels(b.Images, b.Size, b.Height, b.Width)
			if err != nil {
				return nil, err
			}
			batches[t] = append(batches[t], px)
		}
		if err := it.Err(); err != nil {
			return nil, err
		}
	}
	return func(t int, a, b [2]float64) (predA, predB []int, err error) {
		for _, px := range batches[t] {
			fa, fb, err := p.Features(a, b, px)
			if err != nil {
				return nil, nil, err
			}
			n := px.Shape().Dimensions[0]
			for _, f := range []struct {
				feats []float32
				dst   *[]int
			}{{fa, &predA}, {fb, &predB}} {
				logits, err := hs[t].Logits(f.feats, n)
				if err != nil {
					return nil, nil, err
				}
				c := len(hs[t].Classes)
				for i := range n {
					*f.dst = append(*f.dst, eval.Argmax(logits[i*c:(i+1)*c]))
				}
			}
		}
		return predA, predB, nil
	}, nil
}

// DisentangleOptions configure Disentangle.
type DisentangleOptions struct {
	// BatchSize is the number of images per call (default 64).
	BatchSize int
	// Progress, when set, is called after each grid point.
	Progress func(done, total int)
}

// Disentangle computes the weight disentanglement error ξ (see
// eval.Disentanglement) of the task vectors of two fine-tuned encoders,
// τ_t = θ_t − θ₀ with θ₀ = base.Weights, over the grid alpha1 × alpha2, on
// the examples of each task with its head: through the encoder itself when
// around is nil, else through its linearization around those weights (θ₀
// for linearized fine-tunes). Each grid point evaluates both models of a
// term in one call of one compiled graph (Pair).
func Disentangle(base *encoder.Encoder, finetuned [2]models.Weights, around models.Weights, ds [2]*datasets.Dataset, hs [2]*heads.Head, alpha1, alpha2 []float64, o DisentangleOptions) (*eval.Disentanglement, error) {
	var tau [2]models.Weights
	for t := range 2 {
		if err := finetuned[t].Check(base.Specs); err != nil {
			return nil, fmt.Errorf("fine-tuned model %d: %w", t+1, err)
		}
		tau[t] = make(models.Weights, len(base.Specs))
		for _, s := range base.Specs {
			v, b := finetuned[t].Float32(s.Name), base.Weights.Float32(s.Name)
			for i := range v {
				v[i] -= b[i]
			}
			tau[t][s.Name] = tensors.FromFlatDataAndDimensions(v, base.Weights[s.Name].Shape().Dimensions...)
		}
	}
	p, err := NewPair(base, tau[0], tau[1], around)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	bs := o.BatchSize
	if bs <= 0 {
		bs = 64
	}
	predict, err := p.Predictor(ds, hs, bs)
	if err != nil {
		return nil, err
	}
	return eval.Disentangle([2]string{ds[0].Name(), ds[1].Name()}, alpha1, alpha2, predict, o.Progress)
}
