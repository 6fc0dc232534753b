#!/usr/bin/env bash
# The user-facing one-shot flow on real data: take a model trained on MSR Action3D's auxiliary
# classes, `crossglg enroll` one raw skeleton file per novel class (the protocol's exemplar:
# subject 1, first trial), `crossglg recognize` every other file of those classes, and print the
# accuracy (closed set, and with the model's calibrated "unknown" threshold). Then the open-set
# case: a gallery without the last novel class ("tennis swing"), whose queries should come out
# "unknown", at each calibrated operating point (`recognize --far`). Last, for runs trained with
# the text-target branch (recipe = "target"), the same queries recognised from the classes'
# descriptions alone (`recognize --describe --classes`, no exemplar) and with the description
# prior over the gallery (`recognize --gallery --describe`, weight 0.1).
#
# usage: scripts/enroll-real.sh RUN_DIR [OUT_DIR]
#   RUN_DIR: a run trained with configs/msr-cpu.toml (split "msr").
# Reads $CROSSGLG_DATA/msr-action3d/MSRAction3DSkeletonReal3D (default ../shared/data).
set -euo pipefail
run=$1
out=${2:-$run/enroll-real}
bin=${CROSSGLG_BIN:-target/release/crossglg}
data=${CROSSGLG_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}/msr-action3d/MSRAction3DSkeletonReal3D
[ -d "$data" ] || { echo "no MSR Action3D folder at $data (set CROSSGLG_DATA)" >&2; exit 1; }
mkdir -p "$out"
gallery="$out/gallery.safetensors"
gallery4="$out/gallery-without-last.safetensors"
rm -f "$gallery" "$gallery4"

# Novel classes of the "msr" split: labels 0, 4, 8, 12, 16 (actions a01, a05, a09, a13, a17).
names=("high arm wave" "forward punch" "draw circle" "bend" "tennis swing")
queries=()
for i in 0 1 2 3 4; do
  a=$(printf "a%02d" $((i * 4 + 1)))
  "$bin" enroll --model "$run" --gallery "$gallery" --name "${names[$i]}" "$data/${a}_s01_e01_skeleton3D.txt" >/dev/null
  [ "$i" -lt 4 ] && "$bin" enroll --model "$run" --gallery "$gallery4" --name "${names[$i]}" "$data/${a}_s01_e01_skeleton3D.txt" >/dev/null
  for f in "$data/${a}"_s*_skeleton3D.txt; do
    case $(basename "$f") in
      ${a}_s01_e01_*) ;;                                           # the exemplar
      a13_s09_e02_*) ;;                                            # all zeros in the release
      *) queries+=("$f") ;;
    esac
  done
done

"$bin" recognize --model "$run" --gallery "$gallery" --json "${queries[@]}" > "$out/recognitions.json"
for far in 0.01 0.05 0.1 0.2 0.3; do
  "$bin" recognize --model "$run" --gallery "$gallery4" --far $far --json "${queries[@]}" > "$out/open-set-far$far.json"
done

desc=crates/crossglg-text/descriptions/msr-action3d.json
text=yes
if grep -q '^recipe = "target"' "$run/config.toml"; then
  classes=$(IFS=,; echo "${names[*]}")
  "$bin" recognize --model "$run" --describe "$desc" --classes "$classes" --json "${queries[@]}" > "$out/zero-shot.json"
  "$bin" recognize --model "$run" --gallery "$gallery" --describe "$desc" --json "${queries[@]}" > "$out/prior.json"
else
  text=no
  echo "(no text-target branch in $run: the description steps are left out)" >&2
fi

python3 - "$out/recognitions.json" "$text" "${names[@]}" <<'PY'
import json, os, sys
rows = json.load(open(sys.argv[1]))
text = sys.argv[2] == "yes"
names = sys.argv[3:]
truth = lambda r: names[(int(os.path.basename(r["input"])[1:3]) - 1) // 4]
n = len(rows)
closed = sum(r["recognition"]["class"] == truth(r) for r in rows)
accepted = sum(not r["recognition"]["unknown"] for r in rows)
open_ok = sum(r["recognition"]["class"] == truth(r) and not r["recognition"]["unknown"] for r in rows)
print(f"queries {n}, classes {len(names)} (chance {100 / len(names):.1f} %)")
print(f"closed-set top-1: {100 * closed / n:.1f} % ({closed}/{n})")
print(f"with the unknown threshold: accepted {100 * accepted / n:.1f} %, correct and accepted {100 * open_ok / n:.1f} %")
d = os.path.dirname(sys.argv[1])
if text:
    for name, what in [("zero-shot", "from the descriptions alone (no exemplar)"), ("prior", "with the description prior (0.1)")]:
        rs = json.load(open(f"{d}/{name}.json"))
        c = sum(r["recognition"]["class"] == truth(r) for r in rs)
        print(f"{what}: {100 * c / len(rs):.1f} % ({c}/{len(rs)})")
print()
print(f"open set: '{names[-1]}' not enrolled; its queries should come out unknown")
print("| false-accept target (base classes) | enrolled: correct and accepted % | not enrolled: rejected % |")
print("|---|---|---|")
for far in ["0.01", "0.05", "0.1", "0.2", "0.3"]:
    rows = json.load(open(f"{d}/open-set-far{far}.json"))
    known = [r for r in rows if truth(r) != names[-1]]
    new = [r for r in rows if truth(r) == names[-1]]
    ok = sum(r["recognition"]["class"] == truth(r) and not r["recognition"]["unknown"] for r in known)
    rej = sum(r["recognition"]["unknown"] for r in new)
    print(f"| {far} | {100 * ok / len(known):.1f} ({ok}/{len(known)}) | {100 * rej / len(new):.1f} ({rej}/{len(new)}) |")
PY
