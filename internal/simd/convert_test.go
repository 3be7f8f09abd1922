package simd

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/x448/float16"
)

// every16 is all 65536 bit patterns of a 16-bit float.
func every16() []uint16 {
	out := make([]uint16, 1<<16)
	for i := range out {
		out[i] = uint16(i)
	}
	return out
}

// float32Samples holds random bit patterns and values around the 16-bit
// formats' overflow, underflow and rounding boundaries.
func float32Samples() []float32 {
	rng := rand.New(rand.NewPCG(3, 3))
	var out []float32
	for range 1 << 18 {
		out = append(out, math.Float32frombits(rng.Uint32()))
	}
	for _, edge := range []uint32{0, 0x7f7fffff, 0x7f7f0000, 0x7f7f7fff, 0x7f7f8000, 0x477fe000, 0x477fefff, 0x477ff000, 0x477fffff,
		0x33000000, 0x33000001, 0x387fc000, 0x38800000, 0x7f800000, 0x7f800001, 0x7fc00000, 0x7fbfffff, 1} {
		for d := uint32(0); d < 40; d++ {
			for _, sign := range []uint32{0, 0x80000000} {
				out = append(out, math.Float32frombits((edge+d-20)|sign))
			}
		}
	}
	return out
}

func TestDecode16(t *testing.T) {
	src := every16()
	for _, l := range levels() {
		for _, n := range []int{len(src), 15, 17, 1} {
			s := src[len(src)-n:]
			bf := make([]float32, n)
			f16 := make([]float32, n)
			badB := decodeBF16At(l, bf, s)
			badF := decodeF16At(l, f16, s)
			wantB, wantF := false, false
			for i, h := range s {
				if w := uint32(h) << 16; math.Float32bits(bf[i]) != w {
					t.Fatalf("%s: bfloat16 %#04x decoded to %#08x, want %#08x", l, h, math.Float32bits(bf[i]), w)
				}
				if w := float16.Frombits(h).Float32(); math.Float32bits(f16[i]) != math.Float32bits(w) {
					t.Fatalf("%s: float16 %#04x decoded to %#08x, want %#08x", l, h, math.Float32bits(f16[i]), math.Float32bits(w))
				}
				wantB = wantB || h&0x7f80 == 0x7f80
				wantF = wantF || h&0x7c00 == 0x7c00
			}
			if badB != wantB || badF != wantF {
				t.Fatalf("%s, %d values: non-finite reported %v/%v, want %v/%v", l, n, badB, badF, wantB, wantF)
			}
		}
		// base subtracted, NaN and Inf reported before the subtraction
		base := make([]float32, len(src))
		for i := range base {
			base[i] = float32(i%7) - 3
		}
		got := make([]float32, len(src))
		decodeBF16SubAt(l, got, src, base)
		for i, h := range src {
			if w := math.Float32frombits(uint32(h)<<16) - base[i]; !sameBits(got[i], w) && !(w != w && got[i] != got[i]) {
				t.Fatalf("%s: bfloat16 %#04x − %v = %v, want %v", l, h, base[i], got[i], w)
			}
		}
		if !decodeBF16SubAt(l, got[:16], []uint16{0x7f80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, base) ||
			decodeBF16SubAt(l, got[:16], make([]uint16, 16), []float32{float32(math.Inf(1)), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) {
			t.Fatalf("%s: non-finite must be reported for the decoded values only", l)
		}
	}
}

func TestEncode16(t *testing.T) {
	src := float32Samples()
	for _, l := range levels() {
		for _, n := range []int{len(src), 7, 9, 1} {
			s := src[len(src)-n:]
			bf := make([]uint16, n)
			f16 := make([]uint16, n)
			encodeBF16At(l, bf, s)
			encodeF16At(l, f16, s)
			for i, v := range s {
				b := math.Float32bits(v)
				if w := BF16(v); bf[i] != w {
					t.Fatalf("%s: %#08x encoded to bfloat16 %#04x, want %#04x", l, b, bf[i], w)
				}
				if w := float16.Fromfloat32(v).Bits(); f16[i] != w {
					t.Fatalf("%s: %#08x encoded to float16 %#04x, want %#04x", l, b, f16[i], w)
				}
			}
		}
	}
}
