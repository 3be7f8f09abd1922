package merge

// TallMask sets mask[i] = |τ_t[i]| > λ·|τ_MTL[i] − τ_t[i]|: task t's TALL
// mask (Wang et al. 2024, nik-dim/tall_masks generate_task_masks), the stage
// Consensus merging counts, exported for the search of λ_t on validation
// data (eval.SearchTallLambdas).
func TallMask(mask []bool, tau, mtl []float32, lambda float64) {
	tallMask(mask, tau, mtl, float32(lambda))
}

// TallBase is the recipe of the multi-task vector τ_MTL that a consensus
// recipe masks: Σ_t τ_t ("ta"), or TIES with the disjoint sum at the
// recipe's density ("ties", 0.2 by default) as tall_masks builds it.
func TallBase(consensus Config) Config {
	if consensus.ConsensusBase == "ties" {
		return Config{Method: TIES, TIESAggregate: "sum", Density: consensus.Density, Seed: consensus.Seed}
	}
	return Config{Method: TaskArithmetic}
}
