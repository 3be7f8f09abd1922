package unlearn

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/eval"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/clip"
	"github.com/editkit/editkit/models/train"
)

// TestTriggerDirection: θ(α) = θ_bd − α·(θ_ft − θ_start) as the shared
// search forms it; α = 0 is the backdoored model bit for bit.
func TestTriggerDirection(t *testing.T) {
	dir := t.TempDir()
	enc := tinyCLIP(t, 1)
	m, err := clip.New(*enc.CLIPConfig, enc.Weights)
	if err != nil {
		t.Fatal(err)
	}
	bdPath := filepath.Join(dir, "bd")
	if err := m.Save(bdPath, checkpoint.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	shift := func(w models.Weights, by float32) models.Weights {
		out := models.Weights{}
		for name, x := range w {
			v := tensors.MustCopyFlatData[float32](x)
			for i := range v {
				v[i] += by * float32(i%7-3)
			}
			out[name] = tensors.FromFlatDataAndDimensions(v, x.Shape().Dimensions...)
		}
		return out
	}
	pre, ft := shift(enc.Weights, 0.01), shift(enc.Weights, 0.03)
	prePath, ftPath := filepath.Join(dir, "pre"), filepath.Join(dir, "ft")
	if err := train.WriteFinetuned(bdPath, prePath, pre, train.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := train.WriteFinetuned(bdPath, ftPath, ft, train.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		start string
		tau   models.Weights // τ = ft − start
	}{{bdPath, TriggerVector(ft, enc.Weights)}, {prePath, TriggerVector(ft, pre)}} {
		d, err := triggerDirection(c.start, ftPath, enc, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, alpha := range []float64{0, 2} {
			w, err := eval.WeightsAt(d, enc.Weights, alpha)
			if err != nil {
				t.Fatal(err)
			}
			for name, b := range enc.Weights {
				got, bv, tv := tensors.MustCopyFlatData[float32](w[name]), tensors.MustCopyFlatData[float32](b), tensors.MustCopyFlatData[float32](c.tau[name])
				for i := range got {
					want := bv[i] - float32(alpha)*tv[i]
					if alpha == 0 && math.Float32bits(got[i]) != math.Float32bits(bv[i]) {
						t.Fatalf("%s[%d] = %v at α = 0, backdoored %v", name, i, got[i], bv[i])
					}
					if math.Abs(float64(got[i]-want)) > 1e-6 {
						t.Fatalf("start %s, α %g: %s[%d] = %v, want %v", c.start, alpha, name, i, got[i], want)
					}
				}
			}
			w.Finalize()
		}
	}
}

// TestAlphaSearchByHand runs TBAR's search (its default α steps and
// objective) over set functions of α.
func TestAlphaSearchByHand(t *testing.T) {
	run := func(ca, asr func(a float64) float64, minCA float64) (*eval.Search, error) {
		return eval.SearchCoefficient(TBAROptions{}.steps(), AlphaObjective(minCA), func(a float64) (map[string]float64, error) {
			return map[string]float64{MetricCA: math.Round(20*ca(a)) / 20, MetricASR: math.Round(20*asr(a)) / 20}, nil
		})
	}
	// ASR reaches 0 at α = 0.5 and stays there; clean accuracy is 1 up to
	// 0.5 and falls by 1 per unit after: the tie at ASR 0 goes to the
	// higher clean accuracy, α = 0.5.
	s, err := run(func(a float64) float64 { return min(1, 1.5-a) }, func(a float64) float64 { return max(0, 1-2*a) }, 0.8)
	if err != nil {
		t.Fatal(err)
	}
	if s.Chosen() != 0.5 {
		t.Errorf("chose α = %v, want 0.5 (search %+v)", s.Chosen(), s.Points)
	}
	// The grid extends past 1 while the clean accuracy stays at the floor:
	// ASR falls until 1.2, clean accuracy falls under 0.75 after 1.3.
	s, err = run(func(a float64) float64 {
		if a > 1.3+1e-9 {
			return 0.5
		}
		return 0.8
	}, func(a float64) float64 { return max(0.1, 1-0.75*a) }, 0.75)
	if err != nil {
		t.Fatal(err)
	}
	last := s.Points[len(s.Points)-1]
	if s.Chosen() != 1.2 || math.Abs(last.Coef-1.35) > 1e-9 || last.Feasible {
		t.Errorf("chose α = %v, last point %v (feasible %v); want 1.2, the extension stopping at 1.35", s.Chosen(), last.Coef, last.Feasible)
	}
	steps := TBAROptions{}.steps()
	if got := steps.At(27); math.Abs(got-1.35) > 1e-9 {
		t.Errorf("the 28th α of the default steps is %v, want 1.35", got)
	}
	for i, p := range s.Points { // what progress reports label each point with
		if p.Coef != steps.At(i) {
			t.Errorf("point %d at α %v, Steps.At says %v", i, p.Coef, steps.At(i))
		}
	}
	// No α keeps the floor.
	if _, err := run(func(float64) float64 { return 0.5 }, func(float64) float64 { return 1 }, 0.9); err == nil {
		t.Error("an infeasible search succeeded")
	}
}

// TestTBARRemovesPlantedBackdoor runs TBAR, from the backdoored and from
// the clean model, on the tiny encoder with a planted BadNets patch.
func TestTBARRemovesPlantedBackdoor(t *testing.T) {
	if testing.Short() {
		t.Skip("trains small encoders (about 30 s)")
	}
	const spec = "badnets:size=3,pattern=white"
	dir := t.TempDir()
	save := func(name string, tr trained) string {
		m, err := clip.New(*tr.enc.CLIPConfig, tr.enc.Weights)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := m.Save(p, checkpoint.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bd := trainShapes(t, spec)
	bdPath, cleanPath := save("bd", bd), save("clean", trainShapes(t, ""))
	trainSet, val := shapesData(t, 800, 1), shapesData(t, 120, 7)
	recipe := train.Options{LearningRate: 1e-3, WeightDecay: 0.1, Warmup: 2, ClipNorm: 1, BatchSize: 32, Steps: 30, Seed: 1}
	for _, from := range []From{FromBackdoored, FromPretrained} {
		o := TBAROptions{Model: bdPath, Head: bd.head, Train: trainSet, Val: val, Trigger: mustParse(t, spec), Target: 0, From: from, Finetune: recipe}
		if from == FromPretrained {
			o.Base = cleanPath
		}
		r, err := TBAR(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: N %d, α %g, CA %.3f → %.3f, ASR %.3f → %.3f, ‖τ‖ %.3g, %d points", from, r.Examples, r.Alpha, r.Backdoored.CA, r.Cleaned.CA, r.Backdoored.ASR, r.Cleaned.ASR, r.TriggerVectorNorm, len(r.Search.Points))
		if r.Examples != 100 || r.Backdoored.ASR < 0.9 {
			t.Fatalf("N = %d, backdoored ASR %.3f", r.Examples, r.Backdoored.ASR)
		}
		// From the backdoored model (the paper's setting) the attack is
		// gone; from the clean model the trigger vector removes less.
		maxASR := 0.2
		if from == FromPretrained {
			maxASR = r.Backdoored.ASR - 0.2
		}
		if r.Cleaned.CA < r.MinCA || r.Cleaned.ASR > maxASR {
			t.Errorf("%s: α %g leaves CA %.3f (floor %.3f), ASR %.3f", from, r.Alpha, r.Cleaned.CA, r.MinCA, r.Cleaned.ASR)
		}
		// The first point is the backdoored model itself.
		if p := r.Search.Points[0]; p.Coef != 0 || p.Accuracy[MetricCA] != r.Backdoored.CA || p.Accuracy[MetricASR] != r.Backdoored.ASR {
			t.Errorf("α = 0 point %+v, backdoored %+v", p, r.Backdoored)
		}
	}
	// Bad input.
	base := TBAROptions{Model: bdPath, Head: bd.head, Train: trainSet, Val: val, Trigger: mustParse(t, spec), Finetune: recipe}
	for _, c := range []struct {
		edit func(o *TBAROptions)
		want string
	}{
		{func(o *TBAROptions) { o.Target = 4 }, "outside the head's 4 classes"},
		{func(o *TBAROptions) { o.From = FromPretrained }, "needs its checkpoint"},
		{func(o *TBAROptions) { o.Base = cleanPath }, "only when fine-tuning from it"},
		{func(o *TBAROptions) { o.Floor = 1.5 }, "outside [0, 1]"},
		{func(o *TBAROptions) { o.Trigger = mustParse(t, "badnets:size=20") }, "does not fit"},
		{func(o *TBAROptions) { o.From = "scratch" }, "scratch"},
	} {
		o := base
		c.edit(&o)
		if _, err := TBAR(o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v, want an error containing %q", err, c.want)
		}
	}
}
