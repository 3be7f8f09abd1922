#!/usr/bin/env bash
# editkit bench vit on an NVIDIA GPU: editkit's GoMLX models on XLA's CUDA
# PJRT plugin against PyTorch on CUDA, in one run, results into $OUT.
#
#   tools/gpu-bench.sh --prepare   here, where Go and the module cache are: builds
#                                  .gpubench/editkit (cgo, with the XLA backend) and
#                                  keeps .gpubench out of git (.git/info/exclude)
#   tools/gpu-bench.sh             on the accelerator machine (no network, perhaps no
#                                  Go): carry .gpubench; writes into $OUT
#   tools/gpu-bench.sh --cpu       anywhere: the same steps on the CPU (simplego, CPU
#                                  torch, tiny shapes), to check the script
#
# Settings from the environment: OUT (default: a new folder in /tmp), EDITKIT_BIN (default
# .gpubench/editkit, else built with go when go is there), PYTHON (default: the first
# of /opt/torch/.venv/bin/python3, python3, /usr/bin/python3 that imports torch),
# XLA_PLUGIN (default: JAX's xla_cuda_plugin.so found in that Python's site-packages),
# ITERS (forward calls, 20), STEPS (training steps, 30), BATCH (32).
#
# Files written: env.txt (machine, GPU, versions, paths), preflight.json/.log (a tiny
# run that proves the XLA plugin loads), bench-vit.txt (the side-by-side table),
# bench-vit.json (everything, raw timings included), bench-vit.log (stderr).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD

die() { echo "gpu-bench: $*" >&2; [ -n "${OUT:-}" ] && echo "FAILED: $*" >>"$OUT/env.txt"; exit 1; }

if [ "${1:-}" = "--prepare" ]; then
	command -v go >/dev/null || die "--prepare needs Go"
	mkdir -p .gpubench
	CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o .gpubench/editkit ./cmd/editkit || die "go build failed"
	exclude=$(git rev-parse --git-path info/exclude 2>/dev/null) || die "not a git checkout"
	mkdir -p "$(dirname "$exclude")"
	grep -qxF '/.gpubench/' "$exclude" 2>/dev/null || echo '/.gpubench/' >>"$exclude"
	ls -l .gpubench/editkit
	echo "gpu-bench: built .gpubench/editkit; on the GPU machine run tools/gpu-bench.sh with .gpubench carried"
	exit 0
fi

mode=gpu
[ "${1:-}" = "--cpu" ] && mode=cpu
OUT=${OUT:-$(mktemp -d /tmp/editkit-gpubench-XXXXXX)}
mkdir -p "$OUT" || exit 1
: >"$OUT/env.txt"

# The binary: carried, or built here if Go (and its module cache) is.
BIN=${EDITKIT_BIN:-$root/.gpubench/editkit}
if [ ! -x "$BIN" ]; then
	if command -v go >/dev/null; then
		mkdir -p "$(dirname "$BIN")"
		CGO_ENABLED=1 go build -o "$BIN" ./cmd/editkit || die "no $BIN and go build failed (offline without a module cache?): run tools/gpu-bench.sh --prepare where Go is and carry .gpubench"
	else
		die "no editkit binary at $BIN and no Go here: run tools/gpu-bench.sh --prepare on a machine with Go and carry .gpubench"
	fi
fi

# Python with torch (and CUDA for the GPU run).
need='import torch'
[ $mode = gpu ] && need='import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'
PY=${PYTHON:-}
if [ -z "$PY" ]; then
	for c in /opt/torch/.venv/bin/python3 python3 /usr/bin/python3; do
		if command -v "$c" >/dev/null && "$c" -c "$need" 2>/dev/null; then PY=$(command -v "$c"); break; fi
	done
fi
[ -n "$PY" ] || echo "gpu-bench: no Python with torch$([ $mode = gpu ] && echo ' and CUDA') found: editkit's numbers alone" >&2

{
	echo "date: $(date -u +%FT%TZ)"
	echo "mode: $mode"
	echo "host: $(uname -srm); CPUs: $(nproc)"
	echo "binary: $BIN ($(stat -c %s "$BIN" 2>/dev/null) bytes)"
	command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | sed 's/^/gpu: /'
	[ -n "$PY" ] && echo "python: $PY: $("$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1)"
} >>"$OUT/env.txt"

pyargs=(--python "${PY:-/nonexistent/python3}")
if [ $mode = gpu ]; then
	PLUGIN=${XLA_PLUGIN:-}
	if [ -z "$PLUGIN" ] && [ -n "$PY" ]; then
		PLUGIN=$("$PY" -c 'import importlib.util, os; s = importlib.util.find_spec("jax_plugins.xla_cuda13") or importlib.util.find_spec("jax_plugins.xla_cuda12"); print(os.path.join(os.path.dirname(s.origin), "xla_cuda_plugin.so") if s else "")' 2>/dev/null)
	fi
	if [ -z "$PLUGIN" ] || [ ! -f "$PLUGIN" ]; then
		PLUGIN=$(ls /opt/torch/.venv/lib/python3*/site-packages/jax_plugins/xla_cuda1*/xla_cuda_plugin.so 2>/dev/null | head -1)
	fi
	[ -f "$PLUGIN" ] || die "no XLA CUDA PJRT plugin (jax_plugins/xla_cuda13/xla_cuda_plugin.so): set XLA_PLUGIN"
	echo "xla plugin: $PLUGIN" >>"$OUT/env.txt"
	export GOMLX_BACKEND="xla:$PLUGIN"
	# The plugin's CUDA libraries (cuBLAS, cuDNN, ...) come as nvidia-* wheels
	# beside it; JAX finds them from Python, a Go program through the loader path.
	site=$(dirname "$(dirname "$(dirname "$PLUGIN")")")
	for d in "$site"/nvidia/*/lib; do
		[ -d "$d" ] && LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
	done
	export LD_LIBRARY_PATH
	echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" >>"$OUT/env.txt"
	pyargs+=(--device cuda)
	sizes=(--batch "${BATCH:-32}" --iters "${ITERS:-20}" --steps "${STEPS:-30}" --warmup 3)
	limit=480
else
	unset GOMLX_BACKEND
	sizes=(--batch 2 --image 64 --iters 1 --steps 2 --train-image 32 --train-batch 4 --warmup 1)
	limit=300
fi
echo "GOMLX_BACKEND=${GOMLX_BACKEND:-} (unset: simplego)" >>"$OUT/env.txt"

# Preflight: a tiny run must come up on the intended backend (editkit falls back
# to simplego, with a message, when a plugin does not load).
timeout 300 "$BIN" bench vit --image 32 --batch 2 --iters 1 --steps 1 --train-image 32 --train-batch 2 --no-torch --json \
	>"$OUT/preflight.json" 2>"$OUT/preflight.log" || die "preflight failed: $(tail -3 "$OUT/preflight.log")"
if [ $mode = gpu ] && grep -q "falling back" "$OUT/preflight.log"; then
	die "the XLA backend did not start: $(head -2 "$OUT/preflight.log")"
fi
grep -o '"backend": *"[^"]*"' "$OUT/preflight.json" | head -1 | sed 's/^/preflight /' >>"$OUT/env.txt"

timeout "$limit" "$BIN" bench vit "${sizes[@]}" "${pyargs[@]}" --profile --json-out "$OUT/bench-vit.json" \
	>"$OUT/bench-vit.txt" 2>"$OUT/bench-vit.log"
rc=$?
[ $rc -eq 0 ] || die "bench vit exited $rc: $(tail -3 "$OUT/bench-vit.log")"
cat "$OUT/bench-vit.txt"
echo "gpu-bench: results in $OUT"
