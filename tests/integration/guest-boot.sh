#!/usr/bin/env bash
# The test guest (scripts/build-guest.sh) boots under TCG, runs its tick
# workload, powers off cleanly on an ACPI power-button press (QMP
# system_powerdown), continues its counter after a reboot from the same
# overlay, and its log-off hook (roam.logoff=1) saves the user's data to a
# profile disk.
. "$(dirname "$0")/../lib.sh"

requires qemu-system-x86_64
requires qemu-img
requires python3
requires debugfs
requires mke2fs

GUEST=$BUILD_DIR/guest
rc=0
bash "$SRC_DIR/scripts/build-guest.sh" "$GUEST" || rc=$?
case $rc in
0) ;;
3) skip "the test guest cannot be built here (no package archive and no cache)" ;;
*) fail "scripts/build-guest.sh failed ($rc)" ;;
esac

VM=$T/vm
SERIAL=$VM/serial.log
QPID=

# sgrep GREP-ARGS...: grep the console log (without the serial line's CRs)
sgrep() {
	{ tr -d '\r' <"$SERIAL"; } 2>/dev/null >"$T/serial.txt" || true
	grep "$@" "$T/serial.txt"
}
gfail() {
	log "serial console:"
	sgrep '' | tail -n 30 | sed 's/^/#   /' >&2 || true
	fail "$*"
}
# boot [run-guest.sh options]: start QEMU in the background
boot() {
	rm -f "$SERIAL"
	bash "$SRC_DIR/scripts/run-guest.sh" -o "$GUEST" -w "$VM" "$@" </dev/null >"$T/qemu.out" 2>&1 &
	QPID=$!
	cleanup_add "kill $QPID"
	BOOT_START=$(date +%s%N)
}
alive() { kill -0 "$QPID" 2>/dev/null; }
gone() { ! alive; }
seen_or_gone() { sgrep -qE "$1" || gone; }
# wait_serial TIMEOUT REGEX: wait until the console shows REGEX
wait_serial() {
	wait_for "$1" seen_or_gone "$2" || gfail "no /$2/ on the console after $1 s"
	sgrep -qE "$2" || gfail "QEMU exited before /$2/: $(cat "$T/qemu.out")"
}
# wait_exit TIMEOUT: QEMU must exit by itself, with status 0
wait_exit() {
	wait_for "$1" gone || gfail "QEMU still running after $1 s"
	local rc=0
	wait "$QPID" || rc=$?
	[ $rc = 0 ] || gfail "QEMU exited with $rc: $(cat "$T/qemu.out")"
}
qmp() { # COMMAND...: run QMP commands on the guest's socket
	python3 - "$VM/qmp.sock" "$@" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rw")
def reply():
    while True:
        m = json.loads(f.readline())
        if "event" not in m:
            return m
reply()  # greeting
for cmd in ["qmp_capabilities"] + sys.argv[2:]:
    f.write(json.dumps({"execute": cmd}) + "\n")
    f.flush()
    r = reply()
    if "error" in r:
        sys.exit("QMP %s: %s" % (cmd, r["error"]))
PY
}
powerdown() {
	sgrep -q 'roam-guest: ready' || gfail "guest not ready"
	qmp system_powerdown || gfail "QMP system_powerdown failed"
	wait_exit 60
	sgrep -q 'roam-guest: powered off cleanly' || gfail "no clean power-off"
}
# disk_file IMAGE PATH: print a file from an ext4 image (qcow2 or raw)
disk_file() {
	local img=$1
	case $img in
	*.qcow2)
		qemu-img convert -O raw "$1" "$T/disk.raw" || fail "qemu-img convert $1"
		img=$T/disk.raw
		;;
	esac
	debugfs -R "cat $2" "$img" 2>/dev/null
}
# check_ticks FILE: lines are "tick 1 boot=ID" .. "tick N boot=ID" without a
# gap or repeat; prints N
check_ticks() {
	awk '
	!/^tick [0-9]+ boot=[0-9a-f-]+$/ { printf "bad line %d: %s\n", NR, $0 > "/dev/stderr"; bad = 1; exit 1 }
	$2 != NR { printf "line %d is tick %s\n", NR, $2 > "/dev/stderr"; bad = 1; exit 1 }
	END { if (!bad) print NR }' "$1"
}

# --- boot 1: fresh overlay, tick, power button ------------------------------------
boot
wait_serial 60 '^tick 1$'
first_tick_ms=$((($(date +%s%N) - BOOT_START) / 1000000))
wait_serial 60 '^tick 5$'
sgrep -qE '^roam-guest: boot_id=[0-9a-f-]{36}$' || gfail "no boot_id line"
log "boot 1: first tick after ${first_tick_ms} ms"
powerdown
cp "$SERIAL" "$T/serial.1"

disk_file "$VM/overlay.qcow2" /data/ticks >"$T/ticks.1"
n1=$(check_ticks "$T/ticks.1") || fail "ticks after boot 1: $(cat "$T/ticks.1")"
[ "$n1" -ge 5 ] || fail "only $n1 ticks on the disk after boot 1"
# the console and the disk agree on the last tick
last_console=$(sgrep -E '^tick [0-9]+$' | tail -n 1)
[ "$last_console" = "tick $n1" ] || fail "console ended at '$last_console', disk at tick $n1"
e2fsck -fn "$T/disk.raw" >/dev/null 2>&1 || fail "file system not clean after power-off"
boot1_id=$(awk 'NR == 1 { sub(/.*boot=/, ""); print }' "$T/ticks.1")
log "boot 1: $n1 ticks"

# --- boot 2: the same overlay again; the counter continues ------------------------
boot -k
wait_serial 60 '^tick [0-9]+$'
first=$(sgrep -m 1 -E '^tick [0-9]+$')
[ "$first" = "tick $((n1 + 1))" ] || gfail "boot 2 started at '$first', expected tick $((n1 + 1))"
wait_serial 60 "^tick $((n1 + 3))\$"
powerdown
cp "$SERIAL" "$T/serial.2"
disk_file "$VM/overlay.qcow2" /data/ticks >"$T/ticks.2"
n2=$(check_ticks "$T/ticks.2") || fail "ticks after boot 2: $(cat "$T/ticks.2")"
[ "$n2" -ge $((n1 + 3)) ] || fail "only $n2 ticks after boot 2 (boot 1 had $n1)"
head -n "$n1" "$T/ticks.2" | cmp -s - "$T/ticks.1" || fail "boot 2 changed the ticks of boot 1"
boot2_id=$(tail -n 1 "$T/ticks.2" | sed 's/.*boot=//')
[ "$boot1_id" != "$boot2_id" ] || fail "boot id did not change across a reboot"
log "boot 2: ticks $((n1 + 1))..$n2"

# --- boot 3: finalize with the log-off hook onto a profile disk -------------------
truncate -s 16M "$T/profile.img"
mke2fs -q -F -t ext4 -L profile "$T/profile.img" || fail "mke2fs profile"
boot -k -p "$T/profile.img" -a "roam.logoff=1 roam.user=alice"
wait_exit 60
sgrep -q '^roam-guest: logoff done' || gfail "no 'logoff done' on the console"
sgrep -q 'roam-guest: powered off cleanly' || gfail "no clean power-off"
! sgrep -qE '^tick ' || gfail "the workload ran during log-off"
disk_file "$T/profile.img" /alice/ticks >"$T/alice.ticks"
cmp -s "$T/alice.ticks" "$T/ticks.2" || fail "profile's alice/ticks differs from the session's /data/ticks"
done_line=$(disk_file "$T/profile.img" /alice/logoff-done)
[ "$done_line" = "$(tail -n 1 "$T/ticks.2")" ] || fail "alice/logoff-done is '$done_line'"
# the log-off boot ran no workload: the session disk is unchanged
disk_file "$VM/overlay.qcow2" /data/ticks | cmp -s - "$T/ticks.2" || fail "log-off boot changed /data/ticks"
log "boot 3: profile disk has alice/ticks ($n2 ticks) and alice/logoff-done"
echo "ok: guest boots (first tick ${first_tick_ms} ms), powers off cleanly, continues, logs off"
