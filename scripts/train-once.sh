#!/usr/bin/env bash
# train-once.sh RUN CONFIG [--set ...]: one `crossglg train` with the target recipe into RUN,
# its output in RUN.log, unless RUN/report.json shows the run finished (as scripts/paired.sh
# skips finished runs). Shared by the results-*.sh scripts; run from the checkout's root.
set -euo pipefail
bin=${CROSSGLG_BIN:-target/release/crossglg}
run=$1 cfg=$2
shift 2
[ -f "$run/report.json" ] && exit 0
mkdir -p "$(dirname "$run")"
"$bin" train --config "$cfg" --out "$run" --quiet --set recipe=target "$@" > "$run.log" 2>&1 \
  || { echo "run $run failed, see $run.log" >&2; exit 1; }
