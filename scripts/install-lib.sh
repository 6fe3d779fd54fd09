#!/bin/sh
# Builds the release library and installs what a C or C++ project needs to use it:
#   PREFIX/lib/libcyclegan.so.MAJOR.MINOR.PATCH  the shared library, SONAME libcyclegan.so.MAJOR,
#   PREFIX/lib/libcyclegan.so.MAJOR -> ...        with the usual links (.dylib on macOS)
#   PREFIX/lib/libcyclegan.so -> ...
#   PREFIX/lib/libcyclegan.a                      the static library
#   PREFIX/include/cyclegan.h, cyclegan.hpp       the C header and the C++17 wrapper
#   PREFIX/lib/pkgconfig/cyclegan.pc              pkg-config, shared: -lcyclegan
#   PREFIX/lib/pkgconfig/cyclegan-static.pc       pkg-config, static: .../libcyclegan.a + system libs
#   PREFIX/lib/cmake/cyclegan/                    find_package(cyclegan CONFIG): cyclegan::cyclegan
# Both libraries are stripped: the release build's line tables would make them 98 MB and
# 246 MB. With CYCLEGAN_SPLIT_DEBUG=1 the shared library's symbols and debug info are kept
# in PREFIX/lib/.debug/libcyclegan.so.X.Y.Z.debug (linked with --add-gnu-debuglink), where
# gdb and valgrind look for them.
#
# Usage: scripts/install-lib.sh [--from DIR] PREFIX
#   --from DIR  install the libcyclegan.so and libcyclegan.a already built in DIR instead of
#               running cargo build --release (the tests use this)
# Environment: CYCLEGAN_FEATURES (e.g. "cuda") is passed to cargo as --features;
# CYCLEGAN_BACKENDS="cuda" also builds the CUDA backend library (needs a CUDA toolkit) and
# installs it as PREFIX/lib/cyclegan/libcyclegan_backend_cuda.so (docs/gpu.md);
# CARGO_TARGET_DIR is honoured; STRIP and OBJCOPY name the tools (default strip, objcopy).
set -eu
from=""
while [ $# -gt 1 ]; do
    case "$1" in
        --from) from=$2; shift 2 ;;
        --from=*) from=${1#--from=}; shift ;;
        *) break ;;
    esac
done
if [ $# -ne 1 ]; then
    echo "usage: $0 [--from DIR] PREFIX" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
prefix=$(cd "$1" && pwd)
cd "$root"

if [ -n "$from" ]; then
    target=$(cd "$from" && pwd)
elif [ -n "${CYCLEGAN_FEATURES:-}" ]; then
    cargo build --release --lib --features "$CYCLEGAN_FEATURES"
    target=${CARGO_TARGET_DIR:-$root/target}/release
else
    cargo build --release --lib
    target=${CARGO_TARGET_DIR:-$root/target}/release
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
major=${version%%.*}
case "$(uname -s)" in
    Darwin)
        built=libcyclegan.dylib
        real=libcyclegan.$version.dylib
        soname=libcyclegan.$major.dylib
        link=libcyclegan.dylib
        ;;
    *)
        built=libcyclegan.so
        real=libcyclegan.so.$version
        soname=libcyclegan.so.$major
        link=libcyclegan.so
        ;;
esac
for f in "$built" libcyclegan.a; do
    [ -f "$target/$f" ] || { echo "install-lib.sh: $target/$f is missing" >&2; exit 1; }
done
strip=${STRIP:-strip}
objcopy=${OBJCOPY:-objcopy}
command -v "$strip" >/dev/null || { echo "install-lib.sh: $strip not found (Debian: binutils)" >&2; exit 1; }

install -d "$prefix/lib/pkgconfig" "$prefix/lib/cmake/cyclegan" "$prefix/include"
tmp="$prefix/lib/.$real.new"
cp "$target/$built" "$tmp"
chmod 0755 "$tmp"
if [ "$(uname -s)" = Darwin ]; then
    "$strip" -x "$tmp"
elif [ "${CYCLEGAN_SPLIT_DEBUG:-0}" = 1 ]; then
    install -d "$prefix/lib/.debug"
    "$objcopy" --only-keep-debug "$tmp" "$prefix/lib/.debug/$real.debug"
    chmod 0644 "$prefix/lib/.debug/$real.debug"
    "$strip" --strip-unneeded "$tmp"
    (cd "$prefix/lib/.debug" && "$objcopy" --add-gnu-debuglink="$real.debug" "$tmp")
else
    "$strip" --strip-unneeded "$tmp"
fi
mv -f "$tmp" "$prefix/lib/$real"
ln -sf "$real" "$prefix/lib/$soname"
ln -sf "$soname" "$prefix/lib/$link"

# Only debug sections go: the archive's symbol tables are what a static link needs.
cp "$target/libcyclegan.a" "$prefix/lib/.libcyclegan.a.new"
if [ "$(uname -s)" = Darwin ]; then
    "$strip" -S "$prefix/lib/.libcyclegan.a.new"
else
    "$strip" --strip-debug "$prefix/lib/.libcyclegan.a.new"
fi
chmod 0644 "$prefix/lib/.libcyclegan.a.new"
mv -f "$prefix/lib/.libcyclegan.a.new" "$prefix/lib/libcyclegan.a"

install -m 0644 include/cyclegan.h include/cyclegan.hpp "$prefix/include/"

# What Rust's standard library needs from the system when libcyclegan.a is linked into a
# program (rustc --print native-static-libs on linux-gnu; macOS needs frameworks instead).
case "$(uname -s)" in
    Darwin) system_libs="-framework CoreFoundation -framework Security -liconv -lc -lm" ;;
    *) system_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc" ;;
esac

for b in ${CYCLEGAN_BACKENDS:-}; do
    cargo build --release -p "cyclegan-backend-$b" --features "$b"
    install -d "$prefix/lib/cyclegan"
    install -m 0755 "$target/libcyclegan_backend_$b.so" "$prefix/lib/cyclegan/"
    "$strip" --strip-unneeded "$prefix/lib/cyclegan/libcyclegan_backend_$b.so"
done
cat > "$prefix/lib/pkgconfig/cyclegan.pc" <<PC
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: cyclegan
Description: CycleGAN style transfer (Monet and friends), shared library
Version: $version
Libs: -L\${libdir} -lcyclegan
Libs.private: $system_libs
Cflags: -I\${includedir}
PC
# A separate package for the static link: "pkg-config --static cyclegan" cannot stop the
# linker from preferring libcyclegan.so over libcyclegan.a, so this one names the archive.
cat > "$prefix/lib/pkgconfig/cyclegan-static.pc" <<PC
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: cyclegan-static
Description: CycleGAN style transfer (Monet and friends), static library
Version: $version
Libs: \${libdir}/libcyclegan.a $system_libs
Cflags: -I\${includedir}
PC

sed -e "s/@VERSION@/$version/g" -e "s/@REAL@/$real/g" -e "s/@SONAME@/$soname/g" \
    cmake/cycleganConfig.cmake.in > "$prefix/lib/cmake/cyclegan/cycleganConfig.cmake"
sed -e "s/@VERSION@/$version/g" cmake/cycleganConfigVersion.cmake.in \
    > "$prefix/lib/cmake/cyclegan/cycleganConfigVersion.cmake"

echo "installed libcyclegan $version into $prefix"
echo "  pkg-config: PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs cyclegan (or cyclegan-static)"
echo "  CMake:      cmake -DCMAKE_PREFIX_PATH=$prefix ...; find_package(cyclegan CONFIG REQUIRED)"
case "$prefix" in
    /usr|/usr/local) ;;
    *) echo "  run time:   programs linked to the shared library need -Wl,-rpath,$prefix/lib or LD_LIBRARY_PATH=$prefix/lib" ;;
esac
