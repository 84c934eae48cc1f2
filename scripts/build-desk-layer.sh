#!/usr/bin/env bash
# Build the terminal-server layer over the desktop image:
#   scripts/build-desk-layer.sh [OUTDIR] [DESKTOP_DIR]
#   (defaults: build/desk-layer, build/desktop; builds the desktop first, cached)
#
# A layer is a qcow2 delta over the desktop image (roam image import NAME
# FILE --layer-of desktop). This one adds what a terminal server needs, from
# Debian's packages only (guest/desk/packages: CRIU, Xvnc) and roam's
# in-guest helpers (guest/desk/roam-desk, roam-desk-vnc, the unit roam-desk.service,
# and a drop-in that keeps the console desktop off :0 with roam.ts=1).
#
# How: a sparse copy of desktop.img is loop-mounted, apt-get installs the
# packages in a chroot (the .deb files go through OUTDIR/cache, so a rebuild
# downloads nothing new), roam's files are added, and the changed clusters
# become desk-layer.qcow2 (qemu-img rebase of a qcow2 over the copy onto
# desktop.img: only what differs is written).
#
# Outputs in OUTDIR:
#   desk-layer.qcow2  the layer (its backing file: DESKTOP_DIR/desktop.img)
#   desk-layer.info   the added packages and their versions
#   cache/            the downloaded .deb files
#
# Cached by the hash of its inputs (this script, guest/desk/*, the desktop
# build's stamp): with nothing changed a second run does nothing.
#
# Exit status: 0 ok, 3 the packages could not be fetched (tests skip),
# anything else a build error.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$SRC_DIR/build/desk-layer}
DESKTOP=${2:-$SRC_DIR/build/desktop}
MIRROR=${ROAM_DESKTOP_MIRROR:-http://deb.debian.org/debian}
SECURITY=${MIRROR%/debian}/debian-security
SUITE=bookworm
GUEST=$SRC_DIR/guest/desk
EXIT_NOFETCH=3

msg() { echo "build-desk-layer: $*" >&2; }
die() { msg "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "building the layer needs root (a loop mount and a chroot)"
bash "$SRC_DIR/scripts/build-desktop.sh" "$DESKTOP"
mkdir -p "$OUT/cache"
OUT=$(cd "$OUT" && pwd)
DESKTOP=$(cd "$DESKTOP" && pwd)
CACHE=$OUT/cache

exec 9>"$OUT/.lock"
flock 9

inputs_hash() {
	{
		sha256sum "$SRC_DIR/scripts/build-desk-layer.sh" "$GUEST"/*
		cat "$DESKTOP/.stamp"
		echo "$SUITE"
	} | sed "s|$SRC_DIR/||" | sha256sum | cut -d' ' -f1
}
if [ -s "$OUT/desk-layer.qcow2" ] && [ -s "$OUT/desk-layer.info" ] && [ -f "$OUT/.stamp" ] &&
	[ "$(cat "$OUT/.stamp")" = "$(inputs_hash)" ]; then
	msg "up to date: $OUT"
	exit 0
fi
command -v qemu-img >/dev/null || die "qemu-img not found (apt-get install qemu-utils)"

W=$OUT/.work
M=$W/root
LOOP=
unmount_all() {
	local m
	for m in "$M/dev/pts" "$M/dev" "$M/proc" "$M/sys"; do
		mountpoint -q "$m" 2>/dev/null && umount -R "$m"
	done
	if mountpoint -q "$M" 2>/dev/null; then umount "$M"; fi
	if [ -n "$LOOP" ]; then
		losetup -d "$LOOP"
		LOOP=
	fi
	sync
}
cleanup() {
	unmount_all 2>/dev/null || true
	rm -rf "$W"
}
cleanup
mkdir -p "$M"
trap cleanup EXIT
t0=$SECONDS

# --- a copy of the desktop, mounted ----------------------------------------------
cp --sparse=always "$DESKTOP/desktop.img" "$W/ts.img"
LOOP=$(losetup --find --show "$W/ts.img") || die "cannot attach a loop device to a copy of desktop.img"
mount -o noatime "$LOOP" "$M" || die "cannot mount a copy of desktop.img"
mount -t proc proc "$M/proc"
mount --rbind /sys "$M/sys" && mount --make-rslave "$M/sys"
mount --bind /dev "$M/dev"
mount --bind /dev/pts "$M/dev/pts"
cp /etc/resolv.conf "$M/etc/resolv.conf" 2>/dev/null || true
cat >"$M/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
mkdir -p "$M/var/cache/apt/archives/partial"
find "$CACHE" -maxdepth 1 -name '*.deb' -exec cp -t "$M/var/cache/apt/archives/" {} + 2>/dev/null || true
pkgs=$(grep -v '^[[:space:]]*#' "$GUEST/packages" | grep -v '^[[:space:]]*$' | tr '\n' ' ')
msg "apt-get install $pkgs($(find "$CACHE" -name '*.deb' | wc -l) .deb files cached)"
# no daemon starts in the chroot
printf '#!/bin/sh\nexit 101\n' >"$M/usr/sbin/policy-rc.d"
chmod 755 "$M/usr/sbin/policy-rc.d"
apt_ok=1
{
	chroot "$M" env DEBIAN_FRONTEND=noninteractive apt-get -q -o Acquire::Retries=3 update &&
		chroot "$M" env DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends \
			-o Dpkg::Options::=--path-exclude=/usr/share/doc/* -o Dpkg::Options::=--path-exclude=/usr/share/man/* \
			-o Dpkg::Options::=--path-exclude=/usr/share/locale/* install $pkgs
} >"$OUT/apt.log" 2>&1 || apt_ok=0
if [ $apt_ok = 0 ]; then
	tail -n 15 "$OUT/apt.log" >&2
	if grep -qE "Could not resolve|Failed to fetch|Temporary failure|Unable to fetch|Unable to locate" "$OUT/apt.log"; then
		msg "cannot fetch the packages (no network to $MIRROR and not all in $CACHE?)"
		exit $EXIT_NOFETCH
	fi
	die "apt-get failed (log above)"
fi
cp -n "$M"/var/cache/apt/archives/*.deb "$CACHE/" 2>/dev/null || true
rm -f "$M/usr/sbin/policy-rc.d" "$M"/var/cache/apt/archives/*.deb "$M"/var/lib/apt/lists/* 2>/dev/null || true
rm -rf "$M"/var/cache/apt/*.bin "$M"/var/log/apt "$M"/var/log/dpkg.log 2>/dev/null || true
: >"$M/etc/resolv.conf"

# --- roam's helper ----------------------------------------------------------------
install -m 755 "$GUEST/roam-desk" "$M/usr/local/sbin/roam-desk"
install -m 755 "$GUEST/roam-desk-vnc" "$M/usr/local/sbin/roam-desk-vnc"
# built here with the host's compiler: bookworm's glibc on both sides
cc -O2 -Wall -o "$W/roam-desk-nopidfd" "$GUEST/roam-desk-nopidfd.c" || die "cannot compile roam-desk-nopidfd"
install -m 755 "$W/roam-desk-nopidfd" "$M/usr/local/sbin/roam-desk-nopidfd"
install -m 644 "$GUEST/roam-desk.service" "$M/etc/systemd/system/roam-desk.service"
mkdir -p "$M/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/roam-desk.service "$M/etc/systemd/system/multi-user.target.wants/roam-desk.service"
for u in roam-xorg roam-desktop; do
	mkdir -p "$M/etc/systemd/system/$u.service.d"
	install -m 644 "$GUEST/ts.conf" "$M/etc/systemd/system/$u.service.d/roam-ts.conf"
done
{
	echo "layer: terminal server over desktop ($(cut -c1-12 "$DESKTOP/.stamp"))"
	chroot "$M" dpkg-query -W -f '${Package} ${Version}\n' criu tigervnc-standalone-server | sed 's/^/  /'
} >"$W/desk-layer.info"
chroot "$M" criu --version >/dev/null 2>&1 || die "criu does not run in the image"
chroot "$M" sh -c 'command -v Xvnc' >/dev/null || die "Xvnc is not in the image"
unmount_all
e2fsck -fn "$W/ts.img" >"$W/e2fsck.log" 2>&1 || { cat "$W/e2fsck.log" >&2; die "the layer's file system does not check clean (e2fsck -fn)"; }
# what was written last is in the file system itself (not only in a journal)
size=$(debugfs -R "stat /usr/local/sbin/roam-desk" "$W/ts.img" 2>/dev/null | sed -nE 's/.*Size: ([0-9]+).*/\1/p' | head -n 1)
[ "${size:-0}" = "$(stat -c %s "$GUEST/roam-desk")" ] || die "the helper is not in the unmounted copy (size '${size:-none}')"

# --- only what differs from the desktop -------------------------------------------
qemu-img create -q -f qcow2 -b "$W/ts.img" -F raw "$W/desk-layer.qcow2"
qemu-img rebase -q -f qcow2 -b "$DESKTOP/desktop.img" -F raw "$W/desk-layer.qcow2" ||
	die "qemu-img rebase onto desktop.img failed"
mv -f "$W/desk-layer.qcow2" "$OUT/desk-layer.qcow2"
mv -f "$W/desk-layer.info" "$OUT/desk-layer.info"
sync
inputs_hash >"$OUT/.stamp"
msg "built $OUT in $((SECONDS - t0)) s: desk-layer.qcow2 $(du -h "$OUT/desk-layer.qcow2" | cut -f1)"
