package merge

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// setting is a parameter's value in a mergekit configuration: a scalar, a
// gradient (a list of numbers interpolated over the layers), or a list of
// conditions on the tensor name, each with a scalar or gradient value.
type setting struct {
	node   *yaml.Node
	scalar any // float64, int, uint64, bool or string; nil for the others
	grad   []float64
	conds  []condition
}

// condition is one {filter, value} entry; an empty filter (or "*")
// matches every tensor.
type condition struct {
	filter string
	value  *setting
}

// eval gives the setting's value for a tensor at layer position t ∈ [0, 1]
// as mergekit's evaluate_setting does: a gradient's ends are its first and
// last values and positions between are interpolated linearly between the
// two nearest; conditions are tried in order, the first whose filter is a
// substring of the tensor name wins, and ok is false when none matches.
func (s *setting) eval(tensor string, t float64) (v any, ok bool) {
	switch {
	case s.scalar != nil:
		return s.scalar, true
	case s.grad != nil:
		return gradientAt(s.grad, t), true
	}
	for _, c := range s.conds {
		if c.filter == "" || c.filter == "*" || (tensor != "" && strings.Contains(tensor, c.filter)) {
			return c.value.eval(tensor, t)
		}
	}
	return nil, false
}

// gradientAt interpolates g at position t: scaled = t·(len−1),
// i0 = ⌊scaled⌋, i1 = min(len−1, i0+1), (1−f)·g[i0] + f·g[i1].
func gradientAt(g []float64, t float64) float64 {
	scaled := t * float64(len(g)-1)
	i0 := int(scaled)
	i1 := min(len(g)-1, i0+1)
	frac := scaled - float64(i0)
	return (1-frac)*g[i0] + frac*g[i1]
}

// isScalar reports whether the setting has one value for every tensor.
func (s *setting) isScalar() bool { return s.scalar != nil }
