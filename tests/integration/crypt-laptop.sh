#!/usr/bin/env bash
# Encryption at rest on the laptop: a stolen disk image of a laptop (its
# ROAM_HOME, daemon stopped) yields no plaintext of the guest's disk or RAM.
# The marker is the guest's boot id: the workload prints it on the console
# and appends it to /data/ticks with every tick, so it is in the guest's RAM
# and on its disk. A plain laptop (laptop init --no-encryption) takes the
# session offline and the marker is found in its home (the test can fail);
# the session comes back online; then an encrypted laptop (the default)
# takes it offline, takes a local checkpoint and stops it: after each step,
# with its daemon stopped, nothing in its home holds the marker, not even in
# a chunk's decompressed bytes, and its QEMU names no file outside its home
# and its RAM directory on tmpfs. Locked, the laptop refuses to start the
# session and says to run 'roam unlock'; unlocked, the session boots from the
# disk it put into the store and its counter continues.
. "$(dirname "$0")/../lib.sh"
requires qemu-system-x86_64
requires curl
requires zstd
requires python3
export ROAM_ACCEL=tcg

need_guest

S=$T/server LP=$T/plain LE=$T/crypt
FIND="$SRC_DIR/tests/tools/find-marker.py"
on() { local h=$1; shift; ROAM_HOME=$h "$ROAM_BIN" "$@"; }
state() { on "$1" session list 2>/dev/null | awk '$1 == "s1" { print $4 }'; }
last_tick() { on "$1" session log s1 | grep -E '^tick [0-9]+$' | tail -n 1 | awk '{ print $2 }'; }
tick_above() { [ "$(last_tick "$1")" -gt "$2" ] 2>/dev/null; }
SP=$(free_port) PP=$(free_port) EP=$(free_port)

on "$S" image import deb "$GUEST/master.img" >/dev/null 2>&1
ALICE=$(on "$S" token create --role user --user alice)
on "$S" session create s1 --image deb --user alice --ram 256M --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" >/dev/null
on "$S" session start s1 >/dev/null
start_daemon "$S" "127.0.0.1:$SP"
wait_for 90 tick_above "$S" 3 || fail "no ticks on the server"
MARKER=$(on "$S" session log s1 | sed -n 's/^roam-guest: boot_id=\([0-9a-f-]\{36\}\).*/\1/p' | head -n 1)
[ -n "$MARKER" ] || fail "no boot id on the console"
log "marker (the guest's boot id): $MARKER"

# start_laptop HOME PORT: the laptop daemon, its log outside the home
start_laptop() {
        mkdir -p "$1"
        ROAM_HOME=$1 "$ROAM_BIN" serve --role laptop --listen "127.0.0.1:$2" --server "http://127.0.0.1:$SP" \
                --token "$ALICE" --name "$(basename "$1")" --precopy-interval 2 >>"$T/$(basename "$1").log" 2>&1 &
        LT_PID=$!
        cleanup_add "kill $LT_PID 2>/dev/null"
        wait_for 20 curl -s -o /dev/null "http://127.0.0.1:$2/v1/info" || { cat "$T/$(basename "$1").log" >&2; fail "laptop daemon did not start"; }
}
stop_laptop() { kill "$LT_PID"; wait "$LT_PID" 2>/dev/null || true; }
# no_plaintext HOME WHEN: the home, daemon stopped, holds no marker
no_plaintext() {
        local hits
        stop_laptop
        if hits=$("$FIND" "$MARKER" "$1"); then
                fail "after $2, the encrypted laptop's home holds the guest's plaintext: $hits"
        fi
        log "after $2: no plaintext in $(find "$1" -type f | wc -l) files of the laptop's home"
}
# qemu_files_ok HOME: every path on the laptop QEMU's command line is under HOME or /dev/shm
# (a disk given as an open file it inherited, /proc/self/fd/N, is the file that fd is)
qemu_files_ok() {
        local pid bad
        pid=$(cat "$1/sessions/s1/qemu.pid")
        bad=$(tr '\0' '\n' <"/proc/$pid/cmdline" | tail -n +2 | grep -oE '(^|[=,:])/[^,]+' | sed 's/^[=,:]//' |
                while read -r f; do
                        case $f in /proc/self/fd/*) readlink "/proc/$pid/fd/${f#/proc/self/fd/}" || echo "$f" ;; *) echo "$f" ;; esac
                done | grep -vE "^($1/|/dev/shm/)" | grep -v '^/dev/null$' || true)
        [ -z "$bad" ] || fail "the laptop's QEMU writes outside its home and tmpfs: $bad"
}

log "a plain laptop: the marker is on its disk (the check can fail)"
must_succeed on "$LP" laptop init --no-encryption
expect_match "$OUT" "encryption: off"
start_laptop "$LP" "$PP"
wait_for 120 bash -c "ROAM_HOME=$LP $ROAM_BIN status --json | grep -q '\"precopy_at\": [1-9]'" || fail "no pre-copy on the plain laptop"
must_succeed on "$LP" offline s1
must_succeed on "$LP" session checkpoint s1
stop_laptop
hits=$("$FIND" "$MARKER" "$LP") || fail "the marker is not found on a plain laptop: the check would prove nothing"
log "plain laptop: the marker is in $(wc -l <<<"$hits") files, e.g. $(head -n 1 <<<"$hits")"
start_laptop "$LP" "$PP"
must_succeed on "$LP" online s1
[ "$(state "$S")" = running ] || fail "s1 did not come back to the server: $(state "$S")"
stop_laptop

log "an encrypted laptop (the default)"
start_laptop "$LE" "$EP"
[ -f "$LE/keys/home.key" ] || fail "the laptop daemon's first start made no home key"
wait_for 120 bash -c "[ -f $LE/keys/data.key ]" || fail "the laptop got no data key at pairing"
grep -q "got the user's data key" "$T/crypt.log" || fail "the data key did not come from the server"
wait_for 120 bash -c "ROAM_HOME=$LE $ROAM_BIN status --json | grep -q '\"precopy_at\": [1-9]'" || fail "no pre-copy on the encrypted laptop"
grep -q "^encryption aes-256-gcm$" "$LE/store/config" || fail "the laptop's store is not encrypted"
before=$(last_tick "$S")
must_succeed on "$LE" offline s1
[ "$(state "$LE")" = running ] || fail "s1 does not run on the encrypted laptop"
wait_for 60 tick_above "$LE" "$before" || fail "the counter does not continue on the encrypted laptop"
qemu_files_ok "$LE"
no_plaintext "$LE" "take offline"
start_laptop "$LE" "$EP"
must_succeed on "$LE" session checkpoint s1
qemu_files_ok "$LE"
no_plaintext "$LE" "a local checkpoint"
start_laptop "$LE" "$EP"
tick=$(last_tick "$LE")
must_succeed on "$LE" session stop s1
no_plaintext "$LE" "a stop"

log "locked: refused with the command to run"
must_succeed on "$LE" lock
must_fail env -u ROAM_PASSPHRASE_FILE ROAM_HOME="$LE" "$ROAM_BIN" session start s1
expect_one_line "$ERR"
expect_match "$ERR" "locked \\(run 'roam unlock'\\)"
must_fail env -u ROAM_PASSPHRASE_FILE ROAM_HOME="$LE" "$ROAM_BIN" image list
expect_match "$ERR" "roam unlock"
printf 'not the passphrase\n' >"$T/wrong"
must_fail on "$LE" unlock --passphrase-file "$T/wrong"
expect_match "$ERR" "wrong passphrase"
must_succeed env -u ROAM_PASSPHRASE_FILE ROAM_HOME="$LE" "$ROAM_BIN" unlock --passphrase-file "$T/passphrase"
must_succeed on "$LE" session start s1
wait_for 90 tick_above "$LE" "$tick" || fail "the counter does not continue from the disk put into the store"
must_succeed on "$LE" store fsck
log ok
