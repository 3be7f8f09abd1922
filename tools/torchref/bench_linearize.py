#!/usr/bin/python3
"""PyTorch reference timings for `editkit bench linearize`.

Times the cost of linearization as the reference code pays it
(gortizji/tangent_task_arithmetic src/linearize.py: LinearizedModel, a functorch
`jvp` over `make_functional_with_buffers` of the image encoder, θ₀ frozen, θ trained),
against the plain model, on a ViT laid out as in bench_vit.py with random weights, and
a frozen head on its features (L2-normalised, times a fixed random class matrix, times
100, as a CLIP zero-shot head):

  forward      head(f(x; θ))                                   inference
  forward_lin  head(f(x; θ₀) + J f(x; θ₀)(θ − θ₀))             inference
  train        one AdamW step of f (cross-entropy, clip 1)
  train_lin    one AdamW step of θ in f_lin

For each it prints the raw timings of `--warmup` + `--iters` calls (wall and process
CPU time, the latter steadier on a shared machine) and the peak
memory: on the CPU the peak resident set size of the process during the phase
(VmHWM, reset through /proc/self/clear_refs) and the resident size when the phase
started; on CUDA torch.cuda.max_memory_allocated (reset per phase) and the memory
allocated at its start. One JSON line on stdout.

Run by `editkit bench linearize`; by hand:
    /usr/bin/python3 tools/torchref/bench_linearize.py --iters 3
"""

import argparse
import copy
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: os.cpu_count())")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    for name, v in zip(("width", "layers", "heads", "mlp", "patch", "image"), (192, 6, 3, 768, 16, 64)):
        p.add_argument("--" + name, type=int, default=v)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--weight-decay", type=float, default=0.1)
    return p.parse_args()


def fail(msg):
    print(json.dumps({"error": msg}))
    sys.exit(3)


def rss_bytes(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main():
    args = parse_args()
    try:
        import torch
        import torch.nn.functional as F
        from functorch import jvp, make_functional_with_buffers
    except Exception as e:
        fail("PyTorch with functorch is not importable by %s: %s" % (sys.executable, e))
    from bench_vit import vit_class

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            fail("torch %s sees no CUDA device" % torch.__version__)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)

    ViT = vit_class("eager")
    model = ViT(args.width, args.layers, args.heads, args.mlp, args.patch, args.image).to(device).eval()
    head = F.normalize(torch.randn(args.classes, args.width), dim=-1).to(device)

    def logits(features):
        return 100 * F.normalize(features, dim=-1) @ head.t()

    # The reference's LinearizedModel: θ₀ frozen, θ trainable, initialised
    # here a little away from θ₀ so that the JVP is not of a zero direction.
    func0, params0, buffers0 = make_functional_with_buffers(model, disable_autograd_tracking=True)
    params = torch.nn.ParameterList([torch.nn.Parameter(p + 0.01 * torch.randn_like(p)) for p in params0])

    def f_lin(x):
        dparams = [p - p0 for p, p0 in zip(params, params0)]
        out, dp = jvp(lambda ps: func0(ps, buffers0, x), (tuple(params0),), (tuple(dparams),))
        return out + dp

    x = torch.rand(args.batch, 3, args.image, args.image) * 2 - 1
    y = torch.randint(0, args.classes, (args.batch,))
    plain = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(plain.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    opt_lin = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)

    def forward():
        with torch.no_grad():
            logits(model(x.to(device))).cpu()

    def forward_lin():
        with torch.no_grad():
            logits(f_lin(x.to(device))).cpu()

    def step(mdl_params, opt, features):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(logits(features(x.to(device))), y.to(device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mdl_params, 1.0)
        opt.step()
        loss.item()

    phases = {
        "forward": forward,
        "forward_lin": forward_lin,
        "train": lambda: step(list(plain.parameters()), opt, plain),
        "train_lin": lambda: step(list(params), opt_lin, f_lin),
    }
    out = {"torch": torch.__version__, "device": args.device, "threads": torch.get_num_threads(), "phases": {}}
    if cuda:
        out["device_name"] = torch.cuda.get_device_name(device)
    for name, call in phases.items():
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start_mem = torch.cuda.memory_allocated()
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass
            start_mem = rss_bytes("VmRSS")
        first, seconds, cpu_seconds = 0.0, [], []
        for i in range(args.warmup + args.iters):
            if cuda:
                torch.cuda.synchronize()
            t, c = time.perf_counter(), time.process_time()
            call()
            if cuda:
                torch.cuda.synchronize()
            dt = time.perf_counter() - t
            if i == 0:
                first = dt
            if i >= args.warmup:
                seconds.append(dt)
                cpu_seconds.append(time.process_time() - c)
        peak = torch.cuda.max_memory_allocated() if cuda else rss_bytes("VmHWM")
        out["phases"][name] = {"first_seconds": first, "seconds": seconds, "cpu_seconds": cpu_seconds,
                               "peak_bytes": peak, "start_bytes": start_mem}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
