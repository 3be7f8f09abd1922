package checkpoint

import (
	st "github.com/nlpodyssey/safetensors"
	"math"
	"slices"
	"testing"
)

// isBF16NaN and isF16NaN check the exponent is all ones and the mantissa
// non-zero, as IEEE 754 defines a NaN.
func isBF16NaN(b uint16) bool { return b&0x7f80 == 0x7f80 && b&0x007f != 0 }
func isF16NaN(b uint16) bool  { return b&0x7c00 == 0x7c00 && b&0x03ff != 0 }

// bf16Cases are float32 bit patterns and the bfloat16 they round to (nearest,
// ties to even), worked out by hand from the 16 bits that are dropped.
var bf16Cases = []struct {
	name string
	in   uint32
	want uint16
	nan  bool // any NaN is right; want then gives the sign
}{
	{"one", 0x3f800000, 0x3f80, false},
	{"below half rounds down", 0x3f807fff, 0x3f80, false},
	{"above half rounds up", 0x3f808001, 0x3f81, false},
	{"tie to even stays (even lsb)", 0x3f808000, 0x3f80, false},
	{"tie to even goes up (odd lsb)", 0x3f818000, 0x3f82, false},
	{"negative tie odd lsb", 0xbf818000, 0xbf82, false},
	{"negative tie even lsb", 0xbf808000, 0xbf80, false},
	{"carry into exponent", 0x3fffffff, 0x4000, false},
	{"pi", 0x40490fdb, 0x4049, false},
	{"plus zero", 0x00000000, 0x0000, false},
	{"minus zero", 0x80000000, 0x8000, false},
	{"smallest f32 subnormal flushes to zero", 0x00000001, 0x0000, false},
	{"subnormal tie even", 0x00008000, 0x0000, false},
	{"subnormal tie odd", 0x00018000, 0x0002, false},
	{"largest finite bf16 kept", 0x7f7f0000, 0x7f7f, false},
	{"just below overflow tie", 0x7f7f7fff, 0x7f7f, false},
	{"max float32 overflows to inf", 0x7f7fffff, 0x7f80, false},
	{"overflow tie rounds to inf", 0x7f7f8000, 0x7f80, false},
	{"plus inf", 0x7f800000, 0x7f80, false},
	{"minus inf", 0xff800000, 0xff80, false},
	{"quiet nan", 0x7fc00000, 0x0000, true},
	{"negative quiet nan", 0xffc00000, 0x8000, true},
	// Naive rounding of this NaN (payload only in the dropped bits) gives
	// 0x7f80, infinity.
	{"nan payload in low bits only", 0x7f800001, 0x0000, true},
	{"nan payload that would carry", 0x7fffffff, 0x0000, true},
}

func TestBFloat16Bits(t *testing.T) {
	for _, tc := range bf16Cases {
		t.Run(tc.name, func(t *testing.T) {
			got := BFloat16Bits(f32(tc.in))
			if tc.nan {
				if !isBF16NaN(got) || got&0x8000 != tc.want&0x8000 {
					t.Fatalf("BFloat16Bits(%#08x) = %#04x, want a NaN with sign %#04x", tc.in, got, tc.want&0x8000)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("BFloat16Bits(%#08x) = %#04x, want %#04x", tc.in, got, tc.want)
			}
		})
	}
}

// f16Cases are float32 values and the IEEE half they round to, by hand:
// half has 10 mantissa bits, bias 15, subnormals k*2^-24.
var f16Cases = []struct {
	name string
	in   float32
	want uint16
	back float32 // value of want as float32
}{
	{"one", 1, 0x3c00, 1},
	{"minus two and a half", -2.5, 0xc100, -2.5},
	{"tie to even stays", 1 + 0x1p-11, 0x3c00, 1},
	{"tie to even goes up", 1 + 3*0x1p-11, 0x3c02, 1 + 0x1p-9},
	{"above tie rounds up", 1 + 0x1p-11 + 0x1p-20, 0x3c01, 1 + 0x1p-10},
	{"largest finite", 65504, 0x7bff, 65504},
	{"below overflow midpoint", 65519, 0x7bff, 65504},
	{"overflow midpoint rounds to inf", 65520, 0x7c00, float32(math.Inf(1))},
	{"large overflows to inf", 1e6, 0x7c00, float32(math.Inf(1))},
	{"negative overflow", -1e6, 0xfc00, float32(math.Inf(-1))},
	{"smallest normal", 0x1p-14, 0x0400, 0x1p-14},
	{"largest subnormal", 1023 * 0x1p-24, 0x03ff, 1023 * 0x1p-24},
	{"smallest subnormal", 0x1p-24, 0x0001, 0x1p-24},
	{"half the smallest subnormal ties to zero", 0x1p-25, 0x0000, 0},
	{"just above half the smallest subnormal", 0x1p-25 + 0x1p-40, 0x0001, 0x1p-24},
	{"subnormal tie to even goes up", 3 * 0x1p-25, 0x0002, 2 * 0x1p-24},
	{"subnormal tie to even stays", 5 * 0x1p-25, 0x0002, 2 * 0x1p-24},
	{"underflow to zero", 1e-10, 0x0000, 0},
	{"minus zero", f32(0x80000000), 0x8000, f32(0x80000000)},
	{"plus inf", float32(math.Inf(1)), 0x7c00, float32(math.Inf(1))},
	{"minus inf", float32(math.Inf(-1)), 0xfc00, float32(math.Inf(-1))},
}

func TestEncodeDecodeF16(t *testing.T) {
	for _, tc := range f16Cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := EncodeFloat32(F16, []float32{tc.in}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := uint16(raw[0]) | uint16(raw[1])<<8; got != tc.want {
				t.Fatalf("F16 of %g = %#04x, want %#04x", tc.in, got, tc.want)
			}
			back, err := DecodeFloat32(F16, le16(tc.want), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !sameBits(back, []float32{tc.back}) {
				t.Fatalf("decoding %#04x = %v, want %v", tc.want, bitsOf(back), bitsOf([]float32{tc.back}))
			}
		})
	}
	for _, in := range []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0x7fffffff} {
		raw, _ := EncodeFloat32(F16, []float32{f32(in)}, nil)
		if got := uint16(raw[0]) | uint16(raw[1])<<8; !isF16NaN(got) {
			t.Errorf("F16 of NaN %#08x = %#04x, not a NaN", in, got)
		}
	}
	back, _ := DecodeFloat32(F16, le16(0x7e00, 0xfe01), nil)
	for i, v := range back {
		if !math.IsNaN(float64(v)) {
			t.Errorf("decoding F16 NaN #%d gave %v", i, v)
		}
	}
}

func TestDecodeFloat32HandBits(t *testing.T) {
	tests := []struct {
		name string
		dt   DType
		raw  []byte
		want []uint32 // float32 bits
	}{
		{"F32 passes bits through", F32, le32(0x3f800000, 0x7fc00123, 0x80000000, 0x00000001),
			[]uint32{0x3f800000, 0x7fc00123, 0x80000000, 0x00000001}},
		{"BF16 is the top half", BF16, le16(0x3f80, 0xc049, 0x0001, 0x7f80, 0xff80, 0x8000),
			[]uint32{0x3f800000, 0xc0490000, 0x00010000, 0x7f800000, 0xff800000, 0x80000000}},
		{"F16", F16, le16(0x3c00, 0xc000, 0x0001, 0x7bff),
			[]uint32{0x3f800000, 0xc0000000, 0x33800000, 0x477fe000}},
		// 0.1 in float64 rounds to float32 0x3dcccccd; 1+2^-24 is a tie
		// between 1 and 1+2^-23 (even: 1); 1+3*2^-24 a tie going up to
		// 1+2^-22; 2^-150 a tie between 0 and 2^-149 (even: 0); 3*2^-150
		// a tie going to 2*2^-149; 1e300 overflows.
		{"F64 rounds to nearest even", F64,
			le64(0x3fb999999999999a, 0x3ff0000010000000, 0x3ff0000030000000, 0x3690000000000000, 0x36a8000000000000, 0x7e37e43c8800759c, 0xfff0000000000000),
			[]uint32{0x3dcccccd, 0x3f800000, 0x3f800002, 0x00000000, 0x00000002, 0x7f800000, 0xff800000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeFloat32(tc.dt, tc.raw, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]float32, len(tc.want))
			for i, b := range tc.want {
				want[i] = f32(b)
			}
			if !sameBits(got, want) {
				t.Fatalf("got %v, want %v", bitsOf(got), bitsOf(want))
			}
		})
	}
}

func TestEncodeFloat32HandBytes(t *testing.T) {
	in := []float32{1, -2.5, f32(0x3dcccccd), float32(math.Inf(1)), f32(0x80000000)}
	tests := []struct {
		dt   DType
		want []byte
	}{
		{F32, le32(0x3f800000, 0xc0200000, 0x3dcccccd, 0x7f800000, 0x80000000)},
		// 0x3dcccccd: dropped half 0xcccd > 0x8000, rounds up.
		{BF16, le16(0x3f80, 0xc020, 0x3dcd, 0x7f80, 0x8000)},
		// 0.1f = 1.6000000238418579 * 2^-4: exponent 11, mantissa
		// 0x4ccccd>>13 = 0x266 with dropped bits 0xccd > 0x1000: 0x2e66.
		{F16, le16(0x3c00, 0xc100, 0x2e66, 0x7c00, 0x8000)},
		{F64, le64(0x3ff0000000000000, 0xc004000000000000, 0x3fb99999a0000000, 0x7ff0000000000000, 0x8000000000000000)},
	}
	for _, tc := range tests {
		t.Run(tc.dt.String(), func(t *testing.T) {
			got, err := EncodeFloat32(tc.dt, in, nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tc.want) {
				t.Fatalf("got % x\nwant % x", got, tc.want)
			}
		})
	}
}

func TestEncodeDecodeReuseAndErrors(t *testing.T) {
	dst := make([]byte, 0, 64)
	got, err := EncodeFloat32(BF16, []float32{1, 2}, dst)
	if err != nil {
		t.Fatal(err)
	}
	if &got[0] != &dst[:1][0] {
		t.Error("EncodeFloat32 did not reuse a large enough dst")
	}
	fdst := make([]float32, 0, 8)
	out, err := DecodeFloat32(BF16, le16(0x3f80, 0x4000), fdst)
	if err != nil {
		t.Fatal(err)
	}
	if &out[0] != &fdst[:1][0] || len(out) != 2 || out[0] != 1 || out[1] != 2 {
		t.Errorf("DecodeFloat32 = %v (reused: %v), want [1 2] in dst", out, &out[0] == &fdst[:1][0])
	}
	for _, dt := range []DType{st.I64, st.I32, st.U8, st.BOOL} {
		if _, err := EncodeFloat32(dt, []float32{1}, nil); err == nil {
			t.Errorf("EncodeFloat32(%s) gave no error", dt)
		}
		if _, err := DecodeFloat32(dt, make([]byte, 8), nil); err == nil {
			t.Errorf("DecodeFloat32(%s) gave no error", dt)
		}
	}
}

func TestIsFloatAndParseFloatDType(t *testing.T) {
	for _, dt := range []DType{F16, BF16, F32, F64} {
		if !IsFloat(dt) {
			t.Errorf("IsFloat(%s) = false", dt)
		}
	}
	for _, dt := range []DType{st.BOOL, st.U8, st.I8, st.I16, st.U16, st.I32, st.U32, st.I64, st.U64} {
		if IsFloat(dt) {
			t.Errorf("IsFloat(%s) = true", dt)
		}
	}
	tests := []struct {
		in   string
		want DType
		ok   bool
	}{
		{"float32", F32, true}, {"F32", F32, true}, {"fp32", F32, true},
		{"bfloat16", BF16, true}, {"BF16", BF16, true},
		{"float16", F16, true}, {"fp16", F16, true}, {"half", F16, true}, {"f16", F16, true},
		{"float64", F64, true}, {"F64", F64, true}, {"fp64", F64, true},
		{"int8", 0, false}, {"", 0, false}, {"fp8", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseFloatDType(tc.in)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("ParseFloatDType(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
		if !tc.ok && err == nil {
			t.Errorf("ParseFloatDType(%q) = %v, want an error", tc.in, got)
		}
	}
}

func TestDecodeBF16Diff(t *testing.T) {
	// bf16 bit patterns: 0x3f80 = 1, 0xc000 = −2, 0x3f00 = 0.5, 0x7fc0 = NaN.
	raw := []byte{0x80, 0x3f, 0x00, 0xc0, 0x00, 0x3f}
	base := []float32{0.25, 1, -0.5}
	dst := make([]float32, 3)
	if bad := DecodeBF16Diff(raw, base, dst); bad != -1 {
		t.Fatalf("bad = %d, want -1", bad)
	}
	if want := []float32{0.75, -3, 1}; !slices.Equal(dst, want) {
		t.Errorf("DecodeBF16Diff = %v, want %v", dst, want)
	}
	raw = append(raw, 0xc0, 0x7f) // NaN at index 3
	if bad := DecodeBF16Diff(raw, append(base, 0), make([]float32, 4)); bad != 3 {
		t.Errorf("bad = %d, want 3", bad)
	}
}
