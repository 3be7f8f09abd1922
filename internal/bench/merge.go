package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/editkit/editkit/merge"
	"github.com/editkit/editkit/tasks"
)

// MergeOptions configure the merge benchmark.
type MergeOptions struct {
	Dir     string // where the synthetic checkpoints go
	Size    int64  // approximate bytes per checkpoint
	Models  int    // fine-tuned models
	Workers int
	// Cold drops the page cache before every measured run, so each phase
	// reads the files from disk (Linux, as root).
	Cold bool
	// Repeat runs each phase this many times and keeps the fastest
	// (default 3), after one unmeasured read that warms the page cache.
	Repeat int
	Log    io.Writer
}

// MergeReport is the merge benchmark's result.
type MergeReport struct {
	Family     Family
	Tensors    int
	InputBytes int64
	Largest    int64 // bytes of the largest tensor
	Models     int
	Cold       bool
	Phases     []Phase
	// LoadAvg is the 1-minute load average before and after the run, on
	// CPUs CPUs.
	LoadAvg [2]float64
	CPUs    int
}

// RSSBound is the memory target: 64 MiB + (N+2) × the largest tensor.
func (r *MergeReport) RSSBound() int64 { return 64<<20 + int64(r.Models+2)*r.Largest }

func measureMaybeCold(cold bool, name string, inputBytes int64, fn func() error) (Phase, error) {
	if cold {
		if err := DropPageCache(); err != nil {
			return Phase{}, err
		}
	}
	return Measure(name, inputBytes, fn)
}

// RunMerge generates (or reuses) a base and fine-tuned checkpoints and times
// a raw read of them, task arithmetic and TIES with a whole-model threshold.
func RunMerge(o MergeOptions) (*MergeReport, error) {
	f := FamilyForBytes(o.Size)
	rep := &MergeReport{Family: f, Tensors: len(f.Specs()), Models: o.Models, CPUs: runtime.NumCPU()}
	rep.LoadAvg[0] = loadAverage()
	defer func() { rep.LoadAvg[1] = loadAverage() }()
	for _, s := range f.Specs() {
		rep.Largest = max(rep.Largest, s.Bytes())
	}
	dirs := []string{filepath.Join(o.Dir, "base")}
	for i := range o.Models {
		dirs = append(dirs, filepath.Join(o.Dir, "ft"+strconv.Itoa(i)))
	}
	if err := claimWorkDir(o.Dir, f); err != nil {
		return nil, err
	}
	var files []string
	for i, d := range dirs {
		fs, err := SafetensorsFiles(d)
		if err != nil {
			fmt.Fprintf(o.Log, "generating %s (%d layers, %d tensors)\n", d, f.Layers, rep.Tensors)
			if err := Generate(d, f, i-1); err != nil {
				return nil, err
			}
			if fs, err = SafetensorsFiles(d); err != nil {
				return nil, err
			}
		}
		files = append(files, fs...)
	}
	repeat := max(o.Repeat, 1)
	if o.Repeat == 0 {
		repeat = 3
	}
	n, err := RawRead(files) // warm the page cache
	if err != nil {
		return nil, err
	}
	rep.InputBytes = n
	rep.Cold = o.Cold
	raw, err := best(repeat, func() (Phase, error) {
		return measureMaybeCold(o.Cold, "raw read", rep.InputBytes, func() error {
			_, err := RawRead(files)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	rep.Phases = append(rep.Phases, raw)
	fmt.Fprintf(o.Log, "raw read: %.2f s\n", raw.Seconds)
	runs := []struct {
		name string
		cfg  merge.Config
	}{
		{"task_arithmetic", merge.Config{Method: merge.TaskArithmetic, Lambda: ptr(0.3)}},
		{"ties (global top-20%)", merge.Config{Method: merge.TIES}},
	}
	for i, r := range runs {
		out := filepath.Join(o.Dir, "out"+strconv.Itoa(i))
		passes := 0
		ph, err := best(repeat, func() (Phase, error) {
			return measureMaybeCold(o.Cold, r.name, rep.InputBytes, func() error {
				s, err := tasks.OpenSet(dirs[0], dirs[1:])
				if err != nil {
					return err
				}
				defer s.Close()
				cfg := r.cfg
				wo := tasks.WriteOptions{}
				wo.Force = true
				res, err := merge.Run(s, &cfg, out, wo, tasks.StreamOptions{Workers: o.Workers})
				if err == nil {
					passes = res.Passes
				}
				return err
			})
		})
		if err != nil {
			return nil, err
		}
		ph.Passes = passes
		rep.Phases = append(rep.Phases, ph)
		fmt.Fprintf(o.Log, "%s: %.2f s, %d passes\n", r.name, ph.Seconds, passes)
	}
	return rep, nil
}

func ptr(v float64) *float64 { return &v }

// best runs measure repeat times and keeps the fastest run with the largest
// peak RSS seen (memory is a bound, time a best case).
func best(repeat int, measure func() (Phase, error)) (Phase, error) {
	var b Phase
	for i := range repeat {
		p, err := measure()
		if err != nil {
			return p, err
		}
		rss := max(b.PeakRSS, p.PeakRSS)
		if i == 0 || p.Seconds < b.Seconds {
			b = p
		}
		b.PeakRSS = rss
	}
	return b, nil
}

// workMarker names the file that marks a folder as the merge benchmark's
// own, and records the family its checkpoints hold.
const workMarker = "editkit-bench.json"

// claimWorkDir makes dir the benchmark's work folder: a new or empty folder
// is marked as the benchmark's; a folder it marked before is reused when it
// holds the same family. Anything else is refused, because the benchmark
// writes base/, ft*/ and out*/ there, overwriting what has those names.
func claimWorkDir(dir string, f Family) error {
	marker := filepath.Join(dir, workMarker)
	data, err := os.ReadFile(marker)
	switch {
	case err == nil:
		var had Family
		if err := json.Unmarshal(data, &had); err != nil {
			return fmt.Errorf("%s: %w (remove the folder %s, or give another --dir)", marker, err, dir)
		}
		if had != f {
			return fmt.Errorf("--dir %s holds the benchmark's checkpoints of another size (%d layers, where this --size needs %d): give another --dir, or remove that folder", dir, had.Layers, f.Layers)
		}
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("--dir %s is not empty and was not made by editkit bench (it writes base/, ft*/ and out*/ there): give a new or empty folder", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if data, err = json.Marshal(f); err != nil {
		return err
	}
	tmp := marker + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, marker)
}
