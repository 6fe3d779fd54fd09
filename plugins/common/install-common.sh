# Sourced (not run) by the GEGL and ImageMagick install.sh scripts: the steps they share.
# After sourcing, `cg_common_dir` is this folder (cg_plugin.c, cg_plugin.h).
#
# cg_place_library LIB DEST IN_PLACE
#   Checks that LIB (a built libcyclegan.so) exists, creates DEST, and says how to link it:
#   IN_PLACE=yes links LIB where it is (rpath to its folder, for development and tests);
#   otherwise LIB is copied into DEST as libcyclegan.so.0 (the SONAME; also not *.so, which
#   GEGL would try to load as an operation) and found through the rpath $ORIGIN.
#   Sets link_dir, link_name and rpath for the compiler line:
#     -L"$link_dir" -l:"$link_name" -Wl,-rpath,"$rpath"
# shellcheck shell=sh disable=SC2034 # the variables set here are used by the caller

cg_common_dir=$(cd "$(dirname "$0")/../common" && pwd)

cg_place_library() {
  if [ ! -f "$1" ]; then
    echo "install.sh: $1 not found; build it first: cargo build --release" >&2
    exit 1
  fi
  mkdir -p "$2"
  if [ "$3" = yes ]; then
    link_dir=$(cd "$(dirname "$1")" && pwd)
    link_name=$(basename "$1")
    rpath=$link_dir
  else
    cp "$1" "$2/libcyclegan.so.0.tmp"
    mv -f "$2/libcyclegan.so.0.tmp" "$2/libcyclegan.so.0"
    link_dir=$(cd "$2" && pwd)
    link_name=libcyclegan.so.0
    rpath='$ORIGIN'
  fi
}
