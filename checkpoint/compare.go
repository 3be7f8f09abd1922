package checkpoint

import (
	"fmt"
	"slices"
	"strings"
)

// maxListed bounds how many mismatches an error lists.
const maxListed = 5

// CheckCompatible verifies that other holds the same tensors as base with the
// same shapes, and dtypes that can be combined: any float with any float
// (arithmetic runs in float32), and otherwise the identical dtype. The error
// lists the first few problems of each kind and how many there are.
func CheckCompatible(base, other *Checkpoint) error {
	return compare(base.Path, specsOf(base), other.Path, specsOf(other), combinable)
}

// CheckTaskVector verifies that the task vector tv holds exactly the float
// tensors of base, with the same shapes and float dtypes.
func CheckTaskVector(base, tv *Checkpoint) error {
	return compare(base.Path, specsOf(base), tv.Path, specsOf(tv), floatsOnly)
}

// CheckShapes verifies that other holds the same tensors as base with the
// same shapes, whatever their dtypes (e.g. the weights of a model and of
// the base it is evaluated linearized around, both read as float32).
// baseName and otherName name the two sets in the error, which lists the
// first few problems of each kind as CheckCompatible's does.
func CheckShapes(baseName string, base []TensorSpec, otherName string, other []TensorSpec) error {
	return compare(baseName, base, otherName, other, anyDType)
}

// dtypeRule is how compare judges two tensors' dtypes.
type dtypeRule int

const (
	combinable dtypeRule = iota // float with float, else identical
	floatsOnly                  // float tensors only, on both sides
	anyDType                    // not compared
)

func specsOf(c *Checkpoint) []TensorSpec {
	infos := c.Tensors()
	out := make([]TensorSpec, len(infos))
	for i, t := range infos {
		out[i] = TensorSpec{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	return out
}

func compare(baseName string, base []TensorSpec, otherName string, other []TensorSpec, rule dtypeRule) error {
	have := make(map[string]TensorSpec, len(other))
	for _, t := range other {
		have[t.Name] = t
	}
	want := make(map[string]bool, len(base))
	var missing, extra, shapes, dtypes []string
	for _, t := range base {
		want[t.Name] = true
		o, ok := have[t.Name]
		if rule == floatsOnly && !IsFloat(t.DType) {
			if ok {
				extra = append(extra, ShortName(t.Name)+" (not a float tensor)")
			}
			continue
		}
		switch {
		case !ok:
			missing = append(missing, ShortName(t.Name))
		case !slices.Equal(t.Shape, o.Shape):
			shapes = append(shapes, fmt.Sprintf("%s: %v in %s, %v in %s", ShortName(t.Name), t.Shape, baseName, o.Shape, otherName))
		case rule == anyDType:
		case t.DType != o.DType && !(IsFloat(t.DType) && IsFloat(o.DType)),
			rule == floatsOnly && !IsFloat(o.DType):
			dtypes = append(dtypes, fmt.Sprintf("%s: %s in %s, %s in %s", ShortName(t.Name), t.DType, baseName, o.DType, otherName))
		}
	}
	for _, t := range other {
		if !want[t.Name] {
			extra = append(extra, ShortName(t.Name))
		}
	}
	var b strings.Builder
	list := func(what string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n  %d %s", len(items), what)
		for i, s := range items {
			if i == maxListed {
				fmt.Fprintf(&b, "\n    ... and %d more", len(items)-maxListed)
				break
			}
			fmt.Fprintf(&b, "\n    %s", s)
		}
	}
	list(fmt.Sprintf("tensor(s) of %s missing from %s:", baseName, otherName), missing)
	list(fmt.Sprintf("tensor(s) of %s not in %s:", otherName, baseName), extra)
	list("shape mismatch(es):", shapes)
	list("dtype mismatch(es):", dtypes)
	if b.Len() == 0 {
		return nil
	}
	return fmt.Errorf("%s and %s are not the same architecture:%s\n  (are both checkpoints of the same model, in the same naming?)", baseName, otherName, b.String())
}
