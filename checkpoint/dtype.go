package checkpoint

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

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
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*i:])) << 16)
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
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], BFloat16Bits(v))
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
