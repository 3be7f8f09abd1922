package eval

import (
	"errors"
	"fmt"
	"slices"

	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/tasks"
)

// Goal is what a coefficient search optimizes, and so which reference
// accuracies it needs before it starts: the fine-tuned models' (the
// normalizers) or the model at θ₀'s (a constraint's floor, a control's
// normalizer).
type Goal string

// The goals of the published searches. Choice.Metrics lists the metrics
// each reads, in this order.
const (
	// GoalAddition maximizes the mean normalized accuracy over every
	// metric (Addition), each normalized by its fine-tuned model's
	// accuracy: task_vectors, TIES, LiNeS, tangent_task_arithmetic.
	GoalAddition Goal = "addition"
	// GoalNegation minimizes the first metric (the target task) keeping the
	// second (the control) ≥ Fraction × its accuracy at θ₀ (Negation):
	// task_vectors and tangent_task_arithmetic's task negation.
	GoalNegation Goal = "negation"
	// GoalTradeoff maximizes LinesTargetWeight × the first metric
	// normalized by its fine-tuned model's accuracy + the mean of the
	// others normalized by their accuracy at θ₀ (Tradeoff): LiNeS's
	// single-task search.
	GoalTradeoff Goal = "tradeoff"
	// GoalLowest minimizes the first metric keeping the second ≥ Fraction ×
	// its value at θ₀, ties to the higher second (LowestSubjectTo): TBAR's
	// backdoor removal, attack success rate against clean accuracy.
	GoalLowest Goal = "lowest"
)

// NeedsFinetuned returns the metrics of a search with goal g whose
// fine-tuned accuracy normalizes them.
func (g Goal) NeedsFinetuned(metrics []string) []string {
	switch g {
	case GoalAddition:
		return slices.Clone(metrics)
	case GoalTradeoff:
		return slices.Clone(metrics[:min(1, len(metrics))])
	}
	return nil
}

// NeedsReference returns the metrics of a search with goal g that are
// measured at θ₀ first: a constraint's floor, the controls' normalizers.
func (g Goal) NeedsReference(metrics []string) []string {
	switch g {
	case GoalNegation, GoalLowest:
		if len(metrics) > 1 {
			return []string{metrics[1]}
		}
	case GoalTradeoff:
		if len(metrics) > 1 {
			return slices.Clone(metrics[1:])
		}
	}
	return nil
}

// check verifies the number of metrics the goal reads.
func (g Goal) check(metrics []string) error {
	n := len(metrics)
	switch g {
	case GoalAddition:
		if n == 0 {
			return errors.New("eval: task addition needs at least one task")
		}
	case GoalNegation, GoalLowest:
		if n != 2 {
			return fmt.Errorf("eval: a %s search reads two metrics, the minimized one then the constrained one: got %d", g, n)
		}
	case GoalTradeoff:
		if n < 2 {
			return fmt.Errorf("eval: a trade-off search reads the target then at least one control: got %d metric(s)", n)
		}
	default:
		return fmt.Errorf("eval: unknown search goal %q", g)
	}
	return nil
}

// Choice says how Choose picks a coefficient: the goal, the grid, how
// models are measured and what the reference accuracies are.
type Choice struct {
	Goal Goal
	// Metrics names the metrics the goal reads, in its order (see Goal).
	Metrics []string
	Steps   Steps
	// Evaluate measures weights on every metric. An evaluator that runs
	// one compiled forward pass for any weights (an encoder with its heads,
	// or its linearization) serves the whole search without recompiling.
	Evaluate ModelEval
	// EvaluateOne, when set, measures weights on one metric only: the
	// reference accuracies are measured with it, each model on the metrics
	// that need it. nil: Evaluate, keeping every metric it returns.
	EvaluateOne func(metric string) ModelEval
	// Finetuned holds the fine-tuned accuracies known in advance (> 0), and
	// FinetunedFrom says where each normalizer comes from (for records).
	// FinetunedWeights loads the fine-tuned model of a metric whose
	// normalizer is not known; it is measured and freed.
	Finetuned        map[string]float64
	FinetunedFrom    map[string]string
	FinetunedWeights func(metric string) (models.Weights, error)
	// Reference holds values at θ₀ known in advance (> 0), for the
	// metrics NeedsReference names; the others are measured at θ₀.
	Reference map[string]float64
	// Fraction is the share of θ₀'s value a constraint keeps (GoalNegation,
	// GoalLowest); 0 means ControlFraction.
	Fraction float64
}

// Chosen is the outcome of Choose.
type Chosen struct {
	Search *Search
	// Coef is the chosen coefficient.
	Coef float64
	// Objective is the objective the search maximized.
	Objective Objective
	// Finetuned holds the normalizers used, given and measured.
	Finetuned map[string]float64
	// Reference holds the metrics at θ₀ the objective is relative to
	// (given or measured), and ReferenceHits the per-example outcomes of
	// those measured.
	Reference     map[string]float64
	ReferenceHits map[string][]bool
}

// Choose picks the coefficient of a merge direction on validation data:
// it measures what the goal is relative to (the fine-tuned models'
// accuracies that normalize each task, θ₀'s accuracy on the constrained or
// control metrics), builds the goal's objective, and searches the
// direction's coefficient over the steps (SearchDirection: every point
// formed in memory from θ₀ = base and Δ). When no point is feasible it
// returns what it found with the error.
func Choose(d *merge.Direction, base models.Weights, c Choice) (*Chosen, error) {
	if err := c.Goal.check(c.Metrics); err != nil {
		return nil, err
	}
	if c.Evaluate == nil {
		return nil, errors.New("eval: a coefficient search needs an evaluator")
	}
	one := c.EvaluateOne
	if one == nil {
		one = func(string) ModelEval { return c.Evaluate }
	}
	out := &Chosen{Finetuned: map[string]float64{}}
	for _, m := range c.Goal.NeedsFinetuned(c.Metrics) {
		if v := c.Finetuned[m]; v > 0 {
			out.Finetuned[m] = v
			continue
		}
		if c.FinetunedWeights == nil {
			return nil, fmt.Errorf("eval: no fine-tuned accuracy to normalize %s by, and no fine-tuned model to measure", m)
		}
		w, err := c.FinetunedWeights(m)
		if err != nil {
			return nil, fmt.Errorf("evaluating the fine-tuned model of %s: %w", m, err)
		}
		acc, _, err := Measure(one(m), w)
		w.Finalize()
		if err != nil {
			return nil, err
		}
		if acc[m] == 0 {
			return nil, fmt.Errorf("the fine-tuned model of %s (%s) has accuracy 0 on its validation data, so normalized accuracy is undefined: is the head the task's?", m, c.FinetunedFrom[m])
		}
		out.Finetuned[m] = acc[m]
	}
	if ref := c.Goal.NeedsReference(c.Metrics); len(ref) > 0 {
		out.Reference, out.ReferenceHits = map[string]float64{}, map[string][]bool{}
		measured := map[string]bool{}
		for _, m := range ref {
			if v := c.Reference[m]; v > 0 && !measured[m] {
				out.Reference[m], measured[m] = v, true
			}
			if measured[m] {
				continue
			}
			acc, hits, err := Measure(one(m), base)
			if err != nil {
				return nil, err
			}
			for k, v := range acc {
				out.Reference[k], out.ReferenceHits[k], measured[k] = v, hits[k], true
			}
			if _, ok := acc[m]; !ok {
				return nil, fmt.Errorf("eval: the evaluator measured no %q", m)
			}
			// A control or normalizer of 0 means a wrong head; a floor of 0
			// (GoalLowest) only means there is nothing to keep.
			if acc[m] == 0 && c.Goal != GoalLowest {
				return nil, fmt.Errorf("the model at coefficient 0 (θ₀) scores 0 on %s, the search's reference: check its head", m)
			}
		}
	}
	frac := c.Fraction
	if frac == 0 {
		frac = ControlFraction
	}
	switch c.Goal {
	case GoalAddition:
		out.Objective = Addition(c.Metrics, out.Finetuned)
	case GoalNegation:
		out.Objective = Negation(c.Metrics[0], c.Metrics[1], frac*out.Reference[c.Metrics[1]])
	case GoalTradeoff:
		norm := map[string]float64{c.Metrics[0]: out.Finetuned[c.Metrics[0]]}
		for _, m := range c.Metrics[1:] {
			norm[m] = out.Reference[m]
		}
		out.Objective = Tradeoff(c.Metrics[0], c.Metrics[1:], norm, LinesTargetWeight)
	case GoalLowest:
		out.Objective = LowestSubjectTo(c.Metrics[0], c.Metrics[1], frac*out.Reference[c.Metrics[1]])
	}
	var err error
	out.Search, err = SearchDirection(d, base, c.Steps, out.Objective, c.Evaluate)
	if err != nil {
		return out, err
	}
	out.Coef = out.Search.Chosen()
	return out, nil
}

// MergeSearch configures SearchMerge.
type MergeSearch struct {
	// Choice is the goal, the grid, the evaluators and the normalizers.
	Choice
	// Direction configures the unit merge: the coefficient varied, negation,
	// the tensors kept (those the evaluators read), the scratch folder, the
	// progress of its passes.
	Direction merge.DirectionOptions
	// Tall first chooses consensus's TALL-mask λ_t of each task on its own
	// metric (SearchTallLambdas over TallLambdaGrid, with EvaluateOne): the
	// i-th metric is the i-th member's task.
	Tall bool
	// Write, when set, writes the merge at the chosen coefficient (cfg is
	// the recipe with it) and returns the weights as written, read back
	// (their dtype may be narrower than the float32 searched), and the
	// merge's resolved parameters. SearchMerge measures those weights
	// (Record.Written) and frees them; nil weights are not measured.
	Write func(cfg merge.Config) (written models.Weights, params map[string]any, err error)
	// Stage, when set, is called as each stage begins: "tall",
	// "direction", "references", "write".
	Stage func(name string)
}

// SearchMerge is a merge's coefficient search, as editkit merge --search
// runs it: consensus's TALL-mask λ_t first when asked (Tall), then one
// merge of the members of s at the unit coefficient gives the direction Δ
// (merge.NewDirection), Choose picks the coefficient on validation data,
// and Write writes the merge at that value, which is measured again. base
// holds θ₀ for the tensors the evaluators read. The record has everything
// but what the caller knows: the output, split, limit, heads,
// linearization, files and time.
func SearchMerge(s *tasks.Set, cfg merge.Config, base models.Weights, o MergeSearch) (*Record, *merge.Direction, error) {
	stage := func(name string) {
		if o.Stage != nil {
			o.Stage(name)
		}
	}
	if err := o.Goal.check(o.Metrics); err != nil {
		return nil, nil, err
	}
	coef := o.Direction.Coefficient
	if coef == "" {
		coef = merge.CoefLambda
	}
	rec := &Record{Method: string(cfg.Method), Coefficient: string(coef), Grid: o.Steps.Values, Tasks: o.Metrics}
	if o.Tall {
		stage("tall")
		one := o.EvaluateOne
		if one == nil {
			return nil, nil, errors.New("eval: the TALL-mask search measures each task alone: give EvaluateOne")
		}
		evs := make([]ModelEval, len(o.Metrics))
		for i, m := range o.Metrics {
			evs[i] = one(m)
		}
		topt := o.Direction
		topt.Stream = tasks.StreamOptions{}
		var err error
		if rec.Tall, err = SearchTallLambdas(s, cfg, base, o.Metrics, TallLambdaGrid(), evs, topt); err != nil {
			return nil, nil, err
		}
		cfg.TallLambda = rec.Tall.Lambdas
	}
	stage("direction")
	d, err := merge.NewDirection(s, cfg, o.Direction)
	if err != nil {
		return nil, nil, err
	}
	if coef == merge.CoefLinesBeta {
		rec.LinesAlpha = &d.Alpha
	}
	stage("references")
	ch, err := Choose(d, base, o.Choice)
	if ch != nil {
		if len(ch.Finetuned) > 0 {
			rec.Finetuned, rec.FinetunedFrom = ch.Finetuned, o.FinetunedFrom
		}
		if len(ch.Reference) > 0 {
			rec.Pretrained = ch.Reference
		}
		rec.Search = ch.Search
	}
	if err != nil {
		if rec.Search != nil && len(rec.Search.Points) > 0 {
			return rec, d, fmt.Errorf("%w (validation accuracies: %s)", err, rec.Search.Summary())
		}
		return rec, d, err
	}
	rec.Chosen = ch.Coef
	rec.Applied = d.Applied(rec.Chosen)
	if o.Write == nil {
		return rec, d, nil
	}
	stage("write")
	w, params, err := o.Write(d.Config(rec.Chosen))
	if err != nil {
		return rec, d, err
	}
	rec.MergeParams = params
	if w == nil {
		return rec, d, nil
	}
	rec.Written, _, err = Measure(o.Evaluate, w)
	w.Finalize()
	return rec, d, err
}
