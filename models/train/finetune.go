package train

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/linearize"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// CheckHead reports why a head cannot classify a dataset's images from an
// encoder's features: a feature size other than the encoder's, a head made
// for another kind of features (its heads.MetaFeatures), another number of
// classes than the dataset's, or other class names (compared
// case-insensitively, ignoring '_' versus ' '), unless ignoreNames.
func CheckHead(enc *encoder.Encoder, h *heads.Head, ds *datasets.Dataset, ignoreNames bool) error {
	if err := h.Validate(); err != nil {
		return err
	}
	if h.Dim != enc.Dim {
		return fmt.Errorf("the head takes %d-d features but the %s encoder gives %d-d ones: build the head with this model", h.Dim, enc.Family, enc.Dim)
	}
	if f, ok := h.Meta[heads.MetaFeatures]; ok && f != "" && f != enc.Features() {
		return fmt.Errorf("the head classifies %s features, the %s encoder gives %s ones: build the head with this model", f, enc.Family, enc.Features())
	}
	if len(h.Classes) != ds.NumClasses() {
		return fmt.Errorf("the head has %d classes but dataset %s has %d: build the head for this dataset", len(h.Classes), ds.Name(), ds.NumClasses())
	}
	if ignoreNames {
		return nil
	}
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), "_", " ")) }
	for i, c := range ds.Classes() {
		if norm(c) != norm(h.Classes[i]) {
			return fmt.Errorf("class %d is %q in the head but %q in dataset %s: the head was built for other classes, or in another order", i, h.Classes[i], c, ds.Name())
		}
	}
	return nil
}

// applyHead is h.Apply (the frozen head as graph constants) for float32
// features; for other dtypes (float64 gradient checks) it computes the
// same in the features' dtype.
func applyHead(h *heads.Head, f *graph.Node) *graph.Node {
	if f.DType() == dtypes.Float32 {
		return h.Apply(f)
	}
	g, dt, c := f.Graph(), f.DType(), len(h.Classes)
	w := graph.ConvertDType(graph.Const(g, tensors.FromFlatDataAndDimensions(h.Weight, c, h.Dim)), dt)
	if h.Normalize {
		ss := graph.ReduceAndKeep(graph.Square(f), graph.ReduceSum, -1)
		f = graph.Div(f, graph.Sqrt(graph.Max(ss, graph.Scalar(g, dt, 1e-24))))
	}
	logits := graph.MulScalar(graph.Einsum("bd,cd->bc", f, w), float64(h.Scale))
	if h.Bias != nil {
		logits = graph.Add(logits, graph.ConvertDType(graph.Const(g, tensors.FromFlatDataAndDimensions(h.Bias, 1, c)), dt))
	}
	return logits
}

// crossEntropy is the mean softmax cross-entropy of logits [batch,
// classes] against integer labels [batch] (torch.nn.CrossEntropyLoss).
func crossEntropy(logits, labels *graph.Node) *graph.Node {
	classes := logits.Shape().Dimensions[1]
	onehot := graph.OneHot(labels, classes, logits.DType())
	nll := graph.Neg(graph.ReduceSum(graph.Mul(onehot, graph.LogSoftmax(logits, -1)), -1))
	return graph.ReduceAllMean(nll)
}

// accuracy is the fraction of rows whose largest logit is the label's.
func accuracy(logits, labels *graph.Node) *graph.Node {
	pred := graph.ArgMax(logits, -1, labels.DType())
	return graph.ReduceAllMean(graph.ConvertDType(graph.Equal(pred, labels), logits.DType()))
}

// pixelsIn converts the pixel input to the training dtype.
func pixelsIn(x *graph.Node, dt dtypes.DType) *graph.Node {
	if x.DType() != dt {
		return graph.ConvertDType(x, dt)
	}
	return x
}

// Finetune trains the encoder's weights on ds through a frozen
// classification head, as the task-vectors papers fine-tune CLIP image
// encoders (task_vectors src/finetune.py: ImageClassifier with
// freeze_head(), torch.nn.CrossEntropyLoss, AdamW over every trainable
// parameter, cosine_lr, clip_grad_norm_(params, 1.0)). Every tensor of the
// encoder is trained and weight-decayed, none excluded, as the reference's
// torch.optim.AdamW(params, lr, weight_decay) does. The head is
// heads.Head.Apply: graph constants, so it stays as it is.
//
// Pass Recipe() with Epochs or Steps set for the reference's settings. The
// result's Weights are the trained encoder tensors (float32), by checkpoint
// name; WriteFinetuned writes them over a copy of the input checkpoint.
// Data augmentation is not done: images go through enc.Preprocess (the
// reference trains on open_clip's train transform, a RandomResizedCrop with
// scale (0.9, 1)).
func Finetune(enc *encoder.Encoder, head *heads.Head, ds *datasets.Dataset, o Options) (*Result, error) {
	return finetune(enc, head, ds, o, false)
}

// FinetuneIgnoringClassNames is Finetune without the check that the head's
// class names are the dataset's (only their number must match).
func FinetuneIgnoringClassNames(enc *encoder.Encoder, head *heads.Head, ds *datasets.Dataset, o Options) (*Result, error) {
	return finetune(enc, head, ds, o, true)
}

func finetune(enc *encoder.Encoder, head *heads.Head, ds *datasets.Dataset, o Options, ignoreNames bool) (*Result, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := CheckHead(enc, head, ds, ignoreNames); err != nil {
		return nil, err
	}
	params := make([]param, len(enc.Specs))
	for i, s := range enc.Specs {
		params[i] = param{TensorSpec: s, decay: true}
	}
	loss := finetuneLoss(enc, head, o)
	var frozen []checkpoint.TensorSpec
	if o.Linearized {
		frozen = enc.Specs
	}
	return run(params, enc.Weights, frozen, loss, ds, enc.Preprocess, o)
}

// finetuneLoss is the cross-entropy of the head on the encoder's features
// of in[0] against the labels in[1], or with o.Linearized of the features
// of f_lin around θ₀, which then come first in the inputs (in[:n], n the
// encoder's tensors, in the order of its specs), pixels and labels after.
func finetuneLoss(enc *encoder.Encoder, head *heads.Head, o Options) LossFunc {
	dt := o.dtype
	if !o.Linearized {
		return func(p models.Params, in []*graph.Node) (*graph.Node, *graph.Node) {
			logits := applyHead(head, enc.Forward(p, pixelsIn(in[0], dt)))
			return crossEntropy(logits, in[1]), accuracy(logits, in[1])
		}
	}
	f := func(p models.Params, in []*graph.Node) []*graph.Node {
		return []*graph.Node{enc.Forward(p, in[0])}
	}
	n := len(enc.Specs)
	return func(p models.Params, in []*graph.Node) (*graph.Node, *graph.Node) {
		base := make(models.Params, n)
		for i, s := range enc.Specs {
			base[s.Name] = in[i]
		}
		feats := linearize.Forward(f, p, base, []*graph.Node{pixelsIn(in[n], dt)})[0]
		logits := applyHead(head, feats)
		return crossEntropy(logits, in[n+1]), accuracy(logits, in[n+1])
	}
}

// run trains params on a labelled dataset: the loop Finetune and
// Supervised share. The tensors frozen names (from w) are inputs of every
// step ahead of the batch (see engine.freeze).
func run(params []param, w models.Weights, frozen []checkpoint.TensorSpec, loss LossFunc, ds *datasets.Dataset, pre datasets.Preprocess, o Options) (*Result, error) {
	if ds.Len() == 0 {
		return nil, fmt.Errorf("train: dataset %s is empty", ds.Name())
	}
	eng, err := newEngine(params, w, loss, o.adamW(), o.dtype)
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	if len(frozen) > 0 {
		if err := eng.freeze(frozen, w); err != nil {
			return nil, err
		}
	}
	total := o.totalSteps(ds.Len())
	tr := newTracker(o, total)
	ld := newLoader(ds, pre, o, total)
	return runSteps(eng, ld, o, tr, total)
}

func (o Options) adamW() adamW {
	return adamW{beta1: o.Beta1, beta2: o.Beta2, eps: o.Eps, weightDecay: o.WeightDecay, clipNorm: o.ClipNorm}
}

// Names of the linear classifier Supervised trains.
const (
	ClassifierWeight = "editkit.classifier.weight"
	ClassifierBias   = "editkit.classifier.bias"
)

// decays is the weight-decay rule of training from scratch, open_clip's
// (training/main.py): matrices and embeddings decay; tensors of rank < 2
// (biases, LayerNorm gains, class embeddings, logit_scale) do not.
func decays(s checkpoint.TensorSpec) bool {
	return len(s.Shape) >= 2 && !strings.Contains(s.Name, "logit_scale")
}

// Supervised trains an encoder (typically freshly initialised, e.g.
// vit.NewRandom) together with a linear classifier on ds with softmax
// cross-entropy: the classifier is initialised N(0, 0.02²) (seeded by
// o.Seed) with zero bias, and returned as a head (scale 1, no
// normalization) that evaluates and fine-tunes the trained encoder.
// Weight decay applies to matrices only (see decays). The result's Weights
// are the encoder's tensors; the classifier is in the head.
func Supervised(enc *encoder.Encoder, ds *datasets.Dataset, o Options) (*Result, *heads.Head, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, nil, err
	}
	if o.Linearized {
		return nil, nil, errors.New("train: linearized training is for fine-tuning (Finetune), not training from scratch")
	}
	c, d := ds.NumClasses(), enc.Dim
	if c == 0 {
		return nil, nil, fmt.Errorf("train: dataset %s has no classes", ds.Name())
	}
	w := make(models.Weights, len(enc.Weights)+2)
	for k, v := range enc.Weights {
		w[k] = v
	}
	w[ClassifierWeight] = normalTensor(c*d, 0.02, o.Seed, ClassifierWeight, c, d)
	w[ClassifierBias] = tensors.FromShape(shapes.Make(dtypes.Float32, c))
	var params []param
	for _, s := range enc.Specs {
		params = append(params, param{TensorSpec: s, decay: decays(s)})
	}
	params = append(params,
		param{TensorSpec: models.Spec(ClassifierWeight, c, d), decay: true},
		param{TensorSpec: models.Spec(ClassifierBias, c)})
	dt := o.dtype
	loss := func(p models.Params, in []*graph.Node) (*graph.Node, *graph.Node) {
		logits := models.Linear(enc.Forward(p, pixelsIn(in[0], dt)), p.Linear("editkit.classifier"))
		return crossEntropy(logits, in[1]), accuracy(logits, in[1])
	}
	res, err := run(params, w, nil, loss, ds, enc.Preprocess, o)
	if err != nil {
		return nil, nil, err
	}
	h := &heads.Head{
		Classes: append([]string(nil), ds.Classes()...), Dim: d,
		Weight: tensors.MustCopyFlatData[float32](res.Weights[ClassifierWeight]),
		Bias:   tensors.MustCopyFlatData[float32](res.Weights[ClassifierBias]),
		Scale:  1,
		Meta: map[string]string{heads.MetaType: "supervised", heads.MetaDataset: ds.Name(),
			heads.MetaFeatures: enc.Features(), "head.trainer": "editkit train.Supervised"},
	}
	delete(res.Weights, ClassifierWeight)
	delete(res.Weights, ClassifierBias)
	return res, h, nil
}

// normalTensor draws n values from N(0, std²) with a generator seeded by
// seed and name.
func normalTensor(n int, std float64, seed uint64, name string, dims ...int) *tensors.Tensor {
	h := fnv.New64a()
	h.Write([]byte(name))
	rng := rand.New(rand.NewPCG(seed, h.Sum64()))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(std * rng.NormFloat64())
	}
	return tensors.FromFlatDataAndDimensions(v, dims...)
}
