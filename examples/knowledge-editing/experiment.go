package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/memoir"
)

// variant is one row group of the table: a method, for MEMOIR with its
// routing threshold.
type variant struct {
	Name   string        `json:"name"`
	Method memoir.Method `json:"method"`
	// Threshold is MEMOIR's fixed τ, FalseRouting its automatic τ's target
	// (0 for the fixed one).
	Threshold    float64 `json:"threshold,omitempty"`
	FalseRouting float64 `json:"false_routing,omitempty"`
	// LR is FT-L's calibrated learning rate.
	LR float64 `json:"lr,omitempty"`
	// Results: T = 1 (the mean of single-edit runs), then each count.
	Results []*memoir.Result `json:"results"`
	// Taus is the automatic τ in effect at each T of Results.
	Taus []float64 `json:"taus,omitempty"`
}

// overlapRecord is MEMOIR's routing overlaps after T edits.
type overlapRecord struct {
	T        int              `json:"t"`
	AutoTau  float64          `json:"auto_tau"`
	Overlaps *memoir.Overlaps `json:"overlaps"`
	// Quantiles (10th, 50th, 90th percentile) of each kind, and the share
	// of locality prompts whose best overlap reaches each τ, with what
	// chance predicts for it.
	Rephrase, RephraseBest, Locality     [3]float64
	RephraseOwnBest                      float64
	LocalityRouted04, LocalityRoutedAuto float64
	ChanceRouted04, ChanceRoutedAuto     float64
	Plot                                 string `json:"plot"`
}

// costRecord is what an edit costs a method.
type costRecord struct {
	Method         string  `json:"method"`
	SecondsPerEdit float64 `json:"seconds_per_edit"`
	// FixedBytes is the state whose size does not depend on the number of
	// edits (MEMOIR's W_m, FT-L's down_proj delta), BytesPerEdit what each
	// edit adds (a mask, a codebook entry), FileBytes the memory file after
	// the most edits, Edits how many.
	FixedBytes   int64   `json:"fixed_bytes"`
	BytesPerEdit float64 `json:"bytes_per_edit"`
	FileBytes    int64   `json:"file_bytes"`
	Edits        int     `json:"edits"`
}

// editingSettings are the experiment's part of the settings.
type editingSettings struct {
	Layer      int
	Singles    int   // single-edit runs averaged for T = 1
	Counts     []int // sequential T
	Background []string
	// Calibration are held-out edits (not evaluated) on which FT-L's
	// learning rate is chosen.
	Calibration []memoir.EditRequest
	// MEMOIRIterations, when positive, replaces MEMOIR's 30 iterations.
	MEMOIRIterations int
}

// ftlRates are the learning rates FT-L's calibration tries, EasyEdit's
// 5e-4 (for 7B models) first.
func ftlRates() []float64 { return []float64{5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2} }

// calibrateFTL picks FT-L's learning rate: the smallest of ftlRates whose
// single edits of the calibration set all succeed (reliability 1), else
// the one with the best reliability. EasyEdit's 5e-4 with 25 steps is set
// for LLaMA-2-7B; a model a thousand times smaller needs its own.
func calibrateFTL(base *memoir.Base, layer int, calib []memoir.EditRequest, logf func(string, ...any)) (float64, error) {
	rates := ftlRates()
	best, bestRel := rates[0], -1.0
	for _, lr := range rates {
		c := memoir.DefaultFTLConfig()
		c.Layer, c.LR = layer, lr
		f, err := memoir.NewFTL(base, c)
		if err != nil {
			return 0, err
		}
		r, err := memoir.RunSingleEdits(f, base, calib, nil)
		if err != nil {
			return 0, err
		}
		logf("FT-L calibration: learning rate %g: reliability %.3f, locality %.3f on %d held-out edits", lr, r.Reliability, r.Locality, len(calib))
		if r.Reliability > bestRel {
			best, bestRel = lr, r.Reliability
		}
		if r.Reliability == 1 {
			break
		}
	}
	return best, nil
}

// runEditing runs MEMOIR (τ = 0.4 and automatic), GRACE and FT-L on the
// edits and returns the table's variants, MEMOIR's overlaps and the costs.
func runEditing(base *memoir.Base, edits []memoir.EditRequest, es editingSettings, out string, logf func(string, ...any)) ([]*variant, []*overlapRecord, []*costRecord, error) {
	singles := edits[:min(es.Singles, len(edits))]
	progress := func(name string) memoir.Progress {
		return func(stage string, done, total int) {
			if stage == "edit" && (done == total || done%max(1, total/10) == 0) {
				logf("%s: %d/%d edits", name, done, total)
			}
		}
	}
	var variants []*variant
	var overlaps []*overlapRecord
	var costs []*costRecord

	// MEMOIR: one memory, evaluated at both thresholds.
	cfg := memoir.DefaultConfig()
	cfg.Layer, cfg.Background = es.Layer, es.Background
	if es.MEMOIRIterations > 0 {
		cfg.Iterations = es.MEMOIRIterations
	}
	m, err := memoir.NewMEMOIR(base, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	fixed := &variant{Name: "MEMOIR τ=0.4", Method: memoir.MethodMEMOIR, Threshold: cfg.Threshold}
	auto := &variant{Name: "MEMOIR τ=auto", Method: memoir.MethodMEMOIR, FalseRouting: memoir.DefaultFalseRoutingRate}
	both := []*variant{fixed, auto}
	evalBoth := func(set []memoir.EditRequest) ([2]*memoir.Result, error) {
		var rs [2]*memoir.Result
		for i, v := range both {
			if err := m.SetRouting(cfg.Threshold, v.FalseRouting); err != nil {
				return rs, err
			}
			r, err := memoir.Evaluate(m, base, set, nil)
			if err != nil {
				return rs, err
			}
			rs[i] = r
		}
		return rs, nil
	}
	var runs [2][]*memoir.Result
	var stats []memoir.EditStats
	if err := memoir.EachAlone(m, singles, progress("MEMOIR, single edits"), func(i int, st memoir.EditStats) error {
		rs, err := evalBoth(singles[i : i+1])
		if err != nil {
			return err
		}
		runs[0], runs[1], stats = append(runs[0], rs[0]), append(runs[1], rs[1]), append(stats, st)
		return nil
	}); err != nil {
		return nil, nil, nil, err
	}
	for i, v := range both {
		v.Results = append(v.Results, memoir.CombineSingle(runs[i], stats))
	}
	auto.Taus = append(auto.Taus, memoir.ChanceThreshold(base.Model.Config.IntermediateSize, m.Config().TopK, 1, memoir.DefaultFalseRoutingRate))
	err = memoir.ApplyInStages(m, edits, es.Counts, progress("MEMOIR"), func(T int, st []memoir.EditStats) error {
		o, err := m.Overlaps(edits[:T])
		if err != nil {
			return err
		}
		rec := summarizeOverlaps(o, T, m.Config().Threshold)
		png, err := plotOverlaps(o, rec)
		if err != nil {
			return err
		}
		rec.Plot = fmt.Sprintf("overlaps-T%d.png", T)
		if err := checkpoint.WriteFileAtomic(filepath.Join(out, rec.Plot), png); err != nil {
			return err
		}
		overlaps = append(overlaps, rec)
		logf("MEMOIR overlaps after %d edits: rephrasing vs own mask %.2f/%.2f/%.2f, locality best %.2f/%.2f/%.2f (10/50/90th percentiles); locality routed at τ %g: %.2f (chance %.3f), at τ auto %.3f: %.2f (chance %.3f)",
			T, rec.Rephrase[0], rec.Rephrase[1], rec.Rephrase[2], rec.Locality[0], rec.Locality[1], rec.Locality[2],
			m.Config().Threshold, rec.LocalityRouted04, rec.ChanceRouted04, rec.AutoTau, rec.LocalityRoutedAuto, rec.ChanceRoutedAuto)
		rs, err := evalBoth(edits[:T])
		if err != nil {
			return err
		}
		for i, v := range both {
			rs[i].AttachStats(st)
			v.Results = append(v.Results, rs[i])
		}
		auto.Taus = append(auto.Taus, rec.AutoTau)
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	variants = append(variants, fixed, auto)
	c, err := memoryCost(m, "MEMOIR", out, fixed.Results)
	if err != nil {
		return nil, nil, nil, err
	}
	mc := base.Model.Config
	c.FixedBytes, c.BytesPerEdit = int64(4*mc.HiddenSize*mc.IntermediateSize), float64(memoir.MaskBytes(mc.IntermediateSize))
	costs = append(costs, c)

	// GRACE and FT-L.
	ftlLR, err := calibrateFTL(base, es.Layer, es.Calibration, logf)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, method := range []memoir.Method{memoir.MethodGRACE, memoir.MethodFTL} {
		var ed memoir.Editor
		v := &variant{Name: "GRACE", Method: method}
		if method == memoir.MethodGRACE {
			ed, err = memoir.New(method, base, es.Layer)
		} else {
			c := memoir.DefaultFTLConfig()
			c.Layer, c.LR = es.Layer, ftlLR
			ed, err = memoir.NewFTL(base, c)
			v.Name, v.LR = "FT-L", ftlLR
		}
		if err != nil {
			return nil, nil, nil, err
		}
		name := v.Name
		r1, err := memoir.RunSingleEdits(ed, base, singles, progress(name+", single edits"))
		if err != nil {
			return nil, nil, nil, err
		}
		rs, err := memoir.RunSequential(ed, base, edits, es.Counts, progress(name))
		if err != nil {
			return nil, nil, nil, err
		}
		v.Results = append([]*memoir.Result{r1}, rs...)
		variants = append(variants, v)
		c, err := memoryCost(ed, name, out, v.Results)
		if err != nil {
			return nil, nil, nil, err
		}
		if g, ok := ed.(*memoir.GRACE); ok {
			// A codebook entry: key [intermediate], value [hidden] float32,
			// radius float64; entries per edit as the run made them.
			entry := 4*(mc.IntermediateSize+mc.HiddenSize) + 8
			c.BytesPerEdit = float64(entry*g.Codebook().Len()) / float64(max(1, g.Edits()))
		} else {
			c.FixedBytes = int64(4 * mc.HiddenSize * mc.IntermediateSize)
		}
		costs = append(costs, c)
	}
	return variants, overlaps, costs, nil
}

// memoryCost saves the editor's memory after its last edit and measures
// the file and the time per edit of its largest run.
func memoryCost(ed memoir.Editor, name, out string, results []*memoir.Result) (*costRecord, error) {
	path := filepath.Join(out, "memory-"+strings.ToLower(strings.ReplaceAll(name, "-", ""))+".safetensors")
	if err := ed.Save(path, memoir.SaveOptions{Force: true}); err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	last := results[len(results)-1]
	return &costRecord{Method: name, SecondsPerEdit: last.SecondsPerEdit, FileBytes: st.Size(), Edits: ed.Edits()}, nil
}

// summarizeOverlaps reduces MEMOIR's overlaps to quantiles and routing
// shares, with what chance predicts.
func summarizeOverlaps(o *memoir.Overlaps, T int, fixedTau float64) *overlapRecord {
	rec := &overlapRecord{T: T, Overlaps: o,
		AutoTau: memoir.ChanceThreshold(o.Features, o.TopK, o.Stored, memoir.DefaultFalseRoutingRate)}
	rec.Rephrase, rec.RephraseBest, rec.Locality = quantiles(o.Rephrase), quantiles(o.RephraseBest), quantiles(o.Locality)
	own := 0
	for _, b := range o.RephraseOwnBest {
		if b {
			own++
		}
	}
	rec.RephraseOwnBest = float64(own) / float64(max(1, len(o.RephraseOwnBest)))
	rec.LocalityRouted04, rec.LocalityRoutedAuto = shareAtLeast(o.Locality, fixedTau), shareAtLeast(o.Locality, rec.AutoTau)
	rec.ChanceRouted04 = memoir.FalseRoutingRate(o.Features, o.TopK, o.Stored, fixedTau)
	rec.ChanceRoutedAuto = memoir.FalseRoutingRate(o.Features, o.TopK, o.Stored, rec.AutoTau)
	return rec
}

func quantiles(xs []float64) [3]float64 {
	if len(xs) == 0 {
		return [3]float64{}
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	at := func(q float64) float64 { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return [3]float64{at(0.1), at(0.5), at(0.9)}
}

func shareAtLeast(xs []float64, tau float64) float64 {
	n := 0
	for _, x := range xs {
		if x >= tau {
			n++
		}
	}
	return float64(n) / float64(max(1, len(xs)))
}
