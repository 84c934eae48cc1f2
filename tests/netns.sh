# Emulated WAN for roam's integration tests: a "datacenter server" and a
# "laptop" as two network namespaces joined by a veth pair (DESIGN.md item 9).
# Source it AFTER tests/lib.sh:
#   . "$(dirname "$0")/../lib.sh"
#   . "$(dirname "$0")/../netns.sh"
#   wan_setup            # 100 Mbit/s, 25 ms one way (skips unless root)
#   in_dc python3 -m http.server --bind "$DC_IP" 8080 & ...
#   wan_relay 8080       # laptop: http://127.0.0.1:8080 -> dc, 50 ms RTT
#   in_laptop curl -s http://127.0.0.1:8080/
#
# The link: this kernel has no netem, so
#  - rate: `tc qdisc ... root tbf` on the veth end in BOTH namespaces (each
#    direction limited to RATE_MBIT, counted on Ethernet frames: TCP payload
#    peaks near 95.6% of it with a 1500 MTU);
#  - delay: delay-relay (tests/tools), a TCP relay inside the client's
#    namespace. It delays each direction by DELAY_MS, so ONE relay gives the
#    full round trip of 2 x DELAY_MS (50 ms with the default 25 ms): data is
#    rate-limited on the veth and delayed in the relay, like a real link.
#    Only traffic through a relay is delayed; direct traffic to $DC_IP/$LT_IP
#    gets the rate limit and ~0 ms latency.
#    A new relayed connection also pays the TCP handshake: the relay connects
#    to the target 3 x DELAY_MS after accepting, so the first response on a
#    fresh connection comes after 4 x DELAY_MS like on a real WAN (set
#    WAN_RELAY_OPTS=--no-handshake-delay to turn that off).
#
# Functions:
#   wan_setup [RATE_MBIT=100] [DELAY_MS=25]
#       Needs root (else skip). Creates namespaces $DC_NS and $LT_NS (unique
#       per run), veth "wan0" in each with $DC_IP/24 and $LT_IP/24 (subnet
#       10.77.X.0/24 derived from $$), loopback up, tbf on both ends. Registers
#       wan_teardown with cleanup_add. Exports DC_NS LT_NS DC_IP LT_IP WAN_DEV
#       WAN_RATE_MBIT WAN_DELAY_MS.
#   in_dc CMD...      / in_laptop CMD...
#       Run CMD (an executable, not a shell function: use `bash -c` or
#       "$ROAM_BIN") in that namespace. The environment is kept, so
#       `ROAM_HOME=... in_dc "$ROAM_BIN" ...` works. roam_dc / roam_laptop run
#       roam there with ROAM_HOME=$DC_HOME / $LT_HOME (default $T/dc, $T/laptop).
#   wan_relay PORT [LISTEN_PORT]
#       Start a delay-relay in the laptop namespace on 127.0.0.1:LISTEN_PORT
#       (default PORT) forwarding to $DC_IP:PORT; the laptop then talks to
#       127.0.0.1:LISTEN_PORT. Returns once it listens; sets WAN_RELAY_PID.
#       The server in the dc namespace must listen on $DC_IP or 0.0.0.0.
#   wan_relay_dc PORT [LISTEN_PORT]
#       The other way: in the dc namespace on 127.0.0.1:LISTEN_PORT forwarding
#       to $LT_IP:PORT (a dc process reaching a laptop daemon).
#   wan_listening NS PORT
#       True once something listens on TCP PORT in namespace NS, e.g.
#       `wait_for 10 wan_listening "$DC_NS" 8080` after starting a daemon.
#   wan_relay_stop PID
#       Stop one relay (SIGTERM); its connections are closed.
#   link_down / link_up
#       "Going offline": `ip link set wan0 down` in both namespaces (routes
#       vanish: new connections from either side fail at once, with
#       ENETUNREACH, or through a relay as a reset; established TCP connections
#       stall and retransmit, and resume after link_up if it comes before the
#       kernel gives up). link_up restores link, addresses, qdiscs and routes.
#   wan_teardown
#       Stop relays, kill what still runs in the namespaces, delete them.
#       Registered as a cleanup by wan_setup; safe to call twice.
# Do not call wan_relay* inside $(...): the relay would hold the pipe open.

WAN_DEV=wan0
DELAY_RELAY=${DELAY_RELAY:-$BUILD_DIR/tests/tools/delay-relay}
WAN_RELAY_OPTS=${WAN_RELAY_OPTS:-}
_wan_relay_pids=()
_wan_namespaces=()
_wan_cleanup_registered=0

_wan_tbf() { # NS: (re)install the rate limit on wan0
        # burst: >= 10 full frames and ~1 ms at the rate, so the kernel's
        # timer granularity does not throttle below the rate; latency: 25 ms
        # of queue (enough for TCP to fill the link, bounded bufferbloat).
        local ns=$1 burst=$((WAN_RATE_MBIT * 1000000 / 8 / 1000))
        [ $burst -ge 32768 ] || burst=32768
        tc -n "$ns" qdisc replace dev $WAN_DEV root tbf rate "${WAN_RATE_MBIT}mbit" \
                burst "$burst" latency 25ms
}

wan_setup() {
        local rate=${1:-100} delay=${2:-25}
        requires_root
        command -v ip >/dev/null 2>&1 || skip "needs ip (iproute2)"
        command -v tc >/dev/null 2>&1 || skip "needs tc (iproute2)"
        [[ $rate =~ ^[0-9]+$ && $rate -gt 0 ]] || fail "wan_setup: bad rate '$rate'"
        [[ $delay =~ ^[0-9]+$ ]] || fail "wan_setup: bad delay '$delay'"
        [ -x "$DELAY_RELAY" ] || fail "wan_setup: $DELAY_RELAY not built (ninja -C $BUILD_DIR)"
        ip netns list >/dev/null 2>&1 || skip "network namespaces unavailable"

        local id=$$
        if [ -e "/run/netns/roam-dc-$id" ] || [ -e "/run/netns/roam-lt-$id" ]; then
                id=$$-$RANDOM
        fi
        DC_NS=roam-dc-$id
        LT_NS=roam-lt-$id
        local x=$(($$ % 250 + 1))
        DC_IP=10.77.$x.1
        LT_IP=10.77.$x.2
        WAN_RATE_MBIT=$rate
        WAN_DELAY_MS=$delay
        export DC_NS LT_NS DC_IP LT_IP WAN_DEV WAN_RATE_MBIT WAN_DELAY_MS
        DC_HOME=${DC_HOME:-$T/dc}
        LT_HOME=${LT_HOME:-$T/laptop}

        if [ $_wan_cleanup_registered = 0 ]; then
                cleanup_add wan_teardown
                _wan_cleanup_registered=1
        fi
        ip netns add "$DC_NS" || skip "cannot create network namespace"
        _wan_namespaces+=("$DC_NS")
        ip netns add "$LT_NS" || fail "cannot create network namespace $LT_NS"
        _wan_namespaces+=("$LT_NS")
        # veth created straight into the namespaces: nothing in the root one
        ip -n "$DC_NS" link add $WAN_DEV type veth peer name $WAN_DEV netns "$LT_NS" \
                || skip "cannot create a veth pair"
        local ns
        for ns in "$DC_NS" "$LT_NS"; do
                ip -n "$ns" link set lo up
                # no IPv6 chatter (DAD, router solicitations) on the link
                ip netns exec "$ns" sysctl -qw net.ipv6.conf.$WAN_DEV.disable_ipv6=1 >/dev/null 2>&1 || true
                _wan_tbf "$ns" || skip "tc tbf unavailable"
        done
        ip -n "$DC_NS" addr add "$DC_IP/24" dev $WAN_DEV
        ip -n "$LT_NS" addr add "$LT_IP/24" dev $WAN_DEV
        link_up
        log "WAN up: dc $DC_NS $DC_IP <-> laptop $LT_NS $LT_IP, ${rate} Mbit/s, ${delay} ms each way via relays"
}

in_dc() { ip netns exec "$DC_NS" "$@"; }
in_laptop() { ip netns exec "$LT_NS" "$@"; }
roam_dc() { ROAM_HOME=$DC_HOME ip netns exec "$DC_NS" ${ROAM_WRAPPER:-} "$ROAM_BIN" "$@"; }
roam_laptop() { ROAM_HOME=$LT_HOME ip netns exec "$LT_NS" ${ROAM_WRAPPER:-} "$ROAM_BIN" "$@"; }

wan_listening() { # NS PORT: something listens on TCP PORT in NS
        [ -n "$(ip netns exec "$1" ss -Hltn "sport = :$2" 2>/dev/null)" ]
}

_wan_relay() { # NS TARGET_IP PORT LISTEN_PORT
        local ns=$1 ip=$2 port=$3 lport=${4:-$3}
        [ -n "${DC_NS:-}" ] || fail "wan_relay: call wan_setup first"
        # shellcheck disable=SC2086
        ip netns exec "$ns" "$DELAY_RELAY" --listen "127.0.0.1:$lport" --target "$ip:$port" \
                --delay-ms "$WAN_DELAY_MS" $WAN_RELAY_OPTS </dev/null >/dev/null &
        WAN_RELAY_PID=$!
        _wan_relay_pids+=("$WAN_RELAY_PID")
        local end=$((SECONDS + 10))
        until wan_listening "$ns" "$lport"; do
                kill -0 "$WAN_RELAY_PID" 2>/dev/null || fail "delay-relay on 127.0.0.1:$lport in $ns exited"
                [ $SECONDS -lt $end ] || fail "delay-relay on 127.0.0.1:$lport in $ns not listening"
                sleep 0.05
        done
}
wan_relay() { _wan_relay "$LT_NS" "$DC_IP" "$@"; }
wan_relay_dc() { _wan_relay "$DC_NS" "$LT_IP" "$@"; }
wan_relay_stop() {
        kill -TERM "$1" 2>/dev/null || return 0
        wait "$1" 2>/dev/null || true
}

link_down() {
        ip -n "$DC_NS" link set $WAN_DEV down
        ip -n "$LT_NS" link set $WAN_DEV down
}

link_up() {
        local ns ip
        for ns in "$DC_NS" "$LT_NS"; do
                if [ "$ns" = "$DC_NS" ]; then ip=$DC_IP; else ip=$LT_IP; fi
                ip -n "$ns" link set $WAN_DEV up
                # addresses and qdiscs survive a down/up; put them back if not
                ip -n "$ns" -4 addr show dev $WAN_DEV | grep -q "inet $ip/" \
                        || ip -n "$ns" addr add "$ip/24" dev $WAN_DEV
                tc -n "$ns" qdisc show dev $WAN_DEV | grep -q '^qdisc tbf' || _wan_tbf "$ns"
        done
        # both carriers up and the connected routes back
        local end=$((SECONDS + 10))
        until ip -n "$LT_NS" route get "$DC_IP" 2>/dev/null | grep -q "dev $WAN_DEV" &&
                ip -n "$DC_NS" route get "$LT_IP" 2>/dev/null | grep -q "dev $WAN_DEV" &&
                ! ip -n "$LT_NS" link show dev $WAN_DEV | grep -q NO-CARRIER &&
                ! ip -n "$DC_NS" link show dev $WAN_DEV | grep -q NO-CARRIER; do
                [ $SECONDS -lt $end ] || fail "link_up: link did not come back"
                sleep 0.05
        done
}

wan_teardown() {
        local pid ns i pids
        for pid in "${_wan_relay_pids[@]}"; do
                kill -TERM "$pid" 2>/dev/null || true
        done
        for pid in "${_wan_relay_pids[@]}"; do
                wait "$pid" 2>/dev/null || true
        done
        _wan_relay_pids=()
        for ns in "${_wan_namespaces[@]}"; do
                # whatever this test still runs in its namespaces
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
                        sleep 0.1
                done
                ip netns del "$ns" 2>/dev/null || true
        done
        _wan_namespaces=()
}
