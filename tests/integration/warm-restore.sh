#!/usr/bin/env bash
# Warm restores: the receiving QEMU is started before the click. A session runs
# on a server; the laptop daemon pre-copies and stages its RAM, and starts its
# QEMU, which waits (-incoming defer: the guest does not run there; the server
# keeps running it). Take offline restores into that very QEMU (same pid), the
# counter and the boot id continue. Take online: the server starts a waiting
# QEMU when the laptop stages there, and restores into it. Waiting QEMUs end
# when their session stops on the server, and when the daemon stops. With
# --no-warm-restore nothing waits and the hand-over still works. The laptop
# is encrypted (the default: its waiting QEMU's disks are on tmpfs). After all of
# it the guest's /data/ticks has no gap and no repeat. The session has a
# profile disk: the waiting QEMU has it too, and it moves with the session.
. "$(dirname "$0")/../lib.sh"
requires qemu-system-x86_64
requires qemu-img
requires debugfs
requires curl
requires python3
requires jq
export ROAM_ACCEL=tcg

need_guest

S=$T/server L=$T/laptop
on() { local h=$1; shift; ROAM_HOME=$h "$ROAM_BIN" "$@"; }
state_on() { on "$1" session list 2>/dev/null | awk '$1 == "s1" { print $4 }'; }
is_state() { [ "$(state_on "$1")" = "$2" ]; }
ticks_on() { on "$1" session log s1 | grep -E '^tick [0-9]+$' | awk '{ print $2 }'; }
tick_above() { [ "$(ticks_on "$1" | tail -n 1)" -gt "$2" ] 2>/dev/null; }
# the pid of HOME's waiting QEMU for s1, if it runs
warm_pid() {
        local p
        p=$(cat "$1/warm/s1/qemu.pid" 2>/dev/null) || return 1
        [ -n "$p" ] && kill -0 "$p" 2>/dev/null && grep -qaF -- "$1/warm/s1/qemu.pid" "/proc/$p/cmdline" &&
                echo "$p"
}
has_warm() { warm_pid "$1" >/dev/null; }
# PID ended (a zombie not yet reaped by init counts)
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
no_warm() { ! has_warm "$1" && [ ! -e "$1/warm/s1" ]; }
# QEMU's run state over QMP (SOCKET)
qmp_status() {
        python3 - "$1" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for cmd in ("qmp_capabilities", "query-status"):
    f.write(json.dumps({"execute": cmd}) + "\n")
    f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            break
print(r["return"]["status"])
EOF
}

PS=$(free_port) PL=$(free_port)
start_daemon "$S" "127.0.0.1:$PS" -v # every request in its log
ALICE=$(on "$S" token create --role user --user alice)
# with a profile disk (docs/desktop.md): the waiting QEMU gets it too
on "$S" image import deb "$GUEST/master.img" --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" \
        --append "console=ttyS0 quiet panic=-1" --profile >/dev/null
on "$S" session create s1 --image deb --user alice --ram 256M >/dev/null
on "$S" session start s1 >/dev/null
wait_for 90 tick_above "$S" 3 || fail "no ticks on the server"
boot=$(on "$S" session log s1 | sed -n 's/^roam-guest: boot_id=//p' | head -n 1)

start_laptop() {
        start_daemon "$L" "127.0.0.1:$PL" --role laptop --server "http://127.0.0.1:$PS" --token "$ALICE" \
                --name lt1 --precopy-interval 1 "$@"
        LT_PID=$DAEMON_PID
}
start_laptop

log "the laptop starts a waiting QEMU; the guest runs only on the server"
wait_for 90 has_warm "$L" || fail "no waiting QEMU on the laptop: $(tail -n 5 "$L/serve.log")"
pid=$(warm_pid "$L")
[ "$(qmp_status "$L/warm/s1/qmp.sock")" = inmigrate ] || fail "the waiting QEMU is not waiting for its state"
is_state "$S" running || fail "the server has s1 '$(state_on "$S")'"
[ -z "$(state_on "$L")" ] || fail "the laptop lists s1 as '$(state_on "$L")' before take offline"
on "$L" session start s1 2>/dev/null && fail "the laptop started a session it does not own"

log "take offline: into the waiting QEMU"
before=$(ticks_on "$S" | tail -n 1)
packs=$(grep -c 'POST /v1/pack/get' "$S/serve.log" || true)
must_succeed on "$L" offline s1
log "$OUT"
expect_match "$OUT" "QEMU waiting" "take offline's output"
# the remainder came in the grant's answer: no pull after it
expect_match "$OUT" "sent after the click with the grant" "take offline's output"
grep -q 'POST /v1/sessions/s1/offline 200' "$S/serve.log" || fail "the server's log has no take offline"
[ "$(grep -c 'POST /v1/pack/get' "$S/serve.log")" = "$packs" ] || fail "the take offline pulled a pack after its grant"
is_state "$L" running || fail "s1 is '$(state_on "$L")' on the laptop"
[ "$(cat "$L/sessions/s1/qemu.pid")" = "$pid" ] || fail "s1 runs in another QEMU than the one that waited ($pid)"
[ "$(qmp_status "$L/sessions/s1/qmp.sock")" = running ] || fail "the guest does not run on the laptop"
[ ! -e "$L/warm/s1" ] || fail "the waiting QEMU's directory is left"
[ "$(on "$L" session show --json s1 | jq -r .profile)" = true ] || fail "the laptop's s1 holds no profile"
wait_for 60 tick_above "$L" "$before" || fail "the counter does not continue on the laptop"
grep -q '^roam-guest: boot_id=' <<<"$(on "$L" session log s1)" && fail "the guest booted on the laptop"
# the laptop's console log holds its ticks (the waiting QEMU's log was moved in)
[ -n "$(ticks_on "$L")" ] || fail "no ticks in the laptop's console log"

log "take online: the server's QEMU waits for it too"
sleep 2
before=$(ticks_on "$L" | tail -n 1)
must_succeed on "$L" online s1
log "$OUT"
expect_match "$OUT" "RAM staged ahead, QEMU waiting" "take online's output"
is_state "$S" running || fail "s1 is '$(state_on "$S")' on the server after take online"
wait_for 60 tick_above "$S" "$before" || fail "the counter does not continue on the server"
no_warm "$S" || fail "the server kept a waiting QEMU"
boot_now=$(on "$S" session log s1 | sed -n 's/^roam-guest: boot_id=//p' | tail -n 1)
[ "$boot_now" = "$boot" ] || fail "the guest rebooted ($boot -> $boot_now)"

log "waiting QEMUs end with their session, and with the daemon"
wait_for 90 has_warm "$L" || fail "no waiting QEMU on the laptop after take online"
pid=$(warm_pid "$L")
on "$S" session stop s1 >/dev/null
wait_for 60 no_warm "$L" || fail "the waiting QEMU outlived its session on the server"
gone "$pid" || fail "QEMU $pid still runs"
on "$S" session start s1 >/dev/null
wait_for 90 has_warm "$L" || fail "no waiting QEMU after the session started again"
pid=$(warm_pid "$L")
kill "$LT_PID"; wait "$LT_PID" 2>/dev/null || true
gone "$pid" || fail "the laptop daemon left QEMU $pid behind"

log "--no-warm-restore: nothing waits, the hand-over works"
start_laptop --no-warm-restore
lram=$(on "$L" session show s1 | sed -n 's/^ram: .* in \(.*\)\/s1.ram)$/\1/p')
[ -n "$lram" ] || fail "no RAM directory of s1 on the laptop"
staged() { ls "$lram"/s1.staged.* >/dev/null 2>&1; }
wait_for 90 staged || fail "the laptop staged no RAM"
sleep 2
[ ! -e "$L/warm/s1" ] || fail "a waiting QEMU with --no-warm-restore"
must_succeed on "$L" offline s1
log "$OUT"
grep -q "QEMU waiting" <<<"$OUT" && fail "take offline says a QEMU waited"
is_state "$L" running || fail "s1 is '$(state_on "$L")' on the laptop"
# back to the server (whose QEMU waits again), and a clean power-off there
# (the laptop's disk is encrypted: the server's holds the plain overlay)
sleep 2
must_succeed on "$L" online s1
is_state "$S" running || fail "s1 is '$(state_on "$S")' on the server after the last take online"
must_succeed on "$S" session stop s1

log "the disk: /data/ticks is gap-free across the warm restores"
qemu-img convert -O raw "$S/sessions/s1/overlay.qcow2" "$T/disk.raw"
debugfs -R 'cat /data/ticks' "$T/disk.raw" 2>/dev/null >"$T/ticks"
# two boots: the first across both warm hand-overs, the second since the
# start on the server (the guest counts on from the file)
awk '!/^tick [0-9]+ boot=/ { exit 1 } $2 != NR { exit 1 }' "$T/ticks" ||
        fail "/data/ticks has a gap or a repeat: $(head -c 600 "$T/ticks")"
[ "$(awk '{ print $3 }' "$T/ticks" | sort -u | wc -l)" = 2 ] || fail "/data/ticks does not span two boots"
on "$S" store fsck >/dev/null || fail "the server's store is inconsistent"
on "$L" store fsck >/dev/null || fail "the laptop's store is inconsistent"
log "ok"
