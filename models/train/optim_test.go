package train

import (
	"math"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/clip"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

func TestCosineLR(t *testing.T) {
	const base = 1e-5
	// task_vectors' cosine_lr with warmup 500 over 2000 steps, by hand.
	for _, c := range []struct {
		step int
		want float64
	}{
		{0, base * 1 / 500},    // (step+1)/warmup
		{99, base * 100 / 500}, // 2e-6
		{499, base},            // end of warm-up: full rate
		{500, base},            // cos(0) = 1
		{1000, 0.75 * base},    // ½(1 + cos(π/3)) = 0.75
		{1250, 0.5 * base},     // ½(1 + cos(π/2))
		{1500, 0.25 * base},    // ½(1 + cos(2π/3)) = 0.25
		{2000, 0},              // cos(π) = −1
	} {
		if got := CosineLR(base, 500, 2000, c.step); math.Abs(got-c.want) > 1e-18 {
			t.Errorf("step %d: lr %g, want %g", c.step, got, c.want)
		}
	}
	// No warm-up: starts at the base rate.
	if got := CosineLR(0.1, 0, 10, 0); got != 0.1 {
		t.Errorf("no warm-up, step 0: %g, want 0.1", got)
	}
	// Warm-up longer than the run: the reference never leaves it.
	if got := CosineLR(1, 500, 100, 99); got != 100.0/500 {
		t.Errorf("warm-up > total: %g, want 0.2", got)
	}
	o := Recipe()
	if got := o.LR(1000, 2000); math.Abs(got-0.75*base) > 1e-18 {
		t.Errorf("Recipe().LR(1000, 2000) = %g", got)
	}
	o.Schedule = Constant
	if got := o.LR(1900, 2000); got != base {
		t.Errorf("constant schedule: %g", got)
	}
}

// linearLoss is Σ_j w_j·x_j over a weight "w" [3] and a weight "u" [2]
// (loss += u·y): its gradient is the inputs.
func linearLoss(p models.Params, in []*graph.Node) (*graph.Node, *graph.Node) {
	l := graph.Add(graph.ReduceAllSum(graph.Mul(p.Get("w"), in[0])), graph.ReduceAllSum(graph.Mul(p.Get("u"), in[1])))
	return l, nil
}

// torchAdamW is torch.optim.AdamW's single-tensor step (after
// clip_grad_norm_ scaled the gradient), written as PyTorch runs it.
type torchAdamW struct {
	lr, wd, b1, b2, eps float64
	step                int
	m, v                []float64
}

func (a *torchAdamW) update(p, g []float64, decay bool) {
	if a.m == nil {
		a.m, a.v = make([]float64, len(p)), make([]float64, len(p))
	}
	a.step++
	bc1 := 1 - math.Pow(a.b1, float64(a.step))
	bc2 := 1 - math.Pow(a.b2, float64(a.step))
	for i := range p {
		if decay {
			p[i] *= 1 - a.lr*a.wd // param.mul_(1 - lr * weight_decay)
		}
		a.m[i] += (g[i] - a.m[i]) * (1 - a.b1) // exp_avg.lerp_(grad, 1 - beta1)
		a.v[i] = a.v[i]*a.b2 + (1-a.b2)*g[i]*g[i]
		denom := math.Sqrt(a.v[i])/math.Sqrt(bc2) + a.eps
		p[i] -= a.lr / bc1 * a.m[i] / denom
	}
}

func clipGrads(gs [][]float64, maxNorm float64) {
	var ss float64
	for _, g := range gs {
		for _, v := range g {
			ss += v * v
		}
	}
	coef := math.Min(1, maxNorm/(math.Sqrt(ss)+1e-6))
	for _, g := range gs {
		for i := range g {
			g[i] *= coef
		}
	}
}

func TestAdamW(t *testing.T) {
	for _, dt := range []dtypes.DType{dtypes.Float64, dtypes.Float32} {
		t.Run(dt.String(), func(t *testing.T) {
			tol := 1e-12
			if dt == dtypes.Float32 {
				tol = 2e-6
			}
			w0 := []float64{1, -2, 0.5}
			u0 := []float64{0.25, 3}
			init := models.Weights{
				"w": tensors.FromFlatDataAndDimensions([]float32{1, -2, 0.5}, 3),
				"u": tensors.FromFlatDataAndDimensions([]float32{0.25, 3}, 2),
			}
			params := []param{
				{TensorSpec: models.Spec("w", 3), decay: true},
				{TensorSpec: models.Spec("u", 2), clamp: &[2]float64{0, 2.9}},
			}
			const lr, wd = 0.1, 0.1
			e, err := newEngine(params, init, linearLoss, adamW{beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: wd, clipNorm: 1}, dt)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			in := func(x []float64) any {
				if dt == dtypes.Float32 {
					f := make([]float32, len(x))
					for i, v := range x {
						f[i] = float32(v)
					}
					return f
				}
				return x
			}
			// Step 1: g = (x, y) = ((3, 4, 0), (0, 0)): norm 5, clipped to 1.
			// By hand: m̂ = g', v̂ = g'², so θ ← 0.99·θ − 0.1·g'/(|g'| + 1e-8);
			// w = (0.99 − 0.1, −1.98 − 0.1, 0.495) up to ε. u has no decay and
			// zero gradient; its 3 is clamped to 2.9.
			out, err := e.Step(lr, in([]float64{3, 4, 0}), in([]float64{0, 0}))
			if err != nil {
				t.Fatal(err)
			}
			if !near(out.gradNorm, 5, 1e-6) || !near(out.loss, 3*1-4*2, 1e-6) {
				t.Errorf("step 1: loss %g, grad norm %g; want -5 and 5", out.loss, out.gradNorm)
			}
			gotW, gotU := flat64(e.p[0]), flat64(e.p[1])
			handW := []float64{
				0.99 - 0.1*0.6/(0.6+1e-8),
				-1.98 - 0.1*0.8/(0.8+1e-8),
				0.495,
			}
			for i := range handW {
				if !near(gotW[i], handW[i], tol) {
					t.Errorf("step 1: w = %v, want %v", gotW, handW)
					break
				}
			}
			if !near(gotU[0], 0.25, tol) || !near(gotU[1], 2.9, tol) {
				t.Errorf("step 1: u = %v, want [0.25 2.9] (no decay, clamped)", gotU)
			}
			// Steps 2-3 against PyTorch's algorithm: moments accumulate,
			// gradients under the clipping norm pass unscaled.
			refW, refU := &torchAdamW{lr: lr, wd: wd, b1: 0.9, b2: 0.999, eps: 1e-8}, &torchAdamW{lr: lr, wd: wd, b1: 0.9, b2: 0.999, eps: 1e-8}
			pw, pu := append([]float64(nil), w0...), append([]float64(nil), u0...)
			for k, x := range [][2][]float64{{{3, 4, 0}, {0, 0}}, {{0.1, -0.2, 0.3}, {0.2, 0.1}}, {{-1, 0.5, 2}, {0.05, -0.3}}} {
				gw, gu := append([]float64(nil), x[0]...), append([]float64(nil), x[1]...)
				clipGrads([][]float64{gw, gu}, 1)
				refW.update(pw, gw, true)
				refU.update(pu, gu, false)
				pu[0], pu[1] = math.Min(math.Max(pu[0], 0), 2.9), math.Min(math.Max(pu[1], 0), 2.9)
				if k == 0 {
					continue // done above
				}
				if _, err := e.Step(lr, in(x[0]), in(x[1])); err != nil {
					t.Fatal(err)
				}
				gotW, gotU := flat64(e.p[0]), flat64(e.p[1])
				for i := range pw {
					if !near(gotW[i], pw[i], tol) {
						t.Errorf("step %d: w = %v, torch's AdamW gives %v", k+1, gotW, pw)
						break
					}
				}
				for i := range pu {
					if !near(gotU[i], pu[i], tol) {
						t.Errorf("step %d: u = %v, torch's AdamW gives %v", k+1, gotU, pu)
						break
					}
				}
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		edit func(*Options)
		err  string
	}{
		{func(o *Options) {}, "epochs or of steps"},
		{func(o *Options) { o.Epochs, o.Steps = 1, 1 }, "not both"},
		{func(o *Options) { o.Steps, o.LearningRate = 1, 0 }, "learning rate"},
		{func(o *Options) { o.Steps, o.BatchSize = 1, 0 }, "batch size"},
		{func(o *Options) { o.Steps, o.WeightDecay = 1, -1 }, "weight decay"},
		{func(o *Options) { o.Steps, o.Schedule = 1, "linear" }, "schedule"},
	} {
		o := Recipe()
		c.edit(&o)
		err := o.withDefaults().validate()
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("error %v, want one mentioning %q", err, c.err)
		}
	}
	o := Recipe()
	o.Epochs = 3
	if err := o.withDefaults().validate(); err != nil {
		t.Error(err)
	}
	if got := o.totalSteps(1000); got != 3*8 {
		t.Errorf("3 epochs of 1000 examples in batches of 128: %d steps, want 24", got)
	}
}

// checkGradient compares the engine's gradient with central finite
// differences of its loss at a few entries of each named weight (float64).
func checkGradient(t *testing.T, e *engine, names []string, inputs ...any) {
	t.Helper()
	_, grads, err := e.Gradients(inputs...)
	if err != nil {
		t.Fatal(err)
	}
	idx := map[string]int{}
	for i, p := range e.params {
		idx[p.Name] = i
	}
	const h = 1e-5
	checked, maxAbs := 0, 0.0
	for _, name := range names {
		i, ok := idx[name]
		if !ok {
			t.Fatalf("no trained weight %q", name)
		}
		g := flat64(grads[name])
		orig := e.p[i]
		vals := flat64(orig)
		dims := orig.Shape().Dimensions
		for _, j := range []int{0, len(vals) / 2, len(vals) - 1} {
			loss := func(delta float64) float64 {
				v := append([]float64(nil), vals...)
				v[j] += delta
				e.p[i] = float64Tensor(v, dims)
				l, _, err := e.Gradients(inputs...)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			fd := (loss(h) - loss(-h)) / (2 * h)
			e.p[i] = orig
			if math.Abs(fd-g[j]) > 1e-8+1e-6*math.Abs(fd) {
				t.Errorf("∂loss/∂%s[%d]: gradient %.10g, finite differences %.10g", name, j, g[j], fd)
			}
			checked++
			maxAbs = math.Max(maxAbs, math.Abs(fd))
		}
	}
	t.Logf("%d gradient entries match finite differences (largest |∂loss/∂w| %.3g)", checked, maxAbs)
	if maxAbs < 1e-3 {
		t.Errorf("the checked gradient entries are all below %g: the check says little", maxAbs)
	}
}

// headEngine is a float64 engine for the fine-tuning loss: every encoder
// tensor trained through the frozen head.
func headEngine(t *testing.T, enc *encoder.Encoder, head *heads.Head) *engine {
	t.Helper()
	params := make([]param, len(enc.Specs))
	for i, s := range enc.Specs {
		params[i] = param{TensorSpec: s, decay: true}
	}
	loss := func(p models.Params, in []*graph.Node) (*graph.Node, *graph.Node) {
		logits := applyHead(head, enc.Forward(p, pixelsIn(in[0], dtypes.Float64)))
		return crossEntropy(logits, in[1]), nil
	}
	e, err := newEngine(params, enc.Weights, loss, adamW{}, dtypes.Float64)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestGradientViT(t *testing.T) {
	c := tinyViT()
	w := wideWeights(c.Specs(), 1)
	enc, err := encoder.NewViT(c, w)
	if err != nil {
		t.Fatal(err)
	}
	e := headEngine(t, enc, randomHead(3, c.HiddenSize, true, 1))
	defer e.Close()
	l := c.Prefix + "encoder.layer.0."
	checkGradient(t, e, []string{
		"vit.embeddings.cls_token", "vit.embeddings.position_embeddings",
		"vit.embeddings.patch_embeddings.projection.weight",
		l + "attention.attention.query.weight", l + "attention.attention.value.bias",
		l + "intermediate.dense.weight", l + "layernorm_before.weight", "vit.layernorm.bias",
	}, randomPixels(4, 8, 1), []int32{0, 2, 1, 2})
}

func TestGradientCLIP(t *testing.T) {
	for _, n := range []clip.Naming{clip.HF, clip.OpenAI} {
		t.Run(n.String(), func(t *testing.T) {
			c := tinyCLIP(n)
			w := wideWeights(c.Specs(), 2)
			// Fine-tuning: the image tower through a frozen head.
			enc, err := encoder.NewCLIP(c, w)
			if err != nil {
				t.Fatal(err)
			}
			e := headEngine(t, enc, randomHead(3, enc.Dim, true, 2))
			defer e.Close()
			var names []string
			for _, s := range enc.Specs {
				if strings.Contains(s.Name, "0.") || strings.Contains(s.Name, "proj") || strings.Contains(s.Name, "class") {
					names = append(names, s.Name)
				}
			}
			pixels := randomPixels(3, 8, 2)
			checkGradient(t, e, names[:min(len(names), 8)], pixels, []int32{2, 0, 1})

			// Contrastive: both towers and logit_scale.
			cparams := make([]param, 0)
			for _, s := range c.Specs() {
				cparams = append(cparams, param{TensorSpec: s, decay: decays(s)})
			}
			closs := func(p models.Params, in []*graph.Node) (*graph.Node, *graph.Node) {
				img := clip.EncodeImage(c, p, pixelsIn(in[0], dtypes.Float64))
				return contrastiveLoss(clip.Logits(c, p, img, clip.EncodeText(c, p, in[1])), in[2])
			}
			ce, err := newEngine(cparams, w, closs, adamW{}, dtypes.Float64)
			if err != nil {
				t.Fatal(err)
			}
			defer ce.Close()
			// Three captions; the last two images share one.
			ids := []int32{38, 5, 7, 39, 0, 38, 9, 39, 38, 9, 39, 0}
			tx := tensors.FromFlatDataAndDimensions(ids, 3, 4)
			var cnames []string
			for _, s := range c.TextSpecs() {
				if strings.Contains(s.Name, "0.") || strings.Contains(s.Name, "embedding") || strings.Contains(s.Name, "proj") {
					cnames = append(cnames, s.Name)
				}
			}
			cnames = append(cnames[:min(len(cnames), 5)], "logit_scale", names[0])
			checkGradient(t, ce, cnames, pixels, tx, []int32{0, 1, 1})
		})
	}
}

func TestApplyHeadDTypes(t *testing.T) {
	// The float64 path of applyHead computes what heads.Head.Apply does.
	h := randomHead(3, 5, true, 3)
	f := [][]float32{{1, 2, 3, 4, 5}, {-1, 0.5, 0, 2, 1}}
	f64 := [][]float64{{1, 2, 3, 4, 5}, {-1, 0.5, 0, 2, 1}}
	a := graph.MustNewExec(models.Backend(), func(x *graph.Node) *graph.Node { return applyHead(h, x) })
	got32 := flat64(a.MustExec(f)[0])
	got64 := flat64(a.MustExec(f64)[0])
	want, err := h.Logits([]float32{1, 2, 3, 4, 5, -1, 0.5, 0, 2, 1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !near(got32[i], float64(want[i]), 1e-5) || !near(got64[i], float64(want[i]), 1e-5) {
			t.Fatalf("head logits: float32 %v, float64 %v, host %v", got32, got64, want)
		}
	}
}

var _ = checkpoint.F32
