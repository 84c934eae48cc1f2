#!/usr/bin/env bash
# roam session connect with a real VNC viewer: a server daemon, a test-guest
# session of alice's (its ticks go to the VGA console too), `roam session
# connect` with alice's token in the background, Debian's vncsnapshot (an old
# TightVNC viewer: RFB 3.3) with the password file connect wrote, and the
# frame read back with tesseract: the guest's ticks are on it, and a later
# frame shows a later tick. Then a wrong password (refused, and the viewer
# gets nothing), and bad input, each a one-line error with a non-zero exit:
# an unknown session, another user's session (the same answer), a stopped
# session, a non-loopback --listen, a refused token, no daemon. Last, the
# same over HTTPS through the local daemon (its URL, token and CA from
# serve.json).
. "$(dirname "$0")/../lib.sh"

requires qemu-system-x86_64
requires qemu-img
requires curl
requires vncsnapshot
requires tesseract
export ROAM_ACCEL=tcg

need_guest
ram_dir() { printf '/dev/shm/roam-%s' "$(printf %s "$1" | sha256sum | cut -c1-12)"; }
cleanup_add "rm -rf '$(ram_dir "$ROAM_HOME")'"

must_succeed roam image import deb "$GUEST/master.img"
K=(--kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" --append 'console=tty0 console=ttyS0 panic=-1')
must_succeed roam session create s1 --image deb --user alice --ram 256M "${K[@]}"
must_succeed roam session create s2 --image deb --user bob --ram 256M "${K[@]}"
must_succeed roam session create off --image deb --user alice --ram 256M "${K[@]}"
ALICE=$(roam token create --role user --user alice)

# no daemon yet: the line says how to start one
must_fail roam session connect s1
expect_one_line "$ERR"
expect_match "$ERR" "no roam daemon serves .*roam serve"

PORT=$(free_port)
start_daemon "$ROAM_HOME" "127.0.0.1:$PORT" -v
URL=http://127.0.0.1:$PORT
must_succeed roam session start s1
has_tick() { grep -qE '^tick [0-9]+$' <<<"$(roam session log s1)"; }
wait_for 90 has_tick || fail "the guest does not tick: $(roam session log s1 | tail -n 5)"

# --- bad input --------------------------------------------------------------------
bad() { # REGEX ARGS...: connect fails with one line matching REGEX
	local re=$1
	shift
	must_fail timeout 30 "$ROAM_BIN" session connect "$@"
	expect_one_line "$ERR"
	expect_match "$ERR" "$re"
}
bad "session 'nosuch' not found" nosuch
bad "session 'nosuch' not found" nosuch --url "$URL" --token "$ALICE"
# bob's session: to alice it does not exist (the same words as for nosuch)
bad "session 's2' not found" s2 --url "$URL" --token "$ALICE"
bad "session 'off' has no desktop here \(it is (stopped|created)\)" off --url "$URL" --token "$ALICE"
bad "refused the token" s1 --url "$URL" --token not-a-token
bad "not a loopback address" s1 --listen 0.0.0.0:0
bad "listen address '127.0.0.1' is invalid" s1 --listen 127.0.0.1
bad "session name '../x' is invalid" ../x
bad "no token for" s1 --url "$URL"
bad "cannot reach http://127.0.0.1:1: .*is .roam serve. running there" s1 --url http://127.0.0.1:1 --token "$ALICE"

# the same route still opens the console's WebSocket (RFC 6455's example key)
ws=$(curl -s -i --http1.1 --max-time 3 -H "Authorization: Bearer $ALICE" -H 'Connection: Upgrade' \
	-H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' \
	"$URL/v1/console/sessions/s1/vnc" 2>/dev/null | tr -d '\r' || true)
expect_match "$ws" '^HTTP/1.1 101' "the WebSocket answer"
expect_match "$ws" '^Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=$' "the WebSocket answer"
# and a plain GET says what the route is
code=$(curl -s -o "$T/plain.json" -w '%{http_code}' -H "Authorization: Bearer $ALICE" "$URL/v1/console/sessions/s1/vnc")
[ "$code" = 400 ] || fail "a plain GET of the desktop route answered $code"
expect_match "$(cat "$T/plain.json")" 'roam-vnc' "the plain GET's error"

# --- a real viewer ------------------------------------------------------------------
"$ROAM_BIN" session connect s1 --url "$URL" --token "$ALICE" --password-file "$T/passwd" \
	>"$T/connect.out" 2>"$T/connect.err" &
CONNECT_PID=$!
cleanup_add "kill $CONNECT_PID 2>/dev/null; wait $CONNECT_PID 2>/dev/null"
wait_for 20 grep -q '^password: ' "$T/connect.out" ||
	fail "connect printed no address: $(cat "$T/connect.out" "$T/connect.err")"
ADDR=$(sed -n 's|^vnc://||p' "$T/connect.out")
PASSWORD=$(sed -n 's|^password: ||p' "$T/connect.out")
expect_match "$ADDR" '^127\.0\.0\.1:[0-9]+$' "the vnc:// address"
expect_match "$PASSWORD" '^[A-Za-z0-9]{8}$' "the password"
[ "$(stat -c %a "$T/passwd")" = 600 ] || fail "the password file is not 0600"
[ "$(stat -c %s "$T/passwd")" = 8 ] || fail "the password file is not 8 bytes"
log "connect: $(cat "$T/connect.err")"

# HOST::PORT is a port for vncsnapshot (HOST:N would be display N, port 5900+N)
VNC=${ADDR%:*}::${ADDR##*:}
snapshot() { # FILE: one frame through the forwarder
	timeout 60 vncsnapshot -quiet -passwd "$T/passwd" -allowblank "$VNC" "$1" >"$T/vncsnapshot.log" 2>&1
}
ocr_tick() { # FILE: the last tick number tesseract reads on the frame
	tesseract "$1" - --psm 6 2>/dev/null | grep -oE 'tick ?[0-9]+' | tail -n 1 | grep -oE '[0-9]+$'
}
first= last=
for i in 1 2 3 4 5 6; do
	snapshot "$T/frame$i.jpg" || fail "vncsnapshot failed: $(cat "$T/vncsnapshot.log"); connect: $(cat "$T/connect.err")"
	n=$(ocr_tick "$T/frame$i.jpg" || true)
	log "frame $i: tick ${n:-(none read)}"
	if [ -n "$n" ]; then
		# what the frame shows is what the guest printed (its serial log)
		grep -qx "tick $n" <<<"$(roam session log s1)" || fail "frame $i shows tick $n, which the guest never printed"
		[ -n "$first" ] || first=$n
		last=$n
		[ "$last" -gt "$first" ] && break
	fi
	sleep 2
done
[ -n "$first" ] || fail "no tick read on the frames: $(tesseract "$T/frame1.jpg" - --psm 6 2>/dev/null | head -n 5)"
[ "$last" -gt "$first" ] || fail "the desktop did not change between frames (tick $first, then $last)"
grep -q "viewer 127.0.0.1:[0-9]* connected" "$T/connect.err" || fail "connect did not note the viewer: $(cat "$T/connect.err")"

# viewers beyond 8 at once are turned away; those that say nothing and hang
# up end their thread, and connect goes on serving
python3 - "${ADDR##*:}" <<'PY' || fail "the viewer limit does not hold"
import socket, sys
port = int(sys.argv[1])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
got = []
for s in socks:
    s.settimeout(10)
    data = b""
    try:
        while len(data) < 12:
            k = s.recv(12 - len(data))
            if not k:
                break
            data += k
    except socket.timeout:
        pass
    got.append(data)
served = sum(1 for d in got if d == b"RFB 003.008\n")
if served != 8:
    sys.exit("%d of 10 viewers got the version, not 8" % served)
for s in socks:
    s.close()
PY
grep -q "turned a viewer away" "$T/connect.err" || fail "connect did not note the viewers it turned away"
sleep 1
snapshot "$T/after-flood.jpg" || fail "no frame after the viewers hung up: $(tail -n 3 "$T/connect.err")"

# a wrong password: the viewer is refused and gets no frame
printf '\xdb\xd8\x3c\xfd\x72\x7a\x14\x58' >"$T/wrong" # vncpasswd's "password"
chmod 600 "$T/wrong"
rm -f "$T/wrong.jpg"
if timeout 60 vncsnapshot -quiet -passwd "$T/wrong" "$VNC" "$T/wrong.jpg" >"$T/wrong.log" 2>&1; then
	fail "a wrong password got through"
fi
[ ! -s "$T/wrong.jpg" ] || fail "a wrong password got a frame"
wait_for 10 grep -q "wrong password" "$T/connect.err" || fail "connect did not note the wrong password"

# the session stops: a viewer then gets the reason, connect keeps running
must_succeed roam session stop s1
rm -f "$T/late.jpg"
timeout 60 vncsnapshot -quiet -passwd "$T/passwd" "$VNC" "$T/late.jpg" >"$T/late.log" 2>&1 &&
	fail "a viewer got through to a stopped session"
wait_for 10 grep -q "no desktop here" "$T/connect.err" || fail "connect did not say why: $(tail -n 3 "$T/connect.err")"
kill -0 "$CONNECT_PID" || fail "connect ended when the session stopped"
# Ctrl-C ends it in order
kill -INT "$CONNECT_PID"
rc=0
wait "$CONNECT_PID" || rc=$?
[ $rc = 0 ] || fail "connect exited $rc on SIGINT: $(tail -n 3 "$T/connect.err")"

# --- over HTTPS, through the local daemon (serve.json gives its URL, token, CA) ---------
kill "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -days 1 \
	-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null ||
	fail "openssl req failed"
PORT=$(free_port)
ROAM_HOME=$ROAM_HOME "$ROAM_BIN" serve --listen "127.0.0.1:$PORT" --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" \
	>>"$ROAM_HOME/serve.log" 2>&1 &
DAEMON_PID=$!
cleanup_add "kill $DAEMON_PID 2>/dev/null; wait $DAEMON_PID 2>/dev/null"
wait_for 20 curl -s --cacert "$T/cert.pem" -o /dev/null "https://127.0.0.1:$PORT/v1/info" ||
	fail "the https daemon did not start: $(tail -n 5 "$ROAM_HOME/serve.log")"
must_succeed roam session start s1
has_new_tick() { grep -qE '^tick [0-9]+$' <<<"$(roam session log s1 | tail -n 3)"; }
wait_for 90 has_new_tick || fail "the guest does not tick again"
"$ROAM_BIN" session connect s1 --password-file "$T/passwd2" >"$T/connect2.out" 2>"$T/connect2.err" &
CONNECT_PID=$!
cleanup_add "kill $CONNECT_PID 2>/dev/null; wait $CONNECT_PID 2>/dev/null"
wait_for 20 grep -q '^password: ' "$T/connect2.out" ||
	fail "connect over https printed no address: $(cat "$T/connect2.out" "$T/connect2.err")"
ADDR=$(sed -n 's|^vnc://||p' "$T/connect2.out")
VNC=${ADDR%:*}::${ADDR##*:}
n=
for i in 1 2 3 4 5; do
	timeout 60 vncsnapshot -quiet -passwd "$T/passwd2" -allowblank "$VNC" "$T/tls$i.jpg" >"$T/vncsnapshot.log" 2>&1 ||
		fail "vncsnapshot over https failed: $(cat "$T/vncsnapshot.log"); connect: $(cat "$T/connect2.err")"
	n=$(ocr_tick "$T/tls$i.jpg" || true)
	[ -n "$n" ] && break
	sleep 2
done
[ -n "$n" ] || fail "no tick read on the frames over https"
log "over https: tick $n"
cmp -s "$T/passwd" "$T/passwd2" && fail "two runs of connect made the same password"
kill -INT "$CONNECT_PID"
wait "$CONNECT_PID" || fail "connect over https did not end in order"
