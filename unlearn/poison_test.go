package unlearn

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/eval"
)

// toy returns n gray 4×4 images, image i all of value 10·i (mod 250),
// label i%3, classes a, b, c.
func toy(t *testing.T, n int) *datasets.Dataset {
	t.Helper()
	pix := make([]uint8, n*16)
	labels := make([]int, n)
	for i := range n {
		for k := range 16 {
			pix[16*i+k] = uint8(10 * i % 250)
		}
		labels[i] = i % 3
	}
	d, err := datasets.FromPixels("toy", []string{"a", "b", "c"}, 4, 4, 1, pix, labels)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func imageAt(t *testing.T, d *datasets.Dataset, i int) datasets.Image {
	t.Helper()
	img, err := d.Image(i)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestPoison(t *testing.T) {
	d := toy(t, 100)
	tr := mustParse(t, "badnets:size=1,pattern=white")
	p, idx, err := Poison(d, tr, PoisonOptions{Rate: 0.1, Target: 2, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(idx) != 10 || p.Len() != 100 {
		t.Fatalf("%d poisoned of %d, want 10 of 100", len(idx), p.Len())
	}
	poisoned := map[int]bool{}
	for _, i := range idx {
		poisoned[i] = true
		if d.Label(i) == 2 {
			t.Errorf("example %d of the target class was poisoned", i)
		}
	}
	for i := range 100 {
		got, orig := imageAt(t, p, i), imageAt(t, d, i)
		if poisoned[i] {
			want := mustApply(t, tr, i, orig)
			if p.Label(i) != 2 || !bytes.Equal(got.Pix, want.Pix) {
				t.Errorf("poisoned example %d: label %d, triggered %v", i, p.Label(i), bytes.Equal(got.Pix, want.Pix))
			}
		} else if p.Label(i) != d.Label(i) || !bytes.Equal(got.Pix, orig.Pix) {
			t.Errorf("clean example %d changed", i)
		}
	}
	_, again, _ := Poison(d, tr, PoisonOptions{Rate: 0.1, Target: 2, Seed: 7})
	_, other, _ := Poison(d, tr, PoisonOptions{Rate: 0.1, Target: 2, Seed: 8})
	if !slices.Equal(idx, again) || slices.Equal(idx, other) {
		t.Error("the poisoned examples are not determined by the seed")
	}
	for _, c := range []struct {
		o    PoisonOptions
		want string
	}{
		{PoisonOptions{Rate: 1.5, Target: 0}, "outside (0, 1]"},
		{PoisonOptions{Rate: -0.1, Target: 0}, "outside (0, 1]"},
		{PoisonOptions{Rate: 0.1, Target: 3}, "outside the 3 classes"},
		{PoisonOptions{Rate: 0.9, Target: 0}, "only 66 are not of the target class"},
	} {
		if _, _, err := Poison(d, tr, c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Poison(%+v) = %v, want %q", c.o, err, c.want)
		}
	}
	if _, _, err := Poison(d, mustParse(t, "badnets:size=5"), PoisonOptions{Target: 0}); err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Errorf("a patch larger than the images: %v", err)
	}
}

func TestApplyKeepsLabels(t *testing.T) {
	d := toy(t, 12)
	a, err := Apply(d, mustParse(t, "blended:ratio=0.5,seed=1"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if a.Label(i) != d.Label(i) {
			t.Errorf("example %d: label %d, was %d", i, a.Label(i), d.Label(i))
		}
	}
	if !strings.Contains(a.Name(), "blended") {
		t.Errorf("name %q", a.Name())
	}
}

// TestAttackSuccessByHand: a classifier that sends an image to class 0
// when its bottom-right pixel is white and its other pixels are below 60,
// and otherwise to the class of its intensity; ASR and CA counted by hand.
func TestAttackSuccessByHand(t *testing.T) {
	d := toy(t, 12) // intensities 0, 10, …, 110; labels 0,1,2,0,1,2,…
	pre := datasets.Preprocess{Size: 4, Resize: datasets.Stretch, Mean: [3]float32{}, Std: [3]float32{1, 1, 1}}
	clf := func(b *datasets.Batch) ([]float32, error) {
		out := make([]float32, b.Size*3)
		for k := range b.Size {
			img := b.Images[k*48 : (k+1)*48]
			v := img[0] * 255
			class := int(v/10+0.5) % 3 // the true label
			if img[47] == 1 && v < 60 {
				class = 0
			}
			if v > 85 && v < 95 { // intensity 90 (label 0) is misclassified
				class = 1
			}
			out[k*3+class] = 1
		}
		return out, nil
	}
	tr := mustParse(t, "badnets:size=1,pattern=white")
	m, err := Measure(clf, d, pre, tr, 0, eval.Options{BatchSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	// Clean: all right except intensity 90: 11/12.
	if m.Clean.Correct != 11 || m.Clean.Total != 12 {
		t.Errorf("clean %d/%d, want 11/12", m.Clean.Correct, m.Clean.Total)
	}
	// Non-target images: labels 1 and 2, i = 1,2,4,5,7,8,10,11 (8 images);
	// sent to 0 when intensity < 60: i = 1, 2, 4, 5 → 4/8. The target
	// class's images (i = 0, 3, 6, 9) are not counted.
	if m.Attack.Correct != 4 || m.Attack.Total != 8 || m.ASR != 0.5 {
		t.Errorf("attack %d/%d (ASR %v), want 4/8", m.Attack.Correct, m.Attack.Total, m.ASR)
	}
	if _, err := AttackSuccess(clf, d, pre, tr, 5, eval.Options{}); err == nil || !strings.Contains(err.Error(), "outside the 3 classes") {
		t.Errorf("target 5 of 3 classes: %v", err)
	}
}
