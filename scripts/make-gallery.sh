#!/usr/bin/env bash
# Regenerates every picture the README shows, from the shipped Monet style and the public-
# domain / CC0 photos in examples/ (examples/SOURCES.md), through the release CLI at its
# defaults unless a picture is about a setting:
#
#   docs/pictures/rocket-monet.jpg        examples/rocket.jpg at the default settings
#   docs/pictures/gallery-NAME.jpg        photo | Monet at the defaults, side by side
#   docs/pictures/grid-scale-strength.jpg what --scale (columns: working long side 256, 384,
#                                         512 px and native) and --strength (rows) do, on a
#                                         crop at the output's real pixel size
#
# Usage: scripts/make-gallery.sh [--cli PATH]   (default: cargo build --release, target/release/cyclegan)
# Needs ImageMagick 6 (convert, montage; Debian: imagemagick) and the DejaVu fonts
# (fonts-dejavu-core) for the labels. Takes about a minute on 2 cores.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cli=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cli) cli=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make-gallery.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
for tool in convert montage identify; do
  command -v "$tool" >/dev/null || { echo "make-gallery.sh: $tool not found (Debian: apt-get install imagemagick)" >&2; exit 1; }
done
cd "$root"
if [ -z "$cli" ]; then
  cargo build --release --bin cyclegan
  target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  cli="$target/release/cyclegan"
fi
out=docs/pictures
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
font=DejaVu-Sans
convert -list font 2>/dev/null | grep -q "Font: $font\$" || font=""
label_font=(${font:+-font "$font"})
# JPEG for the web: 4:2:0, no metadata.
jpeg=(-strip -sampling-factor 4:2:0 -interlace Plane)

stylize() { "$cli" stylize --quiet --overwrite --jpeg-quality 95 "$@"; }

# 1. The README's first picture: the example photo at the default settings.
stylize examples/rocket.jpg -o "$tmp/rocket.png"
convert "$tmp/rocket.png" "${jpeg[@]}" -quality 85 "$out/rocket-monet.jpg"

# 2. A small gallery: each CC0 / public-domain example, photo beside painting, 300 px high.
for name in coffee chelsea astronaut; do
  stylize "examples/$name.jpg" -o "$tmp/$name.png"
  convert "examples/$name.jpg" "$tmp/$name.png" -resize x300 -bordercolor white -border 4 \
    +append -shave 4x0 "${jpeg[@]}" -quality 82 "$out/gallery-$name.jpg"
done

# 3. --scale x --strength on the rocket (640 px wide): columns are working long sides of
# 256, 384 and 512 px and native (scale = side / 640), rows strengths 1, 0.75 and 0.5; each
# cell is the same 240x200 crop of the full-size output, so brush strokes show at their size.
width=$(identify -format %w examples/rocket.jpg)
height=$(identify -format %h examples/rocket.jpg)
long=$(( width > height ? width : height ))
crop=240x200+200+220
cells=()
for strength in 1 0.75 0.5; do
  for side in 256 384 512 native; do
    if [ "$side" = native ]; then scale=1; label="native ($long px)"; else
      scale=$(awk -v s="$side" -v l="$long" 'BEGIN { printf "%.4f", s / l }')
      label="$side px"
    fi
    f="$tmp/cell-$strength-$side.png"
    stylize examples/rocket.jpg -o "$tmp/full.png" --scale "$scale" --strength "$strength"
    convert "$tmp/full.png" -crop "$crop" +repage "$f"
    cells+=(-label "$label, strength $strength" "$f")
  done
done
montage "${label_font[@]}" -pointsize 13 "${cells[@]}" -tile 4x -geometry +4+4 \
  "$tmp/grid.png"
convert "$tmp/grid.png" "${jpeg[@]}" -quality 82 "$out/grid-scale-strength.jpg"

ls -l "$out"/*.jpg
du -ch "$out"/*.jpg | tail -n 1
