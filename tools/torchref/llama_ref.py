#!/usr/bin/python3
"""Reference outputs for editkit's LLaMA-family language models (models/llama).

For tiny random models it writes, into models/testdata/llama-<case>/:

  - model.safetensors: the weights under Hugging Face's state_dict names (float32; a tied
    lm_head is left out, as transformers saves it),
  - config.json: transformers' LlamaConfig / Qwen2Config fields,
  - io.safetensors: input_ids int64 [B, S] and the expected outputs:
      logits    [B, S, vocab]
      features  [B, S, intermediate]  the input of layer FEATURE_LAYER's mlp.down_proj
      loss      [1]   mean next-token cross-entropy of logits[:, :-1] against input_ids[:, 1:]
      grad.<name of layer FEATURE_LAYER's down_proj weight>  d loss / d weight

The modules are small torch.nn re-implementations laid out exactly like transformers'
modeling_llama.py and modeling_qwen2.py (LlamaForCausalLM, Qwen2ForCausalLM: eval mode, no
dropout, eager attention): RMSNorm, rotary embeddings in the half-split (rotate_half) layout
with rope_theta and rope_scaling (linear, llama3), grouped-query attention (repeat_kv),
SwiGLU MLP, causal mask, tied or untied lm_head. transformers itself is not needed.

Outputs are computed in float64 from the float32 weights and stored as float32: the Go tests
then measure their own float32 error against (nearly) exact values.

Run with Debian's torch 1.13:  /usr/bin/python3 tools/torchref/llama_ref.py [--out DIR] [case...]
"""

import argparse
import math
import os
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchref import save_safetensors, write_json  # noqa: E402

FEATURE_LAYER = 1


# ---------------------------------------------------------------------------
# transformers.models.llama.modeling_llama (and qwen2), eval mode


class LlamaRMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.variance_epsilon = eps

    def forward(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * x


def inv_freq(c):
    """LlamaRotaryEmbedding's inv_freq (ROPE_INIT_FUNCTIONS), in float64."""
    dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    base = c.get("rope_theta", 10000.0)
    f = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    rs = c.get("rope_scaling")
    if not rs:
        return f
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return f / rs["factor"]
    if kind == "llama3":  # _compute_llama3_parameters
        factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = 2 * math.pi / f
        scaled = torch.where(wavelen > low_wavelen, f / factor, f)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return torch.where(medium, smoothed, scaled)
    raise ValueError(kind)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(x, n_rep):
    b, kvh, s, hd = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, kvh, n_rep, s, hd).reshape(b, kvh * n_rep, s, hd)


class LlamaAttention(nn.Module):
    def __init__(self, c, qkv_bias, o_bias):
        super().__init__()
        d = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.kv_heads = c["num_key_value_heads"]
        self.head_dim = c.get("head_dim") or d // self.heads
        self.q_proj = nn.Linear(d, self.heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(d, self.kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(d, self.kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(self.heads * self.head_dim, d, bias=o_bias)

    def forward(self, x, cos, sin):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = repeat_kv(k, self.heads // self.kv_heads)
        v = repeat_kv(v, self.heads // self.kv_heads)
        scores = q @ k.transpose(2, 3) * self.head_dim ** -0.5
        mask = torch.full((s, s), float("-inf"), dtype=scores.dtype).triu(1)
        probs = (scores + mask).softmax(-1)
        out = (probs @ v).transpose(1, 2).reshape(b, s, self.heads * self.head_dim)
        return self.o_proj(out)


class LlamaMLP(nn.Module):
    def __init__(self, c, bias):
        super().__init__()
        d, f = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(d, f, bias=bias)
        self.up_proj = nn.Linear(d, f, bias=bias)
        self.down_proj = nn.Linear(f, d, bias=bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c, qkv_bias, o_bias):
        super().__init__()
        self.self_attn = LlamaAttention(c, qkv_bias, o_bias)
        self.mlp = LlamaMLP(c, c.get("mlp_bias", False))
        self.input_layernorm = LlamaRMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = LlamaRMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, c, qkv_bias, o_bias):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([LlamaDecoderLayer(c, qkv_bias, o_bias) for _ in range(c["num_hidden_layers"])])
        self.norm = LlamaRMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.inv_freq = inv_freq(c)  # a plain attribute: not in the state dict (non-persistent in HF)

    def forward(self, ids):
        x = self.embed_tokens(ids)
        pos = torch.arange(ids.shape[1], dtype=torch.float64)
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    """LlamaForCausalLM and Qwen2ForCausalLM (same layout; Qwen2 has q/k/v biases only)."""

    def __init__(self, c):
        super().__init__()
        if c["model_type"] == "qwen2":
            qkv_bias, o_bias = True, False
        else:
            qkv_bias = o_bias = c.get("attention_bias", False)
        self.model = LlamaModel(c, qkv_bias, o_bias)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        self.tied = c.get("tie_word_embeddings", False)
        if self.tied:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, ids):
        return self.lm_head(self.model(ids))


# ---------------------------------------------------------------------------
# Cases


def randomize(model, gen):
    """Every parameter random, RMSNorm gains near 1, so that no bias or norm is a no-op."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 1:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))  # biases
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))


def base_config(**kw):
    c = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 96,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
        "initializer_range": 0.02, "torch_dtype": "float32",
    }
    c.update(kw)
    return c


CONFIGS = OrderedDict([
    # Grouped-query attention (4 heads over 2 key/value heads), untied lm_head, no biases,
    # a head_dim that is not hidden_size / heads.
    ("llama-gqa", base_config(head_dim=12)),
    # Tied embeddings (no lm_head.weight saved), attention_bias (q, k, v and o biases),
    # multi-query attention (1 key/value head), LLaMA 3.1 rope scaling and rope_theta.
    ("llama-tied-bias", base_config(
        num_key_value_heads=1, tie_word_embeddings=True, attention_bias=True, rope_theta=500000.0,
        eos_token_id=[2, 3], rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
    # Qwen2: q/k/v biases, no o_proj bias, GQA, tied embeddings, rope_theta 1e6, no BOS.
    ("llama-qwen2", {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "hidden_size": 32, "intermediate_size": 80, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 96,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "hidden_act": "silu", "tie_word_embeddings": True, "use_sliding_window": False,
        "bos_token_id": None, "eos_token_id": 95, "torch_dtype": "float32",
    }),
])


def float_state_dict(model, tied):
    out = OrderedDict()
    for k, v in model.state_dict().items():
        if tied and k == "lm_head.weight":
            continue  # transformers drops the shared tensor when saving
        out[k] = v.detach().to(torch.float32).clone()
    return out


def write_case(out, c, gen):
    m = LlamaForCausalLM(c).eval()
    randomize(m, gen)
    sd = float_state_dict(m, m.tied)
    ids = torch.randint(0, c["vocab_size"], (2, 12), generator=gen)
    m = m.double()
    feats = {}
    down = m.model.layers[FEATURE_LAYER].mlp.down_proj
    hook = down.register_forward_hook(lambda mod, inp, outp: feats.__setitem__("x", inp[0]))
    logits = m(ids)
    hook.remove()
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, c["vocab_size"]), ids[:, 1:].reshape(-1))
    loss.backward()
    gname = "model.layers.%d.mlp.down_proj.weight" % FEATURE_LAYER
    save_safetensors(os.path.join(out, "model.safetensors"), sd, {"format": "pt"})
    write_json(os.path.join(out, "config.json"), c)
    save_safetensors(os.path.join(out, "io.safetensors"), OrderedDict([
        ("input_ids", ids), ("logits", logits.detach().float()), ("features", feats["x"].detach().float()),
        ("loss", loss.detach().reshape(1).float()), ("grad." + gname, down.weight.grad.float())]))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "models", "testdata"),
                    help="folder that receives one subfolder per case (default: models/testdata)")
    ap.add_argument("--seed", type=int, default=20240612)
    ap.add_argument("cases", nargs="*", default=list(CONFIGS), help="cases to write (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for i, name in enumerate(args.cases):
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        gen = torch.Generator().manual_seed(args.seed + i)
        torch.manual_seed(args.seed + i)  # module constructors draw from the global generator
        write_case(d, CONFIGS[name], gen)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print("%-16s %s (%d bytes)" % (name, os.path.normpath(d), size))


if __name__ == "__main__":
    main()
