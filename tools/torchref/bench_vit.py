#!/usr/bin/python3
"""PyTorch reference timings for `editkit bench vit`.

Times, in PyTorch, the workloads editkit times in GoMLX, with the same shapes and
settings, and prints one JSON line with the raw timings (editkit computes the medians
and rates of both sides the same way):

  - forward: a ViT laid out as Hugging Face's ViTModel (patch convolution, CLS token,
    position embeddings, pre-LN blocks with separate q/k/v projections, exact GELU,
    final LayerNorm, CLS pooling), random weights, eval mode, torch.inference_mode,
    `--iters` timed calls on one batch of `--batch` random images after `--warmup` calls;
  - train: the same architecture with a linear classifier, softmax cross-entropy,
    gradient norm clipped to `--clip`, torch.optim.AdamW(lr, weight_decay), `--steps`
    timed steps after `--warmup`.

Each timed call takes the batch from host memory to the device and brings the result
back to the host (pooled features; the loss), as editkit's calls do, so on a GPU the
timings include those transfers and a synchronisation. Float32 throughout; on CUDA,
TF32 is switched off for matrix products and convolutions (editkit's XLA backend
computes in float32 too). Attention uses torch.nn.functional.scaled_dot_product_attention
where the torch version has it (2.0+), else the explicit softmax(q kᵀ/√d) v.

Run by `editkit bench vit`; by hand:
    /usr/bin/python3 tools/torchref/bench_vit.py --iters 2 --steps 5
"""

import argparse
import json
import math
import os
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: os.cpu_count())")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iters", type=int, default=2)
    for prefix, d in (("", (768, 12, 12, 3072, 32, 224)), ("train-", (192, 6, 3, 768, 16, 64))):
        for name, v in zip(("width", "layers", "heads", "mlp", "patch", "image"), d):
            p.add_argument("--" + prefix + name, type=int, default=v)
    p.add_argument("--train-batch", type=int, default=32)
    p.add_argument("--train-classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--attention", default="auto", choices=["auto", "sdpa", "eager"])
    return p.parse_args()


def fail(msg):
    print(json.dumps({"error": msg}))
    sys.exit(3)


def vit_class(attention):
    """The ViT module (Hugging Face ViTModel's layout) with the given attention ("sdpa" or "eager")."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Attention(nn.Module):
        def __init__(self, width, heads):
            super().__init__()
            self.heads = heads
            self.query = nn.Linear(width, width)
            self.key = nn.Linear(width, width)
            self.value = nn.Linear(width, width)
            self.dense = nn.Linear(width, width)

        def forward(self, x):
            b, t, w = x.shape
            h = self.heads

            def split(y):
                return y.view(b, t, h, w // h).transpose(1, 2)

            q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
            if attention == "sdpa":
                o = F.scaled_dot_product_attention(q, k, v)
            else:
                s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(w // h)
                o = torch.matmul(s.softmax(-1), v)
            return self.dense(o.transpose(1, 2).reshape(b, t, w))

    class Block(nn.Module):
        def __init__(self, width, heads, mlp):
            super().__init__()
            self.layernorm_before = nn.LayerNorm(width, eps=1e-12)
            self.attention = Attention(width, heads)
            self.layernorm_after = nn.LayerNorm(width, eps=1e-12)
            self.intermediate = nn.Linear(width, mlp)
            self.output = nn.Linear(mlp, width)

        def forward(self, x):
            x = x + self.attention(self.layernorm_before(x))
            return x + self.output(F.gelu(self.intermediate(self.layernorm_after(x))))

    class ViT(nn.Module):
        def __init__(self, width, layers, heads, mlp, patch, image, classes=0):
            super().__init__()
            n = (image // patch) ** 2
            self.projection = nn.Conv2d(3, width, patch, stride=patch)
            self.cls_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
            self.position_embeddings = nn.Parameter(torch.randn(1, n + 1, width) * 0.02)
            self.layer = nn.ModuleList([Block(width, heads, mlp) for _ in range(layers)])
            self.layernorm = nn.LayerNorm(width, eps=1e-12)
            self.classifier = nn.Linear(width, classes) if classes else None

        def forward(self, pixels):
            x = self.projection(pixels).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
            x = x + self.position_embeddings
            for blk in self.layer:
                x = blk(x)
            pooled = self.layernorm(x)[:, 0]
            return self.classifier(pooled) if self.classifier is not None else pooled

    return ViT


def main():
    args = parse_args()
    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except Exception as e:  # no torch: say so in the JSON, editkit reports it
        fail("PyTorch is not importable by %s: %s" % (sys.executable, e))

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            fail("torch %s sees no CUDA device" % torch.__version__)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    has_sdpa = hasattr(F, "scaled_dot_product_attention")
    attention = args.attention
    if attention == "auto":
        attention = "sdpa" if has_sdpa else "eager"
    if attention == "sdpa" and not has_sdpa:
        fail("torch %s has no scaled_dot_product_attention" % torch.__version__)

    ViT = vit_class(attention)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(call, warmup, n):
        first, seconds = 0.0, []
        for i in range(warmup + n):
            sync()
            t = time.perf_counter()
            call()
            sync()
            dt = time.perf_counter() - t
            if i == 0:
                first = dt
            if i >= warmup:
                seconds.append(dt)
        return first, seconds

    torch.manual_seed(0)
    out = {"torch": torch.__version__, "device": args.device, "threads": torch.get_num_threads(),
           "notes": {"attention": attention, "layout": "NCHW pixels", "dtype": "float32"}}
    if device.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(device)
        out["notes"]["tf32"] = "off"

    if args.iters > 0:
        model = ViT(args.width, args.layers, args.heads, args.mlp, args.patch, args.image).to(device).eval()
        x = torch.rand(args.batch, 3, args.image, args.image) * 2 - 1  # host memory

        def forward():
            with torch.inference_mode():
                model(x.to(device)).cpu()

        first, seconds = timed(forward, args.warmup, args.iters)
        out["forward"] = {"first_seconds": first, "seconds": seconds}
        del model

    if args.steps > 0:
        model = ViT(args.train_width, args.train_layers, args.train_heads, args.train_mlp, args.train_patch,
                    args.train_image, args.train_classes).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8,
                                weight_decay=args.weight_decay)
        x = torch.rand(args.train_batch, 3, args.train_image, args.train_image) * 2 - 1
        y = torch.randint(0, args.train_classes, (args.train_batch,))
        losses = []

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            losses.append(loss.item())

        first, seconds = timed(step, args.warmup, args.steps)
        out["train"] = {"first_seconds": first, "seconds": seconds, "loss": [losses[0], losses[-1]]}

    blas = loaded_blas()
    if blas:
        out["notes"]["blas"] = blas
        if "/blas/libblas" in blas:
            out["notes"]["warning"] = ("torch's BLAS is the reference (netlib) libblas: CPU matrix products run "
                                       "~100x slower than with OpenBLAS (apt-get install libopenblas0-pthread)")
    print(json.dumps(out))


def loaded_blas():
    """The BLAS libraries mapped into this process (Linux), e.g. OpenBLAS or the reference libblas."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    except OSError:
        return ""
    return ", ".join(sorted(libs))


if __name__ == "__main__":
    main()
