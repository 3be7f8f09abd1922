package tasks

import (
	"math"
	"strconv"

	"github.com/editkit/editkit/checkpoint"
)

// TensorStats holds, for one tensor, each member's L1 norm and squared L2
// norm, and the dot products between members (Dots[i][j], i ≤ j).
type TensorStats struct {
	Name string
	L1   []float64
	L2Sq []float64
	Dots [][]float64
}

// Stats computes per-tensor norms and dot products of the members' task
// vectors in one streaming pass, accumulating in float64.
func Stats(s *Set, opts StreamOptions) ([]TensorStats, error) {
	n := len(s.Members)
	var parts Ordered[chunkDots]
	err := s.Scan(opts, func(_ int, c *Chunk) error {
		d := chunkDots{index: c.Index, l1: make([]float64, n), dots: newSquare(n)}
		for i := range n {
			ti := c.Taus[i]
			var l1 float64
			for _, v := range ti {
				l1 += math.Abs(float64(v))
			}
			d.l1[i] = l1
			for j := i; j < n; j++ {
				d.dots[i][j] = dot64(ti, c.Taus[j])
			}
		}
		parts.Put(c.Seq, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]TensorStats, len(s.floats))
	for k, t := range s.floats {
		out[k] = TensorStats{Name: t.Name, L1: make([]float64, n), L2Sq: make([]float64, n), Dots: newSquare(n)}
	}
	parts.Each(func(d chunkDots) {
		ts := &out[d.index]
		for i := range n {
			ts.L1[i] += d.l1[i]
			for j := i; j < n; j++ {
				ts.Dots[i][j] += d.dots[i][j]
			}
		}
	})
	for k := range out {
		for i := range n {
			out[k].L2Sq[i] = out[k].Dots[i][i]
		}
	}
	return out, nil
}

type chunkDots struct {
	index int
	l1    []float64
	dots  [][]float64
}

func newSquare(n int) [][]float64 {
	m := make([][]float64, n)
	for i := range m {
		m[i] = make([]float64, n)
	}
	return m
}

func dot64(a, b []float32) float64 {
	var s float64
	for k, v := range a {
		s += float64(v) * float64(b[k])
	}
	return s
}

// Norm is an L1 and L2 norm.
type Norm struct{ L1, L2 float64 }

// BlockNorms groups per-tensor norms of member i by residual block: the key
// is the stack and block ("visual.transformer.resblocks.3") or "(outside
// blocks)".
func BlockNorms(stats []TensorStats, i int, layout *checkpoint.Layout) (keys []string, norms map[string]Norm) {
	norms = make(map[string]Norm)
	sq := make(map[string]float64)
	for _, ts := range stats {
		d := layout.Depth(ts.Name)
		key := "(outside blocks)"
		if d.InBlock() {
			key = d.Stack + strconv.Itoa(d.Block)
		}
		if _, ok := norms[key]; !ok {
			keys = append(keys, key)
		}
		n := norms[key]
		n.L1 += ts.L1[i]
		norms[key] = n
		sq[key] += ts.L2Sq[i]
	}
	for k, v := range sq {
		n := norms[k]
		n.L2 = math.Sqrt(v)
		norms[k] = n
	}
	return keys, norms
}

// Cosine returns the pairwise cosine similarity of the members' whole task
// vectors (all float tensors flattened into one vector each).
func Cosine(stats []TensorStats) [][]float64 {
	if len(stats) == 0 {
		return nil
	}
	n := len(stats[0].L1)
	dots := newSquare(n)
	for _, ts := range stats {
		for i := range n {
			for j := i; j < n; j++ {
				dots[i][j] += ts.Dots[i][j]
			}
		}
	}
	cos := newSquare(n)
	for i := range n {
		for j := range n {
			a, b := min(i, j), max(i, j)
			den := math.Sqrt(dots[a][a]) * math.Sqrt(dots[b][b])
			if den > 0 {
				cos[i][j] = dots[a][b] / den
			}
		}
	}
	return cos
}

// Totals sums per-tensor stats into whole-vector L1 and L2 norms per member.
func Totals(stats []TensorStats) []Norm {
	if len(stats) == 0 {
		return nil
	}
	out := make([]Norm, len(stats[0].L1))
	for i := range out {
		var sq float64
		for _, ts := range stats {
			out[i].L1 += ts.L1[i]
			sq += ts.L2Sq[i]
		}
		out[i].L2 = math.Sqrt(sq)
	}
	return out
}
