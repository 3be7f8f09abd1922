package heads

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"

	"github.com/editkit/editkit/checkpoint"
)

// ProbeOptions configure Probe.
type ProbeOptions struct {
	// L2 is λ ≥ 0, the weight of the penalty (λ/2)·‖W‖² (the bias is not
	// penalized). With λ = 0 and separable features the optimum is at
	// infinity: the fit then runs until MaxIter.
	L2 float64
	// Normalize L2-normalizes the features before fitting; the head then
	// does the same to the features it classifies.
	Normalize bool
	// MaxIter bounds the L-BFGS iterations (default 1000).
	MaxIter int
	// GradTol: the fit stops when every entry of the objective's gradient
	// is at most GradTol in absolute value (default 1e-5).
	GradTol float64
	// FTol: the fit stops when an iteration lowers the objective by less
	// than FTol·max(|f|, 1) (default 1e-10).
	FTol float64
	// Memory is the number of L-BFGS correction pairs kept (default 10).
	Memory int
	// Workers compute the objective in parallel (default GOMAXPROCS). The
	// result does not depend on it: the examples are cut into a fixed number
	// of blocks whose partial sums are added in block order.
	Workers int
	// Progress, when set, is called after each iteration.
	Progress func(iter int, loss, gradMax float64)
	// Dataset and Model are recorded in the head's Meta, and Features
	// (FeaturesCLIP, FeaturesViT) what the features are.
	Dataset, Model, Features string
}

// ProbeResult says how a fit ended.
type ProbeResult struct {
	Iterations    int     `json:"iterations"`
	Evaluations   int     `json:"evaluations"` // of the objective and its gradient
	Loss          float64 `json:"loss"`        // final objective: mean cross-entropy + (λ/2)‖W‖²
	CrossEntropy  float64 `json:"cross_entropy"`
	GradMax       float64 `json:"grad_max"` // largest |gradient entry| at the end
	TrainAccuracy float64 `json:"train_accuracy"`
	// Stop is why the fit ended: "gradient" (GradTol reached), "objective"
	// (FTol), "max-iter", or "line-search" (no step lowers the objective:
	// converged to the precision of float64).
	Stop string `json:"stop"`
}

// probeBlocks is the number of blocks of examples whose partial sums make
// the objective: fixed, so that the result does not depend on Workers.
const probeBlocks = 16

// Probe fits a linear probe: multinomial logistic regression of labels on
// frozen image features, minimizing
//
//	f(W, b) = (1/n) Σᵢ −log softmax(W xᵢ + b)[yᵢ] + (λ/2)‖W‖²
//
// over W [classes, dim] and b [classes], starting from zero, by L-BFGS with
// a backtracking (Armijo) line search, in float64 on the host. The stopping
// rule is GradTol, FTol or MaxIter (see ProbeOptions). It is deterministic.
//
// features holds n rows of dim values, labels n class indices in
// [0, len(classes)). The head has Bias, Scale 1 and Normalize as asked.
func Probe(features []float32, n, dim int, labels []int, classes []string, o ProbeOptions) (*Head, ProbeResult, error) {
	var res ProbeResult
	c := len(classes)
	switch {
	case c < 2:
		return nil, res, fmt.Errorf("linear probe: %d classes, want at least 2", c)
	case n <= 0 || dim <= 0 || len(features) != n*dim:
		return nil, res, fmt.Errorf("linear probe: %d feature values are not %d examples of dimension %d", len(features), n, dim)
	case len(labels) != n:
		return nil, res, fmt.Errorf("linear probe: %d labels for %d examples", len(labels), n)
	case o.L2 < 0 || math.IsNaN(o.L2) || math.IsInf(o.L2, 0):
		return nil, res, fmt.Errorf("linear probe: L2 weight %v, want a finite λ ≥ 0", o.L2)
	}
	for i, l := range labels {
		if l < 0 || l >= c {
			return nil, res, fmt.Errorf("linear probe: label %d of example %d is outside the %d classes", l, i, c)
		}
	}
	if i := checkpoint.FirstNonFinite(features); i >= 0 {
		return nil, res, fmt.Errorf("linear probe: feature %d of example %d is %v", i%dim, i/dim, features[i])
	}
	if o.Normalize {
		x := make([]float32, len(features))
		for i := range n {
			row := features[i*dim : (i+1)*dim]
			nrm := norm32(row)
			if nrm == 0 {
				return nil, res, fmt.Errorf("linear probe: example %d has an all-zero feature, which cannot be normalized", i)
			}
			for j, v := range row {
				x[i*dim+j] = float32(float64(v) / nrm)
			}
		}
		features = x
	}
	if o.MaxIter <= 0 {
		o.MaxIter = 1000
	}
	if o.GradTol <= 0 {
		o.GradTol = 1e-5
	}
	if o.FTol <= 0 {
		o.FTol = 1e-10
	}
	if o.Memory <= 0 {
		o.Memory = 10
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	obj := newProbeObjective(features, n, dim, labels, c, o.L2, o.Workers)
	theta, res := lbfgs(obj, o)
	head := &Head{
		Classes: append([]string(nil), classes...),
		Dim:     dim,
		Weight:  make([]float32, c*dim),
		Bias:    make([]float32, c),
		Scale:   1,
		// Normalize as fitted: the head L2-normalizes what it classifies.
		Normalize: o.Normalize,
		Meta: map[string]string{
			MetaType:              TypeProbe,
			"head.l2":             strconv.FormatFloat(o.L2, 'g', -1, 64),
			"head.examples":       strconv.Itoa(n),
			"head.iterations":     strconv.Itoa(res.Iterations),
			"head.stop":           res.Stop,
			"head.train_loss":     strconv.FormatFloat(res.Loss, 'g', 8, 64),
			"head.train_accuracy": strconv.FormatFloat(res.TrainAccuracy, 'g', 8, 64),
		},
	}
	setIf(head.Meta, MetaDataset, o.Dataset)
	setIf(head.Meta, MetaModel, o.Model)
	setIf(head.Meta, MetaFeatures, o.Features)
	for i := range c * dim {
		head.Weight[i] = float32(theta[i])
	}
	for k := range c {
		head.Bias[k] = float32(theta[c*dim+k])
	}
	if err := head.Validate(); err != nil {
		return nil, res, fmt.Errorf("linear probe: %w", err)
	}
	return head, res, nil
}

// probeObjective evaluates the probe's objective and gradient over
// θ = [W (c×dim, row-major), b (c)].
type probeObjective struct {
	x       []float32
	n, dim  int
	y       []int
	c       int
	l2      float64
	workers int
	// per block: partial gradient (size len(θ)), loss and correct count
	grads   [][]float64
	losses  []float64
	correct []int
}

func newProbeObjective(x []float32, n, dim int, y []int, c int, l2 float64, workers int) *probeObjective {
	blocks := min(probeBlocks, n)
	p := &probeObjective{x: x, n: n, dim: dim, y: y, c: c, l2: l2, workers: min(workers, blocks),
		grads: make([][]float64, blocks), losses: make([]float64, blocks), correct: make([]int, blocks)}
	for i := range p.grads {
		p.grads[i] = make([]float64, c*dim+c)
	}
	return p
}

func (p *probeObjective) size() int { return p.c*p.dim + p.c }

// eval returns f(θ), writes ∇f(θ) into g, and also returns the mean
// cross-entropy and the training accuracy at θ.
func (p *probeObjective) eval(theta, g []float64) (f, ce, acc float64) {
	blocks := len(p.grads)
	var wg sync.WaitGroup
	for w := range p.workers {
		wg.Go(func() {
			z := make([]float64, p.c)
			for b := w; b < blocks; b += p.workers {
				p.block(b, theta, z)
			}
		})
	}
	wg.Wait()
	clear(g)
	var loss float64
	correct := 0
	for b := range blocks { // fixed order: the result does not depend on workers
		for i, v := range p.grads[b] {
			g[i] += v
		}
		loss += p.losses[b]
		correct += p.correct[b]
	}
	inv := 1 / float64(p.n)
	for i := range g {
		g[i] *= inv
	}
	ce = loss * inv
	var reg float64
	cd := p.c * p.dim
	for i, w := range theta[:cd] {
		reg += w * w
		g[i] += p.l2 * w
	}
	return ce + 0.5*p.l2*reg, ce, float64(correct) * inv
}

// block sums the loss and gradient over the examples of block b.
func (p *probeObjective) block(b int, theta, z []float64) {
	blocks := len(p.grads)
	from, to := b*p.n/blocks, (b+1)*p.n/blocks
	g := p.grads[b]
	clear(g)
	c, d := p.c, p.dim
	bias := theta[c*d:]
	var loss float64
	correct := 0
	for i := from; i < to; i++ {
		x := p.x[i*d : (i+1)*d]
		best := 0
		for k := range c {
			w := theta[k*d : (k+1)*d]
			s := bias[k]
			for j, v := range x {
				s += w[j] * float64(v)
			}
			z[k] = s
			if s > z[best] {
				best = k
			}
		}
		y := p.y[i]
		if best == y {
			correct++
		}
		// −log softmax(z)[y] = log Σₖ exp(zₖ − zmax) − (z_y − zmax)
		zmax, zy := z[best], z[y]
		var sum float64
		for k := range c {
			z[k] = math.Exp(z[k] - zmax)
			sum += z[k]
		}
		loss += math.Log(sum) - (zy - zmax)
		for k := range c {
			r := z[k] / sum
			if k == y {
				r--
			}
			if r == 0 {
				continue
			}
			gw := g[k*d : (k+1)*d]
			for j, v := range x {
				gw[j] += r * float64(v)
			}
			g[c*d+k] += r
		}
	}
	p.losses[b], p.correct[b] = loss, correct
}

// lbfgs minimizes the objective from θ = 0.
func lbfgs(p *probeObjective, o ProbeOptions) ([]float64, ProbeResult) {
	var res ProbeResult
	size := p.size()
	x := make([]float64, size)
	g := make([]float64, size)
	f, ce, acc := p.eval(x, g)
	res.Evaluations = 1
	type pair struct {
		s, y []float64
		rho  float64
	}
	var mem []pair
	d := make([]float64, size)
	xn := make([]float64, size)
	gn := make([]float64, size)
	alpha := make([]float64, o.Memory)
	finish := func(stop string) ([]float64, ProbeResult) {
		res.Loss, res.CrossEntropy, res.TrainAccuracy, res.GradMax, res.Stop = f, ce, acc, maxAbs(g), stop
		return x, res
	}
	for {
		if maxAbs(g) <= o.GradTol {
			return finish("gradient")
		}
		if res.Iterations >= o.MaxIter {
			return finish("max-iter")
		}
		// Search direction: the two-loop recursion over the curvature pairs,
		// or steepest descent without them; when a direction from the pairs
		// fails (not downhill, or no step lowers f) the pairs are dropped and
		// steepest descent tried.
		var fn, cen, accn float64
		stepped := false
		for {
			usedMem := len(mem) > 0
			for i, v := range g {
				d[i] = -v
			}
			step := 1.0
			if !usedMem {
				step = 1 / math.Max(1, norm64(g)) // a first step of length ≤ 1
			} else {
				for k := len(mem) - 1; k >= 0; k-- {
					alpha[k] = mem[k].rho * dot(mem[k].s, d)
					axpy(-alpha[k], mem[k].y, d)
				}
				last := mem[len(mem)-1]
				scale(dot(last.s, last.y)/dot(last.y, last.y), d)
				for k := range mem {
					beta := mem[k].rho * dot(mem[k].y, d)
					axpy(alpha[k]-beta, mem[k].s, d)
				}
			}
			slope := dot(g, d)
			if slope < 0 {
				// Backtracking line search (Armijo, c₁ = 1e-4).
				for range 60 {
					for i := range x {
						xn[i] = x[i] + step*d[i]
					}
					fn, cen, accn = p.eval(xn, gn)
					res.Evaluations++
					if fn <= f+1e-4*step*slope {
						stepped = true
						break
					}
					step /= 2
				}
			}
			if stepped || !usedMem {
				break
			}
			mem = mem[:0]
		}
		if !stepped {
			return finish("line-search")
		}
		res.Iterations++
		// Curvature pair s = x⁺ − x, y = g⁺ − g, kept when sᵀy > 0 (the
		// oldest pair's storage is reused once Memory pairs are kept).
		var s, y []float64
		if len(mem) == o.Memory {
			s, y = mem[0].s, mem[0].y
		} else {
			s, y = make([]float64, size), make([]float64, size)
		}
		for i := range x {
			s[i], y[i] = xn[i]-x[i], gn[i]-g[i]
		}
		if sy := dot(s, y); sy > 1e-12*norm64(s)*norm64(y) && sy > 0 {
			if len(mem) == o.Memory {
				mem = append(mem[:0], mem[1:]...)
			}
			mem = append(mem, pair{s, y, 1 / sy})
		} else if len(mem) == o.Memory {
			mem = mem[1:] // the oldest pair was overwritten: drop it
		}
		fOld := f
		copy(x, xn)
		copy(g, gn)
		f, ce, acc = fn, cen, accn
		if o.Progress != nil {
			o.Progress(res.Iterations, f, maxAbs(g))
		}
		if fOld-f <= o.FTol*math.Max(math.Abs(f), 1) {
			return finish("objective")
		}
	}
}

func dot(a, b []float64) float64 {
	var s float64
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

func axpy(a float64, x, y []float64) {
	for i, v := range x {
		y[i] += a * v
	}
}

func scale(a float64, x []float64) {
	for i := range x {
		x[i] *= a
	}
}

func maxAbs(v []float64) float64 {
	var m float64
	for _, x := range v {
		m = math.Max(m, math.Abs(x))
	}
	return m
}
