package merge

import (
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
	withMajority := p.globalMajority() && p.n < 256 // member indices fit a byte
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
	// per-chunk scratch
	sumKept, sumAll   []float32
	nUndecided, which []uint8
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
	m := len(taus[0])
	if cap(c.sumKept) < m {
		c.sumKept = make([]float32, m)
		c.sumAll = make([]float32, m)
		c.nUndecided = make([]uint8, m)
		c.which = make([]uint8, m)
	}
	// Member-major, branch-free passes: sumKept adds the entries surely
	// kept, sumAll also the undecided ones, both in member order as the
	// merge itself sums them.
	sumKept, sumAll, nUnd, which := c.sumKept[:m], c.sumAll[:m], c.nUndecided[:m], c.which[:m]
	clear(sumKept)
	clear(sumAll)
	clear(nUnd)
	for i, tau := range taus {
		s := c.searches[i]
		if s == nil {
			for e, v := range tau {
				sumKept[e] += v
				sumAll[e] += v
			}
			continue
		}
		for e, v := range tau {
			hi := absBits(v) >> 16
			var keep, und float32
			var u uint8
			if hi > s.bin {
				keep = 1
			}
			if hi == s.bin {
				und, u = 1, 1
			}
			sumKept[e] += v * keep
			sumAll[e] += v * (keep + und)
			nUnd[e] += u
			which[e] = which[e]*(1-u) + uint8(i)*u
		}
	}
	n := len(taus)
	for e := range m {
		switch nUnd[e] {
		case 0:
			c.sure += int64(sign(sumKept[e]))
		case 1:
			sd := int64(sign(sumKept[e]))
			c.sure += sd
			amb := which[e]
			c.extra[amb][absBits(taus[amb][e])&0xffff] += int64(sign(sumAll[e])) - sd
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
