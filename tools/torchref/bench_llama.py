#!/usr/bin/python3
"""PyTorch reference timings for `editkit bench llama`.

Loads the Hugging Face LLaMA folder editkit wrote (config.json + model.safetensors, float32;
read by hand: no safetensors or transformers package) into the torch.nn LlamaForCausalLM of
llama_ref.py (laid out like transformers' modeling_llama.py: eager attention, eval mode),
then times, in float32 on --device:

  - forward: a full forward pass (logits of every position) over the batch of token ids
    given as a JSON list of rows on stdin (editkit draws them, so both sides run the same
    batch), under torch.inference_mode: --warmup calls, then --iters timed calls;
  - generate: greedy decoding from --bos for --gen-steps positions (BOS included) with a
    simple key/value cache (torch.cat of each step's keys and values), one token per step;
    the rate counts the one-token steps after the first, as editkit's llama.Generate and
    llama2.c's run.c do.

Prints one JSON line with the raw timings (editkit computes medians and rates of both sides
the same way), or {"error": ...} when torch is missing.

Run by `editkit bench llama`; by hand:
    echo '[[1,2,3,4]]' | /usr/bin/python3 tools/torchref/bench_llama.py --model DIR --iters 2
"""

import argparse
import json
import os
import struct
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="Hugging Face LLaMA folder (config.json, model.safetensors)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: os.cpu_count())")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--gen-steps", type=int, default=200)
    p.add_argument("--bos", type=int, default=1)
    return p.parse_args()


def fail(msg):
    print(json.dumps({"error": msg}))
    sys.exit(3)


def read_safetensors(path, torch):
    """name -> float32 tensor of a safetensors file (F32, F16, BF16 or F64)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        if h["dtype"] not in dtypes:
            raise ValueError("tensor %s: dtype %s" % (name, h["dtype"]))
        a, b = h["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=dtypes[h["dtype"]]) if b > a else torch.empty(0)
        out[name] = t.reshape(h["shape"]).to(torch.float32)
    return out


def read_weights(folder, torch):
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):
        return read_safetensors(single, torch)
    with open(os.path.join(folder, "model.safetensors.index.json")) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    out = {}
    for s in shards:
        out.update(read_safetensors(os.path.join(folder, s), torch))
    return out


def main():
    args = parse_args()
    try:
        import torch
        import torch.nn.functional as F  # noqa: F401
    except Exception as e:  # no torch: say so in the JSON, editkit reports it
        fail("PyTorch is not importable by %s: %s" % (sys.executable, e))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import llama_ref  # noqa: E402  (imports torch)

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        fail("torch %s sees no CUDA device" % torch.__version__)
    device = torch.device(args.device)

    with open(os.path.join(args.model, "config.json")) as f:
        c = json.load(f)
    if c.get("model_type", "llama") not in ("llama", "qwen2", "mistral"):
        fail("model_type %s is not a LLaMA-family model" % c.get("model_type"))
    c.setdefault("model_type", "llama")
    if c.get("rope_scaling") is None:
        c.pop("rope_scaling", None)
    model = llama_ref.LlamaForCausalLM(c)
    sd = read_weights(args.model, torch)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (model.tied and k == "lm_head.weight")]
    if missing or unexpected:
        fail("weights do not match the model: missing %s, unexpected %s" % (missing[:5], unexpected[:5]))
    if model.tied:
        model.lm_head.weight = model.model.embed_tokens.weight
    model = model.to(device).eval()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    out = {"torch": torch.__version__, "device": args.device, "threads": torch.get_num_threads(),
           "notes": {"attention": "eager (explicit softmax, no SDPA)", "dtype": "float32"}}

    if args.iters > 0:
        rows = json.load(sys.stdin)
        ids = torch.tensor(rows, dtype=torch.int64)
        if list(ids.shape) != [args.batch, args.seq]:
            fail("ids on stdin have shape %s, want [%d, %d]" % (list(ids.shape), args.batch, args.seq))

        def forward():
            with torch.inference_mode():
                model(ids.to(device)).cpu()

        first, seconds = 0.0, []
        for i in range(args.warmup + args.iters):
            sync()
            t = time.perf_counter()
            forward()
            sync()
            dt = time.perf_counter() - t
            if i == 0:
                first = dt
            if i >= args.warmup:
                seconds.append(dt)
        out["forward"] = {"first_seconds": first, "seconds": seconds}

    if args.gen_steps > 0:
        out["generate"] = generate(model, c, args.bos, args.gen_steps, device, sync, torch)

    print(json.dumps(out))


def generate(model, c, bos, steps, device, sync, torch):
    """Greedy decoding from bos with a torch.cat key/value cache, counted as llama.Generate."""
    m = model.model
    inv_freq = m.inv_freq
    caches = [None] * len(m.layers)

    def step(token, pos):
        x = m.embed_tokens(torch.tensor([[token]], device=device))
        freqs = torch.tensor([float(pos)], dtype=torch.float64)[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(x.dtype).to(device), emb.sin().to(x.dtype).to(device)
        for i, layer in enumerate(m.layers):
            a = layer.self_attn
            h = layer.input_layernorm(x)
            q = a.q_proj(h).view(1, 1, a.heads, a.head_dim).transpose(1, 2)
            k = a.k_proj(h).view(1, 1, a.kv_heads, a.head_dim).transpose(1, 2)
            v = a.v_proj(h).view(1, 1, a.kv_heads, a.head_dim).transpose(1, 2)
            q = q * cos + llama_rotate(q, torch) * sin
            k = k * cos + llama_rotate(k, torch) * sin
            if caches[i] is not None:
                k = torch.cat((caches[i][0], k), dim=2)
                v = torch.cat((caches[i][1], v), dim=2)
            caches[i] = (k, v)
            rep = a.heads // a.kv_heads
            if rep > 1:
                k = k.repeat_interleave(rep, dim=1)
                v = v.repeat_interleave(rep, dim=1)
            probs = (q @ k.transpose(2, 3) * a.head_dim ** -0.5).softmax(-1)  # one query: no mask
            o = (probs @ v).transpose(1, 2).reshape(1, 1, a.heads * a.head_dim)
            x = x + a.o_proj(o)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return model.lm_head(m.norm(x))[0, -1].cpu()

    tokens, generated, decode_steps = [bos], 0, 0
    t0 = time.perf_counter()
    first = None
    with torch.inference_mode():
        logits = step(bos, 0)
        token = bos
        for pos in range(steps):
            nxt = int(torch.argmax(logits))
            tokens.append(nxt)
            generated += 1
            token = nxt
            if pos + 1 >= steps:
                break
            logits = step(token, pos + 1)
            sync()
            decode_steps += 1
            if decode_steps == 1:
                first = time.perf_counter()
        end = time.perf_counter()
    rate = (decode_steps - 1) / (end - first) if decode_steps > 1 else 0.0
    return {"steps": steps, "generated": generated, "tokens_per_second": rate, "total_seconds": end - t0,
            "tokens": tokens, "cache": "kv cache (torch.cat per step)"}


def llama_rotate(x, torch):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


if __name__ == "__main__":
    main()
