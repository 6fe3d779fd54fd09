#!/usr/bin/env bash
# Tests the CycleGAN plug-in in a real headless GIMP 3 (3.0.4, Debian 13 "trixie") on a
# Debian 12 machine, where apt only has GIMP 2.10:
#
#   1. builds a trixie root with debootstrap and installs gimp + libgimp-3.0-dev in it
#      (once: about 5 minutes and 1.7 GB, cached in $CYCLEGAN_GIMP3_ROOT, default
#      /var/cache/cyclegan/gimp3-trixie; delete that folder to rebuild it);
#   2. mounts /proc in it (the plug-in finds libcyclegan.so beside itself through $ORIGIN,
#      which the loader resolves with /proc/self/exe) and runs
#      `cargo test --test gimp gimp3`: tests/gimp.rs copies the sources and the
#      libcyclegan.so built here into the root, compiles and installs the plug-in there with
#      install.sh --gimp3, runs gimp-console-3.0 through chroot on generated images, and
#      checks the pixels as it does for GIMP 2.10.
#
# Needs root, debootstrap (apt-get install debootstrap) and network access the first time.
# Usage: plugins/gimp/test-gimp3.sh [--root-only]
#   --root-only  step 1 alone: build the root if it is not cached, print its path, exit
#                (.ci/run does this, mounts /proc and runs the whole suite with
#                CYCLEGAN_GIMP3_ROOT set)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
root=${CYCLEGAN_GIMP3_ROOT:-/var/cache/cyclegan/gimp3-trixie}
root_only=no
case "${1:-}" in
  --root-only) root_only=yes ;;
  "") ;;
  *) echo "test-gimp3.sh: unknown argument $1 (usage: test-gimp3.sh [--root-only])" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "test-gimp3.sh: run as root (chroot, mount)" >&2; exit 1; }

mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" || true; done
}
trap cleanup EXIT

if [ ! -f "$root/.cyclegan-ready" ]; then
  command -v debootstrap >/dev/null || { echo "test-gimp3.sh: apt-get install debootstrap" >&2; exit 1; }
  start=$SECONDS
  tmp="$root.partial"
  rm -rf "$tmp"
  mkdir -p "$(dirname "$root")"
  debootstrap --variant=minbase trixie "$tmp"
  for m in proc sys dev dev/pts; do
    mount --bind "/$m" "$tmp/$m"
    mounted+=("$tmp/$m")
  done
  chroot "$tmp" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends gimp libgimp-3.0-dev gcc libc6-dev pkg-config && apt-get clean'
  cleanup
  mounted=()
  touch "$tmp/.cyclegan-ready"
  rm -rf "$root"
  mv "$tmp" "$root"
  echo "test-gimp3.sh: built $root in $((SECONDS - start)) s"
fi

if [ "$root_only" = yes ]; then
  echo "$root"
  exit 0
fi

if ! mountpoint -q "$root/proc"; then
  mount -t proc proc "$root/proc"
  mounted+=("$root/proc")
fi

cd "$repo"
CYCLEGAN_GIMP3_ROOT="$root" cargo test --test gimp gimp3 -- --nocapture
