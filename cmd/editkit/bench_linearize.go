package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/editkit/editkit/internal/bench"
)

func (a *app) benchLinearizeCmd() *cobra.Command {
	o := bench.DefaultLinearizeOptions()
	var (
		t       bench.TorchOptions
		noTorch bool
		jsonOut string
	)
	c := &cobra.Command{
		Use:   "linearize",
		Short: "Time and memory of a linearized ViT (f_lin) and its training step against the plain model, and the same ratios in PyTorch",
		Long: `Measures what linearization costs: on a ViT with random weights (default
width 192, 6 layers, 3 heads, patch 16, 64×64 images) and a frozen CLIP-style
head of 10 classes, batches of --batch random images,

  forward      f(x; θ), the encoder's forward pass and the head
  forward_lin  f_lin(x; θ) = f(x; θ₀) + J·(θ − θ₀) (package linearize)
  train        one fine-tuning step of f (models/train: AdamW, clipping)
  train_lin    one fine-tuning step of θ in f_lin (finetune --linearized)

each --warmup untimed calls then --iters timed ones (wall and process CPU
time: the ratios use CPU time, which other work on the machine disturbs
less), with the peak memory of the phase (resident set size, VmHWM reset per phase; the memory the phase
added is peak − start). Then the same four in PyTorch as the reference code
does it (functorch jvp over make_functional_with_buffers, the model of
tools/torchref/bench_vit.py) in a subprocess (tools/torchref/bench_linearize.py
with --python, default Debian's /usr/bin/python3). Reported: medians and
f_lin / f ratios of time and added memory on both sides: the reference pays
about 2-3x the time and 2x the memory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !noTorch {
				o.Torch = &t
			}
			if !a.quiet && !a.json {
				o.Log = a.stderr
			}
			r, err := bench.RunLinearize(o)
			if err != nil {
				return err
			}
			return a.benchReport(r, jsonOut, func() { printLinearizeReport(a.stdout, r) })
		},
	}
	f := c.Flags()
	f.IntVar(&o.Batch, "batch", o.Batch, "images per call")
	f.IntVar(&o.Model.Image, "image", o.Model.Image, "image size (a multiple of --patch)")
	f.IntVar(&o.Model.Patch, "patch", o.Model.Patch, "patch size")
	f.IntVar(&o.Model.Width, "width", o.Model.Width, "width")
	f.IntVar(&o.Model.Layers, "layers", o.Model.Layers, "blocks")
	f.IntVar(&o.Model.Heads, "heads", o.Model.Heads, "attention heads")
	f.IntVar(&o.Model.MLP, "mlp", o.Model.MLP, "MLP size")
	f.IntVar(&o.Iters, "iters", o.Iters, "timed calls per phase")
	f.IntVar(&o.Warmup, "warmup", o.Warmup, "untimed calls before the timed ones (the first compiles)")
	registerTorchFlags(f, &t, &noTorch, &jsonOut, "bench_linearize.py", 30*time.Minute)
	return c
}

// printLinearizeReport prints both sides' phases and f_lin / f ratios.
func printLinearizeReport(w io.Writer, r *bench.LinearizeReport) {
	fmt.Fprintf(w, "ViT %s, batch %d; CPUs: %d; load average %.2f before, %.2f after\n", r.Model, r.Batch, r.CPUs, r.LoadAvg[0], r.LoadAvg[1])
	if l := max(r.LoadAvg[0], r.LoadAvg[1]); l > 0.5*float64(r.CPUs) {
		fmt.Fprintf(w, "warning: other work shared the machine: the timings are noisy (the ratios less so)\n")
	}
	sides := []*bench.LinSide{&r.Editkit}
	if r.Torch != nil {
		sides = append(sides, r.Torch)
	} else {
		fmt.Fprintf(w, "PyTorch reference: not available (%s)\n", r.TorchMissing)
	}
	for _, s := range sides {
		fmt.Fprintf(w, "\n%s %s on %s\n", s.Name, s.Version, s.Backend)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "phase\tfirst call s\tmedian s\tmedian CPU s\tpeak MiB\tadded MiB\t")
		for _, p := range []struct {
			name string
			ph   *bench.LinPhase
		}{{"forward", s.Forward}, {"forward_lin", s.ForwardLin}, {"train step", s.Train}, {"train_lin step", s.TrainLin}} {
			fmt.Fprintf(tw, "%s\t%.3g\t%.4g\t%.4g\t%.0f\t%.0f\t\n", p.name, p.ph.FirstSeconds, p.ph.MedianSeconds, p.ph.CPUMedian,
				float64(p.ph.PeakBytes)/(1<<20), float64(p.ph.PeakBytes-p.ph.StartBytes)/(1<<20))
		}
		tw.Flush()
		ft, fm, tt, tm := s.Ratios()
		fmt.Fprintf(w, "f_lin / f: inference %.2fx CPU time, %.2fx added memory; training step %.2fx CPU time, %.2fx added memory\n", ft, fm, tt, tm)
	}
}
