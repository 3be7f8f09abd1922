package merge

import (
	"fmt"
	"math"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/internal/simd"
	"github.com/editkit/editkit/tasks"
)

// Result reports what a merge did.
type Result struct {
	Method Method
	// Params are the resolved parameters, including values computed from the
	// data (TIES thresholds, majority sign, LiNeS α).
	Params map[string]any
	// Passes counts the streaming passes over the inputs.
	Passes int
}

// plan holds a resolved recipe and the whole-model statistics its passes
// collected.
type plan struct {
	cfg    *Config
	row    *methodRow
	set    *tasks.Set
	n      int
	ones   []float32
	layout *checkpoint.Layout
	// tp holds each float tensor's parameters (by Chunk.Index).
	tp []*tensorParams
	// round rounds to mergekit's dtype; nil computes in float32.
	round func([]float32)

	// whole makes every chunk a whole tensor (per-tensor statistics).
	whole bool
	// thr holds the global TIES thresholds per member (keep |τ| ≥ thr); nil
	// unless trimming over the whole model.
	thr []float32
	// majority is the global majority sign where elected signs are 0;
	// majorityKnown is set when the threshold passes could count it.
	majority      float32
	majorityKnown bool
	// alpha and beta are LiNeS's coefficients once resolved.
	alpha, beta float64

	scratch []*scratch
}

type scratch struct {
	sum   []float32
	delta []float32
	keep  []bool
	masks [][]bool
	taus  [][]float32
	f64   []float64
}

func (p *plan) scratchFor(worker, n int) *scratch {
	s := p.scratch[worker]
	if cap(s.sum) < n {
		s.sum = make([]float32, n)
		s.delta = make([]float32, n)
		s.keep = make([]bool, n)
	}
	s.sum, s.delta, s.keep = s.sum[:n], s.delta[:n], s.keep[:n]
	return s
}

// Run merges the members of s into out as cfg says. It resolves cfg for the
// number of members (cfg itself is not changed), checks the outputs can be
// written, runs the statistics passes the method needs, then writes the
// merged model.
func Run(s *tasks.Set, cfg *Config, out string, wo tasks.WriteOptions, so tasks.StreamOptions) (*Result, error) {
	rc, err := cfg.Resolve(len(s.Members))
	if err != nil {
		return nil, err
	}
	// Fail before the statistics passes, not after them.
	inputs := append(append([]string(nil), wo.Inputs...), s.Inputs()...)
	if err := checkpoint.CheckOutput(out, inputs, wo.Force); err != nil {
		return nil, err
	}
	if rc.MasksOut != "" {
		if err := checkpoint.CheckOutput(rc.MasksOut, append(inputs, out), wo.Force); err != nil {
			return nil, fmt.Errorf("--save-masks: %w", err)
		}
	}
	p := &plan{cfg: &rc, row: rowOf(rc.Method), set: s, n: len(s.Members), round: rounding(rc.DType)}
	for range p.n {
		p.ones = append(p.ones, 1)
	}
	if p.tp, err = tensorParamsFor(&rc, p.n, s.Floats()); err != nil {
		return nil, err
	}
	res := &Result{Method: rc.Method, Params: rc.Params()}
	if rc.Lines != nil {
		var names []string
		for _, t := range s.Base.Tensors() {
			names = append(names, t.Name)
		}
		l, err := checkpoint.NewLayout(names, rc.Lines.LayerPattern)
		if err != nil {
			return nil, err
		}
		if len(l.Stacks()) == 0 {
			return nil, fmt.Errorf("LiNeS: no residual blocks recognised in %s (family %q): pass --layer-pattern with a capture group for the block index", s.Base.Path, l.Family)
		}
		p.layout = l
		res.Params["lines_layout"] = l.Family
	}
	p.whole = p.needsWhole()
	if so.Workers <= 0 {
		so.Workers = tasks.DefaultWorkers()
	}
	so.Whole = p.whole
	so.Models = !p.row.taskVectors || p.round != nil
	p.scratch = make([]*scratch, so.Workers)
	for i := range p.scratch {
		p.scratch[i] = &scratch{}
	}
	if p.globalTrim() {
		n, err := p.thresholdPasses(so)
		res.Passes += n
		if err != nil {
			return nil, err
		}
		thr := make([]float64, p.n)
		for i, v := range p.thr {
			thr[i] = float64(v)
		}
		res.Params["ties_thresholds"] = thr
		if p.majorityKnown {
			res.Params["majority_sign"] = p.majority
		}
		// Later passes read values the first one checked.
		so.SkipFiniteCheck = so.SkipFiniteCheck || n > 0
	}
	if p.globalMajority() && !p.majorityKnown {
		res.Passes++
		if err := p.majorityPass(so); err != nil {
			return nil, err
		}
		so.SkipFiniteCheck = true
		res.Params["majority_sign"] = p.majority
	}
	if rc.Lines != nil {
		if rc.Lines.Alpha == nil {
			res.Passes++
			a, err := p.linesAlphaPass(so)
			if err != nil {
				return nil, err
			}
			so.SkipFiniteCheck = true
			p.alpha = a
		} else {
			p.alpha = *rc.Lines.Alpha
		}
		p.beta = *rc.Lines.Beta
		res.Params["lines"] = map[string]any{"alpha": p.alpha, "beta": p.beta, "layout": p.layout.Family}
	}
	if rc.MasksOut != "" {
		res.Passes++
		if err := p.writeMasks(so, wo.Force); err != nil {
			return nil, err
		}
	}
	res.Passes++
	err = s.WriteModel(out, wo, so, func(worker int, c *tasks.Chunk) error {
		return p.final(worker, c)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// needsWhole reports whether some stage needs whole tensors.
func (p *plan) needsWhole() bool {
	c := p.cfg
	if p.row.whole {
		return true
	}
	if c.Semantics == Mergekit {
		sparse := false
		for _, tp := range p.tp {
			for _, d := range tp.density {
				sparse = sparse || d < 1
			}
			// mergekit's magnitude keeps exactly int(density·n) per
			// tensor; DARE's L1 rescale needs the tensor's norms.
			if sparse && (p.row.sparsify == magnitude || p.row.sparsify == random && tp.rescale) {
				return true
			}
		}
		return false
	}
	return p.trims() && c.TIESScope == ScopeTensor
}

// trims reports whether TIES trimming is a stage of the recipe.
func (p *plan) trims() bool {
	return p.row.sparsify == magnitude || (p.cfg.Method == Consensus && p.cfg.ConsensusBase == "ties")
}

func (p *plan) globalTrim() bool {
	return p.cfg.Semantics == Paper && p.trims() && p.cfg.TIESScope != ScopeTensor
}

func (p *plan) electsPaper() bool {
	c := p.cfg
	return c.Semantics == Paper && (p.row.signs || (c.Method == Consensus && c.ConsensusBase == "ties"))
}

func (p *plan) globalMajority() bool {
	return p.electsPaper() && !(p.trims() && p.cfg.TIESScope == ScopeTensor)
}

// prepare rounds the chunk's inputs to mergekit's dtype and takes the task
// vectors of the rounded values. Every pass calls it first on each chunk.
func (p *plan) prepare(c *tasks.Chunk) {
	if p.round == nil {
		return
	}
	p.round(c.Base)
	for i, m := range c.Models {
		p.round(m)
		tau := c.Taus[i]
		for k, v := range m {
			tau[k] = v - c.Base[k]
		}
		p.round(tau)
	}
}

// sparsify applies the recipe's sparsification to the chunk's task vectors
// in place.
func (p *plan) sparsify(worker int, c *tasks.Chunk, taus [][]float32) {
	cfg := p.cfg
	tp := p.tp[c.Index]
	sc := p.scratchFor(worker, len(c.Base))
	switch {
	case p.trims() && cfg.Semantics == Paper:
		for i, tau := range taus {
			thr := float32(0)
			if p.thr != nil {
				thr = p.thr[i]
			} else if k := tiesThresholdIndex(int64(len(tau)), cfg.Density[i]); k > 0 {
				thr, _ = kthSmallestAbs(tau, k)
			}
			trimBelow(tau, thr)
		}
	case p.trims(): // mergekit's magnitude: exactly int(density·n) per tensor
		for i, tau := range taus {
			if tp.density[i] >= 1 {
				continue
			}
			before := l1(tau)
			keepTopK(tau, int64(tp.density[i]*float64(len(tau))), sc.keep)
			p.rescale(tp, tau, before)
		}
	case p.row.sparsify == random:
		for i, tau := range taus {
			d := tp.density[i]
			if d >= 1 {
				continue
			}
			key := streamKey(cfg.Seed, i, c.Tensor.Name)
			if cfg.Semantics == Paper {
				dropRandom(tau, key, c.Start, d, float32(1/d))
				continue
			}
			before := l1(tau)
			dropRandom(tau, key, c.Start, d, 1)
			p.rescale(tp, tau, before)
		}
	case p.row.sparsify == outliers:
		for i, tau := range taus {
			if cfg.Semantics == Mergekit && tp.density[i] >= 1 {
				continue
			}
			before := l1(tau)
			breadcrumbs(tau, tp.density[i], tp.gamma[i], sc.keep)
			if cfg.Semantics == Mergekit {
				p.rescale(tp, tau, before)
			}
		}
	case p.row.sparsify == magprune:
		for i, tau := range taus {
			if tp.density[i] >= 1 {
				continue
			}
			before := l1(tau)
			dellaPrune(tau, c.Tensor.Shape, tp.density[i], tp.epsilon[i], streamKey(cfg.Seed, i, c.Tensor.Name))
			p.rescale(tp, tau, before)
		}
	}
}

// rescale is mergekit's optional L1 rescale of a sparsified task vector,
// rounded to the dtype.
func (p *plan) rescale(tp *tensorParams, tau []float32, before float64) {
	if tp.rescale {
		rescaleL1(tau, before)
	}
	if p.round != nil {
		p.round(tau)
	}
}

// majorityPass computes the global majority sign: the sign of the sum over
// all entries of sign(Σ_t τ̂_t), τ̂ the sparsified task vectors.
func (p *plan) majorityPass(so tasks.StreamOptions) error {
	var parts tasks.Ordered[int64]
	err := p.set.Scan(so, func(w int, c *tasks.Chunk) error {
		p.prepare(c)
		taus := p.sparseTaus(w, c)
		sc := p.scratchFor(w, len(c.Base))
		signSum(sc.sum, taus)
		parts.Put(c.Seq, countSigns(sc.sum))
		return nil
	})
	if err != nil {
		return err
	}
	var total int64
	parts.Each(func(v int64) { total += v })
	p.majority = sign(float32(total))
	return nil
}

// sparseTaus returns the chunk's task vectors after sparsification. For
// consensus it works on copies: the TALL masks need the originals.
func (p *plan) sparseTaus(w int, c *tasks.Chunk) [][]float32 {
	taus := c.Taus
	if p.cfg.Method == Consensus {
		sc := p.scratch[w]
		if len(sc.taus) != p.n {
			sc.taus = make([][]float32, p.n)
		}
		for i, tau := range c.Taus {
			sc.taus[i] = append(sc.taus[i][:0], tau...)
		}
		taus = sc.taus
	}
	p.sparsify(w, c, taus)
	return taus
}

// delta computes the merged task vector of the chunk (before λ or LiNeS)
// into dst; for methods that merge models it computes θ_merged − θ_0.
func (p *plan) delta(w int, c *tasks.Chunk, dst []float32) error {
	cfg := p.cfg
	tp := p.tp[c.Index]
	if !p.row.taskVectors {
		if err := p.row.merge(p, c, tp, dst); err != nil {
			return err
		}
		for i, b := range c.Base {
			dst[i] -= b
		}
		return nil
	}
	if p.row.combine != nil {
		return p.row.combine(p, w, c, tp, dst)
	}
	taus := p.sparseTaus(w, c)
	sc := p.scratchFor(w, len(c.Base))
	switch {
	case cfg.Semantics == Mergekit && p.row.signs:
		weightedTIES(dst, taus, tp.w, tp.normalize)
	case cfg.Semantics == Mergekit:
		weightedSum(dst, taus, tp.w, tp.normalize)
	case p.row.signs:
		tiesElectMerge(dst, taus, p.majorityFor(sc, taus), cfg.TIESAggregate == "sum")
	default:
		weightedSum(dst, taus, tp.w, false)
	}
	if p.round != nil {
		p.round(dst)
	}
	return nil
}

// majorityFor returns the sign that fills elected signs of 0: the global
// majority, or, when TIES trims per tensor, the tensor's own majority.
func (p *plan) majorityFor(sc *scratch, taus [][]float32) float32 {
	if p.globalMajority() {
		return p.majority
	}
	signSum(sc.sum, taus)
	return sign(float32(countSigns(sc.sum)))
}

// combineConsensus is Consensus merging (Wang et al. 2024): τ_MTL is Σ_t τ_t
// (or TIES with disjoint sum), each task's TALL mask keeps |τ_t| > λ_t
// |τ_MTL − τ_t|, and entries selected by at least k masks keep τ_MTL.
func combineConsensus(p *plan, w int, c *tasks.Chunk, _ *tensorParams, dst []float32) error {
	cfg := p.cfg
	sc := p.scratchFor(w, len(c.Base))
	if cfg.ConsensusBase == "ties" {
		taus := p.sparseTaus(w, c)
		tiesElectMerge(dst, taus, p.majorityFor(sc, taus), true)
	} else {
		weightedSum(dst, c.Taus, p.ones, false)
	}
	keepAgreed(dst, p.tallMasks(w, c, dst), *cfg.K)
	return nil
}

func (p *plan) tallMasks(w int, c *tasks.Chunk, mtl []float32) [][]bool {
	sc := p.scratch[w]
	if len(sc.masks) != p.n {
		sc.masks = make([][]bool, p.n)
	}
	for i, tau := range c.Taus {
		if cap(sc.masks[i]) < len(tau) {
			sc.masks[i] = make([]bool, len(tau))
		}
		sc.masks[i] = sc.masks[i][:len(tau)]
		tallMask(sc.masks[i], tau, mtl, float32(p.cfg.TallLambda[i]))
	}
	return sc.masks
}

// scale returns the coefficient of the merged task vector for a tensor:
// λ, or LiNeS's α + β ℓ/(L−1).
func (p *plan) scale(c *tasks.Chunk) float32 {
	if p.cfg.Lines != nil {
		d := p.layout.Depth(c.Tensor.Name)
		if !d.InBlock() {
			return float32(p.alpha)
		}
		return float32(linesScale(p.alpha, p.beta, d.Block, d.Blocks))
	}
	return float32(p.tp[c.Index].lambda)
}

// final computes θ = θ_0 + scale · Δ into the chunk's output.
func (p *plan) final(w int, c *tasks.Chunk) error {
	p.prepare(c)
	if !p.row.taskVectors && p.cfg.Lines == nil {
		if err := p.row.merge(p, c, p.tp[c.Index], c.Out); err != nil {
			return err
		}
		if p.round != nil {
			p.round(c.Out)
		}
		return nil
	}
	if err := p.delta(w, c, c.Out); err != nil {
		return err
	}
	s := p.scale(c)
	if p.round != nil && s != 1 {
		simd.MulScalar(c.Out, c.Out, s)
		p.round(c.Out)
		s = 1
	}
	simd.ScaleAdd(c.Out, c.Base, s)
	if p.round != nil {
		p.round(c.Out)
	}
	return nil
}

// linesAlphaPass computes LiNeS's multi-task α = (‖Σ_t τ_t‖₁/‖τ_merged‖₁)/T
// (wang-kee/LiNeS: L1 norms of the plain sum and of the merged vector).
func (p *plan) linesAlphaPass(so tasks.StreamOptions) (float64, error) {
	type norms struct{ sum, merged float64 }
	var parts tasks.Ordered[norms]
	err := p.set.Scan(so, func(w int, c *tasks.Chunk) error {
		p.prepare(c)
		sc := p.scratchFor(w, len(c.Base))
		var nm norms
		for i := range sc.sum {
			var acc float32
			for _, tau := range c.Taus {
				acc += tau[i]
			}
			nm.sum += math.Abs(float64(acc))
		}
		if err := p.delta(w, c, sc.delta); err != nil {
			return err
		}
		nm.merged = l1(sc.delta)
		parts.Put(c.Seq, nm)
		return nil
	})
	if err != nil {
		return 0, err
	}
	var total norms
	parts.Each(func(v norms) { total.sum += v.sum; total.merged += v.merged })
	if total.merged == 0 {
		return 0, fmt.Errorf("LiNeS: the merged task vector is zero, so the multi-task α = ‖Σ τ‖₁/‖τ_merged‖₁/T is undefined: give --lines-alpha")
	}
	return total.sum / total.merged / float64(p.n), nil
}
