package heads

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// clusters draws n examples per class around well-separated centres
// (class k: 4·e_k) with uniform noise in [-1, 1]: linearly separable.
func clusters(n, classes, dim int, seed uint64) ([]float32, []int) {
	r := rand.New(rand.NewPCG(seed, 0))
	var x []float32
	var y []int
	for i := range n * classes {
		k := i % classes
		for j := range dim {
			v := 2*r.Float64() - 1
			if j == k {
				v += 4
			}
			x = append(x, float32(v))
		}
		y = append(y, k)
	}
	return x, y
}

func TestProbeSeparable(t *testing.T) {
	x, y := clusters(30, 3, 5, 1)
	for _, normalize := range []bool{false, true} {
		h, res, err := Probe(x, 90, 5, y, []string{"a", "b", "c"}, ProbeOptions{L2: 1e-4, Normalize: normalize, Dataset: "toy"})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("normalize %v: %+v", normalize, res)
		if res.TrainAccuracy != 1 || res.Stop == "max-iter" || h.Normalize != normalize || h.Scale != 1 || len(h.Bias) != 3 {
			t.Errorf("normalize %v: result %+v, head normalize %v scale %v", normalize, res, h.Normalize, h.Scale)
		}
		// The head classifies the training set as the fit did.
		logits, err := h.Logits(x, 90)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 90 {
			if argmax(logits[i*3:(i+1)*3]) != y[i] {
				t.Fatalf("normalize %v: example %d misclassified by the head", normalize, i)
			}
		}
		if h.Meta[MetaType] != TypeProbe || h.Meta[MetaDataset] != "toy" || h.Meta["head.l2"] != "0.0001" {
			t.Errorf("Meta %v", h.Meta)
		}
	}
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// Two Gaussian classes N(±μ, I) with equal priors: the Bayes-optimal
// decision function is linear, log p(1|x)/p(0|x) = 2μᵀx, so the fitted
// direction w₁ − w₀ must point along μ, with μ's signs.
func TestProbeTwoClassDirection(t *testing.T) {
	mu := []float64{1.5, -1, 0.5, -0.25}
	r := rand.New(rand.NewPCG(5, 6))
	n := 4000
	x := make([]float32, 0, n*len(mu))
	y := make([]int, n)
	for i := range n {
		y[i] = i % 2
		sign := float64(2*y[i] - 1)
		for _, m := range mu {
			x = append(x, float32(sign*m+r.NormFloat64()))
		}
	}
	h, res, err := Probe(x, n, len(mu), y, []string{"neg", "pos"}, ProbeOptions{L2: 1e-4})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Stop != "gradient" && res.Stop != "objective" {
		t.Errorf("fit ended by %q", res.Stop)
	}
	d := len(mu)
	var dot, nw, nm float64
	for j, m := range mu {
		w := float64(h.Weight[d+j] - h.Weight[j])
		if math.Signbit(w) != math.Signbit(m) {
			t.Errorf("coordinate %d: w₁−w₀ = %v, μ = %v: signs differ", j, w, m)
		}
		dot, nw, nm = dot+w*m, nw+w*w, nm+m*m
	}
	if cos := dot / math.Sqrt(nw*nm); cos < 0.99 {
		t.Errorf("cos(w₁−w₀, μ) = %v, want ≈ 1", cos)
	}
	// The scale too: the analytic log-odds slope is 2μ.
	ratio := math.Sqrt(nw / nm)
	if ratio < 1.8 || ratio > 2.2 {
		t.Errorf("|w₁−w₀| / |μ| = %v, want ≈ 2", ratio)
	}
	if b := float64(h.Bias[1] - h.Bias[0]); math.Abs(b) > 0.15 {
		t.Errorf("b₁ − b₀ = %v, want ≈ 0 (equal priors)", b)
	}
}

func TestProbeGradient(t *testing.T) {
	x, y := clusters(5, 3, 4, 2)
	p := newProbeObjective(x, 15, 4, y, 3, 0.3, 2)
	r := rand.New(rand.NewPCG(1, 2))
	theta := make([]float64, p.size())
	for i := range theta {
		theta[i] = r.NormFloat64()
	}
	g := make([]float64, p.size())
	f, _, _ := p.eval(theta, g)
	scratch := make([]float64, p.size())
	for i := range theta {
		const h = 1e-6
		old := theta[i]
		theta[i] = old + h
		fp, _, _ := p.eval(theta, scratch)
		theta[i] = old - h
		fm, _, _ := p.eval(theta, scratch)
		theta[i] = old
		if num := (fp - fm) / (2 * h); math.Abs(num-g[i]) > 1e-6*math.Max(1, math.Abs(num)) {
			t.Errorf("∂f/∂θ[%d] = %v, finite difference %v", i, g[i], num)
		}
	}
	if !(f > 0) {
		t.Errorf("f = %v", f)
	}
}

func TestProbeDeterministic(t *testing.T) {
	x, y := clusters(40, 4, 6, 3)
	for i := range x { // overlapping classes: a fit of many iterations
		x[i] *= 0.3
	}
	var first *Head
	for _, workers := range []int{1, 3, 16} {
		h, res, err := Probe(x, 160, 6, y, []string{"a", "b", "c", "d"}, ProbeOptions{L2: 1e-3, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		if workers == 1 {
			t.Logf("%+v", res)
		}
		if first == nil {
			first = h
		} else if !slices.Equal(h.Weight, first.Weight) || !slices.Equal(h.Bias, first.Bias) {
			t.Errorf("workers %d: another head", workers)
		}
	}
}

func TestProbeStops(t *testing.T) {
	x, y := clusters(10, 2, 3, 4)
	var iters []int
	_, res, err := Probe(x, 20, 3, y, []string{"a", "b"}, ProbeOptions{MaxIter: 5, Progress: func(i int, _, _ float64) { iters = append(iters, i) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stop != "max-iter" || res.Iterations != 5 || !slices.Equal(iters, []int{1, 2, 3, 4, 5}) {
		t.Errorf("λ = 0 on separable data with MaxIter 5: %+v, progress %v", res, iters)
	}
}

func TestProbeErrors(t *testing.T) {
	x, y := clusters(2, 2, 2, 1)
	for _, c := range []struct {
		name    string
		x       []float32
		n, dim  int
		y       []int
		classes []string
		o       ProbeOptions
		want    string
	}{
		{"one class", x, 4, 2, y, []string{"a"}, ProbeOptions{}, "at least 2"},
		{"sizes", x[:7], 4, 2, y, []string{"a", "b"}, ProbeOptions{}, "feature values"},
		{"labels", x, 4, 2, y[:3], []string{"a", "b"}, ProbeOptions{}, "labels for"},
		{"label range", x, 4, 2, []int{0, 1, 2, 0}, []string{"a", "b"}, ProbeOptions{}, "outside"},
		{"negative l2", x, 4, 2, y, []string{"a", "b"}, ProbeOptions{L2: -1}, "λ"},
		{"nan", append([]float32{float32(math.NaN())}, x[1:]...), 4, 2, y, []string{"a", "b"}, ProbeOptions{}, "NaN"},
		{"zero feature", append([]float32{0, 0}, x[2:]...), 4, 2, y, []string{"a", "b"}, ProbeOptions{Normalize: true}, "all-zero"},
	} {
		if _, _, err := Probe(c.x, c.n, c.dim, c.y, c.classes, c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}
