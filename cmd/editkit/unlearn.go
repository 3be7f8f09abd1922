package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/train"
	"github.com/editkit/editkit/unlearn"
)

func (a *app) unlearnCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "unlearn",
		Short: "Remove a backdoor from an image encoder (TBAR), or invert an unknown trigger (DECREE)",
		Long: `unlearn removes backdoors from CLIP image encoders (and classifiers fine-tuned
from them) in weight space.

  tbar    estimates the trigger's task vector from a few triggered images and
          subtracts it (Abdelraheem et al., "Backdoor Unlearning by Linear Task
          Decomposition", arXiv 2510.14845)
  invert  reverse-engineers an unknown trigger from clean images (DECREE, Feng
          et al., CVPR 2023), for 'tbar --trigger inverted:FILE'

Only the image encoder is edited; a CLIP text tower is copied unchanged.`,
		Args: cobra.NoArgs,
	}
	c.AddCommand(a.unlearnTBARCmd(), a.unlearnInvertCmd())
	return c
}

// tbarSummary is unlearn tbar's --json result: the library's record with
// the output paths.
type tbarSummary struct {
	Command string `json:"command"`
	Output  string `json:"output"`
	Record  string `json:"record"`
	Plot    string `json:"plot"`
	*unlearn.TBARResult
}

// recordPaths are the record and plot written beside a TBAR output.
func recordPaths(out string) (js, png string) {
	stem := strings.TrimSuffix(strings.TrimRight(out, string(os.PathSeparator)), ".safetensors")
	return stem + ".tbar.json", stem + ".tbar.png"
}

func (a *app) unlearnTBARCmd() *cobra.Command {
	var (
		o                                   outFlags
		model, dataset, headPath, data      string
		spec, from, base, alphas            string
		target, examples, valLimit          int
		lr, wd, clipNorm, floor             float64
		alphaStep, alphaMax                 float64
		batch, epochs, steps, warmup, evalB int
		seed                                uint64
		linearized                          bool
		keepFT                              string
	)
	c := &cobra.Command{
		Use:   "tbar --model BACKDOORED --dataset D --head H --trigger SPEC --target C -o CLEAN",
		Short: "Remove a backdoor by trigger-vector negation (TBAR)",
		Long: `tbar removes a backdoor from the image encoder of --model, as TBAR does
(arXiv 2510.14845):

 1. a triggered set: --examples N images of the training split (default 2% of
    it, at least 100), drawn with --seed from every class, with the trigger
    applied and labelled with the target class C;
 2. fine-tune on it through the frozen --head, from the backdoored model (the
    paper's setting, --from backdoored) or from the clean pre-trained model
    (--from pretrained --base PRE): the trigger vector τ = θ_ft − θ_start;
 3. θ_clean = θ_backdoored − α·τ, with α chosen on the validation split: the
    lowest attack success rate (ASR, on the triggered validation images not
    of class C) among the α whose clean accuracy (CA) is at least --floor
    (0.95) of the backdoored model's, ties to the higher CA. α runs over
    --alphas (0, 0.05, …, 1), then on by --alpha-step while CA stays above the
    floor, up to --alpha-max.

The output holds every tensor of --model, the image encoder's replaced by
θ_clean, with the head beside it in a folder output; CLEAN.tbar.json (the
record: every α with its CA and ASR, the fine-tuning, the choice) and
CLEAN.tbar.png (CA and ASR against α) are written beside it.
--keep-finetuned DIR keeps the model fine-tuned on the triggered set, so
that 'editkit taskvector --base START --finetuned DIR' gives the trigger
vector itself.

--linearized fine-tunes in the tangent space of the start model
(Ortiz-Jimenez et al., NeurIPS 2023; see 'editkit finetune --help'): τ is
the linearized fine-tune's θ less the start's. θ_clean = θ_backdoored − α·τ
is measured and written as an ordinary model (editkit's choice: the paper's
handling of linearized trigger vectors is not public).

The fine-tuning recipe defaults to editkit's (AdamW, --lr 1e-5, --wd 0.1,
--batch 128, cosine schedule, --clip 1) for --epochs 10 with 10% of the
steps as warm-up; the paper's own schedule is not public. With an inverted
trigger (--trigger inverted:FILE from 'editkit unlearn invert'), --target
defaults to the class the inversion estimated.

` + triggerHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := time.Now()
			switch {
			case model == "":
				return errors.New("no --model given: pass the backdoored checkpoint")
			case dataset == "" || headPath == "":
				return errors.New("give the task's --dataset and its --head (from 'editkit head')")
			case spec == "":
				return errors.New("no --trigger given: pass the attack's trigger spec, or inverted:FILE from 'editkit unlearn invert'")
			case examples < 0 || valLimit < 0:
				return errors.New("--examples and --val-limit must be ≥ 0")
			case cmd.Flags().Changed("epochs") && steps > 0:
				return errors.New("give --epochs or --steps, not both")
			}
			if _, err := o.options(); err != nil {
				return err
			}
			trig, err := unlearn.ParseTrigger(spec)
			if err != nil {
				return fmt.Errorf("--trigger: %w", err)
			}
			if target < 0 {
				if inv, ok := trig.(*unlearn.Inverted); ok {
					if t, err := strconv.Atoi(inv.Metadata[unlearn.MetaTarget]); err == nil && t >= 0 {
						target = t
						a.embNotice("unlearn tbar: target class %d, as estimated by the inversion (%s)", t, inv.File)
					}
				}
			}
			if target < 0 {
				return errors.New("no --target given: pass the class the attack sends triggered images to")
			}
			var fr unlearn.From
			switch from {
			case "backdoored":
				fr = unlearn.FromBackdoored
				if base != "" {
					return errors.New("--base is the pre-trained model to fine-tune with --from pretrained")
				}
			case "pretrained":
				fr = unlearn.FromPretrained
				if base == "" {
					return errors.New("--from pretrained needs --base PRE, the clean pre-trained checkpoint")
				}
			default:
				return fmt.Errorf("--from %q: use backdoored or pretrained", from)
			}
			grid := eval.Grid(0, 1, unlearn.DefaultAlphaStep)
			if alphas != "" {
				if grid, err = parseFloats("alphas", alphas); err != nil {
					return err
				}
			}
			recJSON, recPNG := recordPaths(o.out)
			head, err := heads.Load(headPath)
			if err != nil {
				return err
			}
			dopts := datasets.Options{DataDir: data}
			src, err := datasets.Open(dataset, dopts)
			if err != nil {
				return err
			}
			trainSet, err := src.Split(datasets.Train)
			if err != nil {
				return err
			}
			val, err := src.Split(datasets.Validation)
			if err != nil {
				return err
			}
			val = val.Sample(valLimit, seed)
			ft := train.Options{}
			if cmd.Flags().Changed("lr") || cmd.Flags().Changed("wd") || cmd.Flags().Changed("batch") || cmd.Flags().Changed("epochs") ||
				cmd.Flags().Changed("steps") || cmd.Flags().Changed("warmup") || cmd.Flags().Changed("clip") {
				n := examples
				if n == 0 {
					n = unlearn.TBARExamples(trainSet.Len())
				}
				ft = unlearn.TBARRecipe(n)
				ft.LearningRate, ft.WeightDecay, ft.BatchSize, ft.ClipNorm = lr, wd, batch, clipNorm
				if steps > 0 {
					ft.Epochs, ft.Steps = 0, steps
				} else {
					ft.Epochs = epochs
				}
				if cmd.Flags().Changed("warmup") {
					ft.Warmup = warmup
				}
			}
			ft.Seed = seed
			scratch, remove, err := checkpoint.TempBeside(o.out) // the fine-tune and the unit merge, removed on a signal
			if err != nil {
				return err
			}
			defer remove()
			p := a.newTrainProgress("tbar fine-tuning")
			ft.Progress = p.callback()
			opts := unlearn.TBAROptions{Model: model, Base: base, Head: head, Train: trainSet, Val: val, Trigger: trig, Target: target,
				Examples: examples, From: fr, Linearized: linearized, Finetune: ft, Floor: floor, Alphas: grid, AlphaStep: alphaStep, AlphaMax: alphaMax, Seed: seed, KeepFinetuned: keepFT, ScratchDir: scratch,
				Eval: eval.Options{BatchSize: evalB},
				OnPoint: func(pt eval.Point) {
					p.done()
					a.embNotice("unlearn tbar: α = %g: CA %.2f%%, ASR %.2f%% (validation)", pt.Coef, 100*pt.Accuracy[unlearn.MetricCA], 100*pt.Accuracy[unlearn.MetricASR])
				}}
			res, err := unlearn.TBAR(opts)
			p.done()
			if err != nil {
				return err
			}
			meta := map[string]string{
				"editkit.tbar.trigger": trig.String(),
				"editkit.tbar.target":  strconv.Itoa(target),
				"editkit.tbar.from":    string(fr),
				"editkit.tbar.alpha":   strconv.FormatFloat(res.Alpha, 'g', -1, 64),
				"editkit.tbar.recipe":  res.FinetuneRecipe,
			}
			wo, _ := o.options()
			headBytes, err := os.ReadFile(headPath)
			if err != nil {
				return err
			}
			js, err := json.MarshalIndent(res, "", "  ")
			if err != nil {
				return err
			}
			png, err := eval.PlotSearch(res.Search, fmt.Sprintf("TBAR on %s: CA and ASR against α (chosen %g)", val.Name(), res.Alpha), "α")
			if err != nil {
				return err
			}
			if err := train.WriteFinetuned(model, o.out, res.Weights, train.WriteOptions{DType: o.dtype, ShardSize: wo.ShardSize, Force: o.force, Metadata: meta,
				SideFiles: map[string][]byte{"head.safetensors": headBytes}}); err != nil {
				return err
			}
			if err := a.writeFile(recJSON, js); err != nil {
				return err
			}
			if err := a.writeFile(recPNG, png); err != nil {
				return err
			}
			res.Seconds = time.Since(start).Seconds()
			if a.json {
				return a.printJSON(tbarSummary{Command: "unlearn tbar", Output: o.out, Record: recJSON, Plot: recPNG, TBARResult: res})
			}
			if !a.quiet {
				fmt.Fprintf(a.stderr, "editkit: unlearn tbar: wrote %s (α = %g; validation CA %.2f%% → %.2f%%, ASR %.2f%% → %.2f%%; trigger vector from the %s model on %d triggered images, %d steps; %.1fs)\n",
					o.out, res.Alpha, 100*res.Backdoored.CA, 100*res.Cleaned.CA, 100*res.Backdoored.ASR, 100*res.Cleaned.ASR, fr, res.Examples, res.FinetuneSteps, res.Seconds)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&model, "model", "", "the backdoored checkpoint (required)")
	f.StringVar(&dataset, "dataset", "", "the task's dataset name or folder (required)")
	f.StringVar(&headPath, "head", "", "the task's classification head, from 'editkit head' (required)")
	f.StringVar(&data, "data", "", "folder holding the datasets (default $EDITKIT_DATA, else ../shared/data/vision)")
	f.StringVar(&spec, "trigger", "", "the attack's trigger spec, or inverted:FILE (required)")
	f.IntVar(&target, "target", -1, "the attack's target class (default with an inverted trigger: the class it estimated)")
	f.IntVar(&examples, "examples", 0, "N, the triggered training images (0: 2% of the training split, at least 100)")
	f.StringVar(&from, "from", "backdoored", "fine-tune the trigger vector from the backdoored model or from the pretrained one (--base)")
	f.StringVar(&base, "base", "", "the clean pre-trained checkpoint, with --from pretrained")
	f.BoolVar(&linearized, "linearized", false, "fine-tune the trigger vector in the tangent space of the start model (the cleaned model stays an ordinary one)")
	f.Float64Var(&floor, "floor", unlearn.DefaultFloor, "share of the backdoored model's validation clean accuracy a chosen α keeps")
	f.StringVar(&alphas, "alphas", "", "first α values tried, comma-separated (default 0, 0.05, …, 1)")
	f.Float64Var(&alphaStep, "alpha-step", unlearn.DefaultAlphaStep, "step of α after --alphas while the clean accuracy stays above the floor")
	f.Float64Var(&alphaMax, "alpha-max", unlearn.DefaultAlphaMax, "largest α tried")
	f.IntVar(&valLimit, "val-limit", 0, "measure α on N validation images drawn with --seed (0: all)")
	f.Float64Var(&lr, "lr", 1e-5, "fine-tuning: peak learning rate")
	f.Float64Var(&wd, "wd", 0.1, "fine-tuning: AdamW's decoupled weight decay")
	f.IntVar(&batch, "batch", 128, "fine-tuning: batch size")
	f.IntVar(&epochs, "epochs", unlearn.DefaultTBAREpochs, "fine-tuning: epochs over the triggered set (or --steps)")
	f.IntVar(&steps, "steps", 0, "fine-tuning: steps (instead of --epochs)")
	f.IntVar(&warmup, "warmup", 0, "fine-tuning: warm-up steps (default 10% of the steps)")
	f.Float64Var(&clipNorm, "clip", 1.0, "fine-tuning: clip the gradient's global L2 norm to this (0: no clipping)")
	f.Uint64Var(&seed, "seed", 0, "seed of the triggered set, the data order and --val-limit's draw")
	f.IntVar(&evalB, "eval-batch", 128, "images per forward pass when measuring α")
	f.StringVar(&keepFT, "keep-finetuned", "", "also keep the model fine-tuned on the triggered set here (its difference with the start is the trigger vector)")
	o.register(f, "dtype of the output's float tensors (default: each tensor's dtype in the input)")
	markPaths(f, pathInput, "model", "dataset", "head", "base")
	markPaths(f, pathRoot, "data")
	markPaths(f, pathOutput, "keep-finetuned")
	for name, iv := range map[string]string{"floor": "(0, 1]", "alpha-step": "[0, inf)", "alpha-max": "[0, inf)", "lr": "(0, inf)", "wd": "[0, inf)", "clip": "[0, inf)"} {
		markRange(f, name, iv)
	}
	a.derive(c, func(cmd *cobra.Command) ([]string, []checkpoint.Output, error) {
		ins, _, err := triggerInputs("trigger")(cmd)
		if err != nil || o.out == "" {
			return ins, nil, err
		}
		js, png := recordPaths(o.out)
		return ins, []checkpoint.Output{{Flag: "the TBAR record", Path: js}, {Flag: "the TBAR plot", Path: png}}, nil
	})
	return c
}

// invertSummary is unlearn invert's --json result.
type invertSummary struct {
	Command string `json:"command"`
	Output  string `json:"output"`
	Model   string `json:"model"`
	Dataset string `json:"dataset"`
	*unlearn.InvertResult
}

func (a *app) unlearnInvertCmd() *cobra.Command {
	var (
		o                              outFlags
		model, dataset, headPath, data string
		split                          string
		examples, batch, epochs        int
		lr, threshold                  float64
		seed                           uint64
	)
	c := &cobra.Command{
		Use:   "invert --model BACKDOORED --dataset D [--head H] -o TRIGGER.safetensors",
		Short: "Reverse-engineer an unknown trigger from clean images (DECREE)",
		Long: `invert runs DECREE (Feng et al., "Detecting Backdoors in Pre-trained
Encoders", CVPR 2023; GiantSeaweed/DECREE) on the image encoder of --model:
from --examples clean images of the dataset (labels unused), it optimises a
mask m (H×W, in [0, 1]) and a pattern p at the images' own resolution so that
the embeddings of (1 − m)⊙x + m⊙p become nearly identical (mean pairwise
cosine above --threshold), while the mask's L1 norm is kept small with
DECREE's adaptive penalty. The result's PL1 norm, ‖m‖₁/(H·W), is DECREE's
detection score: a backdoored encoder collapses its embeddings with a small
trigger, a clean one only by covering much of the image. With --head, the
class the triggered images fall into is reported as the estimated target.

The output is a .safetensors file (mask [H, W], pattern [H, W, 3] in 0…255,
the scores in its metadata) that 'editkit unlearn tbar --trigger
inverted:FILE' and every other --trigger flag take. The defaults are
DECREE's CLIP settings (Adam lr 0.5 with β (0.5, 0.9), batch 32, threshold
0.99, at most 1000 epochs with early stopping), except --examples (1000).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := time.Now()
			switch {
			case model == "":
				return errors.New("no --model given: pass the encoder to inspect")
			case dataset == "":
				return errors.New("no --dataset given: pass a dataset of clean images (name or folder)")
			case o.out == "":
				return errors.New("no output given: pass -o TRIGGER.safetensors")
			case !strings.HasSuffix(o.out, ".safetensors"):
				return fmt.Errorf("-o %s: the trigger is written as a .safetensors file; end the name in .safetensors", o.out)
			case examples < 2 || batch < 2 || epochs < 1:
				return fmt.Errorf("--examples %d, --batch %d, --epochs %d: need at least 2 images, batches of 2 and 1 epoch", examples, batch, epochs)
			case !(lr > 0) || !(threshold > 0 && threshold <= 1):
				return fmt.Errorf("--lr %v, --threshold %v: want lr > 0 and a threshold in (0, 1]", lr, threshold)
			}
			sp, err := datasets.ParseSplit(split)
			if err != nil {
				return fmt.Errorf("--split: %w", err)
			}
			enc, err := encoder.Load(model)
			if err != nil {
				return err
			}
			defer enc.Close()
			ds, err := datasets.Load(dataset, sp, datasets.Options{DataDir: data})
			if err != nil {
				return err
			}
			io := unlearn.InvertOptions{Examples: examples, BatchSize: batch, LR: lr, Epochs: epochs, Threshold: threshold, Seed: seed}
			if headPath != "" {
				if io.Head, err = heads.Load(headPath); err != nil {
					return err
				}
				if err := train.CheckHead(enc, io.Head, ds, true); err != nil {
					return fmt.Errorf("%s and %s: %w", headPath, model, err)
				}
			}
			last := time.Now()
			io.Progress = func(e unlearn.InvertEpoch) {
				if time.Since(last) >= logEvery || e.Epoch == 0 {
					last = time.Now()
					a.embNotice("unlearn invert: epoch %d: cosine %.4f, ‖m‖₁ %.1f (best %.1f), λ %.2g", e.Epoch+1, e.Cosine, e.L1, e.BestL1, e.Lambda)
				}
			}
			res, err := unlearn.Invert(enc, ds, io)
			if err != nil {
				return err
			}
			meta := map[string]string{
				unlearn.MetaPL1:    strconv.FormatFloat(res.PL1, 'g', 6, 64),
				unlearn.MetaFound:  strconv.FormatBool(res.Found),
				unlearn.MetaCosine: strconv.FormatFloat(res.Cosine, 'g', 6, 64),
				"editkit.model":    model,
				"editkit.dataset":  ds.Name(),
				"editkit.decree":   fmt.Sprintf("examples=%d batch=%d lr=%g threshold=%g epochs=%d steps=%d seed=%d", res.Examples, batch, lr, threshold, res.Epochs, res.Steps, seed),
			}
			if res.Target >= 0 {
				meta[unlearn.MetaTarget] = strconv.Itoa(res.Target)
				meta["editkit.target_share"] = strconv.FormatFloat(res.TargetShare, 'g', 6, 64)
			}
			if err := res.Trigger.Save(o.out, meta, a.outputOptions().Inputs, o.force); err != nil {
				return err
			}
			res.Seconds = time.Since(start).Seconds()
			if a.json {
				return a.printJSON(invertSummary{Command: "unlearn invert", Output: o.out, Model: model, Dataset: ds.Name(), InvertResult: res})
			}
			if !a.quiet {
				found := ""
				if !res.Found {
					found = fmt.Sprintf(" (no step reached the cosine threshold %g: this is the last mask)", threshold)
				}
				tgt := ""
				if res.Target >= 0 {
					tgt = fmt.Sprintf(", estimated target class %d (%s, %.0f%% of the triggered images)", res.Target, io.Head.Classes[res.Target], 100*res.TargetShare)
				}
				fmt.Fprintf(a.stderr, "editkit: unlearn invert: wrote %s: PL1 norm %.4f%s%s; %d epochs, %.1fs\n", o.out, res.PL1, found, tgt, res.Epochs, res.Seconds)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&model, "model", "", "the encoder to inspect (required)")
	f.StringVar(&dataset, "dataset", "", "dataset of clean images, name or folder (required)")
	f.StringVar(&split, "split", "train", "split the images are drawn from")
	f.StringVar(&headPath, "head", "", "a classification head: also estimate the attack's target class")
	f.StringVar(&data, "data", "", "folder holding the datasets (default $EDITKIT_DATA, else ../shared/data/vision)")
	f.IntVar(&examples, "examples", unlearn.DefaultInvertExamples, "clean images drawn with --seed")
	f.IntVar(&batch, "batch", unlearn.DefaultInvertBatch, "images per step")
	f.Float64Var(&lr, "lr", unlearn.DefaultInvertLR, "Adam's learning rate (then 0.1 from epoch 200, 0.05 from epoch 500, as DECREE)")
	f.IntVar(&epochs, "epochs", unlearn.DefaultInvertEpochs, "most epochs (DECREE stops early once the mask stops shrinking)")
	f.Float64Var(&threshold, "threshold", unlearn.DefaultInvertThreshold, "mean pairwise cosine a trigger must reach")
	f.Uint64Var(&seed, "seed", 0, "seed of the images drawn, their order and the initial mask")
	f.StringVarP(&o.out, "output", "o", "", "output trigger file, .safetensors (required)")
	f.BoolVar(&o.force, "force", false, "replace the output if it exists")
	markPaths(f, pathInput, "model", "dataset", "head")
	markPaths(f, pathRoot, "data")
	markPaths(f, pathOutput, "output")
	markRange(f, "lr", "(0, inf)")
	markRange(f, "threshold", "(0, 1]")
	return c
}
