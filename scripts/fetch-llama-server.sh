#!/usr/bin/env bash
# Puts Debian's build of llama.cpp's server at $CROSSGLG_LLAMA_DIR (default
# <workspace>/cache/llama.cpp), for the LLM client's test against a real OpenAI-compatible server
# (crates/crossglg-text/tests/llama_server.rs). Prints the path of the wrapper to run.
#
# Why this way: llama.cpp is packaged only in Debian unstable (sid), built against a newer glibc
# than bookworm's, and PyPI's llama-cpp-python is source-only (a ~10 minute build on 2 cores). So
# the sid packages of the server and of the libraries it needs (glibc included) are unpacked into
# one folder, nothing is installed on the system, and a wrapper starts the server through the
# unpacked dynamic loader with only that folder on the library path.
#
# Integrity: InRelease is checked with gpgv against the system's Debian archive keyring, the
# package index against InRelease's SHA-256, and every .deb against the index's SHA-256.
# Idempotent: does nothing when the wrapper is there and answers --version.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${CROSSGLG_LLAMA_DIR:-$root/cache/llama.cpp}"
mirror="${CROSSGLG_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=sid
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
# The server, its libraries and their runtime (the loader and libc come with libc6).
packages=(llama.cpp-tools libllama0 libggml0 libc6 libgcc-s1 libstdc++6 libgomp1 libssl3t64
          zlib1g libzstd1)

if [ -x "$dest/llama-server" ] && "$dest/llama-server" --version >/dev/null 2>&1; then
    echo "$dest/llama-server"
    exit 0
fi
for tool in curl gpgv xz dpkg-deb python3 sha256sum; do
    command -v "$tool" >/dev/null || { echo "fetch-llama-server: needs $tool" >&2; exit 1; }
done
[ -r "$keyring" ] || { echo "fetch-llama-server: no Debian keyring at $keyring" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fetch() { curl -fsS --retry 3 --max-time 300 -o "$2" "$1" \
    || { echo "fetch-llama-server: cannot download $1" >&2; exit 1; }; }

fetch "$mirror/dists/$suite/InRelease" "$tmp/InRelease"
gpgv --keyring "$keyring" --output "$tmp/Release" "$tmp/InRelease" 2>"$tmp/gpgv.log" \
    || { cat "$tmp/gpgv.log" >&2; echo "fetch-llama-server: bad signature on $suite InRelease" >&2; exit 1; }
fetch "$mirror/dists/$suite/main/binary-amd64/Packages.xz" "$tmp/Packages.xz"

# Resolve each package to (file, sha256) from the verified index; fail naming what is missing.
python3 - "$tmp" "${packages[@]}" >"$tmp/plan" <<'EOF'
import hashlib, lzma, re, sys
tmp, wanted = sys.argv[1], sys.argv[2:]
release = open(f"{tmp}/Release", encoding="utf-8").read()
sha = release.split("SHA256:", 1)[1]
m = re.search(r"^ ([0-9a-f]{64})\s+\d+\s+main/binary-amd64/Packages\.xz$", sha, re.M)
if not m:
    sys.exit("fetch-llama-server: Release lists no main/binary-amd64/Packages.xz")
raw = open(f"{tmp}/Packages.xz", "rb").read()
if hashlib.sha256(raw).hexdigest() != m.group(1):
    sys.exit("fetch-llama-server: Packages.xz does not match the signed Release")
index = {}
for block in lzma.decompress(raw).decode("utf-8").split("\n\n"):
    fields = dict(re.findall(r"^(Package|Filename|SHA256): (.*)$", block, re.M))
    if "Package" in fields:
        index[fields["Package"]] = (fields["Filename"], fields["SHA256"])
missing = [p for p in wanted if p not in index]
if missing:
    sys.exit(f"fetch-llama-server: not in Debian sid's index: {', '.join(missing)}")
for p in wanted:
    print(p, *index[p])
EOF

stage="$dest.partial"
rm -rf "$stage"
mkdir -p "$stage/root"
while read -r name file sum; do
    deb="$tmp/$(basename "$file")"
    fetch "$mirror/$file" "$deb"
    echo "$sum  $deb" | sha256sum --check --quiet - \
        || { echo "fetch-llama-server: $name does not match the index" >&2; exit 1; }
    dpkg-deb -x "$deb" "$stage/root"
    echo "$name $(basename "$file")" >>"$stage/PACKAGES"
done <"$tmp/plan"

# ggml loads its CPU backend (the best of several ISA builds) from the executable's folder, among
# others; run through the loader, that folder is the library folder, so the backends go there too.
lib="$stage/root/usr/lib/x86_64-linux-gnu"
for so in "$lib"/ggml/backends0/libggml-*.so; do
    [ -e "$so" ] || { echo "fetch-llama-server: libggml0 ships no CPU backends" >&2; exit 1; }
    ln -s "ggml/backends0/$(basename "$so")" "$lib/$(basename "$so")"
done

cat >"$stage/llama-server" <<'EOF'
#!/bin/sh
# Debian sid's llama-server, run by the unpacked loader with only the unpacked libraries.
here="$(cd "$(dirname "$0")" && pwd)"
lib="$here/root/usr/lib/x86_64-linux-gnu"
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib:$lib/llama" "$here/root/usr/bin/llama-server" "$@"
EOF
chmod +x "$stage/llama-server"
"$stage/llama-server" --version >/dev/null 2>&1 \
    || { echo "fetch-llama-server: the unpacked server does not start:" >&2; "$stage/llama-server" --version >&2; exit 1; }
# Whole or not at all.
rm -rf "$dest"
mv "$stage" "$dest"
echo "$dest/llama-server"
