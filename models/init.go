package models

import (
	"hash/fnv"
	"math/rand/v2"

	"github.com/editkit/editkit/checkpoint"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Init says how to initialise one weight: Std > 0 draws from N(Mean, Std²),
// else every element is Mean.
type Init struct{ Mean, Std float64 }

// Common initialisations.
var (
	Zeros = Init{}
	Ones  = Init{Mean: 1}
)

// Normal is N(0, std²).
func Normal(std float64) Init { return Init{Std: std} }

// RandomWeights creates the weights that specs declare, initialised as
// initOf says. Each tensor draws from its own generator, seeded by seed and
// the tensor's name, so a tensor's values do not depend on the others.
func RandomWeights(specs []checkpoint.TensorSpec, seed uint64, initOf func(s checkpoint.TensorSpec) Init) Weights {
	w := make(Weights, len(specs))
	for _, s := range specs {
		in := initOf(s)
		h := fnv.New64a()
		h.Write([]byte(s.Name))
		rng := rand.New(rand.NewPCG(seed, h.Sum64()))
		t := tensors.FromShape(shapes.Make(dtypes.Float32, dims(s.Shape)...))
		tensors.MustMutableFlatData(t, func(flat []float32) {
			for i := range flat {
				v := in.Mean
				if in.Std > 0 {
					v += in.Std * rng.NormFloat64()
				}
				flat[i] = float32(v)
			}
		})
		w[s.Name] = t
	}
	return w
}
