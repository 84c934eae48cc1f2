#!/usr/bin/env python3
"""Self-test of delay-relay on loopback (no root needed).

usage: test-delay-relay.py PATH/TO/delay-relay
Checks: per-direction delay (RTT = 2 x delay on an open connection, 4 x delay
for the first response on a fresh one), order and integrity of a bulk transfer
in both directions at once, half-close propagation, reset propagation, refused
target, 64 concurrent connections, the optional --rate-mbit, and SIGTERM exit.
Prints measured numbers; exits non-zero on the first failed check.
"""
import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

RELAY = sys.argv[1] if len(sys.argv) > 1 else "delay-relay"
DELAY_MS = 25


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(cond, what):
    if not cond:
        print("FAIL: " + what, flush=True)
        sys.exit(1)
    print("ok: " + what, flush=True)


class Server:
    """A target server on loopback; handler(conn) runs in a thread per connection."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.run, args=(c,), daemon=True).start()

    def run(self, c):
        try:
            self.handler(c)
        except OSError:
            pass
        finally:
            c.close()


class Relay:
    def __init__(self, target_port, *extra):
        self.port = free_port()
        self.p = subprocess.Popen([RELAY, "--listen", "127.0.0.1:%d" % self.port,
                                   "--target", "127.0.0.1:%d" % target_port,
                                   "--delay-ms", str(DELAY_MS)] + list(extra))
        end = time.time() + 5
        while time.time() < end:
            # the relay binds before it accepts: a connect probe would open a
            # relayed connection, so look at the listening sockets instead
            if self._listening():
                return
            time.sleep(0.02)
        raise RuntimeError("relay did not start")

    def _listening(self):
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1].endswith(":%04X" % self.port) and parts[3] == "0A":
                    return True
        return False

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        return self.p.wait(timeout=5)


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
        buf += b
    return bytes(buf)


def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        b = c.recv(65536)
        if not b:
            c.shutdown(socket.SHUT_WR)
            return
        c.sendall(b)


def main():
    # usage errors are one line, exit 2
    r = subprocess.run([RELAY, "--listen", "nope"], capture_output=True, text=True)
    check(r.returncode == 2 and r.stderr.count("\n") == 1, "usage error is one line, rc 2: " + r.stderr.strip())

    srv = Server(echo)
    relay = Relay(srv.port)

    # first response on a fresh connection: handshake (2 x delay) + RTT
    # the lower bound is the relay's promise; the upper one catches a whole
    # extra delay: the best of three fresh connections, so that a scheduling
    # hiccup on a loaded machine is not taken for one
    firsts = []
    for _ in range(3):
        t0 = time.monotonic()
        s = relay.connect()
        s.sendall(b"x")
        recv_exact(s, 1)
        firsts.append((time.monotonic() - t0) * 1000)
        if len(firsts) < 3:
            s.close()
    first = min(firsts)
    check(4 * DELAY_MS <= first < 5 * DELAY_MS, "first response after %.1f ms (4 x delay; of %s)" %
          (first, ", ".join("%.1f" % f for f in firsts)))
    rtts = []
    for _ in range(10):
        t0 = time.monotonic()
        s.sendall(b"y")
        recv_exact(s, 1)
        rtts.append((time.monotonic() - t0) * 1000)
    rtts.sort()
    check(rtts[0] >= 2 * DELAY_MS and rtts[5] < 3 * DELAY_MS,
          "RTT min %.1f median %.1f max %.1f ms" % (rtts[0], rtts[5], rtts[-1]))
    # half-close: our EOF reaches the echo server, whose EOF comes back
    s.shutdown(socket.SHUT_WR)
    t0 = time.monotonic()
    check(s.recv(10) == b"", "EOF propagated both ways")
    dt = (time.monotonic() - t0) * 1000
    check(dt >= 2 * DELAY_MS, "EOF round trip %.1f ms" % dt)
    s.close()

    # bulk both ways at once, integrity and order
    size = 64 << 20
    data = os.urandom(1 << 20) * 64
    s = relay.connect()
    got = hashlib.sha256()
    n = [0]

    def reader():
        while True:
            b = s.recv(1 << 20)
            if not b:
                return
            got.update(b)
            n[0] += len(b)
    th = threading.Thread(target=reader)
    t0 = time.monotonic()
    th.start()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    th.join()
    dt = time.monotonic() - t0
    check(n[0] == size and got.digest() == hashlib.sha256(data).digest(),
          "64 MiB echoed intact (%.0f Mbit/s each way)" % (size * 8 / dt / 1e6))
    s.close()

    # 64 concurrent connections, each its own checksum
    def one(i, res):
        try:
            c = relay.connect()
            payload = struct.pack("!I", i) * 50000
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)
            buf = bytearray()
            while True:
                b = c.recv(65536)
                if not b:
                    break
                buf += b
            res[i] = bytes(buf) == payload
            c.close()
        except OSError as e:
            res[i] = e
    res = {}
    ths = [threading.Thread(target=one, args=(i, res)) for i in range(80)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    check(all(v is True for v in res.values()) and len(res) == 80, "80 concurrent connections")

    # reset from the target reaches the client
    def rst(c):
        c.recv(1)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    srv2 = Server(rst)
    relay2 = Relay(srv2.port)
    s = relay2.connect()
    s.sendall(b"z")
    s.settimeout(5)
    try:
        s.recv(10)
        ok = False  # data or a clean EOF: the reset was lost
    except ConnectionResetError:
        ok = True
    check(ok, "reset propagated to the client")
    s.close()

    # a refused target: the client gets reset/EOF promptly
    dead = free_port()
    relay3 = Relay(dead)
    s = relay3.connect()
    s.settimeout(5)
    t0 = time.monotonic()
    try:
        ok = s.recv(10) == b""
    except ConnectionResetError:
        ok = True
    check(ok and time.monotonic() - t0 < 1, "refused target closes the client connection")
    s.close()

    # client reset reaches the target
    seen = threading.Event()

    def wait_rst(c):
        try:
            while c.recv(65536):
                pass
        except ConnectionResetError:
            seen.set()
    srv4 = Server(wait_rst)
    relay4 = Relay(srv4.port)
    s = relay4.connect()
    s.sendall(b"a")
    time.sleep(0.2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    check(seen.wait(3), "client reset propagated to the target")

    # token bucket
    def sink(c):
        while c.recv(1 << 20):
            pass
        c.shutdown(socket.SHUT_WR)
    srv5 = Server(sink)
    relay5 = Relay(srv5.port, "--rate-mbit", "40")
    s = relay5.connect()
    t0 = time.monotonic()
    s.sendall(os.urandom(1 << 20) * 10)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    dt = time.monotonic() - t0 - 4 * DELAY_MS / 1000
    rate = 10 * 8 * 1.048576 / dt
    check(36 < rate < 42, "--rate-mbit 40 gives %.1f Mbit/s" % rate)
    s.close()

    for r in (relay, relay2, relay3, relay4, relay5):
        check(r.stop() == 0, "exit 0 on SIGTERM")
    print("all delay-relay checks passed")


if __name__ == "__main__":
    main()
