package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/linearize"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
)

// disentangleReport is OUT.json (and disentangle's --json result).
type disentangleReport struct {
	*eval.Disentanglement
	Base         string    `json:"base"`
	Models       [2]string `json:"models"`
	Heads        [2]string `json:"heads"`
	Split        string    `json:"split"`
	LinearizedAt string    `json:"linearized_at,omitempty"`
	// BoxMean and BoxMax summarize ξ over the grid points in [0, 1]², where
	// task arithmetic searches its coefficients.
	BoxMean float64  `json:"box_mean"`
	BoxMax  float64  `json:"box_max"`
	Outputs []string `json:"outputs"`
	Seconds float64  `json:"seconds"`
}

func (a *app) disentangleCmd() *cobra.Command {
	var (
		base, split, data, gridFlag, out string
		modelPaths, names, headPaths     []string
		limit, batch                     int
		force                            bool
		lin                              linearizeFlags
	)
	c := &cobra.Command{
		Use:   "disentangle --base B --models FT1 FT2 --dataset D1 --head H1 --dataset D2 --head H2 -o OUT",
		Short: "Weight disentanglement error ξ(α₁, α₂) of two task vectors, as JSON and a heat map",
		Long: `disentangle measures how far two task vectors τ_t = θ_t − θ₀ (θ₀ = --base,
θ_t = --models) interfere, as "Task Arithmetic in the Tangent Space"
(Ortiz-Jimenez et al., NeurIPS 2023) defines it: over a grid of (α₁, α₂),

  ξ(α₁, α₂) = Σ_t E_{x∈D_t} [ 1(argmax f(x; θ₀ + α_t τ_t) ≠ argmax f(x; θ₀ + α₁τ₁ + α₂τ₂)) ]

with D_t the examples of task t (--dataset, in the order of --models) and
its head (--head). Each term is a disagreement rate, so ξ ∈ [0, 2]; low ξ
means adding one task's vector leaves the other task's predictions alone.

--grid FROM:TO:STEP is the grid of both coefficients (default -3:3:0.25, the
paper's range). --split val (default) uses the validation examples held out
of the training set; --limit N keeps the first N of each. The preprocessed
images of the sample stay in memory for the whole run.

With --linearize-at BASE the models are evaluated linearized around BASE,
f(x; BASE) + J·(θ − BASE); linearized fine-tunes ('editkit finetune
--linearized') are by default, around the base they record. Both models of
each term are evaluated in one call of one compiled graph per grid point.

Writes OUT.json (the grid, ξ and its two terms) and OUT.png (a heat map with
a colour bar, the [0, 1]² box outlined), both or neither. Progress goes to
stderr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := time.Now()
			switch {
			case base == "":
				return errors.New("no base given: pass --base CHECKPOINT (the pre-trained model of both fine-tunes)")
			case len(modelPaths) != 2:
				return fmt.Errorf("%d --models given: pass the two fine-tuned checkpoints, --models FT1 FT2", len(modelPaths))
			case len(names) != 2 || len(headPaths) != 2:
				return fmt.Errorf("%d --dataset and %d --head given: pass --dataset and --head once per model, in the same order", len(names), len(headPaths))
			case out == "":
				return errors.New("no output given: pass -o OUT (writes OUT.json and OUT.png)")
			case batch <= 0:
				return fmt.Errorf("--batch %d: give a positive number of images", batch)
			case limit < 0:
				return fmt.Errorf("--limit %d must be ≥ 0", limit)
			}
			grid, err := parseGrid(gridFlag)
			switch {
			case err != nil:
				return err
			case len(grid) < 2 || len(grid) > 201:
				return fmt.Errorf("--grid %q gives %d points per axis: want 2 to 201", gridFlag, len(grid))
			}
			sp, err := datasets.ParseSplit(split)
			if err != nil {
				return fmt.Errorf("--split: %w", err)
			}
			outputs := disentangleOutputs(out)

			enc, err := encoder.Load(base)
			if err != nil {
				return err
			}
			defer enc.Close()
			var fts [2]*encoder.Encoder
			var weights [2]models.Weights
			for i, path := range modelPaths {
				if fts[i], err = encoder.Load(path); err != nil {
					return err
				}
				if err := checkpoint.CheckShapes(path, fts[i].Specs, base, enc.Specs); err != nil {
					return fmt.Errorf("--models %s and --base %s: %w", path, base, err)
				}
				weights[i] = fts[i].Weights
			}
			around, err := a.linearizedAll("disentangle", fts[:], lin)
			if err != nil {
				return err
			}
			var aroundW models.Weights
			rep := &disentangleReport{Base: base, Models: [2]string(modelPaths), Heads: [2]string(headPaths), Split: string(sp), Outputs: outputs}
			if around != nil {
				around.Close() // only its weights are needed
				aroundW, rep.LinearizedAt = around.Base.Weights, around.Base.Path
			}
			ts, err := loadEvalTasks(names, headPaths, sp, data, limit, enc)
			if err != nil {
				return err
			}
			p := a.newEmbProgress("disentanglement", "grid points")
			d, err := linearize.Disentangle(enc, weights, aroundW,
				[2]*datasets.Dataset{ts[0].ds, ts[1].ds}, [2]*heads.Head{ts[0].head, ts[1].head}, grid, grid,
				linearize.DisentangleOptions{BatchSize: batch, Progress: p.callback()})
			p.done()
			if err != nil {
				return err
			}
			rep.Disentanglement = d
			rep.BoxMean, rep.BoxMax = d.Box()
			title := fmt.Sprintf("ξ(α₁, α₂): %s + %s", d.Tasks[0], d.Tasks[1])
			if rep.LinearizedAt != "" {
				title += " (linearized)"
			}
			png, err := eval.PlotDisentanglement(d, title)
			if err != nil {
				return err
			}
			rep.Seconds = time.Since(start).Seconds()
			js, err := json.MarshalIndent(rep, "", "  ")
			if err != nil {
				return err
			}
			if err := checkpoint.WriteFiles(outputs, [][]byte{append(js, '\n'), png}, a.outputOptions()); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(rep)
			}
			if !a.quiet {
				fmt.Fprintf(a.stderr, "editkit: disentangle: wrote %s and %s (%d×%d grid, %d + %d examples; ξ in [0,1]²: mean %.3f, max %.3f; %.1fs)\n",
					outputs[0], outputs[1], len(grid), len(grid), d.Examples[0], d.Examples[1], rep.BoxMean, rep.BoxMax, rep.Seconds)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&base, "base", "", "pre-trained checkpoint θ₀ of both fine-tunes (required)")
	f.StringArrayVar(&modelPaths, "models", nil, "the two fine-tuned checkpoints: --models FT1 FT2 (required)")
	f.StringArrayVar(&names, "dataset", nil, "dataset of a model's task, once per model, in the order of --models")
	f.StringArrayVar(&headPaths, "head", nil, "classification head of a task, once per --dataset, in the same order")
	f.StringVar(&split, "split", "val", "split whose examples are compared: val, test, train or trainval")
	f.StringVar(&data, "data", "", "folder holding the named datasets (default $EDITKIT_DATA, else ../shared/data/vision)")
	f.IntVar(&limit, "limit", 0, "use only the first N examples of each split (0: all)")
	f.IntVar(&batch, "batch", 64, "images per call of the model")
	f.StringVar(&gridFlag, "grid", "-3:3:0.25", "coefficients of both task vectors, FROM:TO:STEP")
	f.StringVarP(&out, "output", "o", "", "output: writes OUT.json and OUT.png (OUT may end in .json) (required)")
	f.BoolVar(&force, "force", false, "replace existing outputs")
	lin.register(f)
	markPaths(f, pathInput, "base", "models", "head")
	markPaths(f, pathDataset, "dataset")
	markPaths(f, pathRoot, "data")
	markPaths(f, pathOutput, "output")
	a.derive(c, func(cmd *cobra.Command) ([]string, []checkpoint.Output, error) {
		if out == "" {
			return nil, nil, nil
		}
		var outs []checkpoint.Output
		for _, p := range disentangleOutputs(out) {
			if p != out {
				outs = append(outs, checkpoint.Output{Flag: "-o (" + filepath.Ext(p) + ")", Path: p})
			}
		}
		return nil, outs, nil
	})
	return c
}

// disentangleOutputs are the files -o OUT names: OUT.json and OUT.png
// (without a .json or .png ending OUT had).
func disentangleOutputs(out string) []string {
	stem := strings.TrimSuffix(strings.TrimSuffix(out, ".json"), ".png")
	return []string{stem + ".json", stem + ".png"}
}
