# The fleet for roam's integration tests: etcd + Ceph (scripts/fleet.sh) in a
# network namespace of their own (the hub), and up to three roam hosts, each
# in its own namespace, joined to the hub by a bridge. Nothing listens in the
# root namespace, so nothing collides with other runs. Source it AFTER
# tests/lib.sh:
#   . "$(dirname "$0")/../lib.sh"
#   . "$(dirname "$0")/../fleet.sh"
#   fleet_setup [HOSTS=3] [OSDS=2]   # skips unless root and the packages
#   in_hub CMD... / in_host N CMD...
#   roam_host N ARGS...               # roam with ROAM_HOME=$T/hostN in host N
#
# Functions:
#   fleet_setup [HOSTS] [OSDS]
#       Needs root (else skip) and scripts/deps.sh fleet (else skip). Makes the
#       hub namespace with bridge "fbr0" ($HUB_IP), HOSTS host namespaces with
#       "eth0" ($HOST_IP[N], N = 1..HOSTS) on that bridge, starts the fleet in
#       the hub (FLEET_DIR=$T/fleet) and exports FLEET_ETCD, FLEET_CEPH_CONF,
#       FLEET_POOL, FLEET_STORE (rados:POOL?conf=FILE). Registers fleet_teardown.
#   fleet_daemon NAME: stop or start one fleet daemon (scripts/fleet.sh stop|start)
#   host_cut N / host_uncut N: host N's link to the bridge down / up
#   fleet_teardown: stop the fleet, kill what runs in the namespaces, delete them
FLEET_SH=$SRC_DIR/scripts/fleet.sh
_fleet_namespaces=()
_fleet_registered=0

_fleet_need() {
        requires_root
        command -v ip >/dev/null 2>&1 || skip "needs ip (iproute2)"
        local t
        for t in etcd ceph-mon ceph-osd ceph-mgr; do
                command -v "$t" >/dev/null 2>&1 || skip "needs $t (scripts/deps.sh fleet)"
        done
        ip netns list >/dev/null 2>&1 || skip "network namespaces unavailable"
}

fleet_setup() {
        local hosts=${1:-3} osds=${2:-2} i
        _fleet_need
        local id=$$
        [ ! -e "/run/netns/roam-hub-$id" ] || id=$$-$RANDOM
        HUB_NS=roam-hub-$id
        local x=$(($$ % 250 + 1))
        HUB_IP=10.78.$x.1
        FLEET_DIR=$T/fleet
        export HUB_NS HUB_IP FLEET_DIR
        if [ $_fleet_registered = 0 ]; then
                cleanup_add fleet_teardown
                _fleet_registered=1
        fi
        ip netns add "$HUB_NS" || skip "cannot create network namespace"
        _fleet_namespaces+=("$HUB_NS")
        ip -n "$HUB_NS" link set lo up
        ip -n "$HUB_NS" link add fbr0 type bridge || skip "cannot create a bridge"
        ip -n "$HUB_NS" addr add "$HUB_IP/24" dev fbr0
        ip -n "$HUB_NS" link set fbr0 up
        HOST_NS=()
        HOST_IP=()
        for ((i = 1; i <= hosts; i++)); do
                HOST_NS[i]=roam-h$i-$id
                HOST_IP[i]=10.78.$x.$((10 + i))
                ip netns add "${HOST_NS[i]}"
                _fleet_namespaces+=("${HOST_NS[i]}")
                ip -n "${HOST_NS[i]}" link set lo up
                ip -n "$HUB_NS" link add "h$i" type veth peer name eth0 netns "${HOST_NS[i]}" ||
                        skip "cannot create a veth pair"
                ip -n "$HUB_NS" link set "h$i" master fbr0
                ip -n "$HUB_NS" link set "h$i" up
                ip -n "${HOST_NS[i]}" addr add "${HOST_IP[i]}/24" dev eth0
                ip -n "${HOST_NS[i]}" link set eth0 up
                ip netns exec "${HOST_NS[i]}" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1 >/dev/null 2>&1 || true
        done
        export HOST_NS HOST_IP
        log "fleet: hub $HUB_NS $HUB_IP, $hosts host(s); starting etcd and ceph"
        local t0=$SECONDS
        FLEET_QUIET=1 FLEET_IP=$HUB_IP FLEET_PORT=2379 FLEET_OSDS=$osds FLEET_OSD_GB=4 \
                ip netns exec "$HUB_NS" "$FLEET_SH" up "$FLEET_DIR" >"$T/fleet-up.log" 2>&1 ||
                fail "scripts/fleet.sh up failed: $(tail -n 5 "$T/fleet-up.log")"
        # shellcheck disable=SC1091
        . "$FLEET_DIR/fleet.env"
        FLEET_STORE="rados:$FLEET_POOL?conf=$FLEET_CEPH_CONF"
        export FLEET_ETCD FLEET_CEPH_CONF FLEET_POOL FLEET_STORE
        log "fleet up in $((SECONDS - t0)) s: etcd $FLEET_ETCD, $FLEET_STORE"
}

in_hub() { ip netns exec "$HUB_NS" "$@"; }
in_host() {
        local n=$1
        shift
        ip netns exec "${HOST_NS[n]}" "$@"
}
roam_host() {
        local n=$1
        shift
        ROAM_HOME=$T/host$n ip netns exec "${HOST_NS[n]}" ${ROAM_WRAPPER:-} "$ROAM_BIN" "$@"
}
fleet_daemon() { in_hub "$FLEET_SH" "$1" "$FLEET_DIR" "$2" >/dev/null; }
host_cut() { ip -n "$HUB_NS" link set "h$1" down; }
host_uncut() { ip -n "$HUB_NS" link set "h$1" up; }

fleet_teardown() {
        local ns i pids
        if [ -n "${HUB_NS:-}" ] && [ -f "${FLEET_DIR:-/nonexistent}/fleet.env" ]; then
                FLEET_QUIET=1 ip netns exec "$HUB_NS" "$FLEET_SH" down "$FLEET_DIR" >/dev/null 2>&1 || true
        fi
        for ns in "${_fleet_namespaces[@]}"; do
                for i in 1 2 3 4 5 6 7 8 9 10; do
                        pids=$(ip netns pids "$ns" 2>/dev/null) || break
                        [ -n "$pids" ] || break
                        if [ $i -lt 10 ]; then
                                # shellcheck disable=SC2086
                                kill -TERM $pids 2>/dev/null || true
                        else
                                # shellcheck disable=SC2086
                                kill -KILL $pids 2>/dev/null || true
                        fi
                        sleep 0.2
                done
                ip netns del "$ns" 2>/dev/null || true
        done
        _fleet_namespaces=()
}

# fleet_serve N [ARGS...]: 'roam serve' on host N (ROAM_HOME=$T/hostN, port
# 7450 on $HOST_IP[N], fleet name hN, the fleet's store and etcd); waits
# until it answers; SERVE_PID[N]; its log in $T/hostN/serve.log
SERVE_PID=()
fleet_serve() {
        local n=$1
        shift
        mkdir -p "$T/host$n"
        ROAM_HOME=$T/host$n ip netns exec "${HOST_NS[n]}" "$ROAM_BIN" serve --listen "${HOST_IP[n]}:7450" \
                --store "$FLEET_STORE" --etcd "$FLEET_ETCD" --fleet-name "h$n" "$@" \
                >>"$T/host$n/serve.log" 2>&1 &
        SERVE_PID[n]=$!
        cleanup_add "kill ${SERVE_PID[n]} 2>/dev/null; wait ${SERVE_PID[n]} 2>/dev/null"
        wait_for 30 in_host "$n" curl -s -o /dev/null "http://${HOST_IP[n]}:7450/v1/info" ||
                fail "roam serve on host $n did not start: $(tail -n 3 "$T/host$n/serve.log")"
}
# fleet_api N METHOD PATH [JSON]: the API of host N with its local admin
# token; the body in $OUT, the status in $CODE
fleet_api() {
        local n=$1 method=$2 path=$3 body=${4:-}
        local tok
        tok=$(cat "$T/host$n/local.token")
        OUT=$(in_host "$n" curl -s -m 300 -o - -w '\n%{http_code}' -X "$method" -H "Authorization: Bearer $tok" \
                ${body:+-H 'Content-Type: application/json' -d "$body"} "http://${HOST_IP[n]}:7450$path")
        CODE=${OUT##*$'\n'}
        OUT=${OUT%$'\n'*}
}
# etcd_get KEY: the value of an etcd key, "" when there is none
etcd_get() { in_hub etcdctl --endpoints="$FLEET_ETCD" get --print-value-only "$1"; }
etcd_put() { in_hub etcdctl --endpoints="$FLEET_ETCD" put "$1" "$2" >/dev/null; }
# pid_alive PID: runs (a zombie does not: a killed -daemonize QEMU waits for
# a reaper that may never come)
pid_alive() { [ -r "/proc/$1/stat" ] && ! awk '{ exit $3 == "Z" ? 0 : 1 }' "/proc/$1/stat" 2>/dev/null; }
