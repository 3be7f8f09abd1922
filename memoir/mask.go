package memoir

import (
	"fmt"
	"math"
	"math/bits"
	"sort"
)

// The reference's TopHash keeps 4096 of LLaMA-3-8B's 14336 MLP features
// (hparams/MEMOIR/llama3-8b.yaml: top_k 4096); other models keep the same
// fraction by default.
const (
	refTopK         = 4096
	refIntermediate = 14336
)

// DefaultTopK is the number of features a mask keeps for an MLP of
// intermediate features: the reference's fraction 4096/14336 (≈ 28.6%),
// rounded, at least 1.
func DefaultTopK(intermediate int) int {
	return max(1, int(math.Round(float64(intermediate)*refTopK/refIntermediate)))
}

// DefaultLayer is the layer MEMOIR edits in a model of n layers: the
// reference's relative depth, layer 27 of LLaMA-3-8B's 32, rounded
// (round(27·n/32), at most n−1). stories260K's 5 layers give layer 4.
func DefaultLayer(n int) int {
	return min(n-1, max(0, int(math.Round(27*float64(n)/32))))
}

// SplitMix64 is the random generator behind [Permutation]: Steele, Lea and
// Flood's SplitMix64 (the seeding generator of xoshiro), state advanced by
// 0x9e3779b97f4a7c15 and mixed by the finalizer of MurmurHash3's variant 13.
// It is spelled out here so that a seed names the same permutation on every
// platform and Go version. From state 0 its first output is
// 0xe220a8397b1dcdaf.
type SplitMix64 struct{ State uint64 }

// Next returns the next 64 random bits.
func (s *SplitMix64) Next() uint64 {
	s.State += 0x9e3779b97f4a7c15
	z := s.State
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Permutation returns MEMOIR's fixed random permutation π of 0..n−1 for a
// seed (the reference draws torch.randperm under seed 42): Durstenfeld's
// Fisher–Yates shuffle of the identity, for i = n−1 down to 1 swapping p[i]
// with p[j], j = Next() mod (i+1), SplitMix64 started from state seed.
func Permutation(n int, seed uint64) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	g := SplitMix64{State: seed}
	for i := n - 1; i > 0; i-- {
		j := int(g.Next() % uint64(i+1))
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// TopHash is MEMOIR's mask function: the k features of largest magnitude
// of a (de-centered) prompt feature vector, mapped through a fixed
// permutation π: a feature vector v gives the mask of positions
// {π[i] : i among the k largest |v_i|}. The permutation spreads the masks
// of similar prompts apart while keeping identical prompts identical.
type TopHash struct {
	K    int
	Perm []int // π, a permutation of 0..len(Perm)−1
}

// NewTopHash is the TopHash over n features keeping k, with the
// permutation of seed.
func NewTopHash(n, k int, seed uint64) (*TopHash, error) {
	h := &TopHash{K: k, Perm: Permutation(n, seed)}
	return h, h.Check()
}

// Check validates k and the permutation.
func (h *TopHash) Check() error {
	n := len(h.Perm)
	if n == 0 {
		return fmt.Errorf("memoir: TopHash over no features")
	}
	if h.K < 1 || h.K > n {
		return fmt.Errorf("memoir: TopHash keeps %d of %d features; it must keep 1..%d", h.K, n, n)
	}
	seen := make([]bool, n)
	for _, p := range h.Perm {
		if p < 0 || p >= n || seen[p] {
			return fmt.Errorf("memoir: TopHash permutation is not a permutation of 0..%d", n-1)
		}
		seen[p] = true
	}
	return nil
}

// N is the number of features.
func (h *TopHash) N() int { return len(h.Perm) }

// TopK returns the indices of the k largest |v_i|, largest first; ties
// go to the lower index.
func TopK(v []float32, k int) []int {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		return math.Abs(float64(v[idx[a]])) > math.Abs(float64(v[idx[b]]))
	})
	return idx[:min(k, len(idx))]
}

// Indices returns the mask's positions for v, π[topk(|v|)], in the order
// of the top-k (largest first).
func (h *TopHash) Indices(v []float32) []int {
	if len(v) != len(h.Perm) {
		panic(fmt.Errorf("memoir: TopHash over %d features given %d", len(h.Perm), len(v)))
	}
	top := TopK(v, h.K)
	for i, j := range top {
		top[i] = h.Perm[j]
	}
	return top
}

// Mask returns the mask of v.
func (h *TopHash) Mask(v []float32) Mask {
	return MaskOf(len(h.Perm), h.Indices(v))
}

// Mask is a set of feature positions, bit-packed: bit j of byte i (least
// significant first) is position 8i+j. Its length is ⌈n/8⌉ bytes for n
// features; the unused high bits of the last byte are zero.
type Mask []byte

// MaskBytes is the packed size of a mask over n features.
func MaskBytes(n int) int { return (n + 7) / 8 }

// MaskOf packs positions (each in 0..n−1) into a mask over n features.
func MaskOf(n int, positions []int) Mask {
	m := make(Mask, MaskBytes(n))
	for _, p := range positions {
		if p < 0 || p >= n {
			panic(fmt.Errorf("memoir: mask position %d out of 0..%d", p, n-1))
		}
		m[p>>3] |= 1 << (p & 7)
	}
	return m
}

// Has reports whether position p is in the mask.
func (m Mask) Has(p int) bool { return p>>3 < len(m) && m[p>>3]&(1<<(p&7)) != 0 }

// Count is the number of positions in the mask.
func (m Mask) Count() int {
	n := 0
	for _, b := range m {
		n += bits.OnesCount8(b)
	}
	return n
}

// Common is |m ∧ o|, the number of positions in both masks.
func (m Mask) Common(o Mask) int {
	n := 0
	for i := range min(len(m), len(o)) {
		n += bits.OnesCount8(m[i] & o[i])
	}
	return n
}

// Floats unpacks the mask over n features as 0/1 values.
func (m Mask) Floats(n int) []float32 {
	f := make([]float32, n)
	for i := range f {
		if m.Has(i) {
			f[i] = 1
		}
	}
	return f
}

// Positions lists the mask's positions in increasing order.
func (m Mask) Positions() []int {
	var p []int
	for i := range len(m) * 8 {
		if m.Has(i) {
			p = append(p, i)
		}
	}
	return p
}

// Match is the result of routing a query mask against the stored ones.
type Match struct {
	// Index of the stored mask with the largest overlap (the first of
	// equals), -1 when none is stored.
	Index int
	// Overlap is |M_q ∧ M_i| / k for that mask.
	Overlap float64
	// Active: Overlap ≥ the threshold, so the stored mask is applied.
	Active bool
}

// BestMatch finds the stored mask with the largest overlap |q ∧ m_i|/k
// and whether it reaches threshold τ.
func BestMatch(q Mask, stored []Mask, k int, threshold float64) Match {
	best := Match{Index: -1}
	for i, m := range stored {
		if o := float64(q.Common(m)) / float64(k); best.Index < 0 || o > best.Overlap {
			best.Index, best.Overlap = i, o
		}
	}
	best.Active = best.Index >= 0 && best.Overlap >= threshold
	return best
}
