package merge

import (
	"math"

	"github.com/editkit/editkit/tasks"
)

// TIES's whole-model threshold is an exact order statistic of |τ| over every
// entry of a task vector, and its sign election needs the whole-model
// majority sign(Σ_e sign(Σ_t τ̂_t[e])) of the trimmed vectors τ̂. Both are
// found in streaming passes over the inputs, with fixed-size histograms of
// float32 bit patterns (see selection.go):
//
//  1. A sample of 1/sampleEvery of every tensor estimates which coarse bin
//     (high 16 bits of |τ|) holds each member's threshold.
//  2. One full pass counts the coarse histogram exactly, the fine histogram
//     (low 16 bits) of the entries in a window of coarse bins around the
//     estimate, and the majority: an entry's trim decision is certain
//     outside the window, and an entry undecided for one member t
//     contributes sign(S_drop) for sure and sign(S_keep) − sign(S_drop)
//     more if it turns out kept, counted per fine position of t and summed
//     once the threshold is known. Entries undecided for several members are
//     rare and kept aside.
//  3. Only if the coarse histogram puts a threshold outside its window (the
//     sample misled), a second full pass repeats step 2 with the exact bins.
//
// So TIES reads its inputs about twice in all: this pass and the merge.

// sampleEvery is the sampling stride of the estimate, in chunks.
const sampleEvery = 64

// windowBins is the number of coarse bins resolved exactly around the
// estimated threshold bin.
const windowBins = 2

// maxUndecidedBytes bounds the memory holding entries undecided for several
// members; beyond it the majority takes a pass of its own.
const maxUndecidedBytes = 64 << 20

// window is a run of coarse bins [lo, lo+width) resolved to full precision.
type window struct{ lo, width uint32 }

func (w window) contains(bin uint32) bool { return bin-w.lo < w.width }

// index is the position of bits (in the window) in fine-resolution counts.
func (w window) index(bits uint32) int { return int(bits>>16-w.lo)<<16 | int(bits&0xffff) }

// thresholdPasses sets p.thr, and p.majority when the recipe needs the
// whole-model majority.
func (p *plan) thresholdPasses(so tasks.StreamOptions) (passes int, err error) {
	var d int64
	for _, t := range p.set.Floats() {
		d += t.NumElements()
	}
	ks := make([]int64, p.n)
	active := false
	for i := range ks {
		ks[i] = tiesThresholdIndex(d, p.cfg.Density[i])
		active = active || ks[i] > 0
	}
	p.thr = make([]float32, p.n) // 0 keeps everything
	if !active {
		return 0, nil
	}
	wins, err := p.estimateWindows(so, ks, d)
	if err != nil {
		return 0, err
	}
	r, err := p.windowPass(so, ks, wins, true)
	if err != nil {
		return 1, err
	}
	passes = 1
	coarse := r.coarse
	exact := make([]window, p.n)
	missed := false
	for i, k := range ks {
		if k == 0 {
			continue
		}
		bin, _ := coarseBin(coarse[i], k)
		exact[i] = window{lo: bin, width: 1}
		missed = missed || !wins[i].contains(bin)
	}
	if missed {
		so.SkipFiniteCheck = true // the first pass checked every value
		if r, err = p.windowPass(so, ks, exact, false); err != nil {
			return passes + 1, err
		}
		passes++
		wins = exact
	}
	fineIdx := make([]int, p.n)
	for i, k := range ks {
		if k == 0 {
			continue
		}
		bin, below := coarseBin(coarse[i], k)
		f := fineValue(r.fine[i], wins[i], bin, k-below)
		p.thr[i] = math.Float32frombits(bin<<16 | f)
		fineIdx[i] = wins[i].index(bin<<16 | f)
	}
	if r.counters == nil {
		return passes, nil
	}
	var total int64
	for _, c := range r.counters {
		if c.overflow {
			return passes, nil // majorityPass will count it
		}
		total += c.total(fineIdx, p.thr)
	}
	p.majority = sign(float32(total))
	p.majorityKnown = true
	return passes, nil
}

// coarseBin returns the coarse bin holding the k-th smallest value and the
// number of values in lower bins.
func coarseBin(h []int64, k int64) (uint32, int64) {
	var cum int64
	for b, n := range h {
		if cum+n >= k {
			return uint32(b), cum
		}
		cum += n
	}
	return uint32(len(h) - 1), cum
}

// fineValue returns the low 16 bits of the k-th smallest value of a coarse
// bin, from fine counts over a window containing it.
func fineValue(fine []int64, w window, bin uint32, k int64) uint32 {
	base := w.index(bin << 16)
	var cum int64
	for f := range fineBins {
		cum += fine[base+f]
		if cum >= k {
			return uint32(f)
		}
	}
	return fineBins - 1
}

// estimateWindows samples the task vectors and returns, per member, a
// window of coarse bins likely to hold its threshold.
func (p *plan) estimateWindows(so tasks.StreamOptions, ks []int64, d int64) ([]window, error) {
	so.Sample = sampleEvery
	hist := make([][][]float64, so.Workers) // [worker][member][coarse bin]
	for w := range hist {
		hist[w] = make([][]float64, p.n)
		for i := range hist[w] {
			hist[w][i] = make([]float64, coarseBins)
		}
	}
	err := p.set.Scan(so, func(w int, c *tasks.Chunk) error {
		p.prepare(c)
		for i, tau := range c.Taus {
			h := hist[w][i]
			for _, v := range tau {
				h[absBits(v)>>16] += c.Weight
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	wins := make([]window, p.n)
	for i, k := range ks {
		if k == 0 {
			continue
		}
		h := hist[0][i]
		var total float64
		for w := 1; w < len(hist); w++ {
			for b, v := range hist[w][i] {
				h[b] += v
			}
		}
		for _, v := range h {
			total += v
		}
		// The sample's estimate of the k-th smallest, as a position in
		// [0, total); the window reaches into the neighbouring bin on the
		// side the estimate is closer to.
		target := float64(k) / float64(d) * total
		var cum float64
		bin, frac := uint32(coarseBins-1), 0.5
		for b, v := range h {
			if cum+v >= target {
				bin = uint32(b)
				if v > 0 {
					frac = (target - cum) / v
				}
				break
			}
			cum += v
		}
		lo := bin
		if frac < 0.5 && bin > 0 {
			lo = bin - 1
		}
		wins[i] = window{lo: lo, width: windowBins}
	}
	return wins, nil
}

// windowResult holds what a window pass counted, reduced over workers.
type windowResult struct {
	coarse   [][]int64 // [member][coarse bin], when counted
	fine     [][]int64 // [member][window index]
	counters []*majorityCounter
}

// windowPass counts, in one full pass, the coarse histograms (withCoarse),
// the fine histograms inside each member's window and, when the recipe
// needs it, the majority sign.
func (p *plan) windowPass(so tasks.StreamOptions, ks []int64, wins []window, withCoarse bool) (*windowResult, error) {
	workers := so.Workers
	type counts struct{ coarse, fine [][]int64 }
	per := make([]counts, workers)
	for w := range per {
		per[w] = counts{coarse: make([][]int64, p.n), fine: make([][]int64, p.n)}
		for i, k := range ks {
			if k == 0 {
				continue
			}
			if withCoarse {
				per[w].coarse[i] = make([]int64, coarseBins)
			}
			per[w].fine[i] = make([]int64, int(wins[i].width)<<16)
		}
	}
	var counters []*majorityCounter
	if p.globalMajority() {
		counters = make([]*majorityCounter, workers)
		for w := range counters {
			counters[w] = newMajorityCounter(ks, wins)
		}
	}
	err := p.set.Scan(so, func(w int, c *tasks.Chunk) error {
		p.prepare(c)
		for i, tau := range c.Taus {
			if ks[i] == 0 {
				continue
			}
			if withCoarse {
				addCoarse(per[w].coarse[i], tau)
			}
			addWindow(per[w].fine[i], wins[i], tau)
		}
		if counters != nil {
			counters[w].add(c.Taus)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	r := &windowResult{coarse: per[0].coarse, fine: per[0].fine, counters: counters}
	for w := 1; w < workers; w++ {
		for i := range ks {
			for b, v := range per[w].coarse[i] {
				r.coarse[i][b] += v
			}
			for b, v := range per[w].fine[i] {
				r.fine[i][b] += v
			}
		}
	}
	return r, nil
}

// addWindow counts, at full precision, the entries whose coarse bin lies in w.
func addWindow(h []int64, w window, data []float32) {
	for _, v := range data {
		if b := absBits(v); w.contains(b >> 16) {
			h[w.index(b)]++
		}
	}
}

// majorityCounter counts one worker's share of the majority sign during a
// window pass; see the top of this file.
type majorityCounter struct {
	wins  []window
	sure  int64
	extra [][]int64 // [member][window index]: sign(S_keep) − sign(S_drop)
	// undecided entries: their τ values, member-major per entry.
	undecided []float32
	overflow  bool
}

func newMajorityCounter(ks []int64, wins []window) *majorityCounter {
	c := &majorityCounter{wins: make([]window, len(ks)), extra: make([][]int64, len(ks))}
	for i, k := range ks {
		if k > 0 {
			c.wins[i] = wins[i]
			c.extra[i] = make([]int64, int(wins[i].width)<<16)
		}
		// A member kept whole has the empty window [0, 0): every entry
		// lies above it, so every entry is surely kept.
	}
	return c
}

func (c *majorityCounter) add(taus [][]float32) {
	sure := c.sure
	for e := range taus[0] {
		// Branch-free over members: trim decisions on real weights are
		// close to random, and mispredicted branches cost more than the
		// arithmetic. sumKept adds the entries surely kept, sumAll also the
		// undecided ones, both in member order as the merge sums them.
		var sumKept, sumAll float32
		var nUnd, which uint32
		for i, tau := range taus {
			v := tau[e]
			hi := absBits(v) >> 16
			w := c.wins[i]
			off := uint64(hi - w.lo) // wraps above 2^31 when hi < lo
			und := uint32((off - uint64(w.width)) >> 63)
			keep := uint32((uint64(w.lo+w.width) - 1 - uint64(hi)) >> 63) // hi ≥ lo+width
			sumKept += v * float32(keep)
			sumAll += v * float32(keep|und)
			nUnd += und
			which = which*(1-und) + uint32(i)*und
		}
		switch nUnd {
		case 0:
			sure += signInt(sumKept)
		case 1:
			sd := signInt(sumKept)
			sure += sd
			c.extra[which][c.wins[which].index(absBits(taus[which][e]))] += signInt(sumAll) - sd
		default:
			if 4*len(c.undecided) >= maxUndecidedBytes {
				c.overflow = true
				continue
			}
			for _, tau := range taus {
				c.undecided = append(c.undecided, tau[e])
			}
		}
	}
	c.sure = sure
}

// signInt is the sign of v as −1, 0 or 1, without branches.
func signInt(v float32) int64 {
	b := math.Float32bits(v)
	nz := int64((b&0x7fffffff + 0x7fffffff) >> 31)
	return nz - 2*nz*int64(b>>31)
}

// total resolves the count once the thresholds are known: an undecided
// entry is kept when its bits reach the threshold's, that is when its
// window index reaches fineIdx.
func (c *majorityCounter) total(fineIdx []int, thr []float32) int64 {
	t := c.sure
	for i, ex := range c.extra {
		for f := fineIdx[i]; f < len(ex); f++ {
			t += ex[f]
		}
	}
	n := len(c.extra)
	for k := 0; k < len(c.undecided); k += n {
		var acc float32
		for i, v := range c.undecided[k : k+n] {
			if absBits(v) >= absBits(thr[i]) {
				acc += v
			}
		}
		t += int64(sign(acc))
	}
	return t
}
