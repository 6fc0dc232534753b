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
# ROUNDS=N (default 1) repeats the pair N times, PyTorch first in odd rounds and Rust first in
# even ones, writes target/bench/rounds/{rust,torch}-<r>.json and prints the median per-round
# ratio with its range (`bench --summary`): on a shared VM one pair's ratio moves by +-0.15.
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
echo "== building the candle benchmark (release build of crossglg-bench)" >&2
(cd "$root" && cargo build --quiet --release -p crossglg-bench --example bench)
torch_version="$("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
rust_bench="$root/target/release/examples/bench"

rounds="${ROUNDS:-1}"
if [ "$rounds" = 1 ]; then
    echo "== PyTorch ($torch_version, $threads threads)" >&2
    "$venv/bin/python" "$here/torch_reference.py" --threads "$threads" --json "$out/torch.json" "$@"
    echo "== candle" >&2
    (cd "$root" && "$rust_bench" --threads "$threads" --torch-json "$out/torch.json" \
        --json "$out/report.json" "$@")
    echo "== report JSON: $out/report.json" >&2
    exit 0
fi

dir="$out/rounds"
rm -rf "$dir"
mkdir -p "$dir"
torch_round() {
    echo "== round $1/$rounds: PyTorch ($torch_version, $threads threads)" >&2
    "$venv/bin/python" "$here/torch_reference.py" --threads "$threads" --json "$dir/torch-$1.json" \
        "${@:2}" >/dev/null
}
rust_round() {
    echo "== round $1/$rounds: candle" >&2
    (cd "$root" && "$rust_bench" --threads "$threads" --json "$dir/rust-$1.json" "${@:2}" >/dev/null)
}
for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) = 1 ]; then
        torch_round "$r" "$@"
        rust_round "$r" "$@"
    else
        rust_round "$r" "$@"
        torch_round "$r" "$@"
    fi
done
"$rust_bench" --summary "$dir"
echo "== per-round JSON and summary.json: $dir" >&2
