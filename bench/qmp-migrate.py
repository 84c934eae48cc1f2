#!/usr/bin/env python3
# qmp-migrate.py SRC.qmp DST.qmp MIG_LISTEN MIG_CONNECT NBD_LISTEN NBD_CONNECT MAX_BW [MAX_S]
# QEMU live migration with storage, DESIGN.md's verified sequence, for
# bench/session.sh and bench/handoff.sh. Prints JSON. A migration that has not
# converged after MAX_S seconds (default: 600) is cancelled and reported with
# "status": "timeout".
import json, select, socket, sys, time

class Qmp:
    def __init__(self, path, name):
        self.name, self.buf, self.events = name, b"", []
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.read()
        self.cmd("qmp_capabilities")

    def read(self, timeout=120):
        while b"\n" not in self.buf:
            if not select.select([self.s], [], [], timeout)[0]:
                raise TimeoutError("%s: QMP silent for %d s" % (self.name, timeout))
            b = self.s.recv(65536)
            if not b:
                raise EOFError("%s: QMP closed" % self.name)
            self.buf += b
        line, self.buf = self.buf.split(b"\n", 1)
        m = json.loads(line)
        if "event" in m:
            ts = m["timestamp"]
            m["t"] = ts["seconds"] + ts["microseconds"] / 1e6
            self.events.append(m)
        return m

    def cmd(self, execute, **args):
        msg = {"execute": execute}
        if args:
            msg["arguments"] = args
        self.s.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            m = self.read()
            if "error" in m:
                raise RuntimeError("%s: %s: %s" % (self.name, execute, m["error"]["desc"]))
            if "return" in m:
                return m["return"]

    def event(self, name, pred=lambda d: True, timeout=600):
        end = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e["event"] == name and pred(e.get("data", {})):
                    return e
            if time.monotonic() > end:
                raise TimeoutError("%s: no %s event" % (self.name, name))
            try:
                self.read(max(0.01, end - time.monotonic()))
            except TimeoutError:
                pass

src_path, dst_path, mig_listen, mig_connect, nbd_listen, nbd_connect, max_bw = sys.argv[1:8]
max_s = sys.argv[8] if len(sys.argv) > 8 else "600"
src, dst = Qmp(src_path, "source"), Qmp(dst_path, "destination")
r = {}
for q in (src, dst):
    q.cmd("migrate-set-capabilities", capabilities=[{"capability": "events", "state": True}])
# destination: wait for the stream, export its own (empty) overlay
dst.cmd("migrate-incoming", uri="tcp:" + mig_listen)
host, port = nbd_listen.rsplit(":", 1)
dst.cmd("nbd-server-start", addr={"type": "inet", "data": {"host": host, "port": port}})
dst.cmd("block-export-add", **{"type": "nbd", "id": "exp0", "node-name": "disk0-fmt", "name": "disk0",
                               "writable": True})
# source: no 128 MiB/s cap; downtime-limit stays QEMU's default (reported)
src.cmd("migrate-set-parameters", **{"max-bandwidth": int(max_bw)})
p = src.cmd("query-migrate-parameters")
r["downtime_limit_ms"], r["max_bandwidth"] = p["downtime-limit"], p["max-bandwidth"]
t0 = time.time()
src.cmd("drive-mirror", **{"device": "disk0", "job-id": "mirror0", "target": "nbd://%s/disk0" % nbd_connect,
                           "format": "raw", "sync": "top", "mode": "existing"})
ready = src.event("BLOCK_JOB_READY", lambda d: d.get("device") == "mirror0")
r["mirror_ready_ms"] = (ready["t"] - t0) * 1000
src.cmd("migrate", uri="tcp:" + mig_connect)
try:
    src_done = src.event("MIGRATION", lambda d: d.get("status") in ("completed", "failed", "cancelled"),
                         timeout=float(max_s))
except TimeoutError:
    info = src.cmd("query-migrate")
    src.cmd("migrate_cancel")
    ram = info.get("ram", {})
    r.update({"status": "timeout", "total_ms": (time.time() - t0) * 1000,
              "ram_transferred": ram.get("transferred", 0), "dirty_sync_count": ram.get("dirty-sync-count"),
              "remaining": ram.get("remaining", 0), "dirty_pages_rate": ram.get("dirty-pages-rate", 0)})
    print(json.dumps(r))
    sys.exit(0)
info = src.cmd("query-migrate")
if info.get("status") != "completed":
    raise SystemExit("migration %s: %s" % (info.get("status"), info.get("error-desc", "")))
# 7.2 sends the 'completed' event before it fills in total-time and downtime
end = time.monotonic() + 2
while not info.get("total-time") and time.monotonic() < end:
    time.sleep(0.01)
    info = src.cmd("query-migrate")
src.cmd("block-job-cancel", device="mirror0")
done = src.event("BLOCK_JOB_COMPLETED", lambda d: d.get("device") == "mirror0")
stop = src.event("STOP")
dst_done = dst.event("MIGRATION", lambda d: d.get("status") in ("completed", "failed"))
dst.cmd("block-export-del", id="exp0", mode="hard")
dst.cmd("nbd-server-stop")
dst.cmd("cont")
resume = dst.event("RESUME")
ram = info.get("ram", {})
r.update({
    "guest_pause_ms": (resume["t"] - stop["t"]) * 1000,
    # where the guest-visible pause goes, from the source's STOP
    "src_completed_ms": (src_done["t"] - stop["t"]) * 1000,
    "dst_completed_ms": (dst_done["t"] - stop["t"]) * 1000,
    "mirror_cancelled_ms": (done["t"] - stop["t"]) * 1000,
    "qemu_downtime_ms": info.get("downtime"),
    "migrate_total_ms": info.get("total-time"),
    "total_ms": (resume["t"] - t0) * 1000,
    "mirror_bytes": done["data"].get("offset", 0),
    "ram_transferred": ram.get("transferred", 0),
    "dirty_sync_count": ram.get("dirty-sync-count"),
    "status": dst.cmd("query-status")["status"],
})
print(json.dumps(r))
