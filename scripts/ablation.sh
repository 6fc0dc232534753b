#!/usr/bin/env bash
# The CrossGLG ablation (guidance none / g2l / l2g / both) over several seeds on one config,
# then a Markdown table of one-shot top-1 accuracy (mean ± std over seeds).
# usage: scripts/ablation.sh CONFIG OUTDIR "SEEDS" [extra --set overrides...]
set -euo pipefail
config=$1; out=$2; seeds=$3; shift 3
bin=${CROSSGLG_BIN:-target/release/crossglg}
mkdir -p "$out"
# Seed-major order, so a run cut short still has every guidance mode for the first seeds.
# SUMMARY_ONLY=1 prints the table of the runs finished so far.
for s in $seeds; do
  [ -n "${SUMMARY_ONLY:-}" ] && break
  for g in none g2l l2g both; do
    run="$out/$g-seed$s"
    [ -f "$run/report.json" ] && continue
    "$bin" train --config "$config" --out "$run" --quiet --set "model.guidance=\"$g\"" --set "seed=$s" "$@" > "$run.log" 2>&1 \
      || { echo "run $run failed, see $run.log" >&2; exit 1; }
  done
done
python3 - "$out" "$seeds" <<'PY'
import json, statistics, sys
out, seeds = sys.argv[1], sys.argv[2].split()
print("| guidance | cosine NN top-1 % | calibrated top-1 % | runs |")
print("|---|---|---|---|")
import os
for g in ["none", "g2l", "l2g", "both"]:
    cols = {}
    done = [s for s in seeds if os.path.exists(f"{out}/{g}-seed{s}/report.json")]
    if not done:
        continue
    for s in done:
        for r in json.load(open(f"{out}/{g}-seed{s}/report.json")):
            cols.setdefault(r["method"], []).append(100 * r["accuracy"])
    cell = lambda v: f"{statistics.mean(v):.1f} ± {statistics.stdev(v) if len(v) > 1 else 0:.1f}"
    print(f"| {g} | {cell(cols['cosine-nn'])} | {cell(cols['calibrated-logreg'])} | {len(done)} |")
PY
