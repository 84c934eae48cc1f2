#!/usr/bin/env python3
"""Isolation matrix: every HTTP route of a roam server, tried with each role's
token against alice's session, refs and desktop, plus crafted names. Bob
(another user) must never get a 2xx for alice's things, never see her names
in a listing, and no crafted name may reach anything. Prints a table
(markdown) and exits 1 on the first kind of leak, naming it.

usage: isolation.py URL ADMIN HOST ALICE BOB ALICE_SESSION ALICE_REF_ID
"""
import json
import socket
import sys
import urllib.parse

url, tokens = sys.argv[1], dict(zip(("admin", "host", "alice", "bob"), sys.argv[2:6]))
session, ref_id = sys.argv[6], sys.argv[7]
host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port


def request(method, path, token, body=b"", headers=()):
    """Raw HTTP (no client-side normalising of the path): (status, body)."""
    s = socket.create_connection((host, port), timeout=20)
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: x", "Connection: close",
             "Authorization: Bearer %s" % token, "Content-Length: %d" % len(body)] + list(headers)
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body)
    data = b""
    s.settimeout(5)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and (b"text/event-stream" in data.split(b"\r\n\r\n")[0] or
                                         b" 101 " in data.split(b"\r\n")[0]) and len(data) > 200:
                break
    except socket.timeout:
        pass
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else 0
    return status, rest


S = "/v1/sessions/" + session
ref = "sessions/alice/%s/base" % session
probes = [
    # (what, method, path, body, headers)
    ("list sessions", "GET", "/v1/sessions", b"", ()),
    ("read the session", "GET", S, b"", ()),
    ("pre-copy it", "POST", S + "/precopy", b"", ()),
    ("take it offline", "POST", S + "/offline", b"{}", ()),
    ("renew its lease", "POST", S + "/renew", b"", ()),
    ("move it in", "POST", S + "/move-in", b'{"checkpoint": "%s", "epoch": 9}' % ref_id.encode(), ()),
    ("finalize it in", "POST", S + "/finalize-in", b'{"checkpoint": "%s", "epoch": 9, "from_epoch": 0}' % ref_id.encode(), ()),
    ("stage its RAM", "POST", S + "/stage", b'{"checkpoint": "%s"}' % ref_id.encode(), ()),
    ("list its refs", "GET", "/v1/refs?prefix=sessions/alice", b"", ()),
    ("read its ref", "GET", "/v1/refs/" + ref, b"", ()),
    ("write a ref of it", "PUT", "/v1/refs/sessions/alice/%s/x" % session, b'{"id": "%s"}' % ref_id.encode(), ()),
    ("delete its ref", "DELETE", "/v1/refs/" + ref, b"", ()),
    ("push a pack onto it", "POST", "/v1/pack/put?ref=sessions/alice/%s/y&id=%s" % (session, ref_id), b"", ()),
    ("console: stop it", "POST", "/v1/console/sessions/%s/stop" % session, b"{}", ()),
    ("console: reclaim it", "POST", "/v1/console/sessions/%s/reclaim" % session, b"{}", ()),
    ("console: its desktop (WebSocket)", "GET", "/v1/console/sessions/%s/vnc" % session, b"",
     ("Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")),
    ("console: its desktop (raw)", "GET", "/v1/console/sessions/%s/vnc" % session, b"",
     ("Upgrade: roam-vnc", "Connection: Upgrade")),
    ("event stream", "GET", "/v1/events", b"", ()),
    ("list laptops", "GET", "/v1/laptops", b"", ()),
    ("list hoards", "GET", "/v1/hoards", b"", ()),
    ("apply a sync file", "POST", "/v1/sync-files", b"ROAMBDL\0", ()),
]
# crafted names: never anything but a refusal, whoever asks
crafted = ["..", "%2e%2e", session + "%00", session + "/../" + session, "a" * 300, "%C3%A4" + session,
           "../../catalog.db", ".%2f" + session, session + "%2f..%2f", "\x7f"]
for c in crafted:
    probes.append(("crafted name %r" % c[:24], "GET", "/v1/sessions/" + c, b"", ()))
    probes.append(("crafted ref %r" % c[:24], "GET", "/v1/refs/sessions/alice/" + c, b"", ()))
    probes.append(("crafted desktop %r" % c[:24], "GET", "/v1/console/sessions/%s/vnc" % c, b"",
                   ("Upgrade: roam-vnc", "Connection: Upgrade")))

leaks = []
print("| what | route | admin | host | alice | bob |")
print("|---|---|---:|---:|---:|---:|")
for what, method, path, body, headers in probes:
    row = {}
    for role in ("admin", "host", "alice", "bob"):
        # destructive probes only for bob and for crafted names: the others must stay possible
        destructive = method in ("DELETE", "PUT") or path.endswith(("/stop", "/reclaim", "/offline", "/move-in",
                                                                     "/finalize-in")) or "pack/put" in path
        if destructive and role != "bob" and not what.startswith("crafted"):
            row[role] = "–"
            continue
        status, rest = request(method, path, tokens[role], body, headers)
        row[role] = str(status)
        crafted_probe = what.startswith("crafted")
        mentions = session.encode() in rest or b"sessions/alice" in rest
        if crafted_probe and 200 <= status < 300:
            leaks.append("%s: %s %s answered %d for %s" % (what, method, path[:60], status, role))
        if role == "bob" and not crafted_probe:
            if what.startswith(("list", "event")):
                if mentions:
                    leaks.append("%s: bob's answer names alice's %s" % (what, session))
            elif 200 <= status < 300 or status == 101:
                leaks.append("%s: %s %s answered %d for bob" % (what, method, path, status))
    shown = path if len(path) < 60 else path[:57] + "..."
    print("| %s | `%s %s` | %s | %s | %s | %s |" % (what, method, shown.replace("|", "\\|"), row["admin"], row["host"],
                                                   row["alice"], row["bob"]))
print()
print("%d probes x 4 roles; %d leaks" % (len(probes), len(leaks)))
for l in leaks:
    print("LEAK: " + l)
sys.exit(1 if leaks else 0)
