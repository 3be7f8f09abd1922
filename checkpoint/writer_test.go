package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	st "github.com/nlpodyssey/safetensors"
)

// writeAll creates out with specs, writes data[i] as float32 for float specs
// (raw bytes otherwise) and commits.
func writeAll(t *testing.T, out string, specs []TensorSpec, opts WriteOptions, data map[string][]float32) {
	t.Helper()
	w, err := Create(out, specs, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, s := range specs {
		if err := w.WriteFloat32(s.Name, data[s.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestWriterSingleFileExactBytes(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.safetensors")
	writeAll(t, out, []TensorSpec{{Name: "w", DType: F32, Shape: []int64{2}}},
		WriteOptions{Metadata: map[string]string{"a": "b"}}, map[string][]float32{"w": {1, -2}})

	// 93 bytes of JSON padded with 3 spaces to 96, a multiple of 8.
	header := `{"__metadata__":{"a":"b","format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   `
	want := append([]byte{96, 0, 0, 0, 0, 0, 0, 0}, header...)
	want = append(want, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("file bytes\n got %q\nwant %q", got, want)
	}
	if names := listDir(t, dir); !slices.Equal(names, []string{"out.safetensors"}) {
		t.Errorf("folder holds %v, want only out.safetensors", names)
	}
}

func TestWriterFolderSingleShard(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "merged")
	specs := []TensorSpec{
		{Name: "b", DType: BF16, Shape: []int64{3}},
		{Name: "a", DType: F32, Shape: []int64{1}},
	}
	writeAll(t, out, specs, WriteOptions{ShardSize: 1 << 20, Metadata: map[string]string{"editkit": "1"}},
		map[string][]float32{"b": {1, 2, 3}, "a": {0.5}})
	if names := listDir(t, out); !slices.Equal(names, []string{SingleFile}) {
		t.Fatalf("output folder holds %v, want only %s", names, SingleFile)
	}
	if names := listDir(t, dir); !slices.Equal(names, []string{"merged"}) {
		t.Errorf("parent holds %v, want only merged", names)
	}
	h, n, data := readHeaderJSON(t, filepath.Join(out, SingleFile))
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	var meta map[string]string
	if err := json.Unmarshal(h["__metadata__"], &meta); err != nil {
		t.Fatal(err)
	}
	if len(meta) != 2 || meta["format"] != "pt" || meta["editkit"] != "1" {
		t.Errorf("__metadata__ = %v, want format=pt and editkit=1", meta)
	}
	// Data in declaration order: b (6 bytes of BF16) then a.
	wantData := append(le16(0x3f80, 0x4000, 0x4040), f32le(0.5)...)
	if !bytes.Equal(data, wantData) {
		t.Errorf("data section % x, want % x", data, wantData)
	}
	for _, p := range []string{out, filepath.Join(out, SingleFile)} {
		ck := mustOpen(t, p)
		if ck.Metadata["format"] != "pt" || ck.Metadata["editkit"] != "1" {
			t.Errorf("Open(%s).Metadata = %v", p, ck.Metadata)
		}
		got, _, err := ck.ReadFloat32("b", nil, nil)
		if err != nil || !slices.Equal(got, []float32{1, 2, 3}) {
			t.Errorf("b = %v, %v", got, err)
		}
		if ck.Dir != out {
			t.Errorf("Dir = %s, want %s", ck.Dir, out)
		}
	}
}

func TestWriterHeaderAlignment(t *testing.T) {
	dir := t.TempDir()
	for n := 1; n <= 9; n++ {
		out := filepath.Join(dir, strings.Repeat("o", n)+".safetensors")
		specs := []TensorSpec{
			{Name: strings.Repeat("x", n), DType: BF16, Shape: []int64{1}},
			{Name: "y", DType: F32, Shape: []int64{int64(n)}},
		}
		writeAll(t, out, specs, WriteOptions{Metadata: map[string]string{strings.Repeat("k", n): "v"}},
			map[string][]float32{specs[0].Name: {1}, "y": make([]float32, n)})
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		hl := binary.LittleEndian.Uint64(b)
		if hl%8 != 0 {
			t.Errorf("name length %d: header length %d, not a multiple of 8", n, hl)
		}
		if want := 8 + hl + 2 + 4*uint64(n); uint64(len(b)) != want {
			t.Errorf("name length %d: file of %d bytes, want %d", n, len(b), want)
		}
		// Padding is spaces only, after the closing brace.
		js := string(b[8 : 8+hl])
		if trimmed := strings.TrimRight(js, " "); !strings.HasSuffix(trimmed, "}") || len(js)-len(trimmed) > 7 {
			t.Errorf("header %q is not JSON padded with at most 7 spaces", js)
		}
	}
}

func TestWriterSharded(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "sharded")
	// 16-byte tensors and a 64-byte one under a 32-byte shard size: greedy
	// sharding gives [t0 t1] [big] [t3 t4].
	specs := []TensorSpec{
		{Name: "t0", DType: F32, Shape: []int64{4}},
		{Name: "t1", DType: F32, Shape: []int64{2, 2}},
		{Name: "big", DType: F32, Shape: []int64{16}},
		{Name: "t3", DType: BF16, Shape: []int64{8}},
		{Name: "t4", DType: F64, Shape: []int64{2}},
	}
	data := map[string][]float32{
		"t0": {1, 2, 3, 4}, "t1": {5, 6, 7, 8},
		"big": {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
		"t3":  {-1, -2, -3, -4, 0.5, 0.25, 0.125, 2}, "t4": {1e-3, 3},
	}
	writeAll(t, out, specs, WriteOptions{ShardSize: 32}, data)

	shardNames := []string{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"}
	if got, want := listDir(t, out), append(slices.Clone(shardNames), IndexFile); !slices.Equal(got, sorted(want)) {
		t.Fatalf("output holds %v, want %v", got, sorted(want))
	}
	var idx struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	b, err := os.ReadFile(filepath.Join(out, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	if idx.Metadata["total_size"] != 16+16+64+16+16 {
		t.Errorf("total_size %d, want 128", idx.Metadata["total_size"])
	}
	wantMap := map[string]string{
		"t0": shardNames[0], "t1": shardNames[0], "big": shardNames[1], "t3": shardNames[2], "t4": shardNames[2],
	}
	if len(idx.WeightMap) != len(wantMap) {
		t.Errorf("weight_map %v, want %v", idx.WeightMap, wantMap)
	}
	for k, v := range wantMap {
		if idx.WeightMap[k] != v {
			t.Errorf("weight_map[%s] = %q, want %q", k, idx.WeightMap[k], v)
		}
	}
	// Each shard, read by hand, lists its own tensors and __metadata__.
	for i, want := range [][]string{{"t0", "t1"}, {"big"}, {"t3", "t4"}} {
		h, n, _ := readHeaderJSON(t, filepath.Join(out, shardNames[i]))
		if n%8 != 0 {
			t.Errorf("%s: header length %d not a multiple of 8", shardNames[i], n)
		}
		var got []string
		for k := range h {
			if k != "__metadata__" {
				got = append(got, k)
			}
		}
		if !slices.Equal(sorted(got), want) {
			t.Errorf("%s holds %v, want %v", shardNames[i], sorted(got), want)
		}
		if !strings.Contains(string(h["__metadata__"]), `"format":"pt"`) {
			t.Errorf("%s: __metadata__ %s lacks format pt", shardNames[i], h["__metadata__"])
		}
	}

	ck := mustOpen(t, out)
	var names []string
	for _, ti := range ck.Tensors() {
		names = append(names, ti.Name)
	}
	if !slices.Equal(names, []string{"t0", "t1", "big", "t3", "t4"}) {
		t.Errorf("Tensors() in order %v", names)
	}
	paths, sizes := ck.Files()
	if len(paths) != 3 {
		t.Fatalf("Files() = %v", paths)
	}
	var total int64
	for i, p := range paths {
		fi, err := os.Stat(p)
		if err != nil || fi.Size() != sizes[i] {
			t.Errorf("Files(): %s size %d, stat %v %v", p, sizes[i], fi.Size(), err)
		}
		total += fi.Size()
	}
	if ck.Size() != total {
		t.Errorf("Size() = %d, want %d", ck.Size(), total)
	}
	// Values read back: exact for F32, and exactly representable in BF16;
	// F64 holds float32 exactly.
	for name, want := range data {
		got, _, err := ck.ReadFloat32(name, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	info, _ := ck.Tensor("t1")
	if !slices.Equal(info.Shape, []int64{2, 2}) || info.File != filepath.Join(out, shardNames[0]) {
		t.Errorf("t1 info %+v", info)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestWriterDeterministic(t *testing.T) {
	dir := t.TempDir()
	specs := []TensorSpec{
		{Name: "layers.0.w", DType: BF16, Shape: []int64{4, 2}},
		{Name: "layers.1.w", DType: F16, Shape: []int64{8}},
		{Name: "head", DType: F32, Shape: []int64{3}},
		{Name: "ids", DType: st.I64, Shape: []int64{2}},
	}
	meta := map[string]string{"z": "1", "a": "2", "m": "3", "b": "4", "y": "5"}
	write := func(out string) {
		w, err := Create(out, specs, WriteOptions{ShardSize: 20, Metadata: meta})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		for _, s := range specs[:3] {
			vals := make([]float32, s.Bytes()/int64(s.DType.Size()))
			for i := range vals {
				vals[i] = float32(i) / 3
			}
			if err := w.WriteFloat32(s.Name, vals); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Write("ids", le64(7, 9)); err != nil {
			t.Fatal(err)
		}
		if err := w.AddFile("config.json", []byte(`{"x":1}`)); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write(a)
	write(b)
	na, nb := listDir(t, a), listDir(t, b)
	if !slices.Equal(na, nb) || len(na) < 4 {
		t.Fatalf("outputs differ in files: %v vs %v", na, nb)
	}
	for _, n := range na {
		x, _ := os.ReadFile(filepath.Join(a, n))
		y, _ := os.ReadFile(filepath.Join(b, n))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two identical runs", n)
		}
	}
}

// TestWriterEmptyTensors covers zero-element tensors, which share their
// offset with the next tensor, and a checkpoint with no tensors at all.
func TestWriterEmptyTensors(t *testing.T) {
	dir := t.TempDir()
	// "z_empty" sorts after "a" in the header but comes first in the data.
	specs := []TensorSpec{
		{Name: "z_empty", DType: F32, Shape: []int64{0}},
		{Name: "a", DType: F32, Shape: []int64{2}},
		{Name: "m_empty", DType: BF16, Shape: []int64{3, 0}},
		{Name: "s", DType: F32, Shape: nil}, // scalar
	}
	out := filepath.Join(dir, "e.safetensors")
	writeAll(t, out, specs, WriteOptions{}, map[string][]float32{"a": {1, 2}, "s": {7}})
	ck := mustOpen(t, out)
	for name, want := range map[string][]float32{"z_empty": {}, "a": {1, 2}, "m_empty": {}, "s": {7}} {
		got, _, err := ck.ReadFloat32(name, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if info, _ := ck.Tensor("s"); len(info.Shape) != 0 || info.NumElements() != 1 || info.Bytes != 4 {
		t.Errorf("scalar info %+v", info)
	}

	for _, name := range []string{"none.safetensors", "none"} {
		out := filepath.Join(dir, name)
		writeAll(t, out, nil, WriteOptions{}, nil)
		ck := mustOpen(t, out)
		if len(ck.Tensors()) != 0 || ck.Metadata["format"] != "pt" {
			t.Errorf("%s: tensors %v, metadata %v", name, ck.Tensors(), ck.Metadata)
		}
	}
}

// TestWriterLeavesNoTrace checks that Abort, and a Commit that fails because
// tensors are missing, leave the parent folder as it was.
func TestWriterLeavesNoTrace(t *testing.T) {
	specs := []TensorSpec{
		{Name: "a", DType: F32, Shape: []int64{4}},
		{Name: "b", DType: F32, Shape: []int64{4}},
		{Name: "c", DType: F32, Shape: []int64{4}},
	}
	tests := []struct {
		name   string
		out    string
		shard  int64
		writes int
		commit bool
	}{
		{"abort before writing, folder", "o", 0, 0, false},
		{"abort before writing, file", "o.safetensors", 0, 0, false},
		{"abort mid-way, sharded", "o", 16, 2, false},
		{"abort mid-way, file", "o.safetensors", 0, 1, false},
		{"commit missing tensors, folder", "o", 0, 1, true},
		{"commit missing tensors, sharded", "o", 16, 2, true},
		{"commit missing tensors, file", "o.safetensors", 0, 2, true},
		{"commit with nothing written", "o", 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeBytes(t, dir, "keep.txt", []byte("x"))
			w, err := Create(filepath.Join(dir, tc.out), specs, WriteOptions{ShardSize: tc.shard})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range specs[:tc.writes] {
				if err := w.WriteFloat32(s.Name, []float32{1, 2, 3, 4}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.commit {
				err := w.Commit()
				wantErr(t, err, "only", "of 3 tensors", `"`+specs[tc.writes].Name+`"`)
			} else {
				w.Abort()
				w.Abort() // twice is harmless
			}
			if names := listDir(t, dir); !slices.Equal(names, []string{"keep.txt"}) {
				t.Errorf("parent holds %v after failure, want only keep.txt", names)
			}
			if err := w.Write("c", make([]byte, 16)); err == nil {
				t.Error("Write after abort gave no error")
			}
			if err := w.Commit(); err == nil {
				t.Error("Commit after abort gave no error")
			}
		})
	}
	t.Run("abort after commit keeps output", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "o")
		w, err := Create(out, specs[:1], WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteFloat32("a", []float32{1, 2, 3, 4}); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		w.Abort()
		if names := listDir(t, out); !slices.Equal(names, []string{SingleFile}) {
			t.Errorf("output holds %v after Abort following Commit", names)
		}
		if err := w.Commit(); err == nil {
			t.Error("second Commit gave no error")
		}
		if names := listDir(t, dir); !slices.Equal(names, []string{"o"}) {
			t.Errorf("parent holds %v", names)
		}
	})
}

func TestWriterRefusesOutputs(t *testing.T) {
	spec := []TensorSpec{{Name: "a", DType: F32, Shape: []int64{1}}}
	tests := []struct {
		name   string
		setup  func(t *testing.T, dir string) (out string, inputs []string)
		force  bool
		errHas []string
	}{
		{"output is the input file", func(t *testing.T, dir string) (string, []string) {
			in := writeBytes(t, dir, "in.safetensors", buildFile(nil))
			return in, []string{in}
		}, true, []string{"is also an input"}},
		{"output is the input folder", func(t *testing.T, dir string) (string, []string) {
			writeBytes(t, dir, "in/model.safetensors", buildFile(nil))
			return filepath.Join(dir, "in"), []string{filepath.Join(dir, "in")}
		}, true, []string{"is also an input"}},
		{"output is the input folder spelt differently", func(t *testing.T, dir string) (string, []string) {
			writeBytes(t, dir, "in/model.safetensors", buildFile(nil))
			return filepath.Join(dir, "in") + "/./", []string{filepath.Join(dir, "x", "..", "in")}
		}, true, []string{"is also an input"}},
		{"output inside the input folder", func(t *testing.T, dir string) (string, []string) {
			writeBytes(t, dir, "in/model.safetensors", buildFile(nil))
			return filepath.Join(dir, "in", "merged"), []string{filepath.Join(dir, "in")}
		}, false, []string{"lies inside input"}},
		{"output file inside the input folder", func(t *testing.T, dir string) (string, []string) {
			writeBytes(t, dir, "in/model.safetensors", buildFile(nil))
			return filepath.Join(dir, "in", "m.safetensors"), []string{filepath.Join(dir, "in")}
		}, false, []string{"lies inside input"}},
		{"output inside the input folder, name starting with two dots", func(t *testing.T, dir string) (string, []string) {
			writeBytes(t, dir, "in/model.safetensors", buildFile(nil))
			return filepath.Join(dir, "in", "..merged"), []string{filepath.Join(dir, "in")}
		}, false, []string{"lies inside input"}},
		{"output folder holds the input", func(t *testing.T, dir string) (string, []string) {
			in := writeBytes(t, dir, "out/base/model.safetensors", buildFile(nil))
			return filepath.Join(dir, "out"), []string{filepath.Dir(in)}
		}, true, []string{"would replace a folder holding input"}},
		{"output folder holds the input file", func(t *testing.T, dir string) (string, []string) {
			in := writeBytes(t, dir, "out/base.safetensors", buildFile(nil))
			return filepath.Join(dir, "out"), []string{in}
		}, true, []string{"would replace a folder holding input"}},
		{"output is a symlink to the input", func(t *testing.T, dir string) (string, []string) {
			writeBytes(t, dir, "in/model.safetensors", buildFile(nil))
			link := filepath.Join(dir, "link")
			if err := os.Symlink(filepath.Join(dir, "in"), link); err != nil {
				t.Skip("no symlinks:", err)
			}
			return link, []string{filepath.Join(dir, "in")}
		}, true, []string{"is also an input"}},
		{"second input checked too", func(t *testing.T, dir string) (string, []string) {
			a := writeBytes(t, dir, "a.safetensors", buildFile(nil))
			b := writeBytes(t, dir, "b.safetensors", buildFile(nil))
			return b, []string{a, b}
		}, true, []string{"is also an input"}},
		{"existing output without force", func(t *testing.T, dir string) (string, []string) {
			writeBytes(t, dir, "out/model.safetensors", buildFile(nil))
			return filepath.Join(dir, "out"), nil
		}, false, []string{"already exists", "--force"}},
		{"existing output file without force", func(t *testing.T, dir string) (string, []string) {
			return writeBytes(t, dir, "out.safetensors", []byte("old")), nil
		}, false, []string{"already exists"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out, inputs := tc.setup(t, dir)
			before := snapshot(t, dir)
			w, err := Create(out, spec, WriteOptions{Inputs: inputs, Force: tc.force})
			if err == nil {
				w.Abort()
			}
			wantErr(t, err, tc.errHas...)
			if after := snapshot(t, dir); !maps.Equal(before, after) {
				t.Errorf("refused Create changed the folder:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
	t.Run("output beside the input is fine", func(t *testing.T) {
		dir := t.TempDir()
		writeBytes(t, dir, "in/model.safetensors", buildFile(nil))
		w, err := Create(filepath.Join(dir, "in-merged"), spec, WriteOptions{Inputs: []string{filepath.Join(dir, "in")}})
		if err != nil {
			t.Fatal(err)
		}
		w.Abort()
	})
	t.Run("empty output path", func(t *testing.T) {
		if _, err := Create("", spec, WriteOptions{}); err == nil {
			t.Fatal("no error")
		}
	})
}

// snapshot maps every path under dir to its content (folders to "/").
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := make(map[string]string)
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			m[p] = "/"
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			m[p] = "-> " + target
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			m[p] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestWriterForceReplaces(t *testing.T) {
	spec := []TensorSpec{{Name: "a", DType: F32, Shape: []int64{1}}}
	for _, tc := range []struct{ name, out string }{{"folder", "out"}, {"file", "out.safetensors"}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, tc.out)
			if tc.out == "out" {
				writeBytes(t, out, "stale.txt", []byte("old"))
				writeBytes(t, out, SingleFile, []byte("old weights"))
			} else {
				writeBytes(t, dir, tc.out, []byte("old weights"))
			}
			writeAll(t, out, spec, WriteOptions{Force: true}, map[string][]float32{"a": {3}})
			if names := listDir(t, dir); !slices.Equal(names, []string{tc.out}) {
				t.Errorf("parent holds %v, want only %s", names, tc.out)
			}
			if tc.out == "out" {
				if names := listDir(t, out); !slices.Equal(names, []string{SingleFile}) {
					t.Errorf("replaced output holds %v", names)
				}
			}
			ck := mustOpen(t, out)
			if got, _, err := ck.ReadFloat32("a", nil, nil); err != nil || !slices.Equal(got, []float32{3}) {
				t.Errorf("a = %v, %v", got, err)
			}
		})
	}
}

func TestWriterCopySideFiles(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	writeBytes(t, base, SingleFile, buildFile(nil, rawTensor{"a", "F32", []int64{1}, f32le(1)}))
	side := map[string]string{
		"config.json":             `{"model_type":"vit"}`,
		"tokenizer.json":          `{"tok":1}`,
		"tokenizer_config.json":   `{}`,
		"special_tokens_map.json": `{}`,
		"vocab.txt":               "a\nb\n",
		"merges.txt":              "#v\n",
	}
	for n, c := range side {
		writeBytes(t, base, n, []byte(c))
	}
	for _, n := range []string{"pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack",
		"model.ckpt", "extra.safetensors", "model.pt", "model.pth", "model.onnx", "model.gguf", ".hidden", "sub/config.json"} {
		writeBytes(t, base, n, []byte("weights"))
	}
	// A Hugging Face cache snapshot links its files into a blob store.
	blob := writeBytes(t, dir, "blobs/abc123", []byte(`{"gen":1}`))
	if err := os.Symlink(blob, filepath.Join(base, "generation_config.json")); err == nil {
		side["generation_config.json"] = `{"gen":1}`
	}
	ck := mustOpen(t, base)

	out := filepath.Join(dir, "out")
	w, err := Create(out, []TensorSpec{{Name: "a", DType: F32, Shape: []int64{1}}}, WriteOptions{Inputs: []string{base}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.AddFile("config.json", []byte(`{"model_type":"merged"}`)); err != nil {
		t.Fatal(err)
	}
	if err := w.AddFile("../evil.json", nil); err == nil {
		t.Error("AddFile accepted a path")
	}
	if err := w.CopySideFiles(ck); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFloat32("a", []float32{2}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for n := range side {
		want = append(want, n)
	}
	want = sorted(append(want, SingleFile))
	if got := listDir(t, out); !slices.Equal(got, want) {
		t.Errorf("output holds %v, want %v", got, want)
	}
	for n, c := range side {
		if n == "config.json" {
			c = `{"model_type":"merged"}` // AddFile takes precedence
		}
		b, err := os.ReadFile(filepath.Join(out, n))
		if err != nil || string(b) != c {
			t.Errorf("%s = %q, %v; want %q", n, b, err, c)
		}
		if fi, err := os.Lstat(filepath.Join(out, n)); err == nil && !fi.Mode().IsRegular() {
			t.Errorf("%s copied as %v, want a regular file", n, fi.Mode())
		}
	}

	t.Run("single-file output and lone-file input copy nothing", func(t *testing.T) {
		o := filepath.Join(dir, "single.safetensors")
		w, err := Create(o, nil, WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		if err := w.CopySideFiles(ck); err != nil {
			t.Fatal(err)
		}
		if err := w.AddFile("config.json", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		lone := mustOpen(t, filepath.Join(base, SingleFile))
		o2 := filepath.Join(dir, "o2")
		w2, err := Create(o2, nil, WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer w2.Abort()
		if err := w2.CopySideFiles(lone); err != nil {
			t.Fatal(err)
		}
		if err := w2.Commit(); err != nil {
			t.Fatal(err)
		}
		if got := listDir(t, o2); !slices.Equal(got, []string{SingleFile}) {
			t.Errorf("output of a lone-file input holds %v", got)
		}
	})
}

func TestWriterErrors(t *testing.T) {
	dir := t.TempDir()
	specs := []TensorSpec{
		{Name: "a", DType: F32, Shape: []int64{2}},
		{Name: "ids", DType: st.I64, Shape: []int64{1}},
	}
	w, err := Create(filepath.Join(dir, "o"), specs, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if got := w.Specs(); len(got) != 2 || got[0].Name != "a" {
		t.Errorf("Specs() = %v", got)
	}
	if s, ok := w.Next(); !ok || s.Name != "a" {
		t.Errorf("Next() = %v, %v", s, ok)
	}
	wantErr(t, w.Write("ids", le64(1)), `"ids"`, "out of order", `expected "a"`)
	wantErr(t, w.WriteFloat32("ids", []float32{1}), `"ids"`, "out of order")
	wantErr(t, w.Write("a", make([]byte, 7)), `"a"`, "7 bytes, want 8")
	wantErr(t, w.WriteFloat32("a", []float32{1, 2, 3}), `"a"`, "12 bytes, more than the 8")
	// WriteFloat32 appends: the tensor may come in chunks.
	if err := w.WriteFloat32("a", []float32{1}); err != nil {
		t.Fatal(err)
	}
	if s, ok := w.Next(); !ok || s.Name != "a" {
		t.Errorf("Next() after half of a = %v, %v; want a", s, ok)
	}
	wantErr(t, w.WriteFloat32("a", []float32{2, 3}), `"a"`, "12 bytes, more than the 8")
	wantErr(t, w.Write("ids", le64(1)), `"ids"`, "out of order", `expected "a"`)
	if err := w.WriteFloat32("a", []float32{2}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, w.WriteFloat32("ids", []float32{1}), `"ids"`)
	if err := w.Write("ids", le64(5)); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.Next(); ok {
		t.Error("Next() after all written reports more")
	}
	wantErr(t, w.Write("ids", le64(5)), `"ids"`, "after all 2 declared tensors")
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}

	bad := []struct {
		name  string
		specs []TensorSpec
		has   []string
	}{
		{"duplicate name", []TensorSpec{{Name: "a", DType: F32}, {Name: "a", DType: F32}}, []string{`"a"`, "declared twice"}},
		{"reserved name", []TensorSpec{{Name: "__metadata__", DType: F32}}, []string{"__metadata__", "reserved"}},
		{"negative dimension", []TensorSpec{{Name: "n", DType: F32, Shape: []int64{2, -1}}}, []string{`"n"`, "negative"}},
		{"overflowing shape", []TensorSpec{{Name: "o", DType: F32, Shape: []int64{1 << 32, 1 << 32}}}, []string{`"o"`, "overflows"}},
		{"overflowing bytes", []TensorSpec{{Name: "o", DType: F64, Shape: []int64{1 << 61}}}, []string{`"o"`, "overflows"}},
		{"unknown dtype", []TensorSpec{{Name: "u", DType: DType(200)}}, []string{`"u"`, "dtype"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			w, err := Create(filepath.Join(d, "o"), tc.specs, WriteOptions{})
			if err == nil {
				w.Abort()
			}
			wantErr(t, err, tc.has...)
			if names := listDir(t, d); len(names) != 0 {
				t.Errorf("refused Create left %v", names)
			}
		})
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.yaml")
	for _, content := range []string{"first\n", "second, longer\n", ""} {
		if err := WriteFileAtomic(p, []byte(content)); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != content {
			t.Errorf("content %q, %v; want %q", b, err, content)
		}
		if names := listDir(t, dir); !slices.Equal(names, []string{"f.yaml"}) {
			t.Errorf("folder holds %v", names)
		}
	}
	// The folder is created, as Create creates a checkpoint's; a file in
	// the way of the folder is an error.
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), []byte("x")); err != nil {
		t.Errorf("writing into a missing folder: %v", err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "f.yaml", "f"), []byte("x")); err == nil || !strings.Contains(err.Error(), "is a file, not a folder") {
		t.Errorf("writing below a file: %v", err)
	}
}

// TestWriterParts writes tensors in chunks with WritePart and WriteFloat32,
// across shard boundaries.
func TestWriterParts(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "o")
	specs := []TensorSpec{
		{Name: "a", DType: F32, Shape: []int64{4}},
		{Name: "b", DType: BF16, Shape: []int64{8}},
		{Name: "c", DType: st.U8, Shape: []int64{5}},
	}
	w, err := Create(out, specs, WriteOptions{ShardSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	steps := []struct {
		write func() error
		err   string
	}{
		{func() error { return w.WritePart("a", f32le(1)) }, ""},
		{func() error { return w.WritePart("b", le16(1)) }, "out of order"},
		{func() error { return w.WriteFloat32("a", []float32{2, 3}) }, ""},
		{func() error { return w.WritePart("a", f32le(4, 5)) }, "more than the 16"},
		{func() error { return w.WritePart("a", nil) }, ""},
		{func() error { return w.WritePart("a", f32le(4)) }, ""},
		{func() error { return w.WriteFloat32("b", []float32{1, 2, 3, 4, 5}) }, ""},
		{func() error { return w.WriteFloat32("b", []float32{6, 7, 8}) }, ""},
		{func() error { return w.WritePart("c", []byte{9}) }, ""},
		{func() error { return w.Write("c", []byte{1, 2, 3, 4}) }, ""}, // Write continues a started tensor
	}
	for i, s := range steps {
		err := s.write()
		if s.err == "" && err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if s.err != "" {
			wantErr(t, err, s.err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, out); !slices.Equal(got, []string{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors", IndexFile}) {
		t.Errorf("output holds %v", got)
	}
	ck := mustOpen(t, out)
	for name, want := range map[string][]float32{"a": {1, 2, 3, 4}, "b": {1, 2, 3, 4, 5, 6, 7, 8}} {
		got, _, err := ck.ReadFloat32(name, nil, nil)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s = %v, %v; want %v", name, got, err, want)
		}
	}
	if raw, err := ck.ReadRaw("c", nil); err != nil || !bytes.Equal(raw, []byte{9, 1, 2, 3, 4}) {
		t.Errorf("c = %v, %v", raw, err)
	}

	t.Run("commit with a tensor half written", func(t *testing.T) {
		d := t.TempDir()
		w, err := Create(filepath.Join(d, "o.safetensors"), specs[:1], WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WritePart("a", f32le(1, 2)); err != nil {
			t.Fatal(err)
		}
		wantErr(t, w.Commit(), "only 0 of 1", `"a"`)
		if names := listDir(t, d); len(names) != 0 {
			t.Errorf("folder holds %v", names)
		}
	})
}

// A value a 16-bit output cannot hold is an error naming the output, the
// tensor, the dtype and the index in the tensor, and leaves nothing; with
// Saturate it is clamped and counted (a NaN is refused even then); with
// AllowNonfinite it becomes ±Inf.
func TestWriterUnencodable(t *testing.T) {
	for _, dt := range []DType{F16, BF16} {
		dir := t.TempDir()
		out := filepath.Join(dir, "out.safetensors")
		specs := []TensorSpec{{Name: "w", DType: dt, Shape: []int64{2, 8}}}
		big := []float32{0, 1, 2, 3, 4, 5, math.MaxFloat32, 7}
		if dt == F16 {
			big[6] = -70000
		}
		write := func(opts WriteOptions, chunks ...[]float32) error {
			t.Helper()
			w, err := Create(out, specs, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			for _, c := range chunks {
				if err := w.WriteFloat32("w", c); err != nil {
					return err
				}
			}
			return w.Commit()
		}
		err := write(WriteOptions{}, make([]float32, 8), big)
		var ue *UnencodableError
		if !errors.As(err, &ue) || ue.Index != 14 || ue.DType != dt || ue.Tensor != "w" {
			t.Fatalf("%s: error %v, want one at index 14", dt, err)
		}
		for _, want := range []string{out, `"w"`, dt.String(), "index 14", "--saturate"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not name %s", dt, err, want)
			}
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s: the failed write left %v", dt, entries)
		}

		var n atomic.Int64
		inf := slices.Clone(big)
		inf[1] = float32(math.Inf(1))
		if err := write(WriteOptions{Saturate: true, Saturated: &n}, big, inf); err != nil {
			t.Fatal(err)
		}
		if n.Load() != 3 {
			t.Errorf("%s: %d values saturated, want 3", dt, n.Load())
		}
		if big[6] != -70000 && big[6] != math.MaxFloat32 {
			t.Errorf("%s: the caller's data was changed", dt)
		}
		got, _, err := mustOpen(t, out).ReadFloat32("w", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := MaxFinite(dt)
		if dt == F16 {
			want = -65504
		}
		if got[6] != want || got[14] != want || got[9] != MaxFinite(dt) {
			t.Errorf("%s: saturated values %v, %v and %v, want %v, %v and %v", dt, got[6], got[14], got[9], want, want, MaxFinite(dt))
		}
		nan := slices.Clone(big)
		nan[3] = float32(math.NaN())
		if err := write(WriteOptions{Saturate: true, Force: true}, nan); !errors.As(err, &ue) || ue.Index != 3 {
			t.Errorf("%s: a NaN with Saturate: %v, want an error at index 3", dt, err)
		}
		if err := write(WriteOptions{AllowNonfinite: true, Force: true}, big, nan); err != nil {
			t.Fatalf("%s: AllowNonfinite: %v", dt, err)
		}
		if got, _, _ := mustOpen(t, out).ReadFloat32("w", nil, nil); !math.IsInf(float64(got[6]), 0) || !math.IsNaN(float64(got[11])) {
			t.Errorf("%s: AllowNonfinite wrote %v and %v, want ±Inf and NaN", dt, got[6], got[11])
		}
	}
}
