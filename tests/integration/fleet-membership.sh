#!/usr/bin/env bash
# Fleet membership and ownership in etcd (docs/fleet.md), three 'roam serve'
# in network namespaces on one etcd + Ceph:
#  - every member registers under its lease; 'roam host list' and
#    GET /v1/fleet/hosts show all three;
#  - bad input: etcd unreachable at start, a malformed --etcd, a name taken
#    by a live member: one line each, exit non-zero;
#  - an etcd member killed: the fleet goes on (no member fenced);
#  - a session started through a member is claimed for it in etcd at its
#    epoch; a host cut off from etcd fences (kills) its session before its
#    lease expires, then its owner record goes; a host whose roam is stopped
#    (SIGSTOP) loses its QEMU to its watchdog before its lease can run out;
#  - an epoch moved on in etcd (another host took the session): the old host
#    refuses to start it, and a restarted old host kills a QEMU it finds
#    running for it (one that outlived its roam: the watchdog killed too).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../fleet.sh"
requires qemu-system-x86_64
requires curl
requires jq
export ROAM_ACCEL=tcg
need_guest
fleet_setup 3 2
no_owner() { [ -z "$(etcd_get "/roam/owners/$1")" ]; }

log "three members register"
# no periodic checkpoints: s1 has none, so no member takes it over below
for n in 1 2 3; do fleet_serve "$n" --fleet-checkpoint 0; done
must_succeed roam_host 1 host list --json
[ "$(jq -r '[.hosts[].name] | join(",")' <<<"$OUT")" = "h1,h2,h3" ] || fail "host list: $OUT"
[ "$(jq -r .self <<<"$OUT")" = h1 ] || fail "host list names another self: $OUT"
[ "$(jq -r '.hosts[0].cores' <<<"$OUT")" -ge 1 ] || fail "no cores in $OUT"
fleet_api 2 GET /v1/fleet/hosts
[ "$CODE" = 200 ] || fail "GET /v1/fleet/hosts: $CODE $OUT"
[ "$(jq -r '.hosts | length' <<<"$OUT")" = 3 ] && [ "$(jq -r .alive <<<"$OUT")" = true ] || fail "fleet/hosts: $OUT"

log "bad input at start: one line, non-zero"
mkdir -p "$T/bad"
ROAM_HOME=$T/bad must_fail in_host 3 "$ROAM_BIN" serve --listen "${HOST_IP[3]}:7451" --etcd "http://$HUB_IP:1" \
        --fleet-name bad
expect_one_line "$ERR"
expect_match "$ERR" "no etcd member answers"
ROAM_HOME=$T/bad must_fail in_host 3 "$ROAM_BIN" serve --listen "${HOST_IP[3]}:7451" --etcd "ftp://x" --fleet-name bad
expect_match "$ERR" "not http"
ROAM_HOME=$T/bad must_fail in_host 3 "$ROAM_BIN" serve --listen "${HOST_IP[3]}:7451" --etcd "$FLEET_ETCD" \
        --fleet-name h2
expect_one_line "$ERR"
expect_match "$ERR" "live fleet member is called 'h2'"
ROAM_HOME=$T/bad must_fail in_host 3 "$ROAM_BIN" serve --listen "0.0.0.0:7451" --etcd "$FLEET_ETCD" --fleet-name b
expect_match "$ERR" "needs --fleet-url"

log "an etcd member killed: the fleet goes on"
fleet_daemon stop etcd1
sleep 12 # more than a lease's time
for n in 1 2 3; do
        fleet_api "$n" GET /v1/fleet/hosts
        [ "$CODE" = 200 ] && [ "$(jq -r .alive <<<"$OUT")" = true ] || fail "host $n with etcd1 down: $CODE $OUT"
        [ "$(jq -r '.hosts | length' <<<"$OUT")" = 3 ] || fail "host $n lost members with etcd1 down: $OUT"
        ! grep -q fenced "$T/host$n/serve.log" || fail "host $n fenced with one etcd member down"
done
fleet_daemon start etcd1

log "a session started through h1 is claimed for h1 in etcd"
must_succeed roam_host 1 image import deb "$GUEST/master.img"
must_succeed roam_host 1 session create s1 --image deb --user alice --ram 128M \
        --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" --host h1
fleet_api 1 POST /v1/console/sessions/s1/start
[ "$CODE" = 200 ] || fail "start through h1: $CODE $OUT"
[ "$(etcd_get /roam/owners/s1)" = '{"host":"h1","epoch":0}' ] || fail "owner record: $(etcd_get /roam/owners/s1)"
[ "$(etcd_get /roam/epochs/s1)" = 0 ] || fail "epoch record: $(etcd_get /roam/epochs/s1)"
qpid=$(cat "$T/host1/sessions/s1/qemu.pid")
pid_alive "$qpid" || fail "QEMU of s1 does not run"

log "h1 cut off from etcd: it fences its session before its lease expires"
t0=$SECONDS
host_cut 1
# the keeper fences, and its watchdog misses the heartbeats at about the same
# time: either may be the one that kills the QEMU
wait_for 15 grep -q "fenced (etcd has not answered" "$T/host1/serve.log" || fail "h1 did not fence: $(tail -n 3 "$T/host1/serve.log")"
fenced_after=$((SECONDS - t0))
! pid_alive "$qpid" || fail "QEMU of s1 still runs on the fenced host"
wait_for 30 no_owner s1 || fail "the owner record outlived h1's lease"
expired_after=$((SECONDS - t0))
log "fenced after ${fenced_after}s, owner record gone after ${expired_after}s"
[ "$fenced_after" -le "$expired_after" ] || fail "fenced after the lease expired"
host_uncut 1
wait_for 30 bash -c "ip netns exec ${HOST_NS[1]} curl -s -H 'Authorization: Bearer $(cat "$T/host1/local.token")' \
        http://${HOST_IP[1]}:7450/v1/fleet/hosts | grep -q '\"alive\": *true'" || fail "h1 did not rejoin"

log "nobody took s1 over: h1 may start it again at its epoch"
fleet_api 1 POST /v1/console/sessions/s1/start
[ "$CODE" = 200 ] || fail "start of s1 back on h1: $CODE $OUT"
[ "$(etcd_get /roam/owners/s1)" = '{"host":"h1","epoch":0}' ] || fail "owner record: $(etcd_get /roam/owners/s1)"

log "h1's roam stopped, not dead (SIGSTOP): its watchdog kills the QEMU before h1's lease can run out"
qpid=$(cat "$T/host1/sessions/s1/qemu.pid")
pid_alive "$qpid" || fail "QEMU of s1 does not run"
sleep 3 # a heartbeat or two (renewals every 2 s) arm the watchdog
t0=$SECONDS
kill -STOP "${SERVE_PID[1]}"
cleanup_add "kill -CONT ${SERVE_PID[1]} 2>/dev/null"
wait_for 15 eval '! pid_alive $qpid' || fail "QEMU of s1 runs on under a stopped roam"
stopped_after=$((SECONDS - t0))
[ -n "$(etcd_get /roam/owners/s1)" ] || fail "h1's owner record went before its QEMU"
grep -q "fleet watchdog: no heartbeat .* killed 1 QEMU" "$T/host1/serve.log" || fail "no watchdog line in h1's log"
log "the QEMU was gone ${stopped_after}s after h1's roam stopped; its owner record still there"
kill -CONT "${SERVE_PID[1]}"
h1_alive() {
        ip netns exec "${HOST_NS[1]}" curl -s -H "Authorization: Bearer $(cat "$T/host1/local.token")" \
                "http://${HOST_IP[1]}:7450/v1/fleet/hosts" | grep -q '"alive": *true'
}
wait_for 30 h1_alive || fail "h1 is not alive again after SIGCONT"
fleet_api 1 POST /v1/console/sessions/s1/start
[ "$CODE" = 200 ] || fail "start of s1 on h1 after SIGCONT: $CODE $OUT"

log "the fleet moved s1 on (epoch 1 at h2): h1 refuses it, a restarted h1 kills its QEMU"
qpid=$(cat "$T/host1/sessions/s1/qemu.pid")
# its watchdog too (else the QEMU dies with roam at once, as fleet-sessions.sh
# checks): a QEMU that outlived its roam must be refused by the host back
wd=$(pgrep -P "${SERVE_PID[1]}" -f __fleet-watchdog) || fail "no watchdog under h1's roam"
kill -9 "$wd" "${SERVE_PID[1]}"
wait "${SERVE_PID[1]}" 2>/dev/null || true
wait_for 30 no_owner s1 || fail "the owner record outlived h1"
etcd_put /roam/epochs/s1 1
etcd_put /roam/owners/s1 '{"host":"h2","epoch":1}'
pid_alive "$qpid" || fail "QEMU of s1 did not outlive its daemon"
fleet_serve 1 --fleet-checkpoint 0
wait_for 15 eval '! pid_alive $qpid' || fail "the old host back left s1 running"
grep -q "stopped session 's1' here: session 's1' is owned by fleet host 'h2' since epoch 1" "$T/host1/serve.log" ||
        fail "no refusal in the log: $(tail -n 3 "$T/host1/serve.log")"
fleet_api 1 POST /v1/console/sessions/s1/start
[ "$CODE" != 200 ] || fail "the old host started a session the fleet gave away"
expect_match "$OUT" "owned by fleet host 'h2' since epoch 1"
must_fail roam_host 1 session start s1 # the CLI on the home asks the fleet too
expect_match "$ERR" "owned by fleet host 'h2' since epoch 1"
log "the RADOS store passes fsck"
must_succeed roam_host 1 store fsck
expect_match "$OUT" "store is consistent"
log "ok"
