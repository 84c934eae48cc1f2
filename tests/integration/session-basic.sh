#!/usr/bin/env bash
# A session's life on one host, with the real QEMU (TCG) and the test guest:
# create, start, ticks on the console, pause/resume, two checkpoints (the
# second adds few chunks), a crash (kill -9) reported as 'crashed', restore
# (the counter continues, same boot id: a restore, not a reboot), a clean
# power-off, the disk's /data/ticks gap-free, restore of an older checkpoint
# by number, rm.
. "$(dirname "$0")/../lib.sh"

requires qemu-system-x86_64
requires qemu-img
requires debugfs
export ROAM_ACCEL=tcg

need_guest

S=$ROAM_HOME/sessions/s1

state() { roam session list | awk -v n="$1" '$1 == n { print $4 }'; }
expect_state() {
	local s
	s=$(state "$1")
	[ "$s" = "$2" ] || fail "session $1 is '$s', expected '$2'"
}
# console helpers
ticks() { roam session log s1 | grep -E '^tick [0-9]+$' | awk '{ print $2 }'; }
last_tick() { ticks | tail -n 1; }
log_lines() { roam session log s1 | wc -l; }
has_tick() { grep -qx "tick $1" <<<"$(roam session log s1)"; }
# ticks printed after console line $1
ticks_after() { roam session log s1 | tail -n +$(($1 + 1)) | grep -E '^tick [0-9]+$' | awk '{ print $2 }'; }
has_ticks_after() { [ -n "$(ticks_after "$1")" ]; }
# a tick >= $2 printed after console line $1 (the log also holds the killed run's ticks)
has_tick_after() { [ "$(ticks_after "$1" | tail -n 1)" -ge "$2" ] 2>/dev/null; }
is_state() { [ "$(state "$1")" = "$2" ]; }
# check_ticks FILE: "tick 1 boot=ID" .. "tick N boot=ID", no gap, no repeat; prints N
check_ticks() {
	awk '
	!/^tick [0-9]+ boot=[0-9a-f-]+$/ { printf "bad line %d: %s\n", NR, $0 > "/dev/stderr"; bad = 1; exit 1 }
	$2 != NR { printf "line %d is tick %s\n", NR, $2 > "/dev/stderr"; bad = 1; exit 1 }
	END { if (!bad) print NR }' "$1"
}
checkpoint() { # prints the id; the stats line goes to $T/ckpt.err
	roam session checkpoint s1 2>"$T/ckpt.err" || fail "checkpoint failed: $(cat "$T/ckpt.err")"
	log "$(cat "$T/ckpt.err")"
}
ckpt_field() { sed -nE "s/.*$1 ([0-9]+) ms.*/\\1/p" "$T/ckpt.err"; }

# --- create, start -------------------------------------------------------------
must_succeed roam image import deb "$GUEST/master.img"
must_succeed roam session create s1 --image deb --user alice --ram 256M \
	--kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img"
expect_state s1 created
RAMDIR=$(roam session show s1 | sed -n 's/^ram: .* in \(.*\)\/s1.ram)$/\1/p')
[ -n "$RAMDIR" ] || fail "no RAM path in 'session show'"
case $RAMDIR in /dev/shm/roam-*) ;; *) fail "RAM directory '$RAMDIR' is not under /dev/shm" ;; esac
# the overlay's backing file is the shared master, by absolute path
qemu-img info "$S/overlay.qcow2" | grep -q "backing file: $ROAM_HOME/masters/.*\.raw" ||
	fail "overlay does not point at the master: $(qemu-img info "$S/overlay.qcow2")"

must_succeed roam session start s1
expect_state s1 running
[ -S "$S/qmp.sock" ] && [ -S "$S/vnc.sock" ] || fail "no qmp or vnc socket"
must_fail roam session start s1
expect_match "$ERR" "session 's1' is already running"
expect_one_line "$ERR"
wait_for 90 has_tick 5 || fail "no 'tick 5' on the console: $(roam session log s1 | tail -n 5)"
boot_id=$(roam session log s1 | sed -n 's/^roam-guest: boot_id=//p')
[ -n "$boot_id" ] || fail "no boot_id line"

# --- screenshot: a PNG of the display, complete or nothing -----------------------------
must_succeed roam session screenshot s1 "$T/shot.png"
python3 - "$T/shot.png" <<'PY' || fail "the screenshot is not a PNG image with a size"
import struct, sys
d = open(sys.argv[1], "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n" and d[12:16] == b"IHDR", "not a PNG"
w, h = struct.unpack(">II", d[16:24])
assert w >= 320 and h >= 200, (w, h)
print(f"screenshot {w}x{h}, {len(d)} bytes")
PY
ls "$T" | grep -q '^\.tmp' && fail "the screenshot left a temp file"
mkdir -p "$T/shots"
must_fail roam session screenshot s1 "$T/shots"
expect_match "$ERR" "is a directory"
must_fail roam session screenshot s1 "$T/no/such/dir/x.png"
expect_match "$ERR" "directory"
expect_one_line "$ERR"
# --- exec needs a guest agent: a clear error, exit 2, nothing changed ------------------
rc=0; ERR=$(roam session exec s1 -- /bin/true 2>&1) || rc=$?
[ $rc = 2 ] || fail "exec without an agent exited $rc, not 2"
expect_match "$ERR" "has no guest agent"
expect_one_line "$ERR"
expect_state s1 running
rc=0; ERR=$(roam session exec s1 2>&1) || rc=$?
[ $rc = 2 ] || fail "exec without a command exited $rc, not 2"
must_fail roam session screenshot nosuch "$T/x.png"
[ ! -e "$T/x.png" ] || fail "a failed screenshot wrote a file"

# --- pause, resume ---------------------------------------------------------------
must_succeed roam session pause s1
expect_state s1 paused
a=$(last_tick)
sleep 1
b=$(last_tick)
[ "$a" = "$b" ] || fail "ticks went on while paused ($a -> $b)"
must_succeed roam session resume s1
expect_state s1 running
wait_for 10 has_tick $((b + 2)) || fail "no ticks after resume"

# --- two checkpoints ---------------------------------------------------------------
c1=$(checkpoint)
[[ $c1 =~ ^[0-9a-f]{64}$ ]] || fail "checkpoint printed '$c1'"
pause1=$(ckpt_field pause)
new1=$(sed -nE 's/.* ([0-9]+) of ([0-9]+) chunks new.*/\1/p' "$T/ckpt.err")
sleep 5
before=$(last_tick)
c2=$(checkpoint)
after=$(last_tick)
[ "$c1" != "$c2" ] || fail "second checkpoint has the same id"
new2=$(sed -nE 's/.* ([0-9]+) of ([0-9]+) chunks new.*/\1/p' "$T/ckpt.err")
total2=$(sed -nE 's/.* ([0-9]+) of ([0-9]+) chunks new.*/\2/p' "$T/ckpt.err")
log "checkpoint 1: pause ${pause1} ms, $new1 new chunks; checkpoint 2: $new2 of $total2 chunks new"
[ "$new2" -lt $((new1 / 2)) ] || fail "second checkpoint added $new2 chunks (first $new1): no dedup?"
[ "$new2" -lt $((total2 / 10)) ] || fail "second checkpoint added $new2 of $total2 chunks"
[ "$pause1" -lt 5000 ] || fail "checkpoint paused the guest for $pause1 ms"
roam session show s1 | grep -q "^checkpoints: 2, last $c2" || fail "show does not list checkpoint 2: $(roam session show s1)"
roam store fsck >/dev/null 2>&1 || fail "store fsck fails after checkpoints"

# --- crash -----------------------------------------------------------------------------
wait_for 10 has_tick $((after + 3)) || fail "no ticks after checkpoint 2"
kill -9 "$(cat "$S/qemu.pid")"
wait_for 10 is_state s1 crashed || fail "a killed QEMU is reported as '$(state s1)', not crashed"
must_fail roam session pause s1
expect_match "$ERR" "session 's1' is not running \(state crashed"
killed_at=$(last_tick)

# --- restore: the guest continues from checkpoint 2 -------------------------------------
n=$(log_lines)
t0=$(date +%s%N)
must_succeed roam session restore s1
restore_ms=$((($(date +%s%N) - t0) / 1000000))
expect_state s1 running
wait_for 20 has_ticks_after "$n" || fail "no ticks after restore"
first=$(ticks_after "$n" | head -n 1)
log "checkpoint 2 was taken between tick $before and $after; killed at $killed_at; restored at tick $first (${restore_ms} ms)"
[ "$first" -gt "$before" ] && [ "$first" -le $((after + 1)) ] ||
	fail "after restore the counter is at $first, expected $((before + 1))..$((after + 1))"
[ "$(roam session log s1 | grep -c '^roam-guest: boot_id=')" = 1 ] || fail "the guest rebooted instead of resuming"
wait_for 20 has_tick_after "$n" $((first + 5)) || fail "ticks stop after restore"

# --- clean power-off, then the disk -------------------------------------------------------
must_succeed roam session stop s1
expect_state s1 stopped
must_fail roam session screenshot s1 "$T/stopped.png"
expect_match "$ERR" "not running"
expect_one_line "$ERR"
rc=0; ERR=$(roam session exec s1 -- /bin/true 2>&1) || rc=$?
[ $rc = 2 ] || fail "exec on a stopped session exited $rc, not 2"
expect_match "$ERR" "is not running"
expect_one_line "$ERR"
[ ! -e "$S/qemu.pid" ] && [ ! -e "$RAMDIR/s1.ram" ] || fail "stop left the pid file or the RAM file"
expect_match "$(roam session log s1)" 'roam-guest: powered off cleanly' "the console (a clean power-off)"
qemu-img convert -O raw "$S/overlay.qcow2" "$T/disk.raw" || fail "qemu-img convert"
debugfs -R 'cat /data/ticks' "$T/disk.raw" 2>/dev/null >"$T/ticks" || fail "debugfs"
N=$(check_ticks "$T/ticks") || fail "/data/ticks is not gap-free: $(tail -n 5 "$T/ticks")"
[ "$N" -ge $((first + 5)) ] || fail "/data/ticks ends at $N"
[ "$N" = "$(last_tick)" ] || fail "disk ends at tick $N, console at $(last_tick)"
[ "$(sed 's/.*boot=//' "$T/ticks" | sort -u)" = "$boot_id" ] || fail "/data/ticks has other boot ids"
log "disk: tick 1..$N, gap-free, boot id $boot_id"

# --- restore an older checkpoint by number -------------------------------------------------
n=$(log_lines)
must_succeed roam session restore s1 1
wait_for 20 has_ticks_after "$n" || fail "no ticks after restoring checkpoint 1"
first1=$(ticks_after "$n" | head -n 1)
[ "$first1" -lt "$first" ] || fail "checkpoint 1 resumed at tick $first1, checkpoint 2 at $first"

# --- checkpoints of a paused session: it stays paused; the second adds ~nothing ------------
must_succeed roam session pause s1
a=$(last_tick)
c3=$(checkpoint)
c4=$(checkpoint)
new4=$(sed -nE 's/.* ([0-9]+) of ([0-9]+) chunks new.*/\1/p' "$T/ckpt.err")
# QEMU 7.2 re-activates the disks of a migrated guest only with 'cont', so
# the checkpoint of a paused guest ends with cont + stop: the guest runs for a
# moment (longer on a loaded machine) and touches a few pages. Few, not none.
[ "$new4" -le 100 ] || fail "a second checkpoint of a paused guest added $new4 chunks"
expect_state s1 paused
sleep 0.5
b=$(last_tick) # cont + stop after each checkpoint of a paused guest (QEMU 7.2): a moment of run
[ "$b" -le $((a + 1)) ] || fail "the guest ran on after a checkpoint while paused ($a -> $b)"
must_succeed roam session resume s1
wait_for 10 has_tick $((b + 2)) || fail "no ticks after resuming a checkpointed paused guest"

must_fail roam session restore s1 7
expect_match "$ERR" "session 's1' has no checkpoint '7'"
must_fail roam session rm s1
expect_match "$ERR" "session 's1' is running \(stop it first"
expect_one_line "$ERR"

must_succeed roam session stop s1
must_succeed roam session rm s1
[ ! -e "$S" ] || fail "rm left $S"
[ -z "$(roam session list | tail -n +2)" ] || fail "rm left a row: $(roam session list)"
[ -z "$(find "$ROAM_HOME/store/refs/sessions" -type f 2>/dev/null)" ] || fail "rm left refs: $(find "$ROAM_HOME/store/refs/sessions" -type f)"
echo "ok: session life cycle; checkpoint pause ${pause1} ms, second checkpoint $new2/$total2 chunks new, restore ${restore_ms} ms"
