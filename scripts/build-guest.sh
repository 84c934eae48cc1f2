#!/usr/bin/env bash
# Build roam's test guest: scripts/build-guest.sh [OUTDIR]   (default: build/guest)
#
# Outputs in OUTDIR:
#   vmlinux      uncompressed kernel (ELF, QEMU boots it through PVH), from
#                Debian's linux-image-6.1.0-*-amd64 package
#   vmlinuz      the package's bzImage, unchanged
#   initrd.img   gzip'd newc cpio: busybox-static + virtio/ext4/power-button
#                modules; /init mounts /dev/vda and switch_roots to it
#   master.img   raw ext4 image (sparse): busybox, the workload init
#                /etc/roam/init, the log-off hook /etc/roam/logoff, /data
#   guest.info   kernel version and package files used
#   cache/       the downloaded .deb files (a rebuild needs no network)
#
# Nothing is installed on the host except missing build tools (apt-get).
# The build is cached: with unchanged inputs (this script, the files of guest/, the cached
# .deb files) a second run does nothing.
#
# Environment:
#   ROAM_GUEST_KERNEL_PKG   kernel package to use (default: the one that
#                           linux-image-amd64 depends on, or the cached one)
#   ROAM_GUEST_DISK_MIB     size of master.img (default 256)
#   SOURCE_DATE_EPOCH       timestamp put into the images (default fixed)
#
# Exit status: 0 ok, 3 the packages could not be fetched (no network and no
# cache; tests treat this as "skip"), anything else a build error.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$SRC_DIR/build/guest}
DISK_MIB=${ROAM_GUEST_DISK_MIB:-256}
EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
# fixed file system identity, so that equal inputs give an equal image
FS_UUID=5e55104e-0a4d-4c1e-9e57-000000000001
EXIT_NOFETCH=3

# Modules for the initrd, in insmod order (insmod does not resolve deps).
# button + evdev: the ACPI power button (QMP system_powerdown) reaches
# userspace only through button.ko's input device read via evdev.
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
virtio_blk crc32c_generic jbd2 mbcache crc16 ext4 button evdev
drm drm_kms_helper ttm drm_ttm_helper drm_vram_helper bochs"

msg() { echo "build-guest: $*" >&2; }
die() { msg "error: $*"; exit 1; }
nofetch() { msg "cannot fetch: $*"; exit $EXIT_NOFETCH; }

mkdir -p "$OUT/cache"
OUT=$(cd "$OUT" && pwd)
CACHE=$OUT/cache

# one build per OUTDIR at a time
exec 9>"$OUT/.lock"
flock 9

# --- which .deb files (from the cache, without asking apt) ------------------
cached_deb() { # REGEX: newest cached .deb whose file name matches
	local f found=()
	for f in "$CACHE"/*.deb; do
		[[ ${f##*/} =~ $1 ]] && found+=("$f")
	done
	[ ${#found[@]} -gt 0 ] && printf '%s\n' "${found[@]}" | sort -V | tail -n 1
	return 0
}
kernel_re='^linux-image-6\.1\.0-[0-9]+-amd64_.*_amd64\.deb$'
if [ -n "${ROAM_GUEST_KERNEL_PKG:-}" ]; then
	kernel_re="^${ROAM_GUEST_KERNEL_PKG//./\\.}_.*\\.deb\$"
fi
bb_re='^busybox-static_.*_amd64\.deb$'
KDEB=$(cached_deb "$kernel_re")
BBDEB=$(cached_deb "$bb_re")

inputs_hash() {
	{
		sha256sum "$SRC_DIR/scripts/build-guest.sh" \
			"$SRC_DIR"/guest/{init,initrd-init,logoff,acpi-power}
		echo "$MODULES $DISK_MIB $EPOCH $FS_UUID"
		for d in "$KDEB" "$BBDEB"; do
			echo "$(basename "$d") $(stat -c %s "$d")"
		done
	} | sed "s|$SRC_DIR/||" | sha256sum | cut -d' ' -f1
}
outputs_present() {
	local f
	for f in vmlinux vmlinuz initrd.img master.img; do
		[ -s "$OUT/$f" ] || return 1
	done
}
if [ -n "$KDEB" ] && [ -n "$BBDEB" ] && outputs_present &&
	[ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$(inputs_hash)" ]; then
	msg "up to date: $OUT"
	exit 0
fi

# --- host tools --------------------------------------------------------------
apt_updated=0
apt_update() {
	[ $apt_updated = 0 ] || return 0
	apt_updated=1
	msg "apt-get update"
	apt-get update -qq >&2 || true
}
need=()
for t in dpkg-deb:dpkg xz:xz-utils cpio:cpio gzip:gzip mke2fs:e2fsprogs \
	depmod:kmod modinfo:kmod debugfs:e2fsprogs flock:util-linux; do
	command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing tools (${need[*]}); install them or run as root"
	msg "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 ||
		{ apt_update; apt-get install -y -qq --no-install-recommends "${need[@]}" >&2; } ||
		nofetch "tools ${need[*]}"
fi

# --- fetch the packages ---------------------------------------------------------
fetch() { # PACKAGE: apt-get download into the cache
	local pkg=$1 tmp
	tmp=$(mktemp -d "$CACHE/.dl.XXXXXX")
	msg "downloading $pkg"
	if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2); then
		apt_update
		(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) ||
			{ rm -rf "$tmp"; return 1; }
	fi
	mv "$tmp"/*.deb "$CACHE/"
	rm -rf "$tmp"
}
kernel_pkg() { # the linux-image-6.1.0-N-amd64 that linux-image-amd64 pulls in
	local p=${ROAM_GUEST_KERNEL_PKG:-}
	if [ -z "$p" ]; then
		p=$(apt-cache depends linux-image-amd64 2>/dev/null |
			awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.1\.0-[0-9]+-amd64$/ {print $2; exit}')
	fi
	if [ -z "$p" ]; then
		p=$(apt-cache pkgnames linux-image-6.1.0- 2>/dev/null |
			grep -E '^linux-image-6\.1\.0-[0-9]+-amd64$' | sort -V | tail -n 1) || true
	fi
	echo "$p"
}
if [ -z "$KDEB" ]; then
	kp=$(kernel_pkg)
	if [ -z "$kp" ]; then
		apt_update
		kp=$(kernel_pkg)
	fi
	[ -n "$kp" ] || nofetch "no linux-image-6.1.0-*-amd64 package known to apt"
	fetch "$kp" || nofetch "$kp"
	KDEB=$(cached_deb "$kernel_re")
	[ -n "$KDEB" ] || die "downloaded $kp but found no matching .deb in $CACHE"
fi
if [ -z "$BBDEB" ]; then
	fetch busybox-static || nofetch busybox-static
	BBDEB=$(cached_deb "$bb_re")
	[ -n "$BBDEB" ] || die "downloaded busybox-static but found no .deb in $CACHE"
fi

# --- build ------------------------------------------------------------------
W=$OUT/.work
rm -rf "$W"
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT

msg "kernel: $(basename "$KDEB")"
# only the kernel, the module lists and our modules: the package holds
# 400 MB of modules, and writing them all out takes most of the build time
pats=('./boot/vmlinuz-*' './lib/modules/*/modules.builtin' './lib/modules/*/modules.builtin.modinfo'
	'./lib/modules/*/modules.order')
for m in $MODULES; do pats+=("*/$m.ko*"); done
mkdir -p "$W/k"
# (a built-in module matches nothing: tar then fails with "Not found in
# archive", which is fine; what is missing is checked below)
if ! dpkg-deb --fsys-tarfile "$KDEB" | tar -x -C "$W/k" --wildcards "${pats[@]}" 2>"$W/tar.err" &&
	grep -vE 'Not found in archive|Exiting with failure' "$W/tar.err" | grep -q .; then
	die "cannot unpack $(basename "$KDEB"): $(head -n 3 "$W/tar.err")"
fi
dpkg-deb -x "$BBDEB" "$W/bb"
BUSYBOX=$W/bb/bin/busybox
[ -x "$BUSYBOX" ] || die "no bin/busybox in $(basename "$BBDEB")"

kvers=$(ls "$W/k/lib/modules")
[ "$(echo "$kvers" | wc -l)" = 1 ] || die "expected one kernel in the package, got: $kvers"
KVER=$kvers
KMOD=$W/k/lib/modules/$KVER
VMLINUZ=$W/k/boot/vmlinuz-$KVER
[ -f "$VMLINUZ" ] || die "no boot/vmlinuz-$KVER in the package"

# vmlinux: the bzImage's payload is an xz stream; decompress the first one
# found (trailing data after the stream is ignored)
off=$(LC_ALL=C grep -obUaP '\xfd\x37\x7a\x58\x5a\x00' "$VMLINUZ" | awk -F: 'NR == 1 {print $1}')
[ -n "$off" ] || die "no xz payload in $VMLINUZ (kernel not built with CONFIG_KERNEL_XZ?)"
tail -c +$((off + 1)) "$VMLINUZ" >"$W/payload.xz"
xz -dc --single-stream "$W/payload.xz" >"$W/vmlinux" ||
	die "cannot decompress the kernel payload at offset $off"
[ "$(head -c 4 "$W/vmlinux" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] ||
	die "decompressed payload is not an ELF file"
cp "$VMLINUZ" "$W/vmlinuz"

# initrd
I=$W/initrd
mkdir -p "$I"/{bin,sbin,dev,proc,sys,newroot,etc,lib/modules/"$KVER"}
cp "$BUSYBOX" "$I/bin/busybox"
for a in $("$BUSYBOX" --list); do
	[ "$a" = busybox ] || ln -s busybox "$I/bin/$a"
done
[ "$(id -u)" = 0 ] && mknod -m 600 "$I/dev/console" c 5 1
cp "$SRC_DIR/guest/initrd-init" "$I/init"
chmod 755 "$I/init"
for f in modules.order modules.builtin modules.builtin.modinfo; do
	[ -f "$KMOD/$f" ] && cp "$KMOD/$f" "$I/lib/modules/$KVER/"
done
loaded=" "
order=()
for m in $MODULES; do
	if grep -qE "/$m\.ko$" "$KMOD/modules.builtin" 2>/dev/null; then
		msg "module $m is built in"
		loaded="$loaded$m "
		continue
	fi
	src=$(find "$KMOD/kernel" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" \
		-o -name "$m.ko.gz" \) | head -n 1)
	[ -n "$src" ] || die "module $m not in the package"
	rel=${src#"$KMOD"/}
	dst=$I/lib/modules/$KVER/${rel%.ko*}.ko
	mkdir -p "$(dirname "$dst")"
	case "$src" in
	*.ko) cp "$src" "$dst" ;;
	*.ko.xz) xz -dc "$src" >"$dst" ;;
	*.ko.zst) zstd -qdc "$src" >"$dst" ;;
	*.ko.gz) gzip -dc "$src" >"$dst" ;;
	esac
	# every dependency must already be loaded (or built in)
	for d in $(modinfo -F depends "$dst" | tr ',' ' '); do
		case "$loaded" in *" $d "*) ;; *) die "module $m needs $d, which is not loaded before it" ;; esac
	done
	loaded="$loaded$m "
	order+=("$m")
done
printf '%s\n' "${order[@]}" >"$I/etc/modules-order"
depmod -b "$I" "$KVER"

# master image root
R=$W/root
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,data,profile,root,etc/roam,etc/acpi/PWRF}
chmod 1777 "$R/tmp"
chmod 700 "$R/root"
cp "$BUSYBOX" "$R/bin/busybox"
for a in $("$BUSYBOX" --list-full); do
	[ -e "$R/$a" ] || [ -L "$R/$a" ] || ln -s /bin/busybox "$R/$a"
done
install -m 755 "$SRC_DIR/guest/init" "$R/etc/roam/init"
install -m 755 "$SRC_DIR/guest/logoff" "$R/etc/roam/logoff"
install -m 755 "$SRC_DIR/guest/acpi-power" "$R/etc/acpi/PWRF/00000080"
echo "PWRF PWRF/00000080" >"$R/etc/acpid.conf"
echo roam-guest >"$R/etc/hostname"
echo "root:x:0:0:root:/root:/bin/sh" >"$R/etc/passwd"
echo "root:x:0:" >"$R/etc/group"
echo "$KVER" >"$R/etc/roam/kernel-version"

# reproducible timestamps
find "$I" "$R" -exec touch -h -d "@$EPOCH" {} +

(cd "$I" && find . -mindepth 1 | LC_ALL=C sort |
	cpio --quiet -o -H newc --reproducible -R 0:0) | gzip -n -6 >"$W/initrd.img"

rm -f "$W/master.img"
truncate -s "${DISK_MIB}M" "$W/master.img"
E2FSPROGS_FAKE_TIME=$EPOCH mke2fs -q -F -t ext4 -L roam-master -U "$FS_UUID" \
	-E "hash_seed=$FS_UUID,root_owner=0:0" -d "$R" "$W/master.img" >&2 ||
	die "mke2fs failed"
# mke2fs -d copies each inode's ctime from the staging tree (the time of this
# build); pin it too, so that equal inputs give a byte-identical image
(cd "$R" && find . -mindepth 1) | LC_ALL=C sort |
	sed "s|^\./\(.*\)|sif \"/\1\" ctime @$EPOCH|" >"$W/ctime.cmds"
echo "sif / ctime @$EPOCH" >>"$W/ctime.cmds"
E2FSPROGS_FAKE_TIME=$EPOCH debugfs -w -f "$W/ctime.cmds" "$W/master.img" >/dev/null 2>"$W/ctime.err" ||
	die "debugfs failed: $(head -c 500 "$W/ctime.err")"
if grep -v '^debugfs' "$W/ctime.err" | grep -q .; then
	die "debugfs: $(grep -v '^debugfs' "$W/ctime.err" | head -n 3)"
fi

cat >"$W/guest.info" <<EOF
kernel_version=$KVER
kernel_deb=$(basename "$KDEB")
busybox_deb=$(basename "$BBDEB")
modules=${order[*]}
disk_mib=$DISK_MIB
EOF

for f in vmlinux vmlinuz initrd.img master.img guest.info; do
	mv -f "$W/$f" "$OUT/$f"
done
inputs_hash >"$OUT/.stamp"
msg "built $OUT: $(cd "$OUT" && du -h --apparent-size vmlinux vmlinuz initrd.img master.img | awk '{printf "%s %s  ", $2, $1}')"
