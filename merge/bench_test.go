package merge

import (
	"math/rand/v2"
	"testing"
)

func benchTaus(n, m int) [][]float32 {
	r := rand.New(rand.NewPCG(1, 1))
	taus := make([][]float32, n)
	for i := range taus {
		taus[i] = make([]float32, m)
		for e := range taus[i] {
			taus[i][e] = float32(r.NormFloat64() * 0.003)
		}
	}
	return taus
}

func BenchmarkWindowCounterAdd(b *testing.B) {
	taus := benchTaus(4, 1<<16)
	ks := make([]int64, 4)
	wins := make([]window, 4)
	for i := range ks {
		ks[i] = int64(0.8 * float64(len(taus[i])))
		thr, _ := kthSmallestAbs(taus[i], ks[i])
		wins[i] = window{lo: absBits(thr)>>16 - 1, width: windowBins}
	}
	c := newWindowCounter(ks, wins, true)
	b.SetBytes(4 << 16)
	for b.Loop() {
		c.add(taus)
	}
}

func BenchmarkTIESElectMerge(b *testing.B) {
	taus := benchTaus(4, 1<<16)
	dst := make([]float32, 1<<16)
	b.SetBytes(4 << 16)
	for b.Loop() {
		tiesElectMerge(dst, taus, 1, false)
	}
}

func BenchmarkBaselineSum(b *testing.B) {
	taus := benchTaus(4, 1<<16)
	dst := make([]float32, 1<<16)
	b.SetBytes(4 << 16)
	for b.Loop() {
		signSum(dst, taus)
	}
}
