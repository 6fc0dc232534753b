#!/usr/bin/env bash
# One-shot accuracy of each skeleton encoder under one config (same heads, schedule and text),
# then a Markdown table (mean ± std over seeds).
# usage: scripts/encoders.sh CONFIG OUTDIR "SEEDS" "KINDS" [extra --set overrides...]
#   e.g. scripts/encoders.sh configs/msr-cpu.toml runs/encoders-msr "0" "st_gcn ctr_gcn info_gcn" --set epochs=10
set -euo pipefail
exec "$(dirname "$0")/grid.sh" "$1" "$2" "$3" model.encoder.kind "$4" "${@:5}"
