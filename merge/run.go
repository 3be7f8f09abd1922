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

// plan holds a validated recipe and the whole-model statistics its passes
// collected.
type plan struct {
	cfg    *Config
	set    *tasks.Set
	n      int
	w      []float32
	ones   []float32
	layout *checkpoint.Layout

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

// Run merges the members of s into out as cfg says. It validates cfg for
// the number of members and fills in its defaults (cfg is modified), checks
// the outputs can be written, runs the statistics passes the method needs,
// then writes the merged model.
func Run(s *tasks.Set, cfg *Config, out string, wo tasks.WriteOptions, so tasks.StreamOptions) (*Result, error) {
	if err := cfg.Validate(len(s.Members)); err != nil {
		return nil, err
	}
	// Fail before the statistics passes, not after them.
	inputs := append(append([]string(nil), wo.Inputs...), s.Inputs()...)
	if err := checkpoint.CheckOutput(out, inputs, wo.Force); err != nil {
		return nil, err
	}
	if cfg.MasksOut != "" {
		if err := checkpoint.CheckOutput(cfg.MasksOut, append(inputs, out), wo.Force); err != nil {
			return nil, fmt.Errorf("--save-masks: %w", err)
		}
	}
	p := &plan{cfg: cfg, set: s, n: len(s.Members)}
	for _, w := range cfg.Weights {
		p.w = append(p.w, float32(w))
		p.ones = append(p.ones, 1)
	}
	res := &Result{Method: cfg.Method, Params: cfg.Params()}
	if cfg.Lines != nil {
		var names []string
		for _, t := range s.Base.Tensors() {
			names = append(names, t.Name)
		}
		l, err := checkpoint.NewLayout(names, cfg.Lines.LayerPattern)
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
	so.Models = !cfg.Method.usesTaskVectors()
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
	if cfg.Lines != nil {
		if cfg.Lines.Alpha == nil {
			res.Passes++
			a, err := p.linesAlphaPass(so)
			if err != nil {
				return nil, err
			}
			so.SkipFiniteCheck = true
			p.alpha = a
		} else {
			p.alpha = *cfg.Lines.Alpha
		}
		p.beta = *cfg.Lines.Beta
		res.Params["lines"] = map[string]any{"alpha": p.alpha, "beta": p.beta, "layout": p.layout.Family}
	}
	if cfg.MasksOut != "" {
		res.Passes++
		if err := p.writeMasks(so, wo.Force); err != nil {
			return nil, err
		}
	}
	res.Passes++
	err := s.WriteModel(out, wo, so, func(worker int, c *tasks.Chunk) error {
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
	switch c.Method {
	case ModelStock, SLERP, Breadcrumbs, BreadcrumbsTIES:
		return true
	}
	if c.Semantics == Mergekit {
		sparse := false
		for _, d := range c.Density {
			sparse = sparse || d < 1
		}
		return sparse && (c.Method == TIES || c.Method == DARELinear || c.Method == DARETIES) && (c.Method == TIES || *c.Rescale)
	}
	return p.trims() && c.TIESScope == ScopeTensor
}

// trims reports whether TIES trimming is a stage of the recipe.
func (p *plan) trims() bool {
	c := p.cfg
	return c.Method == TIES || (c.Method == Consensus && c.ConsensusBase == "ties")
}

func (p *plan) globalTrim() bool {
	return p.cfg.Semantics == Paper && p.trims() && p.cfg.TIESScope == ScopeModel
}

func (p *plan) electsPaper() bool {
	c := p.cfg
	return c.Semantics == Paper && (c.Method.electsSign() || (c.Method == Consensus && c.ConsensusBase == "ties"))
}

func (p *plan) globalMajority() bool {
	return p.electsPaper() && !(p.trims() && p.cfg.TIESScope == ScopeTensor)
}

// sparsify applies the recipe's sparsification to the chunk's task vectors
// in place.
func (p *plan) sparsify(worker int, c *tasks.Chunk, taus [][]float32) {
	cfg := p.cfg
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
			if cfg.Density[i] >= 1 {
				continue
			}
			before := l1(tau)
			keepTopK(tau, int64(cfg.Density[i]*float64(len(tau))), sc.keep)
			if *cfg.Rescale {
				rescaleL1(tau, before)
			}
		}
	case cfg.Method == DARELinear || cfg.Method == DARETIES:
		for i, tau := range taus {
			d := cfg.Density[i]
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
			if *cfg.Rescale {
				rescaleL1(tau, before)
			}
		}
	case cfg.Method == Breadcrumbs || cfg.Method == BreadcrumbsTIES:
		for i, tau := range taus {
			if cfg.Semantics == Mergekit && cfg.Density[i] >= 1 {
				continue
			}
			before := l1(tau)
			breadcrumbs(tau, cfg.Density[i], *cfg.Gamma, sc.keep)
			if cfg.Semantics == Mergekit && *cfg.Rescale {
				rescaleL1(tau, before)
			}
		}
	}
}

// majorityPass computes the global majority sign: the sign of the sum over
// all entries of sign(Σ_t τ̂_t), τ̂ the sparsified task vectors.
func (p *plan) majorityPass(so tasks.StreamOptions) error {
	var parts tasks.Ordered[int64]
	err := p.set.Scan(so, func(w int, c *tasks.Chunk) error {
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
// into dst; for whole-model methods it computes θ_merged − θ_0.
func (p *plan) delta(w int, c *tasks.Chunk, dst []float32) error {
	cfg := p.cfg
	switch cfg.Method {
	case Linear, ModelStock, SLERP:
		if err := p.mergeModels(c, dst); err != nil {
			return err
		}
		for i, b := range c.Base {
			dst[i] -= b
		}
		return nil
	case Consensus:
		return p.consensus(w, c, dst)
	}
	taus := p.sparseTaus(w, c)
	sc := p.scratchFor(w, len(c.Base))
	switch {
	case cfg.Semantics == Mergekit && cfg.Method.electsSign():
		weightedTIES(dst, taus, p.w, *cfg.Normalize)
	case cfg.Semantics == Mergekit:
		weightedSum(dst, taus, p.w, *cfg.Normalize)
	case cfg.Method.electsSign():
		tiesElectMerge(dst, taus, p.majorityFor(sc, taus), cfg.TIESAggregate == "sum")
	default:
		weightedSum(dst, taus, p.w, false)
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

// consensus is Consensus merging (Wang et al. 2024): τ_MTL is Σ_t τ_t (or
// TIES with disjoint sum), each task's TALL mask keeps |τ_t| > λ_t
// |τ_MTL − τ_t|, and entries selected by at least k masks keep τ_MTL.
func (p *plan) consensus(w int, c *tasks.Chunk, dst []float32) error {
	cfg := p.cfg
	sc := p.scratchFor(w, len(c.Base))
	if cfg.ConsensusBase == "ties" {
		taus := p.sparseTaus(w, c)
		tiesElectMerge(dst, taus, p.majorityFor(sc, taus), true)
	} else {
		weightedSum(dst, c.Taus, p.ones, false)
	}
	keepAgreed(dst, p.tallMasks(w, c, dst), cfg.K)
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

// mergeModels computes θ_merged of a whole-model method into dst.
func (p *plan) mergeModels(c *tasks.Chunk, dst []float32) error {
	cfg := p.cfg
	switch cfg.Method {
	case Linear:
		normalize := cfg.Normalize == nil || *cfg.Normalize
		linearAverage(dst, c.Models, p.w, normalize)
	case SLERP:
		slerp(dst, c.Base, c.Models[0], *cfg.T)
	case ModelStock:
		return modelStock(dst, c, cfg.FilterWise)
	}
	return nil
}

// modelStock merges per tensor (or per row with filterWise):
// θ = t · mean_t θ_t + (1 − t) θ_0 with t from the mean pairwise cosine of
// the task vectors.
func modelStock(dst []float32, c *tasks.Chunk, filterWise bool) error {
	row := len(dst)
	if filterWise && len(c.Tensor.Shape) > 1 {
		row = int(c.Tensor.Shape[len(c.Tensor.Shape)-1])
	}
	n := len(c.Models)
	rowTaus := make([][]float32, n)
	for start := 0; start < len(dst); start += max(row, 1) {
		end := start + row
		for i := range rowTaus {
			rowTaus[i] = c.Taus[i][start:end]
		}
		cos := meanPairCosine(rowTaus)
		if 1+float64(n-1)*cos == 0 {
			return fmt.Errorf("model_stock: tensor %q: the task vectors' mean cosine is %v = −1/(N−1), where the ratio N c/(1+(N−1)c) is undefined", c.Tensor.Name, cos)
		}
		t := float32(modelStockRatio(n, cos))
		for k := start; k < end; k++ {
			var avg float32
			for _, m := range c.Models {
				avg += m[k]
			}
			avg /= float32(n)
			dst[k] = t*avg + (1-t)*c.Base[k]
		}
	}
	return nil
}

// scale returns the coefficient of the merged task vector for a tensor:
// λ, or LiNeS's α + β ℓ/(L−1).
func (p *plan) scale(name string) float32 {
	if p.cfg.Lines != nil {
		d := p.layout.Depth(name)
		if !d.InBlock() {
			return float32(p.alpha)
		}
		return float32(linesScale(p.alpha, p.beta, d.Block, d.Blocks))
	}
	if p.cfg.Lambda != nil {
		return float32(*p.cfg.Lambda)
	}
	return 1
}

// final computes θ = θ_0 + scale · Δ into the chunk's output.
func (p *plan) final(w int, c *tasks.Chunk) error {
	if !p.cfg.Method.usesTaskVectors() && p.cfg.Lines == nil {
		return p.mergeModels(c, c.Out)
	}
	if err := p.delta(w, c, c.Out); err != nil {
		return err
	}
	simd.ScaleAdd(c.Out, c.Base, p.scale(c.Tensor.Name))
	return nil
}

// linesAlphaPass computes LiNeS's multi-task α = (‖Σ_t τ_t‖₁/‖τ_merged‖₁)/T
// (wang-kee/LiNeS: L1 norms of the plain sum and of the merged vector).
func (p *plan) linesAlphaPass(so tasks.StreamOptions) (float64, error) {
	type norms struct{ sum, merged float64 }
	var parts tasks.Ordered[norms]
	err := p.set.Scan(so, func(w int, c *tasks.Chunk) error {
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
