package checkpoint

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestOpenValidation opens hand-made malformed single files; every error must
// name the file and, for tensor-level faults, the tensor.
func TestOpenValidation(t *testing.T) {
	hugeLen := make([]byte, 16)
	binary.LittleEndian.PutUint64(hugeLen, 100<<20+1)
	tooLong := make([]byte, 18)
	binary.LittleEndian.PutUint64(tooLong, 1000)
	maxLen := make([]byte, 8)
	binary.LittleEndian.PutUint64(maxLen, 1<<64-1)

	tests := []struct {
		name    string
		content []byte
		has     []string // besides the file path
	}{
		{"empty file", nil, []string{"0 bytes", "too short"}},
		{"shorter than 8 bytes", []byte{1, 0, 0}, []string{"3 bytes", "too short"}},
		{"header length over 100 MB", hugeLen, []string{"104857601", "100 MB"}},
		{"header length 2^64-1", maxLen, []string{"100 MB"}},
		{"header length past the end", tooLong, []string{"header length 1000", "larger than the file"}},
		{"header length one past the end", stFile("{}")[:9], []string{"larger than the file"}},
		{"invalid JSON", stFile(`{"a":`), []string{"invalid safetensors header"}},
		{"JSON not an object", stFile(`[1,2]`), []string{"invalid safetensors header"}},
		{"JSON garbage", stFile(`not json`), []string{"invalid safetensors header"}},
		{"second JSON value", stFile(`{}{}`), []string{"unexpected data after the header"}},
		{"NUL padding", stFile("{}\x00\x00"), []string{"invalid safetensors header"}},
		{"duplicate tensor names", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)...),
			[]string{`duplicate entry "a"`}},
		{"duplicate __metadata__ keys", stFile(`{"__metadata__":{"k":"1","k":"2"}}`), []string{"__metadata__", `duplicate key "k"`}},
		{"two __metadata__ entries", stFile(`{"__metadata__":{},"__metadata__":{}}`), []string{`duplicate entry "__metadata__"`}},
		{"metadata value not a string", stFile(`{"__metadata__":{"k":1}}`), []string{"__metadata__", `"k"`, "not a string"}},
		{"metadata not an object", stFile(`{"__metadata__":"x"}`), []string{"__metadata__"}},
		{"unknown dtype F8_E4M3", stFile(`{"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}`, make([]byte, 4)...),
			[]string{`tensor "w"`, `unsupported dtype "F8_E4M3"`}},
		{"unknown dtype Q4", stFile(`{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,1]}}`, 0),
			[]string{`tensor "w"`, `unsupported dtype "Q4"`}},
		{"lowercase dtype", stFile(`{"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)...),
			[]string{`tensor "w"`, `"f32"`}},
		{"dtype not a string", stFile(`{"w":{"dtype":9,"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)...),
			[]string{`tensor "w"`, "dtype"}},
		{"missing shape", stFile(`{"w":{"dtype":"F32","data_offsets":[0,4]}}`, make([]byte, 4)...),
			[]string{`tensor "w"`, "needs dtype, shape and data_offsets"}},
		{"missing data_offsets", stFile(`{"w":{"dtype":"F32","shape":[1]}}`), []string{`tensor "w"`, "needs"}},
		{"unknown field", stFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"strides":[1]}}`, make([]byte, 4)...),
			[]string{`tensor "w"`, "unknown field strides"}},
		{"duplicate field", stFile(`{"w":{"dtype":"F32","shape":[1],"shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)...),
			[]string{`tensor "w"`, "duplicate field shape"}},
		{"entry not an object", stFile(`{"w":5}`), []string{`tensor "w"`}},
		{"negative dimension", stFile(`{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, make([]byte, 4)...),
			[]string{`tensor "w"`, "shape", "-1"}},
		{"fractional dimension", stFile(`{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, make([]byte, 4)...),
			[]string{`tensor "w"`, "1.5"}},
		{"dimension past int64", stFile(`{"w":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,4]}}`, make([]byte, 4)...),
			[]string{`tensor "w"`, "9223372036854775808"}},
		{"dimension not a number", stFile(`{"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}`, make([]byte, 8)...),
			[]string{`tensor "w"`, "not a number"}},
		{"three data_offsets", stFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, make([]byte, 8)...),
			[]string{`tensor "w"`, "3 values, want 2"}},
		{"data_offsets reversed", stFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}`, make([]byte, 4)...),
			[]string{`tensor "w"`, "end before they begin"}},
		{"shape overflows", stFile(`{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}`, make([]byte, 4)...),
			[]string{`tensor "w"`, "overflows"}},
		{"bytes overflow int64", stFile(`{"w":{"dtype":"F32","shape":[2305843009213693952],"data_offsets":[0,4]}}`, make([]byte, 4)...),
			[]string{`tensor "w"`, "overflows"}},
		{"byte length disagrees with shape", stFile(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8)...),
			[]string{`tensor "w"`, "span 8 bytes", "F32 [3] needs 12"}},
		{"byte length disagrees with dtype", stFile(`{"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]}}`, make([]byte, 16)...),
			[]string{`tensor "w"`, "span 16 bytes", "needs 8"}},
		{"huge tensor in a tiny file", stFile(`{"w":{"dtype":"F32","shape":[1073741824],"data_offsets":[0,4294967296]}}`, make([]byte, 4)...),
			[]string{`tensor "w"`, "truncated"}},
		{"offsets overlap", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)...),
			[]string{`tensor "b"`, "overlap", "ends at 8"}},
		{"same offsets twice", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)...),
			[]string{"overlap"}},
		{"hole between tensors", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}`, make([]byte, 20)...),
			[]string{`tensor "b"`, "hole of 4 bytes"}},
		{"hole before the first tensor", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, make([]byte, 12)...),
			[]string{`tensor "a"`, "hole of 8 bytes"}},
		{"truncated data", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}`, make([]byte, 16)...),
			[]string{`tensor "b"`, "file truncated", "only 16 data bytes"}},
		{"no data at all", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`), []string{`tensor "a"`, "truncated"}},
		{"trailing bytes", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 11)...),
			[]string{"3 unexpected bytes after the last tensor"}},
		{"data without tensors", stFile(`{}`, 1, 2), []string{"2 unexpected bytes"}},
	}
	dir := t.TempDir()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeBytes(t, dir, "case"+string(rune('a'+i%26))+strings.Repeat("x", i/26)+".safetensors", tc.content)
			c, err := Open(p)
			if err == nil {
				c.Close()
			}
			wantErr(t, err, append([]string{p}, tc.has...)...)
		})
	}
}

// TestOpenValidFiles opens hand-made valid files that stress the parser.
func TestOpenValidFiles(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
		want    []string // tensor names in storage order
		meta    map[string]string
	}{
		{"empty header", stFile("{}"), nil, nil},
		{"space padding", stFile("{}      "), nil, nil},
		{"JSON whitespace and newlines", stFile("{\n \"a\" : {\"shape\": [1], \"dtype\": \"U8\", \"data_offsets\": [0, 1]}\n}  ", 7), []string{"a"}, nil},
		{"null metadata", stFile(`{"__metadata__":null,"a":{"dtype":"I8","shape":[],"data_offsets":[0,1]}}`, 1), []string{"a"}, nil},
		{"metadata only", stFile(`{"__metadata__":{"format":"pt","x":"y"}}`), nil, map[string]string{"format": "pt", "x": "y"}},
		{"header order differs from data order", stFile(`{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 8)...),
			[]string{"a", "b"}, nil},
		// An empty tensor shares its offset with the next one. The
		// reference sorts by (begin, end), so header order must not matter.
		{"empty tensor listed after its neighbour", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}`, make([]byte, 8)...),
			[]string{"z", "a"}, nil},
		{"empty tensor listed before its neighbour", stFile(`{"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)...),
			[]string{"z", "a"}, nil},
		{"empty tensor at the end", stFile(`{"z":{"dtype":"F32","shape":[3,0],"data_offsets":[8,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)...),
			[]string{"a", "z"}, nil},
		{"zero dimension before a huge one", stFile(`{"z":{"dtype":"F32","shape":[0,9223372036854775807],"data_offsets":[0,0]}}`), []string{"z"}, nil},
		{"unicode and escaped names", stFile(`{"caf\u00e9.w":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]},"a\"b":{"dtype":"BOOL","shape":[1],"data_offsets":[1,2]}}`, 1, 0),
			[]string{"café.w", `a"b`}, nil},
	}
	dir := t.TempDir()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeBytes(t, dir, "v"+string(rune('a'+i))+".safetensors", tc.content)
			c := mustOpen(t, p)
			var got []string
			for _, ti := range c.Tensors() {
				got = append(got, ti.Name)
				if ti.File != p {
					t.Errorf("%s: File %s, want %s", ti.Name, ti.File, p)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("tensors %v, want %v", got, tc.want)
			}
			if len(c.Metadata) != len(tc.meta) {
				t.Errorf("metadata %v, want %v", c.Metadata, tc.meta)
			}
			for k, v := range tc.meta {
				if c.Metadata[k] != v {
					t.Errorf("metadata %v, want %v", c.Metadata, tc.meta)
				}
			}
			if c.Size() != int64(len(tc.content)) {
				t.Errorf("Size() = %d, want %d", c.Size(), len(tc.content))
			}
		})
	}
}

func TestOpenOffsets(t *testing.T) {
	// 72-byte header (a multiple of 8) then a: 8 bytes, b: 2 bytes.
	header := `{"b":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]},"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}`
	p := writeBytes(t, t.TempDir(), "m.safetensors", stFile(header, append(le64(0x3ff0000000000000), 0x80, 0x3f)...))
	c := mustOpen(t, p)
	a, _ := c.Tensor("a")
	b, _ := c.Tensor("b")
	start := int64(8 + len(header))
	if a.Offset != start || a.Bytes != 8 || b.Offset != start+8 || b.Bytes != 2 {
		t.Errorf("a at %d+%d, b at %d+%d; want %d+8 and %d+2", a.Offset, a.Bytes, b.Offset, b.Bytes, start, start+8)
	}
	if _, ok := c.Tensor("c"); ok {
		t.Error("Tensor(c) found a tensor")
	}
	for name, want := range map[string]float32{"a": 1, "b": 1} {
		got, _, err := c.ReadFloat32(name, nil, nil)
		if err != nil || len(got) != 1 || got[0] != want {
			t.Errorf("%s = %v, %v", name, got, err)
		}
	}
}

// shardedDir writes a sharded checkpoint by hand: two shards and an index.
func shardedDir(t *testing.T, index string, shards map[string][]byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ck")
	if index != "" {
		writeBytes(t, dir, IndexFile, []byte(index))
	}
	for n, b := range shards {
		writeBytes(t, dir, n, b)
	}
	return dir
}

var (
	shardA = buildFile(map[string]string{"format": "pt", "shard": "1"},
		rawTensor{"a", "F32", []int64{2}, f32le(1, 2)},
		rawTensor{"b", "BF16", []int64{1}, le16(0x4040)})
	shardB = buildFile(map[string]string{"format": "pt", "shard": "2"},
		rawTensor{"c", "I64", []int64{1}, le64(9)})
	goodIndex = `{"metadata":{"total_size":18},"weight_map":{"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors"}}`
)

func TestOpenSharded(t *testing.T) {
	dir := shardedDir(t, goodIndex, map[string][]byte{"s1.safetensors": shardA, "s2.safetensors": shardB})
	c := mustOpen(t, dir)
	var names []string
	for _, ti := range c.Tensors() {
		names = append(names, ti.Name)
	}
	if !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Errorf("tensors %v", names)
	}
	if c.Metadata["shard"] != "1" {
		t.Errorf("Metadata %v, want the first shard's", c.Metadata)
	}
	if c.Dir != dir || c.Path != dir {
		t.Errorf("Dir %s Path %s, want %s", c.Dir, c.Path, dir)
	}
	paths, sizes := c.Files()
	if !slices.Equal(paths, []string{filepath.Join(dir, "s1.safetensors"), filepath.Join(dir, "s2.safetensors")}) ||
		!slices.Equal(sizes, []int64{int64(len(shardA)), int64(len(shardB))}) {
		t.Errorf("Files() = %v %v", paths, sizes)
	}
	if c.Size() != int64(len(shardA)+len(shardB)) {
		t.Errorf("Size() = %d", c.Size())
	}
	got, _, err := c.ReadFloat32("b", nil, nil)
	if err != nil || !slices.Equal(got, []float32{3}) {
		t.Errorf("b = %v, %v", got, err)
	}
	raw, err := c.ReadRaw("c", nil)
	if err != nil || !bytes.Equal(raw, le64(9)) {
		t.Errorf("c = % x, %v", raw, err)
	}
	// model.safetensors takes precedence over an index beside it, as in
	// transformers' from_pretrained.
	writeBytes(t, dir, SingleFile, buildFile(nil, rawTensor{"zzz", "U8", []int64{1}, []byte{1}}))
	c2 := mustOpen(t, dir)
	if _, ok := c2.Tensor("zzz"); !ok || len(c2.Tensors()) != 1 {
		t.Error("Open preferred the index over model.safetensors, unlike transformers")
	}
}

func TestOpenShardedValidation(t *testing.T) {
	s1, s2 := "s1.safetensors", "s2.safetensors"
	tests := []struct {
		name   string
		index  string
		shards map[string][]byte
		has    []string // besides the index path, when the fault is the index's
		noIdx  bool     // the error need not name the index
	}{
		{"shard missing", goodIndex, map[string][]byte{s1: shardA},
			[]string{"s2.safetensors", `"c"`, "missing"}, false},
		{"tensor in shard not in weight_map",
			`{"weight_map":{"a":"s1.safetensors","c":"s2.safetensors"}}`, map[string][]byte{s1: shardA, s2: shardB},
			[]string{`tensor "b"`, "s1.safetensors", "not listed"}, false},
		{"weight_map entry missing from its shard",
			`{"weight_map":{"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors","d":"s2.safetensors"}}`, map[string][]byte{s1: shardA, s2: shardB},
			[]string{`tensor "d"`, "missing from shard s2.safetensors"}, false},
		{"weight_map points to the wrong shard",
			`{"weight_map":{"a":"s2.safetensors","b":"s1.safetensors","c":"s2.safetensors"}}`, map[string][]byte{s1: shardA, s2: shardB},
			[]string{`tensor "a"`, "s2.safetensors", "s1.safetensors"}, false},
		{"tensor stored in two shards",
			`{"weight_map":{"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors"}}`,
			map[string][]byte{s1: shardA, s2: buildFile(nil, rawTensor{"c", "I64", []int64{1}, le64(9)}, rawTensor{"a", "U8", []int64{1}, []byte{1}})},
			[]string{`tensor "a"`, "stored twice", "s1.safetensors", "s2.safetensors"}, true},
		{"corrupt shard", goodIndex, map[string][]byte{s1: shardA, s2: shardB[:len(shardB)-1]},
			[]string{"s2.safetensors", `tensor "c"`, "truncated"}, true},
		{"index not JSON", `{"weight_map":`, map[string][]byte{s1: shardA}, []string{"invalid JSON"}, false},
		{"index without weight_map", `{"metadata":{}}`, map[string][]byte{s1: shardA}, []string{"no weight_map"}, false},
		{"shard path escapes the folder", `{"weight_map":{"a":"../s1.safetensors"}}`, map[string][]byte{s1: shardA},
			[]string{`"a"`, "../s1.safetensors", "not a file name"}, false},
		{"shard in a subfolder", `{"weight_map":{"a":"sub/s1.safetensors"}}`, map[string][]byte{"sub/s1.safetensors": shardA},
			[]string{"sub/s1.safetensors", "not a file name"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := shardedDir(t, tc.index, tc.shards)
			c, err := Open(dir)
			if err == nil {
				c.Close()
			}
			has := tc.has
			if !tc.noIdx {
				has = append(has, filepath.Join(dir, IndexFile))
			}
			wantErr(t, err, has...)
		})
	}
}

func TestOpenPaths(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope")
	_, err := Open(missing)
	wantErr(t, err, missing, "does not exist")

	empty := filepath.Join(dir, "empty")
	writeBytes(t, empty, "config.json", []byte("{}"))
	writeBytes(t, empty, "pytorch_model.bin", []byte("x"))
	_, err = Open(empty)
	wantErr(t, err, empty, "holds neither", SingleFile, IndexFile)

	// A folder named model.safetensors is not a file.
	odd := filepath.Join(dir, "odd")
	if err := os.MkdirAll(filepath.Join(odd, SingleFile), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = Open(odd)
	wantErr(t, err, odd, "holds neither")

	single := filepath.Join(dir, "single")
	writeBytes(t, single, SingleFile, buildFile(nil, rawTensor{"w", "F32", []int64{1}, f32le(5)}))
	c := mustOpen(t, single)
	if c.Dir != single || c.Path != single {
		t.Errorf("Dir %s Path %s", c.Dir, c.Path)
	}
	file := filepath.Join(single, SingleFile)
	c2 := mustOpen(t, file)
	if c2.Dir != single || c2.Path != file {
		t.Errorf("Dir %s Path %s", c2.Dir, c2.Path)
	}
}

func TestReadFloat32AndRaw(t *testing.T) {
	p := writeBytes(t, t.TempDir(), "m.safetensors", buildFile(nil,
		rawTensor{"f32", "F32", []int64{2, 2}, f32le(1, -2, 0.5, 3)},
		rawTensor{"bf16", "BF16", []int64{3}, le16(0x3f80, 0xc000, 0x3e80)},
		rawTensor{"f16", "F16", []int64{3}, le16(0x3c00, 0xc000, 0x0001)},
		rawTensor{"f64", "F64", []int64{1}, le64(0xc004000000000000)},
		rawTensor{"ids", "I32", []int64{2}, le32(7, 8)},
	))
	c := mustOpen(t, p)

	// F32 fast path: the data lands in dst's storage; raw is untouched.
	dst := make([]float32, 0, 16)
	scratch := make([]byte, 0, 3)
	got, raw, err := c.ReadFloat32("f32", scratch, dst)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []float32{1, -2, 0.5, 3}) {
		t.Errorf("f32 = %v", got)
	}
	if &got[0] != &dst[:1][0] {
		t.Error("F32 read did not use dst's storage")
	}
	if cap(raw) != 3 {
		t.Errorf("F32 fast path replaced raw (cap %d)", cap(raw))
	}
	// F32 with a too small dst still works.
	got, _, err = c.ReadFloat32("f32", nil, make([]float32, 1))
	if err != nil || !slices.Equal(got, []float32{1, -2, 0.5, 3}) {
		t.Errorf("f32 with small dst = %v, %v", got, err)
	}

	tests := []struct {
		name string
		want []float32
	}{
		{"bf16", []float32{1, -2, 0.25}},
		{"f16", []float32{1, -2, 0x1p-24}},
		{"f64", []float32{-2.5}},
	}
	raw = nil
	for _, tc := range tests {
		got, raw, err = c.ReadFloat32(tc.name, raw, dst)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, got, tc.want)
		}
		if &got[0] != &dst[:1][0] {
			t.Errorf("%s: result does not alias dst", tc.name)
		}
	}
	if cap(raw) < 8 {
		t.Errorf("raw scratch not returned grown: cap %d", cap(raw))
	}

	_, _, err = c.ReadFloat32("ids", nil, nil)
	wantErr(t, err, p, `"ids"`, "I32", "not a float")
	_, _, err = c.ReadFloat32("nope", nil, nil)
	wantErr(t, err, `"nope"`)
	_, err = c.ReadRaw("nope", nil)
	wantErr(t, err, `"nope"`)

	// ReadRaw reuses a large enough buffer and grows a small one.
	big := make([]byte, 0, 64)
	b, err := c.ReadRaw("ids", big)
	if err != nil || !bytes.Equal(b, le32(7, 8)) || &b[0] != &big[:1][0] {
		t.Errorf("ReadRaw into big buffer = % x, %v", b, err)
	}
	b, err = c.ReadRaw("bf16", make([]byte, 1))
	if err != nil || !bytes.Equal(b, le16(0x3f80, 0xc000, 0x3e80)) {
		t.Errorf("ReadRaw into small buffer = % x, %v", b, err)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = c.ReadRaw("ids", nil)
	wantErr(t, err, "closed")
	_, _, err = c.ReadFloat32("f32", nil, dst)
	wantErr(t, err, "closed")
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestReadAfterTruncation(t *testing.T) {
	p := writeBytes(t, t.TempDir(), "m.safetensors", buildFile(nil, rawTensor{"w", "F32", []int64{4}, f32le(1, 2, 3, 4)}))
	c := mustOpen(t, p)
	if err := os.Truncate(p, 20); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.ReadFloat32("w", nil, nil)
	wantErr(t, err, p, `"w"`, "truncated")
}

func TestCheckFinite(t *testing.T) {
	inf := float32(1) / float32(zero())
	nan := inf - inf
	tests := []struct {
		name string
		data []float32
		idx  string // "" when finite
	}{
		{"empty", nil, ""},
		{"finite incl. extremes", []float32{0, -0, 3.4028235e38, -3.4028235e38, 1e-45}, ""},
		{"NaN", []float32{1, nan}, "flat index 1"},
		{"+Inf first", []float32{inf, 1}, "flat index 0"},
		{"-Inf later", []float32{1, 2, 3, -inf, nan}, "flat index 3"},
	}
	for _, tc := range tests {
		err := CheckFinite("f.safetensors", "layer.w", tc.data)
		if tc.idx == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		wantErr(t, err, "f.safetensors", `"layer.w"`, tc.idx, "--allow-nonfinite")
	}
}

func zero() float64 { return 0 }

// TestParseHeaderAllocBounded checks that a header length claim far beyond
// the file is refused before any buffer of that size is made.
func TestParseHeaderAllocBounded(t *testing.T) {
	claim := make([]byte, 64)
	binary.LittleEndian.PutUint64(claim, 99<<20) // under the 100 MB limit
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := parseHeader(bytes.NewReader(claim), int64(len(claim)), "x"); err == nil {
			t.Fatal("no error")
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Errorf("10 parses of a 64-byte file allocated %d bytes", d)
	}
	// Reads never ask for more than the file holds.
	for _, content := range [][]byte{claim, stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 1, 2, 3, 4)} {
		r := &boundedReader{t: t, b: content}
		parseHeader(r, int64(len(content)), "x")
	}
}

// boundedReader fails the test when asked to read past its end.
type boundedReader struct {
	t *testing.T
	b []byte
}

func (r *boundedReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(r.b)) {
		r.t.Errorf("ReadAt(%d bytes at %d) past the end of a %d-byte file", len(p), off, len(r.b))
	}
	return bytes.NewReader(r.b).ReadAt(p, off)
}

func TestReadFloat32Range(t *testing.T) {
	p := writeBytes(t, t.TempDir(), "m.safetensors", buildFile(nil,
		rawTensor{"f32", "F32", []int64{2, 3}, f32le(0, 1, 2, 3, 4, 5)},
		rawTensor{"bf16", "BF16", []int64{4}, le16(0x3f80, 0x4000, 0x4040, 0x4080)},
		rawTensor{"ids", "I64", []int64{1}, le64(1)},
	))
	c := mustOpen(t, p)
	tests := []struct {
		name     string
		start, n int64
		want     []float32
	}{
		{"f32", 0, 6, []float32{0, 1, 2, 3, 4, 5}},
		{"f32", 2, 3, []float32{2, 3, 4}},
		{"f32", 5, 1, []float32{5}},
		{"f32", 6, 0, []float32{}},
		{"bf16", 1, 2, []float32{2, 3}},
		{"bf16", 3, 1, []float32{4}},
	}
	for _, tc := range tests {
		for _, dst := range [][]float32{nil, make([]float32, 0, 8)} {
			got, _, err := c.ReadFloat32Range(tc.name, tc.start, tc.n, nil, dst)
			if err != nil {
				t.Fatalf("%s [%d,+%d): %v", tc.name, tc.start, tc.n, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s [%d,+%d) = %v, want %v", tc.name, tc.start, tc.n, got, tc.want)
			}
		}
	}
	bad := []struct {
		name     string
		start, n int64
		has      string
	}{
		{"f32", 5, 2, "outside its 6 elements"},
		{"f32", 7, 0, "outside"},
		{"f32", -1, 1, "outside"},
		{"f32", 0, -1, "outside"},
		{"f32", math.MaxInt64, 1, "outside"}, // start+n overflows
		{"f32", 1, math.MaxInt64, "outside"},
		{"bf16", math.MaxInt64 / 2, math.MaxInt64/2 + 3, "outside"},
		{"ids", 0, 1, "not a float"},
		{"nope", 0, 1, `"nope"`},
	}
	for _, tc := range bad {
		_, _, err := c.ReadFloat32Range(tc.name, tc.start, tc.n, nil, nil)
		wantErr(t, err, `"`+tc.name+`"`, tc.has)
	}
}
