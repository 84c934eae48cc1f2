#!/usr/bin/env bash
# roam serve and roam token: the sync protocol's server side over real HTTP(S)
# with curl (docs/sync-protocol.md): authentication on every route, roles,
# refs, objects, chunks, bad input, slow and many clients, clean shutdown, TLS.
. "$(dirname "$0")/../lib.sh"

requires curl
requires jq
requires zstd
requires sha256sum
requires python3

cd "$T"
SERVE_JOB=
URL=
PID=

# serve_file_from_other_than PID: serve.json exists and names another process
serve_file_from_other_than() {
        local p
        p=$(jq -r .pid "$ROAM_HOME/serve.json" 2>/dev/null) && [ -n "$p" ] && [ "$p" != "$1" ]
}
# start_daemon [OPTIONS...]: roam serve on a free port of 127.0.0.1
start_daemon() {
        # (this test tries a wrong token on every route: no failed-login limit)
        roam serve --listen 127.0.0.1:0 --verbose --log "$T/serve.log" --max-failed-logins 0 "$@" &
        SERVE_JOB=$!
        wait_for 60 serve_file_from_other_than "${PID:-none}" ||
                { cat "$T/serve.log" >&2; fail "roam serve did not start"; }
        URL=$(jq -r .url "$ROAM_HOME/serve.json")
        PID=$(jq -r .pid "$ROAM_HOME/serve.json")
        cleanup_add "kill -9 $PID"
        log "daemon $PID at $URL"
}
# stop_daemon: SIGTERM, must exit 0 within 15 s
stop_daemon() {
        kill -TERM "$PID"
        local end=$((SECONDS + 15)) rc=0
        while kill -0 "$PID" 2>/dev/null; do
                [ $SECONDS -lt $end ] || fail "daemon did not stop within 15 s of SIGTERM"
                sleep 0.1
        done
        wait "$SERVE_JOB" || rc=$?
        [ $rc = 0 ] || { tail -5 "$T/serve.log" >&2; fail "daemon exited $rc after SIGTERM"; }
        [ ! -e "$ROAM_HOME/serve.json" ] || fail "serve.json left behind after a clean stop"
}

CURL_OPTS=()
# http TOKEN METHOD PATH [CURL ARGS...]: sets CODE; the body lands in $T/resp
# (and in FILE for "-o FILE")
http() {
        local tok=$1 method=$2 path=$3 out=$T/resp
        shift 3
        local auth=() args=()
        [ -z "$tok" ] || auth=(-H "Authorization: Bearer $tok")
        while [ $# -gt 0 ]; do
                if [ "$1" = -o ]; then out=$2; shift 2; else args+=("$1"); shift; fi
        done
        CODE=$(curl -sS --max-time 60 "${CURL_OPTS[@]}" -o "$out" -w '%{http_code}' -X "$method" "${auth[@]}" \
                "${args[@]}" "$URL$path") || CODE="curl-failed"
        if [ "$out" != "$T/resp" ]; then cp "$out" "$T/resp" 2>/dev/null || : >"$T/resp"; fi
}
# expect_code CODE WHAT
expect_code() {
        [ "$CODE" = "$1" ] || fail "$2: expected HTTP $1, got $CODE: $(head -c 400 "$T/resp")"
}
# expect_error REGEX WHAT: a JSON error body that matches
expect_error() {
        local msg
        msg=$(jq -er .error "$T/resp") || fail "$2: no JSON error body: $(head -c 400 "$T/resp")"
        expect_match "$msg" "$1" "$2"
}
sha_of() { sha256sum | cut -d' ' -f1; }
hex2bin() { python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex("".join(sys.argv[1:])))' "$@"; }

log "help and usage errors"
for c in "serve" "token" "token create" "token list" "token revoke"; do
        must_succeed roam $c --help
        expect_match "$OUT" "usage: roam" "$c --help"
done
usage_rc() { local rc=0; roam "$@" >/dev/null 2>err.txt || rc=$?; [ $rc = 2 ] || fail "expected exit 2 from 'roam $*', got $rc"; expect_one_line "$(cat err.txt)"; }
mkdir -p "$ROAM_HOME" # 'token revoke ab' needs a catalog to look the id up in
usage_rc token create
usage_rc token create --role root
usage_rc token create --role user
usage_rc token create --role admin --user alice
usage_rc token create --role user --user ../bob
usage_rc token revoke
usage_rc token revoke ab
usage_rc serve --role desktop
usage_rc serve --tls-cert x.pem
usage_rc serve extra
must_fail roam serve --listen 127.0.0.1
expect_match "$ERR" "listen address '127.0.0.1' is invalid"
expect_one_line "$ERR"
must_fail roam serve --listen 999.1.1.1:80
must_fail roam serve --listen '[::1:80'

log "tokens: create, list, revoke"
must_succeed roam token create --role admin
ADMIN=$OUT
expect_match "$ADMIN" '^roam_[A-Za-z0-9_-]{43}$' "token format"
must_succeed roam token create --role user --user alice
ALICE=$OUT
must_succeed roam token create --role user --user bob
BOB=$OUT
must_succeed roam token create --role host
HOST=$OUT
must_succeed roam token create --role admin
REVOKED=$OUT
must_succeed roam token list
expect_match "$OUT" "alice"
[ "$(printf '%s\n' "$OUT" | grep -c ' user ')" = 2 ] || fail "token list: expected 2 user tokens: $OUT"
revoked_id=$(printf '%s' "$REVOKED" | sha_of)
must_succeed roam token revoke "${revoked_id:0:10}"
expect_match "$OUT" "revoked token ${revoked_id:0:16}"
must_fail roam token revoke "${revoked_id:0:10}"
expect_match "$ERR" "no token"
! grep -qF "${ADMIN#roam_}" "$ROAM_HOME"/catalog.db* || fail "the catalog holds a token in clear"

log "an image in the store before the daemon starts"
make_image a.raw 8 1
must_succeed roam image import debian a.raw
IMG=$OUT

start_daemon
[ "$(stat -c %a "$ROAM_HOME/local.token")" = 600 ] || fail "local.token is not mode 0600"
LOCAL=$(cat "$ROAM_HOME/local.token")
[ "$(jq -r .role "$ROAM_HOME/serve.json")" = server ] || fail "serve.json role"

log "a second daemon on the same home is refused; so is a port in use"
must_fail timeout 20 "$ROAM_BIN" serve --listen 127.0.0.1:0
expect_match "$ERR" "already serves"
port=${URL##*:}
ROAM_HOME=$T/other must_fail "$ROAM_BIN" serve --listen "127.0.0.1:$port"
expect_match "$ERR" "in use"

log "401 with an empty body without a valid token, on every route"
for route in "GET /v1/info" "GET /v1/refs" "GET /v1/refs/images/debian" "PUT /v1/refs/images/debian" \
        "DELETE /v1/refs/images/debian" "GET /v1/objects/$IMG" "POST /v1/chunks/missing" "POST /v1/chunks/get" \
        "POST /v1/chunks/put" "GET /v1/chunks/$IMG" "POST /v1/pack/get" "POST /v1/pack/put" "GET /v1/nope" "GET /x" "DELETE /v1/info" "GET /v2/info"; do
        set -- $route
        for tok in "" "roam_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" "$REVOKED" "${ADMIN}x" "garbage"; do
                http "$tok" "$1" "$2"
                expect_code 401 "$route with token '${tok:0:8}'"
                [ ! -s "$T/resp" ] || fail "401 with a body on $route"
        done
done
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Basic $ADMIN" "$URL/v1/info")
[ "$code" = 401 ] || fail "Basic auth accepted ($code)"
# a large upload without a token is refused before its body is read
head -c $((20 << 20)) /dev/zero >big.bin
http "" POST /v1/chunks/put --data-binary @big.bin
expect_code 401 "unauthenticated upload"

log "info"
http "$ADMIN" GET /v1/info
expect_code 200 "info"
[ "$(jq -r '.role + " " + (.chunk_size|tostring) + " " + .token_role + " " + (.user|tostring)' resp)" = \
        "server 65536 admin null" ] || fail "info: $(cat resp)"
jq -e '.version | test("^[0-9]")' resp >/dev/null || fail "info has no version"
http "$ALICE" GET /v1/info
[ "$(jq -r '.user + " " + .token_role' resp)" = "alice user" ] || fail "info for alice: $(cat resp)"
http "$LOCAL" GET /v1/info
expect_code 200 "info with the local token"

log "tokens made and revoked while the daemon runs take effect at once"
must_succeed roam token create --role host
LIVE=$OUT
http "$LIVE" GET /v1/info
expect_code 200 "a token created while the daemon runs"
must_succeed roam token revoke "$(printf '%s' "$LIVE" | sha_of)"
http "$LIVE" GET /v1/info
expect_code 401 "a token revoked while the daemon runs"

log "refs: list and get; an import into the same home while the daemon runs"
make_image b.raw 4 2
must_succeed roam image import ubuntu b.raw
IMG2=$OUT
http "$ADMIN" GET /v1/refs
expect_code 200 "refs list"
[ "$(jq -r '.refs["images/debian"]' resp)" = "$IMG" ] || fail "refs list: $(cat resp)"
[ "$(jq -r '.refs["images/ubuntu"]' resp)" = "$IMG2" ] || fail "refs list misses the import made meanwhile"
http "$ADMIN" GET "/v1/refs?prefix=images/deb"
[ "$(jq -r '.refs | keys | join(",")' resp)" = "images/debian" ] || fail "refs?prefix: $(cat resp)"
http "$ADMIN" GET /v1/refs/images/debian
expect_code 200 "ref get"
[ "$(jq -r .id resp)" = "$IMG" ] && [ "$(jq -r .name resp)" = images/debian ] || fail "ref get: $(cat resp)"
http "$ADMIN" GET /v1/refs/images/nothing
expect_code 404 "absent ref"
expect_error "not found" "absent ref"
http "$ADMIN" GET /v1/refs/images/../etc --path-as-is
expect_code 400 "ref name with .."
http "$ADMIN" GET "/v1/refs/images/%2e%2e/x"
[ "$CODE" = 400 ] || [ "$CODE" = 404 ] || fail "encoded .. in a ref name: $CODE"

log "objects: the index object's bytes hash to its id"
http "$ADMIN" GET "/v1/objects/$IMG" -o idx.bin
expect_code 200 "object get"
[ "$(sha_of <idx.bin)" = "$IMG" ] || fail "object bytes do not hash to the id"
http "$ADMIN" GET "/v1/objects/$(printf 'x' | sha_of)"
expect_code 404 "absent object"
http "$ADMIN" GET /v1/objects/xyz
expect_code 400 "malformed object id"
# the chunk ids of the index: 32-byte header, then 32-byte ids (zero = hole)
python3 - idx.bin >chunks.txt <<'PY'
import sys
d = open(sys.argv[1], "rb").read()
n = int.from_bytes(d[24:32], "little")
for i in range(n):
    c = d[32 + 32 * i: 64 + 32 * i]
    if any(c):
        print(c.hex())
PY
mapfile -t CHUNKS < <(sort -u chunks.txt)
[ ${#CHUNKS[@]} -ge 10 ] || fail "expected at least 10 distinct chunks, got ${#CHUNKS[@]}"

log "chunks: single GET, the zstd frame decompresses to bytes that hash to the id"
for c in "${CHUNKS[@]:0:6}"; do
        http "$ADMIN" GET "/v1/chunks/$c" -o chunk.zst
        expect_code 200 "chunk get"
        [ "$(zstd -q -d -c chunk.zst | sha_of)" = "$c" ] || fail "chunk $c does not verify"
done
http "$ALICE" GET "/v1/chunks/${CHUNKS[0]}" -o chunk.zst
expect_code 200 "chunk get by a user token"
http "$ADMIN" GET "/v1/chunks/$(printf 'x' | sha_of)"
expect_code 404 "absent chunk"

log "chunks/missing answers exactly the absent ids, in request order"
absent1=$(printf 'absent1' | sha_of)
absent2=$(printf 'absent2' | sha_of)
hex2bin "$absent1" "${CHUNKS[0]}" "${CHUNKS[1]}" "$absent2" >ids.bin
http "$HOST" POST /v1/chunks/missing --data-binary @ids.bin -H 'Content-Type: application/octet-stream'
expect_code 200 "chunks/missing"
[ "$(od -An -v -tx1 resp | tr -d ' \n')" = "$absent1$absent2" ] || fail "chunks/missing answered $(od -An -tx1 resp)"
printf 'abc' >ragged.bin
http "$HOST" POST /v1/chunks/missing --data-binary @ragged.bin
expect_code 400 "ragged id list"
hex2bin "${CHUNKS[0]}" 0000000000000000000000000000000000000000000000000000000000000000 >nullid.bin
http "$HOST" POST /v1/chunks/missing --data-binary @nullid.bin
expect_code 400 "null id in a list"

log "chunks/get streams verified records in request order"
hex2bin "${CHUNKS[2]}" "${CHUNKS[3]}" "${CHUNKS[2]}" "${CHUNKS[4]}" >get.bin
http "$HOST" POST /v1/chunks/get --data-binary @get.bin -o stream.bin
expect_code 200 "chunks/get"
python3 - stream.bin >stream.txt <<'PY'
import hashlib, subprocess, sys
d = open(sys.argv[1], "rb").read()
p = 0
while p < len(d):
    cid = d[p:p + 32]; n = int.from_bytes(d[p + 32:p + 36], "little")
    frame = d[p + 36:p + 36 + n]
    assert len(frame) == n, "truncated record"
    plain = subprocess.run(["zstd", "-q", "-d", "-c"], input=frame, capture_output=True, check=True).stdout
    assert hashlib.sha256(plain).digest() == cid, "record does not verify"
    print(cid.hex())
    p += 36 + n
PY
[ "$(tr '\n' ' ' <stream.txt)" = "${CHUNKS[2]} ${CHUNKS[3]} ${CHUNKS[2]} ${CHUNKS[4]} " ] || fail "chunks/get order: $(cat stream.txt)"
hex2bin "${CHUNKS[2]}" "$absent1" >get2.bin
http "$HOST" POST /v1/chunks/get --data-binary @get2.bin
expect_code 404 "chunks/get with an absent id"
expect_error "$absent1" "chunks/get names the absent chunk"

# make_record PLAIN_FILE [ID]: one chunk-stream record (the id defaults to the real hash)
make_record() {
        python3 - "$@" <<'PY'
import hashlib, subprocess, sys
plain = open(sys.argv[1], "rb").read()
cid = bytes.fromhex(sys.argv[2]) if len(sys.argv) > 2 else hashlib.sha256(plain).digest()
# from a file, so that the frame header carries the content size (required)
z = subprocess.run(["zstd", "-q", "-c", "-1", sys.argv[1]], capture_output=True, check=True).stdout
sys.stdout.buffer.write(cid + len(z).to_bytes(4, "little") + z)
PY
}

log "chunks/put: stored, durable, then present"
head -c 50000 /dev/urandom >new1.bin
head -c 30000 /dev/urandom >new2.bin
new1=$(sha_of <new1.bin)
new2=$(sha_of <new2.bin)
{ make_record new1.bin; make_record new2.bin; } >put.bin
http "$HOST" POST /v1/chunks/put --data-binary @put.bin
expect_code 200 "chunks/put"
[ "$(jq -c . resp)" = '{"stored":2,"present":0}' ] || fail "chunks/put: $(cat resp)"
[ -f "$ROAM_HOME/store/chunks/${new1:0:2}/$new1" ] || fail "acknowledged chunk is not published"
http "$HOST" POST /v1/chunks/put --data-binary @put.bin
[ "$(jq -c . resp)" = '{"stored":0,"present":2}' ] || fail "chunks/put again: $(cat resp)"
http "$ALICE" GET "/v1/chunks/$new2" -o chunk.zst
[ "$(zstd -q -d -c chunk.zst | sha_of)" = "$new2" ] || fail "stored chunk does not read back"

log "chunks/put with a record that does not match its id: 400, nothing stored, fsck clean"
head -c 40000 /dev/urandom >good.bin
head -c 40000 /dev/urandom >evil.bin
good=$(sha_of <good.bin)
claimed=$(printf 'claimed' | sha_of)
{ make_record good.bin; make_record evil.bin "$claimed"; } >bad.bin
http "$HOST" POST /v1/chunks/put --data-binary @bad.bin
expect_code 400 "mismatched chunk"
expect_error "$claimed" "the error names the chunk"
# a later successful put commits whatever is pending: the good record must not be
head -c 20000 /dev/urandom >later.bin
make_record later.bin >later.rec
http "$HOST" POST /v1/chunks/put --data-binary @later.rec
expect_code 200 "a put after a refused one"
for c in "$good" "$claimed"; do
        http "$ADMIN" GET "/v1/chunks/$c"
        expect_code 404 "chunk of a refused request"
        [ ! -e "$ROAM_HOME/store/chunks/${c:0:2}/$c" ] || fail "chunk $c of a refused request was stored"
done
printf '%s' "${claimed:0:10}" >trunc.bin
http "$HOST" POST /v1/chunks/put --data-binary @trunc.bin
expect_code 400 "truncated chunk stream"
{ hex2bin "$claimed"; printf '\0\0\0\0'; } >zero.bin
http "$HOST" POST /v1/chunks/put --data-binary @zero.bin
expect_code 400 "zero-length record"
head -c 65536 /dev/zero >zeros.bin
make_record zeros.bin >zrec.bin
http "$HOST" POST /v1/chunks/put --data-binary @zrec.bin
expect_code 400 "all-zero chunk"
must_succeed roam store fsck

log "objects: PUT verifies the hash"
printf 'opaque object bytes' >obj.bin
obj=$(sha_of <obj.bin)
http "$HOST" PUT "/v1/objects/$obj" --data-binary @obj.bin
expect_code 201 "object put"
http "$HOST" PUT "/v1/objects/$absent1" --data-binary @obj.bin
expect_code 400 "object with the wrong hash"
expect_error "$absent1" "object hash error"
[ ! -e "$ROAM_HOME/store/objects/${absent1:0:2}/$absent1" ] || fail "wrong object stored"
http "$HOST" GET "/v1/objects/$obj" -o back.bin
cmp obj.bin back.bin || fail "object does not read back"

log "user tokens: images read-only, their own sessions read-write, other sessions invisible"
http "$ADMIN" PUT /v1/refs/sessions/bob/head -d "{\"id\":\"$IMG\"}"
expect_code 200 "admin sets bob's session"
http "$ALICE" GET /v1/refs/images/debian
expect_code 200 "alice reads an image"
http "$ALICE" GET /v1/refs/sessions/bob/head
expect_code 404 "alice reads bob's session"
expect_error "not found" "alice reads bob's session"
http "$ALICE" GET /v1/refs/sessions/bob/nothing
expect_code 404 "alice reads an absent session of bob"
http "$ALICE" GET "/v1/refs?prefix=sessions/"
expect_code 200 "alice lists sessions"
[ "$(jq -c .refs resp)" = '{}' ] || fail "alice sees other sessions: $(cat resp)"
http "$ALICE" GET /v1/refs
jq -e '.refs["images/debian"] and (.refs | keys | all(startswith("images/") or startswith("sessions/alice/")))' resp \
        >/dev/null || fail "alice's listing: $(cat resp)"
http "$BOB" GET /v1/refs/sessions/bob/head
expect_code 200 "bob reads his session"
http "$ALICE" PUT /v1/refs/sessions/alice/x -d "{\"id\":\"$IMG\",\"old\":null}"
expect_code 200 "alice writes her session"
http "$ALICE" GET /v1/refs/sessions/alice/x
[ "$(jq -r .id resp)" = "$IMG" ] || fail "alice's session ref"
http "$ALICE" PUT /v1/refs/sessions/bob/head -d "{\"id\":\"$IMG2\"}"
expect_code 404 "alice writes bob's session"
http "$ALICE" DELETE /v1/refs/sessions/bob/head
expect_code 404 "alice deletes bob's session"
http "$ALICE" PUT /v1/refs/images/debian -d "{\"id\":\"$IMG2\"}"
expect_code 403 "alice writes an image"
http "$ALICE" PUT /v1/refs/other/x -d "{\"id\":\"$IMG2\"}"
expect_code 404 "alice writes outside her reach"
http "$ADMIN" GET /v1/refs/sessions/bob/head
[ "$(jq -r .id resp)" = "$IMG" ] || fail "bob's session changed"
http "$ADMIN" GET /v1/refs/images/debian
[ "$(jq -r .id resp)" = "$IMG" ] || fail "the image changed"

log "ref compare-and-swap"
http "$ALICE" PUT /v1/refs/sessions/alice/x -d "{\"id\":\"$IMG2\",\"old\":null}"
expect_code 409 "old=null on an existing ref"
http "$ALICE" PUT /v1/refs/sessions/alice/x -d "{\"id\":\"$IMG2\",\"old\":\"$IMG2\"}"
expect_code 409 "wrong old"
expect_match "$(jq -r .error resp)" "$IMG" "409 names the current value"
http "$ALICE" PUT /v1/refs/sessions/alice/x -d "{\"id\":\"$IMG2\",\"old\":\"$IMG\"}"
expect_code 200 "right old"
http "$ALICE" PUT /v1/refs/sessions/alice/x -d "{\"id\":\"$IMG\"}"
expect_code 200 "unconditional"
http "$ALICE" DELETE /v1/refs/sessions/alice/x
expect_code 200 "delete"
http "$ALICE" DELETE /v1/refs/sessions/alice/x
expect_code 404 "delete again"

log "a ref to an object with missing chunks or objects: 412, ref unchanged"
http "$ALICE" PUT /v1/refs/sessions/alice/keep -d "{\"id\":\"$IMG\"}"
expect_code 200 "set up"
python3 - "$absent1" >broken.idx <<'PY'
import struct, sys
# an index of one 64 KiB chunk the server lacks
sys.stdout.buffer.write(b"ROAMIDX\0" + struct.pack("<IIQQ", 1, 65536, 65536, 1) + bytes.fromhex(sys.argv[1]))
PY
broken=$(sha_of <broken.idx)
http "$HOST" PUT "/v1/objects/$broken" --data-binary @broken.idx
expect_code 201 "broken index put"
http "$ALICE" PUT /v1/refs/sessions/alice/keep -d "{\"id\":\"$broken\"}"
expect_code 412 "ref to an index with a missing chunk"
expect_error "$absent1" "412 names the missing chunk"
http "$ALICE" PUT /v1/refs/sessions/alice/new -d "{\"id\":\"$absent2\"}"
expect_code 412 "ref to a missing object"
http "$ALICE" GET /v1/refs/sessions/alice/keep
[ "$(jq -r .id resp)" = "$IMG" ] || fail "ref changed by a refused update"
http "$ALICE" GET /v1/refs/sessions/alice/new
expect_code 404 "refused new ref exists"
# once the chunk arrives the same update succeeds
head -c 65536 /dev/urandom >fill.bin
fill=$(sha_of <fill.bin)
python3 - "$fill" >fixed.idx <<'PY'
import struct, sys
sys.stdout.buffer.write(b"ROAMIDX\0" + struct.pack("<IIQQ", 1, 65536, 65536, 1) + bytes.fromhex(sys.argv[1]))
PY
fixed=$(sha_of <fixed.idx)
make_record fill.bin >fill.rec
http "$ALICE" PUT "/v1/objects/$fixed" --data-binary @fixed.idx
expect_code 201 "user puts an object"
http "$ALICE" POST /v1/chunks/put --data-binary @fill.rec
expect_code 200 "user puts a chunk"
http "$ALICE" PUT /v1/refs/sessions/alice/keep -d "{\"id\":\"$fixed\",\"old\":\"$IMG\"}"
expect_code 200 "complete update"

# pack.py build OUT [--flags N] [--count-chunks N] obj:FILE[:ID]... chunk:FILE[:ID]... pages:FILE:BASE...: a pack
# (src/sync/pack.h), every frame from the zstd tool, ids the real hashes unless given;
# pack.py read FILE: "flags F objects N chunks N", then "KIND ID" per record (each verified)
cat >pack.py <<'PY'
import hashlib, struct, subprocess, sys

def frame(path):
    # from a file, so that the frame header carries the content size (required)
    return subprocess.run(["zstd", "-q", "-c", "-1", path], capture_output=True, check=True).stdout

if sys.argv[1] == "build":
    out, args, flags, n_chunks = sys.argv[2], sys.argv[3:], 1, None
    recs = {"obj": [], "chunk": []}
    while args:
        a = args.pop(0)
        if a == "--flags":
            flags = int(args.pop(0)); continue
        if a == "--count-chunks":
            n_chunks = int(args.pop(0)); continue
        kind, path, *cid = a.split(":")
        plain = open(path, "rb").read()
        if kind == "pages":
            # pages:FILE:BASE: the chunk FILE as pages, each page that equals
            # the same page of BASE a reference to it in base 0 (page-chunk.h)
            base, ops, refs, lit = open(cid[0], "rb").read(), b"", b"", b""
            for k in range(0, len(plain), 4096):
                pg = plain[k:k + 4096]
                if len(pg) == 4096 and pg == base[k:k + 4096]:
                    ops += b"\x02"; refs += b"\x00" + (k // 4096).to_bytes(4, "little")
                else:
                    ops += b"\x00"; lit += pg
            open("lit.tmp", "wb").write(lit)
            z = b"RPG1" + struct.pack("<IHH", len(plain), len(ops), len(refs) // 5) + ops + refs
            z += frame("lit.tmp") if lit else b""
            recs["chunk"].append(hashlib.sha256(plain).digest() + len(z).to_bytes(4, "little") + z)
            continue
        cid = bytes.fromhex(cid[0]) if cid else hashlib.sha256(plain).digest()
        z = frame(path)
        recs[kind].append(cid + len(z).to_bytes(4, "little") + z)
    n_chunks = len(recs["chunk"]) if n_chunks is None else n_chunks
    with open(out, "wb") as f:
        f.write(b"ROAMPK1\n" + struct.pack("<III", len(recs["obj"]), n_chunks, flags))
        f.write(b"".join(recs["obj"] + recs["chunk"]))
else:
    d = open(sys.argv[2], "rb").read()
    assert d[:8] == b"ROAMPK1\n", "no pack magic"
    n_obj, n_chunk, flags = struct.unpack("<III", d[8:20])
    print("flags %d objects %d chunks %d" % (flags, n_obj, n_chunk))
    p = 20
    for i in range(n_obj + n_chunk):
        cid = d[p:p + 32]; n = int.from_bytes(d[p + 32:p + 36], "little")
        z = d[p + 36:p + 36 + n]
        assert len(z) == n and n > 0, "truncated record %d" % i
        plain = subprocess.run(["zstd", "-q", "-d", "-c"], input=z, capture_output=True, check=True).stdout
        assert hashlib.sha256(plain).digest() == cid, "record %d does not verify" % i
        print("%s %s" % ("object" if i < n_obj else "chunk", cid.hex()))
        p += 36 + n
    assert p == len(d), "bytes after the last record"
PY
# index_of OUT CHUNK_ID...: an index object of 64 KiB chunks
index_of() {
        python3 - "$@" <<'PY'
import struct, sys
ids = sys.argv[2:]
with open(sys.argv[1], "wb") as f:
    f.write(b"ROAMIDX\0" + struct.pack("<IIQQ", 1, 65536, 65536 * len(ids), len(ids)))
    f.write(b"".join(bytes.fromhex(i) for i in ids))
PY
}
# pack_error REGEX WHAT: a one-line JSON error that matches
pack_error() {
        expect_error "$1" "$2"
        expect_one_line "$(jq -r .error "$T/resp")"
}

log "pack/get: bad requests are 400, an unknown want is 404"
for body in '{' 'null' '[]' '{"have":[]}' '{"want":"xyz"}' '{"want":5}' \
        '{"want":"0000000000000000000000000000000000000000000000000000000000000000"}' \
        "{\"want\":\"$IMG\",\"have\":\"$IMG\"}" "{\"want\":\"$IMG\",\"have\":[\"nothex\"]}" \
        "{\"want\":\"$IMG\",\"want\":\"$IMG\"}" ''; do
        http "$HOST" POST /v1/pack/get -d "$body"
        expect_code 400 "pack/get with '$body'"
        pack_error "pack request" "pack/get with '$body'"
done
have17=$(for i in $(seq 1 17); do printf '"%s",' "$(printf 'h%s' "$i" | sha_of)"; done)
http "$HOST" POST /v1/pack/get -d "{\"want\":\"$IMG\",\"have\":[${have17%,}]}"
expect_code 400 "pack/get with 17 haves"
pack_error "at most 16" "pack/get with 17 haves"
for max in 1048575 67108865 -1 1.5e6 '"4194304"'; do
        http "$HOST" POST /v1/pack/get -d "{\"want\":\"$IMG\",\"max_bytes\":$max}"
        expect_code 400 "pack/get with max_bytes $max"
        pack_error "max_bytes" "pack/get with max_bytes $max"
done
http "$HOST" POST /v1/pack/get -d "{\"want\":\"$absent1\"}"
expect_code 404 "pack/get of an absent object"
pack_error "$absent1" "pack/get names the absent object"
http "$HOST" POST /v1/pack/get -d "{\"want\":\"$broken\"}"
expect_code 404 "pack/get of an index whose chunk is absent"
pack_error "$absent1" "pack/get names the absent chunk"
head -c 5000 /dev/zero | tr '\0' ' ' >pad-pack.json
http "$HOST" POST /v1/pack/get --data-binary @pad-pack.json
expect_code 413 "oversized pack request"

log "pack/get: everything below want, less what lies below have"
http "$HOST" POST /v1/pack/get -d "{\"want\":\"$IMG2\",\"have\":[\"$absent1\"]}" -o pack-full.bin
expect_code 200 "pack/get without a useful have"
python3 pack.py read pack-full.bin >pack-full.txt || fail "pack/get answered a bad pack"
http "$HOST" GET "/v1/objects/$IMG2" -o idx2.bin
want_chunks=$(python3 - idx2.bin <<'PY' | sort -u | wc -l
import sys
d = open(sys.argv[1], "rb").read()
n = int.from_bytes(d[24:32], "little")
for i in range(n):
    c = d[32 + 32 * i: 64 + 32 * i]
    if any(c):
        print(c.hex())
PY
)
[ "$(head -n 1 pack-full.txt)" = "flags 1 objects 1 chunks $want_chunks" ] ||
        fail "pack of $IMG2: $(head -n 1 pack-full.txt), expected $want_chunks chunks"
[ "$(sed -n 2p pack-full.txt)" = "object $IMG2" ] || fail "pack does not start with the object: $(sed -n 2p pack-full.txt)"
http "$HOST" POST /v1/pack/get -d "{\"want\":\"$IMG2\",\"have\":[\"$IMG\"]}" -o pack-less.bin
expect_code 200 "pack/get with a have"
python3 pack.py read pack-less.bin >pack-less.txt || fail "pack/get answered a bad pack"
! grep -qFf chunks.txt pack-less.txt || fail "the pack holds chunks below have"
shared=$(sed -n 's/^chunk //p' pack-full.txt | grep -cFf chunks.txt || true)
[ "$(grep -c '^chunk ' pack-less.txt)" = $((want_chunks - shared)) ] || fail "pack with have: $(head -n 1 pack-less.txt)"
http "$HOST" POST /v1/pack/get -d "{\"want\":\"$IMG\",\"have\":[\"$IMG\"]}" -o pack-none.bin
[ "$(python3 pack.py read pack-none.bin)" = "flags 1 objects 0 chunks 0" ] || fail "pack of what the receiver has"
http "$HOST" POST /v1/pack/get -d "{\"want\":\"$IMG\",\"max_bytes\":1048576}" -o pack-part.bin
expect_code 200 "pack/get with max_bytes"
[ "$(stat -c %s pack-part.bin)" -le 1048576 ] || fail "pack over max_bytes: $(stat -c %s pack-part.bin) bytes"
python3 pack.py read pack-part.bin >pack-part.txt || fail "pack/get answered a bad pack"
expect_match "$(head -n 1 pack-part.txt)" "^flags 0 objects 1 chunks [1-9]" "a pack cut at max_bytes"

log "pack/put: a bad record stores nothing of the request"
head -c 65536 /dev/urandom >p1.bin
head -c 65536 /dev/urandom >p2.bin
head -c 40000 /dev/urandom >p3.bin
p1=$(sha_of <p1.bin) p2=$(sha_of <p2.bin) p3=$(sha_of <p3.bin)
index_of p.idx "$p1" "$p2"
pidx=$(sha_of <p.idx)
python3 pack.py build good.pack obj:p.idx chunk:p1.bin chunk:p2.bin
printf 'garbage, not a pack' >garbage.pack
head -c $(($(stat -c %s good.pack) - 9)) good.pack >truncated.pack
cp good.pack trailing.pack; printf 'x' >>trailing.pack
python3 pack.py build flags.pack --flags 3 obj:p.idx
python3 pack.py build count.pack --count-chunks 3 obj:p.idx chunk:p1.bin chunk:p2.bin
python3 pack.py build badchunk.pack obj:p.idx chunk:p1.bin "chunk:p3.bin:$claimed"
python3 pack.py build badobj.pack "obj:p.idx:$absent2" chunk:p1.bin
for f in garbage truncated trailing flags count badchunk badobj; do
        http "$HOST" POST /v1/pack/put --data-binary "@$f.pack"
        expect_code 400 "pack/put of $f.pack"
        pack_error "nothing of this request was stored" "pack/put of $f.pack"
done
http "$HOST" POST /v1/pack/put --data-binary @badchunk.pack
expect_error "$claimed" "pack/put names the chunk that does not match"
http "$HOST" POST /v1/pack/put --data-binary @badobj.pack
expect_error "$absent2" "pack/put names the object that does not match"
# a later successful put commits whatever is pending: these must not be
http "$HOST" POST /v1/chunks/put --data-binary @later.rec
expect_code 200 "a put after refused packs"
for c in "$p1" "$claimed"; do
        http "$ADMIN" GET "/v1/chunks/$c"
        expect_code 404 "chunk of a refused pack"
        [ ! -e "$ROAM_HOME/store/chunks/${c:0:2}/$c" ] || fail "chunk $c of a refused pack was stored"
done
http "$ADMIN" GET "/v1/objects/$pidx"
expect_code 404 "object of a refused pack"

log "pack/put with a ref: access is checked before anything is stored"
http "$ALICE" POST "/v1/pack/put?ref=images/debian&id=$pidx" --data-binary @good.pack
expect_code 403 "alice packs onto an image"
pack_error "may not change ref 'images/debian'" "403 message"
http "$ALICE" POST "/v1/pack/put?ref=sessions/bob/head&id=$pidx" --data-binary @good.pack
expect_code 404 "alice packs onto bob's session"
pack_error "not found" "404 message"
http "$ALICE" POST "/v1/pack/put?ref=../x&id=$pidx" --data-binary @good.pack
expect_code 400 "pack/put with a bad ref name"
http "$ALICE" POST "/v1/pack/put?ref=sessions/alice/p" --data-binary @good.pack
expect_code 400 "pack/put with a ref and no id"
pack_error "id=HEX" "pack/put without id"
http "$ALICE" POST "/v1/pack/put?ref=sessions/alice/p&id=$pidx&old=xyz" --data-binary @good.pack
expect_code 400 "pack/put with a malformed old"
http "$ALICE" POST /v1/chunks/put --data-binary @later.rec
for c in "$p1" "$p2"; do
        [ ! -e "$ROAM_HOME/store/chunks/${c:0:2}/$c" ] || fail "chunk $c of a refused pack/put was stored"
done
http "$ADMIN" GET /v1/refs/sessions/bob/head
[ "$(jq -r .id resp)" = "$IMG" ] || fail "bob's session changed"
http "$ADMIN" GET /v1/refs/images/debian
[ "$(jq -r .id resp)" = "$IMG" ] || fail "the image changed"

log "pack/put without a ref: stored and durable"
python3 pack.py build p3.pack chunk:p3.bin
http "$HOST" POST /v1/pack/put --data-binary @p3.pack
expect_code 200 "pack/put without a ref"
[ "$(jq -c . resp)" = '{"objects":0,"stored":1,"present":0}' ] || fail "pack/put without a ref: $(cat resp)"
[ -f "$ROAM_HOME/store/chunks/${p3:0:2}/$p3" ] || fail "acknowledged pack chunk is not published"

log "pack/put with a ref: 412 when chunks are missing, 409 on a stale old"
python3 pack.py build half.pack obj:p.idx chunk:p1.bin
http "$ALICE" POST "/v1/pack/put?ref=sessions/alice/p&id=$pidx&old=none" --data-binary @half.pack
expect_code 412 "pack without a chunk the ref needs"
pack_error "$p2" "412 names the missing chunk"
http "$ALICE" GET /v1/refs/sessions/alice/p
expect_code 404 "a ref set by a refused pack/put"
http "$ALICE" POST "/v1/pack/put?ref=sessions/alice/keep&id=$IMG&old=$IMG2" --data-binary @p3.pack
expect_code 409 "pack/put with a stale old"
pack_error "$fixed" "409 names the current value"
http "$ALICE" POST "/v1/pack/put?ref=sessions/alice/keep&id=$IMG&old=none" --data-binary @p3.pack
expect_code 409 "pack/put with old=none on an existing ref"
http "$ALICE" GET /v1/refs/sessions/alice/keep
[ "$(jq -r .id resp)" = "$fixed" ] || fail "ref changed by a refused pack/put"

log "pack/put: stored and durable, then the ref is set"
http "$ALICE" POST "/v1/pack/put?ref=sessions/alice/p&id=$pidx&old=none" --data-binary @good.pack
expect_code 200 "pack/put with a ref"
[ "$(jq -c '[.name, .id, .objects, .stored, .present]' resp)" = "[\"sessions/alice/p\",\"$pidx\",1,1,1]" ] ||
        fail "pack/put with a ref: $(cat resp)"
http "$ALICE" GET /v1/refs/sessions/alice/p
[ "$(jq -r .id resp)" = "$pidx" ] || fail "pack/put did not set the ref"
http "$ALICE" GET "/v1/objects/$pidx" -o back.idx
cmp p.idx back.idx || fail "packed object does not read back"
for c in "$p1" "$p2"; do
        http "$ALICE" GET "/v1/chunks/$c" -o chunk.zst
        [ "$(zstd -q -d -c chunk.zst | sha_of)" = "$c" ] || fail "packed chunk $c does not read back"
done
http "$ALICE" POST "/v1/pack/put?ref=sessions/alice/p&id=$pidx&old=$pidx" --data-binary @good.pack
[ "$(jq -c '[.objects, .stored, .present]' resp)" = "[1,0,2]" ] || fail "pack/put again: $(cat resp)"
http "$ALICE" POST /v1/pack/get -d "{\"want\":\"$pidx\",\"have\":[\"$fixed\"]}" -o back.pack
python3 pack.py read back.pack >back.txt
[ "$(sort back.txt | tr '\n' ' ')" = "$(printf '%s\n' "chunk $p1" "chunk $p2" "flags 1 objects 1 chunks 2" \
        "object $pidx" | sort | tr '\n' ' ')" ] || fail "pack/get of a packed ref: $(cat back.txt)"
must_succeed roam store fsck

log "pack/put with bases: chunks as pages of a blob the server holds, rebuilt and checked there"
# q1: p1 with its first page changed; the other 15 pages are references to p1's
{ head -c 4096 /dev/urandom; tail -c +4097 p1.bin; } >q1.bin
head -c 65536 /dev/urandom >q2.bin
q1=$(sha_of <q1.bin) q2=$(sha_of <q2.bin)
index_of q.idx "$q1" "$q2"
qidx=$(sha_of <q.idx)
python3 pack.py build paged.pack --flags 3 obj:q.idx pages:q1.bin:p1.bin chunk:q2.bin
for q in bases=0 bases=17 bases=x bases=01; do
        http "$ALICE" POST "/v1/pack/put?$q" --data-binary @good.pack
        expect_code 400 "pack/put?$q"
        pack_error "bases must be 1..16" "pack/put?$q"
done
http "$ALICE" POST "/v1/pack/put?bases=2" --data-binary @garbage.pack
expect_code 400 "pack/put with fewer bytes than its base ids"
pack_error "shorter than the 2 base ids" "a body shorter than its bases"
http "$ALICE" POST "/v1/pack/put?ref=sessions/alice/q&id=$qidx" --data-binary @paged.pack
expect_code 400 "a paged pack without bases"
pack_error "names no bases" "a paged pack without bases"
# a base this server lacks: the paged chunk does not rebuild; 412, no ref
{ head -c 32 /dev/urandom; cat paged.pack; } >paged-nobase.bin
http "$ALICE" POST "/v1/pack/put?bases=1&ref=sessions/alice/q&id=$qidx" --data-binary @paged-nobase.bin
expect_code 412 "pages of a base the server lacks"
pack_error "do not match this store's bases" "pages of a base the server lacks"
http "$ALICE" GET /v1/refs/sessions/alice/q
expect_code 404 "the ref of a pack whose pages did not rebuild"
[ ! -e "$ROAM_HOME/store/chunks/${q1:0:2}/$q1" ] || fail "a chunk rebuilt from a base the server lacks"
# the base it holds (the index of p1, p2): rebuilt, checked, stored, ref set
{ python3 -c "import sys; sys.stdout.buffer.write(bytes.fromhex('$pidx'))"; cat paged.pack; } >paged-upload.bin
http "$ALICE" POST "/v1/pack/put?bases=1&ref=sessions/alice/q&id=$qidx" --data-binary @paged-upload.bin
expect_code 200 "a paged pack/put"
# q2 came whole with the refused upload and stayed ("the rest is stored")
[ "$(jq -c '[.objects, .stored, .present]' resp)" = "[1,1,1]" ] || fail "paged pack/put: $(cat resp)"
http "$ALICE" GET "/v1/chunks/$q1" -o chunk.zst
[ "$(zstd -q -d -c chunk.zst | sha_of)" = "$q1" ] || fail "the chunk sent as pages does not read back"
http "$ALICE" GET /v1/refs/sessions/alice/q
[ "$(jq -r .id resp)" = "$qidx" ] || fail "a paged pack/put did not set the ref"
must_succeed roam store fsck

log "bad input: malformed JSON, oversized bodies, unknown routes, wrong methods"
for body in '{' 'null' '[]' '{"id":"xyz"}' '{"id":null}' "{\"id\":\"$IMG\",\"old\":5}" "{\"id\":\"$IMG\",\"id\":\"$IMG\"}" ''; do
        http "$ADMIN" PUT /v1/refs/sessions/alice/j -d "$body"
        expect_code 400 "PUT ref with '$body'"
        expect_error "." "PUT ref with '$body'"
done
http "$ADMIN" GET /v1/refs/sessions/alice/j
expect_code 404 "malformed updates created a ref"
head -c 5000 /dev/zero | tr '\0' ' ' >pad.json
http "$ADMIN" PUT /v1/refs/sessions/alice/j --data-binary @pad.json
expect_code 413 "oversized ref body"
start=$SECONDS
head -c $((65 << 20)) /dev/zero >huge.bin
http "$ADMIN" POST /v1/chunks/put --data-binary @huge.bin
expect_code 413 "oversized chunk stream"
expect_error "larger than" "413 message"
http "$ADMIN" POST /v1/chunks/missing --data-binary @big.bin
expect_code 413 "oversized id list"
http "$ADMIN" POST /v1/pack/put --data-binary @huge.bin
expect_code 413 "pack over 64 MiB"
# chunked upload without a Content-Length: refused at the end, not buffered
head -c $((3 << 20)) /dev/urandom >chunked.bin
http "$ADMIN" POST /v1/chunks/get -H 'Transfer-Encoding: chunked' --data-binary @chunked.bin
expect_code 413 "oversized chunked body"
http "$ADMIN" PUT "/v1/objects/$IMG" -H 'Content-Type: application/octet-stream' --data-binary @huge.bin
expect_code 413 "object over 64 MiB"
http "$ADMIN" GET /v1/nope
expect_code 404 "unknown route"
expect_error "no such route" "unknown route"
http "$ADMIN" GET /v2/info
expect_code 404 "unknown version"
http "$ADMIN" DELETE /v1/info
expect_code 405 "DELETE info"
http "$ADMIN" POST /v1/refs/images/debian
expect_code 405 "POST a ref"
http "$ADMIN" PUT /v1/chunks/missing
expect_code 405 "PUT chunks/missing"
http "$ADMIN" GET /v1/chunks/put
expect_code 400 "GET chunks/put is a malformed chunk id"
curl -s -D headers.txt -o /dev/null -X DELETE -H "Authorization: Bearer $ADMIN" "$URL/v1/info"
grep -qi '^Allow: GET' headers.txt || fail "405 without Allow: $(cat headers.txt)"

log "a slowloris client does not block others"
cat >slow.py <<'PY'
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
socks = [socket.create_connection((host, port)) for _ in range(8)]
req = b"GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
for b in req:
    for s in socks:
        s.send(bytes([b]))
    time.sleep(1)
PY
hostport=${URL#http://}
python3 slow.py "${hostport%:*}" "${hostport##*:}" &
slow=$!
cleanup_add "kill $slow"
sleep 2
for i in 1 2 3 4 5; do
        t0=$(date +%s%N)
        http "$ADMIN" GET "/v1/objects/$IMG" -o /dev/null
        expect_code 200 "request next to slow clients"
        dt=$((($(date +%s%N) - t0) / 1000000))
        [ $dt -lt 2000 ] || fail "a request took ${dt} ms next to slow clients"
done
kill $slow 2>/dev/null || true
wait $slow 2>/dev/null || true

log "32 parallel clients"
pids=()
for i in $(seq 1 32); do
        c=${CHUNKS[$((i % ${#CHUNKS[@]}))]}
        (
                if [ $((i % 2)) = 0 ]; then
                        curl -sSf --max-time 60 -H "Authorization: Bearer $HOST" -o "par$i.zst" "$URL/v1/chunks/$c"
                        [ "$(zstd -q -d -c "par$i.zst" | sha_of)" = "$c" ]
                else
                        curl -sSf --max-time 60 -H "Authorization: Bearer $HOST" -o "par$i.idx" "$URL/v1/objects/$IMG"
                        [ "$(sha_of <"par$i.idx")" = "$IMG" ]
                fi
        ) &
        pids+=($!)
done
for p in "${pids[@]}"; do
        wait "$p" || fail "a parallel client failed"
done

log "SIGHUP reopens the log"
mv serve.log serve.log.1
kill -HUP "$PID"
wait_for 10 test -e serve.log || fail "log not reopened"
http "$ADMIN" GET /v1/info
wait_for 10 grep -q 'GET /v1/info 200' serve.log || fail "no request line in the reopened log"

log "SIGTERM: clean exit, store consistent"
stop_daemon
grep -q 'shutting down' serve.log || fail "no shutdown line in the log"
must_succeed roam store fsck
expect_match "$OUT" "store is consistent"

log "restart reuses the local token; a revoked local token is replaced"
start_daemon
[ "$(cat "$ROAM_HOME/local.token")" = "$LOCAL" ] || fail "local token changed on restart"
http "$ADMIN" GET /v1/refs/sessions/alice/keep
[ "$(jq -r .id resp)" = "$fixed" ] || fail "ref lost across restart"
stop_daemon
must_succeed roam token revoke "$(printf '%s' "$LOCAL" | sha_of)"
start_daemon
NEWLOCAL=$(cat "$ROAM_HOME/local.token")
[ "$NEWLOCAL" != "$LOCAL" ] || fail "revoked local token reused"
http "$NEWLOCAL" GET /v1/info
expect_code 200 "new local token"
stop_daemon

log "a daemon killed with SIGKILL leaves serve.json behind, which does not block a restart"
start_daemon
kill -9 "$PID"
wait "$SERVE_JOB" 2>/dev/null || true
[ -e "$ROAM_HOME/serve.json" ] || fail "serve.json vanished after SIGKILL"
start_daemon
http "$ADMIN" GET /v1/info
expect_code 200 "after a restart over a stale serve.json"
stop_daemon

log "TLS"
requires openssl
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -days 1 \
        -keyout key.pem -out cert.pem 2>/dev/null || fail "openssl req failed"
must_fail roam serve --listen 127.0.0.1:0 --tls-cert nothing.pem --tls-key key.pem
expect_match "$ERR" "nothing.pem"
start_daemon --tls-cert cert.pem --tls-key key.pem
expect_match "$URL" '^https://127\.0\.0\.1:[0-9]+$' "https url"
[ "$(jq -r .tls_cert "$ROAM_HOME/serve.json")" = "$T/cert.pem" ] || fail "serve.json tls_cert"
port=${URL##*:}
URL=https://localhost:$port
CURL_OPTS=(--cacert cert.pem --resolve "localhost:$port:127.0.0.1")
http "$ADMIN" GET /v1/info
expect_code 200 "info over https"
http "" GET /v1/info
expect_code 401 "no token over https"
http "$ADMIN" GET "/v1/objects/$IMG" -o tls.idx
[ "$(sha_of <tls.idx)" = "$IMG" ] || fail "object over https"
CURL_OPTS=()
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "https://localhost:$port/v1/info" \
        --resolve "localhost:$port:127.0.0.1" || true)
[ "$code" = 000 ] || fail "an untrusted certificate was accepted ($code)"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$port/v1/info" || true)
[ "$code" != 200 ] || fail "plain HTTP answered on the TLS port"
stop_daemon
must_succeed roam store fsck

log "IPv6 literal"
if python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null; then
        rm -f "$ROAM_HOME/serve.json"
        roam serve --listen '[::1]:0' --log "$T/serve6.log" &
        SERVE_JOB=$!
        wait_for 60 test -s "$ROAM_HOME/serve.json" || fail "roam serve on [::1] did not start"
        URL=$(jq -r .url "$ROAM_HOME/serve.json")
        PID=$(jq -r .pid "$ROAM_HOME/serve.json")
        cleanup_add "kill -9 $PID"
        expect_match "$URL" '^http://\[::1\]:[0-9]+$' "ipv6 url"
        http "$ADMIN" GET /v1/info
        expect_code 200 "info over IPv6"
        stop_daemon
fi

log "ok"
