# Shared helpers for roam's shell integration tests. Source it first:
#   . "$(dirname "$0")/../lib.sh"
# Exit codes: 0 pass, 77 skip, anything else fail.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC_DIR/build}
ROAM_BIN=${ROAM_BIN:-$BUILD_DIR/roam}
TEST_NAME=$(basename "$0" .sh)
# every test gets its own scratch directory and ROAM_HOME
T=$(mktemp -d "${TMPDIR:-/tmp}/roam-test-$TEST_NAME.XXXXXX")
export ROAM_HOME=$T/home
export ROAM_PROGRESS=0
# 'roam serve' serves HTTPS by default (docs/sync-protocol.md, "TLS and
# pinning"); tests serve plain HTTP unless they 'use_tls' (then their
# daemons make their certificates and the clients pin them)
export ROAM_INSECURE_HTTP=${ROAM_INSECURE_HTTP-1}
use_tls() { unset ROAM_INSECURE_HTTP; }
# daemon_scheme: http or https, as the next daemon will serve
daemon_scheme() { if [ -n "${ROAM_INSECURE_HTTP:-}" ]; then echo http; else echo https; fi; }
# laptops are encrypted by default (docs/store-format.md): every laptop home a
# test makes gets this passphrase, and its commands unlock with it
printf 'roam test passphrase\n' >"$T/passphrase"
export ROAM_PASSPHRASE_FILE=$T/passphrase

_cleanups=()
# cleanup_add CMD...: run CMD at exit (last added runs first)
cleanup_add() { _cleanups+=("$*"); }
_run_cleanups() {
        local rc=$?
        local i
        for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
                eval "${_cleanups[$i]}" >/dev/null 2>&1 || true
        done
        _reap_homes
        if [ "${KEEP_TEST_DIR:-0}" != 1 ]; then rm -rf "$T"; fi
        exit $rc
}
# Every ROAM_HOME below $T: its QEMUs die (a pid is trusted only while its
# command line names the pid file) and its RAM directory in /dev/shm goes
# (session.c: /dev/shm/roam-<first 12 hex of SHA-256 of the home's path>).
_reap_homes() {
        local db home p pid w
        for db in "$T"/catalog.db "$T"/*/catalog.db "$T"/*/*/catalog.db "$T"/*/*/*/catalog.db; do
                [ -f "$db" ] || continue
                home=$(cd "$(dirname "$db")" && pwd -P)
                for p in "$home"/sessions/*/qemu.pid "$home"/warm/*/qemu.pid; do
                        [ -f "$p" ] || continue
                        pid=$(cat "$p" 2>/dev/null) || continue
                        # (a QEMU a restore took from warm/NAME names that pid file)
                        w=$home/warm/$(basename "$(dirname "$p")")/qemu.pid
                        if [[ $pid =~ ^[0-9]+$ ]] && grep -qaF -e "$p" -e "$w" "/proc/$pid/cmdline" 2>/dev/null; then
                                kill -9 "$pid" 2>/dev/null || true
                        fi
                done
                rm -rf "/dev/shm/roam-$(printf '%s' "$home" | sha256sum | cut -c1-12)"
        done
        # whatever QEMU still names a file of this test outlived its roam: a
        # leak, said in the log and ended
        for p in /proc/[0-9]*/cmdline; do
                pid=${p#/proc/}
                pid=${pid%/cmdline}
                if grep -qa 'qemu-system' "$p" 2>/dev/null && grep -qaF -- "$T/" "$p" 2>/dev/null; then
                        printf '# LEAK: QEMU %s of this test outlived its roam: %s\n' "$pid" \
                                "$(tr '\0' ' ' <"$p" 2>/dev/null | cut -c1-300)" >&2
                        kill -9 "$pid" 2>/dev/null || true
                fi
        done
}
trap _run_cleanups EXIT

log() { printf '# %s\n' "$*" >&2; }
skip() { printf 'SKIP: %s\n' "$*" >&2; exit 77; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

requires() { command -v "$1" >/dev/null 2>&1 || skip "needs $1"; }
requires_root() { [ "$(id -u)" = 0 ] || skip "needs root"; }

roam() { ${ROAM_WRAPPER:-} "$ROAM_BIN" "$@"; }

# must_fail CMD...: CMD must exit non-zero (not by a signal); its stderr lands in $ERR.
must_fail() {
        local rc=0
        ERR=$("$@" 2>&1 >/dev/null) || rc=$?
        if [ $rc = 0 ]; then fail "expected failure: $*"; fi
        if [ $rc -ge 128 ]; then fail "crashed (rc=$rc): $* -- $ERR"; fi
        log "failed as expected ($rc): $ERR"
}
# must_succeed CMD...: stdout lands in $OUT.
must_succeed() {
        local rc=0
        OUT=$("$@") || rc=$?
        [ $rc = 0 ] || fail "command failed ($rc): $*"
}
# expect_match STRING REGEX [what]
expect_match() {
        # a here-string, not a pipe: grep -q may exit before printf is done
        # writing, and pipefail would then see printf's SIGPIPE
        grep -Eq -- "$2" <<<"$1" || fail "${3:-output} does not match /$2/: $1"
}
# ext4_file IMAGE PATH: the file PATH inside the ext4 disk IMAGE (empty if
# missing). Test it from a variable, not through `| grep -q`: grep exits at
# the first match while debugfs may still be writing (one write a block), and
# pipefail would then fail the check on debugfs's SIGPIPE.
ext4_file() { debugfs -R "cat $2" "$1" 2>/dev/null || true; }
# file_holds FILE TEXT: whether FILE (a disk image: GBs, mostly zeros) holds
# TEXT. Not grep: a binary "line" runs to the next newline, and grep keeps
# all of it in memory (4 GiB for a 2 GiB sparse image, about a minute, or
# "memory exhausted" on a busy machine).
file_holds() {
	python3 - "$1" "$2" <<'PY'
import mmap, sys
with open(sys.argv[1], "rb") as f:
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        sys.exit(0 if m.find(sys.argv[2].encode()) >= 0 else 1)
PY
}

# expect_one_line STRING: an error message is one line
expect_one_line() {
        [ "$(printf '%s\n' "$1" | wc -l)" = 1 ] || fail "expected one line, got: $1"
}
# wait_for TIMEOUT_S CMD...: poll until CMD succeeds
wait_for() {
        local t=$1; shift
        local end=$((SECONDS + t))
        until "$@" >/dev/null 2>&1; do
                [ $SECONDS -lt $end ] || return 1
                sleep 0.2
        done
}
# make_image FILE SIZE_MIB SEED: a deterministic sparse-ish test image
make_image() {
        python3 - "$1" "$2" "$3" <<'PY'
import random, sys
path, mib, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
with open(path, "wb") as f:
    f.truncate(mib << 20)
    for i in range(0, mib << 4):          # 64 KiB blocks
        k = rnd.random()
        if k < 0.35:
            continue                      # hole
        f.seek(i << 16)
        if k < 0.7:
            f.write(rnd.randbytes(65536))
        elif k < 0.85:
            f.write((b"roam test block %d " % (i % 7)) * 3000)
        else:
            f.write(bytes([rnd.randrange(4)]) * 65536)
PY
}
# free_port: prints a TCP port that is free on 127.0.0.1 right now
free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# _daemon_answers HOME: the daemon $DAEMON_PID wrote HOME/serve.json and answers at its URL
_daemon_answers() {
        local url
        url=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["pid"]==int(sys.argv[2]) else 1); ' \
                "$1/serve.json" "$DAEMON_PID" 2>/dev/null && python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$1/serve.json") || return 1
        curl -sk -o /dev/null "$url/v1/info"
}
# start_daemon HOME LISTEN [ARGS...]: starts 'roam serve' with ROAM_HOME=HOME
# in the background, waits until it answers, sets DAEMON_PID; stopped at exit.
start_daemon() {
        local home=$1 listen=$2; shift 2
        mkdir -p "$home"
        ROAM_HOME=$home "$ROAM_BIN" serve --listen "$listen" "$@" >>"$home/serve.log" 2>&1 &
        DAEMON_PID=$!
        cleanup_add "kill $DAEMON_PID 2>/dev/null; wait $DAEMON_PID 2>/dev/null"
        wait_for 20 _daemon_answers "$home" || { cat "$home/serve.log" >&2; fail "daemon on $listen did not start"; }
}
# build_artefact SCRIPT DIR WHAT: a cached guest build (exit 3 = cannot fetch: skip)
build_artefact() {
        local rc=0 log=$T/$(basename "$1" .sh).log
        bash "$SRC_DIR/scripts/$1" "$2" >"$log" 2>&1 || rc=$?
        case $rc in
        0) ;;
        3) skip "$3 cannot be built here (no package archive and no cache)" ;;
        *) fail "scripts/$1 failed ($rc): $(tail -n 5 "$log")" ;;
        esac
}
# need_desktop: the desktop guest in $DESKTOP (scripts/build-desktop.sh,
# cached by the hash of its inputs; from scratch a few minutes)
need_desktop() {
        DESKTOP=$BUILD_DIR/desktop
        build_artefact build-desktop.sh "$DESKTOP" "the desktop guest"
}
# need_guest: builds the test guest into $BUILD_DIR/guest (cached: instant
# when nothing changed) and sets GUEST; skips when it cannot be built here
need_guest() {
        GUEST=$BUILD_DIR/guest
        build_artefact build-guest.sh "$GUEST" "the test guest"
}
