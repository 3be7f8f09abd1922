package linearize

import (
	"testing"

	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
)

// TestPair checks both models of a pair against the encoder evaluated at
// the combined weights formed on the host: plainly, and linearized around
// another point than θ₀.
func TestPair(t *testing.T) {
	enc, err := encoder.Load(modelsTestdata("hf-clip"))
	if err != nil {
		t.Fatal(err)
	}
	ref := readRef(t, "hf-clip")
	tau1 := randomDirection(enc.Specs, enc.Weights, 0.2, 21)
	tau2 := randomDirection(enc.Specs, enc.Weights, 0.2, 22)
	at := addScaled(enc.Weights, randomDirection(enc.Specs, enc.Weights, 0.1, 23), 1)
	combine := func(c [2]float64) models.Weights {
		return addScaled(addScaled(enc.Weights, tau1, float32(c[0])), tau2, float32(c[1]))
	}
	atEnc, err := encoder.NewCLIP(*enc.CLIPConfig, at)
	if err != nil {
		t.Fatal(err)
	}
	lin, err := NewEncoder(atEnc)
	if err != nil {
		t.Fatal(err)
	}
	defer lin.Close()
	a, b := [2]float64{0.7, 0}, [2]float64{-1.5, 2}
	for _, linearized := range []bool{false, true} {
		var around models.Weights
		if linearized {
			around = at
		}
		p, err := NewPair(enc, tau1, tau2, around)
		if err != nil {
			t.Fatal(err)
		}
		fa, fb, err := p.Features(a, b, ref.pixels)
		p.Close()
		if err != nil {
			t.Fatal(err)
		}
		for k, c := range [][2]float64{a, b} {
			var want []float32
			if linearized {
				want, err = lin.Encode(combine(c), ref.pixels)
			} else {
				want, err = enc.Encode(combine(c), ref.pixels)
			}
			if err != nil {
				t.Fatal(err)
			}
			got := [][]float32{fa, fb}[k]
			if d := maxDiff(f64(got), f64(want)); d > 1e-4 {
				t.Errorf("linearized %v, combination %v: features differ from the host-combined model's by %g", linearized, c, d)
			}
		}
	}
}
