#!/usr/bin/env bash
# Trains every setting of a settings file on the same seeds and splits, then prints the paired
# comparison of each setting against the first one (`crossglg compare`: per-seed differences,
# their mean with a 95 % interval, how many are positive).
#
# usage: scripts/paired.sh CONFIG OUTDIR "SEEDS" "SPLITS" SETTINGS [extra --set overrides...]
#   SPLITS: space-separated, each `test` (the config's split), `foldK` (rotated fold K) or
#           `valK` (validation split K: pseudo-novel auxiliary classes, test classes unused).
#   SETTINGS: a file of lines `name: --set key=value --set key=value ...`; the first line is
#           the reference; `#` starts a comment line.
#   e.g. scripts/paired.sh configs/msr-cpu.toml runs/val-msr "0 1 2" "val0 val1 val2" \
#        scripts/settings/guidance.txt --set eval.draws=50
# Seed-major order, so a run cut short has every setting for the first seeds; runs that have a
# report.json are skipped. SUMMARY_ONLY=1 prints the comparison of what has finished.
set -euo pipefail
config=$1; out=$2; seeds=$3; splits=$4; settings=$5; shift 5
bin=${CROSSGLG_BIN:-target/release/crossglg}
mkdir -p "$out"
names=()
while IFS= read -r line; do
  [[ -z "${line// }" || "$line" == \#* ]] && continue
  names+=("${line%%:*}")
done < "$settings"
[ ${#names[@]} -ge 1 ] || { echo "no settings in $settings" >&2; exit 1; }

split_args() {
  case $1 in
    test) ;;
    fold*) echo "--set data.fold=${1#fold}" ;;
    val*) echo "--set data.validation=${1#val}" ;;
    *) echo "unknown split $1 (test, foldK, valK)" >&2; exit 1 ;;
  esac
}

if [ -z "${SUMMARY_ONLY:-}" ]; then
  for s in $seeds; do
    for sp in $splits; do
      while IFS= read -r line; do
        [[ -z "${line// }" || "$line" == \#* ]] && continue
        name=${line%%:*}; args=${line#*:}
        run="$out/$name/$sp-seed$s"
        [ -f "$run/report.json" ] && continue
        mkdir -p "$out/$name"
        # shellcheck disable=SC2046,SC2086
        "$bin" train --config "$config" --out "$run" --quiet --set "seed=$s" $(split_args "$sp") $args "$@" \
          > "$run.log" 2>&1 || { echo "run $run failed, see $run.log" >&2; exit 1; }
        echo "done $run" >&2
      done < "$settings"
    done
  done
fi

ref=${names[0]}
for name in "${names[@]:1}"; do
  echo "## $name vs $ref"
  echo
  # finished runs only (a run still training has no report.json yet)
  a=(); b=()
  for d in "$out/$ref"/*/; do [ -f "$d/report.json" ] && a+=("$d"); done
  for d in "$out/$name"/*/; do [ -f "$d/report.json" ] && b+=("$d"); done
  if [ ${#a[@]} -eq 0 ] || [ ${#b[@]} -eq 0 ]; then echo "(no finished runs yet)"; echo; continue; fi
  "$bin" compare --a "${a[@]}" --b "${b[@]}" --names "$ref,$name" || true
done
