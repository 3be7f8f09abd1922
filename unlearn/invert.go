package unlearn

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/train"
)

// DECREE's settings (GiantSeaweed/DECREE main.py and run_decree.py, CLIP).
const (
	DefaultInvertExamples  = 1000 // shadow images (the reference's CIFAR-10 setting: 10% of the test set)
	DefaultInvertBatch     = 32
	DefaultInvertLR        = 0.5
	DefaultInvertEpochs    = 1000
	DefaultInvertThreshold = 0.99
	decreeEps              = 1e-7
	decreeInitLambda       = 1e-3
	decreeLambdaFactor     = 5.0
	decreeLambdaMax        = 1e5
	decreeLambdaMin        = 1e-7 // CLIP's; the reference uses 1e-5 for CIFAR-10 encoders
	decreePatience         = 5
	decreeEarlyStop        = 7 * decreePatience // CLIP's early_stop_patience
)

// InvertOptions configure Invert; zero values take DECREE's settings.
type InvertOptions struct {
	// Examples is the number of clean images drawn (seeded) from the
	// dataset (DefaultInvertExamples; all when fewer).
	Examples int
	// BatchSize (DefaultInvertBatch), LR (DefaultInvertLR, then 0.1 from
	// epoch 200 and 0.05 from epoch 500), Epochs (the most epochs,
	// DefaultInvertEpochs), Threshold (the mean cosine a trigger must
	// reach, DefaultInvertThreshold).
	BatchSize int
	LR        float64
	Epochs    int
	Threshold float64
	// Seed draws the images, their order and the initial mask and pattern.
	Seed uint64
	// Head, when set, classifies the triggered images to estimate the
	// attack's target class.
	Head *heads.Head
	// Progress, when set, is called after every epoch.
	Progress func(InvertEpoch)
}

// InvertEpoch summarises an epoch of Invert.
type InvertEpoch struct {
	Epoch  int     `json:"epoch"`
	Loss   float64 `json:"loss"`
	Cosine float64 `json:"cosine"` // mean pairwise cosine, averaged over the epoch's steps
	L1     float64 `json:"l1"`     // mean ‖m‖₁ (three channels) over the epoch's steps
	Lambda float64 `json:"lambda"` // λ at the epoch's end
	// BestL1 is the smallest ‖m‖₁ of a step above the threshold so far
	// (−1 before any).
	BestL1 float64 `json:"best_l1"`
}

// InvertResult is what Invert found.
type InvertResult struct {
	Trigger *Inverted `json:"-"`
	// Found is false when no step reached the threshold; Trigger is then
	// the final mask and pattern.
	Found bool `json:"found"`
	// PL1 is ‖m‖₁/(H·W) of the trigger, L1 the reference's ‖m‖₁ over the
	// three channels, Cosine the mean pairwise cosine of the step it comes
	// from.
	PL1    float64 `json:"pl1"`
	L1     float64 `json:"l1"`
	Cosine float64 `json:"cosine"`
	// Target is the class most triggered shadow images are classified as
	// (-1 without a head), TargetShare their share.
	Target      int           `json:"target"`
	TargetShare float64       `json:"target_share,omitempty"`
	Examples    int           `json:"examples"`
	Epochs      int           `json:"epochs"`
	Steps       int           `json:"steps"`
	EarlyStop   bool          `json:"early_stop"`
	Seconds     float64       `json:"seconds"`
	History     []InvertEpoch `json:"history"`
}

func (o InvertOptions) withDefaults() InvertOptions {
	if o.Examples == 0 {
		o.Examples = DefaultInvertExamples
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultInvertBatch
	}
	if o.LR == 0 {
		o.LR = DefaultInvertLR
	}
	if o.Epochs == 0 {
		o.Epochs = DefaultInvertEpochs
	}
	if o.Threshold == 0 {
		o.Threshold = DefaultInvertThreshold
	}
	return o
}

// epochLR is DECREE's schedule (adjust_learning_rate, CLIP thresholds).
func epochLR(base float64, epoch int) float64 {
	switch {
	case epoch < 200:
		return base
	case epoch < 500:
		return 0.1
	}
	return 0.05
}

// Names of the optimised tensors: the mask's and the pattern's
// pre-images under the tanh maps.
const (
	invertMaskParam    = "decree.mask"
	invertPatternParam = "decree.pattern"
)

// decreeMask maps the raw parameter to the mask: tanh(a)/(2 − ε) + 0.5,
// clipped to [0, 1].
func decreeMask(a float64) float64 {
	return min(1, max(0, math.Tanh(a)/(2-decreeEps)+0.5))
}

// Invert runs DECREE on the encoder (see the package doc): it looks for a
// small mask and a pattern that make the embeddings of ds's images nearly
// identical. ds's images must share one size; gray images are replicated
// into RGB. The images are drawn (seeded) from ds, whose labels are not
// used.
func Invert(enc *encoder.Encoder, ds *datasets.Dataset, o InvertOptions) (*InvertResult, error) {
	start := time.Now()
	o = o.withDefaults()
	switch {
	case o.Examples < 2 || o.BatchSize < 2:
		return nil, fmt.Errorf("inversion needs at least 2 images and a batch of 2 (have %d and %d): the loss compares images with each other", o.Examples, o.BatchSize)
	case !(o.LR > 0) || o.Epochs < 1 || !(o.Threshold > 0 && o.Threshold <= 1):
		return nil, fmt.Errorf("inversion settings: learning rate %v, %d epochs, threshold %v: want lr > 0, ≥ 1 epoch, threshold in (0, 1]", o.LR, o.Epochs, o.Threshold)
	}
	if o.Head != nil && o.Head.Dim != enc.Dim {
		return nil, fmt.Errorf("the head takes %d-d features, the encoder gives %d-d ones", o.Head.Dim, enc.Dim)
	}
	n := min(o.Examples, ds.Len())
	if n < 2 {
		return nil, fmt.Errorf("%s has %d images: inversion needs at least 2", ds.Name(), ds.Len())
	}
	shadow := ds.Sample(n, o.Seed)
	pix, h, w, err := rawRGB(shadow)
	if err != nil {
		return nil, err
	}
	rows, cols, err := enc.Preprocess.ResizeWeights(h, w)
	if err != nil {
		return nil, err
	}
	s := enc.Preprocess.Size

	// Initial mask and pattern: uniform draws through the inverse maps
	// (the reference's mask_init "rand").
	r := rand.New(rand.NewPCG(o.Seed, 0x1de))
	inv := func() float32 { return float32(math.Atanh((r.Float64() - 0.5) * (2 - decreeEps))) }
	a0, b0 := make([]float32, h*w), make([]float32, h*w*3)
	for i := range a0 {
		a0[i] = inv()
	}
	for i := range b0 {
		b0[i] = inv()
	}
	specs := []checkpoint.TensorSpec{
		{Name: invertMaskParam, DType: checkpoint.F32, Shape: []int64{int64(h), int64(w)}},
		{Name: invertPatternParam, DType: checkpoint.F32, Shape: []int64{int64(h), int64(w), 3}},
	}
	init := models.Weights{invertMaskParam: tensors.FromFlatDataAndDimensions(a0, h, w), invertPatternParam: tensors.FromFlatDataAndDimensions(b0, h, w, 3)}

	pre := enc.Preprocess
	loss := func(p models.Params, in []*graph.Node) (*graph.Node, *graph.Node) {
		x, lambda := in[0], in[1]
		g := x.Graph()
		ep := models.Params{}
		for i, spec := range enc.Specs {
			ep[spec.Name] = in[4+i]
		}
		m := graph.ClipScalar(graph.AddScalar(graph.DivScalar(graph.Tanh(p.Get(invertMaskParam)), 2-decreeEps), 0.5), 0, 1)
		pat := graph.ClipScalar(graph.MulScalar(graph.AddScalar(graph.DivScalar(graph.Tanh(p.Get(invertPatternParam)), 2-decreeEps), 0.5), 255), 0, 255)
		m3 := graph.BroadcastToDims(graph.Reshape(m, 1, h, w, 1), x.Shape().Dimensions...)
		bd := graph.Add(graph.Mul(graph.OneMinus(m3), x), graph.Mul(m3, graph.BroadcastToDims(graph.Reshape(pat, 1, h, w, 3), x.Shape().Dimensions...)))
		bd = graph.ClipScalar(bd, 0, 255)
		// The model's resize and crop, then its normalization.
		y := graph.Einsum("sh,bhwc->bswc", in[2], bd)
		y = graph.Einsum("bswc,tw->bstc", y, in[3])
		y = graph.DivScalar(graph.ClipScalar(y, 0, 255), 255)
		mean := graph.Const(g, tensors.FromFlatDataAndDimensions(pre.Mean[:], 1, 1, 1, 3))
		std := graph.Const(g, tensors.FromFlatDataAndDimensions(pre.Std[:], 1, 1, 1, 3))
		y = graph.Div(graph.Sub(y, mean), std)
		cos := meanPairwiseCosine(enc.Forward(ep, y))
		reg := graph.MulScalar(graph.ReduceAllSum(m), 3)
		return graph.Add(graph.Neg(cos), graph.Mul(lambda, reg)), cos
	}
	opt, err := train.NewOptimizer(specs, init, loss, train.AdamOptions{Beta1: 0.5, Beta2: 0.9})
	if err != nil {
		return nil, err
	}
	defer opt.Close()
	rowsT := tensors.FromFlatDataAndDimensions(rows, s, h)
	colsT := tensors.FromFlatDataAndDimensions(cols, s, w)
	weightInputs := make([]any, len(enc.Specs))
	for i, spec := range enc.Specs {
		weightInputs[i] = enc.Weights[spec.Name]
	}

	res := &InvertResult{Examples: n, Target: -1}
	var (
		lambda                      = decreeInitLambda
		best                        = math.Inf(1)
		esBest                      = math.Inf(1)
		esCount, setCount, up, down int
		bestA, bestB                []float32
		per                         = h * w * 3
	)
	for epoch := 0; epoch < o.Epochs; epoch++ {
		lr := epochLR(o.LR, epoch)
		order := datasets.Permutation(n, o.Seed^(uint64(epoch)+1)*0x9e3779b97f4a7c15)
		var sumLoss, sumCos, sumL1 float64
		steps := 0
		for from := 0; from+1 < n; from += o.BatchSize {
			idx := order[from:min(from+o.BatchSize, n)]
			if len(idx) < 2 {
				break
			}
			batch := make([]float32, 0, len(idx)*per)
			for _, i := range idx {
				batch = append(batch, pix[i*per:(i+1)*per]...)
			}
			cur, err := opt.Weights()
			if err != nil {
				return nil, err
			}
			a := tensors.MustCopyFlatData[float32](cur[invertMaskParam])
			b := tensors.MustCopyFlatData[float32](cur[invertPatternParam])
			for _, t := range cur {
				t.FinalizeAll()
			}
			l1 := 0.0
			for _, v := range a {
				l1 += decreeMask(float64(v))
			}
			l1 *= 3
			inputs := append([]any{tensors.FromFlatDataAndDimensions(batch, len(idx), h, w, 3), float32(lambda), rowsT, colsT}, weightInputs...)
			lossV, cos, err := opt.Step(lr, inputs...)
			if err != nil {
				return nil, fmt.Errorf("inversion, epoch %d: %w", epoch, err)
			}
			steps++
			res.Steps++
			sumLoss, sumCos, sumL1 = sumLoss+lossV, sumCos+cos, sumL1+l1

			// The reference's bookkeeping, step by step.
			success := math.Abs(cos) > o.Threshold
			if success && l1 < best {
				best, bestA, bestB, res.Cosine = l1, a, b, cos
			}
			if !math.IsInf(best, 1) {
				if best >= esBest {
					esCount++
				} else {
					esCount = 0
				}
			}
			esBest = min(esBest, best)
			if lambda < decreeLambdaMin && success {
				setCount++
				if setCount > 2*decreePatience {
					lambda, up, down = decreeInitLambda, 0, 0
				}
			} else {
				setCount = 0
			}
			if success {
				up, down = up+1, 0
			} else {
				up, down = 0, down+1
			}
			if up > decreePatience {
				if lambda < decreeLambdaMax {
					lambda *= decreeLambdaFactor
				}
				up = 0
			} else if down > decreePatience {
				if lambda >= decreeLambdaMin {
					lambda /= decreeLambdaFactor
				}
				down = 0
			}
		}
		if steps == 0 {
			return nil, errors.New("inversion: no batch of at least 2 images")
		}
		e := InvertEpoch{Epoch: epoch, Loss: sumLoss / float64(steps), Cosine: sumCos / float64(steps), L1: sumL1 / float64(steps), Lambda: lambda, BestL1: best}
		if math.IsInf(best, 1) {
			e.BestL1 = -1
		}
		res.History = append(res.History, e)
		res.Epochs = epoch + 1
		if o.Progress != nil {
			o.Progress(e)
		}
		if math.Abs(e.Cosine) > o.Threshold && esCount > decreeEarlyStop {
			res.EarlyStop = true
			break
		}
	}
	res.Found = bestA != nil
	if !res.Found {
		cur, err := opt.Weights()
		if err != nil {
			return nil, err
		}
		bestA = tensors.MustCopyFlatData[float32](cur[invertMaskParam])
		bestB = tensors.MustCopyFlatData[float32](cur[invertPatternParam])
	}
	t := &Inverted{H: h, W: w, Mask: make([]float32, h*w), Pattern: make([]float32, h*w*3)}
	for i, v := range bestA {
		t.Mask[i] = float32(decreeMask(float64(v)))
	}
	for i, v := range bestB {
		t.Pattern[i] = float32(min(255, max(0, 255*(math.Tanh(float64(v))/(2-decreeEps)+0.5))))
	}
	res.Trigger, res.PL1 = t, t.PL1()
	res.L1 = 3 * res.PL1 * float64(h*w)
	if o.Head != nil {
		if res.Target, res.TargetShare, err = collapseClass(enc, o.Head, shadow, t); err != nil {
			return nil, err
		}
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// meanPairwiseCosine is the mean cosine similarity between the rows of e
// [B, D] over the B(B−1) pairs i ≠ j (the reference's compute_self_cos_sim).
func meanPairwiseCosine(e *graph.Node) *graph.Node {
	b := e.Shape().Dimensions[0]
	norm := graph.Sqrt(graph.Max(graph.ReduceAndKeep(graph.Square(e), graph.ReduceSum, -1), graph.Scalar(e.Graph(), e.DType(), 1e-24)))
	u := graph.Div(e, norm)
	sim := graph.Einsum("id,jd->ij", u, u)
	off := graph.Sub(graph.ReduceAllSum(sim), graph.ReduceAllSum(graph.Mul(u, u)))
	return graph.DivScalar(off, float64(b*(b-1)))
}

// rawRGB reads ds's images as float32 [n, h, w, 3] (0…255), gray
// replicated; they must share one size.
func rawRGB(ds *datasets.Dataset) (pix []float32, h, w int, err error) {
	for i := range ds.Len() {
		img, err := ds.Image(i)
		if err != nil {
			return nil, 0, 0, err
		}
		if i == 0 {
			h, w = img.Height, img.Width
			pix = make([]float32, 0, ds.Len()*h*w*3)
		} else if img.Height != h || img.Width != w {
			return nil, 0, 0, fmt.Errorf("%s: image %d is %d×%d, image 0 %d×%d: inversion needs images of one size", ds.Name(), i, img.Height, img.Width, h, w)
		}
		for k := range h * w {
			for c := range 3 {
				pix = append(pix, float32(img.Pix[k*img.Channels+min(c, img.Channels-1)]))
			}
		}
	}
	return pix, h, w, nil
}

// collapseClass classifies the triggered images and returns the most
// frequent class and its share.
func collapseClass(enc *encoder.Encoder, head *heads.Head, ds *datasets.Dataset, t Trigger) (int, float64, error) {
	trig, err := Apply(ds, t)
	if err != nil {
		return -1, 0, err
	}
	clf, err := enc.Classifier(nil, head)
	if err != nil {
		return -1, 0, err
	}
	counts := make([]int, len(head.Classes))
	total := 0
	it, err := trig.Batches(enc.Preprocess, datasets.BatchOptions{BatchSize: 128})
	if err != nil {
		return -1, 0, err
	}
	k := len(head.Classes)
	for it.Next() {
		b := it.Batch()
		scores, err := clf(b)
		if err != nil {
			return -1, 0, err
		}
		for i := range b.Size {
			counts[eval.Argmax(scores[i*k:(i+1)*k])]++
			total++
		}
	}
	if err := it.Err(); err != nil {
		return -1, 0, err
	}
	best := 0
	for c, v := range counts {
		if v > counts[best] {
			best = c
		}
	}
	return best, float64(counts[best]) / float64(total), nil
}
