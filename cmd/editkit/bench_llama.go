package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/editkit/editkit/internal/bench"
)

func (a *app) benchLlamaCmd() *cobra.Command {
	o := bench.DefaultLlamaOptions()
	var (
		t       bench.TorchOptions
		noTorch bool
		jsonOut string
	)
	c := &cobra.Command{
		Use:   "llama",
		Short: "Time a LLaMA forward pass and greedy generation (TinyStories stories260K) against PyTorch on the same machine",
		Long: `Converts llama2.c's TinyStories model stories260K.bin (with tok512.bin) from
--data (default: $EDITKIT_LLM_DATA, else shared/data/llm in a folder above the
working directory) into a temporary Hugging Face folder, or, when the files are
absent or with --random, writes a random model of the same shape there. Then
times, in editkit's GoMLX model on the configured backend (GOMLX_BACKEND;
default the pure-Go simplego):

  forward   full forward passes (logits at every position) over --batch
            random sequences of --seq tokens (fixed seed): --warmup calls (the
            first compiles), then --iters timed ones;
  generate  greedy decoding from BOS with the key/value cache, --gen-steps
            positions (BOS included), as llama.Generate runs it;

then the same in PyTorch, in the same run: tools/torchref/bench_llama.py run by
--python (default /usr/bin/python3 with Debian's torch; threads = the CPU
count) loads the same folder into llama_ref.py's torch.nn LLaMA, runs the same
token batch, and decodes greedily with a simple torch.cat key/value cache.
Reported: the median seconds per forward call, tokens/s and achieved GFLOP/s,
the decode rate (one-token steps after the first, as run.c counts), and
editkit's rate over PyTorch's. The greedy tokens of both sides are compared.
Without Python or torch the PyTorch side is skipped with the reason.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !noTorch {
				o.Torch = &t
			}
			if !a.quiet && !a.json {
				o.Log = a.stderr
			}
			if o.Data == "" {
				o.Data = bench.DefaultLlamaData()
			}
			r, err := bench.RunLlama(o)
			if err != nil {
				return err
			}
			return a.benchReport(r, jsonOut, func() { printLlamaReport(a.stdout, r) })
		},
	}
	f := c.Flags()
	f.StringVar(&o.Data, "data", "", "folder with stories260K.bin and tok512.bin (default: $EDITKIT_LLM_DATA, else shared/data/llm above the working directory)")
	f.BoolVar(&o.Random, "random", false, "use a random model of stories260K's shape even when the file is present")
	f.IntVar(&o.Batch, "batch", o.Batch, "forward: sequences per call")
	f.IntVar(&o.Seq, "seq", o.Seq, "forward: tokens per sequence")
	f.IntVar(&o.Iters, "iters", o.Iters, "forward: timed calls (0 skips the forward benchmark)")
	f.IntVar(&o.Warmup, "warmup", o.Warmup, "forward: untimed calls before the timed ones (the first compiles)")
	f.IntVar(&o.GenSteps, "gen-steps", o.GenSteps, "generate: positions from BOS, BOS included (0 skips generation)")
	registerTorchFlags(f, &t, &noTorch, &jsonOut, "bench_llama.py", 10*time.Minute)
	markPaths(f, pathInput, "data")
	return c
}

// printLlamaReport prints the two sides as columns with their ratio.
func printLlamaReport(w io.Writer, r *bench.LlamaReport) {
	fmt.Fprintf(w, "model: %s\n       %s\n", r.Model.Source, r.Model)
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
	table := func(title string, rows func(row func(name string, a, b float64, format string, higherBetter bool))) {
		fmt.Fprintf(w, "\n%s\n", title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		head := "\teditkit\t"
		if r.Torch != nil {
			head += "PyTorch\teditkit/PyTorch\t"
		}
		fmt.Fprintln(tw, head)
		rows(func(name string, a, b float64, format string, higherBetter bool) {
			line := name + "\t" + fmt.Sprintf(format, a) + "\t"
			if r.Torch != nil {
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
		})
		tw.Flush()
	}
	if f := r.Editkit.Forward; f != nil {
		var tf bench.LlamaForward
		if r.Torch != nil && r.Torch.Forward != nil {
			tf = *r.Torch.Forward
		}
		table(fmt.Sprintf("Forward, batch %d × %d tokens, full logits (ratios: editkit throughput / PyTorch's)", r.Batch, r.Seq), func(row func(string, float64, float64, string, bool)) {
			row("first call, s (compile + run)", f.FirstSeconds, tf.FirstSeconds, "%.3g", false)
			row(fmt.Sprintf("median s per call (%d timed)", len(f.Seconds)), f.MedianSeconds, tf.MedianSeconds, "%.4g", false)
			row("tokens/s", f.TokensPerSecond, tf.TokensPerSecond, "%.5g", true)
			row("GFLOP/s", f.GFLOPs, tf.GFLOPs, "%.3g", true)
		})
	}
	if g := r.Editkit.Generate; g != nil {
		var tg bench.LlamaGenerate
		if r.Torch != nil && r.Torch.Generate != nil {
			tg = *r.Torch.Generate
		}
		table(fmt.Sprintf("Greedy generation from BOS, %d positions, batch 1, KV cache", g.Steps), func(row func(string, float64, float64, string, bool)) {
			row("decode tokens/s (after the first step)", g.TokensPerSecond, tg.TokensPerSecond, "%.5g", true)
			row("whole run, s (compile included)", g.TotalSeconds, tg.TotalSeconds, "%.3g", false)
		})
		if r.Torch != nil && r.Torch.Generate != nil {
			fmt.Fprintf(w, "PyTorch loop: %s; greedy tokens agree on the first %d of %d\n", r.Torch.Generate.Cache, r.SameTokens, len(g.Tokens))
		} else if r.Torch != nil {
			fmt.Fprintln(w, "PyTorch: no generation result; editkit's alone")
		}
	}
}
