#!/bin/sh
# Builds the release library and installs what a C or C++ project needs to use it:
#   PREFIX/lib/libcyclegan.so (.dylib on macOS) and libcyclegan.a
#   PREFIX/include/cyclegan.h
#   PREFIX/lib/pkgconfig/cyclegan.pc
# Usage: scripts/install-lib.sh PREFIX
# Environment: CYCLEGAN_FEATURES (e.g. "cuda") is passed to cargo as --features;
# CYCLEGAN_BACKENDS="cuda" also builds the CUDA backend library (needs a CUDA toolkit) and
# installs it as PREFIX/lib/cyclegan/libcyclegan_backend_cuda.so (docs/gpu.md);
# CARGO_TARGET_DIR is honoured.
set -eu
if [ $# -ne 1 ]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
prefix=$(cd "$1" && pwd)
cd "$root"

if [ -n "${CYCLEGAN_FEATURES:-}" ]; then
    cargo build --release --lib --features "$CYCLEGAN_FEATURES"
else
    cargo build --release --lib
fi
target=${CARGO_TARGET_DIR:-$root/target}/release
case "$(uname -s)" in
    Darwin) shared=libcyclegan.dylib ;;
    *) shared=libcyclegan.so ;;
esac
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "$target/$shared" "$prefix/lib/$shared"
install -m 0644 "$target/libcyclegan.a" "$prefix/lib/libcyclegan.a"
install -m 0644 include/cyclegan.h "$prefix/include/cyclegan.h"
for b in ${CYCLEGAN_BACKENDS:-}; do
    cargo build --release -p "cyclegan-backend-$b" --features "$b"
    install -d "$prefix/lib/cyclegan"
    install -m 0755 "$target/libcyclegan_backend_$b.so" "$prefix/lib/cyclegan/"
done
# Libs.private lists what the static library needs from the system (Rust's std).
cat > "$prefix/lib/pkgconfig/cyclegan.pc" <<PC
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: cyclegan
Description: CycleGAN style transfer (Monet and friends)
Version: $version
Libs: -L\${libdir} -lcyclegan
Libs.private: -lm -ldl -lpthread
Cflags: -I\${includedir}
PC
echo "installed libcyclegan $version into $prefix"
echo "use: PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs cyclegan"
