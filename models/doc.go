// Package models holds what editkit's GoMLX models share: the backend, the
// binding of checkpoint weights to graphs, and the transformer building
// blocks. The models themselves live in subpackages (models/vit,
// models/clip).
//
// # A model is a pure function of (weights, inputs)
//
// Each forward pass is a graph function that receives its weights
// explicitly, as a Params map from checkpoint tensor names to graph nodes,
// and declares them as a list of specs (name, shape), which also drives
// loading, random initialisation and saving:
//
//	specs := cfg.Specs()                          // names and shapes
//	w, err := models.ReadWeights(ckpt, specs)     // float32 host tensors
//	f, err := models.NewFunc(models.Backend(), "vit", specs, forward)
//	outs, err := f.Call(w, pixels)                // weights bound as graph inputs
//	outs, err = f.Call(merged, pixels)            // other weights: no recompilation
//
// Images are float32 [batch, height, width, 3], channels-last and normalized
// (datasets.Batch.Images; Pixels wraps them as a tensor). Token ids are
// int32 or int64 [batch, seq].
//
// Weights can instead live in a GoMLX context (Weights.ToContext, then
// ContextParams inside a context.Exec or a trainer), which is how
// fine-tuning differentiates with respect to them.
//
// ReadWeights converts F16, BF16 and F64 tensors to float32 on the host:
// simplego has no F16, and its BF16 matmul is slower than F32.
//
// # Backend
//
// Backend returns one process-wide backend: the one GOMLX_BACKEND names
// (e.g. "xla:cuda" or "xla:/abs/path/to/pjrt_plugin.so"), else GoMLX's
// pure-Go simplego with ops run sequentially ("go:ops_sequential"), which
// avoids a deadlock of simplego's worker pool. A configured backend that
// cannot start (no PJRT plugin found: GoMLX's auto-install needs the
// internet) falls back to simplego with a message on stderr.
//
// On NVIDIA GPUs, JAX's CUDA PJRT plugin works
// (GOMLX_BACKEND=xla:<site-packages>/jax_plugins/xla_cuda13/xla_cuda_plugin.so,
// checked on an H200). XLA would run float32 matrix products in TF32 there
// (errors near 1e-3 against PyTorch); for XLA backends the package sets
// NVIDIA_TF32_OVERRIDE=0 and --xla_gpu_enable_triton_gemm=false (when not
// set already) so that they run in float32, as PyTorch's do by default. Add
// GoMLX's ",tf32" option to the config to allow TF32.
//
// # Building blocks
//
// LayerNorm, Linear (PyTorch [out, in] weights), Project ([in, out]),
// SelfAttention (fused in_proj as in torch.nn.MultiheadAttention, or
// separate q/k/v as in Hugging Face), MLP with GELU (exact, erf) or
// QuickGELU, the pre-LN residual Block, PatchEmbed (a stride-p convolution
// written as reshape + matmul over channels-last pixels), and token
// selection. None uses Slice, whose gradient needs Pad, which simplego
// lacks; rows and tokens are picked with Gather.
//
// # Gradients
//
// Importing this package installs the fixes of models/fastgrad: GoMLX
// v0.26's gradient of DotGeneral and Dot materialises a [batch, M, N, K]
// intermediate (the replacement computes two matrix products), and its
// gradient of Slice needs Pad (the replacement concatenates zero blocks),
// which second derivatives through Concatenate (package linearize's JVP)
// reach.
//
// # Speed on CPUs
//
// Importing this package also installs models/cpukernels: simplego's matrix
// products and its heaviest elementwise, reduction and layout ops run on
// editkit's AVX2/AVX-512 kernels (EDITKIT_NOSIMD=1 keeps simplego's pure-Go
// ones).
package models

import (
	"github.com/editkit/editkit/models/cpukernels"
	"github.com/editkit/editkit/models/fastgrad"
)

func init() {
	fastgrad.Install()
	cpukernels.Install()
}
