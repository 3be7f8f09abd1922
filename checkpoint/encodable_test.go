package checkpoint

import (
	"math"
	"testing"
)

// TestFirstUnencodable checks the limits against the encoders themselves:
// the largest float32 below each limit encodes finite, the limit encodes
// to ±Inf.
func TestFirstUnencodable(t *testing.T) {
	isInf := func(dt DType, v float32) bool {
		raw, err := EncodeFloat32(dt, []float32{v}, nil)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeFloat32(dt, raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		return math.IsInf(float64(back[0]), 0)
	}
	for _, dt := range []DType{F16, BF16, F32, F64} {
		limit := math.Float32frombits(encodeLimit(dt))
		below := math.Nextafter32(limit, 0)
		if isInf(dt, below) || isInf(dt, -below) {
			t.Errorf("%s: %v, just below the limit, encodes to ±Inf", dt, below)
		}
		if FirstUnencodable(dt, []float32{0, below, -below}) != -1 {
			t.Errorf("%s: %v refused", dt, below)
		}
		if dt != F64 && (!isInf(dt, limit) || !isInf(dt, -limit)) {
			t.Errorf("%s: the limit %v encodes finite", dt, limit)
		}
		nan := float32(math.NaN())
		for _, tc := range []struct {
			data []float32
			want int
		}{
			{[]float32{1, limit, 2}, 1},
			{[]float32{1, 2, -limit}, 2},
			{[]float32{nan}, 0},
			{[]float32{3, float32(math.Inf(-1))}, 1},
		} {
			if got := FirstUnencodable(dt, tc.data); got != tc.want {
				t.Errorf("%s: FirstUnencodable(%v) = %d, want %d", dt, tc.data, got, tc.want)
			}
		}
	}
}
