#!/usr/bin/env bash
# The fleet (docs/fleet.md) on this one machine: etcd + Ceph (scripts/fleet.sh)
# and roam members in network namespaces (tests/fleet.sh), the test guest.
#  - import and pull throughput of the RADOS store vs the local store, same
#    image, same run;
#  - a move's downtime between two fleet members (through the shared store)
#    vs a move between two standalone servers (push over HTTP);
#  - a member's death (kill -9 of roam and its QEMUs) to its session running
#    again elsewhere, and that less the lease's TTL;
#  - placement of 1,000 simulated sessions against etcd (tests/tools/fleet-sim).
# Goals (issue 12): RADOS import >= 0.5x local, failover <= 30 s after the
# lease expired, 1,000 placements <= 5 s. Needs root.
. "$(dirname "$0")/lib.sh"
. "$SRC_DIR/tests/lib.sh"
. "$SRC_DIR/tests/fleet.sh"
export ROAM_ACCEL=tcg
MIB=${ROAM_BENCH_FLEET_MIB:-512}
need_guest
fleet_setup 3 2
for n in 1 2 3; do fleet_serve "$n" --fleet-checkpoint 5; done
cd "$T"

log "an image of $MIB MiB (the test image generator, seed 7)"
make_image img.raw "$MIB" 7
bytes=$(stat -c %s img.raw)
warm img.raw

log "import: local store vs RADOS"
timed t_local in_host 1 env ROAM_HOME="$T/local" "$ROAM_BIN" image import img img.raw
timed t_rados in_host 1 env ROAM_HOME="$T/radoshome" ROAM_STORE="$FLEET_STORE" "$ROAM_BIN" image import img img.raw

log "pull: from a server on a local store vs from a fleet member on RADOS"
mkdir -p "$T/srv"
cp -a "$T/local/." "$T/srv/"
ROAM_HOME=$T/srv in_host 2 "$ROAM_BIN" serve --listen "${HOST_IP[2]}:7460" >"$T/srv.log" 2>&1 &
SRV_PID=$!
cleanup_add "kill $SRV_PID 2>/dev/null; wait $SRV_PID 2>/dev/null"
wait_for 30 in_host 2 curl -s -o /dev/null "http://${HOST_IP[2]}:7460/v1/info" || die "standalone server did not start"
TOK_SRV=$(ROAM_HOME=$T/srv "$ROAM_BIN" token create --role host)
TOK_H1=$(roam_host 1 token create --role host)
timed t_pull_local in_host 3 env ROAM_HOME="$T/pull-local" "$ROAM_BIN" pull "http://${HOST_IP[2]}:7460" img --token "$TOK_SRV"
timed t_pull_rados in_host 3 env ROAM_HOME="$T/pull-rados" "$ROAM_BIN" pull "http://${HOST_IP[1]}:7450" img --token "$TOK_H1"

ticking() { # HOME S: the console shows a tick past $3
        local t
        t=$(grep -aE '^tick [0-9]+' "$1/sessions/$2/serial.log" 2>/dev/null | tr -d '\r' | tail -n 1 | awk '{ print $2 }')
        [ -n "$t" ] && [ "$t" -gt "${3:-0}" ]
}

log "a move between fleet members"
roam_host 1 image import deb "$GUEST/master.img" >/dev/null 2>&1
roam_host 1 session create m1 --image deb --user bench --ram 256M --kernel "$GUEST/vmlinux" \
        --initrd "$GUEST/initrd.img" --host h1 2>/dev/null || die "fleet create failed"
fleet_api 1 POST /v1/fleet/sessions/m1/start
wait_for 90 ticking "$T/host1" m1 5 || die "m1 does not tick"
out=$(roam_host 1 session move m1 --to-host h2 2>&1) || die "fleet move failed: $out"
fleet_down=$(sed -nE 's/.*downtime ([0-9]+) ms.*/\1/p' <<<"$out")
log "$out"

log "a move between two standalone servers"
mkdir -p "$T/sa" "$T/sb"
ROAM_HOME=$T/sb in_host 3 "$ROAM_BIN" serve --listen "${HOST_IP[3]}:7461" >"$T/sb.log" 2>&1 &
SB_PID=$!
cleanup_add "kill $SB_PID 2>/dev/null; wait $SB_PID 2>/dev/null"
wait_for 30 in_host 3 curl -s -o /dev/null "http://${HOST_IP[3]}:7461/v1/info" || die "standalone target did not start"
TOK_SB=$(ROAM_HOME=$T/sb "$ROAM_BIN" token create --role host)
ROAM_HOME=$T/sa "$ROAM_BIN" image import deb "$GUEST/master.img" >/dev/null 2>&1
ROAM_HOME=$T/sa "$ROAM_BIN" session create m2 --image deb --user bench --ram 256M --kernel "$GUEST/vmlinux" \
        --initrd "$GUEST/initrd.img" >/dev/null 2>&1
ROAM_HOME=$T/sa in_host 2 "$ROAM_BIN" session start m2
wait_for 90 ticking "$T/sa" m2 5 || die "m2 does not tick"
out=$(ROAM_HOME=$T/sa in_host 2 "$ROAM_BIN" session move m2 --to "http://${HOST_IP[3]}:7461" --token "$TOK_SB" 2>&1) ||
        die "standalone move failed: $out"
sa_down=$(sed -nE 's/.*downtime ([0-9]+) ms.*/\1/p' <<<"$out" | head -n 1)
ROAM_HOME=$T/sb in_host 3 "$ROAM_BIN" session stop m2 >/dev/null 2>&1 || true

log "a member's death: kill -9 of roam and its QEMUs"
fleet_api 2 POST /v1/fleet/sessions/m1/checkpoint >/dev/null
sleep 2
lines() { wc -l <"$T/host$1/sessions/m1/serial.log" 2>/dev/null || echo 0; }
base1=$(lines 1) base3=$(lines 3)
t0=$(now)
kill -9 "${SERVE_PID[2]}"
for p in "$T/host2"/sessions/*/qemu.pid; do kill -9 "$(cat "$p")" 2>/dev/null || true; done
# a tick on member 1 or 3 in console lines written after the kill
back_on() {
        local n base
        for n in 1 3; do
                base=base$n
                tail -n +$((${!base} + 1)) "$T/host$n/sessions/m1/serial.log" 2>/dev/null | grep -aqE '^tick [0-9]+' && return 0
        done
        return 1
}
wait_for 120 back_on || die "m1 was not taken over"
failover=$(calc "$(now) - $t0")
failover=$(awk -v f="$failover" 'BEGIN { printf "%.1f", f }')
ttl=10

log "placement of 1,000 simulated sessions against etcd (the roam members gone first)"
for n in 1 3; do kill -TERM "${SERVE_PID[n]}" 2>/dev/null || true; done
for n in 1 3; do wait "${SERVE_PID[n]}" 2>/dev/null || true; done
no_members() { [ -z "$(in_hub etcdctl --endpoints="$FLEET_ETCD" get --prefix --keys-only /roam/hosts/)" ]; }
wait_for 30 no_members || die "the members' records outlived them"
sim=$(in_hub "$BUILD_DIR/tests/tools/fleet-sim" --etcd "$FLEET_ETCD" --hosts 10 --sessions 1000 --prefix bench)
sim_s=$(jq -r .seconds <<<"$sim")
spread=$(jq -r '.per_host | "\(min)-\(max)"' <<<"$sim")

out=$(mktemp)
{
        echo "### The fleet: RADOS store, moves, failover, placement"
        echo
        echo "\`bash bench/fleet.sh\` ($(date -u +%Y-%m-%d)): $(machine); etcd 3 members and Ceph (1 mon, 1 mgr,"
        echo "2 bluestore OSDs on files, 2 copies) from scripts/fleet.sh on the same machine, roam members in"
        echo "network namespaces, the test guest under TCG."
        echo
        echo "| what | local store | fleet (RADOS, etcd) | ratio | goal |"
        echo "|------|------------:|--------------------:|------:|------|"
        echo "| import of a $MIB MiB image | $(mbps "$bytes" "$t_local") MB/s | $(mbps "$bytes" "$t_rados") MB/s | $(ratio "$t_local" "$t_rados") | RADOS >= 0.5x |"
        echo "| pull of it to a laptop home | $(mbps "$bytes" "$t_pull_local") MB/s | $(mbps "$bytes" "$t_pull_rados") MB/s | $(ratio "$t_pull_local" "$t_pull_rados") | |"
        echo "| move of a running session (256 MiB guest): downtime | ${sa_down} ms (standalone servers) | ${fleet_down} ms (members) | | |"
        echo "| member killed -> its session runs elsewhere | | ${failover} s ($(awk -v f="$failover" -v t="$ttl" 'BEGIN { printf "%.1f", f - t }') s after the ${ttl} s lease) | | <= 30 s after expiry |"
        echo "| placement of 1,000 sessions (10 members) | | ${sim_s} s, ${spread} per member | | <= 5 s |"
} >"$out"
cat "$out"
doc_section fleet "$out"
rm -f "$out"
