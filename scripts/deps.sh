#!/usr/bin/env bash
# Installs the Debian packages a make target needs, when they are missing.
# usage: scripts/deps.sh GROUP...   (groups: build check guest bench fuzz web deb fleet)
set -euo pipefail

declare -A groups=(
  [build]="gcc meson ninja-build pkg-config libzstd-dev libssl-dev libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev libsqlite3-dev libxxhash-dev"
  [check]="libcmocka-dev qemu-utils qemu-system-x86 e2fsprogs python3 iproute2 valgrind busybox-static xz-utils cpio kmod zstd curl sqlite3 vncsnapshot groff-base jq mmdebstrap tesseract-ocr tesseract-ocr-eng"
  [guest]="qemu-utils qemu-system-x86 busybox-static e2fsprogs xz-utils cpio kmod"
  [bench]="casync rsync debootstrap zstd e2fsprogs openssl qemu-utils qemu-system-x86 iproute2"
  [fuzz]="clang libclang-rt-14-dev"
  [deb]="dpkg-dev debhelper fakeroot lintian"
  [fleet]="etcd-server etcd-client ceph-mon ceph-osd ceph-mgr ceph-common librados-dev"
  [web]="chromium nodejs npm tesseract-ocr tesseract-ocr-eng"
)

# packages that count as present when their command is there (node and npm
# may come from another packaging of Node.js; Debian's npm would fight it)
declare -A commands=([nodejs]=node [npm]=npm)

want=()
for g in "$@"; do
        [ -n "${groups[$g]+x}" ] || { echo "deps.sh: unknown group '$g'" >&2; exit 2; }
        for p in ${groups[$g]}; do
                if [ -n "${commands[$p]+x}" ] && command -v "${commands[$p]}" >/dev/null; then
                        continue
                fi
                dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || want+=("$p")
        done
done
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
        echo "roam: missing packages: ${want[*]} (run as root, or: sudo apt-get install ${want[*]})" >&2
        exit 1
fi
echo "roam: installing ${want[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends "${want[@]}" >/tmp/roam-apt.log 2>&1; then
        apt-get update -q >>/tmp/roam-apt.log 2>&1 || true
        apt-get install -y -q --no-install-recommends "${want[@]}" >>/tmp/roam-apt.log 2>&1 || {
                tail -20 /tmp/roam-apt.log >&2
                echo "roam: apt-get install failed (log: /tmp/roam-apt.log)" >&2
                exit 1
        }
fi
