#!/bin/sh
# Fails when the committed include/cyclegan.h differs from what cbindgen generates from
# src/capi (parsed on its own, so no other public item of the crate leaks into the header), so the header can never drift from the library. CI runs it as is; after changing
# src/capi, run it with --update and commit the header.
set -eu
cd "$(dirname "$0")/.."

want=0.29.4
have=$(cbindgen --version 2>/dev/null | sed -n 's/^cbindgen //p') || true
if [ "$have" != "$want" ]; then
    echo "check-header: need cbindgen $want (found ${have:-none}):" >&2
    echo "  cargo install cbindgen --version $want --locked" >&2
    exit 2
fi

if [ "${1:-}" = "--update" ]; then
    cbindgen --quiet --config cbindgen.toml --output include/cyclegan.h src/capi/mod.rs
    echo "check-header: include/cyclegan.h regenerated"
    exit 0
fi

fresh=$(mktemp)
trap 'rm -f "$fresh"' EXIT
cbindgen --quiet --config cbindgen.toml --output "$fresh" src/capi/mod.rs
if ! diff -u include/cyclegan.h "$fresh"; then
    echo "check-header: include/cyclegan.h is stale; run scripts/check-header.sh --update" >&2
    exit 1
fi
echo "check-header: include/cyclegan.h is up to date"
