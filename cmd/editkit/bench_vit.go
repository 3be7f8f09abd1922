package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/editkit/editkit/internal/bench"
)

func (a *app) benchViTCmd() *cobra.Command {
	o := bench.DefaultViTOptions()
	var (
		t       bench.TorchOptions
		noTorch bool
		jsonOut string
	)
	c := &cobra.Command{
		Use:   "vit",
		Short: "Time a ViT-B/32 forward pass and small-ViT training steps against PyTorch on the same machine",
		Long: `Times, in editkit's GoMLX models on the configured backend (GOMLX_BACKEND;
default the pure-Go simplego):

  forward  a ViT-B/32-shaped image encoder (width 768, 12 layers, 12 heads,
           patch 32, 224×224 images; Hugging Face ViT layout, random weights)
           on --batch random images: --warmup calls (the first compiles),
           then --iters timed calls;
  train    AdamW steps (lr 1e-4, weight decay 0.1, gradient norm clipped to
           1, softmax cross-entropy) of a small ViT (width 192, 6 layers,
           3 heads, patch 16, 64×64 images, 10 classes) on --train-batch
           random images: --warmup steps, then --steps timed ones;

then the same workloads in PyTorch, in the same run, one after the other:
tools/torchref/bench_vit.py run by --python (default /usr/bin/python3, with
Debian's torch; torch threads = the CPU count), on --device. Each timed call
takes its batch from host memory and returns its result to the host, on both
sides. Reported: the median time per call, images/s, ms per image, achieved
GFLOP/s (matrix products counted) and editkit's throughput as a fraction of
PyTorch's. Without Python or torch the PyTorch side is skipped with the reason.

--profile records a CPU profile of editkit's timed calls and prints where the
time went (the flat time by category and the top functions).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !noTorch {
				o.Torch = &t
			}
			if !a.quiet && !a.json {
				o.Log = a.stderr
			}
			r, err := bench.RunViT(o)
			if err != nil {
				return err
			}
			return a.benchReport(r, jsonOut, func() { printViTReport(a.stdout, r) })
		},
	}
	f := c.Flags()
	f.IntVar(&o.Batch, "batch", o.Batch, "forward: images per call")
	f.IntVar(&o.Forward.Image, "image", o.Forward.Image, "forward: image size (a multiple of --patch)")
	f.IntVar(&o.Forward.Patch, "patch", o.Forward.Patch, "forward: patch size")
	f.IntVar(&o.Forward.Width, "width", o.Forward.Width, "forward: width")
	f.IntVar(&o.Forward.Layers, "layers", o.Forward.Layers, "forward: blocks")
	f.IntVar(&o.Forward.Heads, "heads", o.Forward.Heads, "forward: attention heads")
	f.IntVar(&o.Forward.MLP, "mlp", o.Forward.MLP, "forward: MLP size")
	f.IntVar(&o.Iters, "iters", o.Iters, "forward: timed calls (0 skips the forward benchmark)")
	f.IntVar(&o.TrainBatch, "train-batch", o.TrainBatch, "train: images per step")
	f.IntVar(&o.Train.Image, "train-image", o.Train.Image, "train: image size")
	f.IntVar(&o.Train.Patch, "train-patch", o.Train.Patch, "train: patch size")
	f.IntVar(&o.Train.Width, "train-width", o.Train.Width, "train: width")
	f.IntVar(&o.Train.Layers, "train-layers", o.Train.Layers, "train: blocks")
	f.IntVar(&o.Train.Heads, "train-heads", o.Train.Heads, "train: attention heads")
	f.IntVar(&o.Train.MLP, "train-mlp", o.Train.MLP, "train: MLP size")
	f.IntVar(&o.Steps, "steps", o.Steps, "train: timed steps (0 skips the training benchmark)")
	f.IntVar(&o.Warmup, "warmup", o.Warmup, "untimed calls before the timed ones (the first compiles)")
	f.BoolVar(&o.Profile, "profile", false, "profile editkit's timed calls and print where the time goes")
	registerTorchFlags(f, &t, &noTorch, &jsonOut, "bench_vit.py", 20*time.Minute)
	return c
}

// printViTReport prints the two sides as columns with their ratio.
func printViTReport(w io.Writer, r *bench.ViTReport) {
	fmt.Fprintf(w, "CPUs: %d; editkit backend: %s (GOMAXPROCS %d)\n", r.CPUs, r.Editkit.Backend, r.Editkit.Threads)
	printLoad(w, r.LoadAvg, r.CPUs)
	if r.Torch != nil {
		notes := ""
		for _, k := range slices.Sorted(maps.Keys(r.Torch.Notes)) {
			notes += fmt.Sprintf("; %s: %s", k, r.Torch.Notes[k])
		}
		fmt.Fprintf(w, "PyTorch %s on %s, %d threads%s\n", r.Torch.Version, r.Torch.Backend, r.Torch.Threads, notes)
	} else {
		fmt.Fprintf(w, "PyTorch reference: not available (%s); editkit's numbers alone\n", r.TorchMissing)
	}
	section := func(title string, ours, theirs *bench.ViTPhase, unit string) {
		if ours == nil {
			return
		}
		fmt.Fprintf(w, "\n%s\n", title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		head := "\teditkit\t"
		if theirs != nil {
			head += "PyTorch\teditkit/PyTorch\t"
		}
		fmt.Fprintln(tw, head)
		row := func(name string, a, b float64, format string, higherBetter bool) {
			line := name + "\t" + fmt.Sprintf(format, a) + "\t"
			if theirs != nil {
				ratio := 0.0
				if a > 0 && b > 0 {
					ratio = a / b
					if !higherBetter {
						ratio = b / a
					}
				}
				line += fmt.Sprintf(format, b) + "\t" + fmt.Sprintf("%.3g×", ratio) + "\t"
			}
			fmt.Fprintln(tw, line)
		}
		var tb bench.ViTPhase
		if theirs != nil {
			tb = *theirs
		}
		row("first call, s (compile + run)", ours.FirstSeconds, tb.FirstSeconds, "%.3g", false)
		row(fmt.Sprintf("median s per %s (%d timed)", unit, len(ours.Seconds)), ours.MedianSeconds, tb.MedianSeconds, "%.4g", false)
		row(map[string]string{"batch": "batches/s", "step": "steps/s"}[unit], ours.CallsPerSecond, tb.CallsPerSecond, "%.4g", true)
		row("images/s", ours.ImagesPerSecond, tb.ImagesPerSecond, "%.4g", true)
		row("ms per image", ours.MsPerImage, tb.MsPerImage, "%.4g", false)
		row("GFLOP/s", ours.GFLOPs, tb.GFLOPs, "%.3g", true)
		tw.Flush()
		if len(ours.Loss) == 2 {
			fmt.Fprintf(w, "loss %.4f → %.4f (editkit)", ours.Loss[0], ours.Loss[1])
			if theirs != nil && len(theirs.Loss) == 2 {
				fmt.Fprintf(w, ", %.4f → %.4f (PyTorch)", theirs.Loss[0], theirs.Loss[1])
			}
			fmt.Fprintln(w)
		}
	}
	var tf, tt *bench.ViTPhase
	if r.Torch != nil {
		tf, tt = r.Torch.Forward, r.Torch.Train
	}
	section(fmt.Sprintf("Forward, ViT %s, batch %d, random weights (ratios: editkit throughput / PyTorch's)", r.Forward, r.Batch), r.Editkit.Forward, tf, "batch")
	section(fmt.Sprintf("Training, ViT %s, batch %d, AdamW", r.Train, r.TrainBatch), r.Editkit.Train, tt, "step")
	for _, name := range []string{"forward", "train"} {
		if s := r.Profile[name]; s != nil {
			fmt.Fprintf(w, "\nWhere editkit's %s time goes (CPU profile of the timed calls):\n%s", name, strings.TrimRight(s.String(), "\n")+"\n")
		}
	}
}
