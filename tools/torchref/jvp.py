#!/usr/bin/python3
"""Reference Jacobian-vector products of editkit's image encoders (linearize's tests).

For each tiny random model of models/testdata (hf-vit, hf-clip, openai-clip: the
models torchref.py wrote), it draws a random direction d for every image-encoder
weight and computes, with PyTorch's forward-mode autodiff
(torch.autograd.forward_ad, dual numbers: independent of any reverse pass) in
float64 from the stored float32 weights:

  - the encoder's features f(x; θ₀) (ViT: the pooled CLS token after the final
    layernorm; CLIP: the projected image embedding),
  - the JVP J_θ f(x; θ₀)·d,

and writes linearize/testdata/<case>.safetensors holding pixel_values (the case's
own inputs), the direction under each weight's checkpoint name prefixed
"direction/", and "primal" and "jvp" (float32 [batch, features]).

Run with Debian's torch 1.13:  /usr/bin/python3 tools/torchref/jvp.py [--out DIR]
"""

import argparse
import json
import os
import struct
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torchref  # noqa: E402  (the modules and the safetensors writer)

_NP = {"F32": np.float32, "I64": np.int64}


def load_safetensors(path):
    """Reads a safetensors file (F32 and I64 tensors) into an ordered dict of tensors."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = OrderedDict()
    items = sorted(((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0])
    for name, info in items:
        lo, hi = info["data_offsets"]
        a = np.frombuffer(data[lo:hi], dtype=_NP[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(a.copy())
    return out


def build(case, d):
    """The case's module (float64, weights loaded) and its image-feature function."""
    if case == "hf-vit":
        c = json.load(open(os.path.join(d, "config.json")))
        c["num_labels"] = len(c["id2label"])
        m = torchref.ViTForImageClassification(c)
        sd = load_safetensors(os.path.join(d, "model.safetensors"))
        feature = lambda mod, x: mod.vit(x)[:, 0, :]
        prefix = "vit."
    elif case == "hf-clip":
        c = json.load(open(os.path.join(d, "config.json")))
        m = torchref.CLIPModel(c)
        sd = load_safetensors(os.path.join(d, "model.safetensors"))
        feature = lambda mod, x: mod.visual_projection(mod.vision_model(x))
        prefix = ("vision_model.", "visual_projection.")
    elif case == "openai-clip":
        c = json.load(open(os.path.join(d, "open_clip_config.json")))["model_cfg"]
        m = torchref.OpenAICLIP(c)
        sd = load_safetensors(os.path.join(d, "open_clip_model.safetensors"))
        feature = lambda mod, x: mod.encode_image(x)
        prefix = "visual."
    else:
        raise ValueError(case)
    m.load_state_dict(sd)
    m = m.double().eval()
    params = OrderedDict((k, v) for k, v in m.named_parameters() if k.startswith(prefix))
    return m, feature, params


def case_jvp(case, d, gen, out):
    m, feature, params = build(case, d)
    io = load_safetensors(os.path.join(d, "io.safetensors"))
    x = io["pixel_values"]
    xd = x.double().permute(0, 3, 1, 2)
    # A direction of about a tenth of each tensor's own scale.
    dirs = OrderedDict()
    for name, p in params.items():
        rms = float(p.detach().pow(2).mean().sqrt())
        dirs[name] = (0.1 * max(rms, 1e-3) * torch.randn(p.shape, generator=gen, dtype=torch.float64)).float()
    with torch.no_grad(), fwAD.dual_level():
        duals = {k: fwAD.make_dual(p.detach(), dirs[k].double()) for k, p in params.items()}
        # The feature functions call submodules (not forward()), so the dual
        # parameters replace the module's own by hand; the module is ours alone.
        for k, v in duals.items():
            mod, attr = m, k
            while "." in attr:
                head, attr = attr.split(".", 1)
                mod = getattr(mod, head)
            delattr(mod, attr)
            setattr(mod, attr, v)
        y = feature(m, xd)
        primal, tangent = fwAD.unpack_dual(y)
    tensors = OrderedDict([("pixel_values", x)])
    for k, v in dirs.items():
        tensors["direction/" + k] = v
    tensors["primal"] = primal.float()
    tensors["jvp"] = tangent.float()
    path = os.path.join(out, case + ".safetensors")
    torchref.save_safetensors(path, tensors, {"source": "tools/torchref/jvp.py", "case": case})
    print("%-12s %s (%d bytes; |jvp|max %.3g)" % (case, path, os.path.getsize(path), float(tangent.abs().max())))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.join(here, "..", "..")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=os.path.join(root, "models", "testdata"))
    ap.add_argument("--out", default=os.path.join(root, "linearize", "testdata"))
    ap.add_argument("--seed", type=int, default=20240612)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    for i, case in enumerate(["hf-vit", "hf-clip", "openai-clip"]):
        gen = torch.Generator().manual_seed(args.seed + i)
        case_jvp(case, os.path.join(args.models, case), gen, args.out)


if __name__ == "__main__":
    main()
