#!/usr/bin/env python3
# Helpers of bench/desktop.sh that speak to a QEMU or to its guest agent:
#
#   desktop-qmp.py dirty QMP_SOCKET SECONDS
#       QEMU's own measure of the guest's memory dirty rate (calc-dirty-rate,
#       page sampling, over SECONDS), printed as MiB/s
#   desktop-qmp.py ramdirty RAM_FILE SECONDS
#       the guest's 4 KiB pages that changed over SECONDS, read from its RAM
#       file (memory-backend-file, share=on) at the start and at the end:
#       printed as MiB/s (pages x 4 KiB / SECONDS) and the page count. Exact
#       where calc-dirty-rate samples 512 pages per GiB and answers in whole
#       MB/s (0 for the desktop's rates)
#   desktop-qmp.py exec AGENT_SOCKET [--user USER] [--timeout S] -- CMD...
#       CMD in the guest through qemu-guest-agent (guest-exec, as USER with
#       DISPLAY=:0 through runuser when given); exits with its exit code
#   desktop-qmp.py ping AGENT_SOCKET
#       exit 0 when the agent answers within 2 s
#
# For the QEMU peer that roam is measured against (a plain QEMU has no
# 'roam session exec'). QEMU's socket chardevs serve one client at a time.
import base64, json, os, random, socket, sys, time


def connect(path, timeout):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    return s


def lines(s):
    buf = b""
    while True:
        while b"\n" not in buf:
            b = s.recv(65536)
            if not b:
                raise EOFError("connection closed")
            buf += b
        line, buf = buf.split(b"\n", 1)
        yield line


def qmp_cmd(s, it, execute, **args):
    msg = {"execute": execute}
    if args:
        msg["arguments"] = args
    s.sendall(json.dumps(msg).encode() + b"\n")
    for line in it:
        m = json.loads(line)
        if "error" in m:
            raise RuntimeError("%s: %s" % (execute, m["error"]["desc"]))
        if "return" in m:
            return m["return"]


def dirty(path, seconds):
    s = connect(path, 30)
    it = lines(s)
    next(it)  # greeting
    qmp_cmd(s, it, "qmp_capabilities")
    qmp_cmd(s, it, "calc-dirty-rate", **{"calc-time": int(seconds)})
    time.sleep(int(seconds) + 0.5)
    for _ in range(100):
        r = qmp_cmd(s, it, "query-dirty-rate")
        if r.get("status") == "measured":
            print(r["dirty-rate"])
            return
        time.sleep(0.2)
    raise SystemExit("no dirty rate measured")


def ram_blocks(path):
    with open(path, "rb", buffering=0) as f:  # read(): a tmpfs hole is not allocated
        while True:
            block = f.read(1 << 20)
            if not block:
                return
            yield block


def ramdirty(path, seconds):
    t0 = time.monotonic()
    a = list(ram_blocks(path))  # a copy of the RAM, block by block
    time.sleep(max(0.0, float(seconds) - (time.monotonic() - t0)))
    t1 = time.monotonic()
    changed, n = 0, 0
    for i, b in enumerate(ram_blocks(path)):
        n = i + 1
        x = a[i] if i < len(a) else b""
        if b != x:
            changed += sum(1 for off in range(0, len(b), 4096) if b[off:off + 4096] != x[off:off + 4096])
    changed += sum(len(x) for x in a[n:]) // 4096
    # each page is read twice about t1 - t0 apart (both reads take as long)
    print("%.2f %d" % (changed * 4096 / (1 << 20) / (t1 - t0), changed))


class Agent:
    def __init__(self, path, timeout=5):
        self.s = connect(path, timeout)
        self.buf = b""
        self.s.sendall(b"\xff")
        n = random.randrange(1 << 30)
        self.s.sendall(json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": n}}).encode() + b"\n")
        # everything up to the agent's 0xff is stale
        while b"\xff" not in self.buf:
            self.more()
        self.buf = self.buf.split(b"\xff", 1)[1]
        if self.answer() != n:
            raise RuntimeError("wrong sync answer")

    def more(self):
        b = self.s.recv(65536)
        if not b:
            raise EOFError("agent closed the connection")
        self.buf += b

    def answer(self):
        while True:
            while b"\n" not in self.buf:
                self.more()
            line, self.buf = self.buf.split(b"\n", 1)
            line = line.strip()
            if not line:
                continue
            m = json.loads(line)
            if "error" in m:
                raise RuntimeError(m["error"]["desc"])
            if "return" in m:
                return m["return"]

    def cmd(self, execute, **args):
        msg = {"execute": execute}
        if args:
            msg["arguments"] = args
        self.s.sendall(json.dumps(msg).encode() + b"\n")
        return self.answer()


def agent_exec(path, argv):
    user, timeout = None, 60
    while argv and argv[0] != "--":
        if argv[0] == "--user":
            user = argv[1]
            argv = argv[2:]
        elif argv[0] == "--timeout":
            timeout = float(argv[1])
            argv = argv[2:]
        else:
            raise SystemExit("unknown option " + argv[0])
    argv = argv[1:]
    if user:
        argv = ["/usr/sbin/runuser", "-u", user, "--", "env", "DISPLAY=:0", "HOME=/home/" + user, "USER=" + user,
                "XDG_RUNTIME_DIR=/run/user/1000"] + argv
    a = Agent(path)
    pid = a.cmd("guest-exec", path=argv[0], arg=argv[1:], **{"capture-output": True})["pid"]
    end = time.monotonic() + timeout
    while True:
        st = a.cmd("guest-exec-status", pid=pid)
        if st.get("exited"):
            sys.stdout.write(base64.b64decode(st.get("out-data", "")).decode(errors="replace"))
            sys.stderr.write(base64.b64decode(st.get("err-data", "")).decode(errors="replace"))
            sys.exit(st.get("exitcode", 255))
        if time.monotonic() > end:
            raise SystemExit("timed out")
        time.sleep(0.1)


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "dirty":
        dirty(sys.argv[2], sys.argv[3])
    elif what == "ramdirty":
        ramdirty(sys.argv[2], sys.argv[3])
    elif what == "exec":
        agent_exec(sys.argv[2], sys.argv[3:])
    elif what == "ping":
        try:
            Agent(sys.argv[2], 2).cmd("guest-ping")
        except Exception as e:  # noqa: BLE001 - any failure is "not answering"
            print(e, file=sys.stderr)
            sys.exit(1)
    else:
        raise SystemExit("usage: desktop-qmp.py dirty|ramdirty|exec|ping ...")
