package tasks_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

func TestOpenSet(t *testing.T) {
	f := newFixture(t)
	s := openSet(t, f.base.path, f.ft1.path, f.tv1, f.ft2.path)
	var got []string
	for _, ti := range s.Floats() {
		got = append(got, ti.Name)
	}
	if want := defNames(floatDefs(defs)); !slices.Equal(got, want) {
		t.Errorf("Floats = %q, want %q", got, want)
	}
	for i, want := range []bool{false, true, false} {
		if s.Stored(i) != want {
			t.Errorf("Stored(%d) = %v, want %v", i, s.Stored(i), want)
		}
	}
	if got, want := s.Inputs(), []string{f.base.path, f.ft1.path, f.tv1, f.ft2.path}; !slices.Equal(got, want) {
		t.Errorf("Inputs = %q, want %q", got, want)
	}
	if tasks.IsTaskVector(s.Base) || !tasks.IsTaskVector(s.Members[1]) {
		t.Error("IsTaskVector wrong")
	}
}

// drop returns defs without the named tensor; reshape changes one's shape.
func drop(ds []tensorDef, name string) []tensorDef {
	return slices.DeleteFunc(slices.Clone(ds), func(d tensorDef) bool { return d.name == name })
}

func reshape(ds []tensorDef, name string, shape ...int64) []tensorDef {
	out := slices.Clone(ds)
	for i := range out {
		if out[i].name == name {
			out[i].shape = shape
		}
	}
	return out
}

func TestNewSetErrors(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	tvMeta := map[string]string{tasks.KindKey: tasks.KindTaskVector, tasks.BaseKey: f.base.path, tasks.BaseSizeKey: fmt.Sprint(f.baseSize(t))}
	// A stored task vector of the given tensors, by hand.
	tv := func(name string, ds []tensorDef) string {
		p := filepath.Join(dir, name+".safetensors")
		genModel(t, ds, 9, nil).write(t, p, tvMeta, 1)
		return p
	}
	ft := func(name string, ds []tensorDef) string {
		p := filepath.Join(dir, name+".safetensors")
		genModel(t, ds, 8, nil).write(t, p, nil, 1)
		return p
	}
	// The same base with a longer header: a different size.
	otherBase := filepath.Join(dir, "base2")
	genModel(t, defs, 1, nil).write(t, otherBase, map[string]string{"note": "another base of another size"}, 1)
	st, err := os.Stat(filepath.Join(otherBase, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	floats := floatDefs(defs)
	for _, tc := range []struct {
		name    string
		base    string
		members []string
		want    []string
	}{
		{"base is a task vector", f.tv1, []string{f.ft1.path}, []string{f.tv1, "is a task vector, not a model"}},
		{"task vector of a base of another size", otherBase, []string{f.tv1},
			[]string{f.tv1, fmt.Sprint(f.baseSize(t)), f.base.path, otherBase, fmt.Sprint(st.Size())}},
		{"fine-tuned missing a tensor", f.base.path, []string{ft("missing", drop(defs, "model.norm.weight"))},
			[]string{"1 tensor(s)", "missing from", "model.norm.weight"}},
		{"fine-tuned missing an integer tensor", f.base.path, []string{ft("missingint", drop(defs, "model.layers.0.position_ids"))},
			[]string{"missing from", "model.layers.0.position_ids"}},
		{"fine-tuned shape mismatch", f.base.path, []string{ft("shape", reshape(defs, "model.layers.0.attn.weight", 5, 4))},
			[]string{"shape mismatch", "model.layers.0.attn.weight", "[4 5]", "[5 4]"}},
		{"fine-tuned missing and mismatched", f.base.path,
			[]string{ft("both", reshape(drop(drop(defs, "lm_head.weight"), "model.norm.weight"), "model.layers.1.attn.weight", 24))},
			[]string{"2 tensor(s)", "lm_head.weight", "model.norm.weight", "shape mismatch", "model.layers.1.attn.weight: [2 3 4]"}},
		{"fine-tuned with an extra tensor", f.base.path, []string{ft("extra", append(slices.Clone(defs), tensorDef{"extra.bias", checkpoint.F32, []int64{2}}))},
			[]string{"not in", "extra.bias"}},
		{"task vector with an integer tensor", f.base.path, []string{tv("tvint", defs)},
			[]string{"model.layers.0.position_ids (not a float tensor)", "buffers.mask (not a float tensor)"}},
		{"task vector with an extra tensor", f.base.path, []string{tv("tvextra", append(slices.Clone(floats), tensorDef{"extra.bias", checkpoint.F32, []int64{2}}))},
			[]string{"not in", "extra.bias"}},
		{"task vector missing a tensor", f.base.path, []string{tv("tvmissing", drop(floats, "lm_head.weight"))},
			[]string{"missing from", "lm_head.weight"}},
		{"task vector shape mismatch", f.base.path, []string{tv("tvshape", reshape(floats, "model.norm.weight", 1, 13))},
			[]string{"shape mismatch", "model.norm.weight"}},
		{"every bad member is reported", f.base.path,
			[]string{f.ft1.path, ft("m1", drop(defs, "model.norm.weight")), tv("m2", drop(floats, "lm_head.weight"))},
			[]string{"model.norm.weight", "lm_head.weight"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tasks.OpenSet(tc.base, tc.members)
			if err == nil {
				s.Close()
			}
			wantErr(t, err, tc.want...)
		})
	}
}

func TestNewSetAccepts(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	// A task vector without a recorded base size, in BF16, and a fine-tuned
	// model whose float tensors all have other float dtypes.
	unsized := filepath.Join(dir, "unsized.safetensors")
	f.writeTV(t, unsized, f.tau(f.ft1), checkpoint.BF16, false)
	over := map[string]checkpoint.DType{}
	for _, d := range floatDefs(defs) {
		over[d.name] = checkpoint.F64
	}
	wide := filepath.Join(dir, "wide.safetensors")
	genModel(t, defs, 5, over).write(t, wide, nil, 1)
	s := openSet(t, f.base.path, unsized, wide)
	if !s.Stored(0) || s.Stored(1) {
		t.Errorf("Stored = %v, %v", s.Stored(0), s.Stored(1))
	}
}

func TestOpenSetMissingFiles(t *testing.T) {
	f := newFixture(t)
	missing := filepath.Join(t.TempDir(), "nope")
	for _, tc := range []struct {
		name    string
		base    string
		members []string
	}{
		{"base", missing, []string{f.ft1.path}},
		{"member", f.base.path, []string{f.ft1.path, missing}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tasks.OpenSet(tc.base, tc.members)
			wantErr(t, err, missing)
		})
	}
}
