#!/usr/bin/env bash
# One owner, for real: laptops are their keys, not their names. Two laptop
# daemons with the same host name (one network namespace: one UTS name) pair
# with alice's token; each makes its own key and gets its own id. The first
# takes s1 offline; the second is refused with the holder named, and exactly
# one host runs s1 (checked on all three homes). Forged requests are refused
# with one-line reasons and change nothing: no signature, a replayed one, a
# signature over another request, an unknown laptop, a stale nonce, and
# pairings with a malformed, another user's or a mismatched key. A revoked
# laptop cannot renew its lease nor take the session online; after a
# reclaim it keeps its state (stopped, checkpointed) and is refused; its
# stale copy goes into a file (roam session export-stale) that the server
# keeps beside the session, never over it.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../netns.sh"
requires qemu-system-x86_64
requires curl
requires python3
requires_root
export ROAM_ACCEL=tcg
SIGN=$BUILD_DIR/tests/tools/sign-request
[ -x "$SIGN" ] || fail "no $SIGN (build first)"

need_guest
wan_setup 100 25
cd "$T"
export DC_HOME=$T/dc
LA=$T/laptop-a LB=$T/laptop-b
PORT=$(free_port) PA=$(free_port) PB=$(free_port)
SERVER=http://$DC_IP:$PORT

roam_dc image import deb "$GUEST/master.img" >/dev/null 2>&1
ALICE=$(roam_dc token create --role user --user alice)
BOB=$(roam_dc token create --role user --user bob)
roam_dc session create s1 --image deb --user alice --ram 256M --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" >/dev/null
roam_dc session start s1 >/dev/null
ROAM_HOME=$DC_HOME in_dc "$ROAM_BIN" serve --listen "$DC_IP:$PORT" --offline-days 1 --nonce-ttl 4 >dc.log 2>&1 &
cleanup_add "kill $! 2>/dev/null"
wait_for 10 wan_listening "$DC_NS" "$PORT" || fail "server daemon did not start"

# both laptops without --name: their display name is the (shared) host name
start_laptop() { # HOME PORT
        ROAM_HOME=$1 in_laptop "$ROAM_BIN" serve --role laptop --listen "127.0.0.1:$2" --server "$SERVER" \
                --token "$ALICE" --precopy-interval 2 >>"$1.log" 2>&1 &
        cleanup_add "kill $! 2>/dev/null"
        wait_for 10 wan_listening "$LT_NS" "$2" || { cat "$1.log" >&2; fail "laptop daemon $1 did not start"; }
}
on() { local h=$1; shift; ROAM_HOME=$h in_laptop "$ROAM_BIN" "$@"; }
state_of() { # HOME: s1's state there ("-" when it has none)
        local s
        s=$(ROAM_HOME=$1 "$ROAM_BIN" session list 2>/dev/null | awk '$1 == "s1" { print $4 }')
        echo "${s:--}"
}
running_on() { # prints the homes where s1 runs
        local h
        for h in "$DC_HOME" "$LA" "$LB"; do [ "$(state_of "$h")" = running ] && basename "$h"; done
}
paired_count() { roam_dc laptop list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["laptops"]))'; }
# what must not change when a request is refused: s1's owner, epoch, state, checkpoints, and the laptops
snapshot() {
        # (without the lease's end: laptop A renews it meanwhile)
        roam_dc session show s1 | grep -E '^(state|owner|checkpoints):' | sed 's/, lease until [^(]*//'
        roam_dc laptop list --json | python3 -c '
import json, sys
for l in json.load(sys.stdin)["laptops"]:
    l.pop("last_seen"); print(sorted(l.items()))'
}
# req TOKEN METHOD PATH BODY [HEADER...]: the HTTP status on stdout, the body in $T/resp
req() {
        local tok=$1 method=$2 path=$3 body=$4; shift 4
        local h=() x
        for x in "$@"; do h+=(-H "$x"); done
        printf '%s' "$body" >"$T/req-body"
        in_laptop curl -s -o "$T/resp" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $tok" \
                -H 'Content-Type: application/json' "${h[@]}" --data-binary @"$T/req-body" "$SERVER$path"
}
nonce() { # TOKEN
        in_laptop curl -s -X POST -H "Authorization: Bearer $1" "$SERVER/v1/laptops/nonces?n=1" |
                python3 -c 'import json,sys; print(json.load(sys.stdin)["nonces"][0])'
}
signed() { # KEY METHOD PATH NONCE BODY: fills the array SIG with the three header lines
        printf '%s' "$5" >"$T/sig-body"
        mapfile -t SIG < <("$SIGN" "$1" "$2" "$3" "$4" "$T/sig-body")
        [ ${#SIG[@]} = 3 ] || fail "sign-request printed ${#SIG[@]} lines"
}
refused() { # CODE PATTERN WHAT: the last req's status and error, and nothing changed
        [ "$code" = "$1" ] || fail "$3: HTTP $code, expected $1: $(cat "$T/resp")"
        local err
        err=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["error"])' "$T/resp") ||
                fail "$3: no error in $(cat "$T/resp")"
        expect_one_line "$err"
        expect_match "$err" "$2" "$3"
        [ "$(snapshot)" = "$before" ] || fail "$3 changed the server: $(snapshot)"
        log "refused ($1): $3: $err"
}

wait_for 90 bash -c "ROAM_HOME=$DC_HOME $ROAM_BIN session log s1 | grep -q '^tick 3'" || fail "no ticks on the server"
start_laptop "$LA" "$PA"
start_laptop "$LB" "$PB"
two_paired() { [ "$(paired_count)" = 2 ]; }
wait_for 30 two_paired || {
        cat "$LA.log" "$LB.log" >&2; fail "the two laptops did not pair"; }
HOST=$(in_laptop hostname)
A_ID=$(ROAM_HOME=$LA "$ROAM_BIN" laptop id) B_ID=$(ROAM_HOME=$LB "$ROAM_BIN" laptop id)
log "laptop A is $A_ID, laptop B is $B_ID, both named '$HOST'"
[ "$A_ID" != "$B_ID" ] || fail "two laptops got the same id"
list=$(roam_dc laptop list)
[ "$(grep -c " $HOST " <<<"$list")" = 2 ] || fail "the server does not list two laptops named '$HOST': $list"

log "laptop A takes s1 offline"
out=$(on "$LA" offline s1) || { cat "$LA.log" dc.log >&2; fail "take offline from A failed"; }
log "$out"
expect_match "$(roam_dc session show s1)" "owner: +laptop '$HOST' \\(id $A_ID\\) since "
log "laptop B, same name, same token: refused, the holder named"
must_fail on "$LB" offline s1
expect_one_line "$ERR"
expect_match "$ERR" "session 's1' is offline on laptop '$HOST' \\(id $A_ID\\) since .*reclaim it from the console"
out=$(on "$LA" offline s1) || fail "a repeated take offline from A failed"
expect_match "$out" "already offline on this laptop"
[ "$(running_on)" = "$(basename "$LA")" ] || fail "s1 runs on: $(running_on | tr '\n' ' ')"
[ "$(state_of "$DC_HOME")" = away ] || fail "the server has s1 '$(state_of "$DC_HOME")'"

log "forged requests: refused, nothing changes"
before=$(snapshot)
code=$(req "$ALICE" POST /v1/sessions/s1/offline "{\"holder\": \"laptop:$A_ID\"}")
refused 401 "signed request" "a take offline naming A's id, unsigned"
n=$(nonce "$ALICE")
signed "$LA/laptop.key" POST /v1/sessions/s1/renew "$n" ""
code=$(req "$ALICE" POST /v1/sessions/s1/renew "" "${SIG[@]}")
[ "$code" = 200 ] || fail "A's own signed renewal: HTTP $code: $(cat "$T/resp")"
before=$(snapshot)
code=$(req "$ALICE" POST /v1/sessions/s1/renew "" "${SIG[@]}")
refused 401 "unknown or used" "the same signed request replayed"
code=$(req "$ALICE" POST /v1/sessions/s1/offline "" "${SIG[@]}")
refused 403 "does not match" "A's signature over another request"
n=$(nonce "$ALICE")
signed "$LA/laptop.key" POST /v1/sessions/s1/offline "$n" "{}"
code=$(req "$ALICE" POST /v1/sessions/s1/offline "{\"holder\": \"laptop:$B_ID\"}" "${SIG[@]}")
refused 403 "does not match" "A's signature with another body"
X_ID=$("$SIGN" --new-key "$T/x.key")
n=$(nonce "$ALICE")
signed "$T/x.key" POST /v1/sessions/s1/offline "$n" ""
code=$(req "$ALICE" POST /v1/sessions/s1/offline "" "${SIG[@]}")
refused 403 "unknown laptop '$X_ID'" "an unknown laptop"
code=$(req "$ALICE" POST /v1/sessions/s1/offline "" "Roam-Laptop: $A_ID" "Roam-Nonce: $n" "Roam-Signature: x")
refused 400 "Roam-Signature" "a malformed signature header"
n=$(nonce "$ALICE")
sleep 6 # nonces live 4 s on this server
signed "$LA/laptop.key" POST /v1/sessions/s1/renew "$n" ""
code=$(req "$ALICE" POST /v1/sessions/s1/renew "" "${SIG[@]}")
refused 401 "expired" "a stale nonce"
n=$(nonce "$BOB")
signed "$LA/laptop.key" POST /v1/sessions/s1/renew "$n" ""
code=$(req "$ALICE" POST /v1/sessions/s1/renew "" "${SIG[@]}")
refused 401 "unknown or used" "a nonce issued to bob"
n=$(nonce "$ALICE")
signed "$LB/laptop.key" POST /v1/sessions/s1/renew "$n" ""
code=$(req "$ALICE" POST /v1/sessions/s1/renew "" "${SIG[@]}")
refused 409 "offline on laptop '$HOST' \\(id $A_ID\\)" "laptop B renewing A's lease"
for action in renew precopy offline move-in finalize-in stage; do
        code=$(req "$BOB" POST "/v1/sessions/s1/$action" "{}")
        refused 404 "session 's1' not found" "bob's $action of alice's session"
done

log "pairing with bad keys: refused, nothing changes"
A_PUB=$("$SIGN" --public "$LA/laptop.key") X_PUB=$("$SIGN" --public "$T/x.key")
code=$(req "$ALICE" POST /v1/laptops '{"public_key": "not-a-key", "name": "x"}')
refused 400 "public_key must be an Ed25519 public key" "a malformed key"
body="{\"public_key\": \"$A_PUB\", \"name\": \"bobs\"}"
n=$(nonce "$BOB")
signed "$LA/laptop.key" POST /v1/laptops "$n" "$body"
code=$(req "$BOB" POST /v1/laptops "$body" "${SIG[@]}")
refused 409 "paired already.*another user" "A's key paired again for bob"
body="{\"public_key\": \"$X_PUB\", \"name\": \"x\"}"
code=$(req "$ALICE" POST /v1/laptops "$body")
refused 400 "must be signed" "an unsigned pairing"
n=$(nonce "$ALICE")
signed "$LA/laptop.key" POST /v1/laptops "$n" "$body"
code=$(req "$ALICE" POST /v1/laptops "$body" "${SIG[@]}")
refused 400 "names laptop $A_ID, but the key is laptop $X_ID" "a pairing signed by another key"
roam_dc store fsck >/dev/null || fail "the server's store is inconsistent"

log "laptop A is revoked: no renewal, no take online"
out=$(roam_dc laptop revoke "${A_ID:0:8}") || fail "revoke failed"
expect_match "$out" "revoked laptop '$HOST' \\(id $A_ID\\)"
expect_match "$(roam_dc laptop list)" "$A_ID .* revoked"
lease_error() {
        in_laptop curl -s -H "Authorization: Bearer $(cat "$LA/local.token")" "http://127.0.0.1:$PA/v1/handoff" |
                python3 -c 'import json,sys; s=[x for x in json.load(sys.stdin)["sessions"] if x["name"]=="s1"]; print(s[0]["lease_error"] or "")'
}
renewal_refused() { grep -q revoked <<<"$(lease_error)"; }
wait_for 20 renewal_refused || fail "the revoked laptop's lease renewal was not refused: $(tail -n 5 "$LA.log")"
must_fail on "$LA" online s1
expect_one_line "$ERR"
expect_match "$ERR" "revoked"
[ "$(running_on)" = "$(basename "$LA")" ] || fail "after the refused take online s1 runs on: $(running_on | tr '\n' ' ')"
[ "$(state_of "$DC_HOME")" = away ] || fail "the server has s1 '$(state_of "$DC_HOME")' after a refused take online"

log "reclaim on the server: the revoked laptop keeps its state, stopped, and is refused"
out=$(roam_dc session reclaim s1) || fail "reclaim failed"
expect_match "$out" "reclaimed session 's1' from laptop '$HOST' \\(id $A_ID\\)"
stopped_on_a() { [ "$(state_of "$LA")" = stopped ]; }
wait_for 30 stopped_on_a || fail "the stale copy on laptop A still runs ($(state_of "$LA")): $(tail -n 5 "$LA.log")"
[ "$(running_on)" = dc ] || fail "after the reclaim s1 runs on: $(running_on | tr '\n' ' ')"
grep -q "stale" "$LA.log" || fail "laptop A did not say why it stopped s1"
ROAM_HOME=$LA "$ROAM_BIN" session show s1 | grep -Eq '^checkpoints: +[1-9]' || fail "laptop A kept no checkpoint"
must_fail on "$LA" online s1
expect_one_line "$ERR"
expect_match "$ERR" "stale|epoch|revoked"
[ "$(running_on)" = dc ] || fail "after the refused take online s1 runs on: $(running_on | tr '\n' ' ')"

log "the stale copy on A goes to a file; the server keeps it beside s1, never over it"
must_fail on "$LB" session export-stale s1 -o "$T/b-stale.sync"
expect_one_line "$ERR"
expect_match "$ERR" "session 's1' (not found|is not known to be stale here)"
on "$LA" session export-stale s1 -o "$T/stale.sync" >"$T/export.out" || fail "export-stale on A failed"
expect_match "$(cat "$T/export.out")" "^stale copy: wrote $T/stale.sync"
ck=$(sed -n 's/.*checkpoint \([0-9a-f]\{12\}\)).*/\1/p' "$T/export.out")
[ -n "$ck" ] || fail "export-stale named no checkpoint: $(cat "$T/export.out")"
must_fail on "$LA" session export-stale s1 -o "$T/stale.sync"
expect_match "$ERR" "exists"
before=$(snapshot)
latest=$(cat "$DC_HOME/store/refs/sessions/alice/s1/latest")
out=$(roam_dc session apply-sync "$T/stale.sync") || fail "the server did not keep the stale copy"
log "$out"
expect_match "$out" "kept the stale copy of session 's1' from laptop $A_ID \\(epoch [0-9]+, checkpoint $ck[0-9a-f]*\\) as ref 'sessions/alice/s1/stale-e[0-9]+-${A_ID:0:12}'; the session is unchanged"
ref=$(sed -n "s/.* as ref '\\([^']*\\)'.*/\\1/p" <<<"$out")
grep -q " $ck" "$DC_HOME/store/refs/$ref" || fail "the server's ref $ref does not keep checkpoint $ck"
[ "$(snapshot)" = "$before" ] || fail "keeping the stale copy changed the session: $(snapshot)"
[ "$(cat "$DC_HOME/store/refs/sessions/alice/s1/latest")" = "$latest" ] || fail "the stale copy moved s1's latest"
[ "$(running_on)" = dc ] || fail "after keeping the stale copy s1 runs on: $(running_on | tr '\n' ' ')"
out=$(roam_dc session apply-sync "$T/stale.sync") || fail "the same stale copy again was refused"
expect_match "$out" "kept the stale copy"
cp "$T/stale.sync" "$T/torn.sync"
truncate -s -100 "$T/torn.sync"
must_fail roam_dc session apply-sync "$T/torn.sync"
expect_one_line "$ERR"
ROAM_HOME=$LA "$ROAM_BIN" store fsck >/dev/null || fail "laptop A's store is inconsistent"
roam_dc store fsck >/dev/null || fail "the server's store is inconsistent"
log ok
