// Package llama is the LLaMA family of causal language models in GoMLX
// (transformers' LlamaForCausalLM, and the Qwen2 and Mistral variants of
// it), loading Hugging Face checkpoints, with an adapter hook for edits that
// live inside the model, gradients with respect to any subset of the
// weights, and KV-cache generation with llama2.c's sampler. It also
// converts llama2.c checkpoints into Hugging Face folders.
//
// # The model
//
// Tensor names are transformers' own: model.embed_tokens,
// model.layers.{i}.self_attn.{q,k,v,o}_proj (q/k/v biases as in Qwen2 or
// LLaMA's attention_bias, which also gives o_proj one),
// model.layers.{i}.mlp.{gate,up,down}_proj, input_layernorm,
// post_attention_layernorm, model.norm and lm_head (absent when the output
// layer is tied to the token embedding). The architecture comes from
// config.json (Config): RMSNorm with rms_norm_eps, rotary embeddings in Hugging
// Face's half-split (rotate_half) layout with rope_theta and rope_scaling
// (linear, llama3), grouped-query attention (num_key_value_heads, head_dim),
// SwiGLU MLP, causal mask. Biases and tying are read from the checkpoint's
// tensors (ConfigFor). Mistral's sliding_window is not applied (exact for
// sequences no longer than the window). Weights are float32 (F16 and BF16 checkpoints are
// converted when read); sharded checkpoints load like single files.
//
// Forward is the model as a pure graph function of its weights
// (models.Params keyed by those names), returning logits [batch, seq,
// vocab]; Model binds weights read from a checkpoint and runs it:
//
//	m, err := llama.Load("path/to/folder")       // config.json + safetensors
//	ids, _ := llama.IDs(tok.Encode("Once upon a time", true, false))
//	logits, err := m.Logits(ids)                  // [1, seq, vocab]
//	m2, err := m.WithWeights(merged)              // same compiled graphs
//
// # Adapters
//
// An Adapter sits at a named site, the MLP down-projection of one layer
// (where MEMOIR's residual memory and GRACE's codebook live): given the
// site's input x = silu(gate)·up [batch, seq, intermediate] and output y
// [batch, seq, hidden], it returns the new output, typically y + f(x). Its
// state is its own weights (Adapter.Specs), bound as graph inputs next to
// the model's, so it can be saved as its own safetensors file, swapped
// without recompiling (WithWeights) and differentiated; per-call inputs
// (masks) are passed after the ids. The model knows nothing else about
// the adapter. ResidualLinear (y + (x⊙mask)·Wᵀ) is the simplest one.
//
//	ma, err := m.WithAdapter(adapter, state)      // state: the adapter's tensors
//	logits, err := ma.Logits(ids, mask)           // extra inputs go to Apply
//	logits, x, err := m.Features(ids, layer)      // the site's input x, for keys and masks
//
// # Gradients
//
// Every weight is a graph input, so a trainer differentiates the loss with
// respect to any subset of them: NewGradFunc compiles the masked next-token
// cross-entropy (Loss) and its gradients with respect to the weights it
// names, e.g. only the adapter's memory (MEMOIR) or only one layer's
// down_proj (FT-L, DownProjName). Graph-level code can call Forward with
// its own Params (from context variables with models.ContextParams, or
// graph parameters) and graph.Gradient directly. The tests check the
// gradients against finite differences in float64 and against PyTorch.
//
// # Generation
//
// Generator runs the model with a key/value cache of a fixed length: the
// prompt in one step, then one token per step, one compiled graph per
// number of tokens fed, the position being a graph input. The cache is
// written with DynamicUpdateSlice on backends that have it (XLA) and with
// a scatter-add of the new rows on simplego, which lacks it. Sampler is
// llama2.c's run.c sample(): greedy at temperature 0, else temperature and
// top-p with run.c's xorshift generator, so a seed gives run.c's text.
// Model.Generate is run.c's generate loop (positions counted with the BOS
// and the prompt, prompt tokens printed, stop at BOS or EOS).
//
//	toks, stats, err := m.Generate(ids, llama.GenerateOptions{
//		Steps: 256, Sampler: llama.NewSampler(0.8, 0.9, seed),
//		Emit:  func(prev, next int) { fmt.Print(llama.SafePiece(tok.DecodeToken(prev, next))) },
//	})
//
// # llama2.c conversion
//
// ConvertLlama2C turns a checkpoint of Karpathy's llama2.c (run.c's legacy
// format) into a Hugging Face LlamaForCausalLM folder: config.json,
// model.safetensors with q_proj and k_proj rows permuted from llama2.c's
// interleaved rotary layout to Hugging Face's half-split one
// (PermuteRotary), lm_head only for an unshared classifier, and the
// tokenizer.bin. Greedy decoding of the converted stories260K with this
// package's model gives llama2.c's reference text byte for byte.
//
// # Reference tests
//
// tools/torchref/llama_ref.py writes tiny random models in transformers'
// layout (grouped-query attention, tied and untied embeddings, q/k/v
// biases on and off, llama3 rope scaling, a head_dim other than
// hidden/heads) with PyTorch's logits, features, loss and gradient into
// models/testdata/llama-*; the tests need no Python.
package llama
