package simd

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// levels lists the levels this CPU can run, Generic first.
func levels() []Level {
	var out []Level
	for l := Generic; l <= Detected(); l++ {
		out = append(out, l)
	}
	return out
}

// layout says how a test matrix is stored: "rows" (k contiguous), "cols"
// (rows contiguous) or "strided" (neither).
type mmCase struct {
	batch, m, n, k int
	aLayout        string
	bLayout        string
	offsets        bool // batch entries at scattered offsets
}

// testMatrix stores batch random r×k matrices with the given layout and
// returns the view and a float64 accessor.
func testMatrix(rng *rand.Rand, batch, r, k int, layout string, offsets, bf16 bool) (Matrix, func(b, i, p int) float64) {
	var x Matrix
	per := r * k
	switch layout {
	case "rows":
		x.RowStride, x.KStride = k, 1
	case "cols":
		x.RowStride, x.KStride = 1, r
	default: // every element 3 apart, rows interleaved
		x.RowStride, x.KStride = 3, 3*r
		per = 3 * r * k
	}
	size := batch * per
	if offsets {
		x.Offsets = make([]int, batch)
		perm := rng.Perm(batch)
		for b := range batch {
			x.Offsets[b] = perm[b]*per + 7
		}
		size += 7
	}
	off := func(b int) int {
		if offsets {
			return x.Offsets[b]
		}
		return b * per
	}
	if offsets || batch == 1 {
		// as given
	} else {
		x.Offsets = make([]int, batch)
		for b := range batch {
			x.Offsets[b] = b * per
		}
	}
	vals := make([]float32, size)
	for i := range vals {
		v := float32(rng.NormFloat64())
		if bf16 {
			v = math.Float32frombits(math.Float32bits(v) &^ 0xffff)
		}
		vals[i] = v
	}
	if bf16 {
		x.BF16 = make([]uint16, size)
		for i, v := range vals {
			x.BF16[i] = uint16(math.Float32bits(v) >> 16)
		}
	} else {
		x.F32 = vals
	}
	return x, func(b, i, p int) float64 { return float64(vals[off(b)+i*x.RowStride+p*x.KStride]) }
}

var mmCases = []mmCase{
	{1, 1, 1, 1, "rows", "rows", false},
	{1, 1, 37, 5, "rows", "rows", false},
	{1, 29, 1, 300, "rows", "cols", false},
	{1, 12, 32, 256, "rows", "rows", false},
	{1, 13, 33, 257, "cols", "rows", false},
	{1, 50, 17, 3, "strided", "cols", false},
	{1, 200, 70, 530, "rows", "rows", false},
	{1, 385, 2100, 40, "rows", "cols", false}, // several row blocks and column blocks
	{3, 7, 9, 11, "rows", "rows", true},
	{12, 50, 50, 64, "rows", "rows", true}, // attention-like: batch-parallel
	{2, 130, 64, 50, "cols", "strided", false},
}

func TestMatMulMatchesFloat64(t *testing.T) {
	for _, bf16 := range []bool{false, true} {
		for _, c := range mmCases {
			name := fmt.Sprintf("%dx%dx%dx%d %s·%s offsets=%v bf16=%v", c.batch, c.m, c.n, c.k, c.aLayout, c.bLayout, c.offsets, bf16)
			rng := rand.New(rand.NewPCG(uint64(c.m), uint64(c.n*1000+c.k)))
			a, av := testMatrix(rng, c.batch, c.m, c.k, c.aLayout, c.offsets, bf16)
			b, bv := testMatrix(rng, c.batch, c.n, c.k, c.bLayout, c.offsets, bf16)
			want := make([]float64, c.batch*c.m*c.n)
			bound := make([]float64, len(want))
			for bi := range c.batch {
				for i := range c.m {
					for j := range c.n {
						var s, abs float64
						for p := range c.k {
							x := av(bi, i, p) * bv(bi, j, p)
							s += x
							abs += math.Abs(x)
						}
						want[(bi*c.m+i)*c.n+j] = s
						bound[(bi*c.m+i)*c.n+j] = abs
					}
				}
			}
			var results [][]float32
			for _, l := range levels() {
				for _, workers := range []int{1, 2, 3} {
					got := make([]float32, len(want))
					for i := range got {
						got[i] = float32(math.NaN()) // the output's old contents must not leak in
					}
					matMul(kernelFor(l), got, a, b, c.batch, c.m, c.n, c.k, workers)
					for i, g := range got {
						tol := float64(c.k+4) * 0x1p-23 * bound[i]
						if math.Abs(float64(g)-want[i]) > tol || math.IsNaN(float64(g)) {
							t.Fatalf("%s, %s, %d workers: element %d = %v, want %v (±%g)", name, l, workers, i, g, want[i], tol)
						}
					}
					if l >= AVX2 {
						results = append(results, got)
					}
				}
			}
			// The assembly kernels sum in the same order: AVX2 and AVX-512
			// give the same bits, whatever the number of workers.
			for _, r := range results[1:] {
				if !slices.Equal(r, results[0]) {
					t.Fatalf("%s: results differ between SIMD levels or worker counts", name)
				}
			}
		}
	}
}

// NaN and ±Inf propagate as in the float64 reference sum: Inf·0 and
// +Inf + −Inf give NaN, a single Inf gives ±Inf.
func TestMatMulNonFinite(t *testing.T) {
	const m, n, k = 14, 35, 300
	class := func(v float64) string {
		switch {
		case math.IsNaN(v):
			return "NaN"
		case math.IsInf(v, 1):
			return "+Inf"
		case math.IsInf(v, -1):
			return "-Inf"
		}
		return "finite"
	}
	for _, bf16 := range []bool{false, true} {
		rng := rand.New(rand.NewPCG(1, 2))
		a, av := testMatrix(rng, 1, m, k, "rows", false, false)
		b, bv := testMatrix(rng, 1, n, k, "cols", false, false)
		a.F32[3*k+100] = float32(math.NaN())
		a.F32[5*k+7] = float32(math.Inf(1))
		a.F32[9*k+8] = float32(math.Inf(-1))
		b.F32[0+7*n] = 0                      // row 5, column 0: Inf·0
		b.F32[30+7*n] = float32(math.Inf(-1)) // row 5, column 30: −Inf
		b.F32[30+8*n] = float32(math.Inf(-1)) // row 9, column 30: +Inf
		b.F32[31+8*n] = float32(math.Inf(1))  // row 9, column 31: −Inf
		b.F32[31+7*n] = float32(math.Inf(-1)) // row 5, column 31 and row 9: +Inf + −Inf
		if bf16 {
			a, b = toBF16(a), toBF16(b)
		}
		for _, l := range levels() {
			c := make([]float32, m*n)
			matMul(kernelFor(l), c, a, b, 1, m, n, k, 2)
			for i := range m {
				for j := range n {
					var want float64
					for p := range k {
						want += av(0, i, p) * bv(0, j, p)
					}
					if got := float64(c[i*n+j]); class(got) != class(want) {
						t.Errorf("%s bf16=%v: c[%d,%d] = %v, want %s", l, bf16, i, j, got, class(want))
					}
				}
			}
		}
	}
}

func toBF16(x Matrix) Matrix {
	x.BF16 = make([]uint16, len(x.F32))
	for i, v := range x.F32 {
		x.BF16[i] = uint16(math.Float32bits(v) >> 16)
	}
	x.F32 = nil
	return x
}

func BenchmarkMatMul(b *testing.B) {
	for _, s := range []struct{ m, n, k int }{{1600, 768, 768}, {1600, 3072, 768}, {512, 512, 512}} {
		for _, l := range levels() {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", s.m, s.n, s.k, l), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(1, 2))
				a, _ := testMatrix(rng, 1, s.m, s.k, "rows", false, false)
				w, _ := testMatrix(rng, 1, s.n, s.k, "rows", false, false)
				c := make([]float32, s.m*s.n)
				for b.Loop() {
					matMul(kernelFor(l), c, a, w, 1, s.m, s.n, s.k, 2)
				}
				b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
