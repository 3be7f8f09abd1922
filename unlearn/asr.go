package unlearn

import (
	"fmt"

	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
)

// AttackSuccess is the attack success rate of clf on ds: of the examples
// whose class is not target, the share classified as target once the
// trigger is applied (the examples of the target class are left out). The
// Result counts them: Correct is the number sent to the target, Total the
// number of non-target examples.
func AttackSuccess(clf eval.Classifier, ds *datasets.Dataset, pre datasets.Preprocess, t Trigger, target int, o eval.Options) (eval.Result, error) {
	trig, err := Triggered(ds, t, target)
	if err != nil {
		return eval.Result{}, err
	}
	r, err := eval.Accuracy(clf, trig, pre, o)
	if err != nil {
		return r, fmt.Errorf("attack success rate: %w", err)
	}
	r.Task = ds.Name()
	return r, nil
}

// Metrics are a model's clean accuracy and attack success rate on one
// dataset.
type Metrics struct {
	Task string `json:"task"`
	// CA is the top-1 accuracy on the clean images, ASR the attack success
	// rate (see AttackSuccess).
	CA  float64 `json:"ca"`
	ASR float64 `json:"asr"`
	// Clean and Attack hold the counts behind them.
	Clean  eval.Result `json:"clean"`
	Attack eval.Result `json:"attack"`
}

// Measure evaluates clf's clean accuracy on ds and its attack success rate
// under the trigger with the given target.
func Measure(clf eval.Classifier, ds *datasets.Dataset, pre datasets.Preprocess, t Trigger, target int, o eval.Options) (Metrics, error) {
	clean, err := eval.Accuracy(clf, ds, pre, o)
	if err != nil {
		return Metrics{}, err
	}
	att, err := AttackSuccess(clf, ds, pre, t, target, o)
	if err != nil {
		return Metrics{}, err
	}
	return Metrics{Task: ds.Name(), CA: clean.Accuracy, ASR: att.Accuracy, Clean: clean, Attack: att}, nil
}
