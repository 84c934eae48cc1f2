#!/usr/bin/env bash
# gc while 'roam serve' runs (docs/store-format.md, "gc while the daemon
# runs"): 'roam store gc' goes to the daemon and does not wait for it to
# stop; a pull in flight across a gc with no grace, and a push in flight
# across a gc with the default grace, lose nothing (fsck on both sides, the
# images byte-identical); the gc removes what it should meanwhile.
. "$(dirname "$0")/../lib.sh"
requires curl

cd "$T"
SRV=$T/srv CLI=$T/cli
make_image big.raw 24 31
make_image junk.raw 8 32
make_image mine.raw 32 33
ROAM_HOME=$SRV roam image import big big.raw >/dev/null
ADMIN=$(ROAM_HOME=$SRV roam token create --role admin)
USER=$(ROAM_HOME=$SRV roam token create --role user --user alice)
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
start_daemon "$SRV" "127.0.0.1:$PORT"
SLOG=$SRV/serve.log

# gc_srv ARGS...: 'roam store gc' on the server's home, bounded
gc_srv() { ROAM_HOME=$SRV must_succeed timeout 60 "$ROAM_BIN" store gc "$@"; }
nchunks() { find "$1/store/chunks" -type f | wc -l; }
has_chunks() { [ -n "$(find "$1/store/tmp" "$1/store/chunks" -type f -print -quit 2>/dev/null)" ]; }
test_more() { [ "$(nchunks "$1")" -gt "$2" ]; }
# unreferenced FSCK_OUTPUT: the count of unreferenced chunks fsck printed
unreferenced() { sed -n 's/^chunks stored: *[0-9]* (\([0-9]*\) unreferenced)$/\1/p' <<<"$1"; }

log "gc through the daemon: young garbage kept by the grace, removed with --grace 0"
ROAM_HOME=$SRV roam image import junk junk.raw >/dev/null
ROAM_HOME=$SRV must_succeed roam image rm junk
gc_srv
expect_match "$OUT" "^removed 0 chunks .*; kept [1-9][0-9]* chunks, [1-9][0-9]* objects younger than the grace of 3600 s"
grep -q "gc: removed 0 chunks" "$SLOG" || fail "the daemon did not run the gc: $(tail -n 3 "$SLOG")"
gc_srv --grace 0
expect_match "$OUT" "^removed [1-9][0-9]* chunks \(.*\), [1-9][0-9]* objects, [0-9]+ temp files$"
ROAM_HOME=$SRV must_succeed roam store fsck
[ "$(unreferenced "$OUT")" = 0 ] || fail "gc --grace 0 left unreferenced chunks: $OUT"
kill -0 "$DAEMON_PID" || fail "the daemon is gone after gc"
curl -sf -o /dev/null -H "Authorization: Bearer $ADMIN" "$URL/v1/refs/images/big" || fail "the daemon does not serve after gc"

log "the gc route: admin only, bounded arguments, one-line errors"
code=$(curl -s -o gc.err -w '%{http_code}' -X POST -H "Authorization: Bearer $USER" -d '{}' "$URL/v1/store/gc")
[ "$code" = 403 ] || fail "a user token ran gc ($code)"
expect_match "$(cat gc.err)" "only an admin token"
code=$(curl -s -o gc.err -w '%{http_code}' -X POST -H "Authorization: Bearer $ADMIN" -d '{"grace_s": -1}' "$URL/v1/store/gc")
[ "$code" = 400 ] || fail "a negative grace was taken ($code)"
ROAM_HOME=$SRV must_fail roam store gc --grace 1y
expect_one_line "$ERR"; expect_match "$ERR" "--grace takes a time"

log "a pull in flight across a gc with no grace loses nothing"
ROAM_HOME=$SRV roam image import junk junk.raw >/dev/null
ROAM_HOME=$SRV must_succeed roam image rm junk
ROAM_HOME=$CLI "$ROAM_BIN" pull "$URL" big --token "$ADMIN" --limit-rate 256K >pull.out 2>pull.err &
PULL=$!
cleanup_add "kill $PULL 2>/dev/null"
wait_for 20 has_chunks "$CLI" || fail "the pull does not start"
t0=$(date +%s%N)
gc_srv --grace 0
t1=$(date +%s%N)
log "gc during the pull: $OUT ($(((t1 - t0) / 1000000)) ms)"
expect_match "$OUT" "^removed [1-9][0-9]* chunks"
kill -0 "$PULL" 2>/dev/null || fail "the pull was over before the gc finished: the test tested nothing (slow it down)"
wait "$PULL" || { cat pull.err >&2; fail "the pull across the gc failed"; }
ROAM_HOME=$SRV must_succeed roam store fsck
ROAM_HOME=$CLI must_succeed roam store fsck
ROAM_HOME=$CLI must_succeed roam image export big big-out.raw
cmp big.raw big-out.raw || fail "the image pulled across a gc differs"

log "a push in flight across a gc with the default grace loses nothing"
ROAM_HOME=$CLI roam image import mine mine.raw >/dev/null
ROAM_HOME=$CLI "$ROAM_BIN" push "$URL" mine --token "$ADMIN" --limit-rate 256K >push.out 2>push.err &
PUSH=$!
cleanup_add "kill $PUSH 2>/dev/null"
before=$(nchunks "$SRV")
wait_for 40 test_more "$SRV" "$before" || fail "the push does not start"
gc_srv
log "gc during the push: $OUT"
expect_match "$OUT" "kept [1-9][0-9]* chunks" "gc during the push (its chunks are young)"
kill -0 "$PUSH" 2>/dev/null || fail "the push was over before the gc finished: the test tested nothing (slow it down)"
wait "$PUSH" || { cat push.err >&2; fail "the push across the gc failed"; }
ROAM_HOME=$SRV must_succeed roam store fsck
ROAM_HOME=$CLI must_succeed roam store fsck
ROAM_HOME=$SRV must_succeed roam image export mine mine-out.raw
cmp mine.raw mine-out.raw || fail "the image pushed across a gc differs"

log "without a daemon, gc runs here as before"
kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
ROAM_HOME=$SRV must_succeed roam image rm mine
gc_srv --grace 0
expect_match "$OUT" "^removed [1-9][0-9]* chunks"
ROAM_HOME=$SRV must_succeed roam store fsck
log ok
