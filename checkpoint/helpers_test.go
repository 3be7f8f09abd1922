package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The helpers in this file build safetensors files by hand, without the
// package's writer, so reader tests do not depend on the code they check.

// stFile returns a safetensors file: the 8-byte little-endian header length,
// the header text exactly as given, then data.
func stFile(header string, data ...byte) []byte {
	out := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(out, uint64(len(header)))
	out = append(out, header...)
	return append(out, data...)
}

// rawTensor is a tensor for buildFile: its dtype is spelt as in the header.
type rawTensor struct {
	name  string
	dtype string
	shape []int64
	data  []byte
}

// buildFile lays the tensors' data back to back in the given order and writes
// a header listing them (in the given order) plus metadata when non-nil.
func buildFile(meta map[string]string, ts ...rawTensor) []byte {
	var h strings.Builder
	h.WriteByte('{')
	sep := ""
	if meta != nil {
		keys := make([]string, 0, len(meta))
		for k := range meta {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		h.WriteString(`"__metadata__":{`)
		for i, k := range keys {
			if i > 0 {
				h.WriteByte(',')
			}
			fmt.Fprintf(&h, "%s:%s", jsonString(k), jsonString(meta[k]))
		}
		h.WriteByte('}')
		sep = ","
	}
	var off int
	var data []byte
	for _, t := range ts {
		dims := make([]string, len(t.shape))
		for i, d := range t.shape {
			dims[i] = fmt.Sprint(d)
		}
		fmt.Fprintf(&h, `%s%s:{"dtype":%q,"shape":[%s],"data_offsets":[%d,%d]}`,
			sep, jsonString(t.name), t.dtype, strings.Join(dims, ","), off, off+len(t.data))
		sep = ","
		off += len(t.data)
		data = append(data, t.data...)
	}
	h.WriteByte('}')
	return stFile(h.String(), data...)
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// writeBytes writes content to dir/name and returns the path.
func writeBytes(t *testing.T, dir, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Little-endian encoders of hand-picked bit patterns.

func le16(vs ...uint16) []byte {
	out := make([]byte, 2*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint16(out[2*i:], v)
	}
	return out
}

func le32(vs ...uint32) []byte {
	out := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(out[4*i:], v)
	}
	return out
}

func le64(vs ...uint64) []byte {
	out := make([]byte, 8*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint64(out[8*i:], v)
	}
	return out
}

// f32le encodes float32 values as little-endian bytes.
func f32le(vs ...float32) []byte {
	out := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
	}
	return out
}

func f32(bits uint32) float32 { return math.Float32frombits(bits) }

// sameBits reports whether a and b are bit-identical (so NaN == NaN, 0 != -0).
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func bitsOf(vs []float32) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = fmt.Sprintf("%#08x", math.Float32bits(v))
	}
	return out
}

// wantErr fails unless err is non-nil and its message holds every want.
func wantErr(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one mentioning %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

// listDir returns the sorted names in dir.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// readHeaderJSON splits a safetensors file by hand into its header object
// (one raw JSON value per entry) and its data section.
func readHeaderJSON(t *testing.T, path string) (map[string]json.RawMessage, uint64, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8 {
		t.Fatalf("%s: %d bytes", path, len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) {
		t.Fatalf("%s: header length %d > file", path, n)
	}
	var h map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &h); err != nil {
		t.Fatalf("%s: header JSON: %v", path, err)
	}
	return h, n, b[8+n:]
}

func mustOpen(t *testing.T, path string) *Checkpoint {
	t.Helper()
	c, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
