package main

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/merge"
)

// negationRecord is task negation, θ₀ − λτ. The papers negate a task the
// pre-trained model knows and keep a control task the model also knows
// (ImageNet) at 95% of its accuracy; here the target is the first dataset's
// pre-training classes (known), τ comes from fine-tuning on them, and the
// control is the second dataset's pre-training classes: a deviation from the
// papers, whose control is ImageNet.
type negationRecord struct {
	Target, Control string
	Lambda          float64
	Search          *eval.Search
	// Table holds the test accuracies of the pre-trained, fine-tuned and
	// negated models, with the paired intervals against the pre-trained.
	Table              *eval.Table
	ControlKeptPercent float64
}

func runNegation(o options, st settings, x *experiment, ts []*task, rep *report, logf func(string, ...any)) (*negationRecord, error) {
	target, control := probe{t: ts[0], known: true}, probe{t: ts[1], known: true}
	pair := []probe{target, control}
	rec := &negationRecord{Target: target.name(), Control: control.name()}
	d, chosen, ft, err := x.negate(o, st, x.ev, target, control, false, rep, logf)
	if err != nil {
		return nil, err
	}
	rec.Search, rec.Lambda = chosen.Search, chosen.Coef
	neg, negHits, err := x.ev.at(d, rec.Lambda, pair, true)
	if err != nil {
		return nil, err
	}
	_, ftHits, err := x.ev.checkpointAt(ft, pair, true)
	if err != nil {
		return nil, err
	}
	rec.Table = &eval.Table{Title: "task negation, θ₀ − λτ", Split: "test", Tasks: []string{rec.Target, rec.Control}, NoAverage: true}
	pre := map[string][]bool{rec.Target: x.zeroShotTest[rec.Target], rec.Control: x.zeroShotTest[rec.Control]}
	for _, r := range []struct {
		name string
		hits map[string][]bool
	}{{"pre-trained", pre}, {"fine-tuned on " + rec.Target, ftHits}, {fmt.Sprintf("θ₀ − %gτ", rec.Lambda), negHits}} {
		if err := rec.Table.AddRuns(r.name, []map[string][]bool{r.hits}, nil); err != nil {
			return nil, err
		}
	}
	if err := rec.Table.Intervals([]string{"pre-trained"}, eval.BootstrapOptions{Replicates: st.Replicates}); err != nil {
		return nil, err
	}
	if p := rep.ZeroShot[rec.Control]; p > 0 {
		rec.ControlKeptPercent = 100 * neg[rec.Control] / p
	}
	logf("negation of %s: λ = %g, target %.2f%% → %.2f%%, control %s %.2f%% → %.2f%% (test)", rec.Target, rec.Lambda,
		100*rep.ZeroShot[rec.Target], 100*neg[rec.Target], rec.Control, 100*rep.ZeroShot[rec.Control], 100*neg[rec.Control])
	return rec, nil
}

// negate fine-tunes on the target's training share (linearized or not;
// the checkpoint is reused when there) and chooses λ of θ₀ − λτ on
// validation, measured by ev: the lowest target accuracy keeping the
// control ≥ 95% of the pre-trained model's (eval.GoalNegation).
func (x *experiment) negate(o options, st settings, ev *evaluator, target, control probe, linearized bool, rep *report, logf func(string, ...any)) (*merge.Direction, *eval.Chosen, string, error) {
	ft := knownPath(o.Out, rep.LR.Chosen, target.t, linearized)
	if err := x.finetune(o, st, target.t.knownFt, target.t.knownHead, rep.LR.Chosen, 1, linearized, ft, logf); err != nil {
		return nil, nil, "", err
	}
	d, err := ev.direction(x.preDir, []string{ft}, merge.Config{Method: merge.TaskArithmetic}, merge.CoefLambda, true)
	if err != nil {
		return nil, nil, "", err
	}
	ch := ev.choice(eval.GoalNegation, []probe{target, control}, st.LambdaGrid)
	ch.Reference = map[string]float64{control.name(): rep.ZeroShotVal[control.name()]}
	chosen, err := eval.Choose(d, ev.enc.Weights, ch)
	return d, chosen, ft, err
}

// singleLinesRecord is single-task LiNeS (β = 1 − α, α chosen by
// 2·target + mean control normalized accuracy on validation) against
// uniform scaling θ₀ + λτ at equal target accuracy: λ is the value whose
// validation target accuracy is closest to LiNeS's (ties: the higher mean
// control accuracy), which is the LiNeS paper's comparison. The target is
// the first task, the controls every dataset's pre-training classes: what
// the pre-trained model knows and fine-tuning may make it forget.
type singleLinesRecord struct {
	Target        string       `json:"target"`
	Controls      []string     `json:"controls"`
	Alpha         float64      `json:"alpha"`
	Search        *eval.Search `json:"search"`
	Lambda        float64      `json:"uniform_lambda"`
	UniformSearch *eval.Search `json:"uniform_search"`
	// Table holds the test accuracies of the pre-trained model, the
	// fine-tuned one, uniform scaling and LiNeS, with the paired intervals
	// against uniform scaling.
	Table *eval.Table `json:"table"`
	// TargetDiff and ControlDiff are LiNeS − uniform on the target and on
	// the mean of the controls, paired 95% intervals (test).
	TargetDiff  eval.Interval `json:"target_diff"`
	ControlDiff eval.Interval `json:"control_diff"`
}

func runSingleLines(st settings, x *experiment, ts []*task, rep *report, logf func(string, ...any)) (*singleLinesRecord, error) {
	target := probe{t: ts[0]}
	ps := append([]probe{target}, knownProbes(ts)...)
	rec := &singleLinesRecord{Target: target.name()}
	norm := map[string]float64{rec.Target: x.finetunedVal[0][rec.Target]}
	for _, p := range ps[1:] {
		rec.Controls = append(rec.Controls, p.name())
		norm[p.name()] = rep.ZeroShotVal[p.name()]
	}
	ft := x.members(ts, rep.LR.Chosen, 1, false)[0]
	lines, err := x.ev.direction(x.preDir, []string{ft}, merge.Config{Method: merge.TaskArithmetic}, merge.CoefLinesAlpha, false)
	if err != nil {
		return nil, err
	}
	ch := x.ev.choice(eval.GoalTradeoff, ps, st.AlphaGrid)
	ch.Finetuned, ch.Reference = norm, norm
	chosen, err := eval.Choose(lines, x.ev.enc.Weights, ch)
	if err != nil {
		return nil, err
	}
	rec.Search, rec.Alpha = chosen.Search, chosen.Coef
	goal := rec.Search.Points[rec.Search.Best].Accuracy[rec.Target]
	uniform, err := x.ev.direction(x.preDir, []string{ft}, merge.Config{Method: merge.TaskArithmetic}, merge.CoefLambda, false)
	if err != nil {
		return nil, err
	}
	equal := eval.Objective{Name: fmt.Sprintf("validation %s accuracy closest to LiNeS's %.4f (ties: higher mean control)", rec.Target, goal),
		Score:    func(m map[string]float64) (float64, bool, error) { return -math.Abs(m[rec.Target] - goal), true, nil },
		TieBreak: func(m map[string]float64) float64 { return meanOf(m, rec.Controls) }}
	if rec.UniformSearch, err = eval.SearchDirection(uniform, x.ev.enc.Weights, eval.Steps{Values: eval.Grid(0, 1, 0.05)}, equal, x.ev.on(ps, false)); err != nil {
		return nil, err
	}
	rec.Lambda = rec.UniformSearch.Chosen()
	_, linesHits, err := x.ev.at(lines, rec.Alpha, ps, true)
	if err != nil {
		return nil, err
	}
	_, uniHits, err := x.ev.at(uniform, rec.Lambda, ps, true)
	if err != nil {
		return nil, err
	}
	_, ftHits, err := x.ev.checkpointAt(ft, ps, true)
	if err != nil {
		return nil, err
	}
	pre := map[string][]bool{}
	for _, p := range ps {
		pre[p.name()] = x.zeroShotTest[p.name()]
	}
	uniName := fmt.Sprintf("uniform θ₀ + %gτ", rec.Lambda)
	rec.Table = &eval.Table{Title: "single-task LiNeS against uniform scaling", Split: "test", Tasks: append([]string{rec.Target}, rec.Controls...), NoAverage: true}
	for _, r := range []struct {
		name string
		hits map[string][]bool
	}{{"pre-trained", pre}, {"fine-tuned", ftHits}, {uniName, uniHits}, {fmt.Sprintf("LiNeS α = %g, β = %.3g", rec.Alpha, 1-rec.Alpha), linesHits}} {
		if err := rec.Table.AddRuns(r.name, []map[string][]bool{r.hits}, nil); err != nil {
			return nil, err
		}
	}
	if err := rec.Table.Intervals([]string{uniName}, eval.BootstrapOptions{Replicates: st.Replicates}); err != nil {
		return nil, err
	}
	l, u := rec.Table.Rows[3], rec.Table.Rows[2]
	res, err := eval.Bootstrap(rec.Controls, []eval.Estimate{{A: l.Scores, B: u.Scores}}, eval.BootstrapOptions{Replicates: st.Replicates})
	if err != nil {
		return nil, err
	}
	rec.TargetDiff, rec.ControlDiff = l.Versus[uniName][rec.Target], res[0].Mean
	logf("single-task LiNeS on %s: α = %g, target %.2f%%, controls %.2f%%; uniform λ = %g: target %.2f%%, controls %.2f%% (test)",
		rec.Target, rec.Alpha, 100*l.Accuracy[rec.Target], 100*meanOf(l.Accuracy, rec.Controls), rec.Lambda, 100*u.Accuracy[rec.Target], 100*meanOf(u.Accuracy, rec.Controls))
	return rec, nil
}

// vectorStats describes task vectors over the image encoder's tensors.
type vectorStats struct {
	// NormRatio is ‖τ_t‖/‖θ₀‖ (L2 over all encoder tensors).
	NormRatio map[string]float64 `json:"norm_ratio"`
	// Cosine is cos(τ_s, τ_t).
	Cosine map[string]map[string]float64 `json:"cosine"`
}

// taskVectors returns each task's vector τ_t (merge.NewDirection of one
// fine-tuned model).
func taskVectors(x *experiment, ts []*task, members []string) (map[string]*merge.Direction, error) {
	out := map[string]*merge.Direction{}
	for i, t := range ts {
		d, err := x.ev.direction(x.preDir, []string{members[i]}, merge.Config{Method: merge.TaskArithmetic}, merge.CoefLambda, false)
		if err != nil {
			return nil, err
		}
		out[t.name] = d
	}
	return out, nil
}

func measureVectors(x *experiment, ts []*task, vs map[string]*merge.Direction) *vectorStats {
	r := &vectorStats{NormRatio: map[string]float64{}, Cosine: map[string]map[string]float64{}}
	var base float64
	for _, name := range x.ev.tensors() {
		for _, v := range x.ev.enc.Weights.Float32(name) {
			base += float64(v) * float64(v)
		}
	}
	dot := func(a, b *merge.Direction) float64 {
		var s float64
		for _, name := range x.ev.tensors() {
			u, _ := a.Delta(name)
			v, _ := b.Delta(name)
			for i := range u {
				s += float64(u[i]) * float64(v[i])
			}
		}
		return s
	}
	for _, t := range ts {
		r.NormRatio[t.name] = math.Sqrt(dot(vs[t.name], vs[t.name]) / base)
		r.Cosine[t.name] = map[string]float64{}
	}
	for _, s := range ts {
		for _, t := range ts {
			a, b := vs[s.name], vs[t.name]
			r.Cosine[s.name][t.name] = dot(a, b) / math.Sqrt(dot(a, a)*dot(b, b))
		}
	}
	return r
}

// interference is the diagnostic behind the merges' numbers, on the
// validation split: Own[t][i] is t's accuracy at θ₀ + Lambdas[i]·τ_t (how
// much of the fine-tuning gain a fraction of the task vector keeps), and
// Cross[t][u] its accuracy at θ₀ + CrossLambda·τ_u (what another task's
// vector, at a typical merging coefficient, costs it).
type interference struct {
	Lambdas     []float64                     `json:"lambdas"`
	Own         map[string][]float64          `json:"own"`
	CrossLambda float64                       `json:"cross_lambda"`
	Cross       map[string]map[string]float64 `json:"cross"`
}

func measureInterference(x *experiment, ts []*task, vs map[string]*merge.Direction, label string, logf func(string, ...any)) (*interference, error) {
	r := &interference{Lambdas: []float64{0, 0.1, 0.2, 0.3, 0.5, 0.75, 1}, CrossLambda: 0.3,
		Own: map[string][]float64{}, Cross: map[string]map[string]float64{}}
	for _, t := range ts {
		for _, lam := range r.Lambdas {
			a, _, err := x.ev.at(vs[t.name], lam, []probe{{t: t}}, false)
			if err != nil {
				return nil, err
			}
			r.Own[t.name] = append(r.Own[t.name], a[t.name])
		}
		r.Cross[t.name] = map[string]float64{}
	}
	for _, u := range ts {
		var others []probe
		for _, t := range ts {
			if t != u {
				others = append(others, probe{t: t})
			}
		}
		a, _, err := x.ev.at(vs[u.name], r.CrossLambda, others, false)
		if err != nil {
			return nil, err
		}
		for name, v := range a {
			r.Cross[name][u.name] = v
		}
	}
	for _, t := range ts {
		var cross []string
		for _, u := range ts {
			if u != t {
				cross = append(cross, fmt.Sprintf("%s %+.1f", u.name, 100*(r.Cross[t.name][u.name]-r.Own[t.name][0])))
			}
		}
		own := r.Own[t.name]
		at := own[slices.Index(r.Lambdas, r.CrossLambda)]
		logf("%s, %s, along its task vector (validation): %.1f%% at λ=0, %.1f%% at %g, %.1f%% at 1; another task's vector at %g: %s",
			label, t.name, 100*own[0], 100*at, r.CrossLambda, 100*own[len(own)-1], r.CrossLambda, strings.Join(cross, ", "))
	}
	return r, nil
}
