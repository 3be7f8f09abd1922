package memoir

import "fmt"

// Overlaps are the mask overlaps |M_q ∧ M_i|/k MEMOIR's routing rests on,
// measured on the edits a memory holds (edit i stored mask i), for
// comparison with the chance distribution (OverlapPMF, BestOverlapPMF):
// routing works when a rephrasing overlaps its own edit's mask well above
// chance and an unrelated prompt's best overlap stays at chance.
type Overlaps struct {
	// Features (the MLP width D), TopK (k) and Stored (T masks).
	Features, TopK, Stored int
	// Own is each edit prompt's mask against its own stored mask (1 unless
	// the mask function changed since).
	Own []float64 `json:"own"`
	// Rephrase is each rephrasing's mask against its edit's stored mask;
	// RephraseBest its best overlap over all stored masks and
	// RephraseOwnBest whether that best is its own edit's.
	Rephrase        []float64 `json:"rephrase"`
	RephraseBest    []float64 `json:"rephrase_best"`
	RephraseOwnBest []bool    `json:"rephrase_own_best"`
	// Locality is each locality prompt's best overlap over all stored masks.
	Locality []float64 `json:"locality"`
}

// Overlaps measures the routing overlaps of edits, the first Edits() of
// which the memory holds, edit i having stored mask i.
func (m *MEMOIR) Overlaps(edits []EditRequest) (*Overlaps, error) {
	if len(edits) != len(m.masks) {
		return nil, fmt.Errorf("memoir: %d edits for a memory of %d", len(edits), len(m.masks))
	}
	o := &Overlaps{Features: m.base.Model.Config.IntermediateSize, TopK: m.cfg.TopK, Stored: len(m.masks)}
	mask := func(p string) (Mask, error) {
		ids, err := m.base.EncodePrompt(p)
		if err != nil {
			return nil, err
		}
		return m.MaskOf(ids)
	}
	k := float64(m.cfg.TopK)
	for i, e := range edits {
		q, err := mask(e.Prompt)
		if err != nil {
			return nil, fmt.Errorf("edit %d: %w", i, err)
		}
		o.Own = append(o.Own, float64(q.Common(m.masks[i]))/k)
		for _, r := range e.Rephrases {
			q, err := mask(r)
			if err != nil {
				return nil, fmt.Errorf("edit %d: rephrasing: %w", i, err)
			}
			best := BestMatch(q, m.masks, m.cfg.TopK, 1)
			o.Rephrase = append(o.Rephrase, float64(q.Common(m.masks[i]))/k)
			o.RephraseBest = append(o.RephraseBest, best.Overlap)
			o.RephraseOwnBest = append(o.RephraseOwnBest, float64(q.Common(m.masks[i]))/k == best.Overlap)
		}
		for _, l := range e.Locality {
			q, err := mask(l.Prompt)
			if err != nil {
				return nil, fmt.Errorf("edit %d: locality: %w", i, err)
			}
			o.Locality = append(o.Locality, BestMatch(q, m.masks, m.cfg.TopK, 1).Overlap)
		}
	}
	return o, nil
}
