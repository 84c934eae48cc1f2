#!/usr/bin/env bash
# Tokens: one with --ttl works until it expires and is refused after (and
# 'token list' says so); failed logins are limited per client address
# (serve --max-failed-logins): past the limit even a good token from that
# address gets 429 with a one-line reason, while another address and
# requests without a token are not held up.
. "$(dirname "$0")/../lib.sh"
requires curl
export ROAM_HOME=$T/home
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
roam store init >/dev/null 2>&1 || true
SHORT=$(roam token create --role user --user alice --ttl 3s --label short)
LONG=$(roam token create --role user --user alice --ttl 30d)
must_fail roam token create --role user --user alice --ttl 0
expect_match "$ERR" "--ttl takes a duration"
must_fail roam token create --role user --user alice --ttl 5x
expect_match "$ERR" "--ttl takes a duration"
start_daemon "$ROAM_HOME" "127.0.0.1:$PORT" --max-failed-logins 3
code() { curl -s -o "$T/resp" -w '%{http_code}' "$@"; }

log "a token with a ttl: good until it expires"
[ "$(code -H "Authorization: Bearer $SHORT" "$URL/v1/info")" = 200 ] || fail "a fresh ttl token is refused"
sleep 4
[ "$(code -H "Authorization: Bearer $SHORT" "$URL/v1/info")" = 401 ] || fail "an expired token is accepted"
[ "$(code -H "Authorization: Bearer $LONG" "$URL/v1/info")" = 200 ] || fail "a 30-day token is refused"
roam token list | grep short | grep -q "(expired)" || fail "token list does not say the short token expired"
roam token list --json | python3 -c '
import json, sys
t = [x for x in json.load(sys.stdin)["tokens"] if x["label"] == "short"][0]
sys.exit(0 if t["expires"] > 0 else 1)' || fail "token list --json lacks the expiry"

log "failed logins: 3 allowed per minute and address"
# (the expired token above was one; no token at all is none)
for i in 1 2 3 4 5; do
        [ "$(code "$URL/v1/info")" = 401 ] || fail "a request without a token is not 401"
done
for i in 1 2; do
        [ "$(code -H "Authorization: Bearer roam_wrongwrongwrongwrongwrongwrongwrongwrong$i" "$URL/v1/info")" = 401 ] ||
                fail "a wrong token is not 401"
done
[ "$(code -H "Authorization: Bearer roam_x" "$URL/v1/info")" = 401 ] || fail "the fourth wrong token is not 401"
c=$(code -H "Authorization: Bearer $LONG" "$URL/v1/info")
[ "$c" = 429 ] || fail "a good token after too many failures from 127.0.0.1: HTTP $c"
err=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["error"])' "$T/resp")
expect_one_line "$err"
expect_match "$err" "too many refused tokens from 127.0.0.1 \\(4 within 60 s\\): try again in [0-9]+ s"
log "refused: $err"
c=$(code --interface 127.0.0.2 -H "Authorization: Bearer $LONG" "$URL/v1/info")
[ "$c" = 200 ] || fail "another address is held up by 127.0.0.1's failures: HTTP $c"
log ok
