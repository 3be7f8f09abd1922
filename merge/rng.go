package merge

import (
	"hash/fnv"

	"github.com/editkit/editkit/internal/simd"
)

// DARE's random drops come from a counter-based generator: the draw for
// element i of tensor name in member t is a hash of (seed, t, name, i). The
// result depends only on those, not on chunking, worker count or the order in
// which tensors are visited, so a seed reproduces the same model exactly.

func streamKey(seed uint64, member int, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return mix64(seed ^ mix64(uint64(member)+0x632be59bd9b4e019) ^ h.Sum64())
}

// mix64 is SplitMix64's finalizer, a bijective avalanche on 64 bits.
func mix64(z uint64) uint64 { return simd.Mix64(z) }

// golden64 is 2⁶⁴/φ, SplitMix64's increment.
const golden64 = 0x9e3779b97f4a7c15

// uniform returns the draw in [0, 1) for element i of a stream (dropRandom
// draws the same, vectorized).
func uniform(key uint64, i int64) float64 {
	return float64(mix64(key+uint64(i+1)*golden64)>>11) / (1 << 53)
}
