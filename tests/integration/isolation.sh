#!/usr/bin/env bash
# Isolation: a user never lists, reads, opens the desktop of, moves or
# reclaims another user's session or refs, through any HTTP route (each
# tried with the admin, host, alice and bob tokens: tests/tools/isolation.py
# prints the table that docs/reliability.md shows) or the CLI, and crafted
# names ('..', encoded slashes, NUL, very long, unicode, control bytes) reach
# nothing.
. "$(dirname "$0")/../lib.sh"
requires python3
requires qemu-system-x86_64
export ROAM_ACCEL=tcg
need_guest
export ROAM_HOME=$T/dc
roam image import deb "$GUEST/master.img" >/dev/null 2>&1
common=(--image deb --ram 256M --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img")
roam session create a1 --user alice "${common[@]}" >/dev/null
roam session create b1 --user bob "${common[@]}" >/dev/null
roam session start a1 >/dev/null
ADMIN=$(roam token create --role admin) HOST=$(roam token create --role host)
ALICE=$(roam token create --role user --user alice) BOB=$(roam token create --role user --user bob)
PORT=$(free_port)
start_daemon "$ROAM_HOME" "127.0.0.1:$PORT" --max-failed-logins 0
REF_ID=$(sed -n 's/^roam-ref 1 //p' "$ROAM_HOME/store/refs/sessions/alice/a1/base")
[ -n "$REF_ID" ] || fail "no base ref of a1"
python3 "$SRC_DIR/tests/tools/isolation.py" "http://127.0.0.1:$PORT" "$ADMIN" "$HOST" "$ALICE" "$BOB" a1 "$REF_ID" \
        >"$T/matrix.md" || { cat "$T/matrix.md" >&2; fail "isolation leaks"; }
cat "$T/matrix.md" >&2
# the session is untouched by all of bob's tries
[ "$(roam session list | awk '$1 == "a1" { print $4 }')" = running ] || fail "a1 does not run any more"
[ -f "$ROAM_HOME/store/refs/sessions/alice/a1/base" ] || fail "alice's ref is gone"
roam store fsck >/dev/null || fail "the store is inconsistent"
log ok
