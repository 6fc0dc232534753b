#!/usr/bin/env bash
# Trains one run per (seed, value of one config key) and prints a Markdown table of one-shot
# top-1 accuracy (mean ± std over seeds). scripts/ablation.sh and scripts/encoders.sh call it.
# usage: scripts/grid.sh CONFIG OUTDIR "SEEDS" KEY "VALUES" [extra --set overrides...]
#   e.g. scripts/grid.sh configs/msr-cpu.toml runs/x "0 1 2" model.guidance "none both" --set epochs=10
# VALUES are TOML strings, given without quotes. Seed-major order, so a run cut short still has
# every value for the first seeds; runs with a report.json are skipped; SUMMARY_ONLY=1 prints
# the table of the runs finished so far.
set -euo pipefail
config=$1; out=$2; seeds=$3; key=$4; values=$5; shift 5
bin=${CROSSGLG_BIN:-target/release/crossglg}
mkdir -p "$out"
for s in $seeds; do
  [ -n "${SUMMARY_ONLY:-}" ] && break
  for v in $values; do
    run="$out/$v-seed$s"
    [ -f "$run/report.json" ] && continue
    "$bin" train --config "$config" --out "$run" --quiet --set "$key=\"$v\"" --set "seed=$s" "$@" > "$run.log" 2>&1 \
      || { echo "run $run failed, see $run.log" >&2; exit 1; }
  done
done
python3 - "$out" "$seeds" "$values" "$key" <<'PY'
import json, os, re, statistics, sys
out, seeds, values, key = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4]
print(f"| {key.split('.')[-1]} | parameters | cosine NN top-1 % | calibrated top-1 % | runs |")
print("|---|---|---|---|---|")
for v in values:
    done = [s for s in seeds if os.path.exists(f"{out}/{v}-seed{s}/report.json")]
    if not done:
        continue
    cols = {}
    for s in done:
        for r in json.load(open(f"{out}/{v}-seed{s}/report.json")):
            cols.setdefault(r["method"], []).append(100 * r["accuracy"])
    log = f"{out}/{v}-seed{done[0]}.log"
    m = re.search(r"(\d+) parameters", open(log).read()) if os.path.exists(log) else None
    params = f"{int(m.group(1)):,}" if m else "?"
    cell = lambda x: f"{statistics.mean(x):.1f} ± {statistics.stdev(x) if len(x) > 1 else 0:.1f}"
    print(f"| {v} | {params} | {cell(cols['cosine-nn'])} | {cell(cols['calibrated-logreg'])} | {len(done)} |")
PY
