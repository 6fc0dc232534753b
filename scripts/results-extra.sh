#!/usr/bin/env bash
# docs/results.md, "NW-UCLA with more training classes": NW-UCLA's one-shot protocol
# trained on its own 5 auxiliary classes (configs/nwucla-cpu.toml) and with MSR Action3D's 20
# classes added (configs/nwucla-msr-cpu.toml), each without text and with the default recipe,
# on the same seeds and exemplar draws. The design was fixed before any run: the two configs
# differ only in [[data.extra]], nothing else was tried. Seed-major across the two configs, so
# a cut-short run leaves paired seeds; finished runs are skipped. ST-GCN (the second encoder)
# follows, with and without MSR (STGCN=0 leaves it out).
set -euo pipefail
cd "$(dirname "$0")/.."
p=scripts/paired.sh
s=scripts/settings/test-none.txt
d="--set eval.draws=50"
for seed in 0 1 2 3 4; do
  $p configs/nwucla-cpu.toml     runs/extra/nwucla     "$seed" test $s $d > /dev/null
  $p configs/nwucla-msr-cpu.toml runs/extra/nwucla-msr "$seed" test $s $d > /dev/null
done
for seed in 0 1 2; do
  $p configs/nwucla-cpu.toml     runs/extra/nwucla     "$seed" fold1 $s $d > /dev/null
  $p configs/nwucla-msr-cpu.toml runs/extra/nwucla-msr "$seed" fold1 $s $d > /dev/null
done
bin=${CROSSGLG_BIN:-target/release/crossglg}
for split in test fold1; do
  for pair in "nwucla/none nwucla/target" "nwucla-msr/none nwucla-msr/target" \
              "nwucla/none nwucla-msr/none" "nwucla/target nwucla-msr/target"; do
    set -- $pair
    echo "## $split: $2 vs $1"
    "$bin" compare --a runs/extra/$1/$split-seed*/ --b runs/extra/$2/$split-seed*/ --names "$1,$2" || true
  done
done > runs/extra.md
# ST-GCN with MSR's classes added (the second encoder; run after the above), then on NW-UCLA
# alone, the same build's baseline for it
if [ "${STGCN:-1}" = 1 ]; then
  $p configs/nwucla-msr-cpu.toml runs/extra/nwucla-msr-stgcn "0 1 2 3 4" test $s $d --set model.encoder.kind=st_gcn > runs/extra-stgcn.md
  $p configs/nwucla-cpu.toml runs/extra/nwucla-stgcn "0 1 2 3 4" test $s $d --set model.encoder.kind=st_gcn > runs/extra-stgcn-alone.md
fi
