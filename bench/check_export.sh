#!/usr/bin/env bash
# The golden check of crossglg's encoders against PyTorch: trains tiny models of every encoder
# (one epoch of `configs/demo.toml`, with the options that change the graph: edge importance,
# JID re-weighting, classifier kinds, the paper-form cross-modal branch), exports each with
# `crossglg export --torch`, and runs bench/check_export.py on it, which loads the export into
# the PyTorch twins of bench/torch_reference.py and compares their outputs on the export's
# golden input with crossglg's.
#
#   bench/check_export.sh            # tolerance 1e-4; TOLERANCE=... to change it
#
# Uses bench/.venv (created with torch by bench/run.sh, or here). Writes target/export-check/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import torch, numpy' 2>/dev/null; then
    echo "== creating $venv and installing ${TORCH_SPEC:-torch} (large download, once)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "${TORCH_SPEC:-torch}" numpy
fi
(cd "$root" && cargo build --quiet --release -p crossglg-cli)
bin="$root/target/release/crossglg"
out="$root/target/export-check"
rm -rf "$out"
mkdir -p "$out"

# name | settings
cases=(
  "stgcn-mlp|model.encoder.kind=st_gcn model.encoder.edge_importance=true classifier=mlp"
  "ctrgcn-residual|model.encoder.kind=ctr_gcn model.jid.reweight=residual"
  "infogcn-cosine|model.encoder.kind=info_gcn classifier=cosine"
  "ctrgcn-target|model.encoder.kind=ctr_gcn recipe=target"
)
status=0
for c in "${cases[@]}"; do
    name="${c%%|*}"
    sets=()
    recipe=paper
    for s in ${c#*|}; do
        case "$s" in
            recipe=*) recipe="${s#recipe=}" ;;
            classifier=*) sets+=(--set "model.classifier.kind=${s#classifier=}") ;;
            *) sets+=(--set "$s") ;;
        esac
    done
    echo "== $name" >&2
    (cd "$root" && "$bin" train -c configs/demo.toml --set epochs=1 --set eval.draws=0 \
        --set "recipe=$recipe" "${sets[@]}" --out "$out/run-$name" > "$out/train-$name.log" 2>&1)
    "$bin" export "$out/run-$name" --out "$out/export-$name" --torch > "$out/export-$name.log"
    if ! "$venv/bin/python" "$here/check_export.py" "$out/export-$name" \
        --tolerance "${TOLERANCE:-1e-4}" --json "$out/check-$name.json"; then
        status=1
    fi
done
exit $status
