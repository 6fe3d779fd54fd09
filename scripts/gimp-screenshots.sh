#!/usr/bin/env bash
# Retakes the GIMP plug-in screenshots in docs/gimp/ under a virtual X server (Xvfb):
#
#   docs/gimp/gimp2-dialog.png    the GIMP 2.10 dialog on examples/rocket.jpg, preview computed
#   docs/gimp/gimp2-help.png      what its Help button shows
#   docs/gimp/gimp2-progress.png  the progress window with its Cancel button, after OK
#   docs/gimp/gimp2-result.jpg    the image GIMP saved afterwards
#   docs/gimp/gimp3-dialog.png    the GIMP 3 dialog, with --gimp3 (run as root: it uses the
#                                 chroot of plugins/gimp/test-gimp3.sh, built if missing)
#
# The plug-in is built with plugins/gimp/install.sh into a scratch GIMP folder; nothing in
# your home changes. Usage: scripts/gimp-screenshots.sh [--gimp3] [--lib FILE]
# Needs gimp, libgimp2.0-dev, xvfb, xauth, xdotool and imagemagick (Debian packages).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
lib=""
gimp3=no
while [ $# -gt 0 ]; do
  case "$1" in
    --gimp3) gimp3=yes; shift ;;
    --lib) lib=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gimp-screenshots.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
for tool in Xvfb xdotool import convert gimp-console-2.10; do
  command -v "$tool" >/dev/null || {
    echo "gimp-screenshots.sh: $tool not found (Debian: apt-get install gimp libgimp2.0-dev xvfb xauth xdotool imagemagick)" >&2
    exit 1
  }
done
cd "$root"
if [ -z "$lib" ]; then
  cargo build --release --lib
  target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  lib="$target/release/libcyclegan.so"
fi
out=docs/gimp
mkdir -p "$out"
tmp=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

display=:77
Xvfb "$display" -screen 0 1100x760x24 -nolisten tcp >/dev/null 2>&1 &
pids+=($!)
export DISPLAY=$display
for _ in $(seq 50); do xdotool getdisplaygeometry >/dev/null 2>&1 && break; sleep 0.1; done

# Waits up to $2 seconds for a window whose name matches $1; prints its id.
wait_window() {
  local id
  for _ in $(seq $(( $2 * 5 ))); do
    id=$(xdotool search --onlyvisible --name "$1" 2>/dev/null | tail -n 1 || true)
    if [ -n "$id" ]; then echo "$id"; return 0; fi
    sleep 0.2
  done
  echo "gimp-screenshots.sh: no window named '$1' after $2 s" >&2
  return 1
}

# Waits (up to $2 s) until the processes matching $1 have used no CPU for 2 s in a row: the
# dialog's preview is painted on a worker thread, and only then is there something to show.
wait_idle() {
  local pids total last=-1 still=0
  for _ in $(seq "$2"); do
    pids=$(pgrep -f "$1" || true)
    [ -n "$pids" ] || return 0
    total=0
    for p in $pids; do
      total=$(( total + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0) ))
    done
    if [ $(( total - last )) -le 3 ]; then still=$(( still + 1 )); else still=0; fi
    [ "$still" -ge 2 ] && return 0
    last=$total
    sleep 1
  done
}

# A visible window other than $1 (up to $2 s); prints its id.
other_window() {
  local id
  for _ in $(seq $(( $2 * 10 ))); do
    for id in $(xdotool search --onlyvisible --name . 2>/dev/null || true); do
      [ "$id" != "$1" ] && { echo "$id"; return 0; }
    done
    sleep 0.1
  done
  return 1
}

# --------------------------------------------------------------------- GIMP 2.10
home="$tmp/gimp2"
mkdir -p "$home"/{brushes,dynamics,fonts,gradients,palettes,patterns,tool-presets}
GIMP2_DIRECTORY="$home" plugins/gimp/install.sh --gimp2 --lib "$lib" >/dev/null
cp examples/rocket.jpg "$tmp/rocket.jpg"
GIMP2_DIRECTORY="$home" gimp-console-2.10 -i -d -f \
  --batch-interpreter plug-in-script-fu-eval \
  -b "(let* ((img (car (gimp-file-load RUN-NONINTERACTIVE \"$tmp/rocket.jpg\" \"$tmp/rocket.jpg\")))
             (d (car (gimp-image-get-active-drawable img))))
        (plug-in-cyclegan RUN-INTERACTIVE img d \"monet\" 1.0 0.0)
        (gimp-file-save RUN-NONINTERACTIVE img d \"$tmp/result.png\" \"$tmp/result.png\"))" \
  -b '(gimp-quit 0)' >"$tmp/gimp2.log" 2>&1 &
gimp_pid=$!
pids+=($gimp_pid)

dialog=$(wait_window "Style Transfer" 60)
sleep 1
wait_idle "plug-ins/cyclegan/cyclegan" 180
import -window "$dialog" "$out/gimp2-dialog.png"
# Help (F1, as the Help button): the plug-in's own text.
xdotool key --window "$dialog" F1
if help=$(other_window "$dialog" 10); then
  sleep 1
  import -window "$help" "$out/gimp2-help.png"
  xdotool key --window "$help" Return
  for _ in $(seq 50); do xdotool search --onlyvisible --name "CycleGAN help" >/dev/null 2>&1 || break; sleep 0.1; done
else
  echo "gimp-screenshots.sh: Help opened no window" >&2
  exit 1
fi
xdotool key --window "$dialog" Return
if progress=$(other_window "$dialog" 20); then
  sleep 1
  import -window "$progress" "$out/gimp2-progress.png" || true
else
  echo "gimp-screenshots.sh: no progress window appeared" >&2
fi
for _ in $(seq 300); do kill -0 "$gimp_pid" 2>/dev/null || break; sleep 0.2; done
if [ -f "$tmp/result.png" ]; then
  convert "$tmp/result.png" -strip -quality 85 "$out/gimp2-result.jpg"
else
  echo "gimp-screenshots.sh: GIMP saved no result; its log:" >&2
  cat "$tmp/gimp2.log" >&2
  exit 1
fi

# ----------------------------------------------------------------------- GIMP 3
if [ "$gimp3" = yes ]; then
  groot=$(plugins/gimp/test-gimp3.sh --root-only | tail -n 1)
  mountpoint -q "$groot/proc" || { mount -t proc proc "$groot/proc"; trap 'umount "$groot/proc"; cleanup' EXIT; }
  g="/tmp/cyclegan-shots-$$"
  mkdir -p "$groot$g/src/plugins" "$groot$g/home"
  cp -r plugins/gimp "$groot$g/src/plugins/"
  cp -r include "$groot$g/src/"
  cp "$lib" "$groot$g/libcyclegan.so"
  cp examples/rocket.jpg "$groot$g/rocket.jpg"
  chroot "$groot" env -i PATH=/usr/bin:/bin HOME=/tmp GIMP3_DIRECTORY="$g/home" \
    bash "$g/src/plugins/gimp/install.sh" --gimp3 --lib "$g/libcyclegan.so" >/dev/null
  # The X socket must be visible inside the root.
  mkdir -p "$groot/tmp/.X11-unix"
  mount --bind /tmp/.X11-unix "$groot/tmp/.X11-unix"
  chroot "$groot" env -i PATH=/usr/bin:/bin HOME=/tmp LANG=C.UTF-8 DISPLAY="$display" \
    GIMP3_DIRECTORY="$g/home" gimp-console-3.0 -i -f --quit \
    --batch-interpreter=plug-in-script-fu-eval \
    -b "(let* ((img (car (gimp-file-load RUN-NONINTERACTIVE \"$g/rocket.jpg\")))
               (layers (car (gimp-image-get-layers img))))
          (plug-in-cyclegan #:run-mode RUN-INTERACTIVE #:image img #:drawables layers))" \
    >"$tmp/gimp3.log" 2>&1 &
  gimp3_pid=$!
  pids+=($gimp3_pid)
  if dialog=$(wait_window "Style Transfer" 90); then
    sleep 1
    wait_idle "plug-ins/cyclegan/cyclegan" 180
    import -window "$dialog" "$out/gimp3-dialog.png"
    xdotool key --window "$dialog" Escape || true
  else
    cat "$tmp/gimp3.log" >&2
  fi
  for _ in $(seq 100); do kill -0 "$gimp3_pid" 2>/dev/null || break; sleep 0.2; done
  kill "$gimp3_pid" 2>/dev/null || true
  umount "$groot/tmp/.X11-unix" || true
  rm -rf "${groot:?}$g"
fi

ls -l "$out"
