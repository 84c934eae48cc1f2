#!/usr/bin/env bash
# The fleet's story on this one machine ('make fleet-demo', as root): etcd (3
# members) and Ceph (1 mon, 1 mgr, 2 OSDs) from scripts/fleet.sh, three roam
# servers in network namespaces on them; sessions placed by free RAM and
# cores, a move through the shared store, a drain, a server killed and its
# sessions back on the others from their last checkpoints; a timeline at the
# end. Reuses the test helpers (tests/lib.sh, tests/fleet.sh).
SRC=$(cd "$(dirname "$0")/.." && pwd)
export BUILD_DIR=${BUILD_DIR:-$SRC/build}
. "$SRC/tests/lib.sh"
. "$SRC/tests/fleet.sh"
export ROAM_ACCEL=${ROAM_ACCEL:-tcg}
[ "$(id -u)" = 0 ] || { echo "fleet-demo: run it as root (network namespaces, Ceph's daemons)" >&2; exit 1; }
timeline=()
t_start=$SECONDS
bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
row() { timeline+=("$(printf '| %5s s | %-60s |' "$((SECONDS - t_start))" "$1")"); }
owners() {
        fleet_api 1 GET /v1/fleet/sessions 2>/dev/null || fleet_api 2 GET /v1/fleet/sessions 2>/dev/null ||
                fleet_api 3 GET /v1/fleet/sessions
        jq -r '.sessions[] | "  \(.name) on \(.host // "nobody") (epoch \(.epoch))"' <<<"$OUT"
}
owner() { owners >/dev/null; jq -r --arg s "$1" '.sessions[] | select(.name == $s) | .host // ""' <<<"$OUT"; }

bold "the test guest (a counter on its console, 'tick N' every 0.2 s)"
need_guest
bold "etcd + Ceph: scripts/fleet.sh up (in a namespace of their own)"
fleet_setup 3 2
row "fleet up: etcd x3, ceph mon+mgr+2 OSDs, pool '$FLEET_POOL'"
bold "three roam servers join: roam serve --store $FLEET_STORE --etcd ..."
for n in 1 2 3; do fleet_serve "$n" --fleet-checkpoint 5; done
roam_host 1 host list
row "3 members registered under their etcd leases"

bold "an image into the shared store, three sessions placed by free RAM and cores"
roam_host 1 image import deb "$GUEST/master.img"
for s in alice bob carol; do
        roam_host 1 session create "$s" --image deb --user "$s" --ram 128M --kernel "$GUEST/vmlinux" \
                --initrd "$GUEST/initrd.img"
        fleet_api 1 POST "/v1/fleet/sessions/$s/start" >/dev/null
done
owners
row "3 sessions placed: $(for s in alice bob carol; do printf '%s@%s ' "$s" "$(owner "$s")"; done)"
sleep 5

bold "a move through the shared store: roam session move alice --to-host ..."
from=$(owner alice)
to=h$(( ${from#h} % 3 + 1 ))
out=$(roam_host 2 session move alice --to-host "$to" 2>&1)
echo "$out"
row "alice $from -> $to: $(sed -nE 's/.*(downtime [0-9]+ ms).*/\1/p' <<<"$out")"

bold "drain a server: roam host drain $to"
roam_host 1 host drain "$to" 2>"$T/drain.err"
cat "$T/drain.err"
owners
row "$(tail -n 1 "$T/drain.err")"
roam_host 1 host drain "$to" --undo

bold "a server dies: kill -9 of its roam and its QEMUs"
victim=$(owner bob)
vn=${victim#h}
sleep 6 # a checkpoint of every running session every 5 s
t0=$SECONDS
kill -9 "${SERVE_PID[vn]}"
for p in "$T/host$vn"/sessions/*/qemu.pid; do kill -9 "$(cat "$p")" 2>/dev/null || true; done
row "$victim killed (with bob on it)"
back() { local o; o=$(owner bob); [ -n "$o" ] && [ "$o" != "$victim" ]; }
wait_for 90 back || fail "bob was not taken over"
owners
row "bob runs again on $(owner bob) after $((SECONDS - t0)) s (lease 10 s + restore)"
bold "the old server comes back and refuses bob (epoch)"
fleet_serve "$vn" --fleet-checkpoint 5
fleet_api "$vn" POST /v1/console/sessions/bob/start
echo "  $CODE $OUT"
row "$victim back: start of bob refused ($CODE)"

bold "fsck of the RADOS store"
roam_host 1 store fsck
row "RADOS store consistent"

bold "timeline"
printf '| %7s | %-60s |\n' "time" "what"
printf '|%s|%s|\n' "---------" "--------------------------------------------------------------"
printf '%s\n' "${timeline[@]}"
