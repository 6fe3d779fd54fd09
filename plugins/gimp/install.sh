#!/usr/bin/env bash
# Builds libcyclegan (cargo build --release) and the CycleGAN GIMP plug-in, and installs
# both into the per-user GIMP folder:
#
#   $GIMP2_DIRECTORY (default ~/.config/GIMP/2.10)/plug-ins/cyclegan/{cyclegan,libcyclegan.so.0}
#   $GIMP3_DIRECTORY (default ~/.config/GIMP/3.0)/plug-ins/cyclegan/{cyclegan,libcyclegan.so.0}
# (the library under its SONAME, the name the plug-in asks the loader for)
#
# Usage: plugins/gimp/install.sh [--gimp2|--gimp3] [--lib FILE]
#   --gimp2, --gimp3  build for that GIMP only (default: every GIMP whose development files
#                     are installed: pkg-config gimp-2.0 / gimp-3.0)
#   --lib FILE        use this libcyclegan.so instead of running cargo build --release
# Needs a C compiler, pkg-config and libgimp2.0-dev (Debian/Ubuntu) or libgimp-3.0-dev.
# Environment: CC (default cc), CARGO_TARGET_DIR, GIMP2_DIRECTORY, GIMP3_DIRECTORY.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
gens=()
lib=""

while [ $# -gt 0 ]; do
  case "$1" in
    --gimp2) gens+=(2) ;;
    --gimp3) gens+=(3) ;;
    --lib) lib=${2:?--lib needs a file}; shift ;;
    --lib=*) lib=${1#--lib=} ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ ${#gens[@]} -eq 0 ]; then
  pkg-config --exists gimp-2.0 2>/dev/null && gens+=(2)
  pkg-config --exists gimp-3.0 2>/dev/null && gens+=(3)
  if [ ${#gens[@]} -eq 0 ]; then
    echo "install.sh: no GIMP development files found (pkg-config gimp-2.0 / gimp-3.0);" \
         "install libgimp2.0-dev or libgimp-3.0-dev" >&2
    exit 1
  fi
fi

if [ -z "$lib" ]; then
  (cd "$root" && cargo build --release --lib)
  target=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
           sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  lib="$target/release/libcyclegan.so"
fi
[ -f "$lib" ] || { echo "install.sh: $lib does not exist" >&2; exit 1; }

cc=${CC:-cc}
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
# Link against a copy named libcyclegan.so. The plug-in then asks for the library's SONAME
# (libcyclegan.so.0), or for "libcyclegan.so" if it has none, found beside it through the
# $ORIGIN rpath whatever the library's path here; the copy is installed under that name.
# Debug information (line tables) is dropped: it doubles the size.
if command -v strip >/dev/null; then
  strip --strip-debug -o "$build/libcyclegan.so" "$lib"
else
  cp "$lib" "$build/libcyclegan.so"
fi
soname=""
if command -v readelf >/dev/null; then
  soname=$(readelf -d "$build/libcyclegan.so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
elif command -v objdump >/dev/null; then
  soname=$(objdump -p "$build/libcyclegan.so" | awk '$1 == "SONAME" { print $2 }')
fi
libname=${soname:-libcyclegan.so}

for gen in "${gens[@]}"; do
  if [ "$gen" = 2 ]; then
    pkgs="gimpui-2.0 gimp-2.0"
    extra="-Wno-deprecated-declarations" # libgimp 2 uses GTK 2 API marked deprecated
    dest=${GIMP2_DIRECTORY:-$HOME/.config/GIMP/2.10}
  else
    pkgs="gimpui-3.0 gimp-3.0"
    extra=""
    dest=${GIMP3_DIRECTORY:-$HOME/.config/GIMP/3.0}
  fi
  # -isystem: warnings inside the GIMP headers (GIMP 3.0.4 has some) are not ours.
  cflags=$(pkg-config --cflags $pkgs | sed 's/\(^\| \)-I/\1-isystem /g')
  libs=$(pkg-config --libs $pkgs)
  $cc -std=gnu11 -O2 -Wall -Wextra -Werror $extra -I"$root/include" -I"$here" $cflags \
      -o "$build/cyclegan-gimp$gen" \
      "$here/cg_gimp_common.c" "$here/gimp$gen/cyclegan-gimp$gen.c" \
      -L"$build" -lcyclegan $libs -lm -Wl,-rpath,'$ORIGIN'

  dir="$dest/plug-ins/cyclegan"
  mkdir -p "$dir"
  # Copy then rename, so a running GIMP never sees half a file.
  install -m 0755 "$build/cyclegan-gimp$gen" "$dir/.cyclegan.new"
  install -m 0644 "$build/libcyclegan.so" "$dir/.libcyclegan.new"
  mv -f "$dir/.libcyclegan.new" "$dir/$libname"
  mv -f "$dir/.cyclegan.new" "$dir/cyclegan"
  # An earlier install's copy under another name is no longer used.
  if [ "$libname" != libcyclegan.so ]; then rm -f "$dir/libcyclegan.so"; fi
  echo "installed the GIMP $gen plug-in: $dir/cyclegan (restart GIMP; Filters > Artistic)"
done
