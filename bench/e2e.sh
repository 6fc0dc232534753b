#!/usr/bin/env bash
# The whole training job, crossglg against PyTorch (issue 18 item 4): `crossglg train` on the
# shipped CPU configs (data, preprocessing, text, training with its checkpoints, calibration and
# the one-shot evaluation) against bench/torch_train.py, which does the same job in PyTorch from
# the Rust run's resolved config, split and architecture. Wall time and peak RSS come from
# /usr/bin/time for both processes; stage seconds from each side's own report.
#
#   bench/e2e.sh                         # both configs, one round
#   ROUNDS=3 CONFIGS="msr-cpu" bench/e2e.sh
#
# Rounds alternate which side runs first. Results: target/bench/e2e/<config>-<side>-<round>.json
# and one table with the Rust/PyTorch ratio per round and the median. Needs bench/.venv (created
# by bench/run.sh) with transformers, installed here on first use, and the packed data in data/
# (converted from $CROSSGLG_DATA when missing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
venv="$here/.venv"
threads="${THREADS:-$(nproc)}"
rounds="${ROUNDS:-1}"
configs="${CONFIGS:-nwucla-cpu msr-cpu}"
data="${CROSSGLG_DATA:-$(cd .. && pwd)/shared/data}"
out="$root/target/bench/e2e"
mkdir -p "$out"

[ -x "$venv/bin/python" ] || { echo "no $venv: run bench/run.sh once to create it" >&2; exit 1; }
if ! "$venv/bin/python" -c 'import transformers' 2>/dev/null; then
    echo "== installing transformers into $venv (once)" >&2
    "$venv/bin/pip" install --quiet transformers
fi
scripts/fetch-minilm.sh >/dev/null
cargo build --quiet --release -p crossglg-cli
bin="$root/target/release/crossglg"
mkdir -p data
[ -s data/nw-ucla.safetensors ] || "$bin" data convert --format nwucla "$data/nw-ucla/all_sqe" \
    --out data/nw-ucla.safetensors
[ -s data/msr-action3d.safetensors ] || "$bin" data convert --format msr \
    "$data/msr-action3d/MSRAction3DSkeletonReal3D" --out data/msr-action3d.safetensors

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAYON_NUM_THREADS="$threads"

# timed CMD... -> writes "<wall seconds> <peak RSS kB>" to $timing
timed() { /usr/bin/time -f "%e %M" -o "$timing" "$@"; }

rust() {
    local cfg="$1" r="$2" run="$out/$1-rust-$2"
    rm -rf "$run"
    timing="$out/$cfg-rust-$r.time"
    timed "$bin" train -c "configs/$cfg.toml" --out "$run" --quiet --json >"$out/$cfg-rust-$r.out"
    if [ ! -d "$out/$cfg-export" ]; then
        "$bin" export "$run" --out "$out/$cfg-export" --force >/dev/null
    fi
}

torch() {
    local cfg="$1" r="$2"
    timing="$out/$cfg-torch-$r.time"
    timed "$venv/bin/python" "$here/torch_train.py" "$out/$cfg-rust-$r" "$out/$cfg-export" \
        --threads "$threads" --json "$out/$cfg-torch-$r.json" >/dev/null
}

for cfg in $configs; do
    rm -rf "$out/$cfg-export"
    for r in $(seq 1 "$rounds"); do
        echo "== $cfg round $r/$rounds" >&2
        # the PyTorch side reads the Rust run's folder, so Rust goes first in round 1; later
        # rounds alternate, reading the previous round's run when PyTorch goes first
        if [ "$r" -gt 1 ] && [ $((r % 2)) -eq 0 ]; then
            cp -r "$out/$cfg-rust-$((r - 1))" "$out/$cfg-rust-$r"
            torch "$cfg" "$r"
            rust "$cfg" "$r"
        else
            rust "$cfg" "$r"
            torch "$cfg" "$r"
        fi
    done
done

"$venv/bin/python" - "$out" "$rounds" $configs <<'EOF'
import json, statistics, sys
out, rounds, configs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def timing(path):
    wall, rss = open(path).read().split()
    return float(wall), int(rss) / 1024
print("| config | round | Rust wall s | PyTorch wall s | wall × | Rust train s | PyTorch train s | train × | Rust setup+eval s | PyTorch setup+eval s | Rust RSS MB | PyTorch RSS MB | memory × | one-shot draws Rust / PyTorch (cosine, calibrated) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for cfg in configs:
    ratios = {"wall": [], "train": [], "mem": []}
    for r in range(1, rounds + 1):
        rw, rm = timing(f"{out}/{cfg}-rust-{r}.time")
        tw, tm = timing(f"{out}/{cfg}-torch-{r}.time")
        rs = json.loads(open(f"{out}/{cfg}-rust-{r}.out").read())
        ts = json.loads(open(f"{out}/{cfg}-torch-{r}.json").read())
        draws = {rep["method"]: rep["draws"]["mean"] for rep in rs["reports"]}
        acc = (f"{100 * draws.get('cosine-nn', float('nan')):.1f} / {100 * ts['cosine_nn_draws']:.1f}, "
               f"{100 * draws.get('calibrated-logreg', float('nan')):.1f} / {100 * ts['calibrated_draws']:.1f}")
        ratios["wall"].append(rw / tw)
        ratios["train"].append(rs["train_seconds"] / ts["train_s"])
        ratios["mem"].append(rm / tm)
        print(f"| {cfg} | {r} | {rw:.1f} | {tw:.1f} | {rw / tw:.2f} | {rs['train_seconds']:.1f} | "
              f"{ts['train_s']:.1f} | {rs['train_seconds'] / ts['train_s']:.2f} | "
              f"{rs['setup_seconds'] + rs['eval_seconds']:.1f} | "
              f"{ts['load_s'] + ts['text_s'] + ts['eval_s']:.1f} | {rm:.0f} | {tm:.0f} | "
              f"{rm / tm:.2f} | {acc} |")
    med = {k: statistics.median(v) for k, v in ratios.items()}
    print(f"| {cfg} | median of {rounds} | | | **{med['wall']:.2f}** "
          f"[{min(ratios['wall']):.2f}–{max(ratios['wall']):.2f}] | | | **{med['train']:.2f}** | | | | | "
          f"**{med['mem']:.2f}** | |")
EOF
