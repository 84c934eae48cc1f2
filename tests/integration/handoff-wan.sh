#!/usr/bin/env bash
# The portable session end to end, over an emulated WAN (100 Mbit/s, 25 ms
# each way): a session runs on the server; the laptop daemon pairs, hoards the
# master image and pre-copies the session; take offline; the link is cut and
# the session keeps running; the laptop crashes and its daemon brings the
# session back from a local checkpoint; the link returns; take online (live);
# offline again, powered off on the laptop and taken online powered-off (the
# server runs the guest's log-off into the user's profile disk); the laptop
# stages the RAM of the session running on the server and drops it while the
# server has it stopped (take offline and online patch staged RAM); offline
# again, then the laptop is lost: reclaim on the server, and the stale laptop
# is refused with its state kept. The counter continues at every step and the
# server's /data/ticks has no gap and no repeat.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../netns.sh"
requires qemu-system-x86_64
requires qemu-img
requires debugfs
requires_root
export ROAM_ACCEL=tcg

need_guest

wan_setup 100 25
cd "$T"
export DC_HOME=$T/dc LT_HOME=$T/laptop

PORT=$(free_port) LPORT=$(free_port)
SERVER=http://127.0.0.1:$PORT   # the server as the laptop sees it (through the relay)

roam_dc image import deb "$GUEST/master.img" >/dev/null 2>&1
ALICE=$(roam_dc token create --role user --user alice)
roam_dc session create s1 --image deb --user alice --ram 256M --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" >/dev/null
roam_dc session start s1 >/dev/null

ROAM_HOME=$DC_HOME in_dc "$ROAM_BIN" serve --listen "$DC_IP:$PORT" --offline-days 1 -v >dc.log 2>&1 &
cleanup_add "kill $! 2>/dev/null"
wait_for 10 wan_listening "$DC_NS" "$PORT" || fail "server daemon did not start"
wan_relay "$PORT"

start_laptop() {
        ROAM_HOME=$LT_HOME in_laptop "$ROAM_BIN" serve --role laptop --listen "127.0.0.1:$LPORT" \
                --server "$SERVER" --token "$ALICE" --name lt1 --precopy-interval 2 -v >>lt.log 2>&1 &
        LT_PID=$!
        cleanup_add "kill $LT_PID 2>/dev/null"
        wait_for 10 wan_listening "$LT_NS" "$LPORT" || { cat lt.log >&2; fail "laptop daemon did not start"; }
}
state_on() { "$1" session list | awk '$1 == "s1" { print $4 }'; }
is_state() { [ "$(state_on "$1")" = "$2" ]; }
last_tick_on() { "$1" session log s1 | grep -E '^tick [0-9]+$' | tail -n 1 | awk '{ print $2 }'; }
tick_above() { [ "$(last_tick_on "$1")" -gt "$2" ] 2>/dev/null; }
precopied() {
        roam_laptop status --json >/dev/null 2>&1 &&
                ROAM_HOME=$LT_HOME in_laptop curl -s -H "Authorization: Bearer $(cat "$LT_HOME/local.token")" \
                        "http://127.0.0.1:$LPORT/v1/handoff" | python3 -c '
import json, sys
s = [x for x in json.load(sys.stdin)["sessions"] if x["name"] == "s1"]
sys.exit(0 if s and s[0]["precopy_at"] > 0 else 1)'
}

wait_for 90 tick_above roam_dc 3 || fail "no ticks on the server"
start_laptop
log "pairing: the laptop hoards the image and pre-copies the session"
wait_for 90 precopied || { cat lt.log >&2; fail "no pre-copy reached the laptop"; }
roam_laptop status >&2

log "take offline"
out=$(roam_laptop offline s1) || { cat lt.log dc.log >&2; fail "take offline failed"; }
log "$out"
expect_match "$out" "downtime [0-9]+ ms"
# the pre-copy's RAM file was written ahead; the restore patched what changed
expect_match "$out" "RAM staged ahead" "take offline's output"
# the remainder came with the grant, changed chunks as their changed pages
# (the server's pre-copy has a page index: docs/sync-protocol.md)
expect_match "$out" "sent after the click with the grant, [1-9][0-9]* chunks as their changed pages" \
        "take offline's output"
# and the RAM's index as the entries that changed since the pre-copy's
expect_match "$out" "chunks as their changed pages, [1-9][0-9]* index(es)? as changes to the pre-copy's" \
        "take offline's output"
before=$(last_tick_on roam_dc)
is_state roam_laptop running || fail "s1 is not running on the laptop"
LT_RAM=$(roam_laptop session show s1 2>/dev/null | sed -n 's/^ram: .* in \(.*\)\/s1.ram)$/\1/p') || true
is_state roam_dc away || fail "the server still claims s1: $(state_on roam_dc)"
must_fail roam_dc session start s1; expect_match "$ERR" "owned by laptop 'lt1' \\(id [0-9a-f]{32}\\) since epoch "
wait_for 60 tick_above roam_laptop "$before" || fail "the counter does not continue on the laptop"

log "cut the link: the session keeps running"
link_down
t=$(last_tick_on roam_laptop)
wait_for 30 tick_above roam_laptop $((t + 10)) || fail "the session stalled with the link down"

log "the laptop crashes: its daemon brings the session back from a local checkpoint"
sleep 4   # let the laptop daemon take a local checkpoint
kill -9 "$LT_PID"; wait "$LT_PID" 2>/dev/null || true
kill -9 "$(cat "$LT_HOME/sessions/s1/qemu.pid")"
wait_for 10 is_state roam_laptop crashed || fail "s1 is not crashed after the kill"
start_laptop
wait_for 60 is_state roam_laptop running || { cat lt.log >&2; fail "the laptop daemon did not restore s1"; }
t=$(last_tick_on roam_laptop)
wait_for 60 tick_above roam_laptop "$t" || fail "no ticks after the restore on the laptop"

log "restore the link; take online (live)"
link_up
sleep 3
out=$(roam_laptop online s1) || { tail -n 20 lt.log dc.log >&2; fail "take online failed"; }
log "$out"
expect_match "$out" "RAM staged ahead" "take online's output"
# one round trip in the pause: the remainder went with the move-in, as pages
expect_match "$out" "sent after the click with the move-in, [1-9][0-9]* chunks as their changed pages, [1-9][0-9]* index(es)? as changes to the pre-copy's" \
        "take online's output"
# the laptop sent it while it was made (chunked, signed in the trailer)
grep -q "take online of 's1': .*then sent while made" lt.log ||
	fail "the laptop did not send the remainder while it was made: $(grep "take online of" lt.log)"
# the server stored the remainder's chunk records while the rest of it came
grep -q "move-in of 's1': .*; [1-9][0-9]* chunk records of it taken while it came" dc.log ||
	fail "the server did not store the move-in's remainder while it came: $(grep "move-in of" dc.log)"
before=$(last_tick_on roam_laptop)
is_state roam_dc running || fail "s1 does not run on the server after take online"
is_state roam_laptop away || fail "the laptop still claims s1"
wait_for 60 tick_above roam_dc "$before" || fail "the counter does not continue on the server"

log "offline again, power off on the laptop, take online powered-off"
wait_for 60 precopied || true
out=$(roam_laptop offline s1) || fail "second take offline failed"
log "$out"
roam_laptop session stop s1 >/dev/null || fail "power-off on the laptop failed"
is_state roam_laptop stopped || fail "s1 is not stopped on the laptop"
out=$(roam_laptop online s1) || { tail -n 20 lt.log dc.log >&2; fail "take online (powered off) failed"; }
log "$out"
is_state roam_dc stopped || fail "s1 is '$(state_on roam_dc)' on the server after the powered-off take online"
is_state roam_laptop away || fail "the laptop still claims s1"
prof=$DC_HOME/profiles/alice.img
[ -f "$prof" ] || fail "no profile disk for alice on the server"
expect_match "$(ext4_file "$prof" /alice/logoff-done)" tick "alice's logoff-done (the log-off hook on the server)"
expect_match "$(ext4_file "$prof" /alice/ticks)" '^tick' "alice's ticks on her profile disk"
roam_dc session start s1 >/dev/null
wait_for 90 tick_above roam_dc 3 || fail "no ticks after starting s1 again on the server"

log "the laptop stages the running session's RAM, and drops it while the server has it stopped"
has_staged() { ls "$LT_RAM"/s1.staged.* >/dev/null 2>&1; }
no_staged() { ! has_staged; }
[ -n "$LT_RAM" ] || fail "no RAM directory of the laptop"
wait_for 60 has_staged || fail "the laptop did not stage the RAM of the session running on the server"
roam_dc session stop s1 >/dev/null
wait_for 30 no_staged || fail "the laptop keeps a staged RAM file of a session stopped on the server"
roam_dc session start s1 >/dev/null
wait_for 90 tick_above roam_dc 3 || fail "no ticks after starting s1 once more on the server"
wait_for 60 has_staged || fail "the laptop did not stage the RAM again"

log "offline again, then the laptop is lost: reclaim"
out=$(roam_laptop offline s1) || fail "third take offline failed"
log "$out"
expect_match "$out" "RAM staged ahead" "the third take offline's output"
link_down
out=$(roam_dc session reclaim s1) || fail "reclaim failed"
log "$out"
expect_match "$out" "reclaimed session 's1'"
is_state roam_dc running || fail "s1 does not run on the server after reclaim"
link_up
sleep 2
must_fail roam_laptop online s1
expect_match "$ERR" "stale|epoch"
roam_dc store fsck >/dev/null || fail "server store inconsistent"
ROAM_HOME=$DC_HOME "$ROAM_BIN" store fsck >/dev/null
ls "$DC_HOME/store/refs/sessions/alice/s1/" | grep -q '^in-e' || fail "the stale laptop's state was not kept"

log "power off on the server; /data/ticks is gap-free"
roam_dc session stop s1 >/dev/null
qemu-img convert -O raw "$DC_HOME/sessions/s1/overlay.qcow2" "$T/disk.raw"
debugfs -R 'cat /data/ticks' "$T/disk.raw" 2>/dev/null >"$T/ticks"
n=$(awk '!/^tick [0-9]+ boot=/ { exit 1 } $2 != NR { exit 1 } END { print NR }' "$T/ticks") ||
        fail "/data/ticks has a gap or a repeat"
# three boots: the first, the one after the powered-off take online, and the
# one after the stop on the server
[ "$(awk '{ print $3 }' "$T/ticks" | sort -u | wc -l)" = 3 ] || fail "/data/ticks does not span exactly three boots"
log "ok: $n ticks"
