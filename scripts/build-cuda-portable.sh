#!/usr/bin/env bash
# A CUDA build of cyclegan that also starts on machines without the NVIDIA driver or the
# CUDA libraries, and then runs on the CPU with a notice (`--device auto`) or says which
# library is missing (`--device cuda`).
#
# Why a script: candle-core 0.11 asks cudarc for `dynamic-linking`, so a plain
# `cargo build --features cuda` binary lists libcuda.so.1, libcublas, libcurand and
# libcudart as NEEDED and the loader refuses to start it without them
# (huggingface/candle#3900). This script
#   1. copies candle-core from cargo's registry into target/cuda-portable and switches it to
#      cudarc's `dynamic-loading` (the libraries are dlopen'ed on first GPU use), and builds
#      with that copy patched in (Cargo.lock is restored afterwards);
#   2. links the CUDA runtime that candle-kernels asks for statically (libcudart_static.a,
#      which itself dlopens the driver), through `CYCLEGAN_CUDART_STATIC` (see build.rs).
# It checks the result has no CUDA library left in its NEEDED entries.
#
# Usage: . /tmp/cuda/env-cuda.sh   # or any CUDA toolkit: nvcc on PATH, CUDA_HOME set
#        scripts/build-cuda-portable.sh [--features cudnn] [other cargo build flags]
# Output: target/release/cyclegan and libcyclegan.so (or under $CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${CUDA_HOME:?set CUDA_HOME to a CUDA toolkit (e.g. . /tmp/cuda/env-cuda.sh)}"
cudart=${CYCLEGAN_CUDART_STATIC:-}
if [[ -z $cudart ]]; then
    # The toolkit's lib64 or lib, else the pip wheels that tools/cuda-buildenv.sh unpacks.
    cudart=$(find -L "$CUDA_HOME" "$CUDA_HOME/../venv" -name libcudart_static.a 2>/dev/null |
        head -n 1 || true)
fi
[[ -f $cudart ]] || {
    echo "libcudart_static.a not found under $CUDA_HOME: set CYCLEGAN_CUDART_STATIC" >&2
    exit 1
}

manifest=$(cargo metadata --format-version 1 --locked | python3 -c '
import json, sys
meta = json.load(sys.stdin)
print(next(p["manifest_path"] for p in meta["packages"] if p["name"] == "candle-core"))')
out=target/cuda-portable
rm -rf "$out/candle-core"
mkdir -p "$out"
cp -r "$(dirname "$manifest")" "$out/candle-core"
sed -i 's/"dynamic-linking"/"dynamic-loading"/' "$out/candle-core/Cargo.toml"
grep -q '"dynamic-loading"' "$out/candle-core/Cargo.toml" || {
    echo "candle-core's Cargo.toml no longer names dynamic-linking: update this script" >&2
    exit 1
}

cp Cargo.lock "$out/Cargo.lock.orig"
trap 'cp "$out/Cargo.lock.orig" Cargo.lock' EXIT
CYCLEGAN_CUDART_STATIC=$cudart cargo build --release --features cuda \
    --config "patch.crates-io.candle-core.path=\"$out/candle-core\"" "$@"

bin=${CARGO_TARGET_DIR:-target}/release/cyclegan
if readelf -d "$bin" | grep -E 'NEEDED.*(libcuda|libcublas|libcurand|libcudart|libnvrtc)'; then
    echo "$bin still needs the CUDA libraries above at start-up" >&2
    exit 1
fi
echo "built $bin: starts without CUDA; the GPU libraries load on first use"
