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
start_daemon "$SRV" "127.0.0.1:$PORT" --verbose
SLOG=$SRV/serve.log

# requests_after LINES: "METHOD PATH STATUS" of every request the daemon logged
# after line LINES of its log (a marker request first makes sure they are all in)
requests_after() {
        local marker=images/marker-$RANDOM$RANDOM
        curl -s -o /dev/null -H "Authorization: Bearer $HOST" "$URL/v1/refs/$marker"
        wait_for 10 grep -q " /v1/refs/$marker " "$SLOG" || fail "the daemon does not log requests"
        tail -n +$(($1 + 1)) "$SLOG" | awk -v m="/v1/refs/$marker" '$6 ~ "^/v1/" && $6 != m { print $5, $6, $7 }'
}
# change_blocks FILE BLOCK...: new random bytes in these 64 KiB blocks
change_blocks() {
        python3 - "$@" <<'PY'
import random, sys
r = random.Random(sys.argv[2])
with open(sys.argv[1], "r+b") as f:
    for blk in sys.argv[2:]:
        f.seek(int(blk) * 65536)
        f.write(r.randbytes(65536))
PY
}

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

log "pulling a changed image whose ref exists here goes as one pack"
cp --sparse=always b.raw b2.raw
change_blocks b2.raw 3 50 200
ROAM_HOME=$SRV roam image import --force b b2.raw >/dev/null
mark=$(wc -l <"$SLOG")
roam pull "$URL" b --token "$HOST" >pull4.out 2>pull4.err || { cat pull4.err >&2; fail "pull of the changed b failed"; }
cat pull4.err >&2
expect_match "$(cat pull4.err)" "pulled images/b: 3 of [0-9]+ chunks"
reqs=$(requests_after "$mark")
log "requests: $(tr '\n' ',' <<<"$reqs")"
[ "$(grep -c '^POST /v1/pack/get 200$' <<<"$reqs")" = 1 ] || fail "the pull did not ask for one pack: $reqs"
! grep -qE '/v1/chunks/|/v1/objects/' <<<"$reqs" || fail "the pull went beyond the pack: $reqs"
must_succeed roam image export b b2-out.raw
cmp b2.raw b2-out.raw || fail "image pulled as a pack differs"
must_succeed roam store fsck

log "a wrong hint costs a round trip, not data: a chunk below the local ref is gone"
B2=$(cut -d' ' -f2 pull4.out)
# the index object (stored plain): the first chunk from block 10 on (block 7 changes next)
victim=$(python3 - "$CLI/store/objects/${B2:0:2}/$B2" <<'PY'
import sys
d = open(sys.argv[1], "rb").read()
ids = [d[32 + 32 * i: 64 + 32 * i] for i in range(int.from_bytes(d[24:32], "little"))]
print(next(c for c in ids[10:] if any(c)).hex())
PY
)
rm "$CLI/store/chunks/${victim:0:2}/$victim"
cp --sparse=always b2.raw b3.raw
change_blocks b3.raw 7
ROAM_HOME=$SRV roam image import --force b b3.raw >/dev/null
mark=$(wc -l <"$SLOG")
roam pull "$URL" b --token "$HOST" >/dev/null 2>pull5.err || { cat pull5.err >&2; fail "pull with a wrong hint failed"; }
cat pull5.err >&2
expect_match "$(cat pull5.err)" "pulled images/b: 2 of [0-9]+ chunks"
reqs=$(requests_after "$mark")
log "requests: $(tr '\n' ',' <<<"$reqs")"
[ "$(grep -c '^POST /v1/pack/get 200$' <<<"$reqs")" = 1 ] || fail "the pull did not ask for one pack: $reqs"
[ "$(grep -c '^POST /v1/chunks/get 200$' <<<"$reqs")" = 1 ] || fail "the pull did not fetch the rest: $reqs"
must_succeed roam image export b b3-out.raw
cmp b3.raw b3-out.raw || fail "image pulled with a wrong hint differs"
must_succeed roam store fsck

log "push a new image back; a second push sends nothing"
make_image c.raw 16 33
must_succeed roam image import c c.raw
roam push "$URL" c --token "$HOST" >/dev/null 2>push1.err || { cat push1.err >&2; fail "push failed"; }
roam push "$URL" c --token "$HOST" >/dev/null 2>push2.err
expect_match "$(cat push2.err)" ": 0 of [0-9]+ chunks"
ROAM_HOME=$SRV roam image export c c-srv.raw
cmp c.raw c-srv.raw || fail "pushed image differs on the server"
ROAM_HOME=$SRV must_succeed roam store fsck

log "pushing a small change to a ref the server has goes as one pack"
must_succeed roam image import d c.raw
roam push "$URL" d --token "$HOST" >/dev/null 2>push3.err || { cat push3.err >&2; fail "push of d failed"; }
cp --sparse=always c.raw d.raw
change_blocks d.raw 5 100
must_succeed roam image import --force d d.raw
mark=$(wc -l <"$SLOG")
roam push "$URL" d --token "$HOST" >/dev/null 2>push4.err || { cat push4.err >&2; fail "push of the changed d failed"; }
cat push4.err >&2
expect_match "$(cat push4.err)" "pushed images/d: 2 of [0-9]+ chunks"
reqs=$(requests_after "$mark")
log "requests: $(tr '\n' ',' <<<"$reqs")"
[ "$(grep -c '^POST /v1/pack/put 200$' <<<"$reqs")" = 1 ] || fail "the push did not send one pack: $reqs"
! grep -qE '/v1/chunks/|/v1/objects/|^PUT /v1/refs/' <<<"$reqs" || fail "the push went beyond the pack: $reqs"
ROAM_HOME=$SRV roam image export d d-srv.raw
cmp d.raw d-srv.raw || fail "image pushed as a pack differs on the server"
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
