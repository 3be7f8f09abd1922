package merge

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

func TestTIESThresholdIndex(t *testing.T) {
	// Reference: k = d − int(d·density); kthvalue(|τ|, k) is the threshold.
	tests := []struct {
		d       int64
		density float64
		want    int64
	}{
		{10, 0.2, 8},
		{10, 1, 0},
		{7, 0.5, 4},  // int(3.5) = 3 kept → 4th smallest
		{3, 0.01, 3}, // nothing by count: keep the maximum (and its ties)
	}
	for _, tc := range tests {
		if got := tiesThresholdIndex(tc.d, tc.density); got != tc.want {
			t.Errorf("tiesThresholdIndex(%d, %v) = %d, want %d", tc.d, tc.density, got, tc.want)
		}
	}
}

func TestKthSmallestAbsMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 20 {
		n := 1 + r.IntN(500)
		data := make([]float32, n)
		for i := range data {
			switch r.IntN(4) {
			case 0:
				data[i] = float32(r.IntN(5) - 2) // many ties, zeros
			default:
				data[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(8)-4)))
			}
		}
		abs := make([]float64, n)
		for i, v := range data {
			abs[i] = math.Abs(float64(v))
		}
		sort.Float64s(abs)
		k := int64(1 + r.IntN(n))
		got, less := kthSmallestAbs(data, k)
		if float64(got) != abs[k-1] {
			t.Fatalf("trial %d: k=%d: got %v, want %v", trial, k, got, abs[k-1])
		}
		wantLess := int64(sort.SearchFloat64s(abs, abs[k-1]))
		if less != wantLess {
			t.Fatalf("trial %d: less = %d, want %d", trial, less, wantLess)
		}
	}
}

// rankKeepBySort is an independent reference: sort indices by (|x|, index).
func rankKeepBySort(data []float32, lo, hi int64) []bool {
	idx := make([]int, len(data))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		return math.Abs(float64(data[idx[a]])) < math.Abs(float64(data[idx[b]]))
	})
	keep := make([]bool, len(data))
	for p := lo; p < hi; p++ {
		keep[idx[p]] = true
	}
	return keep
}

func TestRankKeepMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 50 {
		n := 1 + r.IntN(200)
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(r.IntN(7) - 3) // heavy ties
			if r.IntN(2) == 0 {
				data[i] *= 0.5
			}
		}
		lo := int64(r.IntN(n + 1))
		hi := lo + int64(r.IntN(n-int(lo)+1))
		keep := make([]bool, n)
		rankKeep(data, lo, hi, keep)
		if want := rankKeepBySort(data, lo, hi); !slices.Equal(keep, want) {
			t.Fatalf("trial %d: rankKeep(%v, %d, %d) = %v, want %v", trial, data, lo, hi, keep, want)
		}
	}
}

func TestBreadcrumbs(t *testing.T) {
	// 10 entries, density 0.5, gamma 0.2: keep 5, drop the 2 largest and the
	// 3 smallest magnitudes.
	tau := []float32{0.1, -0.9, 0.5, 0.3, -0.2, 1.0, 0.05, -0.6, 0.4, 0.7}
	breadcrumbs(tau, 0.5, 0.2, make([]bool, len(tau)))
	want := []float32{0, 0, 0.5, 0.3, 0, 0, 0, -0.6, 0.4, 0.7}
	if !slices.Equal(tau, want) {
		t.Errorf("breadcrumbs = %v, want %v", tau, want)
	}
}

func TestKeepTopK(t *testing.T) {
	tau := []float32{0.5, -2, 1, -1, 0.25}
	keepTopK(tau, 2, make([]bool, len(tau)))
	// |−2| is largest; |1| and |−1| tie: the lower index is kept, as a
	// stable descending sort orders them.
	want := []float32{0, -2, 1, 0, 0}
	if !slices.Equal(tau, want) {
		t.Errorf("keepTopK = %v, want %v", tau, want)
	}
}

// topKBySort is an independent reference for mergekit's magnitude
// selection on a GPU: a stable sort of the indices by descending |x|, the
// first k kept.
func topKBySort(data []float32, k int) []bool {
	idx := make([]int, len(data))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		return math.Abs(float64(data[idx[a]])) > math.Abs(float64(data[idx[b]]))
	})
	keep := make([]bool, len(data))
	for _, i := range idx[:max(k, 0)] {
		keep[i] = true
	}
	return keep
}

// TestKeepTopKBreaksTiesAsAStableSort checks exact-k selection on data with
// many equal magnitudes, as bf16 task vectors have.
func TestKeepTopKBreaksTiesAsAStableSort(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for trial := range 100 {
		n := 1 + r.IntN(300)
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(r.IntN(9)-4) / 8 // heavy ties, zeros included
		}
		k := r.IntN(n + 1)
		got := slices.Clone(data)
		keepTopK(got, int64(k), make([]bool, n))
		want := topKBySort(data, k)
		for i := range data {
			w := float32(0)
			if want[i] {
				w = data[i]
			}
			if got[i] != w {
				t.Fatalf("trial %d (n %d, k %d): entry %d = %v, want %v", trial, n, k, i, got[i], w)
			}
		}
	}
}

func TestTIESElectMerge(t *testing.T) {
	// Worked example: three trimmed task vectors over four entries.
	taus := [][]float32{
		{1, -2, 0, 3},
		{3, 1, 0, -3},
		{-1, -1, 0, 0},
	}
	// Σ: 3, −2, 0, 0 → signs +, −, majority, majority.
	s := make([]float32, 4)
	signSum(s, taus)
	if want := []float32{3, -2, 0, 0}; !slices.Equal(s, want) {
		t.Fatalf("signSum = %v, want %v", s, want)
	}
	dst := make([]float32, 4)
	tiesElectMerge(dst, taus, 1, false)
	// entry 0: + agrees {1, 3} → 2; entry 1: − agrees {−2, −1} → −1.5;
	// entry 2: nothing; entry 3: majority + → {3} → 3.
	if want := []float32{2, -1.5, 0, 3}; !slices.Equal(dst, want) {
		t.Errorf("disjoint mean = %v, want %v", dst, want)
	}
	tiesElectMerge(dst, taus, -1, true)
	if want := []float32{4, -3, 0, -3}; !slices.Equal(dst, want) {
		t.Errorf("disjoint sum, majority − = %v, want %v", dst, want)
	}
}

func TestWeightedTIES(t *testing.T) {
	// mergekit: u = w τ; sign + where Σu ≥ 0; mean weighted by agreeing w.
	taus := [][]float32{{1, -1, 0}, {-1, -3, 0}}
	w := []float32{3, 1}
	dst := make([]float32, 3)
	weightedTIES(dst, taus, w, true)
	// entry 0: u = (3, −1), Σ = 2 ≥ 0 → keep 3, divide by 3 → 1.
	// entry 1: u = (−3, −3) → both, (−6)/(4) = −1.5. entry 2: Σ=0 → +, none → 0.
	if want := []float32{1, -1.5, 0}; !slices.Equal(dst, want) {
		t.Errorf("weightedTIES = %v, want %v", dst, want)
	}
}

func TestDropRandom(t *testing.T) {
	const n = 200000
	tau := make([]float32, n)
	for i := range tau {
		tau[i] = 1
	}
	key := streamKey(7, 0, "w")
	dropRandom(tau, key, 0, 0.25, 4)
	kept := 0
	for _, v := range tau {
		switch v {
		case 4:
			kept++
		case 0:
		default:
			t.Fatalf("survivor rescaled to %v, want 4", v)
		}
	}
	if frac := float64(kept) / n; math.Abs(frac-0.25) > 0.005 {
		t.Errorf("kept fraction %v, want 0.25 ± 0.005", frac)
	}
	// Chunking does not change the draws.
	a := make([]float32, 100)
	b := make([]float32, 100)
	for i := range a {
		a[i], b[i] = 1, 1
	}
	dropRandom(a, key, 0, 0.5, 2)
	dropRandom(b[:37], key, 0, 0.5, 2)
	dropRandom(b[37:], key, 37, 0.5, 2)
	if !slices.Equal(a, b) {
		t.Error("draws depend on chunking")
	}
	if streamKey(7, 0, "w") == streamKey(7, 1, "w") || streamKey(7, 0, "w") == streamKey(8, 0, "w") {
		t.Error("members or seeds share a random stream")
	}
}

func TestRescaleL1(t *testing.T) {
	x := []float32{2, 0, -1}
	rescaleL1(x, 6) // ‖x‖₁ = 3 → ×2
	if want := []float32{4, 0, -2}; !slices.Equal(x, want) {
		t.Errorf("rescaleL1 = %v, want %v", x, want)
	}
}

func TestTallMask(t *testing.T) {
	tau := []float32{1, 0.1, -1, 0}
	mtl := []float32{1.5, 2, -1, 1}
	m := make([]bool, 4)
	tallMask(m, tau, mtl, 0.5)
	// |1| > 0.5·0.5; |0.1| > 0.5·1.9? no; |−1| > 0; |0| > 0.5? no (strict).
	if want := []bool{true, false, true, false}; !slices.Equal(m, want) {
		t.Errorf("tallMask = %v, want %v", m, want)
	}
}

func TestModelStock(t *testing.T) {
	if got := modelStockRatio(2, 0.5); math.Abs(got-2*0.5/1.5) > 1e-15 {
		t.Errorf("ratio = %v", got)
	}
	// Orthogonal task vectors: cos 0 → t = 0 → the base.
	if got := meanPairCosine([][]float32{{1, 0}, {0, 1}}); got != 0 {
		t.Errorf("cos = %v, want 0", got)
	}
	// Three vectors: pairs (a,b)=1, (a,c)=0, (b,c)=0 → mean 1/3.
	if got := meanPairCosine([][]float32{{1, 0}, {2, 0}, {0, 3}}); math.Abs(got-1.0/3) > 1e-15 {
		t.Errorf("cos = %v, want 1/3", got)
	}
}

func TestSLERP(t *testing.T) {
	// Orthogonal unit vectors at t = 0.5: both weights sin(π/4)/sin(π/2).
	dst := make([]float32, 2)
	slerp(dst, []float32{1, 0}, []float32{0, 1}, 0.5)
	w := float32(math.Sqrt(0.5))
	if math.Abs(float64(dst[0]-w)) > 1e-7 || math.Abs(float64(dst[1]-w)) > 1e-7 {
		t.Errorf("slerp = %v, want [%v %v]", dst, w, w)
	}
	// Parallel vectors fall back to linear interpolation.
	slerp(dst, []float32{1, 1}, []float32{3, 3}, 0.25)
	if want := []float32{1.5, 1.5}; !slices.Equal(dst, want) {
		t.Errorf("parallel slerp = %v, want %v", dst, want)
	}
}

func TestLinesScale(t *testing.T) {
	tests := []struct {
		alpha, beta   float64
		block, blocks int
		want          float64
	}{
		{0.5, 0.5, 0, 12, 0.5},
		{0.5, 0.5, 11, 12, 1},
		{0.2, 0.8, 6, 13, 0.6},
		{0.3, 1, 0, 1, 0.3},
	}
	for _, tc := range tests {
		if got := linesScale(tc.alpha, tc.beta, tc.block, tc.blocks); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("linesScale(%v, %v, %d, %d) = %v, want %v", tc.alpha, tc.beta, tc.block, tc.blocks, got, tc.want)
		}
	}
}

func TestPackBits(t *testing.T) {
	bits := []bool{true, false, false, false, false, false, false, true, true, true}
	// numpy.packbits([1,0,0,0,0,0,0,1,1,1]) = [129, 192]
	if got := packBits(nil, bits); !slices.Equal(got, []byte{129, 192}) {
		t.Errorf("packBits = %v, want [129 192]", got)
	}
}
