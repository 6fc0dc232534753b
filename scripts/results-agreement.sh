#!/usr/bin/env bash
# docs/results.md, "Does the texts' geometry match the motions'?": for every run of MSR
# Action3D's validation splits in scripts/results-text-side.sh (trained first when missing:
# no text, the target recipe, class names only, the fixed text side, and the fixed side with
# deranged descriptions; CTR-GCN, 3 seeds x 3 splits), Spearman's rho between the classes'
# description cosines (MiniLM, global and per joint) and their mean embeddings' cosines
# (`crossglg eval --text-agreement`), always against the real descriptions. Prints the mean
# over the 9 runs of each setting, and each setting's paired difference from no text. Uses
# the validation classes only.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CROSSGLG_BIN:-target/release/crossglg}
o=runs/text-side/val-msr
PART=1 scripts/results-text-side.sh > runs/text-side/part1.md
out=runs/agreement
mkdir -p $out
for k in none target names-only fixed fixed-shuffled; do
  for r in $o/$k/val?-seed?/; do
    n=$(basename "$r")
    f=$out/$k-$n.json
    [ -s "$f" ] && continue
    # names-only and fixed-shuffled runs name their own texts: the agreement is always
    # measured against the real descriptions
    "$bin" eval "$r" --draws 0 --text-agreement --json \
      --descriptions crates/crossglg-text/descriptions/msr-action3d.json > "$f.tmp"
    mv "$f.tmp" "$f"
  done
done
python3 - "$out" <<'PY'
import json, sys, glob, os, statistics as st
out = sys.argv[1]
def rows(path):
    text = open(path).read(); dec = json.JSONDecoder(); i = 0; last = None
    while i < len(text):
        if text[i].isspace(): i += 1; continue
        obj, i = dec.raw_decode(text, i)
        if isinstance(obj, dict) and 'text_agreement' in obj: last = obj['text_agreement']
    return {(r['text'], r['pairs']): r['rho'] for r in last}
settings = ['none', 'target', 'names-only', 'fixed', 'fixed-shuffled']
runs = {k: {os.path.basename(p)[len(k) + 1:-5]: rows(p) for p in glob.glob(f'{out}/{k}-val*.json')} for k in settings}
keys = list(next(iter(runs['none'].values())).keys())
# Student's t at 97.5 % by degrees of freedom (the runs are 9 per setting; others fail loudly)
t975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
print('| text | class pairs | ' + ' | '.join(settings) + ' |')
print('|---|---|' + '---:|' * len(settings))
for key in keys:
    cells = []
    for k in settings:
        v = [r[key] for r in runs[k].values() if r[key] is not None]
        cells.append(f'{st.mean(v):+.3f}' if v else '–')
    print(f'| {key[0]} | {key[1]} | ' + ' | '.join(cells) + ' |')
print()
print('paired difference from no text (mean, 95 % interval, positive of 9):')
for key in keys:
    for k in settings[1:]:
        d = [runs[k][n][key] - runs['none'][n][key] for n in runs['none'] if n in runs[k]
             and runs[k][n][key] is not None and runs['none'][n][key] is not None]
        m = st.mean(d); h = t975[len(d) - 1] * st.stdev(d) / len(d) ** 0.5
        print(f'  {key[0]:9s} {key[1]:20s} {k:15s} {m:+.3f} ({m - h:+.3f}..{m + h:+.3f}) {sum(x > 0 for x in d)}/{len(d)}')
PY
