#!/usr/bin/env bash
# docs/results.md, "Someone else's descriptions: GAP's": NW-UCLA's classes described by GAP
# (Xiang et al., ICCV 2023; GPT at temperature 0.1, one global sentence and six body-part
# texts per class, no key-joint lists; $CROSSGLG_DATA/text-descriptions/gap, imported with
# `crossglg text import gap-nwucla`) instead of this project's descriptions, with MSR's 20
# classes added for training (their descriptions stay the project's: GAP has none for MSR).
# Two settings, fixed before any run:
#   gap:      GAP's texts as imported (key joints then come from body-part words in the
#             global text, as for any file without key-joint lists);
#   gap-keys: GAP's texts with the project's key-joint lists, so only the texts differ.
# Against the runs of scripts/results-controls.sh (project's descriptions, deranged ones, no
# text): NW-UCLA's test split and fold 1, ST-GCN, seeds 0-4, 50 exemplar draws, the same
# commands. Nothing is chosen from it. Prints runs/gap.md. Finished runs are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CROSSGLG_BIN:-target/release/crossglg}
data=${CROSSGLG_DATA:-../shared/data}
g=runs/gap
c=runs/controls
mkdir -p $g
"$bin" text import gap-nwucla "$data/text-descriptions/gap" --layout nwucla20 --out $g/nwucla-gap.json > /dev/null
python3 - $g/nwucla-gap.json crates/crossglg-text/descriptions/nw-ucla.json $g/nwucla-gap-keys.json <<'PY'
import json, sys
gap, ours, out = sys.argv[1:]
g, o = json.load(open(gap)), json.load(open(ours))
by_name = {c["name"]: c for c in o["classes"]}
for c in g["classes"]:
    c["key_joints"] = by_name[c["name"]]["key_joints"]  # a KeyError if the class lists differ
json.dump(g, open(out, "w"), indent=1)
PY
for k in gap gap-keys; do
  "$bin" text validate $g/nwucla-$k.json > /dev/null
  sed -e 's|"\.\./|"../../|' \
      -e "s|\"../../crates/crossglg-text/descriptions/nw-ucla.json\"|\"nwucla-$k.json\"|" \
      configs/nwucla-msr-cpu.toml > $g/nwucla-msr-$k.toml
  grep -q "\"nwucla-$k.json\"" $g/nwucla-msr-$k.toml \
    || { echo "configs/nwucla-msr-cpu.toml no longer has the path this script rewrites" >&2; exit 1; }
done
stgcn="--set model.encoder.kind=st_gcn --set eval.draws=50"
# the build must reproduce the reference runs: one of them again, compared digit for digit
# shellcheck disable=SC2086
scripts/train-once.sh $g/check/test-seed0 configs/nwucla-msr-cpu.toml --set seed=0 $stgcn
cmp -s $g/check/test-seed0/report.json $c/nwucla-msr-test/target/test-seed0/report.json \
  || echo "warning: this build does not reproduce $c/nwucla-msr-test/target/test-seed0" >&2
for seed in ${SEEDS:-0 1 2 3 4}; do
  for k in gap gap-keys; do
    # shellcheck disable=SC2086
    scripts/train-once.sh $g/test/$k/test-seed$seed $g/nwucla-msr-$k.toml --set seed=$seed $stgcn
    # shellcheck disable=SC2086
    scripts/train-once.sh $g/fold1/$k/fold1-seed$seed $g/nwucla-msr-$k.toml --set seed=$seed $stgcn --set data.fold=1
  done
done
zero_shot() {
  "$bin" eval "$1" --zero-shot --json | python3 -c '
import json, sys
r = {e["method"]: e for e in json.load(sys.stdin)}
acc = r["zero-shot-text"]["accuracy"]
print(f"{100 * acc:.1f}")'
}
{
  for split in test fold1; do
    ref=$c/nwucla-msr-$split
    echo "# $split"
    pairs=("target gap" "target gap-keys" "gap gap-keys" "shuffled gap" "shuffled gap-keys")
    [ $split = test ] && pairs+=("none gap" "none gap-keys" "names gap" "names gap-keys" "random gap")
    for pair in "${pairs[@]}"; do
      set -- $pair
      a=$ref/$1; [ "$1" = gap ] && a=$g/$split/gap
      echo "## $2 vs $1"
      "$bin" compare --a "$a"/"$split"-seed*/ --b $g/$split/"$2"/"$split"-seed*/ --names "$1,$2" || true
    done
    echo "## zero-shot top-1 (protocol queries)"
    for d in $g/$split/*/"$split"-seed*/; do echo "$d $(zero_shot "$d")"; done
  done
} > runs/gap.md
cat runs/gap.md
