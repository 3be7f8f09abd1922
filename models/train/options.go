package train

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/editkit/editkit/models"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// Options configure a training run. Recipe gives the fine-tuning recipe of
// task_vectors; zero values are taken literally (a zero WeightDecay means no
// decay), except Beta1, Beta2 and Eps, where 0 means PyTorch's defaults.
type Options struct {
	// LearningRate is the peak (base) learning rate.
	LearningRate float64
	// WeightDecay is AdamW's decoupled weight decay: each step multiplies a
	// decayed weight by 1 − lr·WeightDecay.
	WeightDecay float64
	// Beta1, Beta2 and Eps are Adam's (0: PyTorch's 0.9, 0.999 and 1e-8).
	Beta1, Beta2, Eps float64
	// Warmup is the number of linear warm-up steps.
	Warmup int
	// Schedule after the warm-up ("" is Cosine).
	Schedule Schedule
	// ClipNorm clips the global L2 norm of the gradient (over all trained
	// tensors) to this value, as torch.nn.utils.clip_grad_norm_; ≤ 0: no
	// clipping.
	ClipNorm float64
	// BatchSize is the number of examples a step. The last batch of an epoch
	// may be smaller (PyTorch's DataLoader default, drop_last=False).
	BatchSize int
	// Epochs or Steps (exactly one > 0) say how long to train. With Steps the
	// data is visited epoch after epoch, each in its own order, until Steps
	// steps are done; the schedule spans the total either way.
	Epochs, Steps int
	// Seed fixes the data order (datasets.BatchOptions{Shuffle: true, Seed,
	// Epoch}), the choice of caption templates and any random
	// initialisation the trainer does.
	Seed uint64
	// PerTaskBatches (Contrastive only) makes every batch hold examples of
	// a single task: each epoch shuffles each task's examples on its own,
	// cuts them into batches and shuffles the order of the batches (seeded
	// by Seed and the epoch), so tasks come in proportion to their sizes.
	// Captions of different tasks use different templates, so in a mixed
	// batch the task alone nearly identifies an image's caption; within one
	// task the loss can fall only by telling the task's classes apart.
	// Default (false): the examples of all tasks are shuffled together.
	PerTaskBatches bool
	// Linearized (Finetune only) trains θ of the encoder's linearization
	// around its own weights θ₀ (package linearize): the features are
	// f(x; θ₀) + J_θ f(x; θ₀)(θ − θ₀), θ starts at θ₀, and everything else
	// is as in non-linear fine-tuning, weight decay included, which pulls
	// θ toward 0 as the reference's AdamW over the linearized model's
	// trainable parameters does (gortizji/tangent_task_arithmetic
	// src/finetune.py), not toward θ₀.
	Linearized bool
	// Workers preprocess images in parallel (0: GOMAXPROCS).
	Workers int
	// Progress, when set, is called after every step.
	Progress func(Progress)

	// dtype is the dtype weights are trained in (float32 unless a test
	// asks for float64).
	dtype dtypes.DType
}

// Recipe returns the fine-tuning recipe of the task-vectors papers
// (mlfoundations/task_vectors src/finetune.py and src/args.py; see
// shared/notes/methods.md): AdamW with learning rate 1e-5, weight decay
// 0.1, batch 128, cosine schedule with 500 warm-up steps, gradient clipping
// at norm 1.0. Epochs and Steps are left for the caller (the reference
// trains MNIST 5 epochs, EuroSAT 12, GTSRB 11, SVHN 4, ...).
func Recipe() Options {
	return Options{
		LearningRate: 1e-5,
		WeightDecay:  0.1,
		Warmup:       500,
		Schedule:     Cosine,
		ClipNorm:     1.0,
		BatchSize:    128,
	}
}

func (o Options) withDefaults() Options {
	if o.Beta1 == 0 {
		o.Beta1 = 0.9
	}
	if o.Beta2 == 0 {
		o.Beta2 = 0.999
	}
	if o.Eps == 0 {
		o.Eps = 1e-8
	}
	if o.Schedule == "" {
		o.Schedule = Cosine
	}
	if o.dtype == dtypes.InvalidDType {
		o.dtype = dtypes.Float32
	}
	return o
}

func (o Options) validate() error {
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }
	switch {
	case !(o.LearningRate > 0) || bad(o.LearningRate):
		return fmt.Errorf("train: learning rate %g, want > 0", o.LearningRate)
	case o.WeightDecay < 0 || bad(o.WeightDecay):
		return fmt.Errorf("train: weight decay %g, want ≥ 0", o.WeightDecay)
	case o.Beta1 < 0 || o.Beta1 >= 1 || o.Beta2 < 0 || o.Beta2 >= 1:
		return fmt.Errorf("train: Adam betas (%g, %g) must lie in [0, 1)", o.Beta1, o.Beta2)
	case !(o.Eps > 0):
		return fmt.Errorf("train: Adam epsilon %g, want > 0", o.Eps)
	case o.Warmup < 0:
		return fmt.Errorf("train: %d warm-up steps, want ≥ 0", o.Warmup)
	case bad(o.ClipNorm):
		return fmt.Errorf("train: gradient clipping norm %g is not a number", o.ClipNorm)
	case o.BatchSize <= 0:
		return fmt.Errorf("train: batch size %d, want > 0", o.BatchSize)
	case o.Epochs < 0 || o.Steps < 0:
		return fmt.Errorf("train: negative epochs (%d) or steps (%d)", o.Epochs, o.Steps)
	case o.Epochs > 0 && o.Steps > 0:
		return errors.New("train: give epochs or steps, not both")
	case o.Epochs == 0 && o.Steps == 0:
		return errors.New("train: give the number of epochs or of steps to train")
	case o.dtype != dtypes.Float32 && o.dtype != dtypes.Float64:
		return fmt.Errorf("train: training dtype %s, want float32 or float64", o.dtype)
	}
	return o.Schedule.validate()
}

// totalSteps is the length of the run over n examples.
func (o Options) totalSteps(n int) int {
	if o.Steps > 0 {
		return o.Steps
	}
	return o.Epochs * ((n + o.BatchSize - 1) / o.BatchSize)
}

// Progress reports a training run after a step.
type Progress struct {
	Step, Steps int // steps done, of Steps
	Epoch       int // 0-based epoch of the step
	// Loss is the step's mean loss over its batch; AvgLoss the mean over
	// the last (up to) 50 steps.
	Loss, AvgLoss float64
	// Accuracy is the step's top-1 training accuracy over its batch
	// (image-to-text accuracy within the batch for contrastive training).
	Accuracy float64
	LR       float64 // learning rate used by the step
	GradNorm float64 // global gradient norm before clipping
	// StepsPerSec is measured over the run so far, excluding the first
	// step (which includes compiling the graph).
	StepsPerSec float64
	Elapsed     time.Duration
	ETA         time.Duration
}

// Result is what a training run returns.
type Result struct {
	// Weights are the trained tensors (float32, or the training dtype), by
	// checkpoint name.
	Weights models.Weights
	Steps   int
	Epochs  int // epochs begun
	// FinalLoss is the last step's loss, MeanLoss the mean over the last
	// (up to) 50 steps; Losses the loss of every step.
	FinalLoss, MeanLoss float64
	Losses              []float64
	Seconds             float64
	StepsPerSec         float64
}

// lossWindow is the number of recent steps AvgLoss and MeanLoss average.
const lossWindow = 50

// tracker accumulates a run's progress.
type tracker struct {
	o          Options
	total      int
	start      time.Time
	afterFirst time.Time
	losses     []float64
}

func newTracker(o Options, total int) *tracker {
	return &tracker{o: o, total: total, start: time.Now()}
}

func (t *tracker) recent() float64 {
	w := t.losses[max(0, len(t.losses)-lossWindow):]
	s := 0.0
	for _, v := range w {
		s += v
	}
	return s / float64(len(w))
}

func (t *tracker) rate() float64 {
	n := len(t.losses)
	if n <= 1 {
		if el := time.Since(t.start).Seconds(); el > 0 && n == 1 {
			return 1 / el
		}
		return 0
	}
	el := time.Since(t.afterFirst).Seconds()
	if el <= 0 {
		return 0
	}
	return float64(n-1) / el
}

func (t *tracker) step(epoch int, out stepOut, lr float64) {
	t.losses = append(t.losses, out.loss)
	if len(t.losses) == 1 {
		t.afterFirst = time.Now()
	}
	if t.o.Progress == nil {
		return
	}
	p := Progress{
		Step: len(t.losses), Steps: t.total, Epoch: epoch,
		Loss: out.loss, AvgLoss: t.recent(), Accuracy: out.accuracy, LR: lr, GradNorm: out.gradNorm,
		StepsPerSec: t.rate(), Elapsed: time.Since(t.start),
	}
	if p.StepsPerSec > 0 {
		p.ETA = time.Duration(float64(t.total-p.Step) / p.StepsPerSec * float64(time.Second))
	}
	t.o.Progress(p)
}

func (t *tracker) result(w models.Weights, epochs int) *Result {
	r := &Result{Weights: w, Steps: len(t.losses), Epochs: epochs, Losses: t.losses,
		Seconds: time.Since(t.start).Seconds(), StepsPerSec: t.rate()}
	if len(t.losses) > 0 {
		r.FinalLoss = t.losses[len(t.losses)-1]
		r.MeanLoss = t.recent()
	}
	return r
}
