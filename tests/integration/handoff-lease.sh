#!/usr/bin/env bash
# The offline lease: a server allows a session offline for --offline-days
# without contact; the laptop renews it (a signed request) while it reaches
# the server; past it the laptop refuses to start or restore the session
# and says why, and taking it online still works.
. "$(dirname "$0")/../lib.sh"
requires qemu-system-x86_64
requires curl
export ROAM_ACCEL=tcg

need_guest

S=$T/server L=$T/laptop
on() { local h=$1; shift; ROAM_HOME=$h "$ROAM_BIN" "$@"; }
state() { on "$1" session list 2>/dev/null | awk '$1 == "s1" { print $4 }'; }
SP=$(free_port) LP=$(free_port)
on "$S" image import deb "$GUEST/master.img" >/dev/null 2>&1
ALICE=$(on "$S" token create --role user --user alice)
on "$S" session create s1 --image deb --user alice --ram 256M --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" >/dev/null
on "$S" session start s1 >/dev/null
# a lease of 6 seconds
start_daemon "$S" "127.0.0.1:$SP" --offline-days 0.00007
SPID=$DAEMON_PID
start_daemon "$L" "127.0.0.1:$LP" --role laptop --server "http://127.0.0.1:$SP" --token "$ALICE" --name lt \
        --precopy-interval 2
wait_for 60 bash -c "ROAM_HOME=$S $ROAM_BIN session log s1 | grep -q '^tick 3'" || fail "no ticks"

must_succeed on "$L" offline s1
[ "$(state "$L")" = running ] || fail "not running on the laptop"
[ -f "$L/sessions/s1/lease" ] || fail "no lease recorded on the laptop"
log "while the laptop reaches the server, it renews the lease"
first=$(cat "$L/sessions/s1/lease")
wait_for 20 bash -c "[ \"\$(cat $L/sessions/s1/lease)\" != $first ]" || fail "the lease was not renewed"
log "the server goes away: no renewal from now on"
kill "$SPID"; wait "$SPID" 2>/dev/null
log "within the lease: stop and start again"
on "$L" session stop s1 >/dev/null
must_succeed on "$L" session start s1
# the power button works once the guest says it is ready
wait_for 90 bash -c "[ \"\$(ROAM_HOME=$L $ROAM_BIN session log s1 | grep -c '^roam-guest: ready')\" -ge 1 ]" ||
        fail "the guest did not come up again"
sleep 7
log "past the lease: the laptop refuses to start it and says why"
on "$L" session stop s1 >/dev/null
must_fail on "$L" session start s1
expect_one_line "$ERR"
expect_match "$ERR" "offline longer than its policy allows"
[ "$(state "$L")" = stopped ] || fail "the session is '$(state "$L")' after a refused start"
log "taking it online still works (powered off: the server finalizes it)"
start_daemon "$S" "127.0.0.1:$SP" --offline-days 0.00007
must_succeed on "$L" online s1
[ "$(state "$S")" = stopped ] || fail "the server has it '$(state "$S")'"
must_succeed on "$S" session start s1
log ok
