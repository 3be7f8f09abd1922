package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/nlpodyssey/safetensors"
)

// MaxHeaderSize is the largest JSON header accepted, as in the reference
// safetensors implementation.
const MaxHeaderSize = 100 << 20

// TensorInfo describes one tensor of a checkpoint.
type TensorInfo struct {
	Name  string
	DType safetensors.DType
	Shape []int64
	// File is the path of the safetensors file holding the tensor.
	File string
	// Offset is the absolute position of the tensor's first byte in File.
	Offset int64
	// Bytes is the size of the tensor's data.
	Bytes int64
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// fileHeader is the parsed and validated header of one safetensors file.
type fileHeader struct {
	metadata map[string]string
	// tensors in the order of their data in the file.
	tensors []TensorInfo
	// dataStart is the absolute offset of the data section.
	dataStart int64
}

// parseHeader reads and validates the header of the safetensors file of the
// given size. Every error names the file; tensor-level errors name the tensor.
// It never allocates more than the file holds.
func parseHeader(r io.ReaderAt, size int64, file string) (*fileHeader, error) {
	if size < 8 {
		return nil, fmt.Errorf("%s: file of %d bytes is too short for a safetensors header (needs at least 8): truncated or not a safetensors file", file, size)
	}
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("%s: reading header length: %w", file, err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("%s: header length %d exceeds the 100 MB limit: corrupt or not a safetensors file", file, n)
	}
	if n > uint64(size-8) {
		return nil, fmt.Errorf("%s: header length %d is larger than the file (%d bytes): file truncated or not a safetensors file", file, n, size)
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, 8); err != nil {
		return nil, fmt.Errorf("%s: reading header: %w", file, err)
	}
	h, err := decodeHeader(buf, file)
	if err != nil {
		return nil, err
	}
	h.dataStart = 8 + int64(n)
	dataLen := size - h.dataStart
	var end int64
	for i := range h.tensors {
		t := &h.tensors[i]
		begin := t.Offset
		switch {
		case begin < end:
			return nil, fmt.Errorf("%s: tensor %s: data_offsets [%d, %d) overlap the previous tensor, which ends at %d", file, QuoteName(t.Name), begin, begin+t.Bytes, end)
		case begin > end:
			return nil, fmt.Errorf("%s: tensor %s: data_offsets start at %d, leaving a hole of %d bytes after the previous tensor", file, QuoteName(t.Name), begin, begin-end)
		}
		end = begin + t.Bytes
		if end > dataLen {
			return nil, fmt.Errorf("%s: tensor %s: data ends at byte %d of the data section, but the file holds only %d data bytes: file truncated", file, QuoteName(t.Name), end, dataLen)
		}
		t.Offset += h.dataStart
	}
	if end < dataLen {
		return nil, fmt.Errorf("%s: %d unexpected bytes after the last tensor's data: corrupt file", file, dataLen-end)
	}
	return h, nil
}

// decodeHeader decodes the JSON header with a token stream, so duplicate
// names are caught and number fields are checked for range.
func decodeHeader(buf []byte, file string) (*fileHeader, error) {
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.UseNumber()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: invalid safetensors header: %s", file, fmt.Sprintf(format, args...))
	}
	if err := expectDelim(dec, '{'); err != nil {
		return nil, bad("%v", err)
	}
	h := &fileHeader{}
	seen := make(map[string]bool)
	for dec.More() {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil, bad("%v", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, bad("expected a tensor name, found %v", tok)
		}
		// The decoder would replace invalid bytes by U+FFFD, renaming the
		// tensor in every output: refuse them, where they are.
		if i := firstInvalidUTF8(buf[before:dec.InputOffset()]); i >= 0 {
			at := int64(before) + int64(i)
			return nil, bad("the name of the tensor read as %s is not valid UTF-8 (byte 0x%02x at byte %d of the file): safetensors names are UTF-8; rename it", QuoteName(name), buf[at], 8+at)
		}
		if seen[name] {
			return nil, bad("duplicate entry %s", QuoteName(name))
		}
		seen[name] = true
		if name == "__metadata__" {
			m, err := decodeMetadata(dec)
			if err != nil {
				return nil, bad("__metadata__: %v", err)
			}
			h.metadata = m
			continue
		}
		t, err := decodeTensorEntry(dec)
		if err != nil {
			return nil, bad("tensor %s: %v", QuoteName(name), err)
		}
		t.Name = name
		t.File = file
		h.tensors = append(h.tensors, t)
	}
	if _, err := dec.Token(); err != nil {
		return nil, bad("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad("unexpected data after the header object")
	}
	if i := firstInvalidUTF8(buf); i >= 0 {
		return nil, bad("not valid UTF-8 (byte 0x%02x at byte %d of the file)", buf[i], 8+i)
	}
	// Spaces may pad the header to alignment; the decoder skipped them.
	// Sort by (begin, end) as the reference implementation does, so an empty
	// tensor sharing its begin with a non-empty one comes first wherever the
	// JSON lists it (JSON object order is arbitrary; our writer sorts by name).
	sort.SliceStable(h.tensors, func(i, j int) bool {
		a, b := h.tensors[i], h.tensors[j]
		if a.Offset != b.Offset {
			return a.Offset < b.Offset
		}
		return a.Bytes < b.Bytes
	})
	return h, nil
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if got, ok := tok.(json.Delim); !ok || got != d {
		return fmt.Errorf("expected %q, found %v", d, tok)
	}
	return nil
}

// decodeMetadata decodes the __metadata__ object of string values; null (as
// the reference implementation accepts for "no metadata") gives a nil map.
func decodeMetadata(dec *json.Decoder) (map[string]string, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("expected an object of strings, found %v", tok)
	}
	m := make(map[string]string)
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := k.(string)
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("duplicate key %s", QuoteName(key))
		}
		v, err := dec.Token()
		if err != nil {
			return nil, err
		}
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("value of %s is not a string", QuoteName(key))
		}
		m[key] = s
	}
	_, err = dec.Token()
	return m, err
}

func decodeTensorEntry(dec *json.Decoder) (TensorInfo, error) {
	var t TensorInfo
	if err := expectDelim(dec, '{'); err != nil {
		return t, err
	}
	var haveDType, haveShape, haveOffsets bool
	var offsets []int64
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return t, err
		}
		switch k {
		case "dtype":
			if haveDType {
				return t, errors.New("duplicate field dtype")
			}
			v, err := dec.Token()
			if err != nil {
				return t, err
			}
			s, ok := v.(string)
			if !ok {
				return t, fmt.Errorf("dtype is not a string")
			}
			dt, err := safetensors.ParseDType(s)
			if err != nil {
				return t, fmt.Errorf("unsupported dtype %q (supported: BOOL, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64)", s)
			}
			t.DType, haveDType = dt, true
		case "shape":
			if haveShape {
				return t, errors.New("duplicate field shape")
			}
			if t.Shape, err = decodeInts(dec); err != nil {
				return t, fmt.Errorf("shape: %w", err)
			}
			haveShape = true
		case "data_offsets":
			if haveOffsets {
				return t, errors.New("duplicate field data_offsets")
			}
			if offsets, err = decodeInts(dec); err != nil {
				return t, fmt.Errorf("data_offsets: %w", err)
			}
			if len(offsets) != 2 {
				return t, fmt.Errorf("data_offsets has %d values, want 2", len(offsets))
			}
			haveOffsets = true
		default:
			return t, fmt.Errorf("unknown field %v", k)
		}
	}
	if _, err := dec.Token(); err != nil {
		return t, err
	}
	if !haveDType || !haveShape || !haveOffsets {
		return t, errors.New("entry needs dtype, shape and data_offsets")
	}
	if offsets[1] < offsets[0] {
		return t, fmt.Errorf("data_offsets [%d, %d) end before they begin", offsets[0], offsets[1])
	}
	n := uint64(1)
	for _, d := range t.Shape {
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return t, fmt.Errorf("shape %v overflows", t.Shape)
		}
		n = lo
	}
	hi, want := bits.Mul64(n, t.DType.Size())
	if hi != 0 || want > math.MaxInt64 {
		return t, fmt.Errorf("shape %v overflows", t.Shape)
	}
	if got := uint64(offsets[1] - offsets[0]); got != want {
		return t, fmt.Errorf("data_offsets [%d, %d) span %d bytes, but %s %v needs %d", offsets[0], offsets[1], got, t.DType, t.Shape, want)
	}
	t.Offset, t.Bytes = offsets[0], int64(want)
	return t, nil
}

// decodeInts decodes an array of non-negative integers that fit in int64.
func decodeInts(dec *json.Decoder) ([]int64, error) {
	if err := expectDelim(dec, '['); err != nil {
		return nil, err
	}
	var out []int64
	for dec.More() {
		v, err := dec.Token()
		if err != nil {
			return nil, err
		}
		num, ok := v.(json.Number)
		if !ok {
			return nil, fmt.Errorf("%v is not a number", v)
		}
		x, err := num.Int64()
		if err != nil || x < 0 {
			return nil, fmt.Errorf("%s is not a non-negative integer", num)
		}
		out = append(out, x)
	}
	_, err := dec.Token()
	return out, err
}

// maxQuotedName bounds how much of a tensor name a message shows.
const maxQuotedName = 200

// QuoteName quotes a tensor name for a message, as %q does, shortening a
// name longer than 200 bytes to its start followed by its length: a header
// may hold names of megabytes, which no message should echo.
func QuoteName(name string) string {
	head, tail := splitLongName(name)
	return strconv.Quote(head) + tail
}

// ShortName is QuoteName without the quotes, for lists of names.
func ShortName(name string) string {
	head, tail := splitLongName(name)
	return head + tail
}

func splitLongName(name string) (head, tail string) {
	if len(name) <= maxQuotedName {
		return name, ""
	}
	cut := maxQuotedName
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return name[:cut], fmt.Sprintf("… (a name of %d bytes)", len(name))
}

// firstInvalidUTF8 returns the offset of the first byte of b that is not
// part of valid UTF-8, or −1.
func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}
