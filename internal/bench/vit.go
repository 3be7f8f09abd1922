package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/vit"
)

// ViTShape is the size of a ViT in Hugging Face's layout (pre-LN blocks,
// separate q/k/v, exact GELU, CLS pooling).
type ViTShape struct {
	Width   int `json:"width"`
	Layers  int `json:"layers"`
	Heads   int `json:"heads"`
	MLP     int `json:"mlp"`
	Patch   int `json:"patch"`
	Image   int `json:"image"`
	Classes int `json:"classes,omitempty"` // a linear classifier on the CLS token
}

// ViTB32 is ViT-B/32 at 224 pixels (CLIP ViT-B/32's image encoder has the
// same matrix sizes).
var ViTB32 = ViTShape{Width: 768, Layers: 12, Heads: 12, MLP: 3072, Patch: 32, Image: 224}

// SmallViT is the trained model: ViT-Tiny's width, half its depth, 16-pixel
// patches of 64-pixel images, 10 classes.
var SmallViT = ViTShape{Width: 192, Layers: 6, Heads: 3, MLP: 768, Patch: 16, Image: 64, Classes: 10}

func (s ViTShape) config() vit.Config {
	c := vit.DefaultConfig()
	c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize = s.Width, s.Layers, s.Heads, s.MLP
	c.ImageSize, c.PatchSize, c.NumLabels = s.Image, s.Patch, s.Classes
	return c
}

// String describes the shape.
func (s ViTShape) String() string {
	out := fmt.Sprintf("width %d, %d layers, %d heads, MLP %d, patch %d, %d×%d images", s.Width, s.Layers, s.Heads, s.MLP, s.Patch, s.Image, s.Image)
	if s.Classes > 0 {
		out += fmt.Sprintf(", %d classes", s.Classes)
	}
	return out
}

// Validate checks the shape fits together.
func (s ViTShape) Validate() error { return s.config().Validate() }

// FLOPs is the forward pass's floating-point operations per image, counting
// a multiply-add as 2 and only the matrix products (patch embedding,
// projections, MLP, attention scores and mixing, classifier).
func (s ViTShape) FLOPs() float64 {
	p := float64((s.Image / s.Patch) * (s.Image / s.Patch))
	t, d, m := p+1, float64(s.Width), float64(s.MLP)
	f := 2 * p * 3 * float64(s.Patch*s.Patch) * d
	f += float64(s.Layers) * (2*t*4*d*d + 2*t*2*d*m + 2*2*t*t*d)
	f += 2 * d * float64(s.Classes)
	return f
}

// ViTOptions configure RunViT.
type ViTOptions struct {
	// Forward is the inference model, run Iters times on Batch images.
	Forward ViTShape
	Batch   int
	Iters   int
	// Train is the trained model, Steps AdamW steps on TrainBatch images.
	Train      ViTShape
	TrainBatch int
	Steps      int
	// Warmup calls precede the timed ones (the first compiles).
	Warmup int
	// Profile records a CPU profile of editkit's timed calls.
	Profile bool
	// Torch runs the PyTorch reference (see TorchOptions).
	Torch *TorchOptions
	// Log receives progress lines.
	Log io.Writer
}

// DefaultViTOptions is the default run: ViT-B/32 forward on a batch of 32
// (one warm-up call, one timed: about a minute each on simplego with two
// cores), 5 training steps of SmallViT on batches of 32.
func DefaultViTOptions() ViTOptions {
	return ViTOptions{Forward: ViTB32, Batch: 32, Iters: 1, Train: SmallViT, TrainBatch: 32, Steps: 5, Warmup: 1}
}

// ViTPhase is one timed workload of one framework.
type ViTPhase struct {
	// FirstSeconds is the first warm-up call: compilation and one run.
	FirstSeconds float64   `json:"first_seconds"`
	Seconds      []float64 `json:"seconds"` // each timed call
	// Median of Seconds, and the rates derived from it.
	MedianSeconds   float64 `json:"median_seconds"`
	ImagesPerSecond float64 `json:"images_per_second"`
	CallsPerSecond  float64 `json:"calls_per_second"` // batches/s or steps/s
	MsPerImage      float64 `json:"ms_per_image"`
	GFLOPs          float64 `json:"gflops"` // achieved, from ViTShape.FLOPs (×3 for a training step)
	// Loss holds a training run's first and last loss.
	Loss []float64 `json:"loss,omitempty"`
}

// finish fills the derived numbers from the timings.
func (p *ViTPhase) finish(batch int, flopsPerCall float64) {
	if len(p.Seconds) == 0 {
		return
	}
	s := slices.Clone(p.Seconds)
	slices.Sort(s)
	n := len(s)
	p.MedianSeconds = s[n/2]
	if n%2 == 0 {
		p.MedianSeconds = (s[n/2-1] + s[n/2]) / 2
	}
	if p.MedianSeconds > 0 {
		p.CallsPerSecond = 1 / p.MedianSeconds
		p.ImagesPerSecond = float64(batch) / p.MedianSeconds
		p.MsPerImage = 1000 * p.MedianSeconds / float64(batch)
		p.GFLOPs = flopsPerCall / p.MedianSeconds / 1e9
	}
}

// Side is one framework's results.
type Side struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// Backend is GoMLX's backend, or PyTorch's device.
	Backend string    `json:"backend"`
	Threads int       `json:"threads,omitempty"`
	Forward *ViTPhase `json:"forward,omitempty"`
	Train   *ViTPhase `json:"train,omitempty"`
	// Notes records settings that matter to a comparison (attention
	// implementation, TF32).
	Notes map[string]string `json:"notes,omitempty"`
}

// ViTReport is the outcome of RunViT.
type ViTReport struct {
	Forward    ViTShape `json:"forward_model"`
	Batch      int      `json:"batch"`
	Train      ViTShape `json:"train_model"`
	TrainBatch int      `json:"train_batch"`
	CPUs       int      `json:"cpus"`
	// LoadAvg is the 1-minute load average before and after the run
	// (Linux): other work on the machine skews both sides' timings.
	LoadAvg [2]float64 `json:"load_average"`
	Editkit Side       `json:"editkit"`
	Torch   *Side      `json:"torch,omitempty"`
	// TorchMissing says why there is no PyTorch side.
	TorchMissing string `json:"torch_missing,omitempty"`
	// Profile summarizes a CPU profile of editkit's timed calls per phase.
	Profile map[string]*ProfileSummary `json:"profile,omitempty"`
}

// Ratio returns editkit's throughput over PyTorch's for a phase ("forward"
// or "train"), 0 when either is missing.
func (r *ViTReport) Ratio(phase string) float64 {
	if r.Torch == nil {
		return 0
	}
	a, b := r.Editkit.Forward, r.Torch.Forward
	if phase == "train" {
		a, b = r.Editkit.Train, r.Torch.Train
	}
	if a == nil || b == nil || a.ImagesPerSecond == 0 || b.ImagesPerSecond == 0 {
		return 0
	}
	return a.ImagesPerSecond / b.ImagesPerSecond
}

// RunViT times a ViT forward pass and a training step in editkit's GoMLX
// models, then the same workloads in PyTorch in a subprocess (when
// o.Torch is set), one after the other on the same machine.
func RunViT(o ViTOptions) (*ViTReport, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if err := o.Forward.Validate(); err != nil {
		return nil, fmt.Errorf("forward model: %w", err)
	}
	if err := o.Train.Validate(); err != nil {
		return nil, fmt.Errorf("trained model: %w", err)
	}
	if o.Train.Classes <= 0 {
		return nil, errors.New("trained model: needs classes > 0")
	}
	if o.Batch <= 0 || o.TrainBatch <= 0 || o.Iters < 0 || o.Steps < 0 || o.Warmup < 1 {
		return nil, fmt.Errorf("batch %d, train batch %d, iterations %d, steps %d, warm-up %d: want positive batches, ≥ 0 timed calls, ≥ 1 warm-up", o.Batch, o.TrainBatch, o.Iters, o.Steps, o.Warmup)
	}
	b := models.Backend()
	r := &ViTReport{Forward: o.Forward, Batch: o.Batch, Train: o.Train, TrainBatch: o.TrainBatch, CPUs: runtime.NumCPU(),
		Editkit: Side{Name: "editkit (GoMLX)", Backend: b.Name() + ": " + b.Description(), Threads: runtime.GOMAXPROCS(0)}}
	r.LoadAvg[0] = loadAverage()
	defer func() { r.LoadAvg[1] = loadAverage() }()
	if o.Profile {
		r.Profile = map[string]*ProfileSummary{}
	}
	var err error
	if o.Iters > 0 {
		fmt.Fprintf(o.Log, "editkit: forward, %s, batch %d: %d warm-up + %d timed calls\n", o.Forward, o.Batch, o.Warmup, o.Iters)
		r.Editkit.Forward, err = goForward(o, r.Profile)
		if err != nil {
			return nil, fmt.Errorf("editkit forward: %w", err)
		}
	}
	if o.Steps > 0 {
		fmt.Fprintf(o.Log, "editkit: training, %s, batch %d: %d warm-up + %d timed AdamW steps\n", o.Train, o.TrainBatch, o.Warmup, o.Steps)
		r.Editkit.Train, err = goTrain(o, r.Profile)
		if err != nil {
			return nil, fmt.Errorf("editkit training: %w", err)
		}
	}
	if o.Torch != nil {
		fmt.Fprintf(o.Log, "editkit: the same in PyTorch (%s)\n", o.Torch.Python)
		r.Torch, err = runTorch(*o.Torch, o)
		if err != nil {
			r.TorchMissing = err.Error()
			r.Torch = nil
		}
	} else {
		r.TorchMissing = "not run"
	}
	return r, nil
}

// loadAverage is the 1-minute load average, or -1 where unknown.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// profiled runs fn under the CPU profiler when sums is non-nil and stores
// the summary under name.
func profiled(sums map[string]*ProfileSummary, name string, fn func() error) error {
	if sums == nil {
		return fn()
	}
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		return fmt.Errorf("CPU profile: %w", err)
	}
	err := fn()
	pprof.StopCPUProfile()
	if err != nil {
		return err
	}
	s, perr := SummarizeProfile(buf.Bytes(), 12)
	if perr != nil {
		return fmt.Errorf("reading the CPU profile: %w", perr)
	}
	sums[name] = s
	return nil
}

// randomPixels returns n random images [n, size, size, 3] in [-1, 1).
func randomPixels(n, size int, seed uint64) *tensors.Tensor {
	r := rand.New(rand.NewPCG(seed, 3))
	v := make([]float32, n*size*size*3)
	for i := range v {
		v[i] = 2*r.Float32() - 1
	}
	return tensors.FromFlatDataAndDimensions(v, n, size, size, 3)
}

// warmUp makes the warm-up calls and returns a phase holding the first
// one's time (compilation and one run).
func warmUp(warmup int, call func() error) (*ViTPhase, error) {
	p := &ViTPhase{}
	for i := range warmup {
		t := time.Now()
		if err := call(); err != nil {
			return nil, err
		}
		if i == 0 {
			p.FirstSeconds = time.Since(t).Seconds()
		}
	}
	return p, nil
}

// timed makes n timed calls into p, under the profiler when prof is set.
func timed(p *ViTPhase, n int, prof map[string]*ProfileSummary, name string, call func() error) error {
	return profiled(prof, name, func() error {
		for range n {
			t := time.Now()
			if err := call(); err != nil {
				return err
			}
			p.Seconds = append(p.Seconds, time.Since(t).Seconds())
		}
		return nil
	})
}

func goForward(o ViTOptions, prof map[string]*ProfileSummary) (*ViTPhase, error) {
	s := o.Forward
	s.Classes = 0
	m, err := vit.NewRandom(s.config(), 1)
	if err != nil {
		return nil, err
	}
	defer m.Func().Finalize()
	px := randomPixels(o.Batch, s.Image, 2)
	call := func() error {
		pooled, _, err := m.Run(px)
		if err != nil {
			return err
		}
		_ = tensors.MustCopyFlatData[float32](pooled) // on the host: the work is done
		pooled.FinalizeAll()
		return nil
	}
	p, err := warmUp(o.Warmup, call)
	if err != nil {
		return nil, err
	}
	if err := timed(p, o.Iters, prof, "forward", call); err != nil {
		return nil, err
	}
	p.finish(o.Batch, float64(o.Batch)*s.FLOPs())
	return p, nil
}

// AdamW settings of the training benchmark, the same in the PyTorch
// reference: torch.optim.AdamW's defaults but the learning rate and weight
// decay of the task-vectors recipe's order, gradient norm clipped to 1.
const (
	benchLR          = 1e-4
	benchWeightDecay = 0.1
	benchBeta1       = 0.9
	benchBeta2       = 0.999
	benchEps         = 1e-8
	benchClip        = 1.0
)

// trainStep builds one AdamW step of a ViT classifier as a graph of the
// weights, Adam's moments and the batch, as editkit's trainer does
// (models/train): arguments P (n), M (n), V (n), decayMul = 1 − lr·wd,
// stepSize = lr/(1 − β1ᵗ), sqrtBC2 = √(1 − β2ᵗ), pixels, labels; outputs
// the loss and the new P, M, V.
func trainStep(c vit.Config, n int) func(all []*graph.Node) []*graph.Node {
	specs := c.Specs()
	return func(all []*graph.Node) []*graph.Node {
		P, M, V := all[:n], all[n:2*n], all[2*n:3*n]
		decayMul, stepSize, sqrtBC2 := all[3*n], all[3*n+1], all[3*n+2]
		pixels, labels := all[3*n+3], all[3*n+4]
		g := pixels.Graph()
		p := make(models.Params, n)
		for i, s := range specs {
			p[s.Name] = P[i]
		}
		_, logits := vit.Forward(c, p, pixels)
		onehot := graph.OneHot(labels, c.NumLabels, logits.DType())
		loss := graph.ReduceAllMean(graph.Neg(graph.ReduceSum(graph.Mul(onehot, graph.LogSoftmax(logits, -1)), -1)))
		grads := graph.Gradient(loss, P...)
		var sq *graph.Node
		for _, gr := range grads {
			s := graph.ReduceAllSum(graph.Square(gr))
			if sq == nil {
				sq = s
			} else {
				sq = graph.Add(sq, s)
			}
		}
		coef := graph.Min(graph.ScalarOne(g, loss.DType()), graph.Div(graph.Scalar(g, loss.DType(), benchClip), graph.AddScalar(graph.Sqrt(sq), 1e-6)))
		out := []*graph.Node{loss}
		newM, newV := make([]*graph.Node, n), make([]*graph.Node, n)
		for i := range P {
			gr := graph.Mul(grads[i], coef)
			newM[i] = graph.Add(graph.MulScalar(M[i], benchBeta1), graph.MulScalar(gr, 1-benchBeta1))
			newV[i] = graph.Add(graph.MulScalar(V[i], benchBeta2), graph.MulScalar(graph.Square(gr), 1-benchBeta2))
			denom := graph.AddScalar(graph.Div(graph.Sqrt(newV[i]), sqrtBC2), benchEps)
			out = append(out, graph.Sub(graph.Mul(P[i], decayMul), graph.Mul(stepSize, graph.Div(newM[i], denom))))
		}
		out = append(out, newM...)
		return append(out, newV...)
	}
}

func goTrain(o ViTOptions, prof map[string]*ProfileSummary) (*ViTPhase, error) {
	c := o.Train.config()
	m, err := vit.NewRandom(c, 4)
	if err != nil {
		return nil, err
	}
	m.Func().Finalize()
	specs := c.Specs()
	n := len(specs)
	exec, err := graph.NewExec(models.Backend(), trainStep(c, n))
	if err != nil {
		return nil, err
	}
	defer exec.Finalize()
	state := make([]*tensors.Tensor, 3*n)
	for i, s := range specs {
		state[i] = m.Weights[s.Name]
		state[n+i] = tensors.FromShape(state[i].Shape())
		state[2*n+i] = tensors.FromShape(state[i].Shape())
	}
	px := randomPixels(o.TrainBatch, c.ImageSize, 5)
	r := rand.New(rand.NewPCG(6, 0))
	lab := make([]int32, o.TrainBatch)
	for i := range lab {
		lab[i] = int32(r.IntN(c.NumLabels))
	}
	labels := tensors.FromValue(lab)
	step := 0
	var losses []float64
	call := func() (err error) {
		defer func() {
			if rec := recover(); rec != nil {
				err = fmt.Errorf("%v", rec)
			}
		}()
		step++
		args := make([]any, 0, 3*n+5)
		for _, t := range state {
			args = append(args, t)
		}
		t := float64(step)
		args = append(args,
			tensors.FromScalar(float32(1-benchLR*benchWeightDecay)),
			tensors.FromScalar(float32(benchLR/(1-math.Pow(benchBeta1, t)))),
			tensors.FromScalar(float32(math.Sqrt(1-math.Pow(benchBeta2, t)))),
			px, labels)
		outs, err := exec.Exec(args...)
		if err != nil {
			return err
		}
		losses = append(losses, float64(tensors.MustCopyFlatData[float32](outs[0])[0]))
		outs[0].FinalizeAll()
		for i, t := range state {
			t.FinalizeAll()
			state[i] = outs[1+i]
		}
		return nil
	}
	p, err := warmUp(o.Warmup, call)
	if err != nil {
		return nil, err
	}
	if err := timed(p, o.Steps, prof, "train", call); err != nil {
		return nil, err
	}
	for _, t := range state {
		t.FinalizeAll()
	}
	p.Loss = []float64{losses[0], losses[len(losses)-1]}
	p.finish(o.TrainBatch, 3*float64(o.TrainBatch)*o.Train.FLOPs())
	return p, nil
}
