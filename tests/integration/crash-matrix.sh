#!/usr/bin/env bash
# The crash and fault matrix (docs/reliability.md): one server and one laptop
# daemon, each in a network namespace, one session (the test guest, ticking),
# and every failpoint of src/ (src/basic/failpoint.h) in turn:
#
#  * kill -9 of the process at the point (the server's or the laptop's
#    daemon, or the 'roam' command that runs the step), a restart, and then:
#    exactly one home owns the session and runs it (one QEMU), no hand-over
#    left in doubt, its counter continues past where it was before the step
#    without a reboot (or, where the design says so, it is back at its last
#    checkpoint), and 'roam store fsck' passes on both homes;
#  * store writes that fail (ENOSPC, EIO: failpoints of kind enospc/eio, and
#    a real full tmpfs): the step fails with a message, the session still has
#    exactly one owner, fsck passes;
#  * the link cut at each step of take offline and take online (the process
#    stops itself at the step, the link goes down, it goes on);
#  * a server whose answers arrive truncated or reordered (tests/tools/
#    fault-relay.py between laptop and server): the client fails cleanly and
#    stores no wrong byte.
#
# Prints a table: point, fault, outcome. CRASH_MATRIX_ONLY=REGEX runs the
# rows whose point matches (the setup always runs).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../netns.sh"
requires qemu-system-x86_64
requires qemu-img
requires curl
requires debugfs
requires python3
requires_root
export ROAM_ACCEL=tcg

need_guest
wan_setup 1000 0
export DC_HOME=$T/dc LT_HOME=$T/laptop
S=$DC_HOME L=$LT_HOME
SP=7450 LP=7451 RP=7460   # ports inside the namespaces: nobody else's
SERVER=http://127.0.0.1:$RP   # the server as the laptop sees it: through the fault relay
INSECURE=
if grep -q -- --insecure-http <<<"$("$ROAM_BIN" serve --help 2>&1)"; then INSECURE=--insecure-http; fi
ONLY=${CRASH_MATRIX_ONLY:-}
# 'make check' runs every failpoint with kill -9 and some of the other
# faults; CRASH_MATRIX_FULL=1 every fault row (docs/reliability.md's table)
FULL=${CRASH_MATRIX_FULL:-0}
full() { [ "$FULL" = 1 ]; }
TABLE=$T/table
: >"$TABLE"
print_table() {
        printf '\n| point | fault | outcome |\n|---|---|---|\n'
        cat "$TABLE"
}

# ---- the two daemons and the relay ----
SPID= LPID= RELAY_PID=
# PID NS-RUNNER URL HOME: the daemon answers and has written its serve.json
# (what 'roam' commands read), or it died already (at its failpoint)
up_or_gone() {
        ! kill -0 "$1" 2>/dev/null ||
                { "$2" curl -s -o /dev/null "$3" && grep -q "\"pid\": $1," "$4/serve.json" 2>/dev/null; }
}
server_up() { # [FAILPOINT]
        ROAM_FAILPOINT=${1:-} ROAM_HOME=$S ip netns exec "$DC_NS" "$ROAM_BIN" serve --listen "$DC_IP:$SP" \
                $INSECURE --offline-days 1 >>"$T/server.log" 2>&1 &
        SPID=$!
        wait_for 20 up_or_gone "$SPID" in_dc "http://$DC_IP:$SP/v1/info" "$S" || fail "the server daemon did not start"
}
laptop_up() { # [FAILPOINT]
        ROAM_FAILPOINT=${1:-} ROAM_HOME=$L ip netns exec "$LT_NS" "$ROAM_BIN" serve --role laptop \
                --listen "127.0.0.1:$LP" $INSECURE --server "$SERVER" --token "$ALICE" --name lt \
                --precopy-interval 3 >>"$T/laptop.log" 2>&1 &
        LPID=$!
        wait_for 20 up_or_gone "$LPID" in_laptop "http://127.0.0.1:$LP/v1/info" "$L" || fail "the laptop daemon did not start"
}
relay_up() {
        ip netns exec "$LT_NS" python3 "$SRC_DIR/tests/tools/fault-relay.py" "$RP" "$DC_IP" "$SP" >"$T/relay.out" 2>&1 &
        RELAY_PID=$!
        cleanup_add "kill $RELAY_PID 2>/dev/null"
        wait_for 10 grep -q ready "$T/relay.out" || fail "the fault relay did not start"
}
relay() { in_laptop curl -sf "http://127.0.0.1:$RP/__relay/$1"; }
relay_faulted_above() { [ "$(relay stats | awk '{ print $2 }')" -gt "$1" ]; }
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
server_down() { stop_pid "$SPID"; }
laptop_down() { stop_pid "$LPID"; }
restart() { # server|laptop [FAILPOINT]
        if [ "$1" = server ]; then server_down; server_up "${2:-}"; else laptop_down; laptop_up "${2:-}"; fi
}
pid_of() { if [ "$1" = server ]; then echo "$SPID"; else echo "$LPID"; fi; }
log_of() { if [ "$1" = server ]; then echo "$T/server.log"; else echo "$T/laptop.log"; fi; }

# ---- what each home says ----
home_of() { if [ "$1" = server ]; then echo "$S"; else echo "$L"; fi; }
state() { ROAM_HOME=$1 "$ROAM_BIN" session list 2>/dev/null | awk '$1 == "s1" { print $4 }'; }
owner_local() { ROAM_HOME=$1 "$ROAM_BIN" session show s1 2>/dev/null | grep -Eq '^owner: +local'; }
marker() { [ -e "$1/sessions/s1/handover" ]; }
qemu_runs() { # HOME: its QEMU of s1 is alive
        local p=$1/sessions/s1/qemu.pid pid
        pid=$(cat "$p" 2>/dev/null) || return 1
        # (a QEMU started to wait for a restore named warm/s1's pid file)
        [[ $pid =~ ^[0-9]+$ ]] && grep -qaF -e "$p" -e "$1/warm/s1/qemu.pid" "/proc/$pid/cmdline" 2>/dev/null
}
# the guest's console log: an encrypted laptop home keeps it on tmpfs
# ('console:' of session show)
serial_path() {
        local p
        p=$(ROAM_HOME=$1 "$ROAM_BIN" session show s1 2>/dev/null | awk '$1 == "console:" { print $2 }')
        echo "${p:-$1/sessions/s1/serial.log}"
}
serial() { { tr -d '\r' <"$(serial_path "$1")"; } 2>/dev/null || true; }
last_tick() { serial "$1" | grep -aE '^tick [0-9]+$' | tail -n 1 | awk '{ print $2 }'; }
boots() { { serial "$S"; serial "$L"; } | grep -ac '^roam-guest: boot_id=' || true; }
lines() { serial "$1" | wc -l; }
owners() { # the homes that call themselves owner
        local o=
        owner_local "$S" && o="server"
        owner_local "$L" && o="$o${o:+ }laptop"
        echo "$o"
}
# one owner, running it (one QEMU), the other not, no marker anywhere
settled_running() {
        local o; o=$(owners)
        [ "$o" = server ] || [ "$o" = laptop ] || return 1
        local h; h=$(home_of "$o")
        local other; other=$(home_of "$([ "$o" = server ] && echo laptop || echo server)")
        [ "$(state "$h")" = running ] && qemu_runs "$h" && ! qemu_runs "$other" && ! marker "$S" && ! marker "$L"
}
settled_stopped() {
        local o; o=$(owners)
        [ "$o" = server ] || [ "$o" = laptop ] || return 1
        [ "$(state "$(home_of "$o")")" = stopped ] && ! qemu_runs "$S" && ! qemu_runs "$L" && ! marker "$S" &&
                ! marker "$L"
}
where() { # the owner that runs it
        owners
}
fsck_both() { # both at once
        ROAM_HOME=$S "$ROAM_BIN" store fsck >"$T/fsck.s" 2>&1 &
        local a=$! rc=0
        ROAM_HOME=$L "$ROAM_BIN" store fsck >"$T/fsck.l" 2>&1 || rc=1
        wait "$a" || rc=1
        [ $rc = 0 ] || cat "$T/fsck.s" "$T/fsck.l" >&2
        return $rc
}
dump() {
        log "server: state '$(state "$S")', owner local: $(owner_local "$S" && echo yes || echo no), qemu: $(qemu_runs "$S" && echo yes || echo no), marker: $(cat "$S/sessions/s1/handover" 2>/dev/null)"
        log "laptop: state '$(state "$L")', owner local: $(owner_local "$L" && echo yes || echo no), qemu: $(qemu_runs "$L" && echo yes || echo no), marker: $(cat "$L/sessions/s1/handover" 2>/dev/null)"
        tail -n 12 "$T/server.log" | sed 's/^/  server| /' >&2
        tail -n 12 "$T/laptop.log" | sed 's/^/  laptop| /' >&2
}
row() { # POINT FAULT OUTCOME
        printf '| `%s` | %s | %s |\n' "$1" "$2" "$3" >>"$TABLE"
        log "ROW $1 | $2 | $3"
}
bad() { # POINT FAULT WHAT
        row "$1" "$2" "**FAILED**: $3"
        dump
        print_table >&2
        fail "$1 ($2): $3"
}

# ---- moving the session where a row needs it (clean hand-overs) ----
l_cmd() { ROAM_HOME=$L in_laptop "$ROAM_BIN" "$@"; }
s_cmd() { ROAM_HOME=$S in_dc "$ROAM_BIN" "$@"; }
tick_above() { local t; t=$(last_tick "$1"); [ "${t:-0}" -gt "$2" ]; }
ticking() { # HOME: a new tick (a boot under TCG on a busy machine: minutes)
        local t; t=$(last_tick "$1")
        wait_for 120 tick_above "$1" "${t:-0}"
}
settled_any() { settled_running || settled_stopped; }
goto() { # server|laptop [running|stopped]
        local want=$1 run=${2:-running} o
        wait_for 90 settled_any ||
                { dump; fail "goto $want: the session did not settle"; }
        o=$(owners)
        if [ "$(state "$(home_of "$o")")" = stopped ] && [ "$o" != "$want" ]; then
                # powered off where it should not be: start it there, move it live
                cmd_on "$o" session start s1 >/dev/null || { dump; fail "goto: start on $o failed"; }
                ticking "$(home_of "$o")" || fail "goto: no ticks on $o after the start"
        fi
        if [ "$o" != "$want" ]; then
                if [ "$want" = laptop ]; then
                        wait_for 60 l_cmd offline s1 || { dump; fail "goto laptop: take offline failed"; }
                else
                        wait_for 60 l_cmd online s1 || { dump; fail "goto server: take online failed"; }
                fi
        fi
        local h; h=$(home_of "$want")
        if [ "$run" = running ] && [ "$(state "$h")" = stopped ]; then
                cmd_on "$want" session start s1 >/dev/null || fail "goto: start on $want failed"
        fi
        if [ "$run" = stopped ] && [ "$(state "$h")" != stopped ]; then
                cmd_on "$want" session stop s1 >/dev/null || fail "goto: stop on $want failed"
        fi
        [ "$run" = stopped ] || ticking "$h" || fail "goto $want: no ticks"
}
cmd_on() { local w=$1; shift; if [ "$w" = server ]; then s_cmd "$@"; else l_cmd "$@"; fi; }
wanted() { [ -z "$ONLY" ] || [[ $1 =~ $ONLY ]]; }

# ---- the checks after a row ----
# check POINT FAULT WHAT [back-ok]: settles (running), then the counter and fsck
FLOOR=0 BOOTS=0
before_step() {
        local o; o=$(owners)
        FLOOR=$(last_tick "$(home_of "$o")"); FLOOR=${FLOOR:-0}
        BOOTS=$(boots)
}
new_ticks() { # HOME LINES N: N ticks after line LINES (+1: it may have been cut) of the console
        [ "$(serial "$1" | tail -n +$(($2 + 2)) | grep -acE '^tick [0-9]+$')" -ge "$3" ]
}
check_running() { # POINT FAULT [back-ok]
        local point=$1 fault=$2 back_ok=${3:-}
        wait_for 120 settled_running || bad "$point" "$fault" "not settled: owners '$(owners)', server '$(state "$S")', laptop '$(state "$L")'"
        local o h n first
        o=$(owners); h=$(home_of "$o")
        n=$(lines "$h")
        wait_for 30 new_ticks "$h" "$n" 2 ||
                bad "$point" "$fault" "the guest does not tick on the $o"
        first=$(serial "$h" | tail -n +$((n + 2)) | grep -aE '^tick [0-9]+$' | head -n 1 | awk '{ print $2 }')
        [ "$(boots)" = "$BOOTS" ] || bad "$point" "$fault" "the guest booted again (a lost session)"
        local how="continues"
        if [ "$first" -le "$FLOOR" ]; then
                [ -n "$back_ok" ] || bad "$point" "$fault" "the counter went back from $FLOOR to $first on the $o"
                how="back at its last checkpoint"
        fi
        fsck_both || bad "$point" "$fault" "store fsck failed"
        OUTCOME="runs on the $o only, $how (tick $FLOOR → $first); fsck ok"
}
check_stopped() { # POINT FAULT
        local point=$1 fault=$2
        wait_for 180 settled_stopped || bad "$point" "$fault" "not settled: owners '$(owners)', server '$(state "$S")', laptop '$(state "$L")'"
        fsck_both || bad "$point" "$fault" "store fsck failed"
        OUTCOME="stopped, owned by the $(owners) only; fsck ok"
}
died() { # SIDE POINT: the daemon died at its failpoint
        local pid; pid=$(pid_of "$1")
        wait_for 90 bash -c "! kill -0 $pid 2>/dev/null" || return 1
        wait "$pid" 2>/dev/null || true
        grep -q "failpoint '$2': killing" "$(log_of "$1")"
}

# ---- setup: a session on the server, a paired laptop that pre-copies ----
s_cmd image import deb "$GUEST/master.img" >/dev/null 2>&1
seed=0
for x in extra extra2 extra3; do
        seed=$((seed + 1))
        make_image "$T/$x.img" 4 "$seed"
        s_cmd image import "$x" "$T/$x.img" >/dev/null 2>&1 || fail "import of $x failed"
done
ALICE=$(s_cmd token create --role user --user alice)
s_cmd session create s1 --image deb --user alice --ram 128M --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" >/dev/null
s_cmd session start s1 >/dev/null
server_up
relay_up
laptop_up
wait_for 120 new_ticks "$S" -1 3 || fail "no ticks on the server"
wait_for 120 bash -c "ls '$L/store/refs/sessions/alice/s1/precopy' >/dev/null 2>&1" || { dump; fail "no pre-copy reached the laptop"; }
# one clean round trip first: the laptop knows the session from then on
goto laptop
goto server
# the fault relay re-frames every body with a Content-Length and drops
# trailer fields, as an HTTP intermediary may: the laptop's move-in sent
# while made (its signature in the trailer) is refused as such (400), and
# sent again whole, signed in its header
grep -q "taken online: downtime [0-9]* ms, its remainder sent whole" "$T/laptop.log" ||
	fail "the take online through the relay did not fall back to the remainder sent whole: $(grep "taken online" "$T/laptop.log")"
log "setup done: the session runs on the server, the laptop pre-copies and has had it once"

# ---- kill -9 at a point ----
# kill_row POINT SIDE ACTION [back-ok]: SIDE's daemon dies at POINT during
# ACTION (offline, online, wait: the daemon's own work), restarts, settles.
kill_row() {
        local point=$1 side=$2 action=$3 back_ok=${4:-}
        wanted "$point" || return 0
        local name=${point%@*}
        before_step
        restart "$side" "$point"
        case $action in
        offline) l_cmd offline s1 >>"$T/cli.log" 2>&1 || true ;;
        online) l_cmd online s1 >>"$T/cli.log" 2>&1 || true ;;
        wait) ;;
        esac
        died "$side" "$name" || bad "$point" "kill -9 ($side)" "the $side daemon did not die at the point"
        if [ "$side" = server ]; then server_up; else laptop_up; fi
        if [ "$action" = online-off ]; then :; fi
        check_running "$point" "kill -9 ($side daemon)" "$back_ok"
        row "$point" "kill -9 ($side daemon)" "$OUTCOME"
}

log "== pre-copy"
goto server
kill_row precopy:after-import server wait
kill_row precopy:after-pull laptop wait
kill_row sync-pull:before-ref laptop wait

log "== take offline"
goto server
kill_row checkpoint:paused server offline
goto server
kill_row store:commit server offline
goto server
kill_row checkpoint:after-refs server offline
goto server
kill_row offline-grant:after-checkpoint server offline
goto server
kill_row offline-grant:after-owner server offline
goto server
kill_row offline:after-grant laptop offline
goto server
kill_row offline:after-pull laptop offline
goto server
kill_row move-in:after-owner laptop offline
goto server
kill_row restore:after-launch laptop offline
goto server
kill_row offline:after-restore laptop offline
goto server
kill_row move-in:after-restore laptop offline

log "== take online (live)"
goto laptop
kill_row checkpoint:paused laptop online
goto laptop
kill_row move:after-precopy laptop online
goto laptop
kill_row checkpoint:paused@2 laptop online
goto laptop
kill_row move:after-final-checkpoint laptop online
goto laptop
kill_row move:after-push laptop online
goto laptop
kill_row pack-put:before-ref server online
goto laptop
kill_row move:after-move-in laptop online
goto laptop
kill_row move-in:after-owner server online
goto laptop
kill_row restore:after-launch server online
goto laptop
kill_row move-in:after-restore server online

log "== take online (powered off) and the log-off on the server"
# pw_row POINT SIDE: stopped on the laptop, taken online, SIDE's daemon dies at POINT
pw_row() {
        local point=$1 side=$2
        wanted "$point" || return 0
        goto laptop stopped
        restart "$side" "$point"
        l_cmd online s1 >>"$T/cli.log" 2>&1 || true
        died "$side" "$point" || bad "$point" "kill -9 ($side)" "the $side daemon did not die at the point"
        if [ "$side" = server ]; then server_up; else laptop_up; fi
        check_stopped "$point" "kill -9 ($side daemon)"
        row "$point" "kill -9 ($side daemon)" "$OUTCOME"
}
pw_row online-off:after-push laptop
pw_row online-off:before-finalize laptop
pw_row finalize-in:after-adopt server
pw_row finalize:after-boot server
pw_row finalize-in:after-finalize server
pw_row finalize:before-policy server
pw_row finalize-in:after-checkpoint server
pw_row online-off:after-finalize laptop

log "== hoard, bundle apply, gc"
goto server
if wanted hoard:after-pull; then
        before_step
        restart laptop hoard:after-pull
        l_cmd hoard "$SERVER" extra --token "$ALICE" >>"$T/cli.log" 2>&1 || true
        died laptop hoard:after-pull || bad hoard:after-pull "kill -9 (laptop)" "the laptop daemon did not die at the point"
        laptop_up
        wait_for 60 test -e "$L/store/refs/images/extra" || bad hoard:after-pull "kill -9 (laptop daemon)" "the hoard did not finish after the restart"
        check_running hoard:after-pull "kill -9 (laptop daemon)"
        row hoard:after-pull "kill -9 (laptop daemon)" "the hoard finished after the restart; session: $OUTCOME"
fi
s_cmd bundle create -o "$T/two.bundle" extra2 extra3 >/dev/null 2>&1 || fail "bundle create failed"
for point in bundle-apply:before-refs bundle-apply:between-refs; do
        wanted "$point" || continue
        rc=0
        ROAM_FAILPOINT=$point l_cmd bundle apply "$T/two.bundle" >>"$T/cli.log" 2>&1 || rc=$?
        [ $rc = 137 ] || bad "$point" "kill -9 (roam bundle apply)" "it did not die at the point (exit $rc)"
        refs=$(ls "$L/store/refs/images" | grep -c '^extra[23]$' || true)
        fsck_both || bad "$point" "kill -9 (roam bundle apply)" "store fsck failed"
        l_cmd bundle apply "$T/two.bundle" >>"$T/cli.log" 2>&1 || bad "$point" "kill -9 (roam bundle apply)" "applying it again failed"
        [ "$(ls "$L/store/refs/images" | grep -c '^extra[23]$')" = 2 ] || bad "$point" "kill -9 (roam bundle apply)" "the refs are not there after applying again"
        row "$point" "kill -9 (roam bundle apply)" "$refs of 2 refs set at the crash, each complete; fsck ok; applied again: both"
        l_cmd image rm extra2 >/dev/null 2>&1; l_cmd image rm extra3 >/dev/null 2>&1
done
if wanted gc:after-chunks; then
        before_step
        s_cmd image rm extra2 >/dev/null 2>&1 || fail "image rm failed"
        restart server gc:after-chunks
        s_cmd store gc --grace 0 >>"$T/cli.log" 2>&1 || true
        died server gc:after-chunks || bad gc:after-chunks "kill -9 (server)" "the server daemon did not die at the point"
        server_up
        s_cmd store gc --grace 0 >>"$T/cli.log" 2>&1 || bad gc:after-chunks "kill -9 (server daemon)" "gc failed after the restart"
        check_running gc:after-chunks "kill -9 (server daemon)"
        row gc:after-chunks "kill -9 (server daemon)" "gc ran again to its end; session: $OUTCOME"
fi

log "== failed store writes (ENOSPC, EIO)"
# fault_row POINT=KIND SIDE ACTION: SIDE's daemon runs with the fault; ACTION
# must fail with a message (or succeed); then the fault goes, and it settles
# (first the set: + in 'make check', - only with CRASH_MATRIX_FULL=1; then
# where the session must be first)
fault_row() {
        [ "$1" = + ] || full || return 0
        local spec=$3 side=$4 action=$5 name=${3%%=*} kind=${3#*=}
        wanted "$spec" || return 0
        goto "$2"
        before_step
        restart "$side" "$spec"
        local rc=0 out
        out=$(l_cmd "$action" s1 2>&1) || rc=$?
        [ $rc -lt 128 ] || bad "$spec" "$kind ($side)" "the command crashed (exit $rc)"
        kill -0 "$(pid_of "$side")" 2>/dev/null || bad "$spec" "$kind ($side)" "the $side daemon died of a failed write"
        grep -q "failpoint '$name': failing" "$(log_of "$side")" || bad "$spec" "$kind ($side)" "the fault was never injected"
        local what="it succeeded"
        if [ $rc != 0 ]; then
                expect_one_line "$(printf '%s' "$out" | tail -n 1)"
                what="refused: '$(printf '%s' "$out" | tail -n 1 | cut -c1-110)'"
        fi
        restart "$side"
        check_running "$spec" "$kind ($side)"
        row "$name" "${kind^^} on the $side's store writes ($action)" "$what; without the fault: $OUTCOME"
}
fault_row + server store:chunk-write=enospc laptop offline
fault_row - server store:object-write=eio laptop offline
fault_row - server store:chunk-write=eio server offline
fault_row + server store:ref-write=enospc server offline
fault_row + laptop store:commit=eio server online
fault_row + laptop store:ref-write=eio laptop online
fault_row - laptop store:object-write=enospc server online
if wanted tmpfs; then
        log "a real full disk: a pull into a home on a small tmpfs"
        mkdir -p "$T/small"
        mount -t tmpfs -o size=1m tmpfs "$T/small" || fail "cannot mount a tmpfs"
        cleanup_add "umount -l '$T/small'"
        rc=0
        out=$(ROAM_HOME=$T/small/home in_laptop "$ROAM_BIN" pull "$SERVER" extra --token "$ALICE" 2>&1) || rc=$?
        [ $rc != 0 ] && [ $rc -lt 128 ] || bad tmpfs "ENOSPC" "the pull into a full home did not fail cleanly (exit $rc)"
        [ ! -e "$T/small/home/store/refs/images/extra" ] || bad tmpfs "ENOSPC" "a ref was set by a failed pull"
        ROAM_HOME=$T/small/home "$ROAM_BIN" store fsck >/dev/null 2>&1 || bad tmpfs "ENOSPC" "fsck failed after the full disk"
        mount -o remount,size=256m "$T/small"
        ROAM_HOME=$T/small/home in_laptop "$ROAM_BIN" pull "$SERVER" extra --token "$ALICE" >/dev/null 2>&1 || bad tmpfs ENOSPC "the pull failed with room again"
        ROAM_HOME=$T/small/home "$ROAM_BIN" image export extra "$T/small/out.raw" >/dev/null 2>&1 || bad tmpfs ENOSPC "export failed"
        cmp -s "$T/small/out.raw" "$T/extra.img" || bad tmpfs ENOSPC "the image exported after the full disk differs"
        row "roam pull" "ENOSPC: a home on a 1 MiB tmpfs" "refused: '$(printf '%s' "$out" | tail -n 1 | cut -c1-100)'; no ref, fsck ok; with room: byte-identical"
        umount -l "$T/small"
fi

log "== the link cut at each step"
stopped_at() { [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = T ]; }
# cut_row +|- WHERE POINT SIDE ACTION: SIDE's daemon stops itself at POINT,
# the link goes down, it goes on; the link comes back once ACTION has ended
# (CRASH_MATRIX_FULL=1), or after at most 8 s ('make check': a short cut)
cut_row() {
        [ "$1" = + ] || full || return 0
        local point=$3 side=$4 action=$5
        wanted "cut:$point" || return 0
        goto "$2"
        before_step
        restart "$side" "$point=stop"
        local pid rc=0; pid=$(pid_of "$side")
        l_cmd "$action" s1 >"$T/cut.out" 2>&1 &
        local cli=$!
        wait_for 90 stopped_at "$pid" || bad "$point" "link cut" "the $side daemon did not stop at the point"
        link_down
        kill -CONT "$pid"
        local cut=long
        if ! full; then
                cut=short
                wait_for 8 bash -c "! kill -0 $cli 2>/dev/null" || true
                link_up
        fi
        wait "$cli" || rc=$?
        full && sleep 1 && link_up
        check_running "$point" "link cut"
        local what="it succeeded"
        [ $rc = 0 ] || what="it failed: '$(tail -n 1 "$T/cut.out" | cut -c1-100)'"
        row "$point" "link cut there, $cut ($action)" "$what; link back: $OUTCOME"
}
cut_row - server offline-grant:after-checkpoint server offline
cut_row + server offline-grant:after-owner server offline
cut_row + server offline:after-grant laptop offline
cut_row - server offline:after-pull laptop offline
cut_row - laptop move:after-precopy laptop online
cut_row - laptop move:after-final-checkpoint laptop online
cut_row + laptop move:after-push laptop online
cut_row - laptop move-in:after-restore server online
cut_row - laptop move:after-move-in laptop online

log "== a server whose answers arrive spoiled (the fault relay)"
# relay_row +|- WHERE FAULT PATH ACTION: the relay spoils the next answers to
# PATH (three: a pre-copy may take the first)
relay_row() {
        [ "$1" = + ] || full || return 0
        local fault=$3 path=$4 action=$5
        wanted "relay:$fault:$path" || return 0
        goto "$2"
        before_step
        local n0; n0=$(relay stats | awk '{ print $2 }')
        relay "arm?fault=$fault&path=$path&count=3" >/dev/null
        local rc=0 out
        if [ "$action" = wait ]; then
                wait_for 60 relay_faulted_above "$n0" || true
        else
                out=$(l_cmd "$action" s1 2>&1) || rc=$?
        fi
        relay disarm >/dev/null
        [ "$(relay stats | awk '{ print $2 }')" -gt "$n0" ] || bad "$path" "$fault" "the relay never spoiled an answer"
        [ $rc -lt 128 ] || bad "$path" "$fault" "the command crashed (exit $rc)"
        check_running "$path" "$fault answer"
        local what="it succeeded"
        [ $rc = 0 ] || what="refused: '$(printf '%s' "$out" | tail -n 1 | cut -c1-100)'"
        [ "$action" = wait ] && what="a pre-copy got it"
        row "$path" "$fault answer ($action)" "$what; then: $OUTCOME"
}
relay_row - server truncate /v1/pack/get wait
relay_row - server reorder /v1/pack/get wait
# (take offline gets its remainder in the grant's answer: no pack/get)
relay_row + server truncate /v1/sessions/s1/offline offline
relay_row - server reorder /v1/sessions/s1/offline offline
relay_row + server short /v1/sessions/s1/offline offline
relay_row + laptop truncate /v1/sessions/s1/move-in online
relay_row - laptop short /v1/sessions/s1/move-in online

log "== reclaim (last: the laptop is stale afterwards)"
if wanted reclaim:after-owner; then
        goto laptop
        before_step
        rc=0
        ROAM_FAILPOINT=reclaim:after-owner s_cmd session reclaim s1 >>"$T/cli.log" 2>&1 || rc=$?
        [ $rc = 137 ] || bad reclaim:after-owner "kill -9 (roam session reclaim)" "it did not die at the point (exit $rc)"
        reclaimed() {
                [ "$(state "$S")" = running ] && owner_local "$S" && qemu_runs "$S" && ! qemu_runs "$L" &&
                        ! marker "$S" && ! marker "$L"
        }
        wait_for 120 reclaimed || bad reclaim:after-owner "kill -9 (roam session reclaim)" "the server does not run it: server '$(state "$S")', laptop '$(state "$L")'"
        n=$(lines "$S")
        wait_for 30 new_ticks "$S" "$n" 2 || bad reclaim:after-owner "kill -9" "no ticks on the server"
        [ "$(boots)" = "$BOOTS" ] || bad reclaim:after-owner "kill -9" "the guest booted again"
        fsck_both || bad reclaim:after-owner "kill -9" "store fsck failed"
        row reclaim:after-owner "kill -9 (roam session reclaim)" "the server's recovery restored it: runs on the server only (from its last checkpoint, as a reclaim does); the stale laptop stopped its copy; fsck ok"
fi

print_table
log ok
