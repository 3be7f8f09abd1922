package main

import (
	"errors"
	"fmt"
	"slices"

	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/examples/internal/pretraining"
	"github.com/editkit/editkit/linearize"
	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/tasks"
)

// task is one dataset of the experiment. Its classes are split in two
// halves: the pre-training classes, the only ones pre-training sees (images
// and captions), and the task classes, new to the pre-trained model, on
// which it is fine-tuned, merged and measured. The "known" splits hold the
// pre-training classes, to measure what pre-training taught and what an
// edit takes away from it.
type task struct {
	name string
	// classes and preClasses index the dataset's classes.
	classes, preClasses []int
	pre, ft             *datasets.Dataset // pre-training share (pre-training classes); fine-tuning share (task classes)
	knownFt             *datasets.Dataset // a fine-tuning share of the pre-training classes (negation's target)
	val, test           *datasets.Dataset // task classes
	knownVal, knownTest *datasets.Dataset // pre-training classes
	head, knownHead     *heads.Head       // zero-shot heads over the task's and the pre-training classes' names
	batches             map[split][]*datasets.Batch
}

// split names an evaluation split of a task.
type split int

const (
	valSplit       split = iota // validation, task classes
	testSplit                   // test, task classes
	knownValSplit               // validation, pre-training classes
	knownTestSplit              // test, pre-training classes
)

func (s split) known() bool { return s == knownValSplit || s == knownTestSplit }

// probe is a task measured on one of its halves: the task classes, or the
// pre-training classes ("known", metric name <task>-pre).
type probe struct {
	t     *task
	known bool
}

func (p probe) name() string {
	if p.known {
		return p.t.name + "-pre"
	}
	return p.t.name
}

func probeNames(ps []probe) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.name()
	}
	return out
}

func taskProbes(ts []*task) []probe {
	out := make([]probe, len(ts))
	for i, t := range ts {
		out[i] = probe{t: t}
	}
	return out
}

// loadTask opens a dataset and cuts its shares. Validation comes from the
// datasets package's Validation split (whole GTSRB tracks), pre-training and
// fine-tuning shares from the rest of the training set (datasets.Shares,
// by track too).
func loadTask(name string, st settings, dopt datasets.Options) (*task, error) {
	h, err := pretraining.OpenHalves(name, dopt)
	if err != nil {
		return nil, err
	}
	t := &task{name: name, batches: map[split][]*datasets.Batch{}, preClasses: h.PreClasses, classes: h.TaskClasses}
	preTr, taskTr := h.Train[0], h.Train[1]
	taskVal, knownVal := h.Val[1], h.Val[0]
	taskTe, knownTe := h.Test[1], h.Test[0]
	pre := datasets.Shares(preTr, []int{st.PreN, st.FtN}, 1)
	t.pre, t.knownFt = pre[0], pre[1]
	t.ft = datasets.Shares(taskTr, []int{st.FtN}, 2)[0]
	t.val = datasets.Shares(taskVal, []int{st.ValLimit}, 3)[0]
	t.knownVal = datasets.Shares(knownVal, []int{st.ValLimit}, 3)[0]
	t.test = datasets.Shares(taskTe, []int{st.TestLimit}, 4)[0]
	t.knownTest = datasets.Shares(knownTe, []int{st.TestLimit}, 4)[0]
	for _, d := range []*datasets.Dataset{t.pre, t.ft, t.val, t.test, t.knownVal, t.knownTest} {
		if d.Len() == 0 {
			return nil, fmt.Errorf("%s: a share of the data is empty (%s): the dataset is too small for these settings", name, d.Name())
		}
	}
	return t, nil
}

// cache preprocesses the evaluation splits once.
func (t *task) cache(pre datasets.Preprocess) error {
	for s, d := range map[split]*datasets.Dataset{valSplit: t.val, testSplit: t.test, knownValSplit: t.knownVal, knownTestSplit: t.knownTest} {
		it, err := d.Batches(pre, datasets.BatchOptions{BatchSize: 128})
		if err != nil {
			return err
		}
		var out []*datasets.Batch
		for it.Next() {
			b := *it.Batch()
			b.Images = slices.Clone(b.Images)
			b.Labels = slices.Clone(b.Labels)
			b.Indices = slices.Clone(b.Indices)
			out = append(out, &b)
		}
		if err := it.Err(); err != nil {
			return err
		}
		t.batches[s] = out
	}
	return nil
}

// evaluator evaluates encoder weights through the tasks' heads on their
// cached batches: plainly, or, when lin is set, through the encoder's
// linearization around its weights θ₀, f(x; θ₀) + J·(θ − θ₀)
// (tangent-space task arithmetic).
type evaluator struct {
	enc *encoder.Encoder
	lin *linearize.Encoder
}

// linearized returns the evaluator through f_lin around e's weights; close
// it when done.
func (e *evaluator) linearized() (*evaluator, error) {
	lin, err := linearize.NewEncoder(e.enc)
	if err != nil {
		return nil, err
	}
	return &evaluator{enc: e.enc, lin: lin}, nil
}

func (e *evaluator) close() {
	if e.lin != nil {
		e.lin.Close()
	}
}

// classifier classifies with weights w through the head.
func (e *evaluator) classifier(w models.Weights, head *heads.Head) (eval.Classifier, error) {
	if e.lin != nil {
		return e.lin.Classifier(w, head)
	}
	return e.enc.Classifier(w, head)
}

// hits is the per-image outcome (right or wrong) of weights w (the
// pre-trained ones when nil) on a probe's split.
func (e *evaluator) hits(w models.Weights, p probe, test bool) ([]bool, error) {
	head, s := p.t.head, valSplit
	if p.known {
		head, s = p.t.knownHead, knownValSplit
	}
	if test {
		s++
	}
	clf, err := e.classifier(w, head)
	if err != nil {
		return nil, err
	}
	var out []bool
	k := len(head.Classes)
	for _, b := range p.t.batches[s] {
		logits, err := clf(b)
		if err != nil {
			return nil, err
		}
		for i := 0; i < b.Size; i++ {
			out = append(out, eval.Argmax(logits[i*k:(i+1)*k]) == int(b.Labels[i]))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no examples")
	}
	return out, nil
}

// on is the evaluator of weights on the probes' validation (or test)
// splits, each metric named after its probe.
func (e *evaluator) on(ps []probe, test bool) eval.ModelEval {
	return func(w models.Weights) (map[string][]bool, error) {
		out := map[string][]bool{}
		for _, p := range ps {
			h, err := e.hits(w, p, test)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name(), err)
			}
			out[p.name()] = h
		}
		return out, nil
	}
}

// measure returns the accuracies and outcomes of weights w on the probes.
func (e *evaluator) measure(w models.Weights, ps []probe, test bool) (map[string]float64, map[string][]bool, error) {
	return eval.Measure(e.on(ps, test), w)
}

// choice is eval's coefficient search over the probes' validation splits
// with goal g, the probes' names as metrics in order.
func (e *evaluator) choice(g eval.Goal, ps []probe, grid []float64) eval.Choice {
	names := probeNames(ps)
	return eval.Choice{Goal: g, Metrics: names, Steps: eval.Steps{Values: grid}, Evaluate: e.on(ps, false),
		EvaluateOne: func(m string) eval.ModelEval { return e.on([]probe{ps[slices.Index(names, m)]}, false) }}
}

// direction merges the members once at the unit coefficient and keeps Δ
// for the encoder's tensors (merge.NewDirection).
func (e *evaluator) direction(preDir string, members []string, cfg merge.Config, coef merge.Coefficient, negate bool) (*merge.Direction, error) {
	s, err := tasks.OpenSet(preDir, members)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return merge.NewDirection(s, cfg, merge.DirectionOptions{Coefficient: coef, Negate: negate, Tensors: e.tensors()})
}

func (e *evaluator) tensors() []string {
	var names []string
	for _, spec := range e.enc.Specs {
		names = append(names, spec.Name)
	}
	return names
}

// at measures θ(c) of d on the probes.
func (e *evaluator) at(d *merge.Direction, c float64, ps []probe, test bool) (map[string]float64, map[string][]bool, error) {
	w, err := eval.WeightsAt(d, e.enc.Weights, c)
	if err != nil {
		return nil, nil, err
	}
	defer w.Finalize()
	return e.measure(w, ps, test)
}

// checkpointAt measures the encoder weights of a checkpoint on the probes.
func (e *evaluator) checkpointAt(path string, ps []probe, test bool) (map[string]float64, map[string][]bool, error) {
	w, err := e.enc.ReadWeights(path)
	if err != nil {
		return nil, nil, err
	}
	defer w.Finalize()
	return e.measure(w, ps, test)
}
