#!/bin/sh
# Builds the `cyclegan` ImageMagick 6 filter module (convert/mogrify -process) and installs
# it with its libtool file and a copy of libcyclegan. Needs a C compiler, pkg-config and the
# MagickCore 6 Q16 headers (Debian 12: apt-get install imagemagick libmagickcore-6.q16-dev),
# and a built libcyclegan (cargo build --release).
#
# Default: a folder of your own, which ImageMagick searches when MAGICK_CODER_FILTER_PATH
# names it. --system: ImageMagick's own filter folder (needs root; no variable needed).
set -eu

. "$(dirname "$0")/../common/install-common.sh"
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
lib="$root/target/release/libcyclegan.so"
dest="${XDG_DATA_HOME:-$HOME/.local/share}/cyclegan/imagemagick"
system=no
in_place=no
pc=MagickCore-6.Q16

usage() {
  cat <<EOF
usage: $0 [--lib PATH/libcyclegan.so] [--dest DIR | --system] [--link-in-place]
  --lib FILE        the library to link (default: $lib)
  --dest DIR        where to install (default: $dest)
  --system          install into ImageMagick's filter folder (needs root)
  --link-in-place   do not copy the library; link it where it is (rpath to its folder),
                    for development and tests
  CC and CFLAGS are honoured (default CFLAGS: -O2 -Wall -Wextra).
EOF
}

while [ $# -gt 0 ]; do
  case $1 in
    --lib) lib=$2; shift 2 ;;
    --dest) dest=$2; shift 2 ;;
    --system) system=yes; shift ;;
    --link-in-place) in_place=yes; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

if ! pkg-config --exists $pc; then
  echo "install.sh: the MagickCore 6 Q16 headers are missing (Debian: apt-get install imagemagick libmagickcore-6.q16-dev)" >&2
  exit 1
fi
if [ "$system" = yes ]; then
  dest="$(pkg-config --variable=libdir $pc)/ImageMagick-$(pkg-config --modversion $pc)/modules-Q16/filters"
  if [ ! -d "$dest" ]; then
    echo "install.sh: ImageMagick's filter folder $dest does not exist" >&2
    exit 1
  fi
fi

mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
cg_place_library "$lib" "$dest" "$in_place"

# shellcheck disable=SC2086 # CFLAGS and pkg-config output are word lists
${CC:-cc} -std=gnu11 ${CFLAGS:--O2 -Wall -Wextra} -shared -fPIC \
  -I"$root/include" -I"$cg_common_dir" \
  -o "$dest/cyclegan.so.tmp" "$here/cyclegan.c" "$cg_common_dir/cg_plugin.c" \
  $(pkg-config --cflags --libs $pc) \
  -L"$link_dir" -l:"$link_name" -Wl,-rpath,"$rpath" -ldl -lpthread
mv -f "$dest/cyclegan.so.tmp" "$dest/cyclegan.so"

# ImageMagick's module loader (libltdl) opens the libtool file, not the .so.
cat > "$dest/cyclegan.la.tmp" <<EOF
# cyclegan.la - a libtool library file, read by ImageMagick's module loader
dlname='cyclegan.so'
library_names='cyclegan.so'
old_library=''
dependency_libs=''
installed=yes
shouldnotlink=yes
libdir='$dest'
EOF
mv -f "$dest/cyclegan.la.tmp" "$dest/cyclegan.la"

echo "installed $dest/cyclegan.so"
if [ "$system" = yes ]; then
  echo "try: convert in.jpg -process \"cyclegan style=monet strength=0.8\" out.jpg"
else
  echo "try: MAGICK_CODER_FILTER_PATH=$dest convert in.jpg -process \"cyclegan style=monet strength=0.8\" out.jpg"
fi
