package checkpoint

import (
	"fmt"
	"math"

	"github.com/editkit/editkit/internal/simd"
)

// encodeLimit is, for each float dtype, the smallest |x| (as float32 bits)
// that the dtype cannot hold as a finite number: float32 values from it up
// round to ±Inf when encoded (float16: 65520, halfway between its largest
// finite 65504 and 65536; bfloat16: halfway between 0x7f7f and 0x7f80,
// which ties round up to, being odd), and ±Inf and NaN themselves.
func encodeLimit(dt DType) uint32 {
	switch dt {
	case F16:
		return math.Float32bits(65520)
	case BF16:
		return 0x7f7f8000
	}
	return 0x7f800000
}

// FirstUnencodable returns the index of the first value of data that dt
// cannot store as a finite number (NaN, ±Inf, or beyond dt's range, which
// encoding would turn into ±Inf), or −1.
func FirstUnencodable(dt DType, data []float32) int {
	return simd.FirstAbsAtLeast(data, encodeLimit(dt))
}

// MaxFinite is the largest finite value of a float dtype that a float32
// can hold: 65504 for float16, 3.3895e38 for bfloat16, the largest float32
// for float32 and float64.
func MaxFinite(dt DType) float32 {
	switch dt {
	case F16:
		return 65504
	case BF16:
		return math.Float32frombits(0x7f7f0000)
	}
	return math.MaxFloat32
}

// UnencodableError is a value that a tensor's dtype cannot store as a
// finite number: editkit does not write values it would refuse to read.
type UnencodableError struct {
	Tensor string
	DType  DType
	Index  int64 // flat index in the tensor
	Value  float32
}

func (e *UnencodableError) Error() string {
	if v := float64(e.Value); math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprintf("tensor %s: a value is not finite (%v at flat index %d): if it was computed, the arithmetic overflowed or divided by zero (coefficients too large, or weights that sum to 0?); nothing was written (--allow-nonfinite writes it anyway)",
			QuoteName(e.Tensor), e.Value, e.Index)
	}
	return fmt.Sprintf("tensor %s: the value %v at flat index %d does not fit %s (largest finite ±%g), which would store it as ±Inf: write a wider --dtype (float32), use smaller coefficients, or pass --saturate to write ±%[5]g instead; nothing was written (--allow-nonfinite writes ±Inf anyway)",
		QuoteName(e.Tensor), e.Value, e.Index, e.DType, MaxFinite(e.DType))
}

// saturate replaces, from data[i] on, the values dt cannot hold: ±Inf and
// finite values beyond its range become its largest finite value of the
// same sign. It returns how many it replaced, or the index of a NaN (which
// has no saturated value) and false.
func saturate(dt DType, data []float32, i int) (int64, int, bool) {
	limit, top := encodeLimit(dt), float64(MaxFinite(dt))
	var n int64
	for ; i < len(data); i++ {
		v := data[i]
		if math.Float32bits(v)&0x7fffffff < limit {
			continue
		}
		if v != v {
			return n, i, false
		}
		data[i] = float32(math.Copysign(top, float64(v)))
		n++
	}
	return n, -1, true
}
