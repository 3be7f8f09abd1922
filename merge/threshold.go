package merge

import (
	"fmt"
	"math"
	mbits "math/bits"

	"github.com/editkit/editkit/internal/simd"
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
//  2. One full pass counts, per member, the entries below a window of
//     coarse bins around the estimate and the fine histogram (low 16 bits)
//     of the entries inside it, and the majority: an entry's trim decision
//     is certain outside the window, and an entry undecided for one member
//     t contributes sign(S_drop) for sure and sign(S_keep) − sign(S_drop)
//     more if it turns out kept, counted per fine position of t and summed
//     once the threshold is known. Entries undecided for several members are
//     rare and kept aside. The classification and the sure part are one
//     SIMD kernel (simd.WindowCount); only the undecided entries, a few per
//     cent, are handled one by one.
//  3. Only if the threshold lies outside its window (the sample misled), a
//     pass counts the full coarse histograms and another repeats step 2
//     with the exact bins.
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
	r, err := p.windowPass(so, ks, wins)
	if err != nil {
		return 1, err
	}
	passes = 1
	bins, belows, missed := r.bins(ks, wins)
	if missed {
		so.SkipFiniteCheck = true // the first pass checked every value
		coarse, err := p.coarsePass(so, ks)
		passes++
		if err != nil {
			return passes, err
		}
		exact := make([]window, p.n)
		for i, k := range ks {
			if k > 0 {
				bin, _ := coarseBin(coarse[i], k)
				exact[i] = window{lo: bin, width: 1}
			}
		}
		r, err = p.windowPass(so, ks, exact)
		passes++
		if err != nil {
			return passes, err
		}
		wins = exact
		if bins, belows, missed = r.bins(ks, wins); missed {
			return passes, fmt.Errorf("internal: TIES threshold outside its exact bin")
		}
	}
	fineIdx := make([]int, p.n)
	for i, k := range ks {
		if k == 0 {
			continue
		}
		bin, below := bins[i], belows[i]
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
	below    []int64   // [member]: entries below the window
	fine     [][]int64 // [member][window index]
	counters []*windowCounter
}

// bins finds, per member, the coarse bin holding its k-th smallest |τ| and
// the number of entries in lower bins; missed is set when a threshold
// lies outside its member's window.
func (r *windowResult) bins(ks []int64, wins []window) (bins []uint32, belows []int64, missed bool) {
	bins, belows = make([]uint32, len(ks)), make([]int64, len(ks))
	for i, k := range ks {
		if k == 0 {
			continue
		}
		below := r.below[i]
		found := false
		for j := range wins[i].width {
			var n int64
			for _, c := range r.fine[i][j<<16 : (j+1)<<16] {
				n += c
			}
			if below < k && below+n >= k {
				bins[i], belows[i], found = wins[i].lo+j, below, true
				break
			}
			below += n
		}
		missed = missed || !found
	}
	return bins, belows, missed
}

// windowPass counts, in one full pass, the entries below each member's
// window, the fine histograms inside it and, when the recipe needs it, the
// majority sign.
func (p *plan) windowPass(so tasks.StreamOptions, ks []int64, wins []window) (*windowResult, error) {
	counters := make([]*windowCounter, so.Workers)
	for w := range counters {
		counters[w] = newWindowCounter(ks, wins, p.globalMajority())
	}
	err := p.set.Scan(so, func(w int, c *tasks.Chunk) error {
		counters[w].add(c.Taus)
		return nil
	})
	if err != nil {
		return nil, err
	}
	r := &windowResult{below: counters[0].below, fine: counters[0].fine}
	for _, c := range counters[1:] {
		for i := range ks {
			r.below[i] += c.below[i]
			for b, v := range c.fine[i] {
				r.fine[i][b] += v
			}
		}
	}
	if p.globalMajority() {
		r.counters = counters
	}
	return r, nil
}

// coarsePass counts the members' full coarse histograms.
func (p *plan) coarsePass(so tasks.StreamOptions, ks []int64) ([][]int64, error) {
	per := make([][][]int64, so.Workers) // [worker][member][coarse bin]
	for w := range per {
		per[w] = make([][]int64, p.n)
		for i, k := range ks {
			if k > 0 {
				per[w][i] = make([]int64, coarseBins)
			}
		}
	}
	err := p.set.Scan(so, func(w int, c *tasks.Chunk) error {
		p.prepare(c)
		for i, tau := range c.Taus {
			if ks[i] > 0 {
				addCoarse(per[w][i], tau)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, h := range per[1:] {
		for i := range ks {
			for b, v := range h[i] {
				per[0][i][b] += v
			}
		}
	}
	return per[0], nil
}

// windowCounter counts one worker's share of a window pass: per member the
// entries below its window and the fine histogram of those inside it, and,
// with signs, the majority count; see the top of this file.
type windowCounter struct {
	wins      []window
	lo, width []uint32 // wins, as simd.WindowCount takes them
	below     []int64
	fine      [][]int64 // [member][window index], nil for members kept whole
	und       []uint8   // a bit per entry of a chunk: undecided for some member
	signs     bool
	sure      int64
	extra     [][]int64 // [member][window index]: sign(S_keep) − sign(S_drop)
	// undecided entries: their τ values, member-major per entry.
	undecided []float32
	overflow  bool
}

func newWindowCounter(ks []int64, wins []window, signs bool) *windowCounter {
	n := len(ks)
	c := &windowCounter{wins: make([]window, n), lo: make([]uint32, n), width: make([]uint32, n),
		below: make([]int64, n), fine: make([][]int64, n), signs: signs, extra: make([][]int64, n)}
	for i, k := range ks {
		if k > 0 {
			c.wins[i] = wins[i]
			c.lo[i], c.width[i] = wins[i].lo, wins[i].width
			c.fine[i] = make([]int64, int(wins[i].width)<<16)
			if signs {
				c.extra[i] = make([]int64, int(wins[i].width)<<16)
			}
		}
		// A member kept whole has the empty window [0, 0): every entry
		// lies above it, so every entry is surely kept.
	}
	return c
}

// add counts a chunk: the SIMD kernel classifies every entry and counts the
// sure part of the majority; the entries undecided for some member (a bit
// each) are then counted into the fine histograms and the majority one by
// one.
func (c *windowCounter) add(taus [][]float32) {
	n := len(taus[0])
	if cap(c.und) < (n+7)/8 {
		c.und = make([]uint8, (n+7)/8)
	}
	und := c.und[:(n+7)/8]
	sure := simd.WindowCount(taus, n, c.lo, c.width, c.below, und)
	if c.signs {
		c.sure += sure
	}
	for i, bits8 := range und {
		for ; bits8 != 0; bits8 &= bits8 - 1 {
			c.addUndecided(taus, 8*i+mbits.TrailingZeros8(bits8))
		}
	}
}

// addUndecided counts entry e, inside the window of some members: into
// those members' fine histograms and, with signs, into the majority.
// sumKept adds the entries surely kept, sumAll also the undecided ones,
// both in member order as the merge sums them.
func (c *windowCounter) addUndecided(taus [][]float32, e int) {
	var sumKept, sumAll float32
	which, nUnd := 0, 0
	for i, tau := range taus {
		v := tau[e]
		b := absBits(v)
		w := c.wins[i]
		switch hi := b >> 16; {
		case w.contains(hi):
			c.fine[i][w.index(b)]++
			sumKept += v * 0
			sumAll += v
			which = i
			nUnd++
		case hi >= w.lo+w.width:
			sumKept += v
			sumAll += v
		default:
			sumKept += v * 0
			sumAll += v * 0
		}
	}
	if !c.signs {
		return
	}
	if nUnd > 1 {
		if 4*len(c.undecided) >= maxUndecidedBytes {
			c.overflow = true
			return
		}
		for _, tau := range taus {
			c.undecided = append(c.undecided, tau[e])
		}
		return
	}
	sd := signInt(sumKept)
	c.sure += sd
	c.extra[which][c.wins[which].index(absBits(taus[which][e]))] += signInt(sumAll) - sd
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
func (c *windowCounter) total(fineIdx []int, thr []float32) int64 {
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
