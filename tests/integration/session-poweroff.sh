#!/usr/bin/env bash
# Powered-off sessions, the take-online path of a session that was shut down:
# on host A ("the laptop") two sessions run and power off cleanly (p1
# persistent for alice, p2 pooled for bob); a checkpoint of a stopped session
# holds the disk delta alone (no RAM, no device state) and adds few chunks
# after an earlier running checkpoint. Only that delta travels to host B ("the
# server", which has the master already) in a bundle. B adopts both sessions
# (session adopt; restore with a 64-hex id) and they stay stopped. Bad input
# (finalize of a running, unknown or crashed session, a profile disk that
# cannot be made, a guest that does not power off in time or reboots instead)
# fails in one line and changes nothing. Finalize on B boots each session with roam.logoff=1:
# the guest copies /data to the user's profile disk; persistent keeps the
# disk delta, pooled resets it to the master (the next boot counts from 1).
. "$(dirname "$0")/../lib.sh"

requires qemu-system-x86_64
requires qemu-img
requires debugfs
requires python3
export ROAM_ACCEL=tcg

need_guest

A=$T/a B=$T/b
mkdir -p "$A" "$B"
on() { local h=$1; shift; ROAM_HOME=$h "$ROAM_BIN" "$@"; }
state_on() { on "$1" session list | awk -v n="$2" '$1 == n { print $4 }'; }
expect_state_on() {
	local s
	s=$(state_on "$1" "$2")
	[ "$s" = "$3" ] || fail "session $2 on $(basename "$1") is '$s', expected '$3'"
}
ticks_on() { on "$1" session log "$2" | { grep -E '^tick [0-9]+$' || true; } | awk '{ print $2 }'; }
has_tick_on() { grep -qx "tick $3" <<<"$(on "$1" session log "$2")"; }
# disk_file HOME NAME PATH OUT: PATH from the session's disk (overlay over master) into OUT
disk_file() {
	qemu-img convert -O raw "$1/sessions/$2/overlay.qcow2" "$T/disk.raw" || fail "qemu-img convert"
	ext4_file "$T/disk.raw" "$3" >"$4"
	rm -f "$T/disk.raw"
}
# profile_file HOME USER PATH OUT: PATH from the user's profile disk
profile_file() { ext4_file "$1/profiles/$2.img" "$3" >"$4"; }
# manifest HOME HEX: the JSON of a manifest object (stored plain after a 16-byte header)
manifest() { tail -c +17 "$1/store/objects/${2:0:2}/$2"; }
mjson() { # HOME HEX PYTHON-EXPR on m
	manifest "$1" "$2" | python3 -c "import json, sys; m = json.load(sys.stdin); print($3)"
}
chunks_new() { sed -nE 's/.* ([0-9]+) of ([0-9]+) chunks new.*/\1/p' "$1"; }
chunks_all() { sed -nE 's/.* ([0-9]+) of ([0-9]+) chunks new.*/\2/p' "$1"; }

# --- host A: two sessions run and power off -----------------------------------------
on "$A" image import deb "$GUEST/master.img" >/dev/null
common=(--image deb --ram 256M --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img")
must_succeed on "$A" session create p1 --user alice --policy persistent "${common[@]}"
must_succeed on "$A" session create p2 --user bob --policy pooled "${common[@]}"
must_fail on "$A" session create p3 --user bob --policy sticky "${common[@]}"
expect_match "$ERR" "--policy takes persistent or pooled"
on "$A" session show p1 | grep -q '^policy: *persistent$' || fail "p1 does not show policy persistent"
on "$A" session show p2 | grep -q '^policy: *pooled$' || fail "p2 does not show policy pooled"

must_succeed on "$A" session start p1
must_succeed on "$A" session start p2
wait_for 120 has_tick_on "$A" p1 8 || fail "no 'tick 8' from p1: $(on "$A" session log p1 | tail -n 3)"
wait_for 60 has_tick_on "$A" p2 8 || fail "no 'tick 8' from p2: $(on "$A" session log p2 | tail -n 3)"
# a running checkpoint first: the powered-off one after it adds only what changed since
must_succeed on "$A" session checkpoint p1
sleep 1
must_succeed on "$A" session stop p1
must_succeed on "$A" session stop p2
expect_state_on "$A" p1 stopped
expect_state_on "$A" p2 stopped
p1_last=$(ticks_on "$A" p1 | tail -n 1)
p2_last=$(ticks_on "$A" p2 | tail -n 1)
disk_file "$A" p1 /data/ticks "$T/p1.ticks"
disk_file "$A" p2 /data/ticks "$T/p2.ticks"
[ "$(wc -l <"$T/p1.ticks")" = "$p1_last" ] || fail "p1's disk has $(wc -l <"$T/p1.ticks") ticks, console $p1_last"
[ "$(wc -l <"$T/p2.ticks")" = "$p2_last" ] || fail "p2's disk has $(wc -l <"$T/p2.ticks") ticks, console $p2_last"
log "A: p1 stopped at tick $p1_last, p2 at tick $p2_last"

# --- powered-off checkpoints ----------------------------------------------------------------
c1=$(on "$A" session checkpoint p1 2>"$T/c1.err") || fail "checkpoint of stopped p1: $(cat "$T/c1.err")"
log "$(cat "$T/c1.err")"
[[ $c1 =~ ^[0-9a-f]{64}$ ]] || fail "checkpoint printed '$c1'"
expect_match "$(cat "$T/c1.err")" "\(powered off\)"
new1=$(chunks_new "$T/c1.err") all1=$(chunks_all "$T/c1.err")
# the overlay alone (a 256 MiB guest's RAM is 4096 chunks), and only the
# clusters written since the running checkpoint are new
[ "$all1" -lt 1000 ] || fail "powered-off checkpoint has $all1 chunks: RAM included?"
[ "$new1" -le 64 ] || fail "powered-off checkpoint added $new1 chunks after a running checkpoint"
[ "$(mjson "$A" "$c1" 'm.get("powered_off")')" = True ] || fail "manifest lacks powered_off: $(manifest "$A" "$c1")"
[ "$(mjson "$A" "$c1" '",".join(sorted(m["objects"]))')" = "image,initrd,kernel,overlay" ] ||
	fail "powered-off manifest objects: $(mjson "$A" "$c1" 'sorted(m["objects"])')"
[ "$(mjson "$A" "$c1" 'm["config"]["policy"]')" = persistent ] || fail "manifest config lacks the policy"
[ "$(mjson "$A" "$c1" 'm["seq"]')" = 2 ] || fail "powered-off checkpoint is not number 2"
[ "$(on "$A" store fsck >/dev/null 2>&1; echo $?)" = 0 ] || fail "store fsck fails on A"
c2=$(on "$A" session checkpoint p2 2>"$T/c2.err") || fail "checkpoint of stopped p2: $(cat "$T/c2.err")"
log "$(cat "$T/c2.err")"
[ "$(mjson "$A" "$c2" 'm["config"]["policy"]')" = pooled ] || fail "p2's manifest is not pooled"
[ "$(mjson "$A" "$c2" '"ram" in m["objects"] or "devstate" in m["objects"]')" = False ] || fail "p2 has RAM"
# refs: latest and the numbered one
on "$A" session show p1 | grep -q "^checkpoints: 2, last $c1" || fail "A's catalog does not record $c1"
[ -e "$A/store/refs/sessions/alice/p1/latest" ] && [ -e "$A/store/refs/sessions/alice/p1/000002" ] ||
	fail "no refs for p1's checkpoint: $(find "$A/store/refs" -type f)"
# a checkpoint of the same stopped disk again: nothing new
c1b=$(on "$A" session checkpoint p1 2>"$T/c1b.err") || fail "second checkpoint of stopped p1"
[ "$(chunks_new "$T/c1b.err")" = 0 ] || fail "an unchanged disk added chunks: $(cat "$T/c1b.err")"

# --- to host B: what it had before (the master, the running checkpoint: a pre-copy),
# --- then only the disk deltas that it lacks --------------------------------------------------------
on "$A" bundle create -o "$T/before.bundle" images/deb sessions/alice/p1/000001 >/dev/null
on "$B" bundle apply "$T/before.bundle" >/dev/null || fail "applying the first bundle on B"
out=$(on "$A" bundle create -o "$T/delta.bundle" --since images/deb --since sessions/alice/p1/000001 \
	sessions/alice/p1/latest sessions/bob/p2/latest) || fail "bundle of the checkpoints"
log "$out (the first bundle: $(stat -c %s "$T/before.bundle") bytes)"
delta_chunks=$(printf '%s' "$out" | sed -nE 's/.* ([0-9]+) chunks.*/\1/p')
[ -n "$delta_chunks" ] && [ "$delta_chunks" -le 40 ] || fail "the disk deltas are $delta_chunks chunks: $out"
on "$B" bundle apply "$T/delta.bundle" >/dev/null || fail "applying the delta bundle on B"

# --- adopt on B: both stay stopped -------------------------------------------------------------------------------
must_fail on "$B" session adopt p2 "$c1b"
expect_match "$ERR" "belongs to session 'p1', not 'p2'"
expect_one_line "$ERR"
must_fail on "$B" session adopt p1 0000000000000000000000000000000000000000000000000000000000000001
expect_match "$ERR" "cannot adopt session 'p1': checkpoint 000000000000 is not in the store"
must_succeed on "$B" session adopt p1 "$c1b" --epoch 3
expect_state_on "$B" p1 stopped
on "$B" session show p1 | grep -Eq '^owner: +local \(epoch 3\)$' || fail "p1 not at epoch 3 on B"
on "$B" session show p1 | grep -q '^policy: *persistent$' || fail "p1's policy did not travel"
must_fail on "$B" session adopt p1 "$c1b"
expect_match "$ERR" "session 'p1' is owned here already"
qemu-img info "$B/sessions/p1/overlay.qcow2" | grep -q "backing file: $B/masters/.*\.raw" ||
	fail "p1's overlay on B is not rebased: $(qemu-img info "$B/sessions/p1/overlay.qcow2")"
disk_file "$B" p1 /data/ticks "$T/p1b.ticks"
cmp -s "$T/p1.ticks" "$T/p1b.ticks" || fail "p1's disk on B differs from A's"
[ "$(on "$B" store fsck >/dev/null 2>&1; echo $?)" = 0 ] || fail "store fsck fails on B"
# the old path: restore with a 64-hex id adopts an unknown session, powered off -> stopped
out=$(on "$B" session restore p2 "$c2" 2>&1) || fail "restore of p2's powered-off checkpoint: $out"
expect_match "$out" "powered-off checkpoint .* \(stopped\)"
expect_state_on "$B" p2 stopped
on "$B" session show p2 | grep -q '^policy: *pooled$' || fail "p2's policy did not travel"

# --- bad input --------------------------------------------------------------------------------------
must_fail on "$B" session finalize nosuch
expect_match "$ERR" "session 'nosuch' not found"
expect_one_line "$ERR"
# a profile disk that cannot be made: 'profiles' is a file
touch "$B/profiles"
must_fail on "$B" session finalize p1
expect_match "$ERR" "cannot finalize session 'p1': cannot create the profile disk of user 'alice'"
expect_one_line "$ERR"
expect_state_on "$B" p1 stopped
rm "$B/profiles"
# a running session is not finalized
must_succeed on "$A" session start p2
must_fail on "$A" session finalize p2
expect_match "$ERR" "session 'p2' is running \(stop it first"
expect_one_line "$ERR"
# a crashed one neither, nor checkpointed powered off
kill -9 "$(cat "$A/sessions/p2/qemu.pid")"
wait_for 10 eval '[ "$(state_on "$A" p2)" = crashed ]' || fail "p2 on A is not crashed"
must_fail on "$A" session finalize p2
expect_match "$ERR" "session 'p2' crashed"
must_fail on "$A" session checkpoint p2
expect_match "$ERR" "session 'p2' crashed"
expect_one_line "$ERR"
# a guest that does not power off in time: ended hard, disk kept even when pooled
must_fail on "$B" session finalize --timeout 1 p2
expect_match "$ERR" "session 'p2' did not power off within 1 s"
expect_one_line "$ERR"
expect_state_on "$B" p2 stopped
disk_file "$B" p2 /data/ticks "$T/p2b.ticks"
cmp -s "$T/p2.ticks" "$T/p2b.ticks" || fail "a failed finalize changed p2's disk"

# a guest that reboots (here: panics, no init) instead of powering off: a pooled disk is not reset
must_succeed on "$B" session create p3 --user carol --policy pooled --image deb --ram 128M \
	--kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" --append 'console=ttyS0 quiet panic=-1 rdinit=/none'
ino=$(stat -c %i "$B/sessions/p3/overlay.qcow2")
must_fail on "$B" session finalize p3
expect_match "$ERR" "session 'p3': its log-off boot ended without a power-off \(guest-reset\); its disk was kept"
expect_one_line "$ERR"
[ "$(stat -c %i "$B/sessions/p3/overlay.qcow2")" = "$ino" ] || fail "p3's disk was replaced"
expect_state_on "$B" p3 stopped

# --- finalize p1 (persistent) ------------------------------------------------------------------------------
t0=$(date +%s%N)
out=$(on "$B" session finalize p1 2>"$T/f1.err") || fail "finalize p1: $(cat "$T/f1.err")"
f1_ms=$((($(date +%s%N) - t0) / 1000000))
log "$(cat "$T/f1.err")"
log "$out"
expect_match "$out" "^roam-guest: logoff done user=alice last='tick $p1_last boot="
expect_match "$(cat "$T/f1.err")" "policy persistent: disk kept"
expect_state_on "$B" p1 stopped
expect_match "$(on "$B" session log p1)" 'roam-guest: finalizing \(roam\.logoff=1\)' "p1's console (booted into log-off)"
[ -s "$B/profiles/alice.img" ] || fail "no profile disk for alice"
profile_file "$B" alice /alice/ticks "$T/alice.ticks"
cmp -s "$T/p1.ticks" "$T/alice.ticks" || fail "alice's profile ticks differ from p1's disk"
profile_file "$B" alice /alice/logoff-done "$T/alice.done"
[ "$(cat "$T/alice.done")" = "$(tail -n 1 "$T/p1.ticks")" ] || fail "alice's logoff-done is '$(cat "$T/alice.done")'"
disk_file "$B" p1 /data/ticks "$T/p1c.ticks"
cmp -s "$T/p1.ticks" "$T/p1c.ticks" || fail "persistent p1 lost its /data/ticks"

# --- finalize p2 (pooled) -----------------------------------------------------------------------------------
t0=$(date +%s%N)
out=$(on "$B" session finalize p2 2>"$T/f2.err") || fail "finalize p2: $(cat "$T/f2.err")"
f2_ms=$((($(date +%s%N) - t0) / 1000000))
log "$(cat "$T/f2.err")"
log "$out"
expect_match "$out" "^roam-guest: logoff done user=bob last='tick $p2_last boot="
expect_match "$(cat "$T/f2.err")" "policy pooled: disk reset to the master"
expect_state_on "$B" p2 stopped
profile_file "$B" bob /bob/ticks "$T/bob.ticks"
cmp -s "$T/p2.ticks" "$T/bob.ticks" || fail "bob's profile ticks differ from p2's disk"
profile_file "$B" bob /bob/logoff-done "$T/bob.done"
[ "$(cat "$T/bob.done")" = "$(tail -n 1 "$T/p2.ticks")" ] || fail "bob's logoff-done is '$(cat "$T/bob.done")'"
profile_file "$B" bob /alice/ticks "$T/x"
[ ! -s "$T/x" ] || fail "bob's profile disk has alice's files"
disk_file "$B" p2 /data/ticks "$T/p2c.ticks"
[ ! -s "$T/p2c.ticks" ] || fail "pooled p2 still has /data/ticks after finalize"
qemu-img compare "$B/sessions/p2/overlay.qcow2" "$B/masters/"*.raw >/dev/null ||
	fail "pooled p2's disk is not the master after finalize"
qemu-img info "$B/sessions/p2/overlay.qcow2" | grep -q "backing file: $B/masters/.*\.raw" ||
	fail "p2's fresh overlay does not point at B's master"
# it boots afresh: the counter starts at 1 with no earlier ticks
must_succeed on "$B" session start p2
n0=$(ticks_on "$B" p2 | wc -l)
wait_for 90 eval '[ "$(ticks_on "$B" p2 | wc -l)" -gt "$n0" ]' || fail "p2 does not tick after the reset"
first=$(ticks_on "$B" p2 | tail -n +$((n0 + 1)) | head -n 1)
[ "$first" = 1 ] || fail "pooled p2 continued at tick $first after the reset"
must_succeed on "$B" session stop p2
# profile disks outlive their sessions
must_succeed on "$B" session rm p2
[ -s "$B/profiles/bob.img" ] || fail "session rm removed bob's profile disk"

echo "ok: powered-off checkpoint $new1/$all1 chunks new; finalize persistent ${f1_ms} ms, pooled ${f2_ms} ms"
