#!/usr/bin/env python3
"""A dishonest roam server for tests: serves a real store directory over the
pull routes of docs/sync-protocol.md, but flips a byte in one chunk.

usage: tamper-server.py STORE_DIR PORT MODE
  MODE once   - the first answer that carries the victim chunk is tampered
  MODE always - every answer that carries it is tampered
The victim is the chunk that sorts first among those requested first.
Prints "ready" when listening; serves until killed."""
import http.server
import os
import struct
import sys

store, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
state = {"victim": None, "tampered": 0}


def chunk_bytes(hexid):
    with open(os.path.join(store, "chunks", hexid[:2], hexid), "rb") as f:
        return f.read()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body, ctype="application/octet-stream"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/v1/refs/"):
            name = self.path[len("/v1/refs/"):]
            try:
                text = open(os.path.join(store, "refs", name)).read().split()
            except OSError:
                return self.send(404, b'{"error": "not found"}', "application/json")
            body = ('{"name": "%s", "id": "%s"}' % (name, text[2])).encode()
            return self.send(200, body, "application/json")
        if self.path.startswith("/v1/objects/"):
            h = self.path[len("/v1/objects/"):]
            with open(os.path.join(store, "objects", h[:2], h), "rb") as f:
                return self.send(200, f.read())
        self.send(404, b'{"error": "unknown route"}', "application/json")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if self.path != "/v1/chunks/get":
            return self.send(404, b'{"error": "unknown route"}', "application/json")
        ids = [body[i:i + 32].hex() for i in range(0, len(body), 32)]
        if state["victim"] is None and ids:
            state["victim"] = min(ids)
        out = bytearray()
        for h in ids:
            data = bytearray(chunk_bytes(h))
            if h == state["victim"] and (mode == "always" or state["tampered"] == 0):
                data[len(data) // 2] ^= 0x01
                state["tampered"] += 1
                sys.stderr.write("tampered %s\n" % h)
            out += bytes.fromhex(h) + struct.pack("<I", len(data)) + data
        self.send(200, bytes(out))


srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
print("ready", flush=True)
srv.serve_forever()
