#!/usr/bin/env bash
# The web console in a real browser (Debian's chromium, driven by
# playwright-core from web/node_modules: tests/browser/console.test.js):
# a server daemon with a real session (the test guest under TCG), log-in with
# tokens, the sessions list, the live desktop through noVNC and roam's
# WebSocket route (the guest's screen is not blank; its text is read back with
# tesseract when installed), actions with the state following over the event
# stream, a user who cannot see or open another user's session, phone width;
# then a laptop daemon on loopback: take offline and take online pressed on
# the laptop's console. Screenshots: $T/shots (KEEP_TEST_DIR=1 keeps them).
. "$(dirname "$0")/../lib.sh"

requires qemu-system-x86_64
requires qemu-img
requires curl
command -v node >/dev/null || skip "needs node (scripts/deps.sh web)"
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
[ -n "$CHROMIUM" ] || skip "needs chromium (scripts/deps.sh web)"
WEB=$SRC_DIR/web
[ -f "$WEB/node_modules/playwright-core/package.json" ] && [ -f "$WEB/node_modules/@novnc/novnc/core/rfb.js" ] ||
	bash "$SRC_DIR/scripts/web-deps.sh" >"$T/web-deps.log" 2>&1 ||
	skip "the console's npm packages are missing and cannot be installed (scripts/web-deps.sh)"
export ROAM_ACCEL=tcg
# the daemon finds web/ next to the build directory by itself
unset ROAM_WEB_DIR

need_guest

DC=$ROAM_HOME
LT=$T/laptop
# their RAM directories (session.h: /dev/shm/roam-<12 hex of SHA-256 of the home>)
ram_dir() { printf '/dev/shm/roam-%s' "$(printf %s "$1" | sha256sum | cut -c1-12)"; }
cleanup_add "rm -rf '$(ram_dir "$DC")' '$(ram_dir "$LT")'"

# --- the server, a session of alice's ---------------------------------------------
must_succeed roam image import deb "$GUEST/master.img"
# console=tty0 too: whatever the guest writes to the VGA console shows on the desktop
must_succeed roam session create s1 --image deb --user alice --ram 256M \
	--kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" --append 'console=tty0 console=ttyS0 panic=-1'
ALICE=$(roam token create --role user --user alice)
BOB=$(roam token create --role user --user bob)
PORT=$(free_port)
start_daemon "$DC" "127.0.0.1:$PORT" -v
ADMIN=$(cat "$DC/local.token")
URL=http://127.0.0.1:$PORT
must_succeed roam session start s1
has_tick() { grep -qE '^tick [0-9]+$' <<<"$(roam session log s1)"; }
wait_for 90 has_tick || fail "the guest does not tick: $(roam session log s1 | tail -n 5)"

# the static files need no token, the data does
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/")" = 200 ] || fail "GET / is not 200"
[ "$(curl -s -o /dev/null -w '%{content_type}' "$URL/console/app.js")" = "text/javascript; charset=utf-8" ] ||
	fail "app.js is not served as JavaScript"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/novnc/core/rfb.js")" = 200 ] || fail "noVNC is not served"
# the console's second and third try load noVNC under /novnc/rN/ (a browser keeps a failed module as failed)
cmp -s <(curl -s "$URL/novnc/r2/core/rfb.js") "$WEB/node_modules/@novnc/novnc/core/rfb.js" ||
	fail "/novnc/r2/core/rfb.js is not noVNC's rfb.js"
for p in /console/../catalog.db /console/.x /novnc/package.json /novnc/core/../../../package.json \
	/novnc/r2/package.json /novnc/r2/../package.json /novnc/r0/core/rfb.js /novnc/r2/r3/core/rfb.js; do
	code=$(curl -s --path-as-is -o /dev/null -w '%{http_code}' "$URL$p")
	case $code in 401 | 404) ;; *) fail "GET $p answered $code" ;; esac
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/events")" = 401 ] || fail "events without a token"
# ?access_token= only on the two routes that need it
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/sessions?access_token=$ALICE")" = 401 ] ||
	fail "the query token is accepted beyond the WebSocket and event routes"
ev=$(curl -s -N --max-time 2 "$URL/v1/events?access_token=$BOB" || true)
expect_match "$ev" '^retry: 2000' "bob's event stream"
expect_match "$ev" 'data: \{"sessions":\[\]\}' "bob's event stream"
# a token revoked while its event stream is open ends that stream
CAROL=$(roam token create --role user --user carol)
curl -s -N --max-time 60 "$URL/v1/events?access_token=$CAROL" >"$T/carol.ev" 2>/dev/null &
carol_pid=$!
wait_for 10 grep -q '^retry: 2000' "$T/carol.ev" || fail "carol's event stream did not start"
carol_id=$(roam token list | awk '$3 == "carol" { print $1 }' | tail -n 1)
[ -n "$carol_id" ] || fail "no token id for carol in: $(roam token list)"
t0=$(date +%s%N)
roam token revoke "$carol_id" >/dev/null
wait_for 15 bash -c "! kill -0 $carol_pid 2>/dev/null" || fail "carol's event stream outlived her revoked token"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
log "carol's event stream ended ${ms} ms after the revocation"
# (the stream checks its token every second: about 1 s; the bound here is loose, a loaded machine is slow)
[ "$ms" -le 10000 ] || fail "carol's event stream ended only ${ms} ms after her token was revoked (checked every second)"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/events?access_token=$CAROL")" = 401 ] ||
	fail "a revoked token opens an event stream"
# the same for an open desktop: alice's second token, revoked, closes it within 2 s
ALICE2=$(roam token create --role user --user alice --label "alice's tablet")
a2_id=$(roam token list | awk '/alice.s tablet/ { print $1 }')
[ -n "$a2_id" ] || fail "no token id for alice's tablet in: $(roam token list)"
python3 - "$PORT" "$ALICE2" "$a2_id" "$ROAM_BIN" <<'PY' || fail "a revoked token's desktop stayed open"
import os, socket, subprocess, sys, time
port, token, token_id, roam = sys.argv[1:5]
s = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
s.sendall(("GET /v1/console/sessions/s1/vnc?access_token=%s HTTP/1.1\r\nHost: x\r\n"
           "Upgrade: roam-vnc\r\nConnection: Upgrade\r\n\r\n" % token).encode())
got = b""
while b"RFB " not in got:
    chunk = s.recv(4096)
    if not chunk:
        sys.exit("the desktop closed before its greeting: %r" % got)
    got += chunk
if b" 101 " not in got.split(b"\r\n", 1)[0]:
    sys.exit("no upgrade: %r" % got[:200])
t0 = time.monotonic()
subprocess.run([roam, "token", "revoke", token_id], check=True, stdout=subprocess.DEVNULL)
s.settimeout(10)
try:
    while s.recv(4096):
        pass
except (socket.timeout, ConnectionError):
    pass
ms = (time.monotonic() - t0) * 1000
print("# the desktop closed %.0f ms after the revocation" % ms, file=sys.stderr)
# (checked every second: about 1 s; the bound is loose, a loaded machine is slow)
sys.exit(0 if ms <= 10000 else "the desktop closed only %.0f ms after the revocation (checked every second)" % ms)
PY

# --- the laptop, paired with the server as alice ----------------------------------
LPORT=$(free_port)
start_daemon "$LT" "127.0.0.1:$LPORT" --role laptop --server "$URL" --token "$ALICE" --name lt1 \
	--precopy-interval 2
LADMIN=$(cat "$LT/local.token")

# --- the browser ----------------------------------------------------------------------
mkdir -p "$T/shots"
# a guest whose workload also writes its ticks to tty0 shows them on the desktop
SCREEN_TEXT='SeaBIOS|Booting' SCREEN_CHANGES=
if grep -q '/dev/tty0' "$SRC_DIR/guest/init"; then SCREEN_TEXT='tick ?[0-9]+' SCREEN_CHANGES=1; fi
export SCREEN_TEXT SCREEN_CHANGES
rc=0
ROAM_URL=$URL SESSION=s1 ADMIN_TOKEN=$ADMIN ALICE_TOKEN=$ALICE BOB_TOKEN=$BOB SHOTS=$T/shots \
	CHROMIUM=$CHROMIUM WEB_DIR=$WEB OCR=$(command -v tesseract || true) \
	LAPTOP_URL=http://127.0.0.1:$LPORT LAPTOP_TOKEN=$LADMIN \
	timeout 780 node "$SRC_DIR/tests/browser/console.test.js" || rc=$?
if [ $rc != 0 ]; then
	log "server log:"; tail -n 30 "$DC/serve.log" >&2
	log "laptop log:"; tail -n 30 "$LT/serve.log" >&2
	fail "the browser test failed ($rc); screenshots in $T/shots (KEEP_TEST_DIR=1 keeps them)"
fi
roam store fsck >/dev/null || fail "server store inconsistent"
log "screenshots: $(ls "$T/shots" | tr '\n' ' ')"
