package main

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/png"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/image/draw"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/unlearn"
)

// triggerHelp documents the trigger spec every backdoor flag takes.
const triggerHelp = `Trigger specs (applied to the raw image, before the model's preprocessing,
deterministically from the seed; defaults in brackets):

  badnets[:size=S,pos=br|bl|tr|tl|random,pattern=white|checker|random,seed=N]
      an S×S patch pasted into the image [S: 3 px at 32 px, scaled with the
      image's shorter side; pos br; pattern checker]
  blended[:ratio=R,seed=N|image=FILE]
      x' = (1 − R)·x + R·P, P seeded uniform noise or FILE resized [R 0.2]
  wanet[:k=K,s=S,seed=N]
      WaNet's smooth warping field, a K×K control grid upsampled, strength S
      [K 4, S 0.5]
  inverted:FILE
      a mask and pattern written by 'editkit unlearn invert':
      x' = (1 − m)⊙x + m⊙p`

// backdoorSummary is backdoor apply's --json result.
type backdoorSummary struct {
	Command  string   `json:"command"`
	Trigger  string   `json:"trigger"`
	Dataset  string   `json:"dataset"`
	Split    string   `json:"split"`
	Output   string   `json:"output"`
	Examples int      `json:"examples"`
	PNG      []string `json:"png,omitempty"`
	Seconds  float64  `json:"seconds"`
}

func (a *app) backdoorCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "backdoor",
		Short: "Backdoor attacks, for testing defenses: apply triggers to images",
		Long: `backdoor holds the attacks editkit uses to test backdoor defenses. Implanting
a backdoor is 'editkit finetune --poison SPEC --target C'; measuring it is
'editkit eval --trigger SPEC --target C'; removing it is 'editkit unlearn'.

` + triggerHelp,
		Args: cobra.NoArgs,
	}
	c.AddCommand(a.backdoorApplyCmd())
	return c
}

func (a *app) backdoorApplyCmd() *cobra.Command {
	var (
		o                         outFlags
		spec, images, split, data string
		pngDir                    string
		pngCount, limit           int
	)
	c := &cobra.Command{
		Use:   "apply --trigger SPEC --images DATASET -o OUT [--png DIR]",
		Short: "Write a dataset split with a trigger applied to every image (labels kept)",
		Long: `apply reads one split of a dataset (a name or folder, found as 'editkit eval'
finds datasets), applies the trigger to every image and writes the result as
a dataset folder OUT: IDX files (test-images-… for --split test, train-images-…
for the other splits) with the labels unchanged, and classes.txt, so that
'--dataset OUT' reads it back. --png DIR also writes the first --png-count
images as PNG files, each the original and the triggered image side by side
(enlarged to at least 96 pixels high).

` + triggerHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := time.Now()
			switch {
			case spec == "":
				return errors.New("no --trigger given: pass a trigger spec such as badnets or blended:ratio=0.2")
			case images == "":
				return errors.New("no --images given: pass the dataset (name or folder) whose images to trigger")
			case o.out == "":
				return errors.New("no output given: pass -o FOLDER")
			case limit < 0 || pngCount < 0:
				return errors.New("--limit and --png-count must be ≥ 0")
			}
			trig, err := unlearn.ParseTrigger(spec)
			if err != nil {
				return fmt.Errorf("--trigger: %w", err)
			}
			sp, err := datasets.ParseSplit(split)
			if err != nil {
				return fmt.Errorf("--split: %w", err)
			}
			src, err := datasets.Open(images, datasets.Options{DataDir: data})
			if err != nil {
				return err
			}
			ds, err := src.Split(sp)
			if err != nil {
				return err
			}
			ds = ds.Head(limit)
			triggered, err := unlearn.Apply(ds, trig)
			if err != nil {
				return err
			}
			set := "train"
			if sp == datasets.Test {
				set = "test"
			}
			files, err := datasets.EncodeIDX(triggered, set)
			if err != nil {
				return err
			}
			sum := backdoorSummary{Command: "backdoor apply", Trigger: trig.String(), Dataset: src.Name, Split: string(sp), Output: o.out, Examples: ds.Len()}
			var pngs map[string][]byte
			if pngDir != "" {
				if pngs, err = sideBySide(ds, triggered, min(pngCount, ds.Len())); err != nil {
					return err
				}
			}
			if err := checkpoint.WriteFolderAtomic(o.out, files, a.outputOptions()); err != nil {
				return err
			}
			if pngDir != "" {
				if err := checkpoint.WriteFolderAtomic(pngDir, pngs, a.outputOptions()); err != nil {
					return err
				}
				for name := range pngs {
					sum.PNG = append(sum.PNG, name)
				}
			}
			sum.Seconds = time.Since(start).Seconds()
			if a.json {
				return a.printJSON(sum)
			}
			if !a.quiet {
				fmt.Fprintf(a.stderr, "editkit: backdoor apply: wrote %s (%d %s images of %s with %s, labels kept)\n", o.out, sum.Examples, sp, src.Name, trig)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&spec, "trigger", "", "trigger spec (see above) (required)")
	f.StringVar(&images, "images", "", "dataset name or folder whose images to trigger (required)")
	f.StringVar(&split, "split", "test", "split to trigger: test, train, val or trainval")
	f.StringVar(&data, "data", "", "folder holding the datasets (default $EDITKIT_DATA, else ../shared/data/vision)")
	f.IntVar(&limit, "limit", 0, "write only the first N images of the split (0: all)")
	f.StringVar(&pngDir, "png", "", "also write the first --png-count images as PNG, original and triggered side by side, into this folder")
	f.IntVar(&pngCount, "png-count", 8, "number of images --png writes")
	f.StringVarP(&o.out, "output", "o", "", "output dataset folder (required)")
	f.BoolVar(&o.force, "force", false, "replace the outputs if they exist")
	markPaths(f, pathInput, "images")
	markPaths(f, pathRoot, "data")
	markPaths(f, pathOutput, "output", "png")
	a.derive(c, triggerInputs("trigger"))
	return c
}

// triggerInputs declares the file of an inverted trigger given to the
// named flags (inverted:FILE) as an input of the command.
func triggerInputs(flags ...string) derivedPaths {
	return func(cmd *cobra.Command) ([]string, []checkpoint.Output, error) {
		var ins []string
		for _, name := range flags {
			if f := cmd.Flags().Lookup(name); f != nil {
				if file, ok := strings.CutPrefix(strings.TrimSpace(f.Value.String()), "inverted:"); ok && file != "" {
					ins = append(ins, strings.TrimSpace(file))
				}
			}
		}
		return ins, nil, nil
	}
}

// sideBySide renders the first n examples of orig and triggered as PNG
// files (000.png, ...): the two images next to each other with a 2-pixel
// gap, enlarged by an integer factor to at least 96 pixels high.
func sideBySide(orig, triggered *datasets.Dataset, n int) (map[string][]byte, error) {
	out := map[string][]byte{}
	for i := range n {
		a, err := orig.Image(i)
		if err != nil {
			return nil, err
		}
		b, err := triggered.Image(i)
		if err != nil {
			return nil, err
		}
		k := max(1, (96+a.Height-1)/a.Height)
		h, w := a.Height*k, a.Width*k
		canvas := image.NewRGBA(image.Rect(0, 0, 2*w+2*k, h))
		draw.NearestNeighbor.Scale(canvas, image.Rect(0, 0, w, h), a.Std(), a.Std().Bounds(), draw.Src, nil)
		draw.NearestNeighbor.Scale(canvas, image.Rect(w+2*k, 0, 2*w+2*k, h), b.Std(), b.Std().Bounds(), draw.Src, nil)
		var buf bytes.Buffer
		if err := png.Encode(&buf, canvas); err != nil {
			return nil, err
		}
		out[fmt.Sprintf("%03d.png", i)] = buf.Bytes()
	}
	return out, nil
}
