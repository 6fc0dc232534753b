#!/usr/bin/env bash
# docs/results.md, "Do different authors describe the classes alike?": `crossglg text compare`
# between the project's descriptions, GAP's (GPT, ICCV 2023) and SkeletonAgent's (GPT-4o,
# 2025) for NTU-120, and each against the class names alone; NW-UCLA's and MSR's against GAP's
# (NW-UCLA only) and the names. all-MiniLM-L6-v2. Needs no training run; prints runs/authors.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CROSSGLG_BIN:-target/release/crossglg}
data=${CROSSGLG_DATA:-../shared/data}
t=runs/authors
desc=crates/crossglg-text/descriptions
mkdir -p $t
"$bin" text import gap-ntu120 "$data/text-descriptions/gap" --layout ntu25 --out $t/ntu120-gap.json > /dev/null
"$bin" text import skeletonagent120 "$data/text-descriptions/skeletonagent" --layout ntu25 --out $t/ntu120-sa.json > /dev/null
"$bin" text import gap-nwucla "$data/text-descriptions/gap" --layout nwucla20 --out $t/nw-ucla-gap.json > /dev/null
for ds in ntu120:ntu25 msr-action3d:msr20 nw-ucla:nwucla20; do
  n=${ds%%:*}
  python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print("\n".join(c["name"] for c in sorted(d["classes"], key=lambda c: c["id"])))' $desc/$n.json > $t/$n-classes.txt
  "$bin" text names --classes $t/$n-classes.txt --layout "${ds##*:}" --dataset "$n" --out $t/$n-names.json > /dev/null
done
row() {  # row A B [--by-id]: one line per text level
  "$bin" text compare "$@" | awk -v a="$(basename "$1" .json)" -v b="$(basename "$2" .json)" \
    '/^(global|per-joint) / { printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", a, b, $1, $3, $4, $5, $6, $7 }'
}
{
  echo "| A | B | text | ρ | pair cos A | pair cos B | same class | matched |"
  echo "|---|---|---|---:|---:|---:|---:|---:|"
  row $desc/ntu120.json $t/ntu120-gap.json --by-id
  row $desc/ntu120.json $t/ntu120-sa.json --by-id
  row $t/ntu120-gap.json $t/ntu120-sa.json --by-id
  row $desc/ntu120.json $t/ntu120-names.json
  row $t/ntu120-gap.json $t/ntu120-names.json --by-id
  row $t/ntu120-sa.json $t/ntu120-names.json --by-id
  row $desc/nw-ucla.json $t/nw-ucla-gap.json
  row $desc/nw-ucla.json $t/nw-ucla-names.json
  row $t/nw-ucla-gap.json $t/nw-ucla-names.json
  row $desc/msr-action3d.json $t/msr-action3d-names.json
} > runs/authors.md
cat runs/authors.md
