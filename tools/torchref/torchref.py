#!/usr/bin/python3
"""Reference outputs for editkit's image and text models (models/vit, models/clip).

For tiny random models in each naming it writes, into models/testdata/<case>/:

  - the weights as safetensors (float32, written by hand: no safetensors package),
  - config.json (Hugging Face namings) or open_clip_config.json (OpenAI naming),
  - io.safetensors: the deterministic inputs (pixel_values channels-last [B,H,W,3],
    input_ids int64 [B,S]) and the expected outputs.

The modules below are small torch.nn re-implementations laid out exactly like the
published ones (transformers' ViTForImageClassification and CLIPModel, OpenAI's
clip/model.py, whose names open_clip keeps), so their state_dict names and shapes are
the real ones; neither transformers nor open_clip is needed. The OpenAI model uses
torch.nn.MultiheadAttention itself, so the fused in_proj layout is torch's own.

Outputs are computed in float64 from the float32 weights and stored as float32: the Go
tests then measure their own float32 error against (nearly) exact values.

Run with Debian's torch 1.13:  /usr/bin/python3 tools/torchref/torchref.py [--out DIR]
"""

import argparse
import json
import math
import os
import struct
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# safetensors, by hand


_DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def save_safetensors(path, tensors, metadata=None):
    """Writes an ordered dict name -> tensor (float32 or int64) as safetensors."""
    header = OrderedDict()
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    blobs = []
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        if t.dtype not in _DTYPES:
            t = t.to(torch.float32)
        data = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)  # align the data section to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


# ---------------------------------------------------------------------------
# Activations


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


def activation(name):
    if name == "gelu":
        return nn.GELU()  # exact, erf
    if name == "quick_gelu":
        return QuickGELU()
    raise ValueError(name)


# ---------------------------------------------------------------------------
# Hugging Face ViT (transformers.models.vit.modeling_vit), eval mode, no dropout


class ViTPatchEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.projection = nn.Conv2d(3, c["hidden_size"], c["patch_size"], stride=c["patch_size"])

    def forward(self, x):
        return self.projection(x).flatten(2).transpose(1, 2)


class ViTEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        n = (c["image_size"] // c["patch_size"]) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, c["hidden_size"]))
        self.patch_embeddings = ViTPatchEmbeddings(c)
        self.position_embeddings = nn.Parameter(torch.randn(1, n + 1, c["hidden_size"]))

    def forward(self, x):
        e = self.patch_embeddings(x)
        cls = self.cls_token.expand(e.shape[0], -1, -1)
        return torch.cat([cls, e], dim=1) + self.position_embeddings


class ViTSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        w = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.query = nn.Linear(w, w)
        self.key = nn.Linear(w, w)
        self.value = nn.Linear(w, w)

    def split(self, x):
        b, s, w = x.shape
        return x.view(b, s, self.heads, w // self.heads).permute(0, 2, 1, 3)

    def forward(self, x):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        ctx = scores.softmax(-1) @ v
        b, h, s, d = ctx.shape
        return ctx.permute(0, 2, 1, 3).reshape(b, s, h * d)


class ViTSelfOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])

    def forward(self, x):
        return self.dense(x)


class ViTAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = ViTSelfAttention(c)
        self.output = ViTSelfOutput(c)

    def forward(self, x):
        return self.output(self.attention(x))


class ViTIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])
        self.act = activation(c["hidden_act"])

    def forward(self, x):
        return self.act(self.dense(x))


class ViTOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["intermediate_size"], c["hidden_size"])

    def forward(self, x, residual):
        return self.dense(x) + residual


class ViTLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = c["layer_norm_eps"]
        self.attention = ViTAttention(c)
        self.intermediate = ViTIntermediate(c)
        self.output = ViTOutput(c)
        self.layernorm_before = nn.LayerNorm(c["hidden_size"], eps=eps)
        self.layernorm_after = nn.LayerNorm(c["hidden_size"], eps=eps)

    def forward(self, x):
        x = self.attention(self.layernorm_before(x)) + x
        return self.output(self.intermediate(self.layernorm_after(x)), x)


class ViTEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([ViTLayer(c) for _ in range(c["num_hidden_layers"])])

    def forward(self, x):
        for l in self.layer:
            x = l(x)
        return x


class ViTModel(nn.Module):  # add_pooling_layer=False, as in ViTForImageClassification
    def __init__(self, c):
        super().__init__()
        self.embeddings = ViTEmbeddings(c)
        self.encoder = ViTEncoder(c)
        self.layernorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, x):
        return self.layernorm(self.encoder(self.embeddings(x)))


class ViTForImageClassification(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.vit = ViTModel(c)
        self.classifier = nn.Linear(c["hidden_size"], c["num_labels"])

    def forward(self, x):
        pooled = self.vit(x)[:, 0, :]
        return pooled, self.classifier(pooled)


# ---------------------------------------------------------------------------
# Hugging Face CLIP (transformers.models.clip.modeling_clip), eval mode


class CLIPAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        w = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.k_proj = nn.Linear(w, w)
        self.v_proj = nn.Linear(w, w)
        self.q_proj = nn.Linear(w, w)
        self.out_proj = nn.Linear(w, w)

    def split(self, x):
        b, s, w = x.shape
        return x.view(b, s, self.heads, w // self.heads).transpose(1, 2)

    def forward(self, x, mask=None):
        d = x.shape[-1] // self.heads
        q = self.split(self.q_proj(x) * d ** -0.5)
        k, v = self.split(self.k_proj(x)), self.split(self.v_proj(x))
        scores = q @ k.transpose(-1, -2)
        if mask is not None:
            scores = scores + mask
        ctx = scores.softmax(-1) @ v
        b, h, s, dd = ctx.shape
        return self.out_proj(ctx.transpose(1, 2).reshape(b, s, h * dd))


class CLIPMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.act = activation(c["hidden_act"])
        self.fc1 = nn.Linear(c["hidden_size"], c["intermediate_size"])
        self.fc2 = nn.Linear(c["intermediate_size"], c["hidden_size"])

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = CLIPAttention(c)
        self.layer_norm1 = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.mlp = CLIPMLP(c)
        self.layer_norm2 = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, x, mask=None):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(c) for _ in range(c["num_hidden_layers"])])

    def forward(self, x, mask=None):
        for l in self.layers:
            x = l(x, mask)
        return x


class CLIPVisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        w, p = c["hidden_size"], c["patch_size"]
        n = (c["image_size"] // p) ** 2 + 1
        self.class_embedding = nn.Parameter(torch.randn(w))
        self.patch_embedding = nn.Conv2d(3, w, p, stride=p, bias=False)
        self.position_embedding = nn.Embedding(n, w)
        self.register_buffer("position_ids", torch.arange(n).expand((1, -1)))

    def forward(self, x):
        e = self.patch_embedding(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        return torch.cat([cls, e], dim=1) + self.position_embedding(self.position_ids)


class CLIPVisionTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = CLIPVisionEmbeddings(c)
        self.pre_layrnorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])  # sic
        self.encoder = CLIPEncoder(c)
        self.post_layernorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, x):
        x = self.encoder(self.pre_layrnorm(self.embeddings(x)))
        return self.post_layernorm(x[:, 0, :])


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        w = c["hidden_size"]
        self.token_embedding = nn.Embedding(c["vocab_size"], w)
        self.position_embedding = nn.Embedding(c["max_position_embeddings"], w)
        self.register_buffer("position_ids", torch.arange(c["max_position_embeddings"]).expand((1, -1)))

    def forward(self, ids):
        s = ids.shape[-1]
        return self.token_embedding(ids) + self.position_embedding(self.position_ids[:, :s])


class CLIPTextTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = CLIPTextEmbeddings(c)
        self.encoder = CLIPEncoder(c)
        self.final_layer_norm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, ids):
        x = self.embeddings(ids)
        s = ids.shape[1]
        mask = torch.full((s, s), float("-inf"), dtype=x.dtype).triu_(1)
        x = self.final_layer_norm(self.encoder(x, mask))
        return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)]


class CLIPModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        tc, vc = c["text_config"], c["vision_config"]
        self.text_model = CLIPTextTransformer(tc)
        self.vision_model = CLIPVisionTransformer(vc)
        self.visual_projection = nn.Linear(vc["hidden_size"], c["projection_dim"], bias=False)
        self.text_projection = nn.Linear(tc["hidden_size"], c["projection_dim"], bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(c["logit_scale_init_value"]))

    def forward(self, pixels, ids):
        img = self.visual_projection(self.vision_model(pixels))
        txt = self.text_projection(self.text_model(ids))
        return img, txt, clip_logits(img, txt, self.logit_scale)


def clip_logits(img, txt, logit_scale):
    img = img / img.norm(dim=-1, keepdim=True)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    return logit_scale.exp() * img @ txt.t()  # logits_per_image


# ---------------------------------------------------------------------------
# OpenAI CLIP (clip/model.py; open_clip keeps these names), eval mode


class LayerNorm(nn.LayerNorm):
    pass


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d_model, n_head, mlp_width, act, attn_mask=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, mlp_width)),
            ("gelu", activation(act)),
            ("c_proj", nn.Linear(mlp_width, d_model)),
        ]))
        self.ln_2 = LayerNorm(d_model)
        self.attn_mask = attn_mask

    def attention(self, x):
        mask = self.attn_mask.to(dtype=x.dtype) if self.attn_mask is not None else None
        return self.attn(x, x, x, need_weights=False, attn_mask=mask)[0]

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, mlp_width, act, attn_mask=None):
        super().__init__()
        self.resblocks = nn.Sequential(*[
            ResidualAttentionBlock(width, heads, mlp_width, act, attn_mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self, image_size, patch_size, width, layers, heads, mlp_width, output_dim, act):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((image_size // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, mlp_width, act)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)  # NLD -> LND -> NLD
        return self.ln_post(x[:, 0, :]) @ self.proj


class OpenAICLIP(nn.Module):
    def __init__(self, c):
        super().__init__()
        v, t = c["vision_cfg"], c["text_cfg"]
        act = "quick_gelu" if c.get("quick_gelu") else "gelu"
        self.context_length = t["context_length"]
        self.visual = VisionTransformer(v["image_size"], v["patch_size"], v["width"], v["layers"],
                                        v["width"] // v["head_width"], int(v["width"] * v["mlp_ratio"]),
                                        c["embed_dim"], act)
        self.transformer = Transformer(t["width"], t["layers"], t["heads"], int(t["width"] * t["mlp_ratio"]),
                                       act, attn_mask=self.build_attention_mask())
        self.token_embedding = nn.Embedding(t["vocab_size"], t["width"])
        self.positional_embedding = nn.Parameter(torch.empty(self.context_length, t["width"]))
        self.ln_final = LayerNorm(t["width"])
        self.text_projection = nn.Parameter(torch.empty(t["width"], c["embed_dim"]))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))

    def build_attention_mask(self):
        mask = torch.empty(self.context_length, self.context_length)
        mask.fill_(float("-inf"))
        mask.triu_(1)
        return mask

    def encode_image(self, pixels):
        return self.visual(pixels)

    def encode_text(self, ids):
        x = self.token_embedding(ids) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ self.text_projection

    def forward(self, pixels, ids):
        img, txt = self.encode_image(pixels), self.encode_text(ids)
        return img, txt, clip_logits(img, txt, self.logit_scale)


# ---------------------------------------------------------------------------
# Cases


def randomize(model, gen):
    """Every parameter random, LayerNorm weights near 1, so that no bias or norm is a no-op."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("logit_scale"):
                p.fill_(math.log(1 / 0.07) + 0.25)
            elif isinstance(p, torch.Tensor) and name.split(".")[-1] == "weight" and p.dim() == 1:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))  # LayerNorm gain
            elif p.dim() == 1 and not name.endswith("class_embedding"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))  # biases
            else:
                fan_in = p.shape[-1] if p.dim() > 1 else p.shape[0]
                if p.dim() == 4:
                    fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))


def pixels(gen, b, size):
    return torch.randn(b, size, size, 3, generator=gen)  # channels-last, "normalized"


def token_ids(gen, b, s, vocab):
    """CLIP-tokenizer-like rows: SOT, words, EOT (the highest id), zero padding."""
    sot, eot = vocab - 2, vocab - 1
    rows = []
    for i in range(b):
        n = min(s - 2, 1 + (5 * i + 3) % (s - 2))  # words per row: varied, incl. a full row
        words = torch.randint(1, vocab - 2, (n,), generator=gen).tolist()
        row = [sot] + words + [eot]
        rows.append(row + [0] * (s - len(row)))
    rows[-1] = [sot] + torch.randint(1, vocab - 2, (s - 2,), generator=gen).tolist() + [eot]
    return torch.tensor(rows, dtype=torch.int64)


def float_state_dict(model):
    """The state dict in float32, in module order; integer buffers stay int64."""
    out = OrderedDict()
    for k, v in model.state_dict().items():
        out[k] = v.clone() if not v.is_floating_point() else v.to(torch.float32).clone()
    return out


def case_hf_vit(out, gen):
    c = {
        "architectures": ["ViTForImageClassification"], "model_type": "vit",
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
        "image_size": 32, "patch_size": 8, "num_channels": 3, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
        "qkv_bias": True, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "id2label": {str(i): "LABEL_%d" % i for i in range(5)},
        "label2id": {"LABEL_%d" % i: i for i in range(5)},
        "torch_dtype": "float32",
    }
    c["num_labels"] = len(c["id2label"])
    m = ViTForImageClassification(c).eval()
    randomize(m, gen)
    x = pixels(gen, 2, c["image_size"])
    sd = float_state_dict(m)
    with torch.no_grad():
        pooled, logits = m.double()(x.double().permute(0, 3, 1, 2))
    del c["num_labels"]  # HF derives it from id2label
    save_safetensors(os.path.join(out, "model.safetensors"), sd, {"format": "pt"})
    write_json(os.path.join(out, "config.json"), c)
    save_safetensors(os.path.join(out, "io.safetensors"), OrderedDict([
        ("pixel_values", x), ("pooled", pooled.float()), ("logits", logits.float())]))


def case_hf_clip(out, gen):
    c = {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 24,
        "logit_scale_init_value": 2.6592, "torch_dtype": "float32",
        "vision_config": {"hidden_size": 32, "intermediate_size": 128, "num_attention_heads": 4,
                          "num_hidden_layers": 2, "image_size": 32, "patch_size": 8, "num_channels": 3,
                          "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5},
        "text_config": {"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 4,
                        "num_hidden_layers": 2, "max_position_embeddings": 16, "vocab_size": 100,
                        "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
                        "bos_token_id": 98, "eos_token_id": 99, "pad_token_id": 0},
    }
    m = CLIPModel(c).eval()
    randomize(m, gen)
    x = pixels(gen, 2, c["vision_config"]["image_size"])
    ids = token_ids(gen, 3, c["text_config"]["max_position_embeddings"], c["text_config"]["vocab_size"])
    sd = float_state_dict(m)
    with torch.no_grad():
        img, txt, logits = m.double()(x.double().permute(0, 3, 1, 2), ids)
    save_safetensors(os.path.join(out, "model.safetensors"), sd, {"format": "pt"})
    write_json(os.path.join(out, "config.json"), c)
    save_safetensors(os.path.join(out, "io.safetensors"), OrderedDict([
        ("pixel_values", x), ("input_ids", ids),
        ("image_embeds", img.float()), ("text_embeds", txt.float()), ("logits_per_image", logits.float())]))


def case_openai_clip(out, gen):
    # open_clip's model config layout (open_clip_config.json on the Hugging Face hub).
    c = {"model_cfg": {
        "embed_dim": 24, "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 8, "patch_size": 8,
                       "mlp_ratio": 4.0},
        "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 48, "heads": 4, "layers": 2,
                     "mlp_ratio": 2.0},
    }}
    m = OpenAICLIP(c["model_cfg"]).eval()
    randomize(m, gen)
    x = pixels(gen, 2, c["model_cfg"]["vision_cfg"]["image_size"])
    ids = token_ids(gen, 3, 16, 100)
    sd = float_state_dict(m)
    with torch.no_grad():
        img, txt, logits = m.double()(x.double().permute(0, 3, 1, 2), ids)
    save_safetensors(os.path.join(out, "open_clip_model.safetensors"), sd, {"format": "pt"})
    write_json(os.path.join(out, "open_clip_config.json"), c)
    save_safetensors(os.path.join(out, "io.safetensors"), OrderedDict([
        ("pixel_values", x), ("input_ids", ids),
        ("image_embeds", img.float()), ("text_embeds", txt.float()), ("logits_per_image", logits.float())]))


CASES = OrderedDict([("hf-vit", case_hf_vit), ("hf-clip", case_hf_clip), ("openai-clip", case_openai_clip)])


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "models", "testdata"),
                    help="folder that receives one subfolder per case (default: models/testdata)")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("cases", nargs="*", default=list(CASES), help="cases to write (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for i, name in enumerate(args.cases):
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        gen = torch.Generator().manual_seed(args.seed + i)
        torch.manual_seed(args.seed + i)  # module constructors draw from the global generator
        CASES[name](d, gen)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print("%-12s %s (%d bytes)" % (name, os.path.normpath(d), size))


if __name__ == "__main__":
    main()
