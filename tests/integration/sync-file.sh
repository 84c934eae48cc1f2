#!/usr/bin/env bash
# Sync files: a session taken offline and online by file, with no link
# between server and laptop at all (every laptop command runs in a network
# namespace of its own with nothing in it). The laptop is paired by hand
# (laptop init / laptop add) and gets the master image by bundle. Round 1,
# live: export-offline -> the laptop runs the session (the counter goes on)
# -> online --to-file -> apply-sync -> it runs on the server again (the
# counter goes on). Refused, each leaving the server byte-identical: the same
# file twice, a truncated, zero-length or flipped one, one of another magic,
# a plain bundle, one applied on another server, alice's file with bob's
# token (HTTP upload), and a plain bundle that would overwrite the session's
# refs (an admin's --force applies it and says so). Round 2, powered off: the
# server finalizes it with the log-off. Round 3: a file from before a
# reclaim is refused; the laptop runs its copy again
# (resume --file-refused). On the laptop a grant for another laptop and an
# expired grant are refused too.
. "$(dirname "$0")/../lib.sh"
requires qemu-system-x86_64
requires qemu-img
requires curl
requires python3
requires unshare
requires_root
export ROAM_ACCEL=tcg

need_guest
S=$T/server L=$T/laptop S2=$T/server2
mkdir -p "$S" "$L" "$S2"
on() { local h=$1; shift; ROAM_HOME=$h "$ROAM_BIN" "$@"; }
# the laptop: no network at all
lt() { ROAM_HOME=$L unshare -n "$ROAM_BIN" "$@"; }
state_of() { on "$1" session list 2>/dev/null | awk '$1 == "s1" { print $4 }'; }
last_tick() { on "$1" session log s1 | grep -E '^tick [0-9]+$' | tail -n 1 | awk '{ print $2 }'; }
tick_above() { [ "$(last_tick "$1")" -gt "$2" ] 2>/dev/null; }
# the server as a byte-for-byte snapshot: every ref, the chunk and object files, s1's row
snapshot() {
        (cd "$S/store" && find refs -type f -print0 | sort -z | xargs -0 sha256sum)
        (cd "$S/store" && find . -path ./refs -prune -o -type f ! -name '*.lock' -print | grep -v '/tmp' | sort | sha256sum)
        on "$S" session show s1 | grep -E '^(state|owner|checkpoints):'
}
refused_on_server() { # WHAT PATTERN CMD...: fails in one line naming the check, nothing changed
        local what=$1 pattern=$2; shift 2
        local snap
        snap=$(snapshot)
        must_fail "$@"
        expect_one_line "$ERR"
        expect_match "$ERR" "$pattern" "$what"
        [ "$(snapshot)" = "$snap" ] || fail "$what changed the server"
        log "refused: $what: $ERR"
}

on "$S" image import deb "$GUEST/master.img" >/dev/null 2>&1
on "$S2" image import deb "$GUEST/master.img" >/dev/null 2>&1
common=(--image deb --user alice --ram 256M --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img")
on "$S" session create s1 "${common[@]}" >/dev/null
on "$S" session create s2 "${common[@]}" >/dev/null
on "$S" session start s1 >/dev/null
wait_for 90 tick_above "$S" 3 || fail "no ticks on the server"

log "pairing by hand, the master image by bundle"
out=$(lt laptop init) || fail "laptop init failed"
PUB=$(sed -n 's/^public key: *//p' <<<"$out") ID=$(sed -n 's/^laptop id: *//p' <<<"$out")
must_succeed on "$S" laptop add --user alice --name lt --key "$PUB"
# a key may start with '-' (base64url): taken as the key, not as an option
must_succeed on "$S2" laptop add --user carol --key "-$(printf 'A%.0s' $(seq 42))"
expect_match "$OUT" "paired laptop 'laptop' \\(id [0-9a-f]{32}\\) of user 'carol'"
on "$S" bundle create -o "$T/deb.bundle" images/deb >/dev/null || fail "bundle create failed"
must_succeed lt bundle apply "$T/deb.bundle"

log "round 1: export-offline -> laptop -> online --to-file -> apply-sync"
must_succeed on "$S" session export-offline s1 --laptop "${ID:0:8}" -o "$T/off1.sync"
[ "$(state_of "$S")" = away ] || fail "the server has s1 '$(state_of "$S")' after export-offline"
expect_match "$(on "$S" session show s1)" "owner: +laptop 'lt' \\(id $ID\\)"
before=$(last_tick "$S")
must_succeed lt offline s1 --from-file "$T/off1.sync"
[ "$(state_of "$L")" = running ] || fail "s1 does not run on the laptop"
wait_for 60 tick_above "$L" "$before" || fail "the counter does not go on on the laptop"
out=$(lt offline s1 --from-file "$T/off1.sync") || fail "applying the grant again failed"
expect_match "$out" "already offline on this laptop"
lt_tick=$(last_tick "$L")
must_succeed lt online s1 --to-file "$T/on1.sync"
[ "$(state_of "$L")" = stopped ] || fail "s1 is '$(state_of "$L")' on the laptop after online --to-file"
must_fail lt session start s1
expect_match "$ERR" "handed in by file"
must_fail lt session restore s1
expect_match "$ERR" "handed in by file"

log "bad files on the server: refused, nothing changed"
: >"$T/empty.sync"
head -c 1000 "$T/on1.sync" >"$T/short.sync"
cp "$T/on1.sync" "$T/flip.sync"
size=$(stat -c %s "$T/flip.sync")
printf '\x5a' | dd of="$T/flip.sync" bs=1 seek=$((size / 2)) conv=notrunc status=none
head -c 4096 /dev/urandom >"$T/random.sync"
refused_on_server "a zero-length file" "truncated" on "$S" session apply-sync "$T/empty.sync"
refused_on_server "a truncated file" "truncated" on "$S" session apply-sync "$T/short.sync"
refused_on_server "a flipped byte" "checksum|corrupt" on "$S" session apply-sync "$T/flip.sync"
refused_on_server "another magic" "bad magic" on "$S" session apply-sync "$T/random.sync"
refused_on_server "a plain bundle" "plain bundle" on "$S" session apply-sync "$T/deb.bundle"
refused_on_server "a take-offline file" "take-offline file" on "$S" session apply-sync "$T/off1.sync"
must_fail on "$S2" session apply-sync "$T/on1.sync"
expect_one_line "$ERR"
expect_match "$ERR" "written for another server"
log "refused: another server: $ERR"
# a plain bundle of the laptop's session refs: refused while the laptop holds s1
lt bundle create -o "$T/refs.bundle" sessions/alice/s1/latest >/dev/null || fail "bundle create on the laptop failed"
refused_on_server "a plain bundle of s1's refs" "holds" on "$S" bundle apply "$T/refs.bundle"
# an admin's --force goes through and says what it forced (on a copy of the server)
cp -a "$S" "$T/forced"
err=$(on "$T/forced" bundle apply --force "$T/refs.bundle" 2>&1 >/dev/null) || fail "bundle apply --force failed: $err"
expect_match "$err" "^roam: --force: ref 'sessions/alice/s1/latest' belongs to session 's1'" "the forced apply's notice"
[ "$(on "$T/forced" store fsck >/dev/null 2>&1; echo $?)" = 0 ] || fail "the forced copy's store is inconsistent"
rm -rf "$T/forced"
# over HTTP: alice's file with bob's token is "not found"
PORT=$(free_port)
BOB=$(on "$S" token create --role user --user bob)
start_daemon "$S" "127.0.0.1:$PORT"
SD=$DAEMON_PID
snap=$(snapshot)
code=$(curl -s -o "$T/resp" -w '%{http_code}' -X POST -H "Authorization: Bearer $BOB" \
        --data-binary @"$T/on1.sync" "http://127.0.0.1:$PORT/v1/sync-files")
[ "$code" = 404 ] || fail "bob's upload of alice's file: HTTP $code: $(cat "$T/resp")"
expect_match "$(cat "$T/resp")" "session 's1' not found"
[ "$(snapshot)" = "$snap" ] || fail "bob's upload changed the server"
kill "$SD"; wait "$SD" 2>/dev/null || true

must_succeed on "$S" session apply-sync "$T/on1.sync"
log "$OUT"
expect_match "$OUT" "runs on this server again at epoch 2"
[ "$(state_of "$S")" = running ] || fail "s1 does not run on the server after apply-sync"
wait_for 60 tick_above "$S" "$lt_tick" || fail "the counter does not go on on the server"
refused_on_server "the same file again" "stale" on "$S" session apply-sync "$T/on1.sync"
on "$S" store fsck >/dev/null || fail "the server's store is inconsistent"

log "round 2, powered off: the server logs it off"
must_succeed on "$S" session export-offline s1 --laptop "$ID" -o "$T/off2.sync"
must_succeed lt offline s1 --from-file "$T/off2.sync"
wait_for 30 bash -c "ROAM_HOME=$L $ROAM_BIN session log s1 | grep -q 'roam-guest: ready'" || true
on "$L" session stop s1 >/dev/null || fail "stop on the laptop failed"
[ "$(state_of "$L")" = stopped ] || fail "s1 is '$(state_of "$L")' on the laptop after stop"
must_succeed lt online s1 --to-file "$T/on2.sync"
expect_match "$OUT" "powered off"
# this one through the HTTP route, with alice's token (the console's upload)
PORT=$(free_port)
ALICE=$(on "$S" token create --role user --user alice)
start_daemon "$S" "127.0.0.1:$PORT"
SD=$DAEMON_PID
code=$(curl -s -o "$T/resp" -w '%{http_code}' -X POST -H "Authorization: Bearer $ALICE" \
        --data-binary @"$T/on2.sync" "http://127.0.0.1:$PORT/v1/sync-files")
log "POST /v1/sync-files: $code $(cat "$T/resp")"
[ "$code" = 200 ] || fail "alice's upload of her powered-off sync file: HTTP $code: $(cat "$T/resp")"
expect_match "$(cat "$T/resp")" '"state":"stopped"'
kill "$SD"; wait "$SD" 2>/dev/null || true
expect_match "$(cat "$T/resp")" '"logoff":"roam-guest: logoff' "the log-off on the server"
[ "$(state_of "$S")" = stopped ] || fail "s1 is '$(state_of "$S")' on the server after the powered-off apply"

log "round 3: a file from before a reclaim"
on "$S" session start s1 >/dev/null
must_succeed on "$S" session export-offline s1 --laptop "$ID" -o "$T/off3.sync"
must_succeed lt offline s1 --from-file "$T/off3.sync"
must_succeed lt online s1 --to-file "$T/on3.sync"
must_succeed on "$S" session reclaim s1
refused_on_server "a file from before a reclaim" "stale" on "$S" session apply-sync "$T/on3.sync"
must_succeed lt session resume s1 --file-refused
[ "$(state_of "$L")" = running ] || fail "s1 does not run on the laptop again after --file-refused"

log "bad grants on the laptop"
on "$S" session start s2 >/dev/null
X_KEY_HOME=$T/other
out=$(on "$X_KEY_HOME" laptop init) || fail "laptop init (other) failed"
# (after '--': a base64url key may start with '-')
must_succeed on "$S" laptop add --user alice --name other -- "$(sed -n 's/^public key: *//p' <<<"$out")"
must_succeed on "$S" session export-offline s2 --laptop "$(sed -n 's/^laptop id: *//p' <<<"$out")" -o "$T/other.sync"
must_fail lt offline s2 --from-file "$T/other.sync"
expect_one_line "$ERR"
expect_match "$ERR" "grants session 's2' to laptop [0-9a-f]+; this laptop is $ID"
on "$S" session reclaim s2 >/dev/null || fail "reclaim of s2 failed"
must_succeed on "$S" session export-offline s2 --laptop "$ID" --offline-days 0.00002 -o "$T/expired.sync"
sleep 3
must_fail lt offline s2 --from-file "$T/expired.sync"
expect_one_line "$ERR"
expect_match "$ERR" "expired"
ROAM_HOME=$L "$ROAM_BIN" session list | awk '$1 == "s2"' | grep -q . && fail "a refused grant left s2 on the laptop"
lt store fsck >/dev/null || fail "the laptop's store is inconsistent"
on "$S" store fsck >/dev/null || fail "the server's store is inconsistent"
log ok
