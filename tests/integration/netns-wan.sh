#!/usr/bin/env bash
# The emulated WAN itself (tests/netns.sh + tests/tools/delay-relay): rate,
# round-trip time through the relay, and link_down/link_up.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../netns.sh"
requires_root
requires python3
requires ss

# the relay itself on loopback (no namespaces needed)
log "delay-relay self-test"
python3 "$SRC_DIR/tests/tools/test-delay-relay.py" "$DELAY_RELAY" >"$T/relay-selftest.log" 2>&1 ||
        { cat "$T/relay-selftest.log" >&2; fail "delay-relay self-test"; }
grep -E 'RTT|Mbit' "$T/relay-selftest.log" | sed 's/^/#   /' >&2

wan_setup 100 25

TOOL=$T/wan-tool.py
cat >"$TOOL" <<'PY'
import os, socket, struct, sys, threading, time

def nodelay(s):
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise EOFError("EOF")
        buf += b
    return bytes(buf)

BLOCK = os.urandom(1 << 20)

def handle(c):
    # first byte: D(ownload) + u64 size | U(pload) | P(ing-pong)
    nodelay(c)
    mode = recv_exact(c, 1)
    if mode == b"D":
        left = struct.unpack("!Q", recv_exact(c, 8))[0]
        while left:
            n = min(left, len(BLOCK))
            c.sendall(BLOCK[:n])
            left -= n
        c.shutdown(socket.SHUT_WR)
        c.recv(1)
    elif mode == b"U":
        n, t0 = 0, None
        while True:
            b = c.recv(1 << 20)
            if not b:
                break
            if t0 is None:
                t0 = time.monotonic()
            n += len(b)
        c.sendall(struct.pack("!Qd", n, time.monotonic() - t0))
    elif mode == b"P":
        while True:
            b = c.recv(64)
            if not b:
                return
            c.sendall(b)

def serve(ip, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        def run(c=c):
            try:
                handle(c)
            except (OSError, EOFError):
                pass
            finally:
                c.close()
        threading.Thread(target=run, daemon=True).start()

def connect(host, port, timeout=None):
    s = socket.create_connection((host, port), timeout=timeout)
    nodelay(s)
    return s

def download(host, port, size):
    s = connect(host, port)
    s.sendall(b"D" + struct.pack("!Q", size))
    n, t0 = 0, None
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        if t0 is None:
            t0 = time.monotonic()
        n += len(b)
    dt = time.monotonic() - t0
    assert n == size, (n, size)
    print("%.1f" % (n * 8 / dt / 1e6))

def upload(host, port, size):
    s = connect(host, port)
    s.sendall(b"U")
    left = size
    while left:
        k = min(left, len(BLOCK))
        s.sendall(BLOCK[:k])
        left -= k
    s.shutdown(socket.SHUT_WR)
    n, dt = struct.unpack("!Qd", recv_exact(s, 16))
    assert n == size, (n, size)
    print("%.1f" % (n * 8 / dt / 1e6))

def ping(host, port, count):
    s = connect(host, port)
    s.sendall(b"P")
    rtts = []
    for i in range(count + 1):
        t0 = time.monotonic()
        s.sendall(b"x")
        recv_exact(s, 1)
        if i:  # the first one includes the emulated handshake
            rtts.append((time.monotonic() - t0) * 1000)
    rtts.sort()
    print("%.1f %.1f %.1f" % (rtts[0], rtts[len(rtts) // 2], rtts[-1]))

def probe(host, port, timeout):
    # a fresh connection and one round trip within TIMEOUT seconds
    try:
        s = connect(host, port, timeout)
        s.sendall(b"Px")
        recv_exact(s, 1)
    except (OSError, EOFError) as e:
        print(type(e).__name__ + ": " + (str(e) or "connection closed"), file=sys.stderr)
        sys.exit(1)
    print("ok")

def outage(host, port, ready, go):
    # an established connection across link_down/link_up: ping once, signal
    # READY, wait for the GO file (link is down by then), ping again and
    # report how long that round trip took
    s = connect(host, port)
    s.sendall(b"Px")
    recv_exact(s, 1)
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    t0 = time.monotonic()
    s.sendall(b"y")
    s.settimeout(30)
    recv_exact(s, 1)
    print("%.2f" % (time.monotonic() - t0))

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "serve": serve(args[0], int(args[1]))
elif cmd == "download": download(args[0], int(args[1]), int(args[2]))
elif cmd == "upload": upload(args[0], int(args[1]), int(args[2]))
elif cmd == "ping": ping(args[0], int(args[1]), int(args[2]))
elif cmd == "probe": probe(args[0], int(args[1]), float(args[2]))
elif cmd == "outage": outage(*args[:2], args[2], args[3])
PY

PORT=7411
in_dc python3 "$TOOL" serve "$DC_IP" $PORT </dev/null >/dev/null 2>"$T/server.log" &
SERVER_PID=$!
cleanup_add "kill $SERVER_PID"
wait_for 10 wan_listening "$DC_NS" $PORT || fail "test server did not start"
wan_relay $PORT
RELAY_PID=$WAN_RELAY_PID
tool_lt() { in_laptop python3 "$TOOL" "$@"; }
in_range() { python3 -c "import sys; v,lo,hi=map(float,sys.argv[1:]); sys.exit(not lo<=v<hi)" "$@"; }

# --- throughput (tbf on the veth), through the relay
must_succeed tool_lt download 127.0.0.1 $PORT $((50 * 1000 * 1000))
down=$OUT
log "download dc->laptop, 50 MB through the relay: $down Mbit/s"
must_succeed tool_lt upload 127.0.0.1 $PORT $((25 * 1000 * 1000))
up=$OUT
log "upload laptop->dc, 25 MB through the relay: $up Mbit/s"
in_range "$down" 80 105 || fail "download rate $down Mbit/s not in [80, 105)"
in_range "$up" 80 105 || fail "upload rate $up Mbit/s not in [80, 105)"

# --- round trip: 2 x 25 ms through the relay, ~0 direct
must_succeed tool_lt ping 127.0.0.1 $PORT 20
read -r rmin rmed rmax <<<"$OUT"
log "RTT through the relay (20 pings): min $rmin, median $rmed, max $rmax ms"
in_range "$rmin" 50 80 || fail "RTT min $rmin ms not in [50, 80)"
in_range "$rmed" 50 80 || fail "RTT median $rmed ms not in [50, 80)"
must_succeed tool_lt ping "$DC_IP" $PORT 20
read -r dmin dmed dmax <<<"$OUT"
log "RTT direct to $DC_IP, no relay: min $dmin, median $dmed, max $dmax ms"
in_range "$dmed" 0 10 || fail "direct RTT $dmed ms: should be ~0"
# the other direction's relay: dc reaching a laptop service
in_laptop python3 "$TOOL" serve "$LT_IP" $PORT </dev/null >/dev/null 2>&1 &
cleanup_add "kill $!"
wait_for 10 wan_listening "$LT_NS" $PORT || fail "laptop test server did not start"
wan_relay_dc $PORT $((PORT + 1))
# a loaded machine may reset the first connection while the relay starts: try thrice
ok=0
for attempt in 1 2 3; do
        if OUT=$(in_dc python3 "$TOOL" ping 127.0.0.1 $((PORT + 1)) 10); then ok=1; break; fi
        log "ping through wan_relay_dc failed (attempt $attempt), retrying"
        sleep 1
done
[ $ok = 1 ] || fail "no ping through wan_relay_dc"
read -r rmin2 rmed2 rmax2 <<<"$OUT"
log "RTT dc->laptop through wan_relay_dc: min $rmin2, median $rmed2, max $rmax2 ms"
in_range "$rmin2" 50 80 || fail "dc->laptop RTT $rmin2 ms not in [50, 80)"

# --- link_down / link_up
in_laptop python3 "$TOOL" outage 127.0.0.1 $PORT "$T/ready" "$T/go" >"$T/outage.out" 2>&1 &
OUTAGE_PID=$!
wait_for 10 test -e "$T/ready" || fail "outage client did not connect"
link_down
log "link down"
touch "$T/go"
must_fail tool_lt probe 127.0.0.1 $PORT 3
log "new connection through the relay while down: $ERR"
must_fail tool_lt probe "$DC_IP" $PORT 3
log "direct connection while down: $ERR"
sleep 1
kill -0 $OUTAGE_PID 2>/dev/null || fail "established connection did not stall: $(cat "$T/outage.out")"
link_up
log "link up"
must_succeed tool_lt probe 127.0.0.1 $PORT 5
must_succeed tool_lt probe "$DC_IP" $PORT 5
wait $OUTAGE_PID || fail "established connection did not survive the outage: $(cat "$T/outage.out")"
log "established connection resumed after link_up; its round trip took $(cat "$T/outage.out") s"
kill -0 "$RELAY_PID" || fail "relay died"
must_succeed tool_lt ping 127.0.0.1 $PORT 5
read -r rmin rmed rmax <<<"$OUT"
log "RTT after link_up: min $rmin, median $rmed, max $rmax ms"
in_range "$rmin" 50 80 || fail "RTT after link_up $rmin ms not in [50, 80)"
tc -n "$LT_NS" qdisc show dev "$WAN_DEV" | grep -q tbf || fail "tbf lost"

wan_teardown
for ns in "$DC_NS" "$LT_NS"; do
        [ ! -e "/run/netns/$ns" ] || fail "namespace $ns left behind"
done
log "pass"
