package checkpoint

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"unsafe"

	"github.com/nlpodyssey/safetensors"

	"github.com/editkit/editkit/internal/simd"
)

// DType re-exports the safetensors element type.
type DType = safetensors.DType

// Element types editkit uses by name.
const (
	F16  = safetensors.F16
	BF16 = safetensors.BF16
	F32  = safetensors.F32
	F64  = safetensors.F64
	U8   = safetensors.U8
	I64  = safetensors.I64
)

// IsFloat reports whether dt is a floating-point type: only those take part in
// task-vector arithmetic; the others pass through from the base.
func IsFloat(dt DType) bool {
	switch dt {
	case F16, BF16, F32, F64:
		return true
	}
	return false
}

// ParseFloatDType parses an output dtype name as given on a command line
// (case-insensitive; "float32", "bfloat16", "float16" and "float64" are
// accepted as mergekit and PyTorch spell them).
func ParseFloatDType(s string) (DType, error) {
	switch strings.ToLower(s) {
	case "f32", "float32", "fp32":
		return F32, nil
	case "bf16", "bfloat16":
		return BF16, nil
	case "f16", "float16", "fp16", "half":
		return F16, nil
	case "f64", "float64", "fp64":
		return F64, nil
	}
	return 0, fmt.Errorf("unknown float dtype %q (use float32, bfloat16, float16 or float64)", s)
}

// DecodeFloat32 converts raw little-endian data of a float dtype to float32,
// reusing dst when it is large enough.
func DecodeFloat32(dt DType, raw []byte, dst []float32) ([]float32, error) {
	out, _, err := decode(dt, raw, dst)
	return out, err
}

// decode is DecodeFloat32 that also reports, for the 16-bit dtypes, whether
// a value is NaN or ±Inf (false for the others: the caller checks those).
func decode(dt DType, raw []byte, dst []float32) ([]float32, bool, error) {
	if !IsFloat(dt) {
		return nil, false, fmt.Errorf("dtype %s is not a float type", dt)
	}
	n := len(raw) / int(dt.Size())
	if cap(dst) < n {
		dst = make([]float32, n)
	}
	dst = dst[:n]
	switch dt {
	case F32:
		if littleEndianHost {
			copy(float32Bytes(dst), raw)
			return dst, false, nil
		}
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case BF16:
		return dst, simd.DecodeBF16(dst, uint16s(raw[:2*n])), nil
	case F16:
		return dst, simd.DecodeF16(dst, uint16s(raw[:2*n])), nil
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
		}
	}
	return dst, false, nil
}

// uint16s views little-endian 16-bit data as uint16 values: in place on
// little-endian hosts when aligned, else as a copy.
func uint16s(raw []byte) []uint16 {
	n := len(raw) / 2
	if n == 0 {
		return nil
	}
	if littleEndianHost && uintptr(unsafe.Pointer(&raw[0]))%2 == 0 {
		return unsafe.Slice((*uint16)(unsafe.Pointer(&raw[0])), n)
	}
	u := make([]uint16, n)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(raw[2*i:])
	}
	return u
}

// EncodeFloat32 converts src to raw little-endian data of dtype dt, reusing
// dst when it is large enough. Narrowing rounds to nearest even, as
// PyTorch's .to(dtype) does: a finite value beyond a 16-bit dtype's range
// becomes ±Inf (Writer.WriteFloat32 refuses such values unless told
// otherwise; see FirstUnencodable).
func EncodeFloat32(dt DType, src []float32, dst []byte) ([]byte, error) {
	if !IsFloat(dt) {
		return nil, fmt.Errorf("dtype %s is not a float type", dt)
	}
	n := len(src) * int(dt.Size())
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	switch dt {
	case F32:
		if littleEndianHost {
			copy(dst, float32Bytes(src))
			break
		}
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case BF16, F16:
		if len(src) == 0 {
			break
		}
		u := dst
		if !littleEndianHost || uintptr(unsafe.Pointer(&dst[0]))%2 != 0 {
			u = make([]byte, n)
		}
		h := unsafe.Slice((*uint16)(unsafe.Pointer(&u[0])), len(src))
		if dt == BF16 {
			simd.EncodeBF16(h, src)
		} else {
			simd.EncodeF16(h, src)
		}
		if &u[0] != &dst[0] { // big-endian host or unaligned: store little-endian
			for i, v := range h {
				binary.LittleEndian.PutUint16(dst[2*i:], v)
			}
		}
	case F64:
		for i, v := range src {
			binary.LittleEndian.PutUint64(dst[8*i:], math.Float64bits(float64(v)))
		}
	}
	return dst, nil
}

// BFloat16Bits rounds v to bfloat16 (nearest, ties to even), keeping NaNs NaN.
func BFloat16Bits(v float32) uint16 { return simd.BF16(v) }

// DecodeFloat32Finite decodes like DecodeFloat32 and, in the same pass,
// finds the first NaN or ±Inf: it returns its index, or −1 when all values
// are finite. Merging reads every value once, so checking while decoding
// saves a pass over memory.
func DecodeFloat32Finite(dt DType, raw []byte, dst []float32) ([]float32, int, error) {
	out, bad, err := decode(dt, raw, dst)
	if err != nil {
		return nil, -1, err
	}
	if dt == BF16 || dt == F16 {
		if !bad {
			return out, -1, nil
		}
	}
	return out, FirstNonFinite(out), nil
}

// DecodeBF16Diff sets dst[i] = bf16(raw[i]) − base[i] for BF16 data, the
// task vector of a bf16 fine-tuned tensor in one pass, and returns the index
// of the first NaN or ±Inf among the decoded values, or −1.
func DecodeBF16Diff(raw []byte, base, dst []float32) int {
	n := len(dst)
	u := uint16s(raw[:2*n])
	if !simd.DecodeBF16Sub(dst, u, base[:n]) {
		return -1
	}
	for i, h := range u {
		if h&0x7f80 == 0x7f80 {
			return i
		}
	}
	return -1
}
