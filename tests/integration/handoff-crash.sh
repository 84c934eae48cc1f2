#!/usr/bin/env bash
# Crash safety of hand-overs: a daemon is killed (SIGKILL, through
# ROAM_FAILPOINT) at chosen steps of take offline and take online; after it
# restarts, exactly one side runs the session, the owner records agree, and
# the hand-over can be done again. A laptop daemon killed after the grant or
# after the pull finishes the take offline by itself after its restart. Also
# the powered-off take online: the
# laptop dies before asking the server to take the disk delta (it keeps the
# session), the server dies after taking it back and before or after the
# log-off (after its restart it logs it off again from the laptop's disk; the
# laptop learns that the server has it).
. "$(dirname "$0")/../lib.sh"
requires qemu-system-x86_64
requires curl
requires debugfs
export ROAM_ACCEL=tcg

need_guest

S=$T/server L=$T/laptop
on() { local h=$1; shift; ROAM_HOME=$h "$ROAM_BIN" "$@"; }
state() { on "$1" session list 2>/dev/null | awk '$1 == "s1" { print $4 }'; }
owner_is() { on "$1" session show s1 2>/dev/null | grep -Eq "^owner: +$2 "; }
running_count() {
        local n=0
        [ "$(state "$S")" = running ] && n=$((n + 1))
        [ "$(state "$L")" = running ] && n=$((n + 1))
        echo $n
}
one_runs_on() { # HOME: exactly one instance runs, on HOME, and it owns it
        [ "$(running_count)" = 1 ] && [ "$(state "$1")" = running ] && owner_is "$1" local
}

SP=$(free_port) LP=$(free_port)
on "$S" image import deb "$GUEST/master.img" >/dev/null 2>&1
ALICE=$(on "$S" token create --role user --user alice)
on "$S" session create s1 --image deb --user alice --ram 256M --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" >/dev/null
on "$S" session start s1 >/dev/null

server_up() { # [FAILPOINT]
        ROAM_FAILPOINT=${1:-} ROAM_HOME=$S "$ROAM_BIN" serve --listen "127.0.0.1:$SP" >>"$T/server.log" 2>&1 &
        SPID=$!
        cleanup_add "kill $SPID 2>/dev/null"
        wait_for 10 curl -s -o /dev/null "http://127.0.0.1:$SP/v1/info" || fail "server daemon did not start"
}
laptop_up() { # [FAILPOINT]
        ROAM_FAILPOINT=${1:-} ROAM_HOME=$L "$ROAM_BIN" serve --role laptop --listen "127.0.0.1:$LP" \
                --server "http://127.0.0.1:$SP" --token "$ALICE" --name lt --precopy-interval 2 >>"$T/laptop.log" 2>&1 &
        LPID=$!
        cleanup_add "kill $LPID 2>/dev/null"
        wait_for 10 curl -s -o /dev/null "http://127.0.0.1:$LP/v1/info" || fail "laptop daemon did not start"
}
died() { # PID: the daemon was killed by its failpoint
        local pid=$1
        wait_for 60 bash -c "! kill -0 $pid 2>/dev/null" || fail "the daemon did not die at its failpoint"
        wait "$pid" 2>/dev/null || true
}
check() { # HOME WHAT
        wait_for 60 one_runs_on "$1" || {
                tail -n 15 "$T/server.log" "$T/laptop.log" >&2
                fail "$2: server '$(state "$S")', laptop '$(state "$L")'; expected it running only on $(basename "$1")"
        }
        log "$2: runs only on $(basename "$1")"
}

log "server dies after the final checkpoint, before giving the session away"
server_up offline-grant:after-checkpoint
laptop_up
wait_for 60 bash -c "ROAM_HOME=$S $ROAM_BIN session log s1 | grep -q '^tick 3'" || fail "no ticks"
must_fail on "$L" offline s1
died "$SPID"
server_up
check "$S" "after the restart"

log "server dies right after giving it away: the laptop asks again and gets it"
kill "$SPID"; wait "$SPID" 2>/dev/null || true
server_up offline-grant:after-owner
must_fail on "$L" offline s1
died "$SPID"
server_up
owner_is "$S" "laptop 'lt'" || fail "the server does not record the laptop as owner"
must_succeed on "$L" offline s1
check "$L" "after asking again"

log "laptop dies after the grant, before the pull: after its restart it finishes the take offline itself"
on "$L" online s1 >/dev/null || fail "take online failed"
check "$S" "after taking it online"
kill "$LPID"; wait "$LPID" 2>/dev/null || true
laptop_up offline:after-grant
must_fail on "$L" offline s1
died "$LPID"
owner_is "$S" "laptop 'lt'" || fail "the server does not record the laptop as owner"
laptop_up
check "$L" "after the laptop's restart"
grep -q "take offline finished" "$T/laptop.log" || fail "the laptop daemon did not say it finished the take offline"
out=$(on "$L" offline s1) || fail "a repeated take offline failed"
expect_match "$out" "already" "a repeated take offline"

log "laptop dies after the pull, before the restore: the same"
on "$L" online s1 >/dev/null || fail "take online failed"
check "$S" "after taking it online"
kill "$LPID"; wait "$LPID" 2>/dev/null || true
laptop_up offline:after-pull
must_fail on "$L" offline s1
died "$LPID"
laptop_up
check "$L" "after the laptop's restart"

log "laptop dies in the middle of take online, after pushing: it resumes the session itself"
kill "$LPID"; wait "$LPID" 2>/dev/null || true
laptop_up move:after-push
must_fail on "$L" online s1
died "$LPID"
laptop_up
check "$L" "after the laptop's restart"

log "server dies after resuming the session, before answering: nobody guesses; both settle"
kill "$SPID"; wait "$SPID" 2>/dev/null || true
server_up move-in:after-restore
must_fail on "$L" online s1
died "$SPID"
[ "$(running_count)" -le 1 ] || fail "the session runs in two places"
server_up
wait_for 60 owner_is "$L" "http://127.0.0.1:$SP" || { tail -n 15 "$T/laptop.log" >&2; fail "the laptop did not settle"; }
check "$S" "after both settled"

log "and a clean hand-over still works"
must_succeed on "$L" offline s1
check "$L" "after a clean take offline"

# ---- take online of a powered-off session (disk delta, log-off on the server)
no_marker() { [ ! -e "$1/sessions/s1/handover" ]; }
stopped_owned_by() { # HOME: stopped there, owned there, and runs nowhere
        [ "$(state "$1")" = stopped ] && owner_is "$1" local && [ "$(running_count)" = 0 ]
}
log "powered off; the laptop dies before asking the server to take it: it keeps it"
on "$L" session stop s1 >/dev/null || fail "power-off on the laptop failed"
kill "$LPID"; wait "$LPID" 2>/dev/null || true
laptop_up online-off:before-finalize
must_fail on "$L" online s1
died "$LPID"
laptop_up
wait_for 60 no_marker "$L" || { tail -n 15 "$T/laptop.log" >&2; fail "the laptop did not settle its hand-over"; }
stopped_owned_by "$L" || fail "after the laptop's restart: laptop '$(state "$L")', server '$(state "$S")'"
owner_is "$S" "laptop 'lt'" || fail "the server does not record the laptop as owner any more"

log "the server dies after taking it back, before the log-off: it logs it off after its restart"
kill "$SPID"; wait "$SPID" 2>/dev/null || true
server_up finalize-in:after-adopt
must_fail on "$L" online s1
died "$SPID"
server_up
wait_for 120 owner_is "$L" "http://127.0.0.1:$SP" || { tail -n 15 "$T/laptop.log" >&2; fail "the laptop did not learn that the server has it"; }
wait_for 180 no_marker "$S" || { tail -n 15 "$T/server.log" >&2; fail "the server did not finish the log-off"; }
stopped_owned_by "$S" || fail "after the server's restart: server '$(state "$S")', laptop '$(state "$L")'"
grep -q "logged off again from the laptop's disk" "$T/server.log" || fail "the server's log does not show the log-off"
expect_match "$(ext4_file "$S/profiles/alice.img" /alice/logoff-done)" tick \
        "alice's logoff-done (the log-off hook on her profile disk)"

log "once more, the server dies after the log-off, before its checkpoint: it does it again from the laptop's disk"
on "$S" session start s1 >/dev/null
wait_for 60 bash -c "ROAM_HOME=$S $ROAM_BIN session log s1 | tail -n 3 | grep -q '^tick'" || fail "no ticks after the start"
must_succeed on "$L" offline s1
on "$L" session stop s1 >/dev/null || fail "power-off on the laptop failed"
before=$(grep -c "logged off again" "$T/server.log")
kill "$SPID"; wait "$SPID" 2>/dev/null || true
server_up finalize-in:after-finalize
must_fail on "$L" online s1
died "$SPID"
server_up
wait_for 120 owner_is "$L" "http://127.0.0.1:$SP" || fail "the laptop did not learn that the server has it"
wait_for 180 no_marker "$S" || fail "the server did not finish the log-off"
stopped_owned_by "$S" || fail "after the server's restart: server '$(state "$S")', laptop '$(state "$L")'"
[ "$(grep -c "logged off again" "$T/server.log")" -gt "$before" ] || fail "the server did not log it off again"
log ok
