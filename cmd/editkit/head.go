package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/models/heads"
)

// headCmd groups the commands that build classification heads.
func (a *app) headCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "head",
		Short: "Build classification heads: CLIP zero-shot heads and linear probes",
		Long: `head builds the frozen classification head an image encoder is evaluated
with, as its own .safetensors file (weight [classes, dim], an optional bias,
the class names, scale and provenance in the metadata):

  head zeroshot   CLIP's zero-shot head from class names and prompt templates
  head probe      a linear probe (logistic regression) on the model's frozen
                  image features
  head templates  list the shipped prompt templates, or print one dataset's
                  file to edit`,
	}
	c.AddCommand(a.headZeroShotCmd(), a.headProbeCmd(), a.headTemplatesCmd())
	return c
}

// headSummary is the --json result of head zeroshot and head probe.
type headSummary struct {
	Command         string             `json:"command"`
	Output          string             `json:"output"`
	Model           string             `json:"model"`
	Dataset         string             `json:"dataset"`
	Classes         int                `json:"classes"`
	Dim             int                `json:"dim"`
	Scale           float32            `json:"scale"`
	Normalize       bool               `json:"normalize"`
	Templates       int                `json:"templates,omitempty"`
	TemplatesSource string             `json:"templates_source,omitempty"`
	Split           string             `json:"split,omitempty"`
	Examples        int                `json:"examples,omitempty"`
	Fit             *heads.ProbeResult `json:"fit,omitempty"`
	Seconds         float64            `json:"seconds"`
}

func (a *app) finishHead(sum headSummary, start time.Time, detail string) error {
	sum.Seconds = time.Since(start).Seconds()
	if a.json {
		return a.printJSON(sum)
	}
	if !a.quiet {
		fmt.Fprintf(a.stderr, "editkit: %s: wrote %s (%d classes × %d, %s; %.1fs)\n", sum.Command, sum.Output, sum.Classes, sum.Dim, detail, sum.Seconds)
	}
	return nil
}

// headTemplates returns the templates for a dataset: the file given,
// else the shipped ones, else the fallback (with a notice), and where they
// come from.
func (a *app) headTemplates(file string, names ...string) ([]string, string, error) {
	if file != "" {
		t, err := heads.ReadTemplates(file)
		return t, file, err
	}
	for _, n := range names {
		if t, ok := heads.DefaultTemplates(n); ok {
			return t, "builtin:" + n, nil
		}
	}
	a.embNotice("no prompt templates shipped for dataset %s (there are for %s): using %q; give your own with --templates FILE",
		names[0], strings.Join(heads.TemplateDatasets(), ", "), heads.FallbackTemplate)
	return []string{heads.FallbackTemplate}, "fallback", nil
}

func (a *app) headZeroShotCmd() *cobra.Command {
	var (
		model, dataset, data, templates, classesFile, tokenizer, out string
		batch                                                        int
		scale                                                        float64
		force                                                        bool
	)
	c := &cobra.Command{
		Use:   "zeroshot --model CLIP --dataset NAME -o HEAD.safetensors",
		Short: "Build CLIP's zero-shot head for a dataset's classes",
		Long: `zeroshot builds CLIP's zero-shot classification head as the task-vectors
reference does: for each class, every prompt template is filled with the
class name, encoded by the text tower and L2-normalized; the class's row is
their mean, L2-normalized. The head's scale is exp(logit_scale) of the
checkpoint (100 for CLIP), it L2-normalizes the image embedding and has no
bias, so its logits are CLIP's.

The classes come from the dataset (its classes.txt; --dataset takes a name as
in 'editkit embed' or a dataset folder), or from --classes FILE, one name a
line in label order. Templates: --templates FILE (one a line, {} for the
class name, # comments), else those shipped for mnist, fashion-mnist,
cifar10 and gtsrb ('editkit head templates NAME' prints them to start an
edited copy from), else "a photo of a {}.". The tokenizer is --tokenizer,
else the model's folder, else ../shared/data/tokenizers/clip.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			start := time.Now()
			if out == "" {
				return errors.New("no output given: pass -o HEAD.safetensors")
			}
			if model == "" {
				return errors.New("no model given: pass --model CLIP_CHECKPOINT")
			}
			if dataset == "" && classesFile == "" {
				return errors.New("no classes: pass --dataset NAME (or --classes FILE)")
			}
			if batch <= 0 {
				return fmt.Errorf("--batch-size %d: want > 0", batch)
			}
			var classes []string
			name := dataset
			if dataset != "" {
				src, err := datasets.Open(dataset, datasets.Options{DataDir: data})
				if err != nil {
					return err
				}
				classes, name = src.Classes, src.Name
			}
			if classesFile != "" {
				cl, err := datasets.ReadClasses(classesFile)
				if err != nil {
					return fmt.Errorf("--classes: %w", err)
				}
				if classes != nil && len(cl) != len(classes) {
					return fmt.Errorf("--classes %s lists %d classes, dataset %s has %d: give one name per label, in label order", classesFile, len(cl), name, len(classes))
				}
				classes = cl
				if name == "" {
					name = classesFile
				}
			}
			tmpl, source, err := a.headTemplates(templates, name, dataset)
			if err != nil {
				return err
			}
			m, err := openEmbModel(model)
			if err != nil {
				return err
			}
			if m.kind != "clip" {
				return fmt.Errorf("%s is a ViT: zero-shot heads need a CLIP model with a text tower (for a ViT, build a linear probe with 'editkit head probe')", model)
			}
			if !m.hasTexts() {
				return fmt.Errorf("the CLIP checkpoint %s has no text tower: zero-shot heads need one", model)
			}
			tok, _, err := embFindTokenizer(tokenizer, model)
			if err != nil {
				return err
			}
			p := a.newEmbProgress("encoding prompts", "prompts")
			h, err := heads.ZeroShot(m.clip, tok, classes, tmpl, heads.ZeroShotOptions{
				TextOptions: heads.TextOptions{BatchSize: batch, Progress: p.callback()},
				Scale:       scale, Dataset: name, Model: model, TemplatesSource: source,
			})
			p.done()
			if err != nil {
				return err
			}
			if err := h.Save(out, force); err != nil {
				return err
			}
			return a.finishHead(headSummary{Command: "head zeroshot", Output: out, Model: model, Dataset: name,
				Classes: len(classes), Dim: h.Dim, Scale: h.Scale, Normalize: h.Normalize,
				Templates: len(tmpl), TemplatesSource: source}, start,
				fmt.Sprintf("%d templates from %s, scale %g", len(tmpl), source, h.Scale))
		},
	}
	f := c.Flags()
	f.StringVar(&model, "model", "", "CLIP checkpoint, Hugging Face or OpenAI/open_clip naming (required)")
	f.StringVar(&dataset, "dataset", "", "dataset whose classes the head scores: a name or a dataset folder (required unless --classes)")
	f.StringVar(&data, "data", "", "folder holding the named datasets (default $EDITKIT_DATA, else ../shared/data/vision)")
	f.StringVar(&templates, "templates", "", "prompt templates file: one a line, {} for the class name, # comments (default: the dataset's shipped ones)")
	f.StringVar(&classesFile, "classes", "", "class names for the prompts, one a line in label order (default: the dataset's)")
	f.StringVar(&tokenizer, "tokenizer", "", "CLIP tokenizer: a folder with vocab.json and merges.txt, or bpe_simple_vocab_16e6.txt.gz (default: the model's folder, else ../shared/data/tokenizers/clip)")
	f.IntVar(&batch, "batch-size", 64, "prompts per call of the text tower")
	f.Float64Var(&scale, "scale", 0, "logit scale instead of the checkpoint's exp(logit_scale)")
	f.StringVarP(&out, "output", "o", "", "output head .safetensors file (required)")
	f.BoolVar(&force, "force", false, "replace the output if it exists")
	markPaths(f, pathInput, "model", "templates", "classes", "tokenizer")
	markPaths(f, pathDataset, "dataset")
	markPaths(f, pathRoot, "data")
	markPaths(f, pathOutput, "output")
	markRange(f, "scale", "[0, inf)")
	return c
}

func (a *app) headProbeCmd() *cobra.Command {
	var (
		model, dataset, data, split, out string
		limit, batch, maxIter            int
		l2                               float64
		normalize, force                 bool
	)
	c := &cobra.Command{
		Use:   "probe --model MODEL --dataset NAME -o HEAD.safetensors",
		Short: "Fit a linear probe on a model's frozen image features",
		Long: `probe fits multinomial logistic regression on the image features of a
dataset split (CLIP's image embeddings, or a ViT's pooled feature; images
preprocessed as the model expects, at its image size):

  minimize (1/n) Σᵢ −log softmax(W xᵢ + b)[yᵢ] + (λ/2)‖W‖²   (λ = --l2)

by L-BFGS in float64 from zero, deterministically, until every gradient
entry is below 1e-5, an iteration lowers the objective by less than 1e-10
relative, or --max-iter iterations. The head has a bias and scale 1; with
--normalize the features are L2-normalized, in the fit and by the head.
--limit N fits on N examples drawn at random (seed 0) from the split, so
that a folder dataset ordered by class still gives every class.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := time.Now()
			if out == "" {
				return errors.New("no output given: pass -o HEAD.safetensors")
			}
			if dataset == "" {
				return errors.New("no dataset given: pass --dataset NAME (or a dataset folder)")
			}
			if limit < 0 || batch <= 0 || maxIter <= 0 {
				return fmt.Errorf("--limit %d, --batch-size %d, --max-iter %d: want a limit ≥ 0 and positive sizes", limit, batch, maxIter)
			}
			sp, err := datasets.ParseSplit(split)
			if err != nil {
				return fmt.Errorf("--split: %w", err)
			}
			src, err := datasets.Open(dataset, datasets.Options{DataDir: data})
			if err != nil {
				return err
			}
			ds, err := src.Split(sp)
			if err != nil {
				return err
			}
			ds = ds.Sample(limit, 0)
			m, err := openEmbModel(model)
			if err != nil {
				return err
			}
			if !m.hasImages() {
				return fmt.Errorf("the CLIP checkpoint %s has no image tower", model)
			}
			p := a.newEmbProgress("embedding images", "images")
			feats, _, err := m.encodeDataset(ds, batch, p.callback())
			p.done()
			if err != nil {
				return err
			}
			progress := func(int, float64, float64) {}
			if !a.quiet {
				shown := time.Now()
				progress = func(it int, loss, gmax float64) {
					if time.Since(shown) >= logEvery {
						shown = time.Now()
						fmt.Fprintf(a.stderr, "editkit: fitting the probe: iteration %d, loss %.6g, largest gradient entry %.3g\n", it, loss, gmax)
					}
				}
			}
			h, res, err := heads.Probe(feats, ds.Len(), m.enc.Dim, ds.Labels(), src.Classes, heads.ProbeOptions{
				L2: l2, Normalize: normalize, MaxIter: maxIter, Progress: progress,
				Dataset: src.Name, Model: model, Features: m.enc.Features(),
			})
			if err != nil {
				return err
			}
			if res.Stop == "max-iter" {
				a.embNotice("the probe stopped at --max-iter %d before converging (largest gradient entry %.3g): the head is usable, but --max-iter or a larger --l2 gives a converged fit", maxIter, res.GradMax)
			}
			h.Meta["head.split"] = string(sp)
			if limit > 0 {
				h.Meta["head.limit"] = strconv.Itoa(limit)
			}
			if err := h.Save(out, force); err != nil {
				return err
			}
			return a.finishHead(headSummary{Command: "head probe", Output: out, Model: model, Dataset: src.Name,
				Classes: len(h.Classes), Dim: h.Dim, Scale: h.Scale, Normalize: h.Normalize,
				Split: string(sp), Examples: ds.Len(), Fit: &res}, start,
				fmt.Sprintf("%d %s examples, train accuracy %.4f, %d iterations, stopped by %s", ds.Len(), sp, res.TrainAccuracy, res.Iterations, res.Stop))
		},
	}
	f := c.Flags()
	f.StringVar(&model, "model", "", "CLIP (either naming) or ViT checkpoint whose image features are probed (required)")
	f.StringVar(&dataset, "dataset", "", "dataset: a name or a dataset folder (required)")
	f.StringVar(&data, "data", "", "folder holding the named datasets (default $EDITKIT_DATA, else ../shared/data/vision)")
	f.StringVar(&split, "split", "train", "split to fit on: train, val, test or trainval")
	f.IntVar(&limit, "limit", 0, "fit on N examples drawn at random (seed 0) from the split (0: all)")
	f.Float64Var(&l2, "l2", 1e-4, "L2 penalty λ: the objective adds (λ/2)‖W‖²")
	f.BoolVar(&normalize, "normalize", false, "L2-normalize the features (in the fit and in the head)")
	f.IntVar(&maxIter, "max-iter", 1000, "most L-BFGS iterations")
	f.IntVar(&batch, "batch-size", 32, "images per call of the image encoder")
	f.StringVarP(&out, "output", "o", "", "output head .safetensors file (required)")
	f.BoolVar(&force, "force", false, "replace the output if it exists")
	markPaths(f, pathInput, "model")
	markPaths(f, pathDataset, "dataset")
	markPaths(f, pathRoot, "data")
	markPaths(f, pathOutput, "output")
	markRange(f, "l2", "[0, inf)")
	return c
}

func (a *app) headTemplatesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "templates [DATASET]",
		Short: "List the shipped zero-shot prompt templates, or print a dataset's file",
		Long: `Without an argument, templates lists the datasets editkit ships zero-shot
prompt templates for. With one, it prints that dataset's templates file on
stdout, to edit and pass back with 'editkit head zeroshot --templates FILE'.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				if a.json {
					return a.printJSON(heads.TemplateDatasets())
				}
				for _, d := range heads.TemplateDatasets() {
					t, _ := heads.DefaultTemplates(d)
					fmt.Fprintf(a.stdout, "%-14s %2d templates, e.g. %s\n", d, len(t), t[0])
				}
				return nil
			}
			text, ok := heads.DefaultTemplatesFile(args[0])
			if !ok {
				return fmt.Errorf("no templates shipped for %q (there are for %s); zero-shot heads for it use %q unless given --templates FILE",
					args[0], strings.Join(heads.TemplateDatasets(), ", "), heads.FallbackTemplate)
			}
			if a.json {
				t, _ := heads.DefaultTemplates(args[0])
				return a.printJSON(t)
			}
			_, err := fmt.Fprint(a.stdout, text)
			return err
		},
	}
}
