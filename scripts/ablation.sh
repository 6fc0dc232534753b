#!/usr/bin/env bash
# The CrossGLG ablation (guidance none / g2l / l2g / both) over several seeds on one config,
# then a Markdown table of one-shot top-1 accuracy (mean ± std over seeds).
# usage: scripts/ablation.sh CONFIG OUTDIR "SEEDS" [extra --set overrides...]
# SUMMARY_ONLY=1 prints the table of the runs finished so far.
set -euo pipefail
exec "$(dirname "$0")/grid.sh" "$1" "$2" "$3" model.guidance "none g2l l2g both" "${@:4}"
