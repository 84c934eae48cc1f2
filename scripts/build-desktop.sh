#!/usr/bin/env bash
# Build roam's desktop guest: scripts/build-desktop.sh [OUTDIR]   (default: build/desktop)
#
# A Debian bookworm system made by mmdebstrap from Debian's packages only
# (guest/desktop/packages): systemd, Xorg on QEMU's VGA, Xfce (panel, Thunar,
# mousepad, xfce4-terminal), qemu-guest-agent and xdotool. The session's user
# (roam.user=NAME) is made at boot with uid 1000 and logged in on DISPLAY=:0;
# /home is the user's profile disk when the session has one (label
# roam-profile).
#
# Outputs in OUTDIR:
#   desktop.img   raw ext4 image (sparse), the root file system
#   vmlinuz       the image's kernel (Debian's linux-image-amd64)
#   initrd.img    its initramfs (initramfs-tools)
#   append        the kernel command line the image boots with
#   desktop.info  kernel version, package versions, sizes
#   cache/        the downloaded .deb files (a rebuild downloads nothing new)
#
# The build is cached by the hash of its inputs (this script and
# guest/desktop/*): with nothing changed a second run does nothing. From
# scratch it takes a few minutes (download plus install).
#
# Environment:
#   ROAM_DESKTOP_DISK_MIB   size of desktop.img (default 4096; sparse)
#   ROAM_DESKTOP_MIRROR     Debian mirror (default http://deb.debian.org/debian)
#
# Exit status: 0 ok, 3 the packages could not be fetched (no network and no
# cache; tests treat this as "skip"), anything else a build error.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$SRC_DIR/build/desktop}
DISK_MIB=${ROAM_DESKTOP_DISK_MIB:-4096}
MIRROR=${ROAM_DESKTOP_MIRROR:-http://deb.debian.org/debian}
SECURITY=${MIRROR%/debian}/debian-security
SUITE=bookworm
FS_UUID=5e55104e-0a4d-4c1e-9e57-00000000d0d0
APPEND="console=ttyS0 root=/dev/vda rw quiet systemd.show_status=0"
GUEST=$SRC_DIR/guest/desktop
EXIT_NOFETCH=3

msg() { echo "build-desktop: $*" >&2; }
die() { msg "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "building the desktop image needs root (mmdebstrap in root mode, mke2fs -d)"
mkdir -p "$OUT/cache"
OUT=$(cd "$OUT" && pwd)
CACHE=$OUT/cache

# one build per OUTDIR at a time
exec 9>"$OUT/.lock"
flock 9

inputs_hash() {
	{
		sha256sum "$SRC_DIR/scripts/build-desktop.sh" "$GUEST"/*
		echo "$DISK_MIB $SUITE $FS_UUID $APPEND"
	} | sed "s|$SRC_DIR/||" | sha256sum | cut -d' ' -f1
}
outputs_present() {
	local f
	for f in desktop.img vmlinuz initrd.img append desktop.info; do
		[ -s "$OUT/$f" ] || return 1
	done
}
if outputs_present && [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$(inputs_hash)" ]; then
	msg "up to date: $OUT"
	exit 0
fi

# --- host tools --------------------------------------------------------------
need=()
for t in mmdebstrap:mmdebstrap mke2fs:e2fsprogs flock:util-linux; do
	command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	msg "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 ||
		{ apt-get update -qq >&2 || true; apt-get install -y -qq --no-install-recommends "${need[@]}" >&2; } ||
		{ msg "cannot install ${need[*]}"; exit $EXIT_NOFETCH; }
fi

# --- the root file system ----------------------------------------------------
W=$OUT/.work
rm -rf "$W"
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT
R=$W/root
pkgs=$(grep -v '^[[:space:]]*#' "$GUEST/packages" | grep -v '^[[:space:]]*$' | paste -sd, -)
t0=$SECONDS
msg "mmdebstrap $SUITE ($(echo "$pkgs" | tr ',' '\n' | wc -l) packages and their dependencies; $(find "$CACHE" -name '*.deb' | wc -l) .deb files cached)"
# The .deb files go through cache/: copied in before apt runs, copied back
# out after, so a rebuild downloads only what changed in the archive.
if ! mmdebstrap --mode=root --variant=apt --format=directory \
	--aptopt='APT::Install-Recommends "false"' \
	--aptopt='Acquire::Retries "3"' \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-include=/usr/share/locale/locale.alias' \
	--include="$pkgs" \
	--skip=essential/unlink \
	--setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
	--setup-hook="sync-in '$CACHE' /var/cache/apt/archives/" \
	--customize-hook="sync-out /var/cache/apt/archives '$CACHE'" \
	--skip=download/empty \
	"$SUITE" "$R" \
	"deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY $SUITE-security main" \
	>"$W/mmdebstrap.log" 2>&1; then
	tail -n 20 "$W/mmdebstrap.log" >&2
	if grep -qE "Could not resolve|Failed to fetch|Temporary failure|Unable to fetch" "$W/mmdebstrap.log"; then
		msg "cannot fetch the packages (no network to $MIRROR?)"
		exit $EXIT_NOFETCH
	fi
	die "mmdebstrap failed (log above)"
fi
rm -rf "$CACHE/lock" "$CACHE/partial"
msg "root file system in $((SECONDS - t0)) s"

# --- roam's parts --------------------------------------------------------------
install -m 755 "$GUEST/roam-user" "$R/usr/local/sbin/roam-user"
install -m 755 "$GUEST/roam-desktop-session" "$R/usr/local/sbin/roam-desktop-session"
install -m 755 "$GUEST/roam-logoff" "$R/usr/local/sbin/roam-logoff"
mkdir -p "$R/etc/systemd/system/graphical.target.wants"
for u in roam-user roam-xorg roam-desktop; do
	install -m 644 "$GUEST/$u.service" "$R/etc/systemd/system/$u.service"
	ln -sf "/etc/systemd/system/$u.service" "$R/etc/systemd/system/graphical.target.wants/$u.service"
done
ln -sf /lib/systemd/system/graphical.target "$R/etc/systemd/system/default.target"
mkdir -p "$R/etc/X11/xorg.conf.d"
install -m 644 "$GUEST/10-roam.conf" "$R/etc/X11/xorg.conf.d/10-roam.conf"
# what a TCG guest need not spend its boot on
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
	systemd-timesyncd.service man-db.timer getty@tty1.service serial-getty@ttyS0.service \
	systemd-networkd-wait-online.service; do
	ln -sf /dev/null "$R/etc/systemd/system/$u"
done
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n' >"$R/etc/systemd/journald.conf.d/roam.conf"
echo roam-desktop >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\troam-desktop\n' >"$R/etc/hosts"
printf '/dev/vda\t/\text4\trw,noatime\t0\t1\ntmpfs\t/tmp\ttmpfs\tmode=1777,size=256m\t0\t0\n' >"$R/etc/fstab"
: >"$R/etc/machine-id"
# the panel's first start asks which layout to use: give every user the default
P=$R/etc/skel/.config/xfce4/xfconf/xfce-perchannel-xml
mkdir -p "$P"
[ -f "$R/etc/xdg/xfce4/panel/default.xml" ] && cp "$R/etc/xdg/xfce4/panel/default.xml" "$P/xfce4-panel.xml"
# xfwm4's compositor draws nothing on a display without GL (QEMU's VGA under
# TCG): the screen stays black. Off for every user.
cat >"$P/xfwm4.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfwm4" version="1.0">
  <property name="general" type="empty">
    <property name="use_compositing" type="bool" value="false"/>
  </property>
</channel>
XML
# no screen saver, no blanking, inside the session either
mkdir -p "$R/etc/xdg/autostart"
printf '[Desktop Entry]\nType=Application\nName=roam: no blanking\nExec=xset s off\n' \
	>"$R/etc/xdg/autostart/roam-noblank.desktop"

KVER=$(ls "$R/lib/modules" | sort -V | tail -n 1)
[ -n "$KVER" ] && [ -f "$R/boot/vmlinuz-$KVER" ] && [ -f "$R/boot/initrd.img-$KVER" ] ||
	die "no kernel and initrd in the image's /boot"
cp "$R/boot/vmlinuz-$KVER" "$W/vmlinuz"
cp "$R/boot/initrd.img-$KVER" "$W/initrd.img"
{
	echo "suite: $SUITE"
	echo "kernel: $KVER"
	echo "packages: $(chroot "$R" dpkg-query -W -f '.' | wc -c)"
	chroot "$R" dpkg-query -W -f '${Package} ${Version}\n' | sed 's/^/  /'
} >"$W/desktop.info"
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R"/var/log/*.log "$R"/tmp/* 2>/dev/null || true

# --- the image ------------------------------------------------------------------
used=$(du -sm "$R" | cut -f1)
[ "$used" -lt $((DISK_MIB * 3 / 4)) ] || die "the root file system ($used MiB) does not fit well in $DISK_MIB MiB (set ROAM_DESKTOP_DISK_MIB)"
msg "desktop.img: $used MiB of files in $DISK_MIB MiB"
truncate -s "${DISK_MIB}M" "$W/desktop.img"
mke2fs -q -t ext4 -F -L roam-root -U "$FS_UUID" -E lazy_itable_init=0,lazy_journal_init=0 \
	-d "$R" "$W/desktop.img" >&2 || die "mke2fs -d failed"
echo "$APPEND" >"$W/append"
for f in desktop.img vmlinuz initrd.img append desktop.info; do
	mv -f "$W/$f" "$OUT/$f"
done
sync
inputs_hash >"$OUT/.stamp"
msg "built $OUT in $((SECONDS - t0)) s: desktop.img $(du -h --apparent-size "$OUT/desktop.img" | cut -f1) ($(du -h "$OUT/desktop.img" | cut -f1) used), kernel $KVER"
