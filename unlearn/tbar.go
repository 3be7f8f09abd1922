package unlearn

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"time"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/train"
	"github.com/editkit/editkit/tasks"
)

// From says which model TBAR fine-tunes into the trigger vector.
type From string

const (
	// FromBackdoored fine-tunes the backdoored model (the paper's setting).
	FromBackdoored From = "backdoored"
	// FromPretrained fine-tunes the clean pre-trained model the backdoored
	// one descends from (editkit's option).
	FromPretrained From = "pretrained"
)

// TBAR's defaults (see the package doc for their sources).
const (
	DefaultTBARFraction    = 0.02 // share of the training split in the triggered set
	DefaultTBARMinExamples = 100
	DefaultTBAREpochs      = 10
	DefaultTBARWarmup      = 0.1                  // share of the fine-tuning steps spent warming up
	DefaultFloor           = eval.ControlFraction // clean accuracy kept, relative to the backdoored model's
	DefaultAlphaStep       = 0.05
	DefaultAlphaMax        = 10.0
)

// The metrics of TBAR's α search, as eval.Search points name them.
const (
	MetricCA  = "CA"  // clean accuracy on the validation images
	MetricASR = "ASR" // attack success rate on the triggered validation images
)

// TBAROptions configure TBAR.
type TBAROptions struct {
	// Model is the backdoored checkpoint; Base, for FromPretrained, the
	// clean pre-trained checkpoint of the same architecture.
	Model, Base string
	// Head classifies the task's images (frozen; fine-tuning goes through it).
	Head *heads.Head
	// Train is the split the N triggered images are drawn from; Val the
	// held-out images the α search measures (clean accuracy on all of
	// them, attack success rate on those not of the target class).
	Train, Val *datasets.Dataset
	Trigger    Trigger
	Target     int
	// Examples is N (0: DefaultTBARFraction of Train, at least
	// DefaultTBARMinExamples, at most all of it).
	Examples int
	From     From // "" is FromBackdoored
	// Linearized fine-tunes in the tangent space of the start model
	// (train.Options.Linearized, package linearize): τ is then the
	// trained θ of f_lin(x; θ) = f(x; θ_start) + J(θ − θ_start), less
	// θ_start. The cleaned model θ_bd − α·τ is the ordinary network,
	// measured and written as such.
	Linearized bool
	// Finetune is the fine-tuning recipe. Zero LearningRate: train.Recipe()
	// for DefaultTBAREpochs epochs with DefaultTBARWarmup of the steps as
	// warm-up; otherwise it is used as given.
	Finetune train.Options
	// Floor is the share of the backdoored model's validation clean
	// accuracy a chosen α must keep (0: DefaultFloor).
	Floor float64
	// Alphas are the first coefficients tried; after them the grid
	// extends by AlphaStep (0: not at all) while the clean accuracy stays
	// above the floor, up to AlphaMax. Nil Alphas is the default: 0, 0.05,
	// …, 1, then steps of DefaultAlphaStep up to DefaultAlphaMax.
	Alphas              []float64
	AlphaStep, AlphaMax float64
	// Seed draws the triggered set (the fine-tuning's order is
	// Finetune.Seed).
	Seed uint64
	// ScratchDir holds the temporary fine-tuned checkpoint ("": the
	// system's temporary folder).
	ScratchDir string
	// KeepFinetuned, when set, is where the fine-tuned checkpoint θ_ft is
	// written and kept (float32; θ_ft − θ_start is the trigger vector, for
	// 'editkit taskvector' or 'editkit disentangle'); an existing one is
	// replaced.
	KeepFinetuned string
	// Eval configures the evaluations (batch size, progress).
	Eval eval.Options
	// OnPoint, when set, is called with the metrics of each model
	// measured (the backdoored one, then each α of the search).
	OnPoint func(p eval.Point)
}

// TBARResult is what TBAR did and found.
type TBARResult struct {
	Model    string `json:"model"`
	From     From   `json:"from"`
	Base     string `json:"base,omitempty"`
	Trigger  string `json:"trigger"`
	Target   int    `json:"target"`
	Examples int    `json:"examples"`
	// Linearized says the trigger vector came from linearized fine-tuning.
	Linearized bool `json:"linearized,omitempty"`
	// The fine-tuning run that made the trigger vector.
	FinetuneSteps   int     `json:"finetune_steps"`
	FinetuneEpochs  int     `json:"finetune_epochs"`
	FinetuneLoss    float64 `json:"finetune_loss"` // mean of the last (up to) 50 steps
	FinetuneSeconds float64 `json:"finetune_seconds"`
	FinetuneRecipe  string  `json:"finetune_recipe"`
	// TriggerVectorNorm is ‖τ‖₂ over the encoder's tensors, RelativeNorm
	// ‖τ‖₂/‖θ_start‖₂.
	TriggerVectorNorm float64 `json:"trigger_vector_norm"`
	RelativeNorm      float64 `json:"relative_norm"`
	// Floor is DefaultFloor or the option; MinCA = Floor × the backdoored
	// model's validation clean accuracy.
	Floor float64 `json:"floor"`
	MinCA float64 `json:"min_ca"`
	// Alpha is the chosen coefficient; Search every point measured.
	Alpha  float64      `json:"alpha"`
	Search *eval.Search `json:"search"`
	// Backdoored and Cleaned are the validation metrics at α = 0 and at
	// the chosen α.
	Backdoored Metrics `json:"backdoored_val"`
	Cleaned    Metrics `json:"cleaned_val"`
	Seconds    float64 `json:"seconds"`

	// Weights are the cleaned encoder's tensors, θ_bd − α·τ, and
	// TriggerVector τ = θ_ft − θ_start (float32, by checkpoint name).
	Weights       models.Weights `json:"-"`
	TriggerVector models.Weights `json:"-"`
}

// TBARExamples is N for a training split of n examples: DefaultTBARFraction
// of it, at least DefaultTBARMinExamples, at most n.
func TBARExamples(n int) int {
	return min(n, max(DefaultTBARMinExamples, int(math.Round(DefaultTBARFraction*float64(n)))))
}

// TBARRecipe is the default fine-tuning of TBAR for a triggered set of n
// examples (see TBAROptions.Finetune).
func TBARRecipe(n int) train.Options {
	o := train.Recipe()
	o.Epochs = DefaultTBAREpochs
	steps := DefaultTBAREpochs * ((n + o.BatchSize - 1) / o.BatchSize)
	o.Warmup = int(math.Round(DefaultTBARWarmup * float64(steps)))
	return o
}

// TBAR removes a backdoor by trigger-vector negation (see the package
// doc): it draws the triggered set, fine-tunes the backdoored (or
// pre-trained) image encoder on it through the frozen head, takes the
// trigger vector τ = θ_ft − θ_start, and chooses α on the validation split
// so that θ_bd − α·τ has the lowest attack success rate among the α that
// keep the clean accuracy at Floor × the backdoored model's, ties to the
// higher clean accuracy. Only the image encoder's tensors change; write the
// result with train.WriteFinetuned(o.Model, out, r.Weights, ...).
func TBAR(o TBAROptions) (*TBARResult, error) {
	start := time.Now()
	if o.From == "" {
		o.From = FromBackdoored
	}
	switch {
	case o.Trigger == nil:
		return nil, errors.New("tbar: no trigger given")
	case o.Head == nil || o.Train == nil || o.Val == nil:
		return nil, errors.New("tbar: a head, a training split and a validation split are needed")
	case o.From != FromBackdoored && o.From != FromPretrained:
		return nil, fmt.Errorf("tbar: fine-tune from %q: use %s or %s", o.From, FromBackdoored, FromPretrained)
	case o.From == FromPretrained && o.Base == "":
		return nil, errors.New("tbar: fine-tuning from the pre-trained model needs its checkpoint (Base)")
	case o.From == FromBackdoored && o.Base != "":
		return nil, errors.New("tbar: a pre-trained Base is used only when fine-tuning from it (From pretrained)")
	case o.Floor < 0 || o.Floor > 1 || math.IsNaN(o.Floor):
		return nil, fmt.Errorf("tbar: floor %v is outside [0, 1]", o.Floor)
	case o.Examples < 0:
		return nil, fmt.Errorf("tbar: %d examples", o.Examples)
	}
	if o.Floor == 0 {
		o.Floor = DefaultFloor
	}
	if o.Target < 0 || o.Target >= len(o.Head.Classes) {
		return nil, fmt.Errorf("tbar: target class %d is outside the head's %d classes (0 to %d)", o.Target, len(o.Head.Classes), len(o.Head.Classes)-1)
	}
	if err := checkFits(o.Train, o.Trigger); err != nil {
		return nil, err
	}
	bd, err := encoder.Load(o.Model)
	if err != nil {
		return nil, err
	}
	defer bd.Close()
	if err := train.CheckHead(bd, o.Head, o.Val, true); err != nil {
		return nil, fmt.Errorf("tbar: %s: %w", o.Model, err)
	}
	n := o.Examples
	if n == 0 {
		n = TBARExamples(o.Train.Len())
	}
	set, err := TriggeredSample(o.Train, o.Trigger, o.Target, n, o.Seed)
	if err != nil {
		return nil, err
	}
	trig, err := Triggered(o.Val, o.Trigger, o.Target)
	if err != nil {
		return nil, err
	}
	r := &TBARResult{Model: o.Model, From: o.From, Base: o.Base, Trigger: o.Trigger.String(), Target: o.Target, Examples: n, Floor: o.Floor}

	// 1. The trigger vector τ = θ_ft − θ_start.
	startPath, startEnc := o.Model, bd
	if o.From == FromPretrained {
		startPath = o.Base
		if startEnc, err = encoder.Load(o.Base); err != nil {
			return nil, err
		}
		defer startEnc.Close()
		if err := sameSpecs(bd, startEnc); err != nil {
			return nil, fmt.Errorf("tbar: %s and %s: %w", o.Model, o.Base, err)
		}
	}
	ft := o.Finetune
	if ft.LearningRate == 0 {
		ft = TBARRecipe(n)
		ft.Seed, ft.Workers, ft.Progress = o.Finetune.Seed, o.Finetune.Workers, o.Finetune.Progress
	}
	ft.Linearized = ft.Linearized || o.Linearized
	r.Linearized = ft.Linearized
	r.FinetuneRecipe = fmt.Sprintf("adamw lr=%g wd=%g batch=%d warmup=%d clip=%g epochs=%d steps=%d seed=%d linearized=%v",
		ft.LearningRate, ft.WeightDecay, ft.BatchSize, ft.Warmup, ft.ClipNorm, ft.Epochs, ft.Steps, ft.Seed, ft.Linearized)
	res, err := train.FinetuneIgnoringClassNames(startEnc, o.Head, set, ft)
	if err != nil {
		return nil, fmt.Errorf("tbar: fine-tuning on the triggered set: %w", err)
	}
	r.FinetuneSteps, r.FinetuneEpochs, r.FinetuneLoss, r.FinetuneSeconds = res.Steps, res.Epochs, res.MeanLoss, res.Seconds
	r.TriggerVector = TriggerVector(res.Weights, startEnc.Weights)
	r.TriggerVectorNorm = norm(r.TriggerVector)
	if s := norm(startEnc.Weights); s > 0 {
		r.RelativeNorm = r.TriggerVectorNorm / s
	}
	// The direction θ(α) = θ_bd − α·τ of the shared coefficient search: τ
	// is the unit merge of the fine-tuned checkpoint over its start.
	scratch, remove, err := checkpoint.TempDir(o.ScratchDir, ".editkit-tbar-") // also removed on a signal
	if err != nil {
		return nil, fmt.Errorf("tbar: scratch folder: %w", err)
	}
	defer remove()
	ftPath := filepath.Join(scratch, "finetuned")
	if o.KeepFinetuned != "" {
		ftPath = o.KeepFinetuned
	}
	err = train.WriteFinetuned(startPath, ftPath, res.Weights, train.WriteOptions{DType: "float32", Force: true})
	res.Weights.Finalize()
	if err != nil {
		return nil, err
	}
	dir, err := triggerDirection(startPath, ftPath, bd, scratch)
	if err != nil {
		return nil, err
	}

	// 2. α on validation.
	evaluate := func(w models.Weights) (map[string][]bool, error) {
		clf, err := bd.Classifier(w, o.Head)
		if err != nil {
			return nil, err
		}
		clean, err := eval.Accuracy(clf, o.Val, bd.Preprocess, o.Eval)
		if err != nil {
			return nil, err
		}
		att, err := eval.Accuracy(clf, trig, bd.Preprocess, o.Eval)
		if err != nil {
			return nil, err
		}
		return map[string][]bool{MetricCA: clean.Hits, MetricASR: att.Hits}, nil
	}
	steps := o.steps()
	if o.OnPoint != nil {
		// Choose measures the backdoored model (the floor's reference)
		// first, then the grid's points in order.
		inner, k := evaluate, -1
		evaluate = func(w models.Weights) (map[string][]bool, error) {
			h, err := inner(w)
			if err == nil && k >= 0 {
				o.OnPoint(eval.Point{Coef: steps.At(k), Accuracy: map[string]float64{MetricCA: eval.Share(h[MetricCA]), MetricASR: eval.Share(h[MetricASR])}})
			}
			k++
			return h, err
		}
	}
	// The shared search with TBAR's goal (AlphaObjective): the lowest ASR
	// keeping CA ≥ Floor × the backdoored model's.
	ch, err := eval.Choose(dir, bd.Weights, eval.Choice{Goal: eval.GoalLowest, Metrics: []string{MetricASR, MetricCA},
		Steps: steps, Evaluate: evaluate, Fraction: o.Floor})
	if err != nil {
		if ch != nil && ch.Search != nil {
			return nil, fmt.Errorf("tbar: choosing α: %w (%s)", err, ch.Search.Summary())
		}
		return nil, fmt.Errorf("tbar: choosing α: %w", err)
	}
	r.Backdoored = metricsOf(o.Val.Name(), ch.Reference, ch.ReferenceHits)
	r.MinCA = o.Floor * ch.Reference[MetricCA]
	r.Search = ch.Search
	r.Alpha = ch.Coef
	best := r.Search.Points[r.Search.Best]
	r.Cleaned = metricsOf(o.Val.Name(), best.Accuracy, best.Hits)
	if r.Weights, err = eval.WeightsAt(dir, bd.Weights, r.Alpha); err != nil {
		return nil, err
	}
	r.Seconds = time.Since(start).Seconds()
	return r, nil
}

// triggerDirection is the negation direction θ_bd − α·(θ_ft − θ_start)
// over the encoder's tensors.
func triggerDirection(start, ft string, enc *encoder.Encoder, scratch string) (*merge.Direction, error) {
	s, err := tasks.OpenSet(start, []string{ft})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	names := make([]string, len(enc.Specs))
	for i, spec := range enc.Specs {
		names[i] = spec.Name
	}
	return merge.NewDirection(s, merge.Config{Method: merge.TaskArithmetic}, merge.DirectionOptions{Negate: true, Tensors: names, ScratchDir: scratch})
}

// steps are the α the search tries (see TBAROptions.Alphas).
func (o TBAROptions) steps() eval.Steps {
	if o.Alphas == nil {
		return eval.Steps{Values: eval.Grid(0, 1, DefaultAlphaStep), Step: DefaultAlphaStep, Max: DefaultAlphaMax}
	}
	return eval.Steps{Values: o.Alphas, Step: o.AlphaStep, Max: o.AlphaMax}
}

// AlphaObjective is TBAR's choice of α: the lowest validation attack
// success rate among the α keeping the clean accuracy ≥ minCA, ties to the
// higher clean accuracy.
func AlphaObjective(minCA float64) eval.Objective {
	return eval.LowestSubjectTo(MetricASR, MetricCA, minCA)
}

// metricsOf turns a point's metrics into Metrics.
func metricsOf(task string, m map[string]float64, hits map[string][]bool) Metrics {
	count := func(h []bool) eval.Result {
		r := eval.Result{Task: task, Total: len(h)}
		for _, v := range h {
			if v {
				r.Correct++
			}
		}
		if r.Total > 0 {
			r.Accuracy = float64(r.Correct) / float64(r.Total)
		}
		return r
	}
	return Metrics{Task: task, CA: m[MetricCA], ASR: m[MetricASR], Clean: count(hits[MetricCA]), Attack: count(hits[MetricASR])}
}

// sameSpecs checks that two encoders have the same tensors.
func sameSpecs(a, b *encoder.Encoder) error {
	if len(a.Specs) != len(b.Specs) || a.Family != b.Family {
		return fmt.Errorf("different encoders (%s with %d tensors, %s with %d)", a.Family, len(a.Specs), b.Family, len(b.Specs))
	}
	for i, s := range a.Specs {
		t := b.Specs[i]
		if s.Name != t.Name || fmt.Sprint(s.Shape) != fmt.Sprint(t.Shape) {
			return fmt.Errorf("tensor %d is %s %v in one and %s %v in the other", i, s.Name, s.Shape, t.Name, t.Shape)
		}
	}
	return nil
}

// TriggerVector is τ = ft − start for every tensor of ft (float32).
func TriggerVector(ft, start models.Weights) models.Weights {
	out := make(models.Weights, len(ft))
	for name, t := range ft {
		d := tensors.MustCopyFlatData[float32](t)
		tensors.MustConstFlatData(start[name], func(s []float32) {
			for i := range d {
				d[i] -= s[i]
			}
		})
		out[name] = tensors.FromFlatDataAndDimensions(d, t.Shape().Dimensions...)
	}
	return out
}

// norm is the L2 norm over all tensors of w, summed in name order so the
// record is the same bytes on every run.
func norm(w models.Weights) float64 {
	s := 0.0
	for _, name := range slices.Sorted(maps.Keys(w)) {
		tensors.MustConstFlatData(w[name], func(v []float32) {
			for _, x := range v {
				s += float64(x) * float64(x)
			}
		})
	}
	return math.Sqrt(s)
}
