#!/bin/sh
# Builds the cyclegan:stylize GEGL operation and installs it where GEGL (the `gegl` command,
# GIMP 3) finds user operations: $XDG_DATA_HOME/gegl-0.4/plug-ins (default
# ~/.local/share/gegl-0.4/plug-ins). Needs a C compiler, pkg-config and the GEGL headers
# (Debian: apt-get install gegl libgegl-dev libbabl-dev), and a built libcyclegan
# (cargo build --release).
#
# The library is copied beside the operation as libcyclegan.so.0 and found through the
# rpath $ORIGIN. (Not as libcyclegan.so: GEGL tries to load every *.so under plug-ins/ as an
# operation module and would complain about it at every start.)
set -eu

. "$(dirname "$0")/../common/install-common.sh"
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
lib="$root/target/release/libcyclegan.so"
dest="${XDG_DATA_HOME:-$HOME/.local/share}/gegl-0.4/plug-ins"
in_place=no

usage() {
  cat <<EOF
usage: $0 [--lib PATH/libcyclegan.so] [--dest DIR] [--link-in-place]
  --lib FILE        the library to link (default: $lib)
  --dest DIR        where to install (default: $dest)
  --link-in-place   do not copy the library; link it where it is (rpath to its folder),
                    for development and tests
  CC and CFLAGS are honoured (default CFLAGS: -O2 -Wall -Wextra).
EOF
}

while [ $# -gt 0 ]; do
  case $1 in
    --lib) lib=$2; shift 2 ;;
    --dest) dest=$2; shift 2 ;;
    --link-in-place) in_place=yes; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

if ! pkg-config --exists gegl-0.4; then
  echo "install.sh: the GEGL headers are missing (Debian: apt-get install gegl libgegl-dev libbabl-dev)" >&2
  exit 1
fi

cg_place_library "$lib" "$dest" "$in_place"

# shellcheck disable=SC2086 # CFLAGS and pkg-config output are word lists
${CC:-cc} -std=gnu11 ${CFLAGS:--O2 -Wall -Wextra} -shared -fPIC \
  -I"$here" -I"$root/include" -I"$cg_common_dir" \
  -o "$dest/cyclegan-stylize.so.tmp" "$here/cyclegan-stylize.c" "$cg_common_dir/cg_plugin.c" \
  $(pkg-config --cflags --libs gegl-0.4) \
  -L"$link_dir" -l:"$link_name" -Wl,-rpath,"$rpath" -lpthread
mv -f "$dest/cyclegan-stylize.so.tmp" "$dest/cyclegan-stylize.so"

echo "installed $dest/cyclegan-stylize.so"
default_dest="${XDG_DATA_HOME:-$HOME/.local/share}/gegl-0.4/plug-ins"
if [ "$dest" = "$default_dest" ]; then
  echo "try: gegl in.jpg -o out.png -- cyclegan:stylize style=monet strength=0.8"
else
  echo "try: GEGL_PATH=$dest:$(pkg-config --variable=pluginsdir gegl-0.4) gegl in.jpg -o out.png -- cyclegan:stylize style=monet strength=0.8"
fi
