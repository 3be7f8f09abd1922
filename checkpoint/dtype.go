package checkpoint

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"unsafe"

	"github.com/nlpodyssey/safetensors"
	"github.com/x448/float16"
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
	n := len(raw) / int(dt.Size())
	if cap(dst) < n {
		dst = make([]float32, n)
	}
	dst = dst[:n]
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case BF16:
		raw = raw[:2*n]
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(raw[2*i])<<16 | uint32(raw[2*i+1])<<24)
		}
	case F16:
		for i := range dst {
			dst[i] = float16.Frombits(binary.LittleEndian.Uint16(raw[2*i:])).Float32()
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
		}
	default:
		return nil, fmt.Errorf("dtype %s is not a float type", dt)
	}
	return dst, nil
}

// EncodeFloat32 converts src to raw little-endian data of dtype dt, reusing
// dst when it is large enough. Narrowing rounds to nearest even, as PyTorch's
// .to(dtype) does.
func EncodeFloat32(dt DType, src []float32, dst []byte) ([]byte, error) {
	n := len(src) * int(dt.Size())
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	switch dt {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case BF16:
		dst = dst[:2*len(src)]
		for i, v := range src {
			b := BFloat16Bits(v)
			dst[2*i], dst[2*i+1] = byte(b), byte(b>>8)
		}
	case F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], float16.Fromfloat32(v).Bits())
		}
	case F64:
		for i, v := range src {
			binary.LittleEndian.PutUint64(dst[8*i:], math.Float64bits(float64(v)))
		}
	default:
		return nil, fmt.Errorf("dtype %s is not a float type", dt)
	}
	return dst, nil
}

// BFloat16Bits rounds v to bfloat16 (nearest, ties to even), keeping NaNs NaN.
func BFloat16Bits(v float32) uint16 {
	b := math.Float32bits(v)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40 // quiet NaN, sign kept
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// DecodeFloat32Finite decodes like DecodeFloat32 and, in the same pass,
// finds the first NaN or ±Inf: it returns its index, or −1 when all values
// are finite. Merging reads every value once, so checking while decoding
// saves a pass over memory.
func DecodeFloat32Finite(dt DType, raw []byte, dst []float32) ([]float32, int, error) {
	if dt != BF16 {
		out, err := DecodeFloat32(dt, raw, dst)
		if err != nil {
			return nil, -1, err
		}
		return out, FirstNonFinite(out), nil
	}
	n := len(raw) / 2
	if cap(dst) < n {
		dst = make([]float32, n)
	}
	dst = dst[:n]
	var u []uint16
	if littleEndianHost && n > 0 {
		u = unsafe.Slice((*uint16)(unsafe.Pointer(&raw[0])), n)
	} else {
		u = make([]uint16, n)
		for i := range u {
			u[i] = binary.LittleEndian.Uint16(raw[2*i:])
		}
	}
	// An exponent of all ones (Inf or NaN) carries into bit 31 when
	// 0x00800000 is added: OR-ing that keeps the loop free of branches.
	var flag uint32
	for i, h := range u {
		b := uint32(h) << 16
		flag |= b&0x7f800000 + 0x00800000
		dst[i] = math.Float32frombits(b)
	}
	if flag&0x80000000 == 0 {
		return dst, -1, nil
	}
	return dst, FirstNonFinite(dst), nil
}

// DecodeBF16Diff sets dst[i] = bf16(raw[i]) − base[i] for BF16 data, the
// task vector of a bf16 fine-tuned tensor in one pass, and returns the index
// of the first NaN or ±Inf among the decoded values, or −1.
func DecodeBF16Diff(raw []byte, base, dst []float32) int {
	n := len(dst)
	raw, base = raw[:2*n], base[:n]
	var flag uint32
	for i := range dst {
		b := uint32(raw[2*i])<<16 | uint32(raw[2*i+1])<<24
		flag |= b&0x7f800000 + 0x00800000
		dst[i] = math.Float32frombits(b) - base[i]
	}
	if flag&0x80000000 == 0 {
		return -1
	}
	for i := range dst {
		b := uint32(raw[2*i])<<16 | uint32(raw[2*i+1])<<24
		if b&0x7f800000 == 0x7f800000 {
			return i
		}
	}
	return -1
}
