package train

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"

	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/linearize"
	"github.com/editkit/editkit/models/clip"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
)

// linearizedEngine is a float64 engine for the linearized fine-tuning loss
// around the encoder's weights.
func linearizedEngine(t *testing.T, enc *encoder.Encoder, head *heads.Head) *engine {
	t.Helper()
	params := make([]param, len(enc.Specs))
	for i, s := range enc.Specs {
		params[i] = param{TensorSpec: s, decay: true}
	}
	o := Options{Linearized: true, dtype: dtypes.Float64}
	e, err := newEngine(params, enc.Weights, finetuneLoss(enc, head, o), adamW{}, dtypes.Float64)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.freeze(enc.Specs, enc.Weights); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestLinearizedGradient checks the gradient of the linearized fine-tuning
// loss (cross-entropy of the frozen head on f_lin's features) against
// central finite differences of that loss, away from θ₀ (where f_lin
// differs from f), on a ViT and a CLIP image tower.
func TestLinearizedGradient(t *testing.T) {
	c := tinyViT()
	vitEnc, err := encoder.NewViT(c, wideWeights(c.Specs(), 1))
	if err != nil {
		t.Fatal(err)
	}
	cc := tinyCLIP(clip.OpenAI)
	clipEnc, err := encoder.NewCLIP(cc, wideWeights(cc.Specs(), 2))
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []*encoder.Encoder{vitEnc, clipEnc} {
		t.Run(string(enc.Family), func(t *testing.T) {
			e := linearizedEngine(t, enc, randomHead(3, enc.Dim, true, 1))
			defer e.Close()
			// Move θ away from θ₀: θ = 1.1·θ₀ + 0.05.
			for i := range e.p {
				v, dims := flat64(e.p[i]), e.p[i].Shape().Dimensions
				for j := range v {
					v[j] = 1.1*v[j] + 0.05
				}
				e.p[i].FinalizeAll()
				e.p[i] = float64Tensor(v, dims)
			}
			var names []string
			for k, s := range enc.Specs {
				if k%4 == 0 {
					names = append(names, s.Name)
				}
			}
			checkGradient(t, e, names, randomPixels(4, 8, 1), []int32{0, 2, 1, 2})
		})
	}
}

// TestFinetuneLinearized trains a tiny ViT linearized: the loss falls, the
// first step's loss is the non-linear model's (f_lin(θ₀) = f(θ₀)), the
// result evaluated through f_lin classifies the data, and it differs from
// non-linear fine-tuning with the same settings.
func TestFinetuneLinearized(t *testing.T) {
	c := tinyViT()
	enc, err := encoder.NewViT(c, livelyWeights(c.Specs(), 0.3, 7))
	if err != nil {
		t.Fatal(err)
	}
	ds := quadrants(t, 128, 1)
	head := randomHead(4, enc.Dim, true, 5)
	head.Classes = slices.Clone(ds.Classes())
	before := accuracyOf(t, enc, nil, head, ds)

	o := Recipe()
	o.LearningRate, o.Warmup, o.BatchSize, o.Steps, o.Seed = 3e-3, 5, 32, 40, 1
	plain, err := Finetune(enc, head, ds, o)
	if err != nil {
		t.Fatal(err)
	}
	o.Linearized = true
	res, err := Finetune(enc, head, ds, o)
	if err != nil {
		t.Fatal(err)
	}
	first, last := firstLast(res.Losses, 5)
	lin, err := linearize.NewEncoder(enc)
	if err != nil {
		t.Fatal(err)
	}
	defer lin.Close()
	clf, err := lin.Classifier(res.Weights, head)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := eval.Accuracy(clf, ds, enc.Preprocess, eval.Options{BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	r := acc.Accuracy
	t.Logf("linearized: loss %.3f → %.3f; f_lin accuracy %.2f → %.2f (non-linear fine-tuning: loss → %.3f)", first, last, before, r, plain.FinalLoss)
	if res.Losses[0] != plain.Losses[0] {
		t.Errorf("first step's loss %v (linearized) ≠ %v (non-linear): f_lin(θ₀) should be f(θ₀)", res.Losses[0], plain.Losses[0])
	}
	if !(last < 0.5*first) {
		t.Errorf("the loss did not fall: %.3f → %.3f", first, last)
	}
	if !(r >= 0.9 && r > before+0.3) {
		t.Errorf("f_lin accuracy %.2f → %.2f, want a rise to ≥ 0.9", before, r)
	}
	if len(res.Weights) != len(enc.Specs) {
		t.Errorf("%d trained tensors, the encoder has %d", len(res.Weights), len(enc.Specs))
	}
	diff := 0.0
	for _, s := range enc.Specs {
		a, b := res.Weights.Float32(s.Name), plain.Weights.Float32(s.Name)
		for i := range a {
			diff = math.Max(diff, math.Abs(float64(a[i]-b[i])))
		}
	}
	if diff < 1e-3 {
		t.Errorf("linearized and non-linear fine-tuning give the same weights (max diff %g)", diff)
	}
	again, err := Finetune(enc, head, ds, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Losses, res.Losses) {
		t.Error("two linearized runs with one seed differ")
	}
}

func TestLinearizedOnlyFinetunes(t *testing.T) {
	c := tinyViT()
	enc, err := encoder.NewViT(c, livelyWeights(c.Specs(), 0.3, 7))
	if err != nil {
		t.Fatal(err)
	}
	o := Recipe()
	o.Steps, o.Linearized = 1, true
	if _, _, err := Supervised(enc, quadrants(t, 8, 1), o); err == nil || !strings.Contains(err.Error(), "linearized") {
		t.Errorf("Supervised with Linearized: %v", err)
	}
}
