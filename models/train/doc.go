// Package train fine-tunes image encoders and trains small models from
// scratch, in GoMLX, on editkit's pure-function models (a model is a graph
// function of its weights, see package models).
//
// # Fine-tuning (task vectors)
//
// Finetune trains an image encoder (a Hugging Face ViT, the image tower of a
// Hugging Face CLIP or of an OpenAI/open_clip CLIP; see encoder.Load) through
// a frozen classification head (heads.Head.Apply) with softmax
// cross-entropy, the recipe of the task-vectors papers
// (mlfoundations/task_vectors src/finetune.py and src/utils.py; summarised
// in shared/notes/methods.md):
//
//   - AdamW, decoupled weight decay exactly as torch.optim.AdamW: θ ← θ·(1 −
//     lr·wd) − lr/(1−β1ᵗ)·m/(√v/√(1−β2ᵗ) + ε), β = (0.9, 0.999), ε = 1e-8;
//     learning rate 1e-5, weight decay 0.1, applied to every encoder tensor
//     (the reference's AdamW gets all trainable parameters in one group: it
//     excludes nothing, and neither does Finetune);
//   - the learning rate of step s (0-based) of T: lr·(s+1)/W during W = 500
//     warm-up steps, then ½(1 + cos(π(s−W)/(T−W)))·lr, reaching 0 at T
//     (task_vectors' cosine_lr; CosineLR);
//   - the gradient's global L2 norm clipped to 1.0 before the update
//     (torch.nn.utils.clip_grad_norm_: scale by min(1, 1/(‖g‖ + 1e-6)));
//   - batch 128, the last smaller batch of an epoch kept (drop_last=False),
//     a new shuffled order each epoch (datasets.BatchOptions{Shuffle: true,
//     Seed, Epoch}).
//
// Recipe returns these settings. Only the image tower is trained: for CLIP
// the text tower and logit_scale are not even read. WriteFinetuned writes
// the result over a copy of the input checkpoint (same tensor names, shapes,
// dtypes and order; untouched tensors byte-identical; config files copied),
// so `editkit taskvector --base IN --finetuned OUT` works directly.
//
// # Linearized fine-tuning
//
// With Options.Linearized, Finetune trains θ of the encoder's linearization
// around its own weights θ₀, f_lin(x; θ) = f(x; θ₀) + J_θ f(x; θ₀)(θ − θ₀)
// (package linearize; Ortiz-Jimenez et al., "Task Arithmetic in the
// Tangent Space", gortizji/tangent_task_arithmetic src/finetune.py with
// --finetuning-mode linear). The head stays non-linear and frozen, θ
// starts at θ₀, and the recipe is the same: the reference trains its
// LinearizedModel with the same loop, the same AdamW over the trainable
// parameters (θ, not θ₀), so weight decay multiplies θ by 1 − lr·wd and
// pulls it toward 0, not toward θ₀; Finetune does the same. θ₀ is an input
// of the compiled step, not a trained tensor, and the result holds θ only
// (the reference's checkpoints hold both).
//
// Not reproduced: the reference's train-time augmentation (open_clip's
// RandomResizedCrop with scale (0.9, 1.0)); images go through the model's
// evaluation preprocessing.
//
// # Training from scratch
//
// Supervised trains an encoder (e.g. vit.NewRandom, or a CLIP image tower)
// with a linear classifier, returned as a heads.Head. Contrastive trains a
// CLIP model (clip.NewRandom) on (image, caption) pairs of several labelled
// datasets, captions from templates such as "a photo of a {}.", with CLIP's
// symmetric InfoNCE loss and learnable logit_scale (initialised by the model,
// ln(1/0.07) for clip.NewRandom, clamped to [0, ln 100] after each step as
// open_clip does). From scratch, weight decay follows open_clip's rule:
// matrices and embeddings only.
//
// # Causal language models
//
// CausalLM trains a LLaMA-family model (llama.NewRandom) on token sequences
// with the next-token cross-entropy of transformers' LlamaForCausalLM
// (labels = input ids, the mean over the batch's predicted tokens), with
// the same AdamW, schedule, clipping and step loop; weight decay on
// matrices and embeddings only, as from scratch above. Sequences are not
// packed: each is one example, padded on the right within its batch to
// one length for the whole run, so each starts at position 0 as a prompt
// does at inference. The result saves as a Hugging Face folder
// (llama.Model.Save) that llama.Load and 'editkit generate' read.
//
// # How the step is computed
//
// One compiled graph per batch shape takes the trained weights, Adam's
// moments and the batch as parameters, computes the loss, its gradient with
// graph.Gradient (with models/fastgrad's matrix-product gradients), the
// clipping and the update, and returns the new weights and moments; the host
// keeps them between steps and computes the step's scalars (learning rate,
// bias corrections) in float64. GoMLX's optimizers.Adam was not used: its
// AdamW is decoupled and correct, but it decays every trainable variable (no
// exclusions, which pre-training needs), has no global-norm clipping, and its
// ε defaults to 1e-7.
//
// Progress (loss, learning rate, gradient norm, steps/s, ETA) is reported
// after every step through Options.Progress.
package train
