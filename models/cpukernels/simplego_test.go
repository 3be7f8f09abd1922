package cpukernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/editkit/editkit/internal/simd"
)

// TestInstalled fails loudly when the executor cannot be installed on a
// CPU that could run it: most likely a GoMLX upgrade, whose internals must
// then be checked against simplego.go and the pin updated.
func TestInstalled(t *testing.T) {
	ok, why := Installed()
	if simd.Active() < simd.AVX2 {
		if ok {
			t.Fatalf("installed at SIMD level %s", simd.Active())
		}
		t.Skipf("SIMD off (%s): simplego's own kernels run", why)
	}
	if !ok {
		t.Fatalf("the SIMD DotGeneral is not installed: %s", why)
	}
}

// TestPinnedVersion checks that go.mod asks for the GoMLX version whose
// internals simplego.go reaches (test binaries do not record it).
func TestPinnedVersion(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := "github.com/gomlx/gomlx " + GoMLXVersion
	for _, line := range strings.Split(string(mod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/gomlx/gomlx" {
			if strings.Join(f[:2], " ") != want {
				t.Fatalf("go.mod requires %s, but cpukernels reaches into simplego %s's internals: check nodeExecutors, dotGeneralNodeData and workersPool in the new version, then update GoMLXVersion", strings.Join(f[:2], " "), GoMLXVersion)
			}
			return
		}
	}
	t.Fatal("go.mod does not require github.com/gomlx/gomlx")
}

func testBackend(t *testing.T) backends.Backend {
	t.Helper()
	b, err := backends.NewWithConfig("go:ops_sequential")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withExecutor runs f with exec registered for DotGeneral.
func withExecutor(exec executor, f func()) {
	op := backends.OpTypeDotGeneral
	old := nodeExecutors[op]
	nodeExecutors[op] = exec
	defer func() { nodeExecutors[op] = old }()
	f()
}

type dotCase struct {
	name           string
	lhs, rhs       []int
	lc, lb, rc, rb []int
}

var dotCases = []dotCase{
	{name: "matmul, rhs k×n", lhs: []int{13, 37}, lc: []int{1}, rhs: []int{37, 29}, rc: []int{0}},
	{name: "linear x·Wᵀ", lhs: []int{2, 50, 33}, lc: []int{2}, rhs: []int{70, 33}, rc: []int{1}},
	{name: "lhs transposed", lhs: []int{33, 17}, lc: []int{0}, rhs: []int{40, 33}, rc: []int{1}},
	{name: "one row, one column", lhs: []int{1, 5}, lc: []int{1}, rhs: []int{5, 1}, rc: []int{0}},
	{name: "vector·vector", lhs: []int{7}, lc: []int{0}, rhs: []int{7}, rc: []int{0}},
	{name: "outer product", lhs: []int{3, 2}, rhs: []int{4}},
	{name: "attention scores", lhs: []int{2, 9, 3, 8}, lc: []int{3}, lb: []int{0, 2}, rhs: []int{2, 11, 3, 8}, rc: []int{3}, rb: []int{0, 2}},
	{name: "attention context", lhs: []int{2, 3, 9, 11}, lc: []int{3}, lb: []int{0, 1}, rhs: []int{2, 11, 3, 8}, rc: []int{1}, rb: []int{0, 2}},
	{name: "cross axes apart (copied)", lhs: []int{3, 4, 5}, lc: []int{1}, rhs: []int{4, 6}, rc: []int{0}},
	{name: "contracting axes apart (copied)", lhs: []int{4, 3, 5}, lc: []int{0, 2}, rhs: []int{5, 4, 2}, rc: []int{1, 0}},
	{name: "contracting axes crossed", lhs: []int{2, 3, 4, 5}, lc: []int{1, 3}, lb: []int{0}, rhs: []int{2, 5, 6, 3}, rc: []int{3, 1}, rb: []int{0}},
	{name: "large, several blocks", lhs: []int{2, 300, 270}, lc: []int{2}, lb: []int{0}, rhs: []int{2, 270, 130}, rc: []int{1}, rb: []int{0}},
}

// reference computes the DotGeneral in float64 from its definition, with
// the sum of |products| of each output for error bounds.
func reference(c dotCase, l, r []float64) (out, abs []float64) {
	cross := func(dims, contracting, batch []int) []int {
		var a []int
		for i := range dims {
			if !slices.Contains(contracting, i) && !slices.Contains(batch, i) {
				a = append(a, i)
			}
		}
		return a
	}
	lx, rx := cross(c.lhs, c.lc, c.lb), cross(c.rhs, c.rc, c.rb)
	pick := func(dims, axes []int) []int {
		var d []int
		for _, a := range axes {
			d = append(d, dims[a])
		}
		return d
	}
	flat := func(dims, idx []int) int {
		f := 0
		for i, d := range dims {
			f = f*d + idx[i]
		}
		return f
	}
	outDims := slices.Concat(pick(c.lhs, c.lb), pick(c.lhs, lx), pick(c.rhs, rx))
	li, ri := make([]int, len(c.lhs)), make([]int, len(c.rhs))
	forEach(outDims, func(o []int) {
		nb, nl := len(c.lb), len(lx)
		for i, a := range c.lb {
			li[a], ri[c.rb[i]] = o[i], o[i]
		}
		for i, a := range lx {
			li[a] = o[nb+i]
		}
		for i, a := range rx {
			ri[a] = o[nb+nl+i]
		}
		var s, sa float64
		forEach(pick(c.lhs, c.lc), func(k []int) {
			for i, a := range c.lc {
				li[a], ri[c.rc[i]] = k[i], k[i]
			}
			p := l[flat(c.lhs, li)] * r[flat(c.rhs, ri)]
			s += p
			sa += math.Abs(p)
		})
		out = append(out, s)
		abs = append(abs, sa)
	})
	return out, abs
}

func forEach(dims []int, fn func(idx []int)) {
	idx := make([]int, len(dims))
	for {
		fn(idx)
		i := len(dims) - 1
		for ; i >= 0; i-- {
			idx[i]++
			if idx[i] < dims[i] {
				break
			}
			idx[i] = 0
		}
		if i < 0 {
			return
		}
	}
}

// run executes the case's DotGeneral on b and returns its output as float64.
func run(t *testing.T, b backends.Backend, c dotCase, l, r *tensors.Tensor, bf16 bool) []float64 {
	t.Helper()
	exec, err := graph.NewExec(b, func(l, r *graph.Node) *graph.Node {
		return graph.DotGeneral(l, c.lc, c.lb, r, c.rc, c.rb)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	outs, err := exec.Exec(l, r)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	var out []float64
	if bf16 {
		for _, v := range tensors.MustCopyFlatData[bfloat16.BFloat16](outs[0]) {
			out = append(out, float64(v.Float32()))
		}
	} else {
		for _, v := range tensors.MustCopyFlatData[float32](outs[0]) {
			out = append(out, float64(v))
		}
	}
	return out
}

// TestDotGeneralMatchesReference checks the replacement, and simplego's own
// kernel, against the float64 definition for float32 and bfloat16 operands,
// with NaN and ±Inf in some of the cases.
func TestDotGeneralMatchesReference(t *testing.T) {
	if ok, why := Installed(); !ok {
		t.Skipf("not installed: %s", why)
	}
	b := testBackend(t)
	for ci, c := range dotCases {
		for _, bf16 := range []bool{false, true} {
			for _, nonFinite := range []bool{false, true} {
				name := fmt.Sprintf("%s bf16=%v nonfinite=%v", c.name, bf16, nonFinite)
				rng := rand.New(rand.NewPCG(uint64(ci), 3))
				l, r := make([]float64, size(c.lhs)), make([]float64, size(c.rhs))
				for _, x := range [][]float64{l, r} {
					for i := range x {
						x[i] = float64(float32(rng.NormFloat64()))
						if bf16 {
							x[i] = float64(math.Float32frombits(math.Float32bits(float32(x[i])) &^ 0xffff))
						}
					}
				}
				if nonFinite {
					l[len(l)/3] = math.NaN()
					l[len(l)/2] = math.Inf(1)
					r[len(r)-1] = math.Inf(-1)
				}
				want, abs := reference(c, l, r)
				lt, rt := tensorOf(l, c.lhs, bf16), tensorOf(r, c.rhs, bf16)
				calls := 0
				var got, builtinOut []float64
				withExecutor(func(backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, owned []bool) (*simplego.Buffer, error) {
					calls++
					return execDotGeneral(backend, node, inputs, owned)
				}, func() { got = run(t, b, c, lt, rt, bf16) })
				if calls == 0 {
					t.Fatalf("%s: the replacement executor was not called", name)
				}
				withExecutor(builtins[backends.OpTypeDotGeneral], func() { builtinOut = run(t, b, c, lt, rt, bf16) })
				for i := range want {
					// float32 accumulation, plus one rounding to bfloat16
					// (simplego's own truncates: a whole ulp).
					tol := float64(size(c.lhs)+4) * 0x1p-23 * abs[i]
					tolB := tol
					if bf16 {
						tol += 0x1p-8 * math.Abs(want[i])
						tolB += 0x1p-7 * math.Abs(want[i])
					}
					if !close(got[i], want[i], tol) {
						t.Fatalf("%s: output %d = %v, want %v ± %g", name, i, got[i], want[i], tol)
					}
					if !close(builtinOut[i], want[i], tolB) {
						t.Fatalf("%s: simplego's own output %d = %v, want %v ± %g", name, i, builtinOut[i], want[i], tolB)
					}
				}
			}
		}
	}
}

func close(got, want, tol float64) bool {
	if math.IsNaN(want) || math.IsInf(want, 0) {
		return math.IsNaN(want) && math.IsNaN(got) || got == want
	}
	return math.Abs(got-want) <= tol
}

func tensorOf(x []float64, dims []int, bf16 bool) *tensors.Tensor {
	if bf16 {
		v := make([]bfloat16.BFloat16, len(x))
		for i, f := range x {
			v[i] = bfloat16.FromFloat32(float32(f))
		}
		return tensors.FromFlatDataAndDimensions(v, dims...)
	}
	v := make([]float32, len(x))
	for i, f := range x {
		v[i] = float32(f)
	}
	return tensors.FromFlatDataAndDimensions(v, dims...)
}

// Other dtypes go to simplego's executor.
func TestDotGeneralFloat64UsesBuiltin(t *testing.T) {
	if ok, why := Installed(); !ok {
		t.Skipf("not installed: %s", why)
	}
	b := testBackend(t)
	l := tensors.FromFlatDataAndDimensions([]float64{1, 2, 3, 4, 5, 6}, 2, 3)
	r := tensors.FromFlatDataAndDimensions([]float64{1, 0, -1}, 3)
	exec, err := graph.NewExec(b, func(l, r *graph.Node) *graph.Node {
		return graph.DotGeneral(l, []int{1}, nil, r, []int{0}, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	outs, err := exec.Exec(l, r)
	if err != nil {
		t.Fatal(err)
	}
	if got := tensors.MustCopyFlatData[float64](outs[0]); !slices.Equal(got, []float64{-2, -2}) {
		t.Fatalf("got %v, want [-2 -2]", got)
	}
}
