package tasks

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/editkit/editkit/checkpoint"
)

// Metadata keys editkit writes into the checkpoints it produces.
const (
	KindKey        = "editkit.kind"
	KindTaskVector = "task_vector"
	KindModel      = "model"
	BaseKey        = "editkit.base"
	BaseSizeKey    = "editkit.base_size"
)

// IsTaskVector reports whether c was saved as a task vector.
func IsTaskVector(c *checkpoint.Checkpoint) bool {
	return c.Metadata[KindKey] == KindTaskVector
}

// Set is a base checkpoint and the members whose task vectors are taken
// against it.
type Set struct {
	Base    *checkpoint.Checkpoint
	Members []*checkpoint.Checkpoint
	// AllowNonfinite lets NaN and ±Inf through; by default reading one is an
	// error naming the file and tensor.
	AllowNonfinite bool

	stored []bool
	floats []checkpoint.TensorInfo
}

// OpenSet opens a base and members (fine-tuned checkpoints or stored task
// vectors) and checks that they fit together.
func OpenSet(base string, members []string) (*Set, error) {
	b, err := checkpoint.Open(base)
	if err != nil {
		return nil, err
	}
	var ms []*checkpoint.Checkpoint
	closeAll := func() {
		b.Close()
		for _, m := range ms {
			m.Close()
		}
	}
	for _, p := range members {
		m, err := checkpoint.Open(p)
		if err != nil {
			closeAll()
			return nil, err
		}
		ms = append(ms, m)
	}
	s, err := NewSet(b, ms)
	if err != nil {
		closeAll()
		return nil, err
	}
	return s, nil
}

// NewSet checks that members fit base: fine-tuned checkpoints must have the
// base's tensors and shapes, stored task vectors its float tensors and a
// recorded base of the same size.
func NewSet(base *checkpoint.Checkpoint, members []*checkpoint.Checkpoint) (*Set, error) {
	if IsTaskVector(base) {
		return nil, fmt.Errorf("%s is a task vector, not a model: give the pre-trained checkpoint as the base", base.Path)
	}
	s := &Set{Base: base, Members: members, stored: make([]bool, len(members))}
	for _, t := range base.Tensors() {
		if checkpoint.IsFloat(t.DType) {
			s.floats = append(s.floats, t)
		}
	}
	var errs []error
	for i, m := range members {
		if IsTaskVector(m) {
			s.stored[i] = true
			if err := checkpoint.CheckTaskVector(base, m); err != nil {
				errs = append(errs, err)
				continue
			}
			if want, err := strconv.ParseInt(m.Metadata[BaseSizeKey], 10, 64); err == nil && want != base.Size() {
				errs = append(errs, fmt.Errorf("task vector %s was built against a base of %d bytes (%s), but base %s has %d bytes: give the base it was built from", m.Path, want, m.Metadata[BaseKey], base.Path, base.Size()))
			}
			continue
		}
		if err := checkpoint.CheckCompatible(base, m); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// Close closes the base and all members.
func (s *Set) Close() error {
	errs := []error{s.Base.Close()}
	for _, m := range s.Members {
		errs = append(errs, m.Close())
	}
	return errors.Join(errs...)
}

// Floats lists the base's float tensors, the entries of every task vector,
// in storage order.
func (s *Set) Floats() []checkpoint.TensorInfo { return s.floats }

// Stored reports whether member i is a stored task vector.
func (s *Set) Stored(i int) bool { return s.stored[i] }

// Inputs lists the base and member paths, for provenance and for refusing to
// overwrite them.
func (s *Set) Inputs() []string {
	out := []string{s.Base.Path}
	for _, m := range s.Members {
		out = append(out, m.Path)
	}
	return out
}
