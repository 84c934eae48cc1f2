#!/usr/bin/env bash
# --json on every command that lists or reports: each prints one JSON object
# whose shape is the one docs/cli-json.md documents (tests/tools/json-shape.py
# compares them key by key), with the values the table shows. Also: token
# labels, roam info URL, fsck --json of a damaged store (ok false, exit 1),
# session list --json = the daemon's GET /v1/sessions, a paired laptop.
. "$(dirname "$0")/../lib.sh"

requires python3
requires jq
requires curl
cd "$T"
DOC=$SRC_DIR/docs/cli-json.md
SHAPE=$SRC_DIR/tests/tools/json-shape.py
# shape 'CMD --json' JSON: the output has the documented shape
shape() {
        python3 "$SHAPE" "$DOC" "$1" <<<"$2" >&2 || fail "'$1' does not print the documented shape: $2"
}

make_image img 4 7
ID=$(roam image import deb img 2>/dev/null)
must_succeed roam image list --json
shape "roam image list --json" "$OUT"
[ "$(jq -r '.images[0].name + " " + .images[0].id + " " + (.images[0].size | tostring)' <<<"$OUT")" = "deb $ID 4194304" ] ||
        fail "image list --json: $OUT"
must_succeed roam image show --json deb
shape "roam image show --json" "$OUT"
[ "$(jq -r .id <<<"$OUT")" = "$ID" ] || fail "image show --json names another id: $OUT"
chunks=$(jq '.chunks - .zero_chunks' <<<"$OUT")
must_succeed roam store stats --json
shape "roam store stats --json" "$OUT"
[ "$(jq '.referenced_bytes / 65536' <<<"$OUT")" = "$chunks" ] ||
        fail "store stats --json: referenced bytes are not image show's non-zero chunks ($chunks): $OUT"
must_succeed roam store fsck --json
shape "roam store fsck --json" "$OUT"
[ "$(jq -c '[.ok, .problems]' <<<"$OUT")" = '[true,[]]' ] || fail "fsck --json of a sound store: $OUT"
# --json anywhere among the arguments, and a table without it
must_succeed roam image show deb --json
jq -e .chunk_size <<<"$OUT" >/dev/null || fail "image show deb --json: $OUT"
must_fail roam image list --jsn
expect_match "$ERR" "unexpected argument '--jsn'"

# tokens: labels in the table and the JSON; a bad label is a usage error
T1=$(roam token create --role admin --label "ci runner #3")
T2=$(roam token create --role user --user bob)
must_fail roam token create --role admin --label "$(printf 'a\tb')"
expect_match "$ERR" "token label .* is invalid"
must_succeed roam token list
expect_match "$OUT" "ci runner #3" "token list"
must_succeed roam token list --json
shape "roam token list --json" "$OUT"
[ "$(jq -c '[.tokens[] | [.role, .user, .label]] | sort' <<<"$OUT")" = '[["admin",null,"ci runner #3"],["user","bob",null]]' ] ||
        fail "token list --json: $OUT"

# sessions (created, not started: no QEMU needed)
head -c 65536 /dev/zero >kernel
roam session create s1 --image deb --user bob --kernel kernel >/dev/null
must_succeed roam session list --json
shape "roam session list --json" "$OUT"
LIST=$OUT
[ "$(jq -r '.sessions[0] | .name + " " + .state + " " + .owner' <<<"$OUT")" = "s1 created local" ] ||
        fail "session list --json: $OUT"
must_succeed roam session show --json s1
shape "roam session show --json" "$OUT"
[ "$(jq -r '.image_id' <<<"$OUT")" = "$ID" ] || fail "session show --json: image_id is not the image's id: $OUT"

# a daemon: info, pull, push; session list --json is what GET /v1/sessions says
# the binary itself in the background, not the roam() function: $! must be the daemon
${ROAM_WRAPPER:-} "$ROAM_BIN" serve --listen 127.0.0.1:0 --log "$T/serve.log" &
cleanup_add "kill $! 2>/dev/null; wait $! 2>/dev/null"
wait_for 20 test -s "$ROAM_HOME/serve.json" || fail "roam serve did not start"
URL=$(jq -r .url "$ROAM_HOME/serve.json")
must_succeed roam info --json "$URL" --token "$T2"
shape "roam info URL --json" "$OUT"
[ "$(jq -r '[.url, .role, .token_role, .user] | join(" ")' <<<"$OUT")" = "$URL server user bob" ] ||
        fail "info --json: $OUT"
must_succeed roam info "$URL" --token "$T1"
expect_match "$OUT" "^role: +server$" "roam info"
must_fail roam info "$URL" --token roam_nottoken
expect_one_line "$ERR"
api=$(curl -sf -H "Authorization: Bearer $T1" "$URL/v1/sessions" | jq -cS '.sessions | map(del(.readiness))')
[ "$api" = "$(jq -cS .sessions <<<"$LIST")" ] || fail "session list --json is not GET /v1/sessions: $api vs $LIST"

H2=$T/home2
must_succeed env ROAM_HOME="$H2" "$ROAM_BIN" pull --json "$URL" deb --token "$T1"
shape "roam pull --json" "$OUT"
[ "$(jq -r '.direction + " " + .refs[0].ref + " " + .refs[0].id' <<<"$OUT")" = "pull images/deb $ID" ] ||
        fail "pull --json: $OUT"
[ "$(jq '.refs[0].chunks_sent == .refs[0].chunks_total' <<<"$OUT")" = true ] || fail "a first pull sent not every chunk: $OUT"
must_succeed env ROAM_HOME="$H2" "$ROAM_BIN" push --json "$URL" deb --as copy --token "$T1"
shape "roam push --json" "$OUT"
[ "$(jq -r '.direction + " " + .refs[0].as + " " + (.refs[0].chunks_sent | tostring)' <<<"$OUT")" = "push images/copy 0" ] ||
        fail "push --json: $OUT"

# status --json of the local daemon, with a hoard it finished
P2=$(free_port)
start_daemon "$H2" "127.0.0.1:$P2"
must_succeed env ROAM_HOME="$H2" "$ROAM_BIN" hoard "$URL" copy --token "$T1"
hoard_done() { ROAM_HOME=$H2 "$ROAM_BIN" status --json | jq -e '.hoards[0].state == "done"'; }
wait_for 30 hoard_done || fail "the hoard did not finish: $(ROAM_HOME=$H2 "$ROAM_BIN" status --json)"
must_succeed env ROAM_HOME="$H2" "$ROAM_BIN" status --json
shape "roam status --json" "$OUT"
[ "$(jq -c .handoff <<<"$OUT")" = null ] || fail "status --json of a server has a handoff: $OUT"

# a laptop pairs with the server: laptop list --json on the server
P3=$(free_port)
start_daemon "$T/laptop" "127.0.0.1:$P3" --role laptop --server "$URL" --token "$T2" --name "bob-x1"
paired() { roam laptop list --json | jq -e '.laptops | length == 1'; }
wait_for 30 paired || fail "the laptop did not pair: $(cat "$T/laptop/serve.log")"
must_succeed roam laptop list --json
shape "roam laptop list --json" "$OUT"
[ "$(jq -r '.laptops[0] | .name + " " + .user + " " + (.revoked | tostring)' <<<"$OUT")" = "bob-x1 bob 0" ] ||
        fail "laptop list --json: $OUT"
[ "$(jq -r '.laptops[0].id' <<<"$OUT")" = "$(ROAM_HOME=$T/laptop "$ROAM_BIN" laptop id)" ] ||
        fail "laptop list --json names another id than 'roam laptop id'"
# and the laptop's status --json holds its handoff state
tracked() { ROAM_HOME=$T/laptop "$ROAM_BIN" status --json | jq -e '.handoff.sessions | length == 1'; }
wait_for 30 tracked || fail "the laptop does not track s1: $(ROAM_HOME=$T/laptop "$ROAM_BIN" status --json)"
must_succeed env ROAM_HOME="$T/laptop" "$ROAM_BIN" status --json
shape "roam status --json" "$OUT"
shape "handoff" "$(jq .handoff <<<"$OUT")"
[ "$(jq -r '.handoff | [.connected, .laptop.name, .sessions[0].name] | map(tostring) | join(" ")' <<<"$OUT")" = "true bob-x1 s1" ] ||
        fail "status --json of the laptop: $OUT"

# fsck --json of a damaged store: the problem listed, ok false, exit 1
chunk=$(find "$ROAM_HOME/store" -path '*chunks*' -type f | head -n 1)
[ -n "$chunk" ] || fail "no chunk file found"
printf 'x' | dd of="$chunk" bs=1 seek=20 conv=notrunc 2>/dev/null
rc=0
OUT=$(roam store fsck --json 2>/dev/null) || rc=$?
[ $rc = 1 ] || fail "fsck --json of a damaged store exited $rc"
shape "roam store fsck --json" "$OUT"
[ "$(jq -c '[.ok, (.problems | length > 0), .corrupt_chunks + .missing_chunks]' <<<"$OUT")" = '[false,true,1]' ] ||
        fail "fsck --json of a damaged store: $OUT"
