#!/usr/bin/env python3
"""A faulty link for tests: an HTTP/1.1 relay between roam's client and a
real roam server that, when told to, spoils the body of one answer.

usage: fault-relay.py LISTEN_PORT TARGET_HOST TARGET_PORT

Listens on 127.0.0.1:LISTEN_PORT and forwards every request to the target,
keeping connections alive. Answers pass unchanged (re-framed with a
Content-Length) until a fault is armed:

  GET /__relay/arm?fault=F&path=P[&count=N]
      the next N (default 1) answers to requests whose path starts with P
      get fault F:
        truncate   the head promises the whole body, half of it comes, then
                   the connection closes (a cut in the middle of an answer)
        short      the body is cut in half and Content-Length says so (a
                   well-framed but truncated answer)
        reorder    the two halves of the body swapped (same length)
  GET /__relay/disarm
  GET /__relay/stats  -> "faulted N" (how many answers were spoiled)

Prints "ready" once it listens; serves until killed. The server's answers
are read whole before they are passed on (fine for tests: bodies of a few MB).
"""
import socket
import sys
import threading
import urllib.parse

listen_port, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
lock = threading.Lock()
armed = {"fault": None, "path": "", "count": 0}
stats = {"faulted": 0}


class Closed(Exception):
    pass


class Reader:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def fill(self):
        d = self.sock.recv(1 << 16)
        if not d:
            raise Closed()
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 1 << 16:
                raise Closed()
            self.fill()
        i = self.buf.index(b"\r\n")
        out, self.buf = self.buf[:i], self.buf[i + 2:]
        return out

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self):
        try:
            while True:
                self.fill()
        except (Closed, OSError):
            pass
        out, self.buf = self.buf, b""
        return out


def read_head(r):
    first = r.line()
    headers = []
    while True:
        l = r.line()
        if not l:
            break
        k, _, v = l.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    return first, headers


def get(headers, name):
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def read_body(r, headers, chunked_ok=True):
    te = get(headers, "transfer-encoding")
    if te and "chunked" in te.lower() and chunked_ok:
        out = b""
        while True:
            size = int(r.line().split(b";")[0], 16)
            if size == 0:
                while r.line():
                    pass
                return out
            out += r.exact(size)
            r.exact(2)
    cl = get(headers, "content-length")
    if cl is not None:
        return r.exact(int(cl))
    return None


def head_bytes(first, headers, length):
    drop = {"content-length", "transfer-encoding"}
    lines = [first] + [("%s: %s" % (k, v)).encode("latin-1") for k, v in headers if k.lower() not in drop]
    if length is not None:
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def control(client, path):
    u = urllib.parse.urlparse(path)
    q = urllib.parse.parse_qs(u.query)
    with lock:
        if u.path == "/__relay/arm":
            armed["fault"] = q.get("fault", [None])[0]
            armed["path"] = q.get("path", [""])[0]
            armed["count"] = int(q.get("count", ["1"])[0])
            body = b"armed\n"
        elif u.path == "/__relay/disarm":
            armed["fault"], armed["count"] = None, 0
            body = b"disarmed\n"
        else:
            body = b"faulted %d\n" % stats["faulted"]
    client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def take_fault(path):
    with lock:
        if armed["fault"] and armed["count"] > 0 and path.startswith(armed["path"]):
            armed["count"] -= 1
            stats["faulted"] += 1
            return armed["fault"]
    return None


def serve(client):
    upstream = None
    try:
        cr = Reader(client)
        while True:
            first, headers = read_head(cr)
            method, path = first.decode("latin-1").split(" ")[:2]
            body = read_body(cr, headers) or b""
            if path.startswith("/__relay/"):
                control(client, path)
                continue
            if upstream is None:
                upstream = socket.create_connection((host, port), timeout=120)
                ur = Reader(upstream)
            upstream.sendall(head_bytes(first, headers, len(body) if body or method in ("POST", "PUT") else None)
                             + body)
            rfirst, rheaders = read_head(ur)
            status = int(rfirst.split(b" ")[1])
            if method == "HEAD" or status in (101, 204, 304) or 100 <= status < 200:
                client.sendall(head_bytes(rfirst, rheaders, None))
                if status == 101:
                    return
                continue
            rbody = read_body(ur, rheaders)
            close_after = rbody is None
            if rbody is None:
                rbody = ur.rest()
            fault = take_fault(path)
            half = len(rbody) // 2
            if fault == "truncate":
                client.sendall(head_bytes(rfirst, rheaders, len(rbody)) + rbody[:half])
                return
            if fault == "short":
                rbody = rbody[:half]
            elif fault == "reorder":
                rbody = rbody[half:] + rbody[:half]
            client.sendall(head_bytes(rfirst, rheaders, len(rbody)) + rbody)
            if close_after:
                return
    except (Closed, OSError, ValueError, IndexError):
        pass
    finally:
        for s in (client, upstream):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


def main():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(64)
    print("ready", flush=True)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


main()
