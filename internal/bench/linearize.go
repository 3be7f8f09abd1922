package bench

import (
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/linearize"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/train"
	"github.com/editkit/editkit/models/vit"
)

// LinearizeOptions configure RunLinearize.
type LinearizeOptions struct {
	// Model is the image encoder (a ViT; Classes is the frozen head's).
	Model ViTShape
	// Batch images per call; Warmup untimed calls (the first compiles),
	// then Iters timed ones per phase.
	Batch, Warmup, Iters int
	// Torch runs the PyTorch reference (tools/torchref/bench_linearize.py).
	Torch *TorchOptions
	Log   io.Writer
}

// DefaultLinearizeOptions: SmallViT, batches of 32, 1 warm-up and 3 timed
// calls per phase.
func DefaultLinearizeOptions() LinearizeOptions {
	return LinearizeOptions{Model: SmallViT, Batch: 32, Warmup: 1, Iters: 3}
}

// LinPhase is one workload's timings and memory.
type LinPhase struct {
	FirstSeconds  float64   `json:"first_seconds"`
	Seconds       []float64 `json:"seconds"`
	MedianSeconds float64   `json:"median_seconds"`
	// CPUSeconds is the process's CPU time (user + system) per timed call,
	// CPUMedian their median: on a machine shared with other work they
	// vary much less than wall time.
	CPUSeconds []float64 `json:"cpu_seconds"`
	CPUMedian  float64   `json:"cpu_median_seconds"`
	// PeakBytes is the peak memory during the phase (resident set size on
	// the CPU, device memory on CUDA for PyTorch); StartBytes the memory
	// when it began, so PeakBytes − StartBytes is what the phase added.
	PeakBytes  int64 `json:"peak_bytes"`
	StartBytes int64 `json:"start_bytes"`
}

func (p *LinPhase) finish() {
	if len(p.Seconds) > 0 {
		p.MedianSeconds = median(p.Seconds)
	}
	if len(p.CPUSeconds) > 0 {
		p.CPUMedian = median(p.CPUSeconds)
	}
}

// LinSide is one framework's four phases.
type LinSide struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Backend string `json:"backend"`
	Threads int    `json:"threads,omitempty"`
	// Forward and ForwardLin are inference of f and f_lin; Train and
	// TrainLin one fine-tuning step of each.
	Forward, ForwardLin, Train, TrainLin *LinPhase
}

// Ratios returns f_lin's cost over f's: time (median CPU time when known,
// else wall time) and the memory the phase added, for inference and for a
// training step.
func (s *LinSide) Ratios() (fwdTime, fwdMem, trainTime, trainMem float64) {
	ratio := func(a, b float64) float64 {
		if a <= 0 || b <= 0 {
			return 0
		}
		return a / b
	}
	added := func(p *LinPhase) float64 { return float64(p.PeakBytes - p.StartBytes) }
	cost := func(p *LinPhase) float64 {
		if p.CPUMedian > 0 {
			return p.CPUMedian
		}
		return p.MedianSeconds
	}
	return ratio(cost(s.ForwardLin), cost(s.Forward)), ratio(added(s.ForwardLin), added(s.Forward)),
		ratio(cost(s.TrainLin), cost(s.Train)), ratio(added(s.TrainLin), added(s.Train))
}

// LinearizeReport is the outcome of RunLinearize.
type LinearizeReport struct {
	Model        ViTShape   `json:"model"`
	Batch        int        `json:"batch"`
	CPUs         int        `json:"cpus"`
	LoadAvg      [2]float64 `json:"load_average"`
	Editkit      LinSide    `json:"editkit"`
	Torch        *LinSide   `json:"torch,omitempty"`
	TorchMissing string     `json:"torch_missing,omitempty"`
}

// RunLinearize times inference and a fine-tuning step of a ViT and of its
// linearization around its weights (package linearize; models/train with
// Options.Linearized), with the peak memory of each, then (when o.Torch is
// set) the same in PyTorch the way the reference code linearizes (functorch
// jvp), one after the other on the same machine.
func RunLinearize(o LinearizeOptions) (*LinearizeReport, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if err := o.Model.Validate(); err != nil {
		return nil, err
	}
	if o.Batch <= 0 || o.Iters <= 0 || o.Warmup < 1 || o.Model.Classes <= 0 {
		return nil, fmt.Errorf("batch %d, iterations %d, warm-up %d, classes %d: want positive numbers (warm-up ≥ 1)", o.Batch, o.Iters, o.Warmup, o.Model.Classes)
	}
	b := models.Backend()
	r := &LinearizeReport{Model: o.Model, Batch: o.Batch, CPUs: runtime.NumCPU(),
		Editkit: LinSide{Name: "editkit (GoMLX)", Backend: b.Name() + ": " + b.Description(), Threads: runtime.GOMAXPROCS(0)}}
	r.LoadAvg[0] = loadAverage()
	defer func() { r.LoadAvg[1] = loadAverage() }()

	c := withoutClasses(o.Model).config()
	m, err := vit.NewRandom(c, 1)
	if err != nil {
		return nil, err
	}
	enc, err := encoder.NewViT(c, m.Weights)
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	lin, err := linearize.NewEncoder(enc)
	if err != nil {
		return nil, err
	}
	defer lin.Close()
	head := benchHead(o.Model.Classes, c.HiddenSize)
	px := randomPixels(o.Batch, c.ImageSize, 2)
	// θ a little away from θ₀, so that the JVP is not of a zero direction.
	theta := make(models.Weights, len(enc.Specs))
	rng := rand.New(rand.NewPCG(5, 5))
	for _, s := range enc.Specs {
		v := enc.Weights.Float32(s.Name)
		for i := range v {
			v[i] += 0.01 * float32(rng.NormFloat64())
		}
		theta[s.Name] = tensors.FromFlatDataAndDimensions(v, enc.Weights[s.Name].Shape().Dimensions...)
	}
	forward := func(encode func(models.Weights, *tensors.Tensor) ([]float32, error)) func() error {
		return func() error {
			feats, err := encode(theta, px)
			if err != nil {
				return err
			}
			_, err = head.Logits(feats, o.Batch)
			return err
		}
	}
	fmt.Fprintf(o.Log, "editkit: forward of f and f_lin, %s, batch %d\n", o.Model, o.Batch)
	if r.Editkit.Forward, err = measureCalls(o.Warmup, o.Iters, forward(enc.Encode)); err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	if r.Editkit.ForwardLin, err = measureCalls(o.Warmup, o.Iters, forward(lin.Encode)); err != nil {
		return nil, fmt.Errorf("linearized forward: %w", err)
	}
	ds, err := benchDataset(o.Batch, c.ImageSize, o.Model.Classes)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "editkit: fine-tuning steps of f and f_lin, batch %d\n", o.Batch)
	for _, linearized := range []bool{false, true} {
		p, err := measureSteps(enc, head, ds, o, linearized)
		if err != nil {
			return nil, fmt.Errorf("training (linearized %v): %w", linearized, err)
		}
		if linearized {
			r.Editkit.TrainLin = p
		} else {
			r.Editkit.Train = p
		}
	}
	if o.Torch != nil {
		fmt.Fprintf(o.Log, "editkit: the same in PyTorch (%s)\n", o.Torch.Python)
		r.Torch, err = runLinearizeTorch(*o.Torch, o)
		if err != nil {
			r.TorchMissing, r.Torch = err.Error(), nil
		}
	} else {
		r.TorchMissing = "not run"
	}
	return r, nil
}

// benchHead is a CLIP-like zero-shot head: normalized features times fixed
// random unit class vectors, times 100.
func benchHead(classes, dim int) *heads.Head {
	rng := rand.New(rand.NewPCG(7, 7))
	h := &heads.Head{Dim: dim, Scale: 100, Normalize: true}
	for i := range classes {
		h.Classes = append(h.Classes, strconv.Itoa(i))
	}
	for range classes * dim {
		h.Weight = append(h.Weight, float32(rng.NormFloat64()))
	}
	return h
}

// benchDataset is n random images of the given size, labels cycling over
// the classes.
func benchDataset(n, size, classes int) (*datasets.Dataset, error) {
	rng := rand.New(rand.NewPCG(8, 8))
	pix := make([]uint8, n*size*size*3)
	for i := range pix {
		pix[i] = uint8(rng.IntN(256))
	}
	labels := make([]int, n)
	names := make([]string, classes)
	for i := range labels {
		labels[i] = i % classes
	}
	for i := range names {
		names[i] = strconv.Itoa(i)
	}
	return datasets.FromPixels("random", names, size, size, 3, pix, labels)
}

// measureCalls times warmup + iters calls, the memory over all of them.
func measureCalls(warmup, iters int, call func() error) (*LinPhase, error) {
	p := &LinPhase{}
	ph, err := Measure("", 0, func() error {
		p.StartBytes = currentRSS()
		for i := range warmup + iters {
			t, cpu := time.Now(), cpuSeconds()
			if err := call(); err != nil {
				return err
			}
			if i == 0 {
				p.FirstSeconds = time.Since(t).Seconds()
			}
			if i >= warmup {
				p.Seconds = append(p.Seconds, time.Since(t).Seconds())
				p.CPUSeconds = append(p.CPUSeconds, cpuSeconds()-cpu)
			}
		}
		return nil
	})
	p.PeakBytes = ph.PeakRSS
	p.finish()
	return p, err
}

// measureSteps runs warmup + iters steps of fine-tuning (models/train,
// the task-vectors recipe), timing each step after the warm-up.
func measureSteps(enc *encoder.Encoder, head *heads.Head, ds *datasets.Dataset, o LinearizeOptions, linearized bool) (*LinPhase, error) {
	opts := train.Recipe()
	opts.BatchSize, opts.Steps, opts.Linearized, opts.Warmup = o.Batch, o.Warmup+o.Iters, linearized, 1
	p := &LinPhase{}
	var last time.Duration
	lastCPU := cpuSeconds()
	opts.Progress = func(s train.Progress) {
		dt, cpu := (s.Elapsed - last).Seconds(), cpuSeconds()
		last = s.Elapsed
		if s.Step == 1 {
			p.FirstSeconds = dt
		}
		if s.Step > o.Warmup {
			p.Seconds = append(p.Seconds, dt)
			// The data loader prepares the next batch meanwhile: the same
			// work on both sides.
			p.CPUSeconds = append(p.CPUSeconds, cpu-lastCPU)
		}
		lastCPU = cpu
	}
	ph, err := Measure("", 0, func() error {
		p.StartBytes = currentRSS()
		_, err := train.FinetuneIgnoringClassNames(enc, head, ds, opts)
		return err
	})
	p.PeakBytes = ph.PeakRSS
	p.finish()
	return p, err
}

// cpuSeconds is the process's CPU time so far (user + system).
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// currentRSS is the resident set size now (Linux), 0 where unknown.
func currentRSS() int64 { return statusBytes("VmRSS:") }

// runLinearizeTorch runs tools/torchref/bench_linearize.py.
func runLinearizeTorch(t TorchOptions, o LinearizeOptions) (*LinSide, error) {
	var out struct {
		Error      string               `json:"error"`
		Torch      string               `json:"torch"`
		Device     string               `json:"device"`
		DeviceName string               `json:"device_name"`
		Threads    int                  `json:"threads"`
		Phases     map[string]*LinPhase `json:"phases"`
	}
	find := func() (string, error) {
		p, err := FindTorchScript()
		if err != nil {
			return "", err
		}
		return filepath.Join(filepath.Dir(p), "bench_linearize.py"), nil
	}
	args := func() []string {
		threads := t.Threads
		if threads <= 0 {
			threads = runtime.NumCPU()
		}
		device := t.Device
		if device == "" {
			device = "cpu"
		}
		s := o.Model
		return []string{t.Script, "--device", device, "--threads", strconv.Itoa(threads),
			"--warmup", strconv.Itoa(o.Warmup), "--iters", strconv.Itoa(o.Iters), "--batch", strconv.Itoa(o.Batch),
			"--width", strconv.Itoa(s.Width), "--layers", strconv.Itoa(s.Layers), "--heads", strconv.Itoa(s.Heads),
			"--mlp", strconv.Itoa(s.MLP), "--patch", strconv.Itoa(s.Patch), "--image", strconv.Itoa(s.Image),
			"--classes", strconv.Itoa(s.Classes)}
	}
	if err := runReference(&t, find, args, nil, &out, func() string { return out.Error }); err != nil {
		return nil, err
	}
	side := &LinSide{Name: "PyTorch (functorch jvp, as the reference)", Version: out.Torch, Backend: out.Device, Threads: out.Threads}
	if out.DeviceName != "" {
		side.Backend += " (" + out.DeviceName + ")"
	}
	for name, dst := range map[string]**LinPhase{"forward": &side.Forward, "forward_lin": &side.ForwardLin, "train": &side.Train, "train_lin": &side.TrainLin} {
		p := out.Phases[name]
		if p == nil {
			return nil, fmt.Errorf("the PyTorch reference reported no %s phase", name)
		}
		p.finish()
		*dst = p
	}
	return side, nil
}
