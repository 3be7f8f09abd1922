// Package merge implements model-merging methods as streaming transforms over
// task vectors.
//
// Every method is a recipe of a few stages applied chunk by chunk to the task
// vectors τ_t = θ_t − θ_0 of a tasks.Set (design: sparsify each τ_t, combine
// them, scale the result, add it to θ_0). Methods that need statistics of the
// whole model (TIES's global top-k threshold and majority sign, LiNeS's
// multi-task α) first run streaming passes that only collect them. Whole-model
// methods (weighted average, Model Stock, SLERP) produce θ directly.
//
// Methods and their sources (formulas in each function's comment):
//   - linear: weighted average of models (Wortsman et al. 2022, model soups);
//   - task_arithmetic: θ_0 + λ Σ_t w_t τ_t (Ilharco et al. 2023);
//   - ties: trim, elect sign, disjoint mean (Yadav et al. 2023,
//     prateeky2806/ties-merging);
//   - dare_linear, dare_ties: random drop with rescaling (Yu et al. 2024);
//   - breadcrumbs, breadcrumbs_ties: drop the largest and smallest entries
//     per tensor (Davari & Belilovsky 2024, as in mergekit);
//   - consensus: TALL masks and consensus merging (Wang et al. 2024,
//     nik-dim/tall_masks);
//   - model_stock: per-tensor interpolation ratio from the angle between task
//     vectors (Jang et al. 2024, as in mergekit);
//   - slerp: spherical interpolation between two models (as in mergekit);
//   - LiNeS: layer-increasing scaling of the merged task vector (Wang et al.
//     2025, wang-kee/LiNeS), composable with every method.
//
// # Directions
//
// For every task-vector method the merged vector Δ does not depend on the
// merge coefficient: λ scales it, θ = θ_0 + λΔ, and LiNeS scales block ℓ of
// L by α + β ℓ/(L−1). NewDirection merges once at a unit coefficient and
// keeps Δ in memory, so that a coefficient search (eval.SearchDirection)
// forms θ(c) = θ_0 + s(ℓ, c)·Δ for each c without merging again, and
// Direction.Config(c) gives the recipe that writes the chosen θ(c). The
// coefficient is λ (θ_0 − λΔ for task negation), LiNeS's multi-task β with
// α fixed, or LiNeS's single-task α with β = 1 − α; the LiNeS schedule is
// the one Run applies. For Consensus, TallMask and TallBase expose the TALL
// mask and the multi-task vector it masks, so that each task's λ_t can be
// chosen on validation data (eval.SearchTallLambdas) before the merge.
//
// Where a paper's reference code and mergekit differ, Config.Semantics picks
// whose definition is followed: Paper for the command line, Mergekit for
// mergekit YAML configurations.
package merge
