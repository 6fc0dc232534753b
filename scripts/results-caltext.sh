#!/usr/bin/env bash
# docs/results.md, "Descriptions choosing calibration's base classes": re-evaluates existing
# runs with `crossglg eval --calibration-text W` (hard-linked copies, so the originals keep their
# reports) and compares each variant against w0 with `crossglg compare`.
#   scripts/results-caltext.sh SRC_GROUP OUT CONTROL_DIR [VARIANT...]
# SRC_GROUP: a folder of run folders (e.g. runs/text-side/val-msr/target); CONTROL_DIR: where
# shuffled.json and names.json are (runs/controls/msr, from scripts/make-controls.sh).
# VARIANT: NAME:WEIGHT[:CONTROL], CONTROL naming CONTROL_DIR/CONTROL.json (the main dataset's
# descriptions replaced); default the first measurement's six. w0 is always evaluated.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CROSSGLG_BIN:-target/release/crossglg}
src=$1; out=$2; ctl=$3; shift 3
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(w1:1 w05:0.5 w1-shuffled:1:shuffled w1-names:1:names)
variant() { # name weight [control]
  local name=$1 w=$2 desc=${3:+$ctl/$3.json}
  for r in "$src"/*/; do
    [ -f "$r/report.json" ] || continue
    local d="$out/$name/$(basename "$r")"
    rm -rf "$d"; mkdir -p "$(dirname "$d")"; cp -al "$r" "$d"
    "$bin" eval "$d" --draws 50 --calibration-text "$w" ${desc:+--descriptions "$desc"} --write > /dev/null
  done
}
variant w0 0
for v in "${variants[@]}"; do IFS=: read -r name w c <<< "$v"; variant "$name" "$w" "$c"; done
for v in "${variants[@]}"; do
  name=${v%%:*}
  echo "## $name − w0"
  "$bin" compare --a "$out"/w0/*/ --b "$out/$name"/*/ --names "w0,$name"
done
