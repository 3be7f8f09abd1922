package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/eval"
)

// writeReport writes table.md (every table of the run, with intervals) and
// table.json (everything, including every search point).
func writeReport(out string, rep *report) error {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	if len(rep.Skipped) > 0 {
		w("Skipped (data missing): %s.\n\n", strings.Join(slices.Sorted(maps.Keys(rep.Skipped)), ", "))
	}
	w("Run: %.0f s, load average %s at the start and %s at the end (2 cores).\n\n", rep.Seconds["total"], rep.LoadAverage[0], rep.LoadAverage[1])
	w("Tasks are each dataset's classes that pre-training never saw (images or captions):\n\n| dataset | task classes | pre-training classes |\n|---|---|---|\n")
	for _, t := range rep.Tasks {
		c := rep.Classes[t]
		w("| %s | %s | %s |\n", t, strings.Join(c[0], ", "), strings.Join(c[1], ", "))
	}
	w("\nZero-shot accuracy is %.0f%% of fine-tuned accuracy on average (test; the papers' ViT-B/32: ~53%%).\n\n", 100*rep.ZeroShotShare)

	w("## Merging (test split)\n\nCoefficients and the best method chosen on the validation split; accuracies on the test split, ")
	w("mean over %d fine-tuning seed(s) (normalized accuracy: accuracy / the task's fine-tuned accuracy).\n\n", rep.Settings.Seeds)
	b.WriteString(rep.Table.Markdown())
	w("\nBest method on validation (mean normalized validation accuracy over seeds): **%s**.\n", rep.Best)
	w("\nLiNeS's effect, each method with LiNeS minus without, average test accuracy (paired 95%% interval):")
	for _, mm := range methods() {
		if iv, ok := rep.LinesEffect[mm.Name]; ok && !mm.Lines {
			w(" %s %+.1f [%+.1f, %+.1f];", mm.Name, 100*iv.Value, 100*iv.Lo, 100*iv.Hi)
		}
	}
	w("\n")
	b.WriteString(rep.Table.MarkdownIntervals())

	w("\nValidation: mean normalized accuracy at each seed's chosen coefficient (what chooses the best method):\n\n| method | validation score | chosen per seed |\n|---|---:|---|\n")
	for _, m := range rep.Merges {
		var ch []string
		for _, r := range m.Seeds {
			switch {
			case r.Coefficient == "none":
				ch = append(ch, "—")
			default:
				ch = append(ch, fmt.Sprintf("%s=%g", r.Coefficient, r.Chosen))
			}
			if r.Tall != nil {
				ch[len(ch)-1] += fmt.Sprintf(" (TALL λ_t %v)", r.Tall.Lambdas)
			}
		}
		w("| %s | %.3f | %s |\n", m.Name, m.ValScore, strings.Join(ch, "; "))
	}

	if c := rep.LR; c != nil {
		w("\n## Fine-tuning learning rate (first seed, validation)\n\nPre-training peak learning rate %g.\n\n| fine-tuning lr | ratio to pre-training | fine-tuned (mean) | task arithmetic (mean) | λ |\n|---:|---:|---:|---:|---:|\n", c.PreLR)
		for i, lr := range c.Tried {
			w("| %g | 1/%.0f | %.2f | %.2f | %g |\n", lr, c.PreLR/lr, 100*c.FinetuneVal[i], 100*c.MergedVal[i], c.Lambda[i])
		}
		w("\nKept: %g (the higher merged validation accuracy).\n", c.Chosen)
	}
	for _, lr := range rep.LR.Tried {
		label := lrLabel(lr)
		v, in := rep.Vectors[label], rep.Interference[label]
		if v == nil || in == nil {
			continue
		}
		w("\n### Task vectors at %s (first seed)\n\n‖τ_t‖/‖θ₀‖ over the image encoder:", label)
		for _, t := range rep.Tasks {
			w(" %s %.4f;", t, v.NormRatio[t])
		}
		w("\n\nCosine between task vectors:\n\n| | %s |\n|---|%s\n", strings.Join(rep.Tasks, " | "), strings.Repeat("---:|", len(rep.Tasks)))
		for _, s := range rep.Tasks {
			w("| %s |", s)
			for _, t := range rep.Tasks {
				w(" %.3f |", v.Cosine[s][t])
			}
			w("\n")
		}
		w("\nInterference (validation): each task along its own vector θ₀ + λτ, and the change under another task's vector alone, θ₀ + %gτ_u:\n\n| task |", in.CrossLambda)
		for _, l := range in.Lambdas {
			w(" λ = %g |", l)
		}
		for _, u := range rep.Tasks {
			w(" τ %s |", u)
		}
		w("\n|---|%s\n", strings.Repeat("---:|", len(in.Lambdas)+len(rep.Tasks)))
		for _, t := range rep.Tasks {
			w("| %s |", t)
			for _, a := range in.Own[t] {
				w(" %.1f |", 100*a)
			}
			for _, u := range rep.Tasks {
				if u == t {
					w(" |")
					continue
				}
				w(" %+.1f |", 100*(in.Cross[t][u]-in.Own[t][0]))
			}
			w("\n")
		}
	}

	if n := rep.Negation; n != nil {
		w("\n## Task negation of %s (control %s), λ = %g\n\n", n.Target, n.Control, n.Lambda)
		w("Target: the first dataset's pre-training classes, which the pre-trained model knows; τ fine-tuned on them. Control: the second dataset's pre-training classes, kept ≥ 95%% of the pre-trained model's validation accuracy. Deviation: the papers' control is ImageNet.\n\n")
		b.WriteString(n.Table.Markdown())
		b.WriteString(n.Table.MarkdownIntervals())
		w("\nControl kept at %.1f%% of the pre-trained model's accuracy (test).\n", n.ControlKeptPercent)
	}
	if l := rep.SingleLines; l != nil {
		w("\n## Single-task LiNeS on %s against uniform scaling at equal target accuracy\n\n", l.Target)
		w("LiNeS α = %g (β = 1 − α) chosen by 2·target + mean control normalized validation accuracy; uniform λ = %g chosen for the validation target accuracy closest to LiNeS's. Controls: every dataset's pre-training classes.\n\n", l.Alpha, l.Lambda)
		b.WriteString(l.Table.Markdown())
		b.WriteString(l.Table.MarkdownIntervals())
		w("\nLiNeS − uniform (test, paired 95%% intervals): target %+.1f [%+.1f, %+.1f] points, mean of the controls %+.1f [%+.1f, %+.1f] points.\n",
			100*l.TargetDiff.Value, 100*l.TargetDiff.Lo, 100*l.TargetDiff.Hi, 100*l.ControlDiff.Value, 100*l.ControlDiff.Lo, 100*l.ControlDiff.Hi)
	}
	if tg := rep.Tangent; tg != nil {
		writeTangent(&b, rep, tg)
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := checkpoint.WriteFileAtomic(filepath.Join(out, "table.md"), []byte(b.String())); err != nil {
		return err
	}
	return checkpoint.WriteFileAtomic(filepath.Join(out, "table.json"), js)
}

// The published ViT-B/32 numbers of "Task Arithmetic in the Tangent
// Space" (8 tasks; a later reproduction, shared/notes/methods.md): single-
// task accuracy, addition absolute and normalized, negation target and
// control.
var paperTangent = []struct {
	mode                                  string
	single, abs, norm, negTarget, negCtrl float64
}{
	{modeNonLinear, 90.5, 70.3, 77.6, 25.1, 63.9},
	{modeLinearized, 87.3, 74.7, 85.3, 11.5, 64.0},
}

// writeTangent renders the tangent-space comparison.
func writeTangent(b *strings.Builder, rep *report, tg *tangentRecord) {
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("\n## Tangent space: non-linear FT, linearized FT, post-hoc linearization\n\n")
	w("First %d fine-tuning seed(s), test split. ", tg.Seeds)
	w("Linearized FT trains θ of f_lin(x; θ) = f(x; θ₀) + J·(θ − θ₀) with the same recipe; ")
	w("post-hoc linearization evaluates the non-linear fine-tunes (and their sums) through f_lin. Task addition: one α on the summed task vectors, ")
	w("chosen on validation by mean normalized accuracy, normalized by the same mode's single-task accuracy. Negation: θ₀ − λτ of each dataset's ")
	w("pre-training classes (the next dataset's as control), the λ with the lowest target accuracy keeping the control ≥ 95%% of the pre-trained model's.\n\n")
	w("| mode | single-task | addition abs | addition norm | α | negation target | negation control |\n|---|---:|---:|---:|---|---:|---:|\n")
	for _, m := range tg.Modes {
		w("| %s | %.1f | %.1f | %.1f | %v | %.1f | %.1f |\n", m.Mode, 100*mean(m.Single), 100*m.AdditionAbs, 100*m.AdditionNorm, chosenOf(m.Addition), 100*m.NegTarget, 100*m.NegControl)
	}
	var pre [2]float64
	for _, n := range tg.Modes[0].Negation {
		pre[0] += n.PreTarget / float64(len(tg.Modes[0].Negation))
		pre[1] += n.PreControl / float64(len(tg.Modes[0].Negation))
	}
	zs := 100 * tg.Single.Rows[0].MeanAccuracy // the zero-shot row: θ₀ is also addition's α = 0
	w("| pre-trained (zero-shot) | %.1f | %.1f | | | %.1f | %.1f |\n", zs, zs, 100*pre[0], 100*pre[1])
	for _, p := range paperTangent {
		w("| *paper, ViT-B/32, 8 tasks: %s* | *%.1f* | *%.1f* | *%.1f* | | *%.1f* | *%.1f* |\n", p.mode, p.single, p.abs, p.norm, p.negTarget, p.negCtrl)
	}
	w("\n")
	for _, tab := range []*eval.Table{tg.Single, tg.Addition} {
		b.WriteString(tab.Markdown())
		b.WriteString(tab.MarkdownIntervals())
	}
	w("\nNegation by task (test; λ chosen on validation):\n\n| mode | target | control | λ | target (pre-trained → negated) | control (pre-trained → negated) |\n|---|---|---|---:|---:|---:|\n")
	for _, m := range tg.Modes {
		for _, n := range m.Negation {
			w("| %s | %s | %s | %g | %.1f → %.1f | %.1f → %.1f |\n", m.Mode, n.Target, n.Control, n.Lambda, 100*n.PreTarget, 100*n.TargetAcc, 100*n.PreControl, 100*n.ControlAcc)
		}
	}
	w("\nWeight disentanglement error ξ(α₁, α₂) of the first seed's task vectors (validation; heat maps in %s):\n\n| mode | mean ξ on [0, 1]² | max ξ on [0, 1]² | mean ξ on the grid |\n|---|---:|---:|---:|\n", strings.Join(tg.Plots, ", "))
	for _, m := range []string{modeNonLinear, modeLinearized} {
		if x := tg.Xi[m]; x != nil {
			w("| %s | %.3f | %.3f | %.3f |\n", m, x.BoxMean, x.BoxMax, x.GridMean)
		}
	}
	if l := tg.NTK; l != nil {
		w("\nNTK eigenfunction localization: the empirical NTK of the pre-trained encoder's features (trace over outputs) on %d %s and %d %s validation images, pooled. ", l.Examples[0], l.Tasks[0], l.Examples[1], l.Tasks[1])
		w("Its top %d eigenvectors put on average %.0f%% of their energy on one task (%.0f%% if spread evenly). Share on %s, by eigenvector (largest eigenvalue first):", len(l.Share), 100*l.Localized, 100*l.Even, l.Tasks[0])
		for _, sh := range l.Share {
			w(" %.2f", sh[0])
		}
		w(".\n")
	}
}
