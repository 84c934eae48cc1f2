#!/usr/bin/env bash
# roam serve's config file ($ROAM_HOME/roam.conf, --config FILE): every key
# is a serve option, the command line wins, --print-config shows (and checks)
# what is in effect and reads back as a config file; bad files fail in one
# line naming the file and the line. Log levels: --log-level, roam
# --log-level and $ROAM_LOG decide what the daemon logs.
. "$(dirname "$0")/../lib.sh"

requires jq
requires curl
cd "$T"
mkdir -p "$ROAM_HOME"
use_tls # the defaults as they are: HTTPS

# every option of 'roam serve --help' but the three of the command line only is a key
keys=$(roam serve --print-config | sed -n 's/^# \([a-z-]*\) = .*/\1/p' | sort)
opts=$(roam serve --help | grep -o -- '--[a-z][a-z-]*' | sed 's/^--//' | sort -u | grep -vx 'help\|config\|print-config\|home\|token-file')
[ "$keys" = "$opts" ] || fail "config keys and serve options differ: $(diff <(echo "$keys") <(echo "$opts") | tr '\n' ' ')"

cat >"$ROAM_HOME/roam.conf" <<'CONF'
# a test config
listen = 127.0.0.1:1
hoard-rate = 2M
name = "  spaced name  "
verbose = false
log-level = warning
CONF
must_succeed roam serve --print-config
expect_match "$OUT" "^listen = 127\.0\.0\.1:1$" "print-config"
expect_match "$OUT" "^name = \"  spaced name  \"$" "print-config"
expect_match "$OUT" "^# verbose = false$" "print-config"
# the command line wins, $ROAM_LOG beats the file, roam --log-level beats $ROAM_LOG
must_succeed roam serve --print-config --listen 127.0.0.1:2
expect_match "$OUT" "^listen = 127\.0\.0\.1:2$" "print-config with --listen"
[ "$(ROAM_LOG=error roam serve --print-config | grep '^log-level')" = "log-level = error" ] || fail "ROAM_LOG does not beat the file"
[ "$(ROAM_LOG=error roam --log-level debug serve --print-config | grep '^log-level')" = "log-level = debug" ] ||
        fail "roam --log-level does not beat ROAM_LOG"
[ "$(ROAM_LOG=error roam serve --log-level info --print-config | grep '^log-level')" = "log-level = info" ] ||
        fail "serve --log-level does not win"
# $ROAM_INSECURE_HTTP beats the file too (tests/lib.sh sets it for the other tests)
printf 'insecure-http = false\n' >>"$ROAM_HOME/roam.conf"
[ "$(ROAM_INSECURE_HTTP=1 roam serve --print-config | grep '^insecure-http')" = "insecure-http = true" ] ||
        fail "ROAM_INSECURE_HTTP=1 does not show in --print-config"
must_fail env ROAM_INSECURE_HTTP=maybe "$ROAM_BIN" serve --print-config
expect_match "$ERR" "ROAM_INSECURE_HTTP takes 1 or 0, not 'maybe'"
ERR=$(ROAM_LOG=loud roam serve --print-config 2>&1 >/dev/null)
expect_match "$ERR" "ignoring ROAM_LOG='loud'"
must_fail roam --log-level loud status
expect_match "$ERR" "--log-level takes debug, info, warning or error, not 'loud'"
# what --print-config prints is a config file that means the same
roam serve --print-config >"$T/round.conf"
must_succeed roam serve --config "$T/round.conf" --print-config
[ "$(grep -v '^#' <<<"$OUT")" = "$(grep -v '^#' "$T/round.conf")" ] || fail "--print-config does not read back the same"

# bad files: one line, the file and the line named
bad() { # TEXT REGEX
        printf '%s\n' "$1" >"$T/bad.conf"
        must_fail roam serve --config "$T/bad.conf" --print-config
        expect_one_line "$ERR"
        expect_match "$ERR" "$2"
}
bad $'listen = 127.0.0.1:3\nlisten-on = 1' "'$T/bad.conf' line 2: unknown setting 'listen-on'"
bad $'# c\noffline-days = soon' "'$T/bad.conf' line 2: 'offline-days' takes a number of days"
bad 'no-precopy = maybe' "line 1: 'no-precopy' takes true or false"
bad 'listen 127.0.0.1' "line 1: expected '=' after 'listen'"
bad 'name = "open' "line 1: the quoted value of 'name' does not end"
bad 'role = desk' "'role' takes server or laptop"
bad 'log-level = loud' "'log-level' takes debug, info, warning or error"
head -c 70000 /dev/zero | tr '\0' '#' >"$T/bad.conf"
must_fail roam serve --config "$T/bad.conf"
expect_match "$ERR" "is larger than 65536 bytes"
must_fail roam serve --config "$T/none.conf"
expect_match "$ERR" "config file '$T/none.conf' does not exist"
# a home chosen: its roam.conf, never /etc's
must_succeed roam --home "$T/other" serve --print-config
expect_match "$OUT" "no config file" "print-config of a home without roam.conf"

# the daemon runs with the file: its address, its log level
PORT=$(free_port)
printf 'listen = 127.0.0.1:%s\nlog = %s\nlog-level = debug\n' "$PORT" "$T/serve.log" >"$ROAM_HOME/roam.conf"
"$ROAM_BIN" serve &
PID=$!
cleanup_add "kill $PID 2>/dev/null"
wait_for 20 test -s "$ROAM_HOME/serve.json" || fail "roam serve did not start with the config file"
[ "$(jq -r .url "$ROAM_HOME/serve.json")" = "https://127.0.0.1:$PORT" ] || fail "the daemon does not listen where the file says"
roam status >/dev/null
wait_for 5 grep -q ' debug: ' "$T/serve.log" || fail "log-level debug in the file logs no debug lines: $(cat "$T/serve.log")"
kill "$PID"
wait "$PID" || fail "the daemon did not stop cleanly"
: >"$T/serve.log"
ROAM_LOG=warning "$ROAM_BIN" serve &
PID=$!
cleanup_add "kill $PID 2>/dev/null"
wait_for 20 test -s "$ROAM_HOME/serve.json" || fail "roam serve did not start again"
roam status >/dev/null
kill "$PID"
wait "$PID" || fail "the daemon did not stop cleanly"
! grep -q ' \(debug\|info\): ' "$T/serve.log" || fail "ROAM_LOG=warning still logs below warning: $(cat "$T/serve.log")"
