#!/usr/bin/env bash
# A CUDA-capable cyclegan that starts on every machine: the main library and CLI, which link
# no GPU library, plus the CUDA backend library they load at run time when it is there
# (docs/gpu.md). This replaces the former candle-core patch (cudarc's dynamic loading): the
# main program never links CUDA, and the backend library may link it the usual way, since
# a machine without the driver refuses to load it with the missing library's name and the
# program goes on on the CPU.
#
# Usage: . /tmp/cuda/env-cuda.sh   # or any CUDA toolkit: nvcc on PATH, CUDA_HOME set
#        scripts/build-cuda-portable.sh [cuda|cudnn] [other cargo build flags]
# Output: target/release/cyclegan, libcyclegan.so and libcyclegan_backend_cuda.so beside
# them (or under $CARGO_TARGET_DIR); check with `target/release/cyclegan backends`.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${CUDA_HOME:?set CUDA_HOME to a CUDA toolkit (e.g. . /tmp/cuda/env-cuda.sh)}"
feature=${1:-cuda}
shift || true
cargo build --release "$@"
cargo build --release -p cyclegan-backend-cuda --features "$feature" "$@"

dir=${CARGO_TARGET_DIR:-target}/release
for f in "$dir/cyclegan" "$dir/libcyclegan.so"; do
    if readelf -d "$f" | grep -E 'NEEDED.*(libcuda|libcublas|libcurand|libcudart|libnvrtc|libcudnn)'; then
        echo "$f needs the CUDA libraries above: it must not (docs/gpu.md)" >&2
        exit 1
    fi
done
echo "built $dir/cyclegan and libcyclegan.so (no GPU library) and"
echo "      $dir/libcyclegan_backend_cuda.so (install it in PREFIX/lib/cyclegan/)"
