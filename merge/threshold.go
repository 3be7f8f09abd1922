package merge

import (
	"math"

	"github.com/editkit/editkit/tasks"
)

// maxUndecided bounds the entries kept in memory whose majority-sign
// contribution depends on two or more unknown trim decisions; beyond it the
// majority takes a pass of its own.
const maxUndecided = 1 << 20

// thresholdPasses computes each member's whole-model TIES threshold by exact
// radix selection in two passes. When the recipe elects signs with a global
// majority, the second pass also counts that majority, so TIES reads the
// inputs three times in all rather than four.
//
// The majority is sign(Σ_e sign(Σ_t τ̂_t[e])), τ̂ the trimmed vectors. After
// the first pass only entries in each member's threshold bin are undecided.
// An entry undecided for one member t contributes sign(S_drop) for sure and
// sign(S_keep) − sign(S_drop) more if it turns out kept; that extra is
// counted per fine bin of t, and summed once the threshold's fine bin is
// known. Entries undecided for several members are rare and kept aside.
func (p *plan) thresholdPasses(so tasks.StreamOptions) error {
	var d int64
	for _, t := range p.set.Floats() {
		d += t.NumElements()
	}
	searches := make([]*kthSearch, p.n)
	active := false
	for i := range searches {
		if k := tiesThresholdIndex(d, p.cfg.Density[i]); k > 0 {
			searches[i] = newKthSearch(k)
			active = true
		}
	}
	p.thr = make([]float32, p.n) // 0 keeps everything
	if !active {
		return nil
	}
	workers := so.Workers
	hist := make([][][]int64, workers) // [worker][member]
	for w := range hist {
		hist[w] = make([][]int64, p.n)
		for i := range hist[w] {
			if searches[i] != nil {
				hist[w][i] = make([]int64, coarseBins)
			}
		}
	}
	err := p.set.Scan(so, func(w int, c *tasks.Chunk) error {
		for i, tau := range c.Taus {
			if searches[i] != nil {
				addCoarse(hist[w][i], tau)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, s := range searches {
		if s == nil {
			continue
		}
		for w := range hist {
			for b, v := range hist[w][i] {
				s.coarse[b] += v
			}
			hist[w][i] = make([]int64, fineBins)
		}
		s.endCoarse()
	}
	counters := make([]*majorityCounter, workers)
	withMajority := p.globalMajority()
	if withMajority {
		for w := range counters {
			counters[w] = newMajorityCounter(p.n, searches)
		}
	}
	so.SkipFiniteCheck = true // the first pass checked every value
	err = p.set.Scan(so, func(w int, c *tasks.Chunk) error {
		for i, tau := range c.Taus {
			if s := searches[i]; s != nil {
				addFine(hist[w][i], s.bin, tau)
			}
		}
		if withMajority {
			counters[w].add(c.Taus)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fineThr := make([]int, p.n)
	for i, s := range searches {
		if s == nil {
			continue
		}
		for w := range hist {
			for b, v := range hist[w][i] {
				s.fine[b] += v
			}
		}
		p.thr[i], _ = s.result()
		fineThr[i] = int(absBits(p.thr[i]) & 0xffff)
	}
	if !withMajority {
		return nil
	}
	var total int64
	for _, c := range counters {
		if c.overflow {
			return nil // majorityPass will count it
		}
		total += c.total(fineThr, p.thr)
	}
	p.majority = sign(float32(total))
	p.majorityKnown = true
	return nil
}

// majorityCounter counts one worker's share of the majority sign during the
// fine pass; see thresholdPasses.
type majorityCounter struct {
	searches []*kthSearch
	sure     int64
	extra    [][]int64 // [member][fine bin]: sign(S_keep) − sign(S_drop)
	// undecided entries: their τ values, member-major per entry.
	undecided []float32
	overflow  bool
	bins      []uint32
}

func newMajorityCounter(n int, searches []*kthSearch) *majorityCounter {
	c := &majorityCounter{searches: searches, extra: make([][]int64, n)}
	for i, s := range searches {
		if s != nil {
			c.extra[i] = make([]int64, fineBins)
		}
	}
	return c
}

func (c *majorityCounter) add(taus [][]float32) {
	n := len(taus)
	bins := c.bins[:0]
	for _, s := range c.searches {
		if s == nil {
			bins = append(bins, 1<<31) // no |τ| reaches it: always kept
		} else {
			bins = append(bins, s.bin)
		}
	}
	c.bins = bins
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
			bin := bins[i]
			keep := (bin - hi) >> 31 // 1 when hi > bin
			if bin == 1<<31 {
				keep = 1
			}
			x := hi ^ bin
			und := 1 ^ (x|-x)>>31 // 1 when hi == bin
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
			c.extra[which][absBits(taus[which][e])&0xffff] += signInt(sumAll) - sd
		default:
			if len(c.undecided) >= maxUndecided*n {
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

// total resolves the count once the thresholds are known: an entry in the
// threshold bin is kept when its fine bits reach the threshold's.
func (c *majorityCounter) total(fineThr []int, thr []float32) int64 {
	t := c.sure
	for i, ex := range c.extra {
		for f := fineThr[i]; f < len(ex); f++ {
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
