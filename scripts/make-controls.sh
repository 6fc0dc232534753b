#!/usr/bin/env bash
# The text controls of docs/results.md ("Does the text's meaning matter?"), written once for
# the scripts that train on them (results-controls.sh, results-text-side.sh):
#   runs/controls/{msr,nwucla}/{shuffled,names,random}.json (scripts/text-controls.py),
#   each checked with `crossglg text validate`, and
#   runs/controls/nwucla-msr-{shuffled,names,random}.toml: copies of configs/nwucla-msr-cpu.toml
#   two folders deeper, pointing at both datasets' control files (the extra dataset's
#   descriptions are in the config, and `--set` cannot reach `[[data.extra]]`).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CROSSGLG_BIN:-target/release/crossglg}
c=runs/controls
desc=crates/crossglg-text/descriptions
python3 scripts/text-controls.py $desc/msr-action3d.json $c/msr 2> /dev/null
python3 scripts/text-controls.py $desc/nw-ucla.json $c/nwucla 2> /dev/null
for f in $c/msr/*.json $c/nwucla/*.json; do "$bin" text validate "$f" > /dev/null; done
for k in shuffled names random; do
  sed -e 's|"\.\./|"../../|' \
      -e "s|\"../../crates/crossglg-text/descriptions/msr-action3d.json\"|\"msr/$k.json\"|" \
      -e "s|\"../../crates/crossglg-text/descriptions/nw-ucla.json\"|\"nwucla/$k.json\"|" \
      configs/nwucla-msr-cpu.toml > $c/nwucla-msr-$k.toml
  grep -q "\"msr/$k.json\"" $c/nwucla-msr-$k.toml && grep -q "\"nwucla/$k.json\"" $c/nwucla-msr-$k.toml \
    || { echo "configs/nwucla-msr-cpu.toml no longer has the paths this script rewrites" >&2; exit 1; }
done
