#!/usr/bin/env bash
# Runs the PyTorch reference and the candle benchmark on the same shapes and thread count and
# prints one table with Rust/PyTorch ratios.
#
#   bench/run.sh [args for both sides: --batch --persons --frames --joints --classes --warmup
#                 --iters --variant NAME...]
#   VARIANTS="model-stgcn model-ctrgcn" bench/run.sh --iters 1   # same as --variant per name
#
# Without --variant both sides run the reference ST-GCN (Rust: stgcn-ref-{plain,fused}[-tuned],
# PyTorch: stgcn-ref). The crossglg-model variants (model-stgcn, model-ctrgcn, model-infogcn,
# crossglg-infogcn) are opt-in and have PyTorch twins of the same names; each Rust row gets the
# PyTorch row of the same name (stgcn-ref-* get stgcn-ref).
#
# Creates bench/.venv (gitignored) and installs PyTorch from PyPI on first use. PyPI only serves
# the CUDA build of torch for Linux x86_64 (about 540 MB + about 4.5 GB of nvidia-* wheels); it runs
# fine on a CPU-only machine. Set TORCH_SPEC to pin another version (default: torch).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
threads="${THREADS:-$(nproc)}"
venv="$here/.venv"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
    echo "== creating $venv and installing ${TORCH_SPEC:-torch} (large download, once)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "${TORCH_SPEC:-torch}" numpy
fi

for v in ${VARIANTS:-}; do
    set -- "$@" --variant "$v"
done

out="$root/target/bench"
mkdir -p "$out"
echo "== PyTorch ($("$venv/bin/python" -c 'import torch; print(torch.__version__)'), $threads threads)" >&2
"$venv/bin/python" "$here/torch_reference.py" --threads "$threads" --json "$out/torch.json" "$@"

echo "== candle (release build of crossglg-bench)" >&2
cd "$root"
cargo build --quiet --release -p crossglg-bench --example bench
"$root/target/release/examples/bench" --threads "$threads" --torch-json "$out/torch.json" \
    --json "$out/report.json" "$@"
echo "== report JSON: $out/report.json" >&2
