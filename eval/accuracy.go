package eval

import (
	"errors"
	"fmt"

	"github.com/editkit/editkit/datasets"
)

// Classifier maps a batch of preprocessed images to class scores, row-major
// [b.Size × classes].
type Classifier func(b *datasets.Batch) ([]float32, error)

// Options configure an evaluation.
type Options struct {
	// BatchSize is the number of images per call of the classifier (default 128).
	BatchSize int
	// Progress, when set, is called after each batch with the number of
	// examples done and the total.
	Progress func(done, total int)
}

// Result is a classifier's accuracy on one dataset split.
type Result struct {
	Task     string  `json:"task"`
	Correct  int     `json:"correct"`
	Total    int     `json:"total"`
	Accuracy float64 `json:"accuracy"`
	// Hits holds each example's outcome in dataset order, true where the
	// prediction is right: what paired intervals resample.
	Hits []bool `json:"-"`
}

// Accuracy evaluates top-1 accuracy of clf on ds, preprocessed by pre, in
// dataset order. Ties between class scores go to the lowest class index, as
// torch.argmax does.
func Accuracy(clf Classifier, ds *datasets.Dataset, pre datasets.Preprocess, o Options) (Result, error) {
	res := Result{Task: ds.Name()}
	if ds.Len() == 0 {
		return res, fmt.Errorf("eval: dataset %s is empty", ds.Name())
	}
	bs := o.BatchSize
	if bs <= 0 {
		bs = 128
	}
	it, err := ds.Batches(pre, datasets.BatchOptions{BatchSize: bs})
	if err != nil {
		return res, err
	}
	classes := ds.NumClasses()
	for it.Next() {
		b := it.Batch()
		scores, err := clf(b)
		if err != nil {
			return res, fmt.Errorf("eval %s: %w", ds.Name(), err)
		}
		if len(scores) != b.Size*classes {
			return res, fmt.Errorf("eval %s: the classifier returned %d scores for %d images of %d classes: does its head match the dataset?", ds.Name(), len(scores), b.Size, classes)
		}
		for i, label := range b.Labels {
			hit := Argmax(scores[i*classes:(i+1)*classes]) == int(label)
			if hit {
				res.Correct++
			}
			res.Hits = append(res.Hits, hit)
		}
		res.Total += b.Size
		if o.Progress != nil {
			o.Progress(res.Total, ds.Len())
		}
	}
	if err := it.Err(); err != nil {
		return res, err
	}
	res.Accuracy = float64(res.Correct) / float64(res.Total)
	return res, nil
}

// Argmax returns the index of the largest score (the first on ties); NaN
// scores never win.
func Argmax(scores []float32) int {
	best := -1
	for i, s := range scores {
		if s == s && (best < 0 || s > scores[best]) {
			best = i
		}
	}
	return max(best, 0)
}

// Normalized is accuracy divided by the fine-tuned model's accuracy on the
// same task, as the task-arithmetic papers report it.
func Normalized(acc, finetuned float64) (float64, error) {
	if finetuned <= 0 {
		return 0, errors.New("eval: normalized accuracy needs the fine-tuned model's accuracy, which is 0")
	}
	return acc / finetuned, nil
}
