package train

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/clip"
	"github.com/editkit/editkit/models/heads"
	"github.com/editkit/editkit/models/vit"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// tinyViT is a ViT small enough for tests: 8×8 images, 4 patches.
func tinyViT() vit.Config {
	c := vit.DefaultConfig()
	c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize = 16, 2, 2, 32
	c.ImageSize, c.PatchSize, c.LayerNormEps = 8, 4, 1e-6
	return c
}

// tinyCLIP is a CLIP small enough for tests.
func tinyCLIP(n clip.Naming) clip.Config {
	return clip.Config{Naming: n,
		Vision:   &clip.VisionConfig{Tower: clip.Tower{Width: 16, Layers: 1, Heads: 2, MLP: 32, Act: "quick_gelu", Eps: 1e-5}, ImageSize: 8, PatchSize: 4, Channels: 3},
		Text:     &clip.TextConfig{Tower: clip.Tower{Width: 16, Layers: 1, Heads: 2, MLP: 32, Act: "quick_gelu", Eps: 1e-5}, ContextLength: 8, VocabSize: 40},
		EmbedDim: 12}
}

// wideWeights draws weights with a larger spread than the models'
// initialisation, so that gradients are far from zero everywhere.
func wideWeights(specs []checkpoint.TensorSpec, seed uint64) models.Weights {
	return models.RandomWeights(specs, seed, func(s checkpoint.TensorSpec) models.Init {
		if len(s.Shape) <= 1 && s.Name != "logit_scale" {
			return models.Init{Mean: 0.5, Std: 0.3}
		}
		if s.Name == "logit_scale" {
			return models.Init{Mean: 2.5}
		}
		return models.Normal(0.3)
	})
}

// randomPixels returns n normalized images of size×size×3.
func randomPixels(n, size int, seed uint64) *tensors.Tensor {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, n*size*size*3)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return tensors.FromFlatDataAndDimensions(v, n, size, size, 3)
}

// randomHead is a head of c classes on dim-d features.
func randomHead(c, d int, normalize bool, seed uint64) *heads.Head {
	r := rand.New(rand.NewPCG(seed, 2))
	h := &heads.Head{Dim: d, Scale: 1, Normalize: normalize}
	if normalize {
		h.Scale = 10
	}
	for i := range c {
		h.Classes = append(h.Classes, string(rune('a'+i)))
	}
	for range c * d {
		h.Weight = append(h.Weight, float32(r.NormFloat64()))
	}
	for range c {
		h.Bias = append(h.Bias, float32(0.1*r.NormFloat64()))
	}
	return h
}

// quadrants is a separable dataset: n 8×8 RGB images of 4 classes, class k
// bright in quadrant k, plus noise.
func quadrants(t testing.TB, n int, seed uint64) *datasets.Dataset {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 3))
	pix := make([]uint8, n*8*8*3)
	labels := make([]int, n)
	for i := range n {
		k := i % 4
		labels[i] = k
		for y := range 8 {
			for x := range 8 {
				v := 40 + r.IntN(40)
				if (y/4)*2+x/4 == k {
					v = 180 + r.IntN(60)
				}
				for c := range 3 {
					pix[((i*8+y)*8+x)*3+c] = uint8(v)
				}
			}
		}
	}
	ds, err := datasets.FromPixels("quadrants", []string{"top left", "top right", "bottom left", "bottom right"}, 8, 8, 3, pix, labels)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// setFlat replaces a tensor by one of the same shape holding values
// (float64).
func float64Tensor(values []float64, dims []int) *tensors.Tensor {
	return tensors.FromFlatDataAndDimensions(values, dims...)
}

func flat64(t *tensors.Tensor) []float64 {
	if t.DType() == dtypes.Float64 {
		return tensors.MustCopyFlatData[float64](t)
	}
	f := tensors.MustCopyFlatData[float32](t)
	out := make([]float64, len(f))
	for i, v := range f {
		out[i] = float64(v)
	}
	return out
}

func zerosLike(t *tensors.Tensor) *tensors.Tensor {
	return tensors.FromShape(shapes.Make(t.DType(), t.Shape().Dimensions...))
}

func near(a, b, tol float64) bool {
	return math.Abs(a-b) <= tol*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// livelyWeights initialises like the models (unit gains, zero biases) but
// with matrices and embeddings N(0, std²): a randomly initialised tiny
// transformer whose features depend on its input, so that a few dozen steps
// are enough to learn.
func livelyWeights(specs []checkpoint.TensorSpec, std float64, seed uint64) models.Weights {
	return models.RandomWeights(specs, seed, func(s checkpoint.TensorSpec) models.Init {
		switch {
		case s.Name == "logit_scale":
			return models.Init{Mean: math.Log(1 / 0.07)}
		case len(s.Shape) >= 2 || strings.Contains(s.Name, "class_embedding"):
			return models.Normal(std)
		case strings.Contains(s.Name, "norm") && strings.HasSuffix(s.Name, ".weight") ||
			strings.Contains(s.Name, "ln_") && strings.HasSuffix(s.Name, ".weight") || s.Name == "ln_final.weight":
			return models.Ones
		}
		return models.Zeros
	})
}
