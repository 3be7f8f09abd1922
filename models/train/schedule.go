package train

import (
	"fmt"
	"math"
)

// CosineLR is the learning rate at step (0-based) of a run of total steps:
// linear warm-up over the first warmup steps, then a cosine decay to 0 at
// step total. It is task_vectors' cosine_lr (src/utils.py), which the
// fine-tuning recipe uses:
//
//	step < warmup:  base·(step+1)/warmup
//	otherwise:      0.5·(1 + cos(π·(step−warmup)/(total−warmup)))·base
//
// The first step thus already has base/warmup, and the warm-up's last step
// the full base rate. When warmup ≥ total the run never leaves the warm-up
// (as in the reference); warmup ≤ 0 means no warm-up.
func CosineLR(base float64, warmup, total, step int) float64 {
	if step < warmup {
		return base * float64(step+1) / float64(warmup)
	}
	e := float64(step - max(warmup, 0))
	es := float64(total - max(warmup, 0))
	if es <= 0 {
		return base
	}
	return 0.5 * (1 + math.Cos(math.Pi*e/es)) * base
}

// Schedule says how the learning rate evolves.
type Schedule string

const (
	// Cosine is CosineLR: linear warm-up, then cosine decay to 0.
	Cosine Schedule = "cosine"
	// Constant keeps the base rate after the same linear warm-up.
	Constant Schedule = "constant"
)

// LR is the learning rate of step (0-based) of a run of total steps under
// the options' schedule.
func (o Options) LR(step, total int) float64 {
	switch o.Schedule {
	case Constant:
		if step < o.Warmup {
			return o.LearningRate * float64(step+1) / float64(o.Warmup)
		}
		return o.LearningRate
	}
	return CosineLR(o.LearningRate, o.Warmup, total, step)
}

func (s Schedule) validate() error {
	switch s {
	case "", Cosine, Constant:
		return nil
	}
	return fmt.Errorf("train: unknown learning-rate schedule %q (use cosine or constant)", s)
}
