#!/usr/bin/env bash
# Pull and push between two stores through a real 'roam serve' on loopback:
# transfer, dedup, resume after kill -9, tokens and roles, tampered chunks.
. "$(dirname "$0")/../lib.sh"
requires curl

cd "$T"
SRV=$T/srv CLI=$T/cli
make_image a.raw 48 21
cp --sparse=always a.raw b.raw
python3 -c "
import random; r = random.Random(5)
f = open('b.raw', 'r+b')
for blk in (1, 2, 40, 41, 300): f.seek(blk * 65536); f.write(r.randbytes(65536))"

ROAM_HOME=$SRV roam image import a a.raw >/dev/null
ROAM_HOME=$SRV roam image import b b.raw >/dev/null
HOST=$(ROAM_HOME=$SRV roam token create --role host)
ALICE=$(ROAM_HOME=$SRV roam token create --role user --user alice)
BOB=$(ROAM_HOME=$SRV roam token create --role user --user bob)
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
start_daemon "$SRV" "127.0.0.1:$PORT"

export ROAM_HOME=$CLI
log "pull a whole image; export is byte-identical"
roam pull "$URL" a --token "$HOST" >/dev/null 2>pull1.err || { cat pull1.err >&2; fail "pull failed"; }
cat pull1.err >&2
must_succeed roam image export a a-out.raw
cmp a.raw a-out.raw || fail "pulled image differs"
must_succeed roam store fsck

log "pulling the changed image sends only the changed chunks"
roam pull "$URL" images/b --token "$HOST" >/dev/null 2>pull2.err || { cat pull2.err >&2; fail "pull b failed"; }
cat pull2.err >&2
expect_match "$(cat pull2.err)" "pulled images/b: 5 of [0-9]+ chunks"
roam pull "$URL" b --token "$HOST" >/dev/null 2>pull3.err
expect_match "$(cat pull3.err)" ": 0 of [0-9]+ chunks"

log "push a new image back; a second push sends nothing"
make_image c.raw 16 33
must_succeed roam image import c c.raw
roam push "$URL" c --token "$HOST" >/dev/null 2>push1.err || { cat push1.err >&2; fail "push failed"; }
roam push "$URL" c --token "$HOST" >/dev/null 2>push2.err
expect_match "$(cat push2.err)" ": 0 of [0-9]+ chunks"
ROAM_HOME=$SRV roam image export c c-srv.raw
cmp c.raw c-srv.raw || fail "pushed image differs on the server"
ROAM_HOME=$SRV must_succeed roam store fsck

log "tokens: none, wrong, and a user's reach"
must_fail env -u ROAM_TOKEN "$ROAM_BIN" pull "$URL" a; expect_match "$ERR" "no token"
must_fail roam pull "$URL" a --token roam_wrongwrongwrongwrongwrongwrongwrongwrongwro
expect_one_line "$ERR"; expect_match "$ERR" "refused the token"
must_fail roam pull "$URL" a --token ""
# alice's session checkpoints are hers: bob cannot read them
roam push "$URL" c --as sessions/alice/s1/latest --token "$ALICE" >/dev/null 2>&1 || fail "alice cannot push her session ref"
must_fail roam pull "$URL" sessions/alice/s1/latest --token "$BOB"; expect_match "$ERR" "not found"
must_fail roam push "$URL" c --as sessions/alice/s1/latest --token "$BOB"
must_fail roam push "$URL" c --as images/evil --token "$ALICE"
must_succeed roam pull "$URL" sessions/alice/s1/latest --token "$ALICE"
must_succeed roam pull "$URL" a --token "$ALICE"

log "an interrupted pull resumes and re-sends at most what was in flight"
export ROAM_HOME=$T/cli2
make_image big.raw 96 44
ROAM_HOME=$SRV roam image import big big.raw >/dev/null
"$ROAM_BIN" pull "$URL" big --token "$HOST" --limit-rate 2M --parallel 2 >/dev/null 2>resume1.err &
pid=$!
sleep 6
kill -9 $pid; wait $pid 2>/dev/null || true
have=$(find "$ROAM_HOME/store/chunks" -type f | wc -l)
log "chunks stored before the kill: $have"
[ "$have" -gt 0 ] || fail "nothing was stored before the kill"
must_succeed roam store fsck
roam pull "$URL" big --token "$HOST" >/dev/null 2>resume2.err || { cat resume2.err >&2; fail "resumed pull failed"; }
cat resume2.err >&2
total=$(sed -nE 's/.*: ([0-9]+) of ([0-9]+) chunks.*/\2/p' resume2.err)
sent=$(sed -nE 's/.*: ([0-9]+) of ([0-9]+) chunks.*/\1/p' resume2.err)
log "total $total, before the kill $have, after $sent"
[ $((have + sent)) -ge "$total" ] || fail "chunks went missing"
[ "$sent" -le "$total" ] || fail "resume sent too much"
[ "$sent" -lt "$total" ] || fail "resume started from scratch"
must_succeed roam image export big big-out.raw
cmp big.raw big-out.raw || fail "resumed image differs"

log "32 clients pulling at once all succeed"
pids=()
for i in $(seq 1 32); do
        ROAM_HOME=$T/many/$i "$ROAM_BIN" pull "$URL" c --token "$HOST" --parallel 2 >/dev/null 2>"$T/many-$i.err" &
        pids+=($!)
done
for i in $(seq 1 32); do
        wait "${pids[$((i - 1))]}" || { cat "$T/many-$i.err" >&2; fail "parallel client $i failed"; }
done
for i in 1 16 32; do
        ROAM_HOME=$T/many/$i roam image export c "$T/many-$i.raw"
        cmp c.raw "$T/many-$i.raw" || fail "parallel client $i got a different image"
done

log "a server that sends a tampered chunk is caught"
TPORT=$(free_port)
python3 "$SRC_DIR/tests/tools/tamper-server.py" "$SRV/store" "$TPORT" always >tamper.out 2>tamper.err &
tpid=$!
cleanup_add "kill $tpid"
wait_for 10 grep -q ready tamper.out || fail "tamper server did not start"
export ROAM_HOME=$T/cli3
must_fail roam pull "http://127.0.0.1:$TPORT" a --token x
expect_one_line "$ERR"; expect_match "$ERR" "wrong bytes for chunk [0-9a-f]{64}"
victim=$(sed -n 's/^tampered //p' tamper.err | head -n 1)
[ -n "$victim" ] || fail "the tamper server tampered nothing"
[ ! -e "$ROAM_HOME/store/chunks/${victim:0:2}/$victim" ] || fail "the tampered chunk entered the store"
must_fail roam image show a
kill $tpid; wait $tpid 2>/dev/null || true
python3 "$SRC_DIR/tests/tools/tamper-server.py" "$SRV/store" "$TPORT" once >tamper2.out 2>tamper2.err &
tpid=$!
cleanup_add "kill $tpid"
wait_for 10 grep -q ready tamper2.out || fail "tamper server did not start"
must_succeed roam pull "http://127.0.0.1:$TPORT" a --token x
must_succeed roam image export a a-out2.raw
cmp a.raw a-out2.raw || fail "image differs after a refetch"
must_succeed roam store fsck
log ok
