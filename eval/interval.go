package eval

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Interval is an estimate with its 95% bootstrap confidence interval.
type Interval struct {
	Value float64 `json:"value"`
	Lo    float64 `json:"lo"`
	Hi    float64 `json:"hi"`
}

// Excludes reports whether the interval lies entirely on one side of x:
// for a difference, whether it is significant at the interval's level.
func (i Interval) Excludes(x float64) bool { return i.Lo > x || i.Hi < x }

// BootstrapOptions configure the bootstrap.
type BootstrapOptions struct {
	// Replicates is the number of resamples (0: 2000).
	Replicates int
	// Seed fixes the resamples, so the same outcomes give the same
	// intervals.
	Seed uint64
}

// DefaultReplicates is the bootstrap's default number of resamples: enough
// for the 2.5% and 97.5% percentiles to move by well under a tenth of a
// point between seeds on test sets of a few thousand images.
const DefaultReplicates = 2000

// Estimate is a statistic the bootstrap resamples: the mean over tasks of
// the mean per-example score of A (a model's outcomes, 1 right and 0
// wrong, averaged over its runs: see Scores), or, with B, of A − B paired
// example by example (both scored on the same examples in the same order).
type Estimate struct {
	A, B map[string][]float64
}

// BootstrapResult is the interval of an Estimate per task and of its mean
// over tasks.
type BootstrapResult struct {
	PerTask map[string]Interval
	Mean    Interval
}

// Bootstrap computes 95% percentile-bootstrap intervals of the estimates
// over the examples of each task: each replicate resamples every task's
// examples with replacement (the same draw for every estimate, so that
// differences are paired and the intervals of a table are comparable),
// and an interval spans the 2.5% and 97.5% percentiles of the replicates.
// The per-task draws are independent, as the tasks' test sets are. Tasks
// are weighted equally in the mean, as the papers' average columns are.
func Bootstrap(tasks []string, ests []Estimate, o BootstrapOptions) ([]BootstrapResult, error) {
	reps := o.Replicates
	if reps <= 0 {
		reps = DefaultReplicates
	}
	if len(tasks) == 0 {
		return nil, errors.New("eval: bootstrap: no tasks")
	}
	// diffs[e][t] is estimate e's per-example score on task t.
	diffs := make([][][]float64, len(ests))
	sizes := make([]int, len(tasks))
	for ti, task := range tasks {
		for ei, e := range ests {
			a, ok := e.A[task]
			if !ok || len(a) == 0 {
				return nil, fmt.Errorf("eval: bootstrap: no outcomes for task %s", task)
			}
			d := slices.Clone(a)
			if e.B != nil {
				b := e.B[task]
				if len(b) != len(a) {
					return nil, fmt.Errorf("eval: bootstrap: task %s: %d outcomes against %d: a paired difference needs the same examples", task, len(a), len(b))
				}
				for i := range d {
					d[i] -= b[i]
				}
			}
			if ei == 0 {
				sizes[ti] = len(d)
			} else if len(d) != sizes[ti] {
				return nil, fmt.Errorf("eval: bootstrap: task %s has %d examples in one row and %d in another", task, sizes[ti], len(d))
			}
			if diffs[ei] == nil {
				diffs[ei] = make([][]float64, len(tasks))
			}
			diffs[ei][ti] = d
		}
	}
	// rep[e][t][r]: replicate r of estimate e's mean on task t.
	rep := make([][][]float64, len(ests))
	for e := range rep {
		rep[e] = make([][]float64, len(tasks))
		for t := range tasks {
			rep[e][t] = make([]float64, reps)
		}
	}
	sums := make([]float64, len(ests))
	for ti := range tasks {
		n := sizes[ti]
		r := rand.New(rand.NewPCG(o.Seed, uint64(ti)))
		for k := range reps {
			clear(sums)
			for range n {
				i := r.IntN(n)
				for e := range ests {
					sums[e] += diffs[e][ti][i]
				}
			}
			for e := range ests {
				rep[e][ti][k] = sums[e] / float64(n)
			}
		}
	}
	out := make([]BootstrapResult, len(ests))
	mean := make([]float64, reps)
	for e := range ests {
		res := BootstrapResult{PerTask: map[string]Interval{}}
		clear(mean)
		var point float64
		for ti, task := range tasks {
			v := meanOf(diffs[e][ti])
			res.PerTask[task] = interval(v, rep[e][ti])
			point += v / float64(len(tasks))
			for k, x := range rep[e][ti] {
				mean[k] += x / float64(len(tasks))
			}
		}
		res.Mean = interval(point, mean)
		out[e] = res
	}
	return out, nil
}

func meanOf(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// interval returns the point estimate with the 2.5% and 97.5% percentiles
// of the replicates (linear interpolation between order statistics, as
// numpy.percentile's default).
func interval(point float64, reps []float64) Interval {
	s := slices.Clone(reps)
	slices.Sort(s)
	return Interval{Value: point, Lo: percentile(s, 2.5), Hi: percentile(s, 97.5)}
}

func percentile(sorted []float64, p float64) float64 {
	pos := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(sorted)-1)
	return sorted[lo] + (pos-float64(lo))*(sorted[hi]-sorted[lo])
}

// Scores averages a model's outcomes over its runs (training seeds), all
// on the same examples: score_i = (1/R) Σ_r 1[run r is right on example i].
func Scores(runs [][]bool) ([]float64, error) {
	if len(runs) == 0 {
		return nil, errors.New("eval: no runs")
	}
	out := make([]float64, len(runs[0]))
	for _, run := range runs {
		if len(run) != len(out) {
			return nil, fmt.Errorf("eval: runs of %d and %d outcomes: every run must cover the same examples", len(out), len(run))
		}
		for i, h := range run {
			if h {
				out[i]++
			}
		}
	}
	for i := range out {
		out[i] /= float64(len(runs))
	}
	return out, nil
}
