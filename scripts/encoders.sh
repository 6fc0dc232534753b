#!/usr/bin/env bash
# One-shot accuracy of each skeleton encoder under one config (same heads, schedule and text),
# then a Markdown table (mean ± std over seeds).
# usage: scripts/encoders.sh CONFIG OUTDIR "SEEDS" "KINDS" [extra --set overrides...]
#   e.g. scripts/encoders.sh configs/msr-cpu.toml runs/encoders-msr "0" "st_gcn ctr_gcn info_gcn" --set epochs=10
set -euo pipefail
config=$1; out=$2; seeds=$3; kinds=$4; shift 4
bin=${CROSSGLG_BIN:-target/release/crossglg}
mkdir -p "$out"
for s in $seeds; do
  [ -n "${SUMMARY_ONLY:-}" ] && break
  for k in $kinds; do
    run="$out/$k-seed$s"
    [ -f "$run/report.json" ] && continue
    "$bin" train --config "$config" --out "$run" --quiet --set "model.encoder.kind=\"$k\"" --set "seed=$s" "$@" > "$run.log" 2>&1 \
      || { echo "run $run failed, see $run.log" >&2; exit 1; }
  done
done
python3 - "$out" "$seeds" "$kinds" <<'PY'
import json, os, statistics, sys
out, seeds, kinds = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
print("| encoder | parameters | cosine NN top-1 % | calibrated top-1 % | runs |")
print("|---|---|---|---|---|")
for k in kinds:
    done = [s for s in seeds if os.path.exists(f"{out}/{k}-seed{s}/report.json")]
    if not done:
        continue
    cols = {}
    for s in done:
        for r in json.load(open(f"{out}/{k}-seed{s}/report.json")):
            cols.setdefault(r["method"], []).append(100 * r["accuracy"])
    import re
    m = re.search(r"(\d+) parameters", open(f"{out}/{k}-seed{done[0]}.log").read())
    params = f"{int(m.group(1)):,}" if m else "?"
    cell = lambda v: f"{statistics.mean(v):.1f} ± {statistics.stdev(v) if len(v) > 1 else 0:.1f}"
    print(f"| {k} | {params} | {cell(cols['cosine-nn'])} | {cell(cols['calibrated-logreg'])} | {len(done)} |")
PY
