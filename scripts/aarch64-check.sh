#!/usr/bin/env bash
# Issue #18: the CPU engine on ARM. Lints the crate as compiled for aarch64-unknown-linux-gnu
# (clippy, warnings are errors), cross-compiles it and runs, under qemu-aarch64 user-mode
# emulation, the tests that need only what is committed: the parity tests on the small
# fixtures in tests/fixtures (every layout, against PyTorch's outputs) and the CPU engine's
# unit tests. On aarch64 the engine takes its portable path (the x86 builds in
# src/engine/cpu/ are cfg'd out) and gemm's NEON kernels.
#
# Left out, because emulation makes them take far too long or they need files that are not
# in the repository: the shipped Monet style on a 1024x768 image (tiled_matches_whole_image)
# and the reference tests on ../shared (shipped_monet_is_the_reference_generator,
# reference_*). Emulation says nothing about speed: docs/performance.md, "ARM (aarch64)".
#
# Installs what it lacks (Debian: gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user;
# rustup's aarch64 standard library). Builds into target/aarch64-unknown-linux-gnu/, apart
# from the host build. Usage: scripts/aarch64-check.sh [--no-run]  (--no-run: lint and build
# only).
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu
run=1
[ "${1:-}" = "--no-run" ] && run=0

need_apt=()
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu)
[ -e "$sysroot/lib/ld-linux-aarch64.so.1" ] && [ -e "$sysroot/include/stdio.h" ] ||
  need_apt+=(libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || need_apt+=(qemu-user)
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

# Only for this target: the host build keeps its settings (no .cargo/config.toml).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $sysroot"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc

cargo_test=(cargo test --release --target "$target")
parity_skip=(--skip shipped_monet_is_the_reference_generator --skip reference_
  --skip tiled_matches_whole_image)

# The code compiled for aarch64 differs (x86 kernels cfg'd out, c_char unsigned): lint it.
# The library only: it holds every cfg'd path, and linting the tests, benches and examples
# too would check-build their dependencies once more for the target.
echo "== aarch64: clippy (library)"
cargo clippy --target "$target" --lib -- -D warnings
echo "== aarch64: build (release)"
"${cargo_test[@]}" --lib --test parity --no-run
[ "$run" = 1 ] || exit 0

echo "== aarch64: CPU engine unit tests under qemu-aarch64"
"${cargo_test[@]}" --lib -- engine::cpu::
echo "== aarch64: parity tests (small fixtures) under qemu-aarch64"
"${cargo_test[@]}" --test parity -- "${parity_skip[@]}"
