package checkpoint

import (
	"fmt"
	"strings"
	"testing"
)

// fakeCheckpoint writes a hand-made file holding tensors described as
// "name:DTYPE:d0xd1" (zero-filled) and opens it.
func fakeCheckpoint(t *testing.T, dir, file string, descs ...string) *Checkpoint {
	t.Helper()
	size := map[string]int{"F32": 4, "BF16": 2, "F16": 2, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1}
	var ts []rawTensor
	for _, d := range descs {
		parts := strings.Split(d, ":")
		var shape []int64
		n := 1
		if parts[2] != "" {
			for _, s := range strings.Split(parts[2], "x") {
				var v int
				fmt.Sscan(s, &v)
				shape = append(shape, int64(v))
				n *= v
			}
		}
		ts = append(ts, rawTensor{parts[0], parts[1], shape, make([]byte, n*size[parts[1]])})
	}
	return mustOpen(t, writeBytes(t, dir, file, buildFile(nil, ts...)))
}

func TestCheckCompatible(t *testing.T) {
	base := []string{"a:F32:2x3", "b:BF16:4", "c:I64:2", "d:F32:", "e:U8:3"}
	tests := []struct {
		name  string
		other []string
		has   []string
		lacks []string
	}{
		{"identical", base, nil, nil},
		{"float dtypes may differ", []string{"a:BF16:2x3", "b:F32:4", "c:I64:2", "d:F64:", "e:U8:3"}, nil, nil},
		{"F16 against BF16", []string{"a:F16:2x3", "b:F16:4", "c:I64:2", "d:F32:", "e:U8:3"}, nil, nil},
		{"missing tensor", []string{"a:F32:2x3", "b:BF16:4", "d:F32:", "e:U8:3"},
			[]string{"1 tensor(s) of", "missing from", "    c"}, []string{"not in", "mismatch"}},
		{"extra tensor", append(base, "z:F32:1"),
			[]string{"1 tensor(s) of", "not in", "    z"}, []string{"missing from", "mismatch"}},
		{"shape mismatch", []string{"a:F32:3x2", "b:BF16:4", "c:I64:2", "d:F32:", "e:U8:3"},
			[]string{"1 shape mismatch(es)", "a: [2 3] in", "[3 2] in"}, []string{"dtype"}},
		{"scalar against vector", []string{"a:F32:2x3", "b:BF16:4", "c:I64:2", "d:F32:1", "e:U8:3"},
			[]string{"1 shape mismatch(es)", "d: [] in", "[1] in"}, nil},
		{"float against int", []string{"a:I64:2x3", "b:BF16:4", "c:I64:2", "d:F32:", "e:U8:3"},
			[]string{"1 dtype mismatch(es)", "a: F32 in", "I64 in"}, []string{"shape"}},
		{"int against float", []string{"a:F32:2x3", "b:BF16:4", "c:F64:2", "d:F32:", "e:U8:3"},
			[]string{"1 dtype mismatch(es)", "c: I64 in", "F64 in"}, nil},
		{"int against other int", []string{"a:F32:2x3", "b:BF16:4", "c:I64:2", "d:F32:", "e:BOOL:3"},
			[]string{"1 dtype mismatch(es)", "e: U8 in", "BOOL in"}, nil},
		{"all kinds at once", []string{"a:F32:1", "c:I32:2", "d:F32:", "e:U8:3", "x:F32:1"},
			[]string{"1 tensor(s)", "missing from", "    b", "not in", "    x", "1 shape mismatch", "1 dtype mismatch", "same architecture"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := fakeCheckpoint(t, dir, "base.safetensors", base...)
			o := fakeCheckpoint(t, dir, "other.safetensors", tc.other...)
			err := CheckCompatible(b, o)
			if tc.has == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			wantErr(t, err, append(tc.has, b.Path, o.Path)...)
			for _, l := range tc.lacks {
				if strings.Contains(err.Error(), l) {
					t.Errorf("error mentions %q:\n%v", l, err)
				}
			}
		})
	}
}

func TestCheckCompatibleListsAtMostFive(t *testing.T) {
	dir := t.TempDir()
	var base, other []string
	for i := range 12 {
		base = append(base, fmt.Sprintf("m%02d:F32:1", i)) // all missing from other
		other = append(other, fmt.Sprintf("x%02d:F32:1", i))
	}
	for i := range 7 {
		base = append(base, fmt.Sprintf("s%02d:F32:2", i))
		other = append(other, fmt.Sprintf("s%02d:F32:3", i))
	}
	for i := range 5 {
		base = append(base, fmt.Sprintf("d%02d:F32:1", i))
		other = append(other, fmt.Sprintf("d%02d:I32:1", i))
	}
	b := fakeCheckpoint(t, dir, "b.safetensors", base...)
	o := fakeCheckpoint(t, dir, "o.safetensors", other...)
	err := CheckCompatible(b, o)
	wantErr(t, err, "12 tensor(s) of", "... and 7 more", "7 shape mismatch(es)", "... and 2 more", "5 dtype mismatch(es)")
	msg := err.Error()
	// Exactly five names listed of each of the 12-long lists.
	for _, prefix := range []string{"m", "x"} {
		n := 0
		for i := range 12 {
			if strings.Contains(msg, fmt.Sprintf("    %s%02d", prefix, i)) {
				n++
			}
		}
		if n != 5 {
			t.Errorf("%d %s-tensors listed, want 5", n, prefix)
		}
	}
	n := 0
	for i := range 7 {
		if strings.Contains(msg, fmt.Sprintf("s%02d:", i)) {
			n++
		}
	}
	if n != 5 {
		t.Errorf("%d shape mismatches listed, want 5", n)
	}
	if strings.Count(msg, "... and") != 3 {
		t.Errorf("want three '... and N more' lines (not for the 5 dtype mismatches):\n%s", msg)
	}
}

func TestCheckTaskVector(t *testing.T) {
	base := []string{"a:F32:2x3", "b:BF16:4", "ids:I64:2", "mask:BOOL:3"}
	tests := []struct {
		name string
		tv   []string
		has  []string
	}{
		{"float tensors only", []string{"a:F32:2x3", "b:F32:4"}, nil},
		{"other float dtypes", []string{"a:BF16:2x3", "b:F16:4"}, nil},
		{"holds a non-float tensor of the base", []string{"a:F32:2x3", "b:F32:4", "ids:I64:2"},
			[]string{"ids (not a float tensor)"}},
		{"misses a float tensor", []string{"a:F32:2x3"}, []string{"missing from", "    b"}},
		{"extra tensor", []string{"a:F32:2x3", "b:F32:4", "z:F32:1"}, []string{"not in", "    z"}},
		{"integer delta for a float tensor", []string{"a:I32:2x3", "b:F32:4"}, []string{"dtype mismatch", "a: F32 in", "I32 in"}},
		{"shape mismatch", []string{"a:F32:6", "b:F32:4"}, []string{"shape mismatch", "a: [2 3] in", "[6] in"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := fakeCheckpoint(t, dir, "base.safetensors", base...)
			tv := fakeCheckpoint(t, dir, "tv.safetensors", tc.tv...)
			err := CheckTaskVector(b, tv)
			if tc.has == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			wantErr(t, err, tc.has...)
		})
	}
}

func TestCheckShapes(t *testing.T) {
	spec := func(name string, dt DType, shape ...int64) TensorSpec {
		return TensorSpec{Name: name, DType: dt, Shape: shape}
	}
	base := []TensorSpec{spec("a", F32, 2, 3), spec("b", F32, 4), spec("c", F32, 5)}
	tests := []struct {
		name  string
		other []TensorSpec
		has   []string
	}{
		{"identical", base, nil},
		{"dtypes are not compared", []TensorSpec{spec("a", BF16, 2, 3), spec("b", I64, 4), spec("c", F64, 5)}, nil},
		{"order does not matter", []TensorSpec{base[2], base[0], base[1]}, nil},
		{"every kind of mismatch", []TensorSpec{spec("a", F32, 3, 2), spec("c", F32, 5), spec("d", F32, 1)},
			[]string{"model and base are not the same architecture", "1 tensor(s) of model missing from base:\n    b",
				"1 tensor(s) of base not in model:\n    d", "1 shape mismatch(es):\n    a: [2 3] in model, [3 2] in base"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckShapes("model", base, "base", tc.other)
			if tc.has == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			wantErr(t, err, tc.has...)
			if strings.Contains(err.Error(), "dtype") {
				t.Errorf("error mentions dtypes:\n%v", err)
			}
		})
	}
}
