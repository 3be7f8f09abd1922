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
	return compare(base, other, false)
}

// CheckTaskVector verifies that the task vector tv holds exactly the float
// tensors of base, with the same shapes and float dtypes.
func CheckTaskVector(base, tv *Checkpoint) error {
	return compare(base, tv, true)
}

func compare(base, other *Checkpoint, floatsOnly bool) error {
	var missing, extra, shapes, dtypes []string
	for _, t := range base.Tensors() {
		if floatsOnly && !IsFloat(t.DType) {
			if _, ok := other.Tensor(t.Name); ok {
				extra = append(extra, ShortName(t.Name)+" (not a float tensor)")
			}
			continue
		}
		o, ok := other.Tensor(t.Name)
		switch {
		case !ok:
			missing = append(missing, ShortName(t.Name))
		case !slices.Equal(t.Shape, o.Shape):
			shapes = append(shapes, fmt.Sprintf("%s: %v in %s, %v in %s", ShortName(t.Name), t.Shape, base.Path, o.Shape, other.Path))
		case t.DType != o.DType && !(IsFloat(t.DType) && IsFloat(o.DType)),
			floatsOnly && !IsFloat(o.DType):
			dtypes = append(dtypes, fmt.Sprintf("%s: %s in %s, %s in %s", ShortName(t.Name), t.DType, base.Path, o.DType, other.Path))
		}
	}
	for _, t := range other.Tensors() {
		if _, ok := base.Tensor(t.Name); !ok {
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
	list(fmt.Sprintf("tensor(s) of %s missing from %s:", base.Path, other.Path), missing)
	list(fmt.Sprintf("tensor(s) of %s not in %s:", other.Path, base.Path), extra)
	list("shape mismatch(es):", shapes)
	list("dtype mismatch(es):", dtypes)
	if b.Len() == 0 {
		return nil
	}
	return fmt.Errorf("%s and %s are not the same architecture:%s\n  (are both checkpoints of the same model, in the same naming?)", base.Path, other.Path, b.String())
}
