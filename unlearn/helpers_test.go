package unlearn

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/models/clip"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/train"
)

// shapesData is a synthetic 4-class task of 16×16 RGB images: class k is a
// noisy background of hue k with a bright bar whose orientation and place
// depend on k. Deterministic from seed.
func shapesData(t *testing.T, n int, seed uint64) *datasets.Dataset {
	t.Helper()
	const s = 16
	r := rand.New(rand.NewPCG(seed, 11))
	pix := make([]uint8, n*s*s*3)
	labels := make([]int, n)
	hues := [4][3]int{{160, 60, 60}, {60, 160, 60}, {60, 60, 160}, {140, 140, 60}}
	for i := range n {
		k := i % 4
		labels[i] = k
		img := pix[i*s*s*3 : (i+1)*s*s*3]
		for p := range s * s {
			for c := range 3 {
				img[3*p+c] = uint8(max(0, min(255, hues[k][c]+r.IntN(70)-35)))
			}
		}
		off := 2 + r.IntN(8)
		for j := 2; j < 12; j++ {
			y, x := off, j
			if k%2 == 1 {
				y, x = j, off
			}
			for c := range 3 {
				img[3*(y*s+x)+c] = 230
			}
		}
	}
	d, err := datasets.FromPixels("shapes", []string{"red", "green", "blue", "yellow"}, s, s, 3, pix, labels)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tinyCLIP is an untrained CLIP image tower for 16×16 images.
func tinyCLIP(t *testing.T, seed uint64) *encoder.Encoder {
	t.Helper()
	c := clip.Config{Naming: clip.HF, EmbedDim: 32,
		Vision: &clip.VisionConfig{Tower: clip.Tower{Width: 32, Layers: 2, Heads: 2, MLP: 64, Act: "quick_gelu", Eps: 1e-5}, ImageSize: 16, PatchSize: 4, Channels: 3}}
	m, err := clip.NewRandom(c, seed)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encoder.NewCLIP(m.Config, m.Weights)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// trained is a supervised encoder with its head.
type trained struct {
	enc  *encoder.Encoder
	head *heads.Head
}

var (
	trainedMu    sync.Mutex
	trainedCache = map[string]trained{}
)

// trainShapes trains tinyCLIP on shapesData, poisoned with the trigger when
// spec is not "" (rate 0.2, target 0); cached per spec for the package's
// tests.
func trainShapes(t *testing.T, spec string) trained {
	t.Helper()
	trainedMu.Lock()
	defer trainedMu.Unlock()
	if tr, ok := trainedCache[spec]; ok {
		return tr
	}
	ds := shapesData(t, 800, 1)
	if spec != "" {
		var err error
		if ds, _, err = Poison(ds, mustParse(t, spec), PoisonOptions{Rate: 0.2, Target: 0, Seed: 3}); err != nil {
			t.Fatal(err)
		}
	}
	enc := tinyCLIP(t, 1)
	res, head, err := train.Supervised(enc, ds, train.Options{LearningRate: 3e-3, WeightDecay: 0.01, Warmup: 20, ClipNorm: 1, BatchSize: 32, Steps: 150, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	out, err := encoder.NewCLIP(*enc.CLIPConfig, res.Weights)
	if err != nil {
		t.Fatal(err)
	}
	tr := trained{out, head}
	trainedCache[spec] = tr
	return tr
}
