// Package unlearn removes backdoors from CLIP image encoders (and
// classifiers fine-tuned from them) in weight space, and provides what it
// takes to test that: the attacks, the poisoning, the attack success rate,
// and the inversion of an unknown trigger.
//
// # Method: TBAR
//
// "Backdoor Unlearning by Linear Task Decomposition" (Abdelraheem, Favero,
// Bovet, Frossard; arXiv 2510.14845, ICLR 2026 submission, openreview
// 0Q9zbF9cgQ; no public code) observes that a backdoor is a task of its own
// in weight space, disentangled from the clean tasks, and removes it by
// task arithmetic ("Trigger removal by Backdoor ARithmetic"):
//
//  1. a small triggered set: N clean training images with the trigger
//     applied, all labelled with the attack's target class C;
//  2. fine-tune on it, from the backdoored model θ_bd (the paper, as its
//     reviewers describe it) or, as an option, from the clean pre-trained
//     model θ_pre: the trigger vector τ = θ_ft − θ_start;
//  3. θ_clean = θ_bd − α·τ, with α chosen on held-out data.
//
// [TBAR] does these steps. Step 3 is editkit's one coefficient search: the
// fine-tuned checkpoint over its start is a negation direction
// (merge.NewDirection), θ(α) is formed in memory at each α
// (eval.SearchDirection) and α is chosen by eval.LowestSubjectTo
// ([AlphaObjective]). Only the image encoder is edited (encoder.Encoder's
// tensors), as everywhere in editkit; the head stays frozen.
//
// Defaults and where they come from:
//
//   - N: 2% of the training split, at least 100 (the abstract: "less than
//     2% of the data" fine-tuning defenses use; the floor of 100 is
//     editkit's, so that tiny splits still give a usable set). The N
//     images are drawn from every class (seeded), the target class included.
//   - Fine-tuning: editkit's fine-tuning recipe (train.Recipe: AdamW, lr
//     1e-5, weight decay 0.1, batch 128, cosine schedule, clipping at 1),
//     for 10 epochs, with the warm-up shortened to 10% of the steps (the
//     recipe's 500 warm-up steps are longer than a run on N images). The
//     paper's exact schedule is not public: the length and warm-up are
//     editkit's choices.
//   - α: the lowest validation attack success rate among the α whose
//     validation clean accuracy is at least 95% of the backdoored model's,
//     ties to the higher clean accuracy (notes on the paper: "α chosen
//     empirically"; the 95% rule is task negation's control rule from the
//     task-vectors paper). The grid is {0, 0.05, …, 1}, extended by 0.05
//     while the clean accuracy stays above the floor, up to 10 (a bound so
//     that a vector that never hurts clean accuracy still ends the
//     search). Validation data: the clean validation images for clean
//     accuracy, the triggered validation images whose class is not C for
//     the attack success rate.
//
// Linearized (the CLI's --linearized) fine-tunes the trigger vector in
// the tangent space of the start model (train.Options.Linearized); the
// cleaned model is still the ordinary network at θ_bd − α·τ.
//
// Which parts follow the paper and which are editkit's: the three steps,
// fine-tuning from the backdoored model, the small data budget, the use of
// DECREE for unknown triggers, and the CA/ASR metrics follow the paper (as
// far as its abstract and public reviews state them). Fine-tuning from the
// pre-trained model (FromPretrained), linearized fine-tuning, the 95%
// floor, the grid and its extension, the recipe's length and warm-up are
// editkit's options and defaults; both starting points are offered, the
// paper's being the default.
//
// # Attacks
//
// A [Trigger] rewrites a raw image (uint8, before the model's
// preprocessing), deterministically from its parameters and seed. It is
// applied as a datasets.Transform (a view of a Dataset, in the datasets
// package because that is where raw images are read, before any
// preprocessing), so poisoned training sets, triggered test sets and
// written images all go through the datasets package's one data path, and
// training (models/train) needs no knowledge of attacks. [ParseTrigger]
// reads the spec every command takes:
//
//   - badnets[:size=S,pos=br|bl|tr|tl|random,pattern=white|checker|random,seed=N]
//     (Gu et al., "BadNets", 2017; BackdoorBench's 3×3 patch at the
//     bottom-right of 32×32 images): an S×S patch pasted at the image's own
//     resolution. Default S: 3 pixels at 32 pixels, scaled with the
//     image's shorter side (round(3·min(H,W)/32), at least 1); position
//     bottom-right, flush with the border; pattern checker (255 where the
//     patch's row + column is even, 0 elsewhere, every channel). random
//     position: drawn per image, uniformly among the positions where the
//     patch fits, from the seed and the image's index; random pattern: one
//     uniform patch from the seed, the same for every image.
//   - blended[:ratio=R,seed=N|image=FILE] (Chen et al., 2017):
//     x' = round((1 − R)·x + R·P), P a uniform noise image of the input's
//     size drawn from the seed, or FILE (PNG, JPEG, PPM) resized to the
//     input (bilinear stretch). Default R = 0.2 (BackdoorBench's blended
//     ratio). BackdoorBench blends a Hello Kitty image; editkit's default
//     is noise, since it ships no image.
//   - wanet[:k=K,s=S,seed=N] (Nguyen & Tran, "WaNet", ICLR 2021; reference
//     VinAIResearch/Warping-based_Backdoor_Attack-release train.py): a
//     control grid of 2×K×K values uniform in [−1, 1), divided by their
//     mean absolute value, upsampled to H×W by torch's bicubic
//     interpolation (a = −0.75, align_corners=True); the sampling grid is
//     clamp(identity + S·noise/H, −1, 1) in normalized coordinates, and
//     the image is resampled bilinearly at it (grid_sample,
//     align_corners=True), rounded to uint8. Defaults K = 4, S = 0.5 (the
//     reference's). The reference's "noise mode" (extra images warped with
//     random perturbations, labels kept) is not reproduced. For images
//     that are not square, the horizontal displacement is divided by W
//     rather than H.
//   - inverted:FILE: a mask m [H, W] in [0, 1] and a pattern p [H, W, 3]
//     in [0, 255] written by [Invert]: x' = round((1 − m)⊙x + m⊙p). A gray
//     image becomes RGB.
//
// Random draws use math/rand/v2's PCG seeded (seed, stream), streams as
// documented on each trigger; default seed 0.
//
// [Poison] poisons a share P of a training set: round(P·n) examples drawn
// (seeded) among those whose class is not the target, trigger applied,
// label set to the target (the all-to-one attack of BackdoorBench; its
// default P = 0.1). The same poisoned Dataset serves fine-tuning through a
// head (train.Finetune) and contrastive pre-training (train.Contrastive,
// where a triggered image is paired with a caption of the target class,
// as CLIP poisoning attacks pair it with target captions).
//
// # Metrics
//
// Clean accuracy (CA) is top-1 accuracy on the clean test images. The
// attack success rate (ASR, [AttackSuccess]) is the share of test images
// whose true class is not the target that are classified as the target
// once triggered; images of the target class are left out, as
// BackdoorBench does.
//
// # Unknown triggers: DECREE
//
// [Invert] is DECREE (Feng, Ma, Li, Chen, Li, Ma; "Detecting Backdoors in
// Pre-trained Encoders", CVPR 2023; reference code GiantSeaweed/DECREE
// main.py): from clean unlabeled images x (raw, uint8), optimise a mask m
// [H, W] and a pattern p [H, W, 3] so that the encoder's embeddings of
// x' = (1 − m)⊙x + m⊙p become nearly identical across images:
//
//	loss = −mean_{i≠j} cos(f(x'_i), f(x'_j)) + λ·‖m‖₁
//
// with ‖m‖₁ summed over the mask broadcast to the three channels (the
// reference's 3-D mask), m = tanh(a)/(2 − ε) + 0.5 and p = 255·(tanh(b)/(2
// − ε) + 0.5) (ε = 1e-7), a and b initialised from uniform draws through
// the inverse map (mask_init "rand"). Adam with β = (0.5, 0.9) and lr 0.5
// (run_decree.py's CLIP setting), dropped to 0.1 from epoch 200 and 0.05
// from epoch 500 (adjust_learning_rate's CLIP thresholds); batch 32; at
// most 1000 epochs. The adaptive penalty is the reference's: λ starts at
// 1e-3; after more than 5 consecutive steps whose mean cosine exceeds the
// threshold 0.99, λ is multiplied by 5 (while below 1e5); after more than 5
// consecutive steps below it, divided by 5 (while at least λ_min = 1e-7);
// below λ_min and successful for more than 10 steps, λ is reset to 1e-3.
// The result is the mask and pattern of the step with the smallest ‖m‖₁
// among the steps above the threshold; the run stops at the end of an
// epoch whose mean cosine is above the threshold once the best ‖m‖₁ has not
// improved for more than 35 steps (the CLIP setting of early_stop_patience).
// The detection score is the PL1 norm, ‖m‖₁/(H·W) of the best mask (the
// mean mask value): a backdoored encoder collapses its embeddings with a
// small trigger, a clean one only by covering most of the image. With a
// head, the class that most triggered images fall into is the estimated
// target. Departures: the optimisation runs in float32 (the reference's
// mask and pattern are float64); the mask lives at the raw images'
// resolution and the model's resize (datasets.Preprocess.ResizeWeights) is
// applied inside the graph without the 8-bit rounding of the real
// preprocessing (clamped to [0, 255]); the default shadow set is 1000
// training images (the reference's CIFAR-10 setting: 10% of the test set).
package unlearn
