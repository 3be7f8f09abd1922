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
		ks := make([]int64, n)
		wins := make([]window, n)
		thr := make([]float32, n)
		fine := make([]int, n)
		for i := range ks {
			if r.IntN(4) == 0 {
				continue // keeps everything
			}
			ks[i] = int64(1 + r.IntN(size))
			thr[i], _ = kthSmallestAbs(taus[i], ks[i])
			// Any window holding the threshold's coarse bin will do.
			bin := absBits(thr[i]) >> 16
			width := uint32(1 + r.IntN(3))
			lo := bin - min(bin, uint32(r.IntN(int(width))))
			wins[i] = window{lo: lo, width: width}
			fine[i] = wins[i].index(absBits(thr[i]))
		}
		// Two chunks, as two workers would see them.
		half := size / 2
		c := newWindowCounter(ks, wins, true)
		c.add(sliceAll(taus, 0, half))
		c2 := newWindowCounter(ks, wins, true)
		c2.add(sliceAll(taus, half, size))
		got := c.total(fine, thr) + c2.total(fine, thr)

		var want int64
		for e := range size {
			var acc float32
			for i := range taus {
				if ks[i] == 0 || absBits(taus[i][e]) >= absBits(thr[i]) {
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
