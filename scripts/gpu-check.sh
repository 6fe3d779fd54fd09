#!/usr/bin/env bash
# The prepared GPU check of issue #7 (docs/performance.md), in two steps, so a session lent a
# GPU machine spends its device minutes running checks rather than building:
#
#   here, no GPU needed:  . /tmp/cuda/env-cuda.sh && scripts/gpu-check.sh pack [features]
#       builds examples/bench_device once per cargo feature named (default: cuda cudnn),
#       strips each and packs them with xz into .device/ (ignored by git), with PyTorch's
#       seed generator for the side-by-side figures. The working tree that travels is
#       ~43 MB, so the carry must stay under ~20 MB (6 MB per build): bench_device reads the
#       style from models/ rather than embedding it as the CLI does.
#   on the GPU machine:   scripts/gpu-check.sh run        (device tool: carry [".device"])
#       prints the GPU and driver, then for each build bench_device's first-call time,
#       parity (PyTorch's vectors, the CPU engine, a whole stylize of examples/rocket.jpg)
#       and timings (fused f32, generic f32 and bf16 at 256..2048), then PyTorch's on the
#       same GPU. About 5 minutes; the first CUDA call of each build JIT-compiles PTX.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.device

case ${1:-} in
pack)
    shift
    variants=${*:-cuda cudnn}
    : "${CUDA_HOME:?set CUDA_HOME to a CUDA toolkit (e.g. . /tmp/cuda/env-cuda.sh)}"
    rm -rf "$dir" && mkdir -p "$dir"
    for v in $variants; do
        cargo build --release --features "$v" --example bench_device
        strip -o "$dir/bench_device_$v" "${CARGO_TARGET_DIR:-target}/release/examples/bench_device"
        xz -T0 -6 "$dir/bench_device_$v"
    done
    cp scripts/torch_gpu_bench.py "$dir/"
    if [[ -f ../shared/reference/ref_cyclegan.py ]]; then
        cp ../shared/reference/ref_cyclegan.py "$dir/"
    fi
    du -sh "$dir"
    ;;
run)
    nv=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
    export LD_LIBRARY_PATH=$nv/cu13/lib:$nv/cudnn/lib:${LD_LIBRARY_PATH:-}
    for f in "$dir"/*.xz; do xz -dkf "$f"; done
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    for f in "$dir"/bench_device_*.xz; do
        bin=${f%.xz}
        chmod +x "$bin"
        echo "== $(basename "$bin") (cyclegan)"
        "$bin" cuda 256 512 1024 2048 || echo "$(basename "$bin") failed: $?"
    done
    echo "== PyTorch on the same GPU"
    if [[ -x /opt/torch/.venv/bin/python && -f $dir/ref_cyclegan.py ]]; then
        /opt/torch/.venv/bin/python "$dir/torch_gpu_bench.py" --sizes 256 512 1024 2048
    else
        echo "skipped: no /opt/torch/.venv or no ref_cyclegan.py packed"
    fi
    ;;
*)
    echo "usage: scripts/gpu-check.sh pack [cargo features] | run" >&2
    exit 2
    ;;
esac
