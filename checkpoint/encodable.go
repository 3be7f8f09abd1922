package checkpoint

import "math"

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
	limit := encodeLimit(dt)
	for i, v := range data {
		if math.Float32bits(v)&0x7fffffff >= limit {
			return i
		}
	}
	return -1
}
