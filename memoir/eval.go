package memoir

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// TokenAccuracy is EasyEdit's teacher-forced token accuracy: the fraction
// of the target tokens ids[promptLen:] that the argmax predictions pred
// (pred[t] is the prediction after position t) get right, i.e. the mean of
// pred[t−1] == ids[t] over t in [promptLen, len(ids)). NaN for an empty
// target.
func TokenAccuracy(pred, ids []int, promptLen int) float64 {
	return Agreement(TargetSpan(pred, promptLen, len(ids)), ids[promptLen:])
}

// TargetSpan is the predictions of a query's target tokens: pred[promptLen−1
// : n−1] for a query of n tokens.
func TargetSpan(pred []int, promptLen, n int) []int {
	return pred[promptLen-1 : n-1]
}

// Agreement is the fraction of positions where a and b hold the same
// token (NaN when empty). Locality is the agreement of the post- and
// pre-edit target spans of the locality prompt + answer.
func Agreement(a, b []int) float64 {
	if len(a) != len(b) {
		panic(fmt.Errorf("memoir: comparing %d tokens with %d", len(a), len(b)))
	}
	if len(a) == 0 {
		return nan()
	}
	n := 0
	for i := range a {
		if a[i] == b[i] {
			n++
		}
	}
	return float64(n) / float64(len(a))
}

func nan() float64 { var z float64; return z / z }

// EditResult is one edit's scores.
type EditResult struct {
	Index  int    `json:"index"`
	Prompt string `json:"prompt"`
	Target string `json:"target"`
	// Reliability: token accuracy of the target after the prompt.
	Reliability float64 `json:"reliability"`
	// Generalization: mean token accuracy after the rephrasings (nil
	// without rephrasings).
	Generalization *float64 `json:"generalization"`
	// Locality: mean agreement with the unedited model on the locality
	// prompts and answers (nil without locality prompts).
	Locality *float64 `json:"locality"`
	// Active: whether the edit memory took part for the prompt, and the
	// fractions of the rephrasings and locality prompts it took part for.
	Active      bool    `json:"active"`
	ActiveRephr float64 `json:"active_rephrase"`
	ActiveLocal float64 `json:"active_locality"`
	Rephrases   int     `json:"rephrases"`
	LocalityN   int     `json:"locality_prompts"`
	EditSeconds float64 `json:"edit_seconds"`
	EditIters   int     `json:"edit_iterations"`
	EditLoss    float64 `json:"edit_loss"`
	EditNote    string  `json:"edit_note,omitempty"`
}

// Rates are fractions of the queries of each kind.
type Rates struct {
	Reliability    float64 `json:"reliability"`
	Generalization float64 `json:"generalization"`
	Locality       float64 `json:"locality"`
}

// Result is the evaluation of a method after T sequential edits: the
// means over the T edits (EasyEdit's sequential protocol: all T applied,
// then all T evaluated).
type Result struct {
	Method Method `json:"method"`
	// Label, when set, names the row in Markdown instead of the method
	// (e.g. a method under one of several settings).
	Label string `json:"label,omitempty"`
	Layer int    `json:"layer"`
	// Edits is T.
	Edits int `json:"edits"`
	// Scoring is how the answers were read (see ScoringOf).
	Scoring Scoring `json:"scoring"`
	Rates
	// Active: the fraction of queries of each kind for which the edit
	// memory took part (MEMOIR's routing, GRACE's radius).
	Active Rates `json:"active"`
	// EditSeconds is the time of the T edits (0 when not measured, e.g.
	// a loaded memory); SecondsPerEdit its mean.
	EditSeconds    float64 `json:"edit_seconds"`
	SecondsPerEdit float64 `json:"seconds_per_edit"`
	EvalSeconds    float64 `json:"eval_seconds"`
	// Rephrased and Localized count the edits with rephrasings and with
	// locality prompts: generalization and locality are means over them, and
	// undefined (n/a in tables, null in JSON) when they are 0.
	Rephrased int           `json:"edits_with_rephrasings"`
	Localized int           `json:"edits_with_locality"`
	PerEdit   []*EditResult `json:"per_edit,omitempty"`
}

// MarshalJSON writes the generalization and locality rates as null when no
// edit has rephrasings or locality prompts, as each edit's own scores are.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	type rates struct {
		Reliability    float64  `json:"reliability"`
		Generalization *float64 `json:"generalization"`
		Locality       *float64 `json:"locality"`
	}
	defined := func(x float64, n int) *float64 {
		if n == 0 {
			return nil
		}
		return &x
	}
	ratesOf := func(rt Rates) rates {
		return rates{rt.Reliability, defined(rt.Generalization, r.Rephrased), defined(rt.Locality, r.Localized)}
	}
	main, active := ratesOf(r.Rates), ratesOf(r.Active)
	// The outer fields shadow the embedded ones of the same JSON name.
	return json.Marshal(struct {
		plain
		Generalization *float64 `json:"generalization"`
		Locality       *float64 `json:"locality"`
		Active         rates    `json:"active"`
	}{plain(r), main.Generalization, main.Locality, active})
}

// Scoring is how an editor's answers are read.
type Scoring string

const (
	// TeacherForced is EasyEdit's default: the argmax after each position
	// of prompt + " " + target, compared with the next token
	// (test_prediction_acc).
	TeacherForced Scoring = "teacher-forced"
	// Greedy is EasyEdit's vanilla_generation, which it uses for GRACE:
	// as many tokens as the target has, decoded greedily after the prompt,
	// compared with the target's.
	Greedy Scoring = "greedy"
)

// greedyScored is implemented by the editors EasyEdit scores with greedy
// generation (GRACE).
type greedyScored interface {
	// Generate decodes n tokens greedily after prompt and says whether the
	// edit memory took part.
	Generate(prompt []int, n int) (tokens []int, active bool, err error)
}

// ScoringOf is the scoring Evaluate uses for an editor: Greedy for GRACE
// (EasyEdit's compute_rewrite_or_rephrase_quality and
// compute_locality_quality pass vanilla_generation for it), TeacherForced
// for the others.
func ScoringOf(ed Editor) Scoring {
	if _, ok := ed.(greedyScored); ok {
		return Greedy
	}
	return TeacherForced
}

// answer is an editor's answer to a query (ids, whose prompt is
// ids[:pl]): the tokens it gives for the target span and whether the edit
// memory took part.
func answer(ed Editor, ids []int, pl int) ([]int, bool, error) {
	if g, ok := ed.(greedyScored); ok {
		return g.Generate(ids[:pl], len(ids)-pl)
	}
	pred, act, err := ed.Predict(ids, pl)
	if err != nil {
		return nil, false, err
	}
	return TargetSpan(pred, pl, len(ids)), act, nil
}

// baseAnswer is the unedited model's answer, scored as ed's.
func baseAnswer(ed Editor, base *Base, ids []int, pl int) ([]int, error) {
	if _, ok := ed.(greedyScored); ok {
		return base.Greedy(ids[:pl], len(ids)-pl)
	}
	pred, err := base.Predict(ids)
	if err != nil {
		return nil, err
	}
	return TargetSpan(pred, pl, len(ids)), nil
}

// Evaluate scores an editor on edits (those it has applied) as EasyEdit
// does: reliability and generalization are the token accuracy of the target
// after the prompt and after each rephrasing, locality the agreement of the
// edited and unedited models' answers on the locality prompts and answers;
// answers are read with ScoringOf(ed) (teacher-forced, greedy for GRACE).
// Locality compares with base, the unedited model.
func Evaluate(ed Editor, base *Base, edits []EditRequest, progress Progress) (*Result, error) {
	start := time.Now()
	res := &Result{Method: ed.Method(), Layer: ed.Layer(), Edits: len(edits), Scoring: ScoringOf(ed)}
	for i, e := range edits {
		er := &EditResult{Index: i, Prompt: e.Prompt, Target: e.Target, Rephrases: len(e.Rephrases), LocalityN: len(e.Locality)}
		ids, pl, err := base.Encode(e.Prompt, e.Target)
		if err != nil {
			return nil, fmt.Errorf("edit %d: %w", i, err)
		}
		got, act, err := answer(ed, ids, pl)
		if err != nil {
			return nil, fmt.Errorf("edit %d: %w", i, err)
		}
		er.Reliability, er.Active = Agreement(got, ids[pl:]), act
		if len(e.Rephrases) > 0 {
			var accs, acts []float64
			for _, r := range e.Rephrases {
				ids, pl, err := base.Encode(r, e.Target)
				if err != nil {
					return nil, fmt.Errorf("edit %d: rephrasing: %w", i, err)
				}
				got, act, err := answer(ed, ids, pl)
				if err != nil {
					return nil, fmt.Errorf("edit %d: %w", i, err)
				}
				accs, acts = append(accs, Agreement(got, ids[pl:])), append(acts, b2f(act))
			}
			g := mean(accs)
			er.Generalization, er.ActiveRephr = &g, mean(acts)
		}
		if len(e.Locality) > 0 {
			var agr, acts []float64
			for _, l := range e.Locality {
				ids, pl, err := base.Encode(l.Prompt, l.Answer)
				if err != nil {
					return nil, fmt.Errorf("edit %d: locality: %w", i, err)
				}
				post, act, err := answer(ed, ids, pl)
				if err != nil {
					return nil, fmt.Errorf("edit %d: %w", i, err)
				}
				pre, err := baseAnswer(ed, base, ids, pl)
				if err != nil {
					return nil, fmt.Errorf("edit %d: %w", i, err)
				}
				agr = append(agr, Agreement(post, pre))
				acts = append(acts, b2f(act))
			}
			l := mean(agr)
			er.Locality, er.ActiveLocal = &l, mean(acts)
		}
		res.PerEdit = append(res.PerEdit, er)
		if progress != nil {
			progress("eval", i+1, len(edits))
		}
	}
	res.summarize()
	res.EvalSeconds = time.Since(start).Seconds()
	return res, nil
}

// summarize computes the rates from the per-edit results: reliability,
// generalization and locality as means over the edits (of each edit's mean
// over its rephrasings and locality prompts), the memory's use as the
// share of all queries of each kind.
func (r *Result) summarize() {
	var rel, gen, loc, aRel []float64
	var aGen, aLoc, nGen, nLoc float64
	r.Rephrased, r.Localized = 0, 0
	for _, e := range r.PerEdit {
		rel, aRel = append(rel, e.Reliability), append(aRel, b2f(e.Active))
		if e.Generalization != nil {
			r.Rephrased++
			gen = append(gen, *e.Generalization)
			aGen += e.ActiveRephr * float64(e.Rephrases)
			nGen += float64(e.Rephrases)
		}
		if e.Locality != nil {
			r.Localized++
			loc = append(loc, *e.Locality)
			aLoc += e.ActiveLocal * float64(e.LocalityN)
			nLoc += float64(e.LocalityN)
		}
	}
	r.Rates = Rates{mean(rel), mean(gen), mean(loc)}
	r.Active = Rates{mean(aRel), aGen / max(nGen, 1), aLoc / max(nLoc, 1)}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// mean of xs, 0 when empty.
func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// ApplyEdits applies edits one after another; onEdit (when not nil) is
// called after each.
func ApplyEdits(ed Editor, edits []EditRequest, onEdit func(i int, st EditStats)) ([]EditStats, error) {
	stats := make([]EditStats, 0, len(edits))
	for i, e := range edits {
		st, err := ed.Edit(e)
		if err != nil {
			return stats, fmt.Errorf("edit %d (%q → %q): %w", i, e.Prompt, e.Target, err)
		}
		stats = append(stats, st)
		if onEdit != nil {
			onEdit(i, st)
		}
	}
	return stats, nil
}

// RunSequential applies edits in order and, after the first T for each T
// of checkpoints, evaluates those T (the sequential protocol: since edits
// are applied deterministically in order, this gives each T's result as a
// separate run of T edits would, with the edits done once).
func RunSequential(ed Editor, base *Base, edits []EditRequest, checkpoints []int, progress Progress) ([]*Result, error) {
	var out []*Result
	err := ApplyInStages(ed, edits, checkpoints, progress, func(T int, stats []EditStats) error {
		r, err := Evaluate(ed, base, edits[:T], progress)
		if err != nil {
			return err
		}
		r.attachStats(stats)
		out = append(out, r)
		return nil
	})
	return out, err
}

// ApplyInStages applies edits in order and calls at after the first T,
// for each T of checkpoints in increasing order, with the statistics of
// those T edits: the loop of RunSequential, for callers that evaluate in
// their own way at each stage (several routing thresholds of one memory,
// overlap histograms).
func ApplyInStages(ed Editor, edits []EditRequest, checkpoints []int, progress Progress, at func(T int, stats []EditStats) error) error {
	cps := slices.Clone(checkpoints)
	slices.Sort(cps)
	cps = slices.Compact(cps)
	if len(cps) == 0 || cps[0] < 1 || cps[len(cps)-1] > len(edits) {
		return fmt.Errorf("memoir: edit counts %v: each must be in 1..%d (the edits given)", checkpoints, len(edits))
	}
	var stats []EditStats
	for _, T := range cps {
		st, err := ApplyEdits(ed, edits[len(stats):T], func(i int, _ EditStats) {
			if progress != nil {
				progress("edit", len(stats)+i+1, cps[len(cps)-1])
			}
		})
		stats = append(stats, st...)
		if err != nil {
			return err
		}
		if err := at(T, stats[:T]); err != nil {
			return err
		}
	}
	return nil
}

// RunSingleEdits is T = 1 averaged over many runs: for each edit, the
// editor is reset to the unedited model, applies that edit alone and is
// evaluated on it (EachAlone, then CombineSingle).
func RunSingleEdits(ed Editor, base *Base, edits []EditRequest, progress Progress) (*Result, error) {
	var runs []*Result
	var stats []EditStats
	err := EachAlone(ed, edits, progress, func(i int, st EditStats) error {
		r, err := Evaluate(ed, base, edits[i:i+1], nil)
		if err != nil {
			return err
		}
		runs, stats = append(runs, r), append(stats, st)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return CombineSingle(runs, stats), nil
}

// EachAlone applies each edit alone: for each, the editor is reset to the
// unedited model, applies it, and at is called (to evaluate it); the
// editor is reset at the end.
func EachAlone(ed Editor, edits []EditRequest, progress Progress, at func(i int, st EditStats) error) error {
	if len(edits) == 0 {
		return fmt.Errorf("memoir: no edits to run")
	}
	for i, e := range edits {
		if err := ed.Reset(); err != nil {
			return err
		}
		st, err := ed.Edit(e)
		if err != nil {
			return fmt.Errorf("edit %d (%q → %q): %w", i, e.Prompt, e.Target, err)
		}
		if err := at(i, st); err != nil {
			return err
		}
		if progress != nil {
			progress("edit", i+1, len(edits))
		}
	}
	return ed.Reset()
}

// CombineSingle combines the results of single-edit runs (runs[i]
// evaluated edit i alone, stats[i] its edit) into one result with Edits 1,
// every run's scores in PerEdit and the rates their means.
func CombineSingle(runs []*Result, stats []EditStats) *Result {
	if len(runs) == 0 {
		return nil
	}
	res := &Result{Method: runs[0].Method, Layer: runs[0].Layer, Edits: 1, Scoring: runs[0].Scoring}
	for i, r := range runs {
		e := *r.PerEdit[0]
		e.Index = i
		res.PerEdit = append(res.PerEdit, &e)
		res.EvalSeconds += r.EvalSeconds
	}
	res.summarize()
	res.attachStats(stats)
	return res
}

// attachStats records the edits' statistics in the result.
func (r *Result) attachStats(stats []EditStats) {
	r.EditSeconds = 0
	for i, st := range stats {
		r.EditSeconds += st.Seconds
		if i < len(r.PerEdit) {
			e := r.PerEdit[i]
			e.EditSeconds, e.EditIters, e.EditLoss, e.EditNote = st.Seconds, st.Iterations, st.Loss, st.Note
		}
	}
	if len(stats) > 0 {
		r.SecondsPerEdit = r.EditSeconds / float64(len(stats))
	}
}

// AttachStats records edit statistics measured elsewhere (the CLI reads
// them from the memory file).
func (r *Result) AttachStats(stats []EditStats) { r.attachStats(stats) }

// Markdown renders results as a markdown table: one row per method and T.
func Markdown(results []*Result) string {
	var sb strings.Builder
	sb.WriteString("| method | T | reliability | generalization | locality | memory used (rel / gen / loc) | s / edit |\n")
	sb.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		spe := "–"
		if r.SecondsPerEdit > 0 {
			spe = fmt.Sprintf("%.2f", r.SecondsPerEdit)
		}
		rate := func(x float64, n int, format string) string {
			if n == 0 {
				return "n/a"
			}
			return fmt.Sprintf(format, x)
		}
		fmt.Fprintf(&sb, "| %s | %d | %.3f | %s | %s | %.2f / %s / %s | %s |\n",
			r.title(), r.Edits, r.Reliability, rate(r.Generalization, r.Rephrased, "%.3f"), rate(r.Locality, r.Localized, "%.3f"),
			r.Active.Reliability, rate(r.Active.Generalization, r.Rephrased, "%.2f"), rate(r.Active.Locality, r.Localized, "%.2f"), spe)
	}
	return sb.String()
}

// title names the result's row: its label, else its method.
func (r *Result) title() string {
	if r.Label != "" {
		return r.Label
	}
	return methodTitle(r.Method)
}

func methodTitle(m Method) string {
	switch m {
	case MethodMEMOIR:
		return "MEMOIR"
	case MethodGRACE:
		return "GRACE"
	case MethodFTL:
		return "FT-L"
	}
	return string(m)
}
