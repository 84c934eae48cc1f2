#!/usr/bin/env bash
# Checkpoint history and rollback: three checkpoints of a running session are
# listed newest first (time, host, epoch, size); a rollback to the first turns
# the guest's counter back and keeps the present as a branch (nothing lost:
# rolling forward to the branch brings the counter back); unknown, foreign
# and malformed checkpoints are refused and change nothing; retention in gc
# (--keep-last) drops old numbered checkpoints but never the latest, the
# current parent or a branch, and the store stays consistent.
. "$(dirname "$0")/../lib.sh"
requires qemu-system-x86_64
requires python3
export ROAM_ACCEL=tcg

need_guest
export ROAM_HOME=$T/home
roam image import deb "$GUEST/master.img" >/dev/null 2>&1
common=(--image deb --user alice --ram 256M --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img")
roam session create s1 "${common[@]}" >/dev/null
roam session create s2 "${common[@]}" >/dev/null
roam session start s1 >/dev/null
roam session start s2 >/dev/null
last_tick() { roam session log s1 | grep -E '^tick [0-9]+$' | tail -n 1 | awk '{ print $2 }'; }
tick_above() { [ "$(last_tick)" -gt "$1" ] 2>/dev/null; }
hist() { roam session history s1 --json | python3 -c "import json, sys; h = json.load(sys.stdin)['checkpoints']; $1"; }
numbered() { hist 'print(len([c for c in h if not c["branch"]]))'; }
state() { roam session list | awk '$1 == "s1" { print $4 }'; }

wait_for 90 tick_above 3 || fail "no ticks"
must_succeed roam session checkpoint s1
T1=$(last_tick)
wait_for 60 tick_above $((T1 + 6)) || fail "no ticks after checkpoint 1"
must_succeed roam session checkpoint s1
wait_for 60 tick_above $((T1 + 12)) || fail "no ticks after checkpoint 2"
must_succeed roam session checkpoint s1
T3=$(last_tick)
must_succeed roam session checkpoint s2
S2_CK=$(roam session history s2 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["checkpoints"][0]["id"])')

log "history: newest first, with time, host, epoch and size"
out=$(roam session history s1) || fail "history failed"
log "$out"
[ "$(numbered)" = 3 ] || fail "history does not list 3 checkpoints"
[ "$(hist 'print(h[0]["ref"], h[0]["latest"], h[-1]["ref"])')" = "000003 True 000001" ] || fail "history is not newest first"
hist 'sys.exit(0 if all(c["bytes"] > 0 and c["epoch"] == 0 and len(c["host"]) == 32 and not c["powered_off"] for c in h) else 1)' ||
        fail "history lacks size, epoch or host"
expect_match "$out" "000003 .* here +0 live "
roam session history s1 --json | python3 "$SRC_DIR/tests/tools/json-shape.py" "$SRC_DIR/docs/cli-json.md" \
        'roam session history --json' || fail "session history --json does not match docs/cli-json.md"

log "rollback to checkpoint 1: the counter goes back, the present is kept"
must_succeed roam session rollback s1 1
log "$OUT"
expect_match "$OUT" "rolled back to .* kept as branch-[0-9]+"
BRANCH=$(sed -nE 's/.*kept as (branch-[0-9]+).*/\1/p' <<<"$OUT")
[ "$(state)" = running ] || fail "s1 is '$(state)' after the rollback"
# the console log is appended across restores: where the counter jumps, a
# restored guest took over, counting on from its checkpoint's counter
jump() { # "FROM TO" of the last jump of the counter (a step other than +1), or nothing
        roam session log s1 | awk '/^tick [0-9]+$/ { if (seen && $2 != last + 1) j = last " " $2; last = $2; seen = 1 }
                                   END { print j }'
}
jumped_below() { local j; j=$(jump); [ -n "$j" ] && [ "${j#* }" -lt "$1" ]; }
wait_for 30 jumped_below "$T3" || fail "the counter did not go back after the rollback: $(jump)"
read -r X back <<<"$(jump)"
log "the rollback: the counter went from $X back to $back (it was $T1 at checkpoint 1, $T3 at checkpoint 3)"
[ "$back" -le $((T1 + 3)) ] || fail "the counter did not go back to checkpoint 1's ($back, checkpoint 1 at $T1)"
[ "$(hist 'print(len([c for c in h if c["branch"]]))')" = 1 ] || fail "no branch in the history"
[ "$(hist 'print([c["ref"] for c in h if c["current"]][0])')" = 000001 ] || fail "checkpoint 1 is not the current parent"

log "bad rollbacks: refused, nothing changes"
before=$(roam session history s1 --json)
must_fail roam session rollback s1 99
expect_one_line "$ERR"; expect_match "$ERR" "no checkpoint '99'"
must_fail roam session rollback s1 "$S2_CK"
expect_one_line "$ERR"; expect_match "$ERR" "belongs to session 's2'"
must_fail roam session rollback s1 zz
expect_one_line "$ERR"; expect_match "$ERR" "neither 'latest', a number nor a 64-digit id"
must_fail roam session rollback s1 branch-1
expect_one_line "$ERR"; expect_match "$ERR" "no checkpoint 'branch-1'"
must_fail roam session rollback nope 1
expect_one_line "$ERR"; expect_match "$ERR" "session 'nope' not found"
[ "$(roam session history s1 --json)" = "$before" ] || fail "a refused rollback changed the history"
[ "$(state)" = running ] || fail "a refused rollback stopped s1"

log "roll forward to the branch: the counter is back where it was"
must_succeed roam session rollback s1 "$BRANCH"
# the branch is the state at the rollback: the counter goes on from about X
jumped_to_branch() { local j; j=$(jump); [ -n "$j" ] && [ "${j#* }" -ge "$X" ] && [ "${j#* }" -le $((X + 3)) ]; }
wait_for 30 jumped_to_branch || fail "the branch did not bring the counter back to $X: last jump $(jump)"
log "rolled forward: the counter jumped $(jump)"

log "retention: gc --keep-last 1"
n_before=$(numbered)
must_succeed roam session stop s1
must_succeed roam session stop s2
must_succeed roam store gc --keep-last 1
log "$OUT"
expect_match "$OUT" "retention: [1-9][0-9]* checkpoints dropped"
n_after=$(numbered)
[ "$n_after" -lt "$n_before" ] || fail "retention dropped nothing ($n_before -> $n_after)"
hist 'sys.exit(0 if any(c["latest"] for c in h) and any(c["branch"] for c in h) and any(c["current"] for c in h) else 1)' ||
        fail "retention dropped the latest, the current parent or a branch"
must_succeed roam store fsck
must_succeed roam session restore s1
[ "$(state)" = running ] || fail "s1 does not restore from its latest after retention"
log ok
