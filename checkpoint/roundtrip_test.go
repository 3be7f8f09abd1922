package checkpoint

import (
	"math"
	"path/filepath"
	"testing"

	st "github.com/nlpodyssey/safetensors"
)

// writeFloats writes one tensor of dtype dt holding vals through the writer
// (NaN, ±Inf and values beyond dt's range allowed: this tests encoding).
func writeFloats(t *testing.T, out string, dt DType, vals []float32) {
	t.Helper()
	w, err := Create(out, []TensorSpec{{Name: "x", DType: dt, Shape: []int64{int64(len(vals))}}}, WriteOptions{AllowNonfinite: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.WriteFloat32("x", vals); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestRoundTripFloat writes float32 values in every float dtype and reads
// them back; the expected bytes on disk and values read back are the hand
// tables of dtype_test.go.
func TestRoundTripFloat(t *testing.T) {
	type tc struct {
		dt      DType
		in      []float32
		raw     []byte    // expected bytes on disk; nil: not checked
		back    []float32 // expected values read back
		backNaN []bool    // positions where any NaN is right
	}
	var cases []tc

	// BF16: every hand case of bf16Cases.
	{
		c := tc{dt: BF16}
		var raw []uint16
		for _, b := range bf16Cases {
			c.in = append(c.in, f32(b.in))
			raw = append(raw, b.want)
			c.back = append(c.back, f32(uint32(b.want)<<16))
			c.backNaN = append(c.backNaN, b.nan)
		}
		c.raw = le16(raw...)
		for i, n := range c.backNaN {
			if n {
				c.raw = nil // NaN bits are not fixed, only NaN-ness
				c.back[i] = float32(math.NaN())
			}
		}
		cases = append(cases, c)
	}
	// F16: every hand case of f16Cases plus NaNs.
	{
		c := tc{dt: F16}
		var raw []uint16
		for _, h := range f16Cases {
			c.in = append(c.in, h.in)
			raw = append(raw, h.want)
			c.back = append(c.back, h.back)
			c.backNaN = append(c.backNaN, false)
		}
		c.raw = le16(raw...)
		c2 := tc{dt: F16, in: []float32{f32(0x7fc00000), f32(0xff800001)},
			back: []float32{0, 0}, backNaN: []bool{true, true}}
		cases = append(cases, c, c2)
	}
	// F32 keeps every bit, NaN payloads included; F64 holds every float32
	// exactly.
	special := []uint32{0x3f800000, 0xc0200000, 0x3dcccccd, 0x80000000, 0x00000001, 0x007fffff, 0x7f7fffff, 0x7f800000, 0xff800000}
	{
		c := tc{dt: F32}
		for _, b := range append(special, 0x7fc00123, 0xffc00000) {
			c.in = append(c.in, f32(b))
			c.back = append(c.back, f32(b))
			c.backNaN = append(c.backNaN, false)
		}
		c.raw = le32(append(special, 0x7fc00123, 0xffc00000)...)
		cases = append(cases, c)
	}
	{
		c := tc{dt: F64}
		for _, b := range special {
			c.in = append(c.in, f32(b))
			c.back = append(c.back, f32(b))
			c.backNaN = append(c.backNaN, false)
		}
		c.in = append(c.in, float32(math.NaN()))
		c.back = append(c.back, 0)
		c.backNaN = append(c.backNaN, true)
		// The NaN's bits are not fixed: no bytes checked here, but below.
		cases = append(cases, c)
		// The same without the NaN, with its bytes checked.
		c2 := tc{dt: F64, in: c.in[:len(special)], back: c.back[:len(special)], backNaN: c.backNaN[:len(special)],
			raw: le64(0x3ff0000000000000, 0xc004000000000000, 0x3fb99999a0000000, 0x8000000000000000,
				0x36a0000000000000, 0x380fffffc0000000, 0x47efffffe0000000, 0x7ff0000000000000, 0xfff0000000000000)}
		cases = append(cases, c2)
	}

	for i, c := range cases {
		t.Run(c.dt.String(), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "rt.safetensors")
			writeFloats(t, out, c.dt, c.in)
			ck := mustOpen(t, out)
			info, ok := ck.Tensor("x")
			if !ok || info.DType != c.dt || len(info.Shape) != 1 || info.Shape[0] != int64(len(c.in)) {
				t.Fatalf("case %d: tensor info %+v", i, info)
			}
			if c.raw != nil {
				raw, err := ck.ReadRaw("x", nil)
				if err != nil {
					t.Fatal(err)
				}
				if string(raw) != string(c.raw) {
					t.Errorf("bytes on disk\n got % x\nwant % x", raw, c.raw)
				}
			}
			got, _, err := ck.ReadFloat32("x", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.back) {
				t.Fatalf("read %d values, want %d", len(got), len(c.back))
			}
			for j := range got {
				if c.backNaN[j] {
					if !math.IsNaN(float64(got[j])) {
						t.Errorf("value %d: got %v, want NaN", j, got[j])
					}
					continue
				}
				if math.Float32bits(got[j]) != math.Float32bits(c.back[j]) {
					t.Errorf("value %d (in %#08x): got %#08x, want %#08x", j, math.Float32bits(c.in[j]), math.Float32bits(got[j]), math.Float32bits(c.back[j]))
				}
			}
		})
	}
}

// TestRoundTripRaw writes non-float dtypes as raw bytes, in a single file and
// a sharded folder, and reads the bytes back unchanged.
func TestRoundTripRaw(t *testing.T) {
	type tensor struct {
		spec TensorSpec
		raw  []byte
	}
	ts := []tensor{
		{TensorSpec{"i64", st.I64, []int64{3}}, le64(0, 0xffffffffffffffff, 0x0123456789abcdef)},
		{TensorSpec{"u64", st.U64, []int64{1}}, le64(0xfedcba9876543210)},
		{TensorSpec{"i32", st.I32, []int64{2, 2}}, le32(1, 0xffffffff, 0x80000000, 0x7fffffff)},
		{TensorSpec{"u32", st.U32, []int64{1}}, le32(0xdeadbeef)},
		{TensorSpec{"i16", st.I16, []int64{3}}, le16(0x8000, 0x7fff, 0xffff)},
		{TensorSpec{"u16", st.U16, []int64{1}}, le16(0xbeef)},
		{TensorSpec{"i8", st.I8, []int64{3}}, []byte{0x80, 0x7f, 0xff}},
		{TensorSpec{"u8", st.U8, []int64{5}}, []byte{0, 1, 2, 254, 255}},
		{TensorSpec{"bool", st.BOOL, []int64{4}}, []byte{1, 0, 0, 1}},
		{TensorSpec{"scalar_i64", st.I64, []int64{}}, le64(42)},
	}
	var specs []TensorSpec
	for _, x := range ts {
		specs = append(specs, x.spec)
	}
	for _, layout := range []struct {
		name  string
		out   string
		shard int64
	}{{"single file", "raw.safetensors", 0}, {"folder", "raw", 0}, {"sharded", "raw", 16}} {
		t.Run(layout.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), layout.out)
			w, err := Create(out, specs, WriteOptions{ShardSize: layout.shard})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			for _, x := range ts {
				if err := w.Write(x.spec.Name, x.raw); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			ck := mustOpen(t, out)
			if len(ck.Tensors()) != len(ts) {
				t.Fatalf("%d tensors, want %d", len(ck.Tensors()), len(ts))
			}
			for _, x := range ts {
				info, ok := ck.Tensor(x.spec.Name)
				if !ok || info.DType != x.spec.DType || len(info.Shape) != len(x.spec.Shape) || info.Bytes != int64(len(x.raw)) {
					t.Errorf("%s: info %+v", x.spec.Name, info)
				}
				got, err := ck.ReadRaw(x.spec.Name, nil)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != string(x.raw) {
					t.Errorf("%s: got % x, want % x", x.spec.Name, got, x.raw)
				}
				if _, _, err := ck.ReadFloat32(x.spec.Name, nil, nil); err == nil {
					t.Errorf("%s: ReadFloat32 of %s gave no error", x.spec.Name, x.spec.DType)
				}
			}
			if layout.shard > 0 {
				if paths, _ := ck.Files(); len(paths) < 3 {
					t.Errorf("sharded output has %d files, want several", len(paths))
				}
			}
		})
	}
}
