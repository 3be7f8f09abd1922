package checkpoint

import (
	"bytes"
	"encoding/binary"
	"testing"

	st "github.com/nlpodyssey/safetensors"
)

// FuzzOpen feeds arbitrary bytes to the header parser as a whole file. It
// must never panic, never read past the end, and on success describe tensors
// that tile the data section exactly.
func FuzzOpen(f *testing.F) {
	seeds := [][]byte{
		nil,
		{1, 2, 3},
		stFile("{}"),
		stFile("{}     "),
		stFile(`{"__metadata__":{"format":"pt"}}`),
		stFile(`{"__metadata__":null}`),
		buildFile(map[string]string{"format": "pt"},
			rawTensor{"a", "F32", []int64{2}, f32le(1, 2)},
			rawTensor{"b", "BF16", []int64{1, 3}, le16(1, 2, 3)},
			rawTensor{"c", "I64", nil, le64(7)}),
		buildFile(nil, rawTensor{"z", "F16", []int64{0}, nil}, rawTensor{"y", "U8", []int64{2}, []byte{1, 2}}),
		stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}`, make([]byte, 8)...),
		stFile(`{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 8)...),
		// Invalid ones.
		stFile(`{"a":`),
		stFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}`, make([]byte, 4)...),
		stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)...),
		stFile(`{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}`, 0),
		stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)...),
		stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 5)...),
		stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 9)...),
		stFile(`{"__metadata__":{"k":"1","k":"2"}}`),
		stFile(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`),
		stFile(`{"a":{"dtype":"F32","shape":[1e3],"data_offsets":[0,4000]}}`),
		stFile(`{}{}`),
		append(le64(100<<20+1), '{', '}'),
		append(le64(1<<63), '{', '}'),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		size := int64(len(data))
		r := &fuzzReader{t: t, b: data}
		h, err := parseHeader(r, size, "fuzz.safetensors")
		if err != nil {
			if h != nil {
				t.Fatalf("header %+v returned with error %v", h, err)
			}
			return
		}
		if size < 8 {
			t.Fatalf("accepted a %d-byte file", size)
		}
		hl := binary.LittleEndian.Uint64(data)
		if hl > MaxHeaderSize || h.dataStart != 8+int64(hl) || h.dataStart > size {
			t.Fatalf("data starts at %d; header length %d, file %d bytes", h.dataStart, hl, size)
		}
		next := h.dataStart
		seen := make(map[string]bool)
		for _, ti := range h.tensors {
			if seen[ti.Name] || ti.Name == "__metadata__" {
				t.Fatalf("tensor name %q repeated or reserved", ti.Name)
			}
			seen[ti.Name] = true
			if ti.DType > st.U64 {
				t.Fatalf("tensor %q: invalid dtype %d", ti.Name, ti.DType)
			}
			n := int64(1)
			for _, d := range ti.Shape {
				if d < 0 {
					t.Fatalf("tensor %q: negative dimension in %v", ti.Name, ti.Shape)
				}
				n *= d // the parser checks every partial product for overflow
			}
			if ti.Offset != next || ti.Bytes < 0 || ti.Offset+ti.Bytes > size {
				t.Fatalf("tensor %q at [%d, %d) outside the data or not contiguous (expected start %d, file %d bytes)",
					ti.Name, ti.Offset, ti.Offset+ti.Bytes, next, size)
			}
			if ti.Bytes != n*int64(ti.DType.Size()) {
				t.Fatalf("tensor %q: %d bytes for %s %v", ti.Name, ti.Bytes, ti.DType, ti.Shape)
			}
			if ti.NumElements() != n {
				t.Fatalf("tensor %q: NumElements %d, want %d", ti.Name, ti.NumElements(), n)
			}
			next = ti.Offset + ti.Bytes
		}
		if next != size {
			t.Fatalf("tensors end at %d, file has %d bytes", next, size)
		}
		// The parser is deterministic and agrees with itself on a reparse.
		h2, err := parseHeader(bytes.NewReader(data), size, "fuzz.safetensors")
		if err != nil || len(h2.tensors) != len(h.tensors) {
			t.Fatalf("reparse: %v", err)
		}
	})
}

// fuzzReader fails when asked for bytes past its end or more than it holds.
type fuzzReader struct {
	t *testing.T
	b []byte
}

func (r *fuzzReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || int64(len(p)) > int64(len(r.b)) || off+int64(len(p)) > int64(len(r.b)) {
		r.t.Fatalf("ReadAt(%d bytes at %d) of a %d-byte file", len(p), off, len(r.b))
	}
	return bytes.NewReader(r.b).ReadAt(p, off)
}
