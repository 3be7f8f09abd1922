package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/linearize"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/train"
	"github.com/editkit/editkit/unlearn"
)

// finetuneSummary is finetune's --json result.
type finetuneSummary struct {
	Command      string   `json:"command"`
	Output       string   `json:"output"`
	Model        string   `json:"model"`
	Family       string   `json:"family"`
	Head         string   `json:"head"`
	Dataset      string   `json:"dataset"`
	Split        string   `json:"split"`
	Examples     int      `json:"examples"`
	Steps        int      `json:"steps"`
	Epochs       int      `json:"epochs"`
	LearningRate float64  `json:"lr"`
	WeightDecay  float64  `json:"weight_decay"`
	BatchSize    int      `json:"batch_size"`
	Warmup       int      `json:"warmup"`
	ClipNorm     float64  `json:"clip_norm"`
	Seed         uint64   `json:"seed"`
	Linearized   bool     `json:"linearized,omitempty"`
	FinalLoss    float64  `json:"final_loss"`
	MeanLoss     float64  `json:"mean_loss_last_50"`
	StepsPerSec  float64  `json:"steps_per_sec"`
	TrainSeconds float64  `json:"train_seconds"`
	Poison       string   `json:"poison,omitempty"`
	PoisonRate   float64  `json:"poison_rate,omitempty"`
	Target       *int     `json:"target,omitempty"`
	Poisoned     int      `json:"poisoned,omitempty"`
	ValAccuracy  *float64 `json:"val_accuracy,omitempty"`
	ValExamples  int      `json:"val_examples,omitempty"`
	Seconds      float64  `json:"seconds"`
	Saturated    int64    `json:"saturated,omitempty"`
}

func (a *app) finetuneCmd() *cobra.Command {
	var (
		o                              outFlags
		model, headPath, dataset, data string
		split                          string
		lr, wd, clipNorm               float64
		batch, epochs, steps, warmup   int
		limit, workers                 int
		seed                           uint64
		evalVal, ignoreNames           bool
		poison                         string
		poisonRate                     float64
		target                         int
		linearized                     bool
	)
	c := &cobra.Command{
		Use:   "finetune --model DIR --head HEAD.safetensors --dataset NAME (--epochs E | --steps S) -o OUT",
		Short: "Fine-tune an image encoder through a frozen head (the task-vectors recipe)",
		Long: `finetune trains the image encoder of a checkpoint (a Hugging Face ViT, or the
image tower of a CLIP model in Hugging Face or OpenAI naming) on a dataset's
training split through a frozen classification head (from 'editkit head'),
as the task-vectors papers fine-tune CLIP (mlfoundations/task_vectors
src/finetune.py): softmax cross-entropy, AdamW with decoupled weight decay on
every encoder tensor, a learning rate warmed up linearly over --warmup steps
then decayed to 0 on a cosine, the gradient's global norm clipped to --clip.
The defaults are the reference's: --lr 1e-5, --wd 0.1, --batch 128,
--warmup 500, --clip 1.0. Give the length as --epochs (the reference: MNIST 5,
GTSRB 11, EuroSAT 12, SVHN 4, ...) or --steps.

Only the image tower is trained: a CLIP text tower and logit_scale, and a
ViT's own classifier, are copied unchanged. The output holds every tensor of
the input under the same names, shapes and dtypes (--dtype converts all float
tensors; a bfloat16 input fine-tuned at small learning rates may want
--dtype float32, as bfloat16 rounds small updates away), with the config
files, so that 'editkit taskvector --base MODEL --finetuned OUT' works as is;
a folder output also gets the frozen head as head.safetensors.

The training split is the training set less the validation split, which is
` + validationHelp + `
--split trainval trains on all of it, --limit N
on N examples drawn at random (--seed). --eval-val reports the fine-tuned
model's accuracy on the validation split. The data order is shuffled anew
each epoch from --seed: two runs with the same flags train the same model.

--linearized fine-tunes in the tangent space of the model (Ortiz-Jimenez et
al., "Task Arithmetic in the Tangent Space", NeurIPS 2023): it trains θ of
f_lin(x; θ) = f(x; θ₀) + J_θ f(x; θ₀)(θ − θ₀), the encoder's first-order
expansion around its own weights θ₀, with the same recipe (weight decay
pulls θ toward 0, as the reference's AdamW does). The output is an ordinary
checkpoint of θ (same names, shapes, dtypes; θ₀ is not stored again) whose
metadata records that it is linearized and around which base (path and
SHA-256 of its tensors); eval and embed then evaluate it linearized around
that base. A linearized fine-tune is not linearized again (that would
linearize around its own weights): fine-tune its base.

--poison SPEC --target C implants a backdoor, for testing defenses: a share
--poison-rate (default 0.1) of the training examples, drawn from those whose
class is not C (seeded by --seed), get the trigger SPEC on their raw image
and the label C (see 'editkit backdoor apply --help' for trigger specs).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := time.Now()
			switch {
			case model == "":
				return errors.New("no model given: pass --model CHECKPOINT (a ViT or CLIP checkpoint folder or .safetensors file)")
			case headPath == "":
				return errors.New("no head given: pass --head HEAD.safetensors (build one with 'editkit head zeroshot' or 'editkit head probe')")
			case dataset == "":
				return errors.New("no dataset given: pass --dataset NAME (see 'editkit embed --help' for where datasets are found)")
			case epochs > 0 && steps > 0:
				return errors.New("give --epochs or --steps, not both")
			case epochs <= 0 && steps <= 0:
				return errors.New("give the length of the run: --epochs E or --steps S")
			case limit < 0:
				return fmt.Errorf("--limit %d: want ≥ 0", limit)
			}
			if _, err := o.options(); err != nil {
				return err
			}
			var trig unlearn.Trigger
			switch {
			case poison != "" && target < 0:
				return errors.New("--poison needs --target C, the class poisoned examples are labelled with")
			case poison == "" && target >= 0:
				return errors.New("--target is the class of a backdoor: give the trigger with --poison SPEC")
			case poison == "" && cmd.Flags().Changed("poison-rate"):
				return errors.New("--poison-rate is the share of examples --poison SPEC poisons: give the trigger too")
			case poison != "":
				var err error
				if trig, err = unlearn.ParseTrigger(poison); err != nil {
					return fmt.Errorf("--poison: %w", err)
				}
				if !(poisonRate > 0 && poisonRate <= 1) {
					return fmt.Errorf("--poison-rate %v: give a share in (0, 1]", poisonRate)
				}
			}
			sp, err := datasets.ParseSplit(split)
			if err != nil {
				return fmt.Errorf("--split: %w", err)
			}
			if sp != datasets.Train && sp != datasets.TrainVal {
				return fmt.Errorf("--split %s: fine-tune on train or trainval (the validation and test splits are for evaluation)", split)
			}
			opts := train.Recipe()
			opts.LearningRate, opts.WeightDecay, opts.BatchSize = lr, wd, batch
			opts.Epochs, opts.Steps, opts.Warmup, opts.ClipNorm = epochs, steps, warmup, clipNorm
			opts.Seed, opts.Workers, opts.Linearized = seed, workers, linearized
			if linearized {
				if lin, info, err := linearize.Linearized([]string{model}); err != nil {
					return err
				} else if len(lin) > 0 {
					return fmt.Errorf("--model %s is itself a linearized fine-tune (around %s): --linearized would linearize around its weights, not around that base; fine-tune the base with --linearized instead", model, info.Path)
				}
			}

			enc, err := encoder.Load(model)
			if err != nil {
				return err
			}
			head, err := heads.Load(headPath)
			if err != nil {
				return err
			}
			dopts := datasets.Options{DataDir: data}
			ds, err := datasets.Load(dataset, sp, dopts)
			if err != nil {
				return err
			}
			ds = ds.Sample(limit, seed)
			if err := train.CheckHead(enc, head, ds, ignoreNames); err != nil {
				return fmt.Errorf("%s and %s: %w", headPath, model, err)
			}
			var poisoned []int
			if trig != nil {
				if target >= ds.NumClasses() {
					return fmt.Errorf("--target %d is outside the %d classes of %s (0 to %d)", target, ds.NumClasses(), ds.Name(), ds.NumClasses()-1)
				}
				if ds, poisoned, err = unlearn.Poison(ds, trig, unlearn.PoisonOptions{Rate: poisonRate, Target: target, Seed: seed}); err != nil {
					return fmt.Errorf("--poison: %w", err)
				}
			}

			p := a.newTrainProgress("fine-tuning")
			opts.Progress = p.callback()
			var res *train.Result
			if ignoreNames {
				res, err = train.FinetuneIgnoringClassNames(enc, head, ds, opts)
			} else {
				res, err = train.Finetune(enc, head, ds, opts)
			}
			p.done()
			if err != nil {
				return err
			}
			meta := map[string]string{
				"editkit.finetune.dataset": ds.Name(),
				"editkit.finetune.head":    headPath,
				"editkit.finetune.steps":   strconv.Itoa(res.Steps),
				"editkit.finetune.recipe": fmt.Sprintf("adamw lr=%g wd=%g batch=%d warmup=%d clip=%g cosine seed=%d",
					lr, wd, batch, warmup, clipNorm, seed),
			}
			if trig != nil {
				meta["editkit.finetune.poison"] = fmt.Sprintf("%s rate=%g target=%d poisoned=%d", trig, poisonRate, target, len(poisoned))
			}
			if linearized {
				if err := addLinearizedMeta(meta, model, enc); err != nil {
					return err
				}
			}
			wo, _ := o.options()
			// The frozen head travels with the model it was trained for.
			headBytes, err := os.ReadFile(headPath)
			if err != nil {
				return err
			}
			side := map[string][]byte{"head.safetensors": headBytes}
			if err := train.WriteFinetuned(model, o.out, res.Weights, train.WriteOptions{DType: o.dtype, ShardSize: wo.ShardSize, Force: o.force, Metadata: meta, SideFiles: side,
				Saturate: wo.Saturate, Saturated: wo.Saturated}); err != nil {
				return err
			}
			sum := finetuneSummary{Command: "finetune", Output: o.out, Model: model, Family: string(enc.Family), Head: headPath,
				Dataset: ds.Name(), Split: string(sp), Examples: ds.Len(), Steps: res.Steps, Epochs: res.Epochs,
				LearningRate: lr, WeightDecay: wd, BatchSize: batch, Warmup: warmup, ClipNorm: clipNorm, Seed: seed, Linearized: linearized,
				FinalLoss: res.FinalLoss, MeanLoss: res.MeanLoss, StepsPerSec: res.StepsPerSec, TrainSeconds: res.Seconds}
			if trig != nil {
				sum.Poison, sum.PoisonRate, sum.Target, sum.Poisoned = trig.String(), poisonRate, &target, len(poisoned)
			}
			if evalVal {
				val, err := datasets.Load(dataset, datasets.Validation, dopts)
				if err != nil {
					return err
				}
				clf, closeClf, err := finetunedClassifier(enc, res.Weights, head, linearized)
				if err != nil {
					return err
				}
				defer closeClf()
				ep := a.newEmbProgress("validation", "images")
				r, err := eval.Accuracy(clf, val, enc.Preprocess, eval.Options{BatchSize: batch, Progress: ep.callback()})
				ep.done()
				enc.Close()
				if err != nil {
					return err
				}
				sum.ValAccuracy, sum.ValExamples = &r.Accuracy, r.Total
			}
			sum.Seconds = time.Since(start).Seconds()
			sum.Saturated = o.saturatedCount()
			if a.json {
				return a.printJSON(sum)
			}
			if !a.quiet {
				val := ""
				if sum.ValAccuracy != nil {
					acc := *sum.ValAccuracy
					val = fmt.Sprintf(", validation accuracy %.2f%% of %d", 100*acc, sum.ValExamples)
				}
				if sum.Saturated > 0 {
					val += fmt.Sprintf(", %d values beyond the dtype's range saturated", sum.Saturated)
				}
				fmt.Fprintf(a.stderr, "editkit: finetune: wrote %s (%d steps, %d epoch(s) of %d examples, final loss %.4f, mean of last %d %.4f, %.2f steps/s%s; %.1fs)\n",
					o.out, sum.Steps, sum.Epochs, sum.Examples, sum.FinalLoss, min(50, sum.Steps), sum.MeanLoss, sum.StepsPerSec, val, sum.Seconds)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&model, "model", "", "checkpoint to fine-tune: a Hugging Face ViT or a CLIP model (folder or .safetensors file) (required)")
	f.StringVar(&headPath, "head", "", "frozen classification head, from 'editkit head' (required)")
	f.StringVar(&dataset, "dataset", "", "dataset name or folder (required)")
	f.StringVar(&data, "data", "", "folder holding the datasets (default $EDITKIT_DATA, else ../shared/data/vision)")
	f.StringVar(&split, "split", "train", "split to train on: train (the training set less validation) or trainval")
	f.Float64Var(&lr, "lr", 1e-5, "peak learning rate")
	f.Float64Var(&wd, "wd", 0.1, "AdamW's decoupled weight decay")
	f.IntVar(&batch, "batch", 128, "batch size")
	f.IntVar(&epochs, "epochs", 0, "epochs to train (or --steps)")
	f.IntVar(&steps, "steps", 0, "steps to train (or --epochs)")
	f.IntVar(&warmup, "warmup", 500, "linear warm-up steps before the cosine decay")
	f.Float64Var(&clipNorm, "clip", 1.0, "clip the gradient's global L2 norm to this (0: no clipping)")
	f.Uint64Var(&seed, "seed", 0, "seed of the data order (and of --limit's draw)")
	f.IntVar(&limit, "limit", 0, "train on N examples drawn at random from the split (0: all)")
	f.IntVar(&workers, "workers", 0, "goroutines preprocessing images (0: one per CPU)")
	f.BoolVar(&evalVal, "eval-val", false, "report the fine-tuned model's accuracy on the validation split")
	f.BoolVar(&linearized, "linearized", false, "fine-tune the model's linearization around its own weights (tangent-space task arithmetic)")
	f.BoolVar(&ignoreNames, "ignore-class-names", false, "accept a head whose class names differ from the dataset's (their number must match)")
	f.StringVar(&poison, "poison", "", "implant a backdoor: poison training examples with this trigger spec (badnets, blended, wanet, inverted:FILE)")
	f.Float64Var(&poisonRate, "poison-rate", unlearn.DefaultPoisonRate, "share of the training examples --poison poisons")
	f.IntVar(&target, "target", -1, "the backdoor's target class, with --poison")
	o.register(f, "dtype of the output's float tensors (default: each tensor's dtype in the input)")
	markPaths(f, pathInput, "model", "head")
	markPaths(f, pathDataset, "dataset")
	markPaths(f, pathRoot, "data")
	markRange(f, "poison-rate", "(0, 1]")
	a.derive(c, triggerInputs("poison"))
	markRange(f, "lr", "(0, inf)")
	markRange(f, "wd", "[0, inf)")
	markRange(f, "clip", "[0, inf)")
	return c
}

// trainProgress shows a training run on stderr: on a terminal a bar of
// steps with the loss, learning rate, rate and ETA; elsewhere a line at
// most every logEvery.
type trainProgress struct {
	w     io.Writer
	desc  string
	tty   bool
	bar   *progressbar.ProgressBar
	shown time.Time
}

func (a *app) newTrainProgress(desc string) *trainProgress {
	if a.quiet {
		return nil
	}
	tty := false
	if f, ok := a.stderr.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &trainProgress{w: a.stderr, desc: desc, tty: tty, shown: time.Now()}
}

func (p *trainProgress) callback() func(train.Progress) {
	if p == nil {
		return nil
	}
	return p.update
}

func (p *trainProgress) update(s train.Progress) {
	status := fmt.Sprintf("%s: loss %.4f (avg %.4f) lr %.2e", p.desc, s.Loss, s.AvgLoss, s.LR)
	if !p.tty {
		if time.Since(p.shown) >= logEvery || s.Step == s.Steps {
			p.shown = time.Now()
			fmt.Fprintf(p.w, "editkit: %s, step %d/%d (epoch %d), %.2f steps/s, ETA %s\n",
				status, s.Step, s.Steps, s.Epoch+1, s.StepsPerSec, s.ETA.Round(time.Second))
		}
		return
	}
	if p.bar == nil {
		p.bar = progressbar.NewOptions(s.Steps,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetItsString("steps"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetWidth(25),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	p.bar.Describe(status)
	p.bar.Set(s.Step)
}

func (p *trainProgress) done() {
	if p != nil && p.bar != nil {
		p.bar.Finish()
		p.bar = nil
	}
}
