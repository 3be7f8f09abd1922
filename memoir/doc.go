// Package memoir is lifelong knowledge editing of LLaMA-family models
// (models/llama): MEMOIR (Wang et al., 2025, "Lifelong Model Editing with
// Minimal Overwrite and Informed Retention for LLMs", reference code
// qym7/MEMOIR) and the baselines it is compared with, GRACE and FT-L (as
// EasyEdit implements them), applied one edit after another and evaluated
// as EasyEdit does. Every method is an [Editor] on a [Base] (model and
// tokenizer) and lives at one site, the MLP down-projection of one decoder
// layer (llama.Adapter); its state is saved as one safetensors file (see
// [Load] for the format) that 'editkit generate --memory' applies.
//
// # Data
//
// [EditRequest] is one edit as every method takes it (prompt, new target,
// rephrasings for generalization, unrelated prompts for locality), read
// from EasyEdit's JSON datasets — ZsRE (src, alt, answers, rephrase, loc,
// loc_ans, subject) and the CounterFact-style format (prompt, target_new,
// ground_truth, rephrase_prompt, locality_prompt, locality_ground_truth,
// subject) — as a JSON array or JSON Lines, the format detected per file
// ([LoadEdits], [ParseEdits]). Malformed files give a [*DataError] naming
// the file, the record, its line and the field at fault.
//
// testdata/tinystories_edits.json is an edit set for the llama2.c
// stories260K model (TinyStories): 120 CounterFact-style requests about the
// characters and objects of its stories (favorite toys, pets, foods,
// friends, places, ...), each with one or two rephrasings and one unrelated
// locality prompt. Targets are one to three tokens of the model's 512-token
// vocabulary (the tests check it with its tokenizer). ground_truth is the
// first word of the model's own greedy continuation of the prompt (its
// pre-edit answer), and no target starts with the token the model predicts
// there, so every edit changes its output. Locality answers are plausible
// continuations written by hand; locality compares the edited model's
// predictions with the unedited model's on them, so their wording only
// decides which tokens are teacher-forced.
//
// # MEMOIR
//
// [MEMOIR] keeps a residual memory W_m, zero-initialised with the shape of
// layer ℓ's down_proj [hidden, intermediate], and changes that layer's
// output to W_0 x + W_m (M ⊙ x), x = silu(gate(h)) ⊙ up(h), with a sparse
// mask M that depends on the prompt and is the same at every position:
//
//   - Layer: by default round(27·L/32) of L layers ([DefaultLayer]), the
//     reference's layer 27 of LLaMA-3-8B's 32; stories260K's 5 give 4.
//   - Mask (TopHash, [TopHash]): x̄ = the mean of x over the prompt's tokens
//     (BOS included) minus μ_bg, the mean of the same over 100 irrelevant
//     prompts ([BackgroundPrompts]: generic TinyStories sentences, fixed,
//     so masks do not depend on the evaluation data; Config.Background
//     replaces them); the mask holds π[i] for the k largest |x̄_i|, k =
//     round(intermediate·4096/14336) ([DefaultTopK]: 49 of stories260K's
//     172), π a fixed permutation ([Permutation]: a Fisher–Yates shuffle
//     driven by SplitMix64 from state 42; the reference draws
//     torch.randperm under seed 42, which Go cannot reproduce). Masks are
//     stored bit-packed, ⌈intermediate/8⌉ bytes per edit ([Mask]).
//   - Edit ([MEMOIR.Edit]): only W_m is trained, by SGD (lr 1.0, weight
//     decay 1e-5, gradient norm clipped at 1.0), at most 30 iterations,
//     stopping before a step when the last two losses differ by at most
//     1e-4 and the last is at most 0.02 (the reference's EarlyStopMeter).
//     The loss is the cross-entropy of the target tokens of prompt + " " +
//     target under 11 templates: "{}" and "<prefix> {}" for 10 prefixes the
//     model generates greedily (EasyEdit's get_context_templates: seeds
//     "I", "You", "Because", "Yes", "Q: ", 5 and 10 new tokens), generated
//     once with the unedited model and saved with the memory. The edit's
//     mask, from the prompt alone, applies at every position of every
//     sequence. Each sequence's summed target cross-entropy is divided by
//     n_t + 1 for its n_t target tokens, as the reference's label mask
//     counts (it starts at the position that predicts the last prompt
//     token, whose label is ignored; EasyEdit pads on the left, so no
//     padding is counted), and averaged over the sequences.
//   - Inference ([MEMOIR.Route], [MEMOIR.Predict]): the query's mask is
//     computed from its prompt the same way; the stored mask of largest
//     overlap |M_q ∧ M_i|/k is applied when the overlap reaches τ (0.4,
//     the reference's ZsRE setting), else the memory is left out and the
//     logits are the unedited model's exactly.
//   - Automatic τ (Config.FalseRoutingRate, 'editkit memoir edit
//     --threshold auto'; not in the reference): τ = 0.4 is a fraction of
//     k, but what separates related from unrelated prompts is how far
//     above chance an overlap lies, and chance depends on the MLP width D
//     and k. If masks were uniformly random k-subsets, the overlap of two
//     would be hypergeometric ([OverlapPMF]: mean k²/D, 0.286 at the
//     reference's ratio, standard deviation 0.006 for D = 14336 but 0.055
//     for stories260K's 172), and an unrelated query's best overlap over T
//     stored masks would reach c/k with probability 1 − F(c−1)^T
//     ([FalseRoutingRate]). [ChanceThreshold] picks the least τ for which
//     that is at most the target rate (DefaultFalseRoutingRate, 1%),
//     recomputed as masks are stored: 0.3115 for LLaMA-3-8B's layer with
//     1000 edits, 0.3881 for D = 768, k = 219 and 100 edits. Real masks are
//     not random (prompts that share words share features), so the real
//     false-routing rate is at least this; [MEMOIR.Overlaps] measures the
//     overlaps to compare with chance ([BestOverlapPMF]).
//
// # Baselines
//
// [GRACE] is EasyEdit's GRACE (hparams/GRACE: eps 1.0, Adam lr 1.0, 50
// steps, euclidean distance, cold values, replace_last, eps_expand
// coverage) at the same site: the key is the down-projection input at the
// last prompt token; [Codebook.Update] adds a key when none lies within
// ε_init + ε_nearest, adds one and halves both radii when the nearest key
// has another label (target tokens), and grows the nearest radius to the
// distance when it has the same; the chosen value (cold: uniform [0, 1),
// seeded) is trained to replace the layer's output at the last prompt
// token. At evaluation the key is taken at the query's own last prompt
// token (EasyEdit keeps the position of the last edit's). When the site is
// the last layer, as with stories260K, the replaced output reaches only
// that position's logits, so GRACE can fix the first target token only.
//
// [FTL] is EasyEdit's FT-L (FT with objective prompt_last, hparams/FT:
// Adam lr 5e-4, no weight decay, 25 steps, a step skipped and training
// stopped once the loss is below 1e-2): each edit fine-tunes the site's
// down_proj weight (layer ℓ, as MEMOIR's, by default) on −log p(t_j) of
// each target token t_j at the last prompt position, with a fresh
// optimizer.
//
// # Evaluation
//
// [Evaluate] is EasyEdit's evaluation: reliability is the token accuracy of
// the target after the prompt, generalization the same after each
// rephrasing (averaged per edit), locality the agreement ([Agreement]) of
// the edited and unedited models' answers over the answer span of each
// locality prompt + " " + answer; means over the edits. Answers are read
// as EasyEdit reads them ([ScoringOf]): teacher-forced for MEMOIR and FT-L
// ([TokenAccuracy]: the argmax after each position of prompt + " " +
// target), by greedy generation for GRACE ([GRACE.Generate]: as many tokens
// as the target has, decoded greedily, as EasyEdit's vanilla_generation,
// which it passes for GRACE only). It also reports how often the edit
// memory took part (MEMOIR's routing, GRACE's radius). [RunSequential] is
// the sequential protocol: edits applied in order, the first T evaluated
// after T edits, for several T in one run ([ApplyInStages] is its loop, for
// callers that evaluate in their own way). [RunSingleEdits] is T = 1
// averaged over many runs, each edit applied alone to the unedited model
// ([EachAlone], [CombineSingle]). [Markdown] renders a table of results.
package memoir
