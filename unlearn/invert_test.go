package unlearn

import (
	"strings"
	"testing"

	"github.com/editkit/editkit/eval"
)

// TestInvertFindsPlantedPatch trains the tiny encoder with and without a
// BadNets patch (white, 3×3, bottom-right, target 0) and inverts both: the
// backdoored encoder's mask must sit on the patch, point at class 0 and
// have a far smaller PL1 norm than the clean encoder's.
func TestInvertFindsPlantedPatch(t *testing.T) {
	if testing.Short() {
		t.Skip("trains two small encoders (about 40 s)")
	}
	const spec = "badnets:size=3,pattern=white"
	bd, clean := trainShapes(t, spec), trainShapes(t, "")
	test := shapesData(t, 200, 9)
	clf, _ := bd.enc.Classifier(nil, bd.head)
	m, err := Measure(clf, test, bd.enc.Preprocess, mustParse(t, spec), 0, eval.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m.ASR < 0.9 || m.CA < 0.9 {
		t.Fatalf("the planted backdoor did not take: CA %.3f, ASR %.3f", m.CA, m.ASR)
	}
	shadow := shapesData(t, 192, 5)
	opts := InvertOptions{Examples: 192, Epochs: 20, Threshold: 0.95}
	opts.Head = bd.head
	res, err := Invert(bd.enc, shadow, opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.Head = clean.head
	cres, err := Invert(clean.enc, shadow, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backdoored: PL1 %.4f (found %v, %d epochs), target %d (%.2f); clean: PL1 %.4f (found %v)", res.PL1, res.Found, res.Epochs, res.Target, res.TargetShare, cres.PL1, cres.Found)
	if !res.Found || res.Target != 0 {
		t.Errorf("backdoored: found %v, estimated target %d, want class 0", res.Found, res.Target)
	}
	total, onPatch := 0.0, 0.0
	for y := range 16 {
		for x := range 16 {
			v := float64(res.Trigger.Mask[y*16+x])
			total += v
			if y >= 13 && x >= 13 {
				onPatch += v
			}
		}
	}
	if onPatch < 0.5*total {
		t.Errorf("only %.0f%% of the mask's mass lies on the planted patch", 100*onPatch/total)
	}
	if !(res.PL1 < 0.1 && cres.PL1 > 3*res.PL1) {
		t.Errorf("PL1 norms: backdoored %.4f, clean %.4f: want the backdoored one small and the clean one over 3× larger", res.PL1, cres.PL1)
	}
	if want := res.L1 / 3 / 256; abs(want-res.PL1) > 1e-9 {
		t.Errorf("L1 %v and PL1 %v disagree", res.L1, res.PL1)
	}
	// The inverted trigger works as a trigger.
	asr, err := AttackSuccess(clf, test, bd.enc.Preprocess, res.Trigger, 0, eval.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if asr.Accuracy < 0.8 {
		t.Errorf("the inverted trigger sends only %.2f of the test images to the target", asr.Accuracy)
	}
}

func abs(x float64) float64 { return max(x, -x) }

func TestInvertErrors(t *testing.T) {
	enc := tinyCLIP(t, 1)
	ds := shapesData(t, 8, 1)
	for _, c := range []struct {
		o    InvertOptions
		want string
	}{
		{InvertOptions{Examples: 1}, "at least 2 images"},
		{InvertOptions{BatchSize: 1}, "batch of 2"},
		{InvertOptions{Threshold: 1.5}, "threshold"},
		{InvertOptions{LR: -1}, "lr > 0"},
	} {
		if _, err := Invert(enc, ds, c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
	}
	if _, err := Invert(enc, ds.Subset([]int{0}), InvertOptions{}); err == nil || !strings.Contains(err.Error(), "1 images") {
		t.Errorf("one image: %v", err)
	}
}
