#!/usr/bin/env bash
# roam's main job on one machine, step by step, with a timeline at the end.
# Run by 'make demo' (which builds roam and installs what it needs).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
ROAM=${ROAM_BIN:-$SRC/build/roam}
WORK=${DEMO_DIR:-$(mktemp -d /tmp/roam-demo.XXXXXX)}
export ROAM_PROGRESS=0
timeline=()
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
mark() { timeline+=("$(printf '%-44s %s' "$1" "$2")"); }
t0() { T0=$(date +%s.%N); }
dt() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2fs", b - a }'; }
cleanup() { [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT

step "a master disk image"
if [ -f "$SRC/build/guest/master.img" ]; then
        IMG=$SRC/build/guest/master.img
        echo "using the test guest's master image $IMG"
else
        IMG=$WORK/master.img
        truncate -s 256M "$IMG"
        mkdir -p "$WORK/root/etc" "$WORK/root/data"
        echo "roam demo" >"$WORK/root/etc/motd"
        head -c 20M /dev/urandom >"$WORK/root/data/blob"
        mke2fs -q -t ext4 -d "$WORK/root" "$IMG"
        echo "built a 256 MiB ext4 image at $IMG"
fi

step "server: import the master image into the content-addressed store"
export ROAM_HOME=$WORK/server
t0
id=$("$ROAM" image import master "$IMG")
mark "import master image" "$(dt)"
echo "image id $id"
"$ROAM" image show master
"$ROAM" store stats

step "USB stick: bundle the image, apply it on the laptop"
t0
"$ROAM" bundle create -o "$WORK/usb.bundle" master
mark "bundle for USB stick ($(du -h "$WORK/usb.bundle" | cut -f1))" "$(dt)"
export ROAM_HOME=$WORK/laptop
t0
"$ROAM" bundle apply "$WORK/usb.bundle"
mark "apply bundle on laptop" "$(dt)"

step "laptop: export and verify byte for byte"
t0
"$ROAM" image export master "$WORK/laptop-master.img"
mark "export on laptop" "$(dt)"
cmp "$IMG" "$WORK/laptop-master.img" && echo "identical to the server's master image"
"$ROAM" store fsck | tail -1

step "timeline"
printf '%s\n' "${timeline[@]}"
