#!/usr/bin/env bash
# Boot roam's test guest (built by scripts/build-guest.sh) under QEMU/TCG, for
# manual checks and tests. QEMU replaces this script (exec), so its pid is $!
# when run in the background.
#
# usage: scripts/run-guest.sh [options] [-- extra qemu args]
#   -o OUTDIR   the guest build (default: build/guest)
#   -w WORKDIR  where overlay.qcow2, serial.log, qmp.sock and guest.ram go
#               (default: a new directory under ${TMPDIR:-/tmp})
#   -k          keep WORKDIR/overlay.qcow2 if it exists (boot the same disk
#               again); without -k a fresh overlay over master.img is made
#   -p IMG      attach IMG (raw) as the second virtio disk, the profile disk
#   -a ARGS     more kernel command line, e.g. 'roam.logoff=1 roam.user=alice'
#   -m MIB      guest RAM (default 256)
#
# Watch the console with `tail -f WORKDIR/serial.log`; power off with QMP
# system_powerdown on WORKDIR/qmp.sock (e.g. socat - UNIX:WORKDIR/qmp.sock,
# then {"execute":"qmp_capabilities"} {"execute":"system_powerdown"}), after
# the console said "roam-guest: ready".
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUTDIR=$SRC_DIR/build/guest
WORKDIR=
KEEP=0
PROFILE=
APPEND=
MEM=256
usage() { sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while getopts "o:w:kp:a:m:h" opt; do
	case $opt in
	o) OUTDIR=$OPTARG ;;
	w) WORKDIR=$OPTARG ;;
	k) KEEP=1 ;;
	p) PROFILE=$OPTARG ;;
	a) APPEND=$OPTARG ;;
	m) MEM=$OPTARG ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ "${1:-}" = -- ] && shift

OUTDIR=$(cd "$OUTDIR" && pwd)
for f in vmlinux initrd.img master.img; do
	[ -f "$OUTDIR/$f" ] || { echo "run-guest: no $OUTDIR/$f (run scripts/build-guest.sh)" >&2; exit 1; }
done
if [ -z "$WORKDIR" ]; then
	WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/roam-guest.XXXXXX")
fi
mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)

OV=$WORKDIR/overlay.qcow2
if [ $KEEP = 0 ] || [ ! -f "$OV" ]; then
	rm -f "$OV"
	qemu-img create -q -f qcow2 -F raw -b "$OUTDIR/master.img" "$OV"
fi
rm -f "$WORKDIR/serial.log" "$WORKDIR/qmp.sock"

drives=(-drive "file=$OV,format=qcow2,if=virtio,cache=writeback")
if [ -n "$PROFILE" ]; then
	PROFILE=$(cd "$(dirname "$PROFILE")" && pwd)/$(basename "$PROFILE")
	drives+=(-drive "file=$PROFILE,format=raw,if=virtio,cache=writeback")
fi

echo "run-guest: workdir $WORKDIR (serial.log, qmp.sock, overlay.qcow2, guest.ram)" >&2
exec qemu-system-x86_64 \
	-name roam-guest \
	-machine pc-q35-7.2,memory-backend=mem \
	-accel tcg -cpu qemu64 -m "$MEM" -smp 1 \
	-object "memory-backend-file,id=mem,size=${MEM}M,mem-path=$WORKDIR/guest.ram,share=on" \
	-nodefaults -nographic -no-reboot \
	-serial "file:$WORKDIR/serial.log" \
	-qmp "unix:$WORKDIR/qmp.sock,server=on,wait=off" \
	-kernel "$OUTDIR/vmlinux" -initrd "$OUTDIR/initrd.img" \
	-append "console=ttyS0 quiet panic=-1${APPEND:+ $APPEND}" \
	"${drives[@]}" \
	"$@"
