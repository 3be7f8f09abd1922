// Package linearize turns a model into its first-order Taylor expansion
// in the weights around a point θ₀, the model of tangent-space task
// arithmetic:
//
//	f_lin(x; θ) = f(x; θ₀) + J_θ f(x; θ₀) · (θ − θ₀)
//
// Paper: G. Ortiz-Jimenez, A. Favero, P. Frossard, "Task Arithmetic in the
// Tangent Space: Improved Editing of Pre-Trained Models", NeurIPS 2023
// (arXiv 2305.12827). Reference code: github.com/gortizji/tangent_task_arithmetic,
// src/linearize.py (LinearizedModel: functorch jvp over
// make_functional_with_buffers; params0 frozen, params trained),
// src/finetune.py (--finetuning-mode linear), src/task_vectors.py.
//
// # The linearized model
//
// Any model of explicit weights (a models.ForwardFn: ViT, the image tower
// of a CLIP model in either naming, LLaMA) is linearized by Forward, a
// graph function of θ and θ₀, or compiled by New into a Model whose Call
// evaluates f_lin at any θ of the same shapes without recompiling. θ₀ and θ
// are both graph parameters: one compiled graph serves every θ (and every
// base). Encoder wraps an image encoder (models/encoder) with evaluation
// helpers (Encode, Classifier), and ForModel/ForModels choose the base
// from a --linearize-at flag or a fine-tune's metadata.
//
// # The JVP without forward mode
//
// GoMLX v0.26 has reverse mode only. JVP obtains J·d by transposing the
// VJP: with u a placeholder cotangent of the outputs' shapes (zeros),
// g(u) = J_θᵀu is linear in u, and the gradient of ⟨g(u), d⟩ with respect
// to u is J·d (the "double-VJP" trick, shared/notes/gomlx-v0.26.md). The
// placeholder's value never reaches the result, so the backends drop the
// computation of g(u) itself (simplego and XLA both skip nodes no output
// needs); what runs is the forward pass at θ₀ and, per direction, one pass
// that mirrors it: for a matrix product y = x·W it computes ẏ = ẋ·W + x·Ẇ,
// the two products forward mode would compute. Several directions share
// the forward pass (Pair uses two). The gradient of f_lin with respect to θ
// (training) is graph.Gradient through that pass: since the pass is linear
// in θ − θ₀ and reads the forward activations, it costs one more pass of
// the same size and needs the forward activations only, as plain
// backpropagation does.
//
// The second derivative runs through the VJPs of every op the models use;
// GoMLX's gradient of Slice (the gradient of Concatenate, e.g. the class
// token) needs Pad, which simplego lacks: models/fastgrad replaces it with
// concatenated zero blocks.
//
// Checked against central finite differences in float64 (ViT, both CLIP
// namings, LLaMA: differences ~1e-10) and against PyTorch's forward-mode
// autodiff, torch.autograd.forward_ad, on the same weights and direction
// (tools/torchref/jvp.py writes testdata/; float64 differences ~3e-8, the
// reference's float32 rounding). f_lin(θ₀) equals f(θ₀) bit for bit, and
// f_lin is affine in θ (to 1e-12 in float64).
//
// # Cost
//
// Measured with 'editkit bench linearize' (internal/bench.RunLinearize),
// which runs both models and both training steps one after the other in one
// process, then the same workloads in PyTorch the way the reference code
// linearizes (functorch jvp): see the package README.md for the numbers
// and the command lines. In short, on the CPU backend: a training step of
// f_lin costs ~1.6-1.7x the plain step's time and ~1.5x its added memory
// (the reference: ~1.4-1.8x time, ~2.7x memory); inference of f_lin costs ~3-4x the plain
// forward pass in time (three matrix products per product of the model, as
// any JVP in the weights needs) and holds every forward activation until
// the tangent pass has read it (like a training step), where a plain
// forward pass frees them as it goes.
//
// # Defaults, from the reference
//
//   - What is linearized: the image encoder only, around the pre-trained
//     weights; the classification head is applied to f_lin's features
//     unchanged (the zero-shot head L2-normalises them, so logits are not
//     linear in θ), as LinearizedImageEncoder inside ImageClassifier does.
//   - Linearized fine-tuning (models/train with Options.Linearized, the CLI's
//     finetune --linearized): θ starts at θ₀ (LinearizedModel(model,
//     init_model=model)), the same loop and recipe as non-linear fine-tuning
//     (AdamW lr 1e-5, weight decay 0.1, batch 128, 500 warm-up steps, cosine,
//     gradient norm clipped to 1, head frozen). Weight decay is AdamW's over
//     the trainable parameters, which are θ, not θ − θ₀: it multiplies θ by
//     1 − lr·wd each step, pulling θ toward 0, not toward θ₀. editkit does
//     the same.
//   - Task vectors of linearized fine-tunes are θ − θ₀ like any other
//     (LinearizedTaskVector subtracts params; params0 cancels), so
//     taskvector and merge work unchanged; what they make of linearized
//     fine-tunes (task vectors, merges, applied vectors) records the same
//     base (Linearized finds the members that are linearized), and models
//     are evaluated through f_lin around θ₀ (apply_to_linear).
//   - Post-hoc linearization: a non-linearly fine-tuned model (or a merge)
//     evaluated through f_lin around θ₀ (nonlinear_to_linear).
//
// # Departures
//
//   - Checkpoints: the reference saves the whole LinearizedImageEncoder,
//     params0 and params (twice the model). A linearized fine-tune here is
//     an ordinary checkpoint of θ with the base's names, shapes and dtypes;
//     its metadata records that it is linearized and the base: the path and
//     Digest, a SHA-256 of the base's encoder tensors (names, shapes, float32
//     values), so that evaluating it around other weights is an error that
//     names the expected base (Metadata, ReadMetadata, BaseInfo.Verify).
//   - Mode: the reference builds θ₀'s function from init_model.eval(); the
//     models here have no dropout or batch statistics, so there is no mode.
//   - Non-finite outputs are errors (Model.Call): a NaN or Inf in θ or θ₀
//     names its tensor; a JVP that overflows with finite weights is traced
//     to the tensor whose θ − θ₀ alone overflows, by bisection over the
//     weights (the JVP is additive over them).
//
// # Empirical NTK
//
// NTK computes the empirical neural tangent kernel of a model's outputs
// [N, C] on a sample, K[(i,a),(j,b)] = ∇_θ f_a(x_i)·∇_θ f_b(x_j) = (J Jᵀ),
// column by column as J·(Jᵀe): a reverse pass over one example and a JVP
// over the sample, never forming J; Kernel.Trace is the scalar kernel
// Σ_a K[(i,a),(j,a)] used in the paper's eigenfunction-localization
// analysis. Checked against J·Jᵀ from the explicit Jacobian.
//
// # Weight disentanglement
//
// Disentangle computes the paper's weight disentanglement error ξ(α₁, α₂)
// of two task vectors (eval.Disentanglement; eval.PlotDisentanglement
// draws it), evaluating at every grid point both models of each term in one
// call of one compiled graph (Pair: the weights are combined from θ₀, τ₁,
// τ₂ inside the graph, the coefficients are inputs).
package linearize
