// Package merge implements model-merging methods as streaming transforms over
// task vectors, and reads mergekit's YAML configurations.
//
// Every method is a recipe of a few stages applied chunk by chunk to the task
// vectors τ_t = θ_t − θ_0 of a tasks.Set (design: sparsify each τ_t, combine
// them, scale the result, add it to θ_0). Methods that need statistics of the
// whole model (TIES's global top-k threshold and majority sign, LiNeS's
// multi-task α) first run streaming passes that only collect them. Methods
// that are not task arithmetic (weighted average, Model Stock, the spherical
// ones, Arcee Fusion, passthrough) produce θ directly.
//
// # Methods and parameters
//
// Each method is one row of the method table (methods.go): the parameters
// it reads with their defaults under the papers' and mergekit's
// definitions, what it does with a base model, how many models it takes,
// and its stages. Each parameter is one row of [Params] (params.go): its
// kind, whether it is per model, its range, what it means and where its
// default comes from. The command line's flags and --help, the YAML reader,
// [Config.Resolve]'s defaults and checks and [Config.Params] are generated
// from the two tables. A bad value is a [*ParamError], which the command
// line words as "--density 1.5 is outside (0, 1]" and the YAML reader as
// "file.yaml:12: density 1.5 is outside (0, 1]". Resolve returns a new
// config; its input is left as it is.
//
// Methods and their sources (formulas in each function's comment):
//   - linear: weighted average of models (Wortsman et al. 2022, model soups);
//   - task_arithmetic: θ_0 + λ Σ_t w_t τ_t (Ilharco et al. 2023);
//   - ties: trim, elect sign, disjoint mean (Yadav et al. 2023,
//     prateeky2806/ties-merging);
//   - dare_linear, dare_ties: random drop with rescaling (Yu et al. 2024);
//   - breadcrumbs, breadcrumbs_ties: drop the largest and smallest entries
//     per tensor (Davari & Belilovsky 2024, as in mergekit);
//   - della, della_linear: drop with probabilities rising with the
//     magnitude's rank (Deep et al. 2024, mergekit's della_magprune);
//   - sce: select by cross-model variance, weight by mean square, erase
//     minority signs (Wan et al. 2024, mergekit's sce);
//   - consensus: TALL masks and consensus merging (Wang et al. 2024,
//     nik-dim/tall_masks);
//   - model_stock: per-tensor interpolation ratio from the angle between task
//     vectors (Jang et al. 2024, as in mergekit);
//   - slerp, nuslerp, multislerp, karcher: spherical interpolation of two
//     models, of two models' task vectors per row or tensor, barycentric on
//     the sphere, and the Riemannian mean (as in mergekit);
//   - arcee_fusion: the model's entries of outlying importance
//     |Δθ|·KL(softmax rows) (as in mergekit);
//   - passthrough: a model's tensors as they are, for layer stacking;
//   - LiNeS: layer-increasing scaling of the merged task vector (Wang et al.
//     2025, wang-kee/LiNeS), composable with every task-vector method.
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
// mergekit YAML configurations. The methods mergekit added beyond the
// papers (della, sce, the spherical ones, arcee_fusion) follow mergekit in
// both.
//
// # mergekit configurations
//
// [ParseMergekitYAML] reads a configuration as mergekit does: parameters
// given per model, per slice or at the top level, as numbers, gradients over
// the layers or {filter, value} conditions on tensor names (settings.go);
// models: lists or slices: of layer ranges; tokenizer_source and tokenizer;
// dtype and out_dtype; chat_template. What mergekit ignores is a warning,
// what editkit cannot honour an error, all reported at once with lines.
// [YAMLPlan.Open] opens the checkpoints: layer slices become views of the
// sources ([checkpoint.Compose]) with layers renumbered consecutively,
// vocabularies are aligned by token (vocab.go), and config.json follows.
//
// # Departures from mergekit, each deliberate
//
//   - Exact-k selections (TIES's trim, Breadcrumbs, SCE, DELLA's ranks)
//     order equal magnitudes by index, as a stable sort does (what PyTorch's
//     GPU sort gives; its CPU argsort leaves them unspecified).
//   - Random drops (DARE, DELLA) come from editkit's counter-based stream
//     (seed, model, tensor, element): reproducible, but not PyTorch's
//     draws.
//   - Breadcrumbs with γ·n < 1 drops no large entries, where mergekit's
//     [n_bot:-0] slice zeroes the tensor; TIES's trim keeping 0 entries
//     zeroes the task vector, where mergekit stops with an assertion;
//     DELLA gives a one-entry row probability density − ε, where mergekit's
//     rank normalisation divides by zero.
//   - Arcee Fusion's quantiles use every importance, where mergekit samples
//     10^6 of larger tensors at random.
//   - dtype: editkit rounds to the dtype after each of mergekit's steps
//     (precision.go), but accumulates each combination in float32 before
//     rounding; float64 computes in float32.
//   - Vocabulary union appends other models' tokens in id order, where
//     mergekit takes a tokenizer's hash order.
//   - Tensors outside the layers are told apart by name for slices:
//     embeddings come from the first slice's models (mergekit's
//     pre_weights), the rest from the last slice's (post_weights).
//   - slices must give every slice the same number of models to merge;
//     modules: and multi-stage (mergekit-multi) files are refused.
package merge
