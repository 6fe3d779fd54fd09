#!/usr/bin/env bash
# The prepared GPU check of issues #7 and #15 (docs/performance.md, docs/gpu.md), in two
# steps, so a session lent a GPU machine spends its device minutes running checks rather
# than building:
#
#   here, no GPU needed:  . /tmp/cuda/env-cuda.sh && scripts/gpu-check.sh pack [features]
#       builds the CUDA backend library once per cargo feature named (default: cuda; add
#       cudnn for a second one), and the default-build CLI and examples/bench_device, which
#       reach the GPU through that library as users do and link no CUDA themselves. Strips
#       and packs them with xz into .device/ (ignored by git). The tracked tree that travels
#       is ~45 MB, so the carry must stay under ~19 MB: `du` at the end says.
#   on the GPU machine:   scripts/gpu-check.sh run        (device tool: carry [".device"])
#       prints the GPU and driver, then for each backend build bench_device's first-call
#       time, parity (PyTorch's vectors, the CPU engine), a whole stylize of rocket.jpg in
#       f32 against the CPU and in bf16 against f32, and f32 / bf16 forward times at
#       256..2048; the CLI through the backend library (stylize cold and warm, 300 training
#       iterations), then PyTorch's eager and torch.compile on the same GPU. About 6
#       minutes. The kernels are fatbins for sm_80..90 (third_party/candle-kernels), so the
#       first call should not JIT-compile.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.device

case ${1:-} in
pack)
    shift
    variants=${*:-cuda}
    : "${CUDA_HOME:?set CUDA_HOME to a CUDA toolkit (e.g. . /tmp/cuda/env-cuda.sh)}"
    t=${CARGO_TARGET_DIR:-target}/release
    rm -rf "$dir" && mkdir -p "$dir"
    # No embedded style in any of them (22 MB each; src/styles.rs): the backend gets its
    # weights from the host, the CLI and bench_device read models/monet.safetensors. The
    # next plain cargo build rebuilds the crate with the style.
    export CYCLEGAN_NO_EMBEDDED_STYLES=1
    for v in $variants; do
        cargo build --release -p cyclegan-backend-cuda --features "$v"
        mkdir -p "$dir/backends-$v"
        strip -o "$dir/backends-$v/libcyclegan_backend_cuda.so" "$t/libcyclegan_backend_cuda.so"
        xz -T0 -6 "$dir/backends-$v/libcyclegan_backend_cuda.so"
    done
    cargo build --release --bin cyclegan --example bench_device
    strip -o "$dir/cyclegan" "$t/cyclegan"
    strip -o "$dir/bench_device" "$t/examples/bench_device"
    xz -T0 -6 "$dir/cyclegan" "$dir/bench_device"
    cp scripts/torch_gpu_bench.py "$dir/"
    if [[ -f ../shared/reference/ref_cyclegan.py ]]; then
        cp ../shared/reference/ref_cyclegan.py "$dir/"
    fi
    du -sh "$dir"
    ;;
run)
    nv=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
    export LD_LIBRARY_PATH=$nv/cu13/lib:$nv/cudnn/lib:${LD_LIBRARY_PATH:-}
    for f in "$dir"/*.xz "$dir"/backends-*/*.xz; do [[ -e $f ]] && xz -dkf "$f"; done
    chmod +x "$dir/cyclegan" "$dir/bench_device"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    for b in "$dir"/backends-*; do
        echo "== bench_device through $(basename "$b")"
        CYCLEGAN_BACKEND_PATH=$b "$dir/bench_device" cuda 256 512 1024 2048 \
            || echo "bench_device failed: $?"
    done
    # The CLI checks below use the first build packed (cuda).
    ln -sfn "$(ls -d "$dir"/backends-* | head -n 1 | xargs basename)" "$dir/backends"
    if [[ -f $dir/cyclegan ]]; then
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
                "$dir/cyclegan" stylize --device cuda --precision f32 --model models/monet.safetensors --overwrite examples/rocket.jpg \
                -o "$dir/rocket-cuda.png" || echo "stylize through the backend failed: $?"
        done
        echo "== the same on the CPU engine, and the largest 8-bit difference"
        "$dir/cyclegan" stylize --device cpu --precision f32 --model models/monet.safetensors --overwrite examples/rocket.jpg -o "$dir/rocket-cpu.png"
        python3 - "$dir/rocket-cuda.png" "$dir/rocket-cpu.png" <<'PY' || true
import sys
try:
    from PIL import Image
except ImportError:
    sys.exit("PIL missing: compare the two PNGs by hand")
a, b = (Image.open(p).convert("RGB").tobytes() for p in sys.argv[1:3])
print("max 8-bit difference cuda vs cpu:", max(abs(x - y) for x, y in zip(a, b)))
PY
        echo "== training through the backend: 300 iterations, 256 px, batch 1, seed networks"
        echo "   (PyTorch on an H200: 0.105 s/it fp32 batch 1, ../shared/models/README.md)"
        rm -rf "$dir/train" && mkdir -p "$dir/train/content" "$dir/train/style"
        for f in examples/*.jpg; do
            cp "$f" "$dir/train/content/" && cp "$f" "$dir/train/style/"
        done
        /usr/bin/time -f "%e s wall, %M KiB peak" env CYCLEGAN_BACKEND_PATH=$dir/backends \
            "$dir/cyclegan" train --device cuda --content "$dir/train/content" \
            --style "$dir/train/style" --out "$dir/train/run" --iterations 300 \
            --checkpoint-every 100 --sample-every 0 2>&1 | grep -v '^\s*$' | tail -n 6 \
            || echo "training through the backend failed"
        echo "== a truncated backend is refused, stylize still works"
        mkdir -p "$dir/bad" && head -c 1000000 "$dir/backends/libcyclegan_backend_cuda.so" \
            > "$dir/bad/libcyclegan_backend_cuda.so"
        CYCLEGAN_BACKEND_PATH=$dir/bad "$dir/cyclegan" backends | grep cuda || true
        CYCLEGAN_BACKEND_PATH=$dir/bad "$dir/cyclegan" stylize --model models/monet.safetensors --overwrite examples/rocket.jpg \
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
