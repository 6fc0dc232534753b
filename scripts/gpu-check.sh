#!/usr/bin/env bash
# The GPU checks of issue 15 as one script, for a GPU machine that has only the driver and a
# Python environment with NVIDIA's runtime wheels (as PyTorch installs them). Prepare here:
#
#   scripts/build-cuda.sh                          # target/cuda/bundle.tar.xz
#   crossglg data convert ... / text embed ...     # data/ as below (docs/performance.md)
#
# then on the GPU machine, from the checkout's root, with target/cuda/bundle.tar.xz and data/
# carried along:
#
#   scripts/gpu-check.sh                           # writes $OUT (or /tmp/gpu-check)
#
# 1. the CUDA tests: CPU vs GPU forward, loss and gradients for the three encoders
#    (crossglg-model), and a 20-step training run on both devices plus the GPU checkpoint served
#    on the CPU (crossglg-train);
# 2. the demo, NW-UCLA and MSR configs trained on the GPU and on the CPU: wall time, samples/s,
#    and peak GPU memory (nvidia-smi, sampled every 200 ms);
# 3. paper scale without the data: configs/ntu120-synthetic-gpu.toml (InfoGCN, both guidances,
#    batch 64, 64 frames, 2 persons) for STEPS steps: samples/s, peak memory, the host's share of
#    each step (data loading and preprocessing) and the projected wall time of the paper's
#    schedule (65 epochs of NTU-120's ~114k samples, of which ~92k train at 100 auxiliary
#    classes).
# 4. the step benchmark against PyTorch on the same GPU (`crossglg bench --device cuda` and
#    `bench/torch_reference.py --device cuda`, batch BATCH, default 64, the paper's): per variant
#    the training-step and inference times, their ratio, and peak GPU memory (nvidia-smi for
#    both sides, so PyTorch's cache counts as it would for a user).
#
# 5. (opt-in, SECTIONS=profile) the GPU time per kernel of crossglg-infogcn's training step
#    (`ncu --metrics gpu__time_duration.sum` over `crossglg bench`), into $OUT/ncu.csv.xz, for
#    `scripts/ncu-summary.py`; needs a runtime where ncu reads the counters.
#
# SECTIONS="tests configs synth bench" (the default) picks sections.
# Each command runs under `timeout` (TEST_S, TRAIN_S, SYNTH_S seconds), so the script always ends
# inside a device lease and reports what it got; $OUT/runs.tar.xz holds every run's metrics,
# report and log (no checkpoints).
#
# DRY=1 runs the same steps on this machine's CPU build with tiny sizes, to check the script.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${OUT:-/tmp/gpu-check}"
mkdir -p "$out"
log="$out/gpu-check.log"
exec > >(tee -a "$log") 2>&1
steps="${STEPS:-300}"
test_s="${TEST_S:-240}"
train_s="${TRAIN_S:-120}"
synth_s="${SYNTH_S:-300}"
sections=" ${SECTIONS:-tests configs synth bench} "
want() { [[ "$sections" == *" $1 "* ]]; }
status=0

if [ "${DRY:-0}" = 1 ]; then
    dev=cpu
    cg="$root/target/release/crossglg"
    runner=()
    py="$root/bench/.venv/bin/python"
    steps=3
    small=(--set data.synthetic.samples_per_class=12)
else
    dev=cuda
    tar -xJf target/cuda/bundle.tar.xz -C /tmp
    b=/tmp/bundle
    cg="$b/crossglg"
    runner=("$b/run.sh")
    py=python3
    # NCCL's bootstrap socket: one machine, so loopback (the sandboxes here have no other
    # interface NCCL would pick)
    export NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-lo}" NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
    small=()
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    want tests && echo "== 1. CUDA tests"
    want tests && for t in "$b"/*-cuda-tests; do
        t0=$(date +%s)
        timeout "$test_s" "$b/run.sh" "$t" --nocapture --test-threads=1 || status=1
        echo "$(basename "$t"): $(( $(date +%s) - t0 )) s"
    done
fi

# GPU memory and utilisation during a command, sampled by nvidia-smi in the background
mem_watch() {
    if command -v nvidia-smi >/dev/null && [ "$dev" = cuda ]; then
        nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits \
            -lms 200 > "$1" &
        echo $!
    else
        echo ""
    fi
}
peak() { cut -d, -f1 "$1" 2>/dev/null | sort -n | tail -1; }
# mean utilisation over the samples where the run held GPU memory beyond the idle context
busy() {
    awk -F', *' '$1 > 600 { s += $2; n++ } END { if (n) printf "%.0f%%", s / n; else printf "-" }' \
        "$1" 2>/dev/null
}

# mean samples/s and host share of a run's steps (metrics.jsonl), skipping the first 5 steps
summarise() {
    python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if '"step"' in l]
rows = [r for r in rows if "samples_per_s" in r][5:] or rows
sps = sum(r["samples_per_s"] for r in rows) / max(len(rows), 1)
host = sum(r.get("time_data", 0) for r in rows)
total = sum(r.get("time_data", 0) + r.get("time_forward", 0) + r.get("time_backward", 0)
            + r.get("time_update", 0) for r in rows)
print(f"steps {len(rows)}  samples/s {sps:.1f}  host share of step time {host / max(total, 1e-9):.1%}")
PY
}

train_one() { # name, then train arguments
    local name="$1"
    shift
    local mem="/tmp/gpu-check-runs/mem-$name.txt" tlog="/tmp/gpu-check-runs/train-$name.log"
    local w t0 t1
    w="$(mem_watch "$mem")"
    t0=$(date +%s.%N)
    if ! timeout "${LIMIT:-$train_s}" "${runner[@]}" "$cg" train "$@" \
        --out "/tmp/gpu-check-runs/$name" > "$tlog" 2>&1; then
        echo "$name: FAILED; the end of its log:"
        tail -20 "$tlog"
        status=1
    fi
    t1=$(date +%s.%N)
    [ -n "$w" ] && kill "$w" 2>/dev/null
    printf '%-24s wall %6.1f s  peak GPU memory %s MiB  GPU busy %s  ' "$name" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$(peak "$mem")" "$(busy "$mem")"
    summarise "/tmp/gpu-check-runs/$name" 2>/dev/null || echo
}

rm -rf /tmp/gpu-check-runs
mkdir -p /tmp/gpu-check-runs
want configs && echo "== 2. shipped configs on $dev (and, unless CPU_TOO=0, on the CPU for the ratio)"
devices=()
want configs && devices+=("$dev")
want configs && [ "${CPU_TOO:-1}" = 1 ] && [ "$dev" != cpu ] && devices+=(cpu)
for d in "${devices[@]}"; do
    train_one "demo-$d" -c configs/demo.toml --set "device=$d" --set epochs=2 --set eval.draws=0 \
        --json
    # the same through the data-parallel launcher, one rank over NCCL: the same weights
    if [ "$d" = cuda ]; then
        train_one "demo-nproc1" -c configs/demo.toml --set device=cuda --set epochs=2 \
            --set eval.draws=0 --nproc 1 --json
        python3 - /tmp/gpu-check-runs <<'PY' || status=1
import json, re, sys
def digest(name):
    text = open(f"{sys.argv[1]}/train-{name}.log").read()
    m = re.search(r'"weights_hash":\s*"([0-9a-f]+)"', text)
    return m.group(1) if m else None
a, b = digest("demo-cuda"), digest("demo-nproc1")
print(f"weights: plain {a}, one NCCL rank {b}: {'same' if a and a == b else 'DIFFERENT'}")
sys.exit(0 if a and a == b else 1)
PY
    fi
    if [ -f data/nw-ucla.safetensors ]; then
        train_one "nwucla-$d" -c configs/nwucla-cpu.toml --set "device=$d" --set epochs=2 \
            --set text.bank=data/nw-ucla-text.safetensors --set text.encoder=hashed \
            --set eval.draws=0
    fi
    if [ -f data/msr-action3d.safetensors ]; then
        train_one "msr-$d" -c configs/msr-cpu.toml --set "device=$d" --set epochs=2 \
            --set text.bank=data/msr-text.safetensors --set text.encoder=hashed \
            --set eval.draws=0
    fi
done

if want synth; then
echo "== 3. paper scale, synthetic: $steps steps of configs/ntu120-synthetic-gpu.toml on $dev"
# samples_per_class so that one epoch is about $steps steps of batch 64 (17 motions, ~4/5 train)
per=$(( steps * 64 * 5 / 4 / 17 + 1 ))
[ "${DRY:-0}" = 1 ] || small=(--set "data.synthetic.samples_per_class=$per")
LIMIT="$synth_s" train_one "ntu120-synthetic" -c configs/ntu120-synthetic-gpu.toml \
    --set "device=$dev" "${small[@]}"
python3 - /tmp/gpu-check-runs/ntu120-synthetic <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if '"samples_per_s"' in l][5:]
if rows:
    sps = sum(r["samples_per_s"] for r in rows) / len(rows)
    train = 92_000  # NTU-120 samples of the 100 auxiliary classes, about
    hours = 65 * train / sps / 3600
    print(f"projected paper schedule (65 epochs x ~{train} samples): {hours:.1f} h at {sps:.0f} samples/s")
PY
fi

if want bench; then
    echo "== 4. step benchmark against PyTorch on $dev, batch ${BATCH:-64}"
    barg=(--batch "${BATCH:-64}" --iters "${ITERS:-10}" --warmup 3 --threads 2)
    for v in ${VARIANTS:-model-stgcn model-ctrgcn model-infogcn crossglg-infogcn}; do
        # rust-portable: --kernels portable, batch norm from row sums (the A/B for
        # bn_train_rows against candle_nn's, which `fused` runs on a GPU)
        for side in torch rust rust-portable; do
            mem="/tmp/gpu-check-runs/mem-bench-$side-$v.txt"
            w="$(mem_watch "$mem")"
            if [ "$side" = torch ]; then
                timeout "$train_s" "$py" bench/torch_reference.py --device "$dev" "${barg[@]}" \
                    --variant "$v" --json "/tmp/gpu-check-runs/torch-$v.json" \
                    > "/tmp/gpu-check-runs/bench-torch-$v.log" 2>&1 || status=1
            else
                k=fused
                [ "$side" = rust-portable ] && k=portable
                timeout "$train_s" "${runner[@]}" "$cg" bench --device "$dev" "${barg[@]}" \
                    --kernels "$k" --variant "$v" \
                    --torch-json "/tmp/gpu-check-runs/torch-$v.json" --json \
                    > "/tmp/gpu-check-runs/bench-$side-$v.log" 2>&1 || status=1
            fi
            [ -n "$w" ] && kill "$w" 2>/dev/null
            echo "$v $side: peak GPU memory $(peak "$mem") MiB"
        done
        grep -E "^$v " "/tmp/gpu-check-runs/bench-rust-portable-$v.log" | sed 's/^/portable: /'
        grep -E "^(variant|device|$v |torch:$v )" "/tmp/gpu-check-runs/bench-rust-$v.log" || tail -3 "/tmp/gpu-check-runs/bench-rust-$v.log"
    done
fi

if want profile && [ "$dev" = cuda ]; then
    echo "== 5. GPU time per kernel (ncu) of crossglg-infogcn, batch ${BATCH:-64}"
    ncu="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)"
    t0=$(date +%s)
    timeout "${PROFILE_S:-150}" "${runner[@]}" "$ncu" --clock-control none --target-processes all \
        --metrics gpu__time_duration.sum --csv --launch-count "${KERNELS:-8000}" \
        "$cg" bench --device cuda --in-process --variant crossglg-infogcn \
        --batch "${BATCH:-64}" --iters 1 --warmup 1 > "$out/ncu.csv" 2> "/tmp/gpu-check-runs/ncu.err" || status=1
    echo "ncu: $(( $(date +%s) - t0 )) s, $(wc -l < "$out/ncu.csv") lines"
    tail -3 /tmp/gpu-check-runs/ncu.err
    xz -f "$out/ncu.csv"
fi

tar -C /tmp -cJf "$out/runs.tar.xz" --exclude='*.safetensors' --exclude='checkpoints' \
    gpu-check-runs
echo "== done, status $status"
exit $status
