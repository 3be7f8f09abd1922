package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/linearize"
	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/heads"
)

// The three ways of fine-tuning and evaluating that "Task Arithmetic in the
// Tangent Space" (Ortiz-Jimenez, Favero, Frossard, NeurIPS 2023) compares.
const (
	// modeNonLinear: fine-tuned and evaluated as the model is, f(x; θ).
	modeNonLinear = "non-linear FT"
	// modeLinearized: θ of f_lin(x; θ) = f(x; θ₀) + J·(θ − θ₀) fine-tuned
	// with the same recipe, and evaluated through f_lin.
	modeLinearized = "linearized FT"
	// modePostHoc: the non-linear fine-tunes and their combinations
	// evaluated through f_lin around θ₀.
	modePostHoc = "post-hoc linearization"
)

// tangentRecord is the paper's comparison on the experiment's tasks.
type tangentRecord struct {
	// Seeds is the number of fine-tuning seeds compared (the first ones).
	Seeds int           `json:"seeds"`
	Modes []*modeRecord `json:"modes"`
	// Xi holds the weight disentanglement error ξ of the first two tasks
	// by mode (non-linear and linearized FT), Plots the PNGs under --out.
	Xi    map[string]*xiRecord `json:"xi"`
	Plots []string             `json:"plots"`
	// NTK is the eigenfunction localization of the pre-trained encoder's
	// NTK on a pooled sample of the first two tasks' validation images.
	NTK *eval.Localization `json:"ntk_localization"`
	// Single holds each mode's single-task models on test (and the
	// pre-trained model), Addition each mode's task addition, with paired
	// intervals against non-linear FT's (and the pre-trained model's).
	Single   *eval.Table        `json:"single_task_table"`
	Addition *eval.Table        `json:"addition_table"`
	Seconds  map[string]float64 `json:"seconds"`
}

// modeRecord is one mode's numbers: (a) single-task accuracy, (b) task
// addition, (c) task negation.
type modeRecord struct {
	Mode string `json:"mode"`
	// SingleVal and Single are each task's fine-tuned model's accuracy on
	// its own task in this mode (validation, test), mean over seeds.
	SingleVal map[string]float64 `json:"single_val"`
	Single    map[string]float64 `json:"single_test"`
	// Addition holds each seed's search of one α on the summed task
	// vectors, normalized by this mode's single-task validation accuracy.
	Addition []*mergeRecord `json:"addition"`
	// AdditionAcc is the test accuracy at the chosen α by task (mean over
	// seeds), AdditionAbs its mean over tasks and AdditionNorm the mean of
	// AdditionAcc[t] / Single[t].
	AdditionAcc  map[string]float64 `json:"addition_test"`
	AdditionAbs  float64            `json:"addition_abs"`
	AdditionNorm float64            `json:"addition_norm"`
	// Negation holds each negated task; NegTarget and NegControl are the
	// mean test accuracies at the chosen λ over them.
	Negation   []*negationPoint `json:"negation"`
	NegTarget  float64          `json:"negation_target"`
	NegControl float64          `json:"negation_control"`

	singleTest, additionTest []map[string][]bool
}

// negationPoint is the negation of one task (θ₀ − λτ, τ fine-tuned on its
// pre-training classes), its control the next dataset's pre-training
// classes.
type negationPoint struct {
	Target  string       `json:"target"`
	Control string       `json:"control"`
	Lambda  float64      `json:"lambda"`
	Search  *eval.Search `json:"search"`
	// TargetAcc and ControlAcc are the test accuracies at λ; PreTarget and
	// PreControl the pre-trained model's.
	TargetAcc  float64 `json:"target_test"`
	ControlAcc float64 `json:"control_test"`
	PreTarget  float64 `json:"pretrained_target_test"`
	PreControl float64 `json:"pretrained_control_test"`
}

// xiRecord is a ξ heat map's numbers: the grid, and ξ's mean and maximum
// over [0, 1]², where addition searches, and its mean over the grid.
type xiRecord struct {
	*eval.Disentanglement
	BoxMean  float64 `json:"box_mean"`
	BoxMax   float64 `json:"box_max"`
	GridMean float64 `json:"grid_mean"`
}

// runTangent runs the comparison on the first TangentSeeds seeds: it
// fine-tunes every task linearized (reusing the pre-trained model, the
// heads and the non-linear fine-tunes and merges of the other stages),
// then measures each mode, the ξ heat maps and the NTK localization.
func runTangent(o options, st settings, x *experiment, ts []*task, rep *report, logf func(string, ...any)) (*tangentRecord, error) {
	seeds := min(st.TangentSeeds, st.Seeds)
	if seeds < 1 {
		return nil, nil
	}
	rec := &tangentRecord{Seeds: seeds, Xi: map[string]*xiRecord{}, Seconds: map[string]float64{}}
	stage := time.Now()
	lap := func(name string) { rec.Seconds[name] = time.Since(stage).Seconds(); stage = time.Now() }
	lin, err := x.ev.linearized()
	if err != nil {
		return nil, err
	}
	defer lin.close()
	for s := 1; s <= seeds; s++ {
		if err := x.finetuneAll(o, st, ts, rep.LR.Chosen, s, true, logf); err != nil {
			return nil, err
		}
	}
	lap("finetune_linearized")
	for _, m := range []struct {
		name       string
		ev         *evaluator
		linearized bool // the fine-tunes
	}{{modeNonLinear, x.ev, false}, {modeLinearized, lin, true}, {modePostHoc, lin, false}} {
		mr, err := x.tangentMode(o, st, m.name, m.ev, m.linearized, ts, rep, seeds, logf)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		rec.Modes = append(rec.Modes, mr)
		lap(strings.ReplaceAll(m.name, " ", "_"))
	}
	if rec.Single, rec.Addition, err = tangentTables(st, x, rep, rec.Modes); err != nil {
		return nil, err
	}
	dir := filepath.Join(o.Out, "tangent")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for _, m := range []struct {
		name       string
		linearized bool
	}{{modeNonLinear, false}, {modeLinearized, true}} {
		xi, png, err := x.disentangle(st, ts, rep, m.name, m.linearized)
		if err != nil {
			return nil, fmt.Errorf("ξ, %s: %w", m.name, err)
		}
		rec.Xi[m.name] = xi
		p := filepath.Join(dir, "xi-"+slug(m.name)+".png")
		if err := checkpoint.WriteFileAtomic(p, png); err != nil {
			return nil, err
		}
		rec.Plots = append(rec.Plots, p)
		logf("ξ(α₁, α₂) of %s and %s, %s: mean %.3f over [0,1]² (max %.3f), %.3f over the grid", xi.Tasks[0], xi.Tasks[1], m.name, xi.BoxMean, xi.BoxMax, xi.GridMean)
	}
	lap("disentanglement")
	loc, png, err := x.ntkLocalization(st, ts)
	if err != nil {
		return nil, fmt.Errorf("NTK localization: %w", err)
	}
	rec.NTK = loc
	p := filepath.Join(dir, "ntk-localization.png")
	if err := checkpoint.WriteFileAtomic(p, png); err != nil {
		return nil, err
	}
	rec.Plots = append(rec.Plots, p)
	logf("NTK on %d + %d validation images of %s and %s: the top %d eigenvectors put %.0f%% of their energy on one task on average (%.0f%% if spread evenly)",
		loc.Examples[0], loc.Examples[1], loc.Tasks[0], loc.Tasks[1], len(loc.Share), 100*loc.Localized, 100*loc.Even)
	lap("ntk")
	return rec, nil
}

func slug(mode string) string {
	return strings.ToLower(strings.Fields(mode)[0])
}

// tangentMode measures one mode on the first seeds: (a) the single-task
// models, (b) task addition with α chosen on validation, (c) negation.
// Non-linear FT's single-task models and task arithmetic merges are those
// of the main stages.
func (x *experiment) tangentMode(o options, st settings, mode string, ev *evaluator, linearized bool, ts []*task, rep *report, seeds int, logf func(string, ...any)) (*modeRecord, error) {
	mr := &modeRecord{Mode: mode, SingleVal: map[string]float64{}, Single: map[string]float64{}, AdditionAcc: map[string]float64{}}
	var ta *mergeSummary
	for _, m := range rep.Merges {
		if m.Name == string(merge.TaskArithmetic) {
			ta = m
		}
	}
	for s := 1; s <= seeds; s++ {
		members := x.members(ts, rep.LR.Chosen, s, linearized)
		val, hits := x.finetunedVal[s-1], x.finetunedTest[s-1]
		if mode != modeNonLinear {
			val, hits = map[string]float64{}, map[string][]bool{}
			for i, t := range ts {
				p := []probe{{t: t}}
				acc, _, err := ev.checkpointAt(members[i], p, false)
				if err != nil {
					return nil, err
				}
				_, h, err := ev.checkpointAt(members[i], p, true)
				if err != nil {
					return nil, err
				}
				val[t.name], hits[t.name] = acc[t.name], h[t.name]
			}
		}
		mr.singleTest = append(mr.singleTest, hits)
		add, addHits := ta.Seeds[s-1], ta.test[s-1]
		if mode != modeNonLinear {
			var meta map[string]string
			if linearized {
				var err error
				if meta, err = x.linearizedMeta(); err != nil {
					return nil, err
				}
			}
			mm := method{Name: string(merge.TaskArithmetic) + "." + slug(mode), Method: merge.TaskArithmetic}
			var err error
			if add, addHits, err = runMerge(o, st, ev, x.preDir, ts, members, s, mm, val, meta, logf); err != nil {
				return nil, err
			}
		}
		mr.Addition, mr.additionTest = append(mr.Addition, add), append(mr.additionTest, addHits)
		for _, t := range ts {
			mr.SingleVal[t.name] += val[t.name] / float64(seeds)
			mr.Single[t.name] += eval.Share(hits[t.name]) / float64(seeds)
			mr.AdditionAcc[t.name] += eval.Share(addHits[t.name]) / float64(seeds)
		}
	}
	for _, t := range ts {
		mr.AdditionNorm += mr.AdditionAcc[t.name] / mr.Single[t.name] / float64(len(ts))
	}
	mr.AdditionAbs = mean(mr.AdditionAcc)
	for i := range min(st.NegTargets, len(ts)) {
		target, control := probe{t: ts[i], known: true}, probe{t: ts[(i+1)%len(ts)], known: true}
		d, chosen, _, err := x.negate(o, st, ev, target, control, linearized, rep, logf)
		if err != nil {
			return nil, fmt.Errorf("negation of %s: %w", target.name(), err)
		}
		acc, _, err := ev.at(d, chosen.Coef, []probe{target, control}, true)
		if err != nil {
			return nil, err
		}
		np := &negationPoint{Target: target.name(), Control: control.name(), Lambda: chosen.Coef, Search: chosen.Search,
			TargetAcc: acc[target.name()], ControlAcc: acc[control.name()], PreTarget: rep.ZeroShot[target.name()], PreControl: rep.ZeroShot[control.name()]}
		mr.Negation = append(mr.Negation, np)
		n := float64(min(st.NegTargets, len(ts)))
		mr.NegTarget += np.TargetAcc / n
		mr.NegControl += np.ControlAcc / n
	}
	logf("%s: single-task %.1f%%, addition %.1f%% (normalized %.1f%%, α %v), negation target %.1f%%, control %.1f%% (test)",
		mode, 100*mean(mr.Single), 100*mr.AdditionAbs, 100*mr.AdditionNorm, chosenOf(mr.Addition), 100*mr.NegTarget, 100*mr.NegControl)
	return mr, nil
}

func chosenOf(rs []*mergeRecord) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = r.Chosen
	}
	return out
}

// tangentTables are the test accuracies of each mode's single-task models
// (and of the pre-trained model) and of its task addition, with paired
// intervals against non-linear FT's and the pre-trained model's.
func tangentTables(st settings, x *experiment, rep *report, modes []*modeRecord) (single, addition *eval.Table, err error) {
	single = &eval.Table{Title: "tangent space: single-task models", Split: "test", Tasks: rep.Tasks}
	addition = &eval.Table{Title: "tangent space: task addition, one α on the summed task vectors", Split: "test", Tasks: rep.Tasks}
	zs := map[string][]bool{}
	for _, t := range rep.Tasks {
		zs[t] = x.zeroShotTest[t]
	}
	for _, tab := range []*eval.Table{single, addition} {
		if err := tab.AddRuns(zeroShotRow, []map[string][]bool{zs}, nil); err != nil {
			return nil, nil, err
		}
	}
	for _, m := range modes {
		if err := single.AddRuns(m.Mode, m.singleTest, nil); err != nil {
			return nil, nil, err
		}
		if err := addition.AddRuns(m.Mode, m.additionTest, map[string]float64{"α": meanChosen(&mergeSummary{Seeds: m.Addition})}); err != nil {
			return nil, nil, err
		}
	}
	for _, tab := range []*eval.Table{single, addition} {
		if err := tab.Intervals([]string{modeNonLinear, zeroShotRow}, eval.BootstrapOptions{Replicates: st.Replicates}); err != nil {
			return nil, nil, err
		}
	}
	return single, addition, nil
}

// disentangle computes ξ of the first two tasks' first-seed task vectors
// over the XiGrid, on XiN validation images of each: non-linear FT
// evaluated plainly, linearized FT through f_lin around θ₀.
func (x *experiment) disentangle(st settings, ts []*task, rep *report, mode string, linearized bool) (*xiRecord, []byte, error) {
	members := x.members(ts[:2], rep.LR.Chosen, 1, linearized)
	var w [2]models.Weights
	var ds [2]*datasets.Dataset
	var hs [2]*heads.Head
	for i, t := range ts[:2] {
		var err error
		if w[i], err = x.ev.enc.ReadWeights(members[i]); err != nil {
			return nil, nil, err
		}
		defer w[i].Finalize()
		ds[i], hs[i] = t.val.Head(st.XiN), t.head
	}
	var around models.Weights
	if linearized {
		around = x.ev.enc.Weights
	}
	d, err := linearize.Disentangle(x.ev.enc, w, around, ds, hs, st.XiGrid, st.XiGrid, linearize.DisentangleOptions{BatchSize: st.XiN})
	if err != nil {
		return nil, nil, err
	}
	d.Tasks = [2]string{ts[0].name, ts[1].name}
	r := &xiRecord{Disentanglement: d}
	r.BoxMean, r.BoxMax = d.Box()
	for _, row := range d.Xi {
		for _, v := range row {
			r.GridMean += v / float64(len(d.Xi)*len(row))
		}
	}
	png, err := eval.PlotDisentanglement(d, fmt.Sprintf("ξ(α₁, α₂), %s: %s + %s (validation)", mode, d.Tasks[0], d.Tasks[1]))
	return r, png, err
}

// ntkLocalization computes the empirical NTK of the pre-trained image
// encoder's features (the function f_lin linearizes; the trace over the
// features is the scalar kernel) on NtkN validation images of each of the
// first two tasks, pooled, and the energy shares of its top NtkTop
// eigenvectors on each task's images.
func (x *experiment) ntkLocalization(st settings, ts []*task) (*eval.Localization, []byte, error) {
	var data []float32
	var task []int
	h, w := 0, 0
	for i, t := range ts[:2] {
		n := 0
		for _, b := range t.batches[valSplit] {
			h, w = b.Height, b.Width
			per := h * w * 3
			for k := 0; k < b.Size && n < st.NtkN; k++ {
				data = append(data, b.Images[k*per:(k+1)*per]...)
				task = append(task, i)
				n++
			}
		}
	}
	pixels, err := models.Pixels(data, len(task), h, w)
	if err != nil {
		return nil, nil, err
	}
	enc := x.ev.enc
	f := func(p models.Params, in []*graph.Node) []*graph.Node {
		return []*graph.Node{enc.Forward(p, in[0])}
	}
	k, err := linearize.NTK(f, enc.Specs, enc.Weights, []*tensors.Tensor{pixels}, nil)
	if err != nil {
		return nil, nil, err
	}
	names := []string{ts[0].name, ts[1].name}
	loc, err := eval.Localize(k.Trace(), task, names, st.NtkTop)
	if err != nil {
		return nil, nil, err
	}
	png, err := eval.PlotLocalization(loc, fmt.Sprintf("NTK eigenvectors of the pre-trained encoder on %s + %s: energy by task", names[0], names[1]))
	return loc, png, err
}
