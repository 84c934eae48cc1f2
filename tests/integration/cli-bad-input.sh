#!/usr/bin/env bash
# Bad input that used to get through (the "Everyday use" issue, point 1):
# corrupt qcow2 images, interrupted commands and their temp files, read-only
# stores, wrong homes and URLs, and the smaller cases. Every error is one line
# 'roam: ...', exits non-zero and leaves the store consistent.
# CASE=NAME runs one case only (to check that it fails without its fix).
. "$(dirname "$0")/../lib.sh"
requires qemu-img
requires curl
requires jq

cd "$T"
want() { [ -z "${CASE:-}" ] || [ "$CASE" = "$1" ]; }
# fails_with REGEX CMD...: CMD fails (not by a signal) with one line that matches
fails_with() {
        local re=$1; shift
        must_fail "$@"
        expect_one_line "$ERR"
        expect_match "$ERR" "^roam: " "error"
        expect_match "$ERR" "$re" "error"
}
fsck_ok() { must_succeed roam store fsck; expect_match "$OUT" "store is consistent"; }
# tmp_files DIR: the temp files below DIR
tmp_files() { find "$1" -name '.tmp-*' 2>/dev/null; }
has_tmp_files() { [ -n "$(tmp_files "$1")" ]; }
make_image a.raw 20 3

if want qcow2; then
        log "a truncated qcow2 is refused with qemu-img check's reason, not imported as zeros"
        qemu-img convert -f raw -O qcow2 a.raw a.qcow2
        head -c 300000 a.qcow2 >short.qcow2
        head -c 5000000 a.qcow2 >half.qcow2
        for f in short.qcow2 half.qcow2; do
                fails_with "'$f' is a corrupt qcow2 image .*qemu-img check: .*offset" roam image import cut "$f"
        done
        must_succeed roam image list
        if grep -q cut <<<"$OUT"; then fail "a corrupt image was imported: $OUT"; fi
        must_succeed roam image import whole a.qcow2
        [ -z "$(tmp_files "$ROAM_HOME")" ] || fail "temp files left: $(tmp_files "$ROAM_HOME")"
        fsck_ok
fi

# a qemu-img that converts forever (and records its pid): the real one for
# everything else
mkdir -p fakebin
cat >fakebin/qemu-img <<EOF
#!/bin/bash
if [ "\$1" = convert ]; then
        echo \$\$ >"$T/convert.pid"
        truncate -s 1G "\${@: -1}"
        exec sleep 300
fi
exec $(command -v qemu-img) "\$@"
EOF
chmod +x fakebin/qemu-img
# start_slow_import NAME: a qcow2 import stuck in its conversion; sets PID, CONVERT
start_slow_import() {
        rm -f convert.pid
        [ -f a.qcow2 ] || qemu-img convert -f raw -O qcow2 a.raw a.qcow2
        PATH=$T/fakebin:$PATH "$ROAM_BIN" image import "$1" a.qcow2 >/dev/null 2>"$T/slow.err" &
        PID=$!
        cleanup_add "kill -9 $PID"
        wait_for 10 test -s convert.pid || fail "the conversion did not start: $(cat slow.err)"
        CONVERT=$(cat convert.pid)
        cleanup_add "kill -9 $CONVERT"
}
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.Z' "/proc/$1/status" 2>/dev/null; }
# interrupt SIG PID: sends SIG to our child PID, which must end soon; sets RC
# (a background job of a script ignores SIGINT unless it handles it itself)
interrupt() {
        kill -"$1" "$2"
        wait_for 15 gone "$2" || fail "roam ($2) did not stop on SIG$1"
        RC=0; wait "$2" || RC=$?
}

if want interrupt; then
        log "SIGINT during a qcow2 conversion: qemu-img stops, the temp file goes, exit 130, one line"
        for sig in INT TERM; do
                start_slow_import conv
                interrupt $sig $PID
                [ $RC = 130 ] || fail "interrupted import exited $RC: $(cat slow.err)"
                expect_one_line "$(cat slow.err)"
                expect_match "$(cat slow.err)" "^roam: interrupted; nothing was changed$"
                wait_for 5 gone "$CONVERT" || fail "qemu-img ($CONVERT) still runs after roam was interrupted"
                [ -z "$(tmp_files "$ROAM_HOME")" ] || fail "temp files left: $(tmp_files "$ROAM_HOME")"
        done

        log "SIGINT during a raw import: its pending chunks go too"
        python3 - <<'PY'
with open("big.raw", "wb") as f:
    for i in range(2048):   # 128 MiB, every 64 KiB block different, compressible
        f.write(((b"roam interrupt test block %08d " % i) * 1928)[:65536])
PY
        # a slow store (zstd 19 on one thread) keeps the import busy long enough
        ROAM_HOME=$T/slow "$ROAM_BIN" store init --zstd-level 19 >/dev/null
        ROAM_HOME=$T/slow "$ROAM_BIN" image import --threads 1 big big.raw >/dev/null 2>big.err &
        PID=$!
        cleanup_add "kill -9 $PID"
        wait_for 20 has_tmp_files "$T/slow/store/tmp" || fail "the import wrote no chunk: $(cat big.err)"
        kill -STOP $PID
        kill -INT $PID # pending until it continues, mid-import
        interrupt CONT $PID
        [ $RC = 130 ] || fail "interrupted raw import exited $RC: $(cat big.err)"
        expect_match "$(cat big.err)" "^roam: interrupted; nothing was changed$"
        [ -z "$(tmp_files "$T/slow")" ] || fail "temp files left: $(tmp_files "$T/slow" | wc -l)"
        must_succeed roam --home "$T/slow" image list
        if grep -q '^big ' <<<"$OUT"; then fail "the interrupted import made an image"; fi
        must_succeed roam --home "$T/slow" store fsck
        fsck_ok
fi

if want stray; then
        log "roam killed outright: qemu-img dies with it; fsck reports the stray temp file, gc removes it"
        start_slow_import killed
        kill -9 $PID
        wait $PID 2>/dev/null || true
        wait_for 5 gone "$CONVERT" || fail "qemu-img ($CONVERT) still runs after roam died"
        stray=$(tmp_files "$ROAM_HOME/tmp")
        [ -n "$stray" ] || fail "no temp file of the killed import"
        touch -d '-1 hour' $stray
        must_succeed roam store fsck
        expect_match "$OUT" "temp files: +1 stray" "fsck"
        must_succeed roam store gc
        expect_match "$OUT" " 1 temp files" "gc"
        [ -z "$(tmp_files "$ROAM_HOME")" ] || fail "gc left $(tmp_files "$ROAM_HOME")"

        log "a temp file in use by a running import is not stray, however old"
        start_slow_import running
        touch -d '-1 hour' $(tmp_files "$ROAM_HOME/tmp")
        must_succeed roam store fsck
        expect_match "$OUT" "temp files: +0 stray" "fsck during an import"
        interrupt INT $PID
        fsck_ok
fi

if want home; then
        log "a home that does not exist, or is a file, is named (writers create a missing one)"
        : >afile
        for h in "$T/nohome" "$T/afile"; do
                fails_with "state directory '$h' (does not exist|is not a directory)" roam --home "$h" image list
                fails_with "state directory '$h' (does not exist|is not a directory)" roam --home "$h" token list
        done
        [ ! -e "$T/nohome" ] || fail "a reader created the home"
        must_succeed roam --home "$T/nohome" image import first a.raw
        must_succeed roam --home "$T/nohome" image list
        expect_match "$OUT" "^first "
fi

if want notroam; then
        log "a web server that is not roam is named as such"
        mkdir -p www
        port=$(free_port)
        (cd www && exec python3 -m http.server "$port" --bind 127.0.0.1) >/dev/null 2>&1 &
        cleanup_add "kill $!"
        port2=$(free_port)
        python3 - "$port2" >/dev/null 2>&1 <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Type", "text/html"); self.end_headers()
        self.wfile.write(b"<html><body>welcome</body></html>")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
        cleanup_add "kill $!"
        wait_for 10 curl -s -o /dev/null "http://127.0.0.1:$port/" || fail "no web server"
        wait_for 10 curl -s -o /dev/null "http://127.0.0.1:$port2/" || fail "no catch-all web server"
        for u in "http://127.0.0.1:$port" "http://127.0.0.1:$port2"; do
                fails_with "'$u' is not a roam server \(" roam pull "$u" x --token t
        done
        log "a roam daemon's /v1/info carries its version and role"
        mkdir -p d1
        tok=$(ROAM_HOME=$T/d1 "$ROAM_BIN" token create --role admin)
        dport=$(free_port)
        start_daemon "$T/d1" "127.0.0.1:$dport"
        info=$(curl -sf -H "Authorization: Bearer $tok" "http://127.0.0.1:$dport/v1/info") || fail "no /v1/info"
        expect_match "$(jq -r .version <<<"$info")" "^[0-9]" "version"
        expect_match "$(jq -r .role <<<"$info")" "^server$" "role"
        log "libmicrohttpd's own complaints are one roam log line, without HTML"
        python3 - "$dport" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /v1/info HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
s.settimeout(5); s.recv(4096); s.close()
PY
        wait_for 5 grep -q "Content-Length" "$T/d1/serve.log" || fail "no log line for a malformed request"
        line=$(grep "Content-Length" "$T/d1/serve.log" | tail -n 1)
        expect_match "$line" "roam\[[0-9]+\] error: http: " "log line"
        if grep -q '<' <<<"$line"; then fail "HTML in the log: $line"; fi
fi

if want smaller; then
        log "smaller cases"
        must_succeed roam image import small a.raw
        head -c 65536 /dev/urandom >one.raw
        roam image import one one.raw 2>one.err >/dev/null || fail "import of one chunk failed"
        expect_match "$(cat one.err)" " 1 new chunk, " "one new chunk"
        mkdir -p dd
        fails_with "'dd' is a directory" roam bundle create -o dd --force small
        fails_with "image name '.x' is invalid \(use 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'\)" \
                roam image import .x a.raw
        fails_with "session name 'a/b' is invalid" env -u ROAM_GUEST_DIR "$ROAM_BIN" session create a/b --image small --user u
        # a laptop daemon without a server (a hoarder) starts, and says what it is
        start_daemon "$T/hoarder" "127.0.0.1:$(free_port)" --role laptop
        grep -q "a laptop without --server URL: it pairs with no server" "$T/hoarder/serve.log" ||
                fail "a laptop daemon without --server does not say what it does"
        head -c $((2 << 20)) /dev/zero >big.pem
        echo "not a certificate" >small.pem
        for c in big.pem small.pem; do
                fails_with "TLS certificate '$c' is not a PEM certificate" roam serve --listen 127.0.0.1:1 --tls-cert $c --tls-key $c
        done
        fsck_ok
fi

if want readonly; then
        requires_root
        log "a read-only store or home: one line naming it and what to do"
        mkdir -p ro
        mount -t tmpfs -o size=64m tmpfs ro || skip "cannot mount a tmpfs"
        cleanup_add "umount -l '$T/ro'"
        export ROAM_HOME=$T/ro/home
        must_succeed roam image import base a.raw
        must_succeed roam bundle create -o "$T/b.bundle" base
        must_succeed roam token create --role admin
        mount -o remount,ro "$T/ro"
        w="cannot write to (store|state directory) '$ROAM_HOME(/store)?': Read-only file system \(make it writable"
        fails_with "$w" roam image import other a.raw
        fails_with "$w" roam store gc
        fails_with "$w" roam bundle apply "$T/b.bundle"
        fails_with "$w" roam image rm base
        fails_with "$w" roam token create --role admin
        fails_with "$w" roam serve --listen "127.0.0.1:$(free_port)"
        fsck_ok
fi
log "ok"
