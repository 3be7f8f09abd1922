package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/internal/bench"
)

func (a *app) benchCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks with results printed as ratios against a baseline run side by side",
	}
	c.AddCommand(a.benchMergeCmd(), a.benchViTCmd(), a.benchLlamaCmd(), a.benchMemoirCmd(), a.benchLinearizeCmd())
	return c
}

func (a *app) benchMergeCmd() *cobra.Command {
	var (
		dir, size     string
		models, rep   int
		workers       int
		cold, keepDir bool
		cpuProfile    string
		force         bool
	)
	c := &cobra.Command{
		Use:   "merge",
		Short: "Time task arithmetic and TIES against a raw read of the same checkpoints",
		Long: `Generates a synthetic LLaMA-shaped family (a base and --models fine-tuned
checkpoints in bf16, about --size each, a few hundred tensors), then times in
one process, on the same files: a raw sequential read of all of them, a task
arithmetic merge and a TIES merge with the paper's whole-model top-20% trim.
It prints input throughput, the ratio to the raw read and each phase's peak
resident memory. Checkpoints are reused from --dir when present.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			n, err := parseSize(size)
			if err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			if models < 2 {
				return fmt.Errorf("--models %d: the benchmark needs at least 2 fine-tuned models", models)
			}
			switch {
			case dir == "" && keepDir:
				if dir, err = os.MkdirTemp("", "editkit-bench-"); err != nil {
					return err
				}
			case dir == "":
				// Removed at the end, and on a signal with the partial outputs.
				var remove func()
				if dir, remove, err = checkpoint.TempDir("", "editkit-bench-"); err != nil {
					return err
				}
				defer remove()
			}
			if cpuProfile != "" {
				// Written atomically: the profile appears once complete.
				pf, err := checkpoint.CreateFile(cpuProfile, a.outputOptions())
				if err != nil {
					return err
				}
				defer pf.Abort()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return err
				}
				defer func() {
					pprof.StopCPUProfile()
					if err == nil {
						err = pf.Commit()
					}
				}()
			}
			log := a.stderr
			if a.quiet || a.json {
				log = discard{}
			}
			r, err := bench.RunMerge(bench.MergeOptions{Dir: filepath.Clean(dir), Size: n, Models: models, Workers: workers, Repeat: rep, Cold: cold, Log: log})
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(r)
			}
			printMergeReport(a, r)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&dir, "dir", "", "folder for the synthetic checkpoints: new, empty, or one bench made before, whose checkpoints are reused (default: a temporary folder, removed afterwards)")
	f.StringVar(&size, "size", "1GiB", "approximate size of each checkpoint")
	f.IntVar(&models, "models", 4, "number of fine-tuned checkpoints")
	f.IntVar(&rep, "repeat", 3, "runs per phase; the fastest is reported")
	f.IntVar(&workers, "workers", 0, "merge workers (default: GOMAXPROCS, at most 4)")
	f.BoolVar(&cold, "cold", false, "drop the page cache before each run so data comes from disk (Linux, root)")
	f.BoolVar(&keepDir, "keep", false, "keep the temporary folder")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	f.BoolVar(&force, "force", false, "replace the --cpuprofile file if it exists")
	markPaths(f, pathWork, "dir")
	markPaths(f, pathOutput, "cpuprofile")
	return c
}

// printLoad reports the 1-minute load average around a benchmark, with a
// warning when other work shared the machine.
func printLoad(w io.Writer, load [2]float64, cpus int) {
	fmt.Fprintf(w, "load average %.2f before, %.2f after the run, on %d CPUs", load[0], load[1], cpus)
	if max(load[0], load[1]) > 0.5*float64(cpus) {
		fmt.Fprint(w, ": warning, other work shared the machine, so the timings (and their ratios) are unreliable")
	}
	fmt.Fprintln(w)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func printMergeReport(a *app, r *bench.MergeReport) {
	fam := r.Family
	cache := "warm page cache"
	if r.Cold {
		cache = "cold page cache (dropped before each run)"
	}
	fmt.Fprintf(a.stdout, "%d + 1 checkpoints, LLaMA-shaped (hidden %d, intermediate %d, %d layers), %d tensors, %s read per run; %s\n",
		r.Models, fam.Hidden, fam.Intermediate, fam.Layers, r.Tensors, humanBytes(r.InputBytes), cache)
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tpasses\tseconds\tinput GB/s\tratio to raw read\tpeak RSS\t")
	raw := r.Phases[0]
	for _, p := range r.Phases {
		passes := "1"
		if p.Passes > 0 {
			passes = fmt.Sprint(p.Passes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f\t%.2f\t%s\t\n", p.Name, passes, p.Seconds, p.GBps(), raw.Seconds/p.Seconds, bench.MiB(p.PeakRSS))
	}
	tw.Flush()
	if len(r.Phases) == 3 {
		fmt.Fprintf(a.stdout, "TIES time / task arithmetic time: %.2f\n", r.Phases[2].Seconds/r.Phases[1].Seconds)
	}
	fmt.Fprintf(a.stdout, "largest tensor %s; memory bound 64 MiB + (N+2) x largest = %s\n", bench.MiB(r.Largest), bench.MiB(r.RSSBound()))
	printLoad(a.stdout, r.LoadAvg, r.CPUs)
}

// registerTorchFlags registers the flags of a benchmark's PyTorch reference
// (tools/torchref/script) and of its JSON record.
func registerTorchFlags(f *pflag.FlagSet, t *bench.TorchOptions, noTorch *bool, jsonOut *string, script string, timeout time.Duration) {
	f.StringVar(&t.Python, "python", bench.DefaultPython(), "Python interpreter with torch for the reference")
	f.StringVar(&t.Script, "torch-script", "", "the reference script (default: tools/torchref/"+script+" found above the working directory)")
	f.StringVar(&t.Device, "device", "cpu", "PyTorch device: cpu or cuda")
	f.IntVar(&t.Threads, "threads", 0, "PyTorch CPU threads (0: every CPU)")
	f.BoolVar(noTorch, "no-torch", false, "skip the PyTorch reference")
	f.StringVar(jsonOut, "json-out", "", "also write the --json result to this file")
	f.DurationVar(&t.Timeout, "torch-timeout", timeout, "limit for the PyTorch subprocess")
	f.Bool("force", false, "replace the --json-out file if it exists")
	markPaths(f, pathInput, "python", "torch-script")
	markPaths(f, pathOutput, "json-out")
}

// benchReport writes a benchmark's result to jsonOut (when set), then
// prints it as JSON (--json) or as text.
func (a *app) benchReport(r any, jsonOut string, text func()) error {
	if jsonOut != "" {
		js, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		if err := a.writeFile(jsonOut, append(js, '\n')); err != nil {
			return err
		}
	}
	if a.json {
		return a.printJSON(r)
	}
	text()
	return nil
}
