package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/editkit/editkit/checkpoint"
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
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := checkpoint.WriteFileAtomic(filepath.Join(out, "table.md"), []byte(b.String())); err != nil {
		return err
	}
	return checkpoint.WriteFileAtomic(filepath.Join(out, "table.json"), js)
}
