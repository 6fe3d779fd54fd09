#!/usr/bin/env bash
# Short fuzz run for CI: builds the cargo-fuzz targets in fuzz/ and runs each for
# FUZZ_SECONDS (default 60) starting from the committed seeds in fuzz/seeds/<target>/.
# New inputs go to fuzz/corpus/<target>/ (ignored by git); a crash stops that target, leaves
# the input in fuzz/artifacts/<target>/ and makes the script fail at the end.
#
# Uses the nightly toolchain with AddressSanitizer when rustup has one; otherwise builds on
# stable without a sanitizer (`--sanitizer none`), which still finds panics, aborts, timeouts and
# runaway memory use, but not out-of-bounds accesses in unsafe code.
#
#   FUZZ_SECONDS=600 scripts/fuzz-smoke.sh          # the 10-minute runs
#   FUZZ_TARGETS="decode" scripts/fuzz-smoke.sh     # one target
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-"weights decode capi_image settings"}
# A crafted input may not make the library hold more than this (issue #19).
rss_mb=${FUZZ_RSS_MB:-1024}
cargo_fuzz_version=0.13.2

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  echo "== installing cargo-fuzz $cargo_fuzz_version"
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked --quiet
fi

if cargo +nightly --version >/dev/null 2>&1; then
  toolchain=(+nightly)
  sanitizer=address
else
  echo "fuzz-smoke: no nightly toolchain; building on stable without a sanitizer" >&2
  toolchain=()
  sanitizer=none
fi

echo "== cargo fuzz build (sanitizer: $sanitizer)"
cargo "${toolchain[@]}" fuzz build --sanitizer "$sanitizer"

failed=()
for t in $targets; do
  echo "== fuzz $t for ${seconds}s"
  mkdir -p "fuzz/corpus/$t"
  if ! cargo "${toolchain[@]}" fuzz run --sanitizer "$sanitizer" "$t" \
      "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -malloc_limit_mb="$rss_mb" -timeout=30 -print_final_stats=1; then
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-smoke: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz-smoke: all targets ran ${seconds}s without a crash"
