#!/usr/bin/env bash
# roam's main job on this one machine: the whole story of a portable session,
# with a timeline at the end (each step, its downtime, its bytes on the wire).
# DEMO=busybox: this story with the small test guest; DEMO=desktop (the
# default when build/desktop exists): scripts/demo-desktop.sh.
# Run by 'make demo', which builds roam and the test guest and installs what it
# needs. As root the "datacenter" and the "laptop" are two network namespaces
# joined by an emulated WAN (100 Mbit/s, 25 ms each way); otherwise both run
# on loopback.
#
# It reuses the test helpers (tests/lib.sh: scratch directory and cleanup;
# tests/netns.sh: namespaces, rate limit, delaying relay).
SRC=$(cd "$(dirname "$0")/.." && pwd)
export BUILD_DIR=${BUILD_DIR:-$SRC/build}
# the desktop story when the desktop image is built (or DEMO=desktop asks for it)
DEMO=${DEMO:-$([ -s "$BUILD_DIR/desktop/desktop.img" ] && echo desktop || echo busybox)}
if [ "$DEMO" = desktop ]; then exec bash "$SRC/scripts/demo-desktop.sh" "$@"; fi
[ "$DEMO" = busybox ] || { echo "demo: DEMO is '$DEMO' (use desktop or busybox)" >&2; exit 2; }
. "$SRC/tests/lib.sh"
use_tls # the daemons as they come: HTTPS, the laptop pins the server's certificate
export ROAM_ACCEL=${ROAM_ACCEL:-tcg}
GUEST=$BUILD_DIR/guest
timeline=()
bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
row() { timeline+=("$(printf '| %-44s | %12s | %14s |' "$1" "$2" "$3")"); }
field() { sed -nE "s/.*$1 ([0-9]+) ms.*/\\1 ms/p"; }
sent() { sed -nE 's/.*ms, ([0-9.]+ [KMG]?i?B) sent.*/\1/p'; }

bold "the test guest (a small Linux with a session workload: a counter, 'tick N' every 0.2 s)"
bash "$SRC/scripts/build-guest.sh" "$GUEST" >"$T/guest.log" 2>&1 || { cat "$T/guest.log"; fail "cannot build the guest"; }
ls -la "$GUEST"/{vmlinux,initrd.img,master.img}

export DC_HOME=$T/datacenter LT_HOME=$T/laptop
PORT=$(free_port) LPORT=$(free_port)
if [ "$(id -u)" = 0 ]; then
        . "$SRC/tests/netns.sh"
        wan_setup 100 25
        DC_LISTEN=$DC_IP:$PORT
        in_dc_roam() { ROAM_HOME=$DC_HOME in_dc "$ROAM_BIN" "$@"; }
        in_lt_roam() { ROAM_HOME=$LT_HOME in_laptop "$ROAM_BIN" "$@"; }
        link="emulated WAN, 100 Mbit/s, 25 ms each way"
else
        DC_LISTEN=127.0.0.1:$PORT
        in_dc_roam() { ROAM_HOME=$DC_HOME "$ROAM_BIN" "$@"; }
        in_lt_roam() { ROAM_HOME=$LT_HOME "$ROAM_BIN" "$@"; }
        link_down() { :; }
        link_up() { :; }
        link="loopback (run as root for the emulated WAN)"
fi
cleanup_add 'for p in "$DC_HOME"/sessions/*/qemu.pid "$LT_HOME"/sessions/*/qemu.pid; do kill -9 "$(cat "$p")"; done'
state_on() { "$1" session list | awk '$1 == "s1" { print $4 }'; }
last_tick() { "$1" session log s1 | grep -E '^tick [0-9]+$' | tail -n 1 | awk '{ print $2 }' || true; }
tick_above() { [ "$(last_tick "$1")" -gt "$2" ] 2>/dev/null; }

bold "datacenter: one master image in the content-addressed store, a session of it for alice"
in_dc_roam image import debian "$GUEST/master.img"
in_dc_roam session create s1 --image debian --user alice --ram 256M --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img"
in_dc_roam session start s1
ALICE=$(in_dc_roam token create --role user --user alice)
in_dc_roam serve --listen "$DC_LISTEN" --log "$T/dc.log" &
cleanup_add "kill $! 2>/dev/null"
sleep 1
if [ "$(id -u)" = 0 ]; then wan_relay "$PORT"; fi
SERVER=https://127.0.0.1:$PORT
wait_for 20 test -s "$DC_HOME/serve.json" || fail "the datacenter daemon did not start"
echo "datacenter serves HTTPS; its certificate $(jq -r .fingerprint "$DC_HOME/serve.json" 2>/dev/null ||
        sed -n 's/.*"fingerprint": "\(.*\)".*/\1/p' "$DC_HOME/serve.json"), carried by alice's pairing token"
wait_for 90 tick_above in_dc_roam 5 || fail "the session does not tick"
echo "alice's session runs in the datacenter: $(in_dc_roam session log s1 | grep -E '^tick' | tail -n 1)"

bold "laptop: 'roam laptop init' makes its key and encrypts everything it will store (a passphrase)"
printf 'alice demo passphrase\n' >"$T/passphrase"
export ROAM_PASSPHRASE_FILE=$T/passphrase # 'roam unlock' would ask on the terminal
in_lt_roam laptop init | sed -n 's/^encryption: /encryption: /p'

bold "USB stick: the master image as one bundle file, applied on the laptop"
in_dc_roam bundle create -o "$T/usb.bundle" debian
t0=$(date +%s.%N)
in_lt_roam bundle apply "$T/usb.bundle"
row "pre-deploy master image from USB bundle" "-" "0 B (USB)"

bold "laptop: 'roam serve --role laptop' pairs with the server, hoards, pre-copies ($link)"
in_lt_roam serve --role laptop --listen "127.0.0.1:$LPORT" --server "$SERVER" --token "$ALICE" --name alices-laptop \
        --precopy-interval 2 --log "$T/laptop.log" &
cleanup_add "kill $! 2>/dev/null"
sleep 8
in_lt_roam status

bold "take offline: pause in the datacenter, send the remainder, resume on the laptop"
out=$(in_lt_roam offline s1) || { tail -n 20 "$T/laptop.log" "$T/dc.log"; fail "take offline failed"; }
echo "$out"
row "take offline (with background pre-copy)" "$(field downtime <<<"$out")" "$(sent <<<"$out")"
echo "datacenter: $(state_on in_dc_roam) / laptop: $(state_on in_lt_roam)"
before=$(last_tick in_dc_roam)
wait_for 60 tick_above in_lt_roam "$before" || fail "the counter did not continue on the laptop"
echo "the counter continues on the laptop: $(in_lt_roam session log s1 | grep -E '^tick' | tail -n 1)"

bold "cut the network: the session keeps running on the laptop"
link_down
t=$(last_tick in_lt_roam)
wait_for 30 tick_above in_lt_roam $((t + 10)) || fail "the session stalled offline"
echo "offline and working: $(in_lt_roam session log s1 | grep -E '^tick' | tail -n 1)"
row "work offline, link down" "0 ms" "0 B"

bold "back online: take online (live)"
link_up
sleep 4
out=$(in_lt_roam online s1) || { tail -n 20 "$T/laptop.log" "$T/dc.log"; fail "take online failed"; }
echo "$out"
row "take online (live)" "$(field downtime <<<"$out")" "$(sent <<<"$out")"
before=$(last_tick in_lt_roam)
wait_for 60 tick_above in_dc_roam "$before" || fail "the counter did not continue in the datacenter"
echo "the counter continues in the datacenter: $(in_dc_roam session log s1 | grep -E '^tick' | tail -n 1)"

bold "offline again; alice powers the laptop's session off; take online powered-off"
sleep 4
out=$(in_lt_roam offline s1) || fail "take offline failed"
row "take offline again" "$(field downtime <<<"$out")" "$(sent <<<"$out")"
in_lt_roam session stop s1
out=$(in_lt_roam online s1) || { tail -n 20 "$T/laptop.log" "$T/dc.log"; fail "take online (powered off) failed"; }
echo "$out"
row "take online powered-off (disk delta, log-off)" "-" "$(sent <<<"$out")"
echo "alice's profile disk in the datacenter after the log-off:"
debugfs -R 'ls -l /alice' "$DC_HOME/profiles/alice.img" 2>/dev/null | sed 's/^/   /'

bold "nothing lost: /data/ticks on the session's disk"
qemu-img convert -O raw "$DC_HOME/sessions/s1/overlay.qcow2" "$T/disk.raw"
debugfs -R 'cat /data/ticks' "$T/disk.raw" 2>/dev/null >"$T/ticks"
n=$(awk '!/^tick [0-9]+ boot=/ { exit 1 } $2 != NR { exit 1 } END { print NR }' "$T/ticks") ||
        fail "/data/ticks has a gap or a repeat"
echo "tick 1 .. tick $n, no gap, no repeat, across the datacenter, the laptop and back"

bold "timeline ($link, 256 MiB guest under TCG)"
printf '| %-44s | %12s | %14s |\n' "step" "downtime" "bytes on wire"
printf '|%s|%s|%s|\n' "----------------------------------------------" "--------------" "----------------"
printf '%s\n' "${timeline[@]}"
