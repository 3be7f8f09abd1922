package merge

import (
	"math/rand/v2"
	"testing"
)

// TestMajorityCounterMatchesDirectCount checks the fused majority count
// against trimming with known thresholds and counting signs directly.
func TestMajorityCounterMatchesDirectCount(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for trial := range 30 {
		n := 2 + r.IntN(3)
		size := 50 + r.IntN(300)
		taus := make([][]float32, n)
		for i := range taus {
			taus[i] = make([]float32, size)
			for e := range taus[i] {
				// Few distinct values: many entries share the threshold bin,
				// including for several members at once.
				taus[i][e] = float32(r.IntN(9)-4) / 8
			}
		}
		searches := make([]*kthSearch, n)
		thr := make([]float32, n)
		fine := make([]int, n)
		for i := range searches {
			if r.IntN(4) == 0 {
				continue // keeps everything
			}
			k := int64(1 + r.IntN(size))
			s := newKthSearch(k)
			addCoarse(s.coarse, taus[i])
			s.endCoarse()
			addFine(s.fine, s.bin, taus[i])
			thr[i], _ = s.result()
			fine[i] = int(absBits(thr[i]) & 0xffff)
			searches[i] = s
		}
		c := newMajorityCounter(n, searches)
		// Two chunks, as two workers would see them.
		half := size / 2
		c.add(sliceAll(taus, 0, half))
		c2 := newMajorityCounter(n, searches)
		c2.add(sliceAll(taus, half, size))
		got := c.total(fine, thr) + c2.total(fine, thr)

		var want int64
		for e := range size {
			var acc float32
			for i := range taus {
				if searches[i] == nil || absBits(taus[i][e]) >= absBits(thr[i]) {
					acc += taus[i][e]
				}
			}
			want += int64(sign(acc))
		}
		if got != want {
			t.Fatalf("trial %d: fused count %d, direct count %d", trial, got, want)
		}
	}
}

func sliceAll(taus [][]float32, lo, hi int) [][]float32 {
	out := make([][]float32, len(taus))
	for i, t := range taus {
		out[i] = t[lo:hi]
	}
	return out
}
