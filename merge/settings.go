package merge

import (
	"strconv"
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

// params reads a parameters mapping. Each value is checked against the
// parameter table; unknown names are kept out with a warning, as mergekit
// ignores them.
func (p *yamlParser) params(n *yaml.Node, model string) map[string]*setting {
	out := map[string]*setting{}
	n = yamlDeref(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return out // an empty parameters: key
	}
	if n.Kind != yaml.MappingNode {
		p.errf(n, "parameters must be a mapping of names to values")
		return out
	}
	p.eachKey(n, func(k string, kn, v *yaml.Node) {
		prm := ParamByName(k)
		if prm == nil || !prm.YAML {
			p.warnf(kn, "unknown parameter %q ignored, as mergekit ignores it (parameters: %s)", k, yamlParamNames())
			return
		}
		if s, ok := p.setting(v, prm); ok {
			s.node = kn
			out[k] = s
		}
	})
	return out
}

func yamlParamNames() string {
	var names []string
	for _, p := range paramTable {
		if p.YAML {
			names = append(names, p.Name)
		}
	}
	return strings.Join(names, ", ")
}

// setting reads a parameter's value: a scalar, a gradient (numbers only)
// or a list of {filter, value} conditions, checking every number.
func (p *yamlParser) setting(v *yaml.Node, prm *Param) (*setting, bool) {
	v = yamlDeref(v)
	switch v.Kind {
	case yaml.ScalarNode:
		x, ok := p.scalar(v, prm)
		if !ok {
			return nil, false
		}
		return &setting{node: v, scalar: x}, true
	case yaml.SequenceNode:
		if len(v.Content) == 0 {
			p.errf(v, "%s: an empty list", prm.Name)
			return nil, false
		}
		if yamlDeref(v.Content[0]).Kind == yaml.MappingNode {
			s := &setting{node: v}
			for _, item := range v.Content {
				c, ok := p.condition(yamlDeref(item), prm)
				if !ok {
					return nil, false
				}
				s.conds = append(s.conds, c)
			}
			return s, true
		}
		g, ok := p.gradient(v, prm)
		if !ok {
			return nil, false
		}
		return &setting{node: v, grad: g}, true
	case yaml.MappingNode:
		p.errf(v, "%s: a single {filter, value} mapping is refused by mergekit too: give the conditions as a list, [{filter: NAME_PART, value: ...}, {value: ...}], the last without a filter for the other tensors", prm.Name)
		return nil, false
	}
	p.errf(v, "%s has an unsupported form", prm.Name)
	return nil, false
}

func (p *yamlParser) condition(n *yaml.Node, prm *Param) (condition, bool) {
	var c condition
	if n.Kind != yaml.MappingNode {
		p.errf(n, "%s: each condition must be a mapping {filter: NAME_PART, value: ...}", prm.Name)
		return c, false
	}
	ok := true
	var value *yaml.Node
	p.eachKey(n, func(k string, kn, v *yaml.Node) {
		switch k {
		case "filter":
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				return
			}
			if s, good := p.str(v, prm.Name+" filter"); good {
				c.filter = s
			} else {
				ok = false
			}
		case "value":
			value = v
		default:
			p.errf(kn, "%s: a condition has keys filter and value, not %q", prm.Name, k)
			ok = false
		}
	})
	if value == nil {
		p.errf(n, "%s: condition without a value", prm.Name)
		return c, false
	}
	value = yamlDeref(value)
	switch value.Kind {
	case yaml.ScalarNode:
		x, good := p.scalar(value, prm)
		c.value, ok = &setting{node: value, scalar: x}, ok && good
	case yaml.SequenceNode:
		g, good := p.gradient(value, prm)
		c.value, ok = &setting{node: value, grad: g}, ok && good
	default:
		p.errf(value, "%s: a condition's value is a number or a gradient list", prm.Name)
		ok = false
	}
	return c, ok
}

func (p *yamlParser) gradient(v *yaml.Node, prm *Param) ([]float64, bool) {
	if prm.Kind != Float && prm.Kind != Floats {
		p.errf(v, "%s takes one value (or {filter, value} conditions), not a gradient list", prm.Name)
		return nil, false
	}
	g := make([]float64, 0, len(v.Content))
	for _, e := range v.Content {
		e = yamlDeref(e)
		if e.Kind != yaml.ScalarNode {
			p.errf(e, "%s: a gradient is a list of numbers", prm.Name)
			return nil, false
		}
		x, ok := p.scalar(e, prm)
		if !ok {
			return nil, false
		}
		g = append(g, x.(float64))
	}
	return g, true
}

// scalar decodes a scalar of the parameter's kind and checks its range.
func (p *yamlParser) scalar(n *yaml.Node, prm *Param) (any, bool) {
	var v any
	switch prm.Kind {
	case Float, Floats:
		var f float64
		if (n.Tag != "!!float" && n.Tag != "!!int") || n.Decode(&f) != nil {
			p.errf(n, "%s must be a number, got %q%s", prm.Name, n.Value, quotedNumber(n))
			return nil, false
		}
		v = f
	case Int:
		var i int
		if n.Tag != "!!int" || n.Decode(&i) != nil {
			p.errf(n, "%s must be a whole number, got %q%s", prm.Name, n.Value, quotedNumber(n))
			return nil, false
		}
		v = i
	case Uint:
		var u uint64
		if n.Tag != "!!int" || n.Decode(&u) != nil {
			p.errf(n, "%s must be a non-negative whole number, got %q%s", prm.Name, n.Value, quotedNumber(n))
			return nil, false
		}
		v = u
	case Bool:
		var b bool
		if n.Tag != "!!bool" || n.Decode(&b) != nil {
			p.errf(n, "%s must be true or false, got %q", prm.Name, n.Value)
			return nil, false
		}
		v = b
	default:
		s, ok := p.str(n, prm.Name)
		if !ok {
			return nil, false
		}
		v = s
	}
	if why, _ := prm.checkValue(v); why != "" {
		p.paramErr(n, &ParamError{Param: prm.Name, Model: -1, Value: v, Reason: why}, "")
		return nil, false
	}
	return v, true
}

// quotedNumber explains a refused quoted number: mergekit's pydantic schema
// keeps a quoted scalar a string (its parameters accept strings), so the
// value would not be the number the user meant there either.
func quotedNumber(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return ""
	}
	if _, err := strconv.ParseFloat(strings.TrimSpace(n.Value), 64); err != nil {
		return ""
	}
	return " (a quoted string: write the number without quotes)"
}
