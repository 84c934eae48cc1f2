#!/usr/bin/env bash
# TLS by default, with pinned pairing (docs/sync-protocol.md, "TLS and
# pinning"). A default 'roam serve' makes its key and self-signed
# certificate on first start and serves HTTPS; the fingerprint is logged, in
# serve.json and /v1/info, and in the tokens 'roam token create' prints; the
# same certificate comes back after a restart. Clients pin it: a token
# without it is refused naming the fingerprint, a replaced certificate is
# refused with both fingerprints in one line, --fingerprint overrides.
# Plain HTTP only with --insecure-http. Bad --tls-cert/--tls-key files and a
# half-written home pair are one-line errors. Then, between two network
# namespaces with the test guest: a laptop daemon pairs over TLS (the pin
# kept in its home), takes the session offline and online over TLS, and is
# refused, with both fingerprints, once the server's certificate changes.
. "$(dirname "$0")/../lib.sh"
requires curl
requires jq
requires openssl
use_tls
cd "$T"

P=$(free_port)
URL=https://127.0.0.1:$P
fp_of() { # CERT.pem: its SHA-256 fingerprint as roam writes it
        printf 'sha256:%s\n' "$(openssl x509 -in "$1" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f)"
}
stop_daemon() { kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; }
one_line_error() { # REGEX CMD...
        local re=$1; shift
        must_fail "$@"
        expect_one_line "$ERR"
        expect_match "$ERR" "$re" "error"
}

log "first start: a key and a self-signed certificate in the home; HTTPS"
head -c $((3 << 20)) /dev/urandom >deb.raw
must_succeed roam image import deb deb.raw
start_daemon "$ROAM_HOME" "127.0.0.1:$P"
[ -f "$ROAM_HOME/tls/cert.pem" ] && [ -f "$ROAM_HOME/tls/key.pem" ] || fail "no pair in $ROAM_HOME/tls"
[ "$(stat -c %a "$ROAM_HOME/tls/key.pem")" = 600 ] || fail "the TLS key is not mode 0600"
FP=$(fp_of "$ROAM_HOME/tls/cert.pem")
log "fingerprint $FP"
[ "$(jq -r .url "$ROAM_HOME/serve.json")" = "$URL" ] || fail "serve.json: $(cat "$ROAM_HOME/serve.json")"
[ "$(jq -r .fingerprint "$ROAM_HOME/serve.json")" = "$FP" ] || fail "serve.json has another fingerprint"
grep -q "made a TLS key and self-signed certificate" "$ROAM_HOME/serve.log" || fail "serve did not say it made the pair"
grep -q "fingerprint $FP" "$ROAM_HOME/serve.log" || fail "serve did not print the fingerprint"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$P/v1/info" || true)
[ "$code" != 200 ] || fail "plain HTTP answered on the default port"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$URL/v1/info" || true)
[ "$code" = 000 ] || fail "curl trusted the self-signed certificate without being told ($code)"

log "the pairing token carries the fingerprint; clients pin it"
must_succeed roam token create --role admin
ADMIN=$OUT
expect_match "$ADMIN" "^roam_[A-Za-z0-9_-]{43}@$FP$" "pairing token"
BARE=${ADMIN%@*}
must_succeed roam info "$URL" --token "$ADMIN"
expect_match "$OUT" "^tls: +$FP \(pinned\)$" "roam info"
must_succeed roam info "$URL" --token "$ADMIN" --json
[ "$(jq -r .tls_fingerprint <<<"$OUT")" = "$FP" ] || fail "/v1/info: $OUT"
must_succeed roam status   # the local daemon: pinned from serve.json
# the console rides the same TLS (the generated certificate names 127.0.0.1)
page=$(curl -s --cacert "$ROAM_HOME/tls/cert.pem" "$URL/") || fail "the console is not served over HTTPS"
grep -q '<html' <<<"$page" || fail "the console over HTTPS is no page"
page=$(curl -s --cacert "$ROAM_HOME/tls/cert.pem" "$URL/console/app.js")
grep -q 'host-fingerprint' <<<"$page" || fail "the console does not show the fingerprint"
must_succeed roam info "$URL" --token "$BARE" --fingerprint "$(openssl x509 -in "$ROAM_HOME/tls/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2)"
# what a server sees of a pairing token is the token (a browser, curl)
[ "$(curl -s --cacert "$ROAM_HOME/tls/cert.pem" -H "Authorization: Bearer $ADMIN" "$URL/v1/info" | jq -r .token_role)" = admin ] ||
        fail "the server refused a pairing token as a bearer"
one_line_error "cannot verify $URL: self-signed certificate, certificate $FP \(if that is the fingerprint 'roam serve' printed there, pin it: --fingerprint $FP" \
        roam info "$URL" --token "$BARE"
OTHER=sha256:$(printf '%064d' 7)
one_line_error "$URL presented certificate $FP, but $OTHER is pinned for it: refused" \
        roam info "$URL" --token "$BARE" --fingerprint "$OTHER"
one_line_error "fingerprint 'sha256:12' is malformed" roam info "$URL" --token "$BARE" --fingerprint sha256:12
one_line_error "the token's part after '@' is not a certificate fingerprint" roam info "$URL" --token "$BARE@sha256:zz"

log "pull over TLS with the pairing token"
export ROAM_HOME=$T/client
must_succeed roam pull "$URL" deb --token "$ADMIN"
must_succeed roam image list
expect_match "$OUT" "deb"
export ROAM_HOME=$T/home

log "a restart serves the same certificate"
stop_daemon
start_daemon "$ROAM_HOME" "127.0.0.1:$P"
[ "$(jq -r .fingerprint "$ROAM_HOME/serve.json")" = "$FP" ] || fail "the fingerprint changed across a restart"
[ "$(grep -c "made a TLS key" "$ROAM_HOME/serve.log")" = 1 ] || fail "a restart made another pair"
must_succeed roam info "$URL" --token "$ADMIN"

log "a replaced certificate is refused, with both fingerprints in one line"
stop_daemon
cp -a "$ROAM_HOME/tls" "$T/tls.orig"
rm "$ROAM_HOME/tls/cert.pem" "$ROAM_HOME/tls/key.pem"
start_daemon "$ROAM_HOME" "127.0.0.1:$P"
NEW=$(fp_of "$ROAM_HOME/tls/cert.pem")
[ "$NEW" != "$FP" ] || fail "a new pair has the old fingerprint"
one_line_error "$URL presented certificate $NEW, but $FP is pinned for it: refused \(if the server's certificate was replaced on purpose, pair again with a token from 'roam token create' there, or pass --fingerprint $NEW; else someone may be in between\)" \
        roam info "$URL" --token "$ADMIN"
ROAM_HOME=$T/client one_line_error "$NEW, but $FP is pinned" roam pull "$URL" deb --token "$ADMIN"
must_succeed roam info "$URL" --token "$ADMIN" --fingerprint "$NEW"
must_succeed roam token create --role admin --label second
expect_match "$OUT" "@$NEW$" "a token after the replacement"
stop_daemon
rm -rf "$ROAM_HOME/tls"
mv "$T/tls.orig" "$ROAM_HOME/tls"

log "a crash between key and certificate: the certificate is made from the key; a key lost is named"
rm "$ROAM_HOME/tls/cert.pem"
key_before=$(sha256sum <"$ROAM_HOME/tls/key.pem")
start_daemon "$ROAM_HOME" "127.0.0.1:$P"
[ "$(sha256sum <"$ROAM_HOME/tls/key.pem")" = "$key_before" ] || fail "the key was replaced"
openssl x509 -in "$ROAM_HOME/tls/cert.pem" -noout -pubkey >cert.pub
openssl pkey -in "$ROAM_HOME/tls/key.pem" -pubout >key.pub
cmp -s cert.pub key.pub || fail "the new certificate is not for the kept key"
stop_daemon
mv "$ROAM_HOME/tls/key.pem" "$T/key.saved"
one_line_error "TLS certificate '$ROAM_HOME/tls/cert.pem' has no key '$ROAM_HOME/tls/key.pem' \(remove the certificate" \
        roam serve --listen "127.0.0.1:$P"
mv "$T/key.saved" "$ROAM_HOME/tls/key.pem"

log "plain HTTP only with --insecure-http"
start_daemon "$ROAM_HOME" "127.0.0.1:$P" --insecure-http
[ "$(jq -r .url "$ROAM_HOME/serve.json")" = "http://127.0.0.1:$P" ] || fail "--insecure-http: $(cat "$ROAM_HOME/serve.json")"
[ "$(jq -r .fingerprint "$ROAM_HOME/serve.json")" = null ] || fail "--insecure-http has a fingerprint"
grep -q "warning: plain HTTP (--insecure-http)" "$ROAM_HOME/serve.log" || fail "no warning about plain HTTP"
must_succeed roam token create --role user --user alice
expect_match "$OUT" "^roam_[A-Za-z0-9_-]{43}$" "a token of a plain HTTP daemon"
[ "$(curl -s -H "Authorization: Bearer $OUT" "http://127.0.0.1:$P/v1/info" | jq -r .user)" = alice ] ||
        fail "plain HTTP does not answer with --insecure-http"
must_succeed roam status
stop_daemon

log "bad certificate and key files: one line naming the file"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=a -days 1 -keyout a.key -out a.pem 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=b -days 1 -keyout b.key -out b.pem 2>/dev/null
echo "not a certificate" >junk.pem
bad_serve() { one_line_error "$1" roam serve --listen "127.0.0.1:$P" "${@:2}"; }
bad_serve "cannot read TLS certificate 'none.pem': No such file" --tls-cert none.pem --tls-key a.key
bad_serve "TLS certificate 'junk.pem' is not a PEM certificate" --tls-cert junk.pem --tls-key a.key
bad_serve "TLS key 'junk.pem' is not an unencrypted PEM private key" --tls-cert a.pem --tls-key junk.pem
bad_serve "TLS key 'b.key' does not belong to certificate 'a.pem'" --tls-cert a.pem --tls-key b.key
bad_serve "--tls-cert and --tls-key go together" --tls-cert a.pem
bad_serve "--insecure-http serves plain HTTP: it does not go with --tls-cert" --tls-cert a.pem --tls-key a.key --insecure-http
[ ! -e "$ROAM_HOME/serve.json" ] || fail "a refused start left serve.json"
log "a certificate of one's own: its fingerprint is pinned the same way"
start_daemon "$ROAM_HOME" "127.0.0.1:$P" --tls-cert a.pem --tls-key a.key
[ "$(jq -r .fingerprint "$ROAM_HOME/serve.json")" = "$(fp_of a.pem)" ] || fail "--tls-cert: another fingerprint"
must_succeed roam token create --role admin
expect_match "$OUT" "@$(fp_of a.pem)$" "a token of a daemon with --tls-cert"
must_succeed roam info "$URL" --token "$OUT"
stop_daemon
must_succeed roam store fsck

# ---- a laptop pairs over TLS, takes a session offline and online ----------
if [ "$(id -u)" != 0 ] || ! command -v qemu-system-x86_64 >/dev/null; then
        log "ok (the laptop part needs root and QEMU: skipped)"
        exit 0
fi
. "$SRC_DIR/tests/netns.sh"
export ROAM_ACCEL=tcg
need_guest
wan_setup 100 5
export DC_HOME=$T/dc LT_HOME=$T/laptop
PORT=$(free_port) LPORT=$(free_port)
SERVER=https://$DC_IP:$PORT
roam_dc image import deb "$GUEST/master.img" >/dev/null 2>&1
roam_dc session create s1 --image deb --user alice --ram 256M --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" >/dev/null
roam_dc session start s1 >/dev/null
serves() { [ "$(jq -r .pid "$1/serve.json" 2>/dev/null)" = "$2" ]; } # HOME PID
dc_up() {
        # not through in_dc: a function in the background is a subshell, and $! its pid
        ROAM_HOME=$DC_HOME ip netns exec "$DC_NS" "$ROAM_BIN" serve --listen "$DC_IP:$PORT" >>dc.log 2>&1 &
        DC_PID=$!
        cleanup_add "kill $DC_PID 2>/dev/null"
        wait_for 20 serves "$DC_HOME" "$DC_PID" || { cat dc.log >&2; fail "server daemon did not start"; }
}
dc_up
DCFP=$(jq -r .fingerprint "$DC_HOME/serve.json")
ALICE=$(roam_dc token create --role user --user alice)
expect_match "$ALICE" "@$DCFP$" "alice's pairing token"
start_laptop() { # TOKEN [ARGS...]
        local tok=$1; shift
        ROAM_HOME=$LT_HOME ip netns exec "$LT_NS" "$ROAM_BIN" serve --role laptop --listen "127.0.0.1:$LPORT" \
                --server "$SERVER" --token "$tok" --name lt1 --precopy-interval 2 "$@" >>lt.log 2>&1 &
        LT_PID=$!
        cleanup_add "kill $LT_PID 2>/dev/null"
        wait_for 20 serves "$LT_HOME" "$LT_PID" || { cat lt.log >&2; fail "laptop daemon did not start"; }
}
state_on() { "$1" session list | awk '$1 == "s1" { print $4 }'; }
is_state() { [ "$(state_on "$1")" = "$2" ]; }
last_tick_on() { "$1" session log s1 | grep -E '^tick [0-9]+$' | tail -n 1 | awk '{ print $2 }'; }
tick_above() { [ "$(last_tick_on "$1")" -gt "$2" ] 2>/dev/null; }
paired() { [ "$(roam_dc laptop list --json | jq '.laptops | length')" = 1 ]; }

log "a laptop without a fingerprint for an https server does not start"
must_fail env ROAM_HOME="$LT_HOME" ip netns exec "$LT_NS" "$ROAM_BIN" serve --role laptop --listen "127.0.0.1:$LPORT" \
        --server "$SERVER" --token "${ALICE%@*}"
expect_one_line "$ERR"
expect_match "$ERR" "no fingerprint of $SERVER's certificate to pin: use the pairing token"

log "pairing over TLS pins the server's certificate"
wait_for 90 tick_above roam_dc 3 || fail "no ticks on the server"
start_laptop "$ALICE"
wait_for 60 paired || { cat lt.log >&2; fail "the laptop did not pair over TLS"; }
wait_for 10 test -s "$LT_HOME/server-pin.json" || fail "the laptop kept no pin"
[ "$(jq -r .fingerprint "$LT_HOME/server-pin.json")" = "$DCFP" ] || fail "server-pin.json: $(cat "$LT_HOME/server-pin.json")"
[ "$(jq -r .url "$LT_HOME/server-pin.json")" = "$SERVER" ] || fail "server-pin.json names another server"

log "take offline and online over TLS"
out=$(roam_laptop offline s1) || { tail -n 20 lt.log dc.log >&2; fail "take offline over TLS failed"; }
log "$out"
is_state roam_laptop running || fail "s1 does not run on the laptop"
is_state roam_dc away || fail "the server still claims s1"
before=$(last_tick_on roam_laptop || echo 0)
wait_for 60 tick_above roam_laptop "$before" || fail "the counter does not continue on the laptop"
out=$(roam_laptop online s1) || { tail -n 20 lt.log dc.log >&2; fail "take online over TLS failed"; }
log "$out"
before=$(last_tick_on roam_laptop || echo 0)
is_state roam_dc running || fail "s1 does not run on the server after take online"
wait_for 60 tick_above roam_dc "$before" || fail "the counter does not continue on the server"

log "a restart of the laptop with the bare token uses the pin it kept"
kill "$LT_PID"; wait "$LT_PID" 2>/dev/null || true
start_laptop "${ALICE%@*}"
must_succeed roam_laptop status

log "the server's certificate changes: the laptop refuses it, both fingerprints in one line"
kill "$DC_PID"; wait "$DC_PID" 2>/dev/null || true
rm -rf "$DC_HOME/tls"
dc_up
DCNEW=$(jq -r .fingerprint "$DC_HOME/serve.json")
[ "$DCNEW" != "$DCFP" ] || fail "the new server certificate has the old fingerprint"
must_fail roam_laptop offline s1
expect_one_line "$ERR"
expect_match "$ERR" "$SERVER presented certificate $DCNEW, but $DCFP is pinned for it: refused"
is_state roam_dc running || fail "s1 left the server on a refused take offline"
[ "$(jq -r .fingerprint "$LT_HOME/server-pin.json")" = "$DCFP" ] || fail "a refused certificate replaced the pin"
log "told the new fingerprint, the laptop pairs again and keeps it"
kill "$LT_PID"; wait "$LT_PID" 2>/dev/null || true
start_laptop "${ALICE%@*}" --fingerprint "$DCNEW"
new_pin() { [ "$(jq -r .fingerprint "$LT_HOME/server-pin.json")" = "$DCNEW" ]; }
wait_for 60 new_pin || { tail -n 10 lt.log >&2; fail "the laptop did not keep the new pin"; }
roam_dc store fsck >/dev/null || fail "the server's store is inconsistent"
roam_laptop store fsck >/dev/null || fail "the laptop's store is inconsistent"
log ok
