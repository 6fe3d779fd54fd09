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
    cargo build --release --bin cyclegan
    cargo build --release -p cyclegan-backend-cuda --features cuda
    t=${CARGO_TARGET_DIR:-target}/release
    strip -o "$dir/cyclegan" "$t/cyclegan"
    mkdir -p "$dir/backends"
    strip -o "$dir/backends/libcyclegan_backend_cuda.so" "$t/libcyclegan_backend_cuda.so"
    xz -T0 -6 "$dir/cyclegan" "$dir/backends/libcyclegan_backend_cuda.so"
    cp scripts/torch_gpu_bench.py "$dir/"
    if [[ -f ../shared/reference/ref_cyclegan.py ]]; then
        cp ../shared/reference/ref_cyclegan.py "$dir/"
    fi
    du -sh "$dir"
    ;;
run)
    nv=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
    export LD_LIBRARY_PATH=$nv/cu13/lib:$nv/cudnn/lib:${LD_LIBRARY_PATH:-}
    for f in "$dir"/*.xz "$dir"/backends/*.xz; do [[ -e $f ]] && xz -dkf "$f"; done
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    for f in "$dir"/bench_device_*.xz; do
        bin=${f%.xz}
        chmod +x "$bin"
        echo "== $(basename "$bin") (cyclegan)"
        "$bin" cuda 256 512 1024 2048 || echo "$(basename "$bin") failed: $?"
    done
    if [[ -f $dir/cyclegan ]]; then
        chmod +x "$dir/cyclegan"
        echo "== issue #15: the CLI links no CUDA library"
        if ldd "$dir/cyclegan" | grep -Ei 'cuda|cublas|curand|cudnn|nvrtc'; then
            echo "FAIL: the CLI links the CUDA libraries above"
        else
            echo "ok"
        fi
        echo "== cyclegan backends (backend in $dir/backends)"
        CYCLEGAN_BACKEND_PATH=$dir/backends "$dir/cyclegan" backends
        for run in cold warm; do
            echo "== stylize rocket.jpg through the backend ($run)"
            /usr/bin/time -f "%e s wall, %M KiB peak" env CYCLEGAN_BACKEND_PATH=$dir/backends \
                "$dir/cyclegan" stylize --device cuda --overwrite examples/rocket.jpg \
                -o "$dir/rocket-cuda.png" || echo "stylize through the backend failed: $?"
        done
        echo "== the same on the CPU engine, and the largest 8-bit difference"
        "$dir/cyclegan" stylize --device cpu --overwrite examples/rocket.jpg -o "$dir/rocket-cpu.png"
        python3 - "$dir/rocket-cuda.png" "$dir/rocket-cpu.png" <<'PY' || true
import sys
try:
    from PIL import Image
except ImportError:
    sys.exit("PIL missing: compare the two PNGs by hand")
a, b = (Image.open(p).convert("RGB").tobytes() for p in sys.argv[1:3])
print("max 8-bit difference cuda vs cpu:", max(abs(x - y) for x, y in zip(a, b)))
PY
        echo "== a truncated backend is refused, stylize still works"
        mkdir -p "$dir/bad" && head -c 1000000 "$dir/backends/libcyclegan_backend_cuda.so" \
            > "$dir/bad/libcyclegan_backend_cuda.so"
        CYCLEGAN_BACKEND_PATH=$dir/bad "$dir/cyclegan" backends | grep cuda || true
        CYCLEGAN_BACKEND_PATH=$dir/bad "$dir/cyclegan" stylize --overwrite examples/rocket.jpg \
            -o "$dir/rocket-auto.png" && echo "ok: auto fell back to the CPU"
    fi
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
