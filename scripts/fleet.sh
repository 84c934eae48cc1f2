#!/usr/bin/env bash
# A real local fleet for roam's tests and demo: a 3-member etcd cluster and a
# single-host Ceph cluster (1 mon, 1 mgr, 1-3 bluestore OSDs on files), all
# under one directory, from Debian's packages, no cephadm, no systemd units.
#
# usage: scripts/fleet.sh up DIR       start (initialises DIR on first use)
#        scripts/fleet.sh down DIR     stop every daemon it started there
#        scripts/fleet.sh status DIR   which daemons run
#        scripts/fleet.sh stop DIR NAME / start DIR NAME
#                                      one daemon: etcd1..etcd3, mon, mgr, osd0..osd2
#
# Settings (environment, read by 'up' on first use and kept in DIR/fleet.env):
#   FLEET_IP=127.0.0.1     address every daemon listens on (tests run the fleet in
#                          a network namespace of its own and set its address)
#   FLEET_PORT=23790       base of the ports: etcd clients BASE, +2, +4 (peers +1, +3,
#                          +5), the mon BASE+10, OSDs and mgr BASE+20..BASE+79
#   FLEET_OSDS=2           1-3; the pool keeps min(OSDS, 2) copies (min_size 1)
#   FLEET_POOL=roam        the RADOS pool made for roam
#   FLEET_OSD_GB=8         each OSD's block file (sparse)
#
# After 'up', DIR/fleet.env holds FLEET_ETCD (client URLs, comma-separated),
# FLEET_CEPH_CONF and FLEET_POOL, for `. DIR/fleet.env`, and DIR/ceph/ceph.conf
# with the admin keyring beside it works for `ceph -c DIR/ceph/ceph.conf -s`.
# Daemons run in their own sessions (setsid), logs in DIR/log, pids in DIR/run.
set -euo pipefail

die() { echo "fleet: $*" >&2; exit 1; }
say() { [ -n "${FLEET_QUIET:-}" ] || echo "fleet: $*" >&2; }

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

[ $# -ge 2 ] || usage
cmd=$1
D=$2
case $D in /*) ;; *) D=$PWD/$D ;; esac

need_tools() {
        local t miss=()
        for t in etcd etcdctl ceph ceph-mon ceph-mgr ceph-osd ceph-authtool monmaptool uuidgen curl; do
                command -v "$t" >/dev/null 2>&1 || miss+=("$t")
        done
        [ ${#miss[@]} -eq 0 ] || die "missing ${miss[*]} (run: scripts/deps.sh fleet)"
}

load_env() {
        [ -f "$D/fleet.env" ] || die "'$D' holds no fleet (run: scripts/fleet.sh up $D)"
        # shellcheck disable=SC1091
        . "$D/fleet.env"
        IP=$FLEET_IP
        BASE=$FLEET_PORT
        NOSD=$FLEET_OSDS
        CONF=$FLEET_CEPH_CONF
}

etcd_client_port() { echo $((BASE + 2 * ($1 - 1))); }
etcd_peer_port() { echo $((BASE + 2 * ($1 - 1) + 1)); }

pid_of() { # NAME: the pid of a daemon that runs, else nothing
        local f=$D/run/$1.pid p
        [ -f "$f" ] || return 0
        p=$(cat "$f")
        [ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"
        return 0
}

spawn() { # NAME CMD...: run CMD in a new session, pid in DIR/run/NAME.pid
        local name=$1
        shift
        [ -z "$(pid_of "$name")" ] || return 0
        setsid "$@" </dev/null >>"$D/log/$name.out" 2>&1 &
        echo $! >"$D/run/$name.pid"
}

ceph_() { timeout 60 ceph -c "$CONF" --connect-timeout 20 "$@"; }

wait_until() { # SECONDS WHAT CMD...
        local t=$1 what=$2 end
        shift 2
        end=$((SECONDS + t))
        until "$@" >/dev/null 2>&1; do
                [ $SECONDS -lt $end ] || die "$what did not come up within ${t}s (logs: $D/log)"
                sleep 0.5
        done
}

start_etcd() { # N
        local n=$1 i cluster=""
        for i in 1 2 3; do
                cluster+="${cluster:+,}etcd$i=http://$IP:$(etcd_peer_port "$i")"
        done
        local state=new
        [ -d "$D/etcd/etcd$n/member" ] && state=existing
        # small and quiet: no auto-compaction work, a 256 MiB quota, heartbeats
        # a little slower than the default for a loaded 2-core machine
        spawn "etcd$n" etcd --name "etcd$n" --data-dir "$D/etcd/etcd$n" \
                --listen-client-urls "http://$IP:$(etcd_client_port "$n")" \
                --advertise-client-urls "http://$IP:$(etcd_client_port "$n")" \
                --listen-peer-urls "http://$IP:$(etcd_peer_port "$n")" \
                --initial-advertise-peer-urls "http://$IP:$(etcd_peer_port "$n")" \
                --initial-cluster "$cluster" --initial-cluster-state "$state" \
                --initial-cluster-token "roam-fleet-$FLEET_FSID" \
                --heartbeat-interval 200 --election-timeout 2000 \
                --snapshot-count 5000 --quota-backend-bytes $((256 << 20)) \
                --auto-compaction-mode revision --auto-compaction-retention 10000
}

etcd_healthy() { # N
        curl -sf -m 2 "http://$IP:$(etcd_client_port "$1")/health" | grep -q '"health":"true"'
}

write_conf() {
        local osd_bind_min=$((BASE + 20)) osd_bind_max=$((BASE + 79)) size=$NOSD
        [ "$size" -le 2 ] || size=2
        cat >"$CONF" <<EOF
# written by scripts/fleet.sh: a single-host test cluster, small and loopback-only
[global]
fsid = $FLEET_FSID
mon host = v1:$IP:$((BASE + 10))
ms bind msgr2 = false
public network = $IP/32
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $D/ceph/keyring
run dir = $D/run
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
pid file = $D/run/\$name.ceph.pid
crash dir = $D/ceph/crash
ms bind port min = $osd_bind_min
ms bind port max = $osd_bind_max
osd pool default size = $size
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
mon osd full ratio = .98
mon osd nearfull ratio = .96
mon osd backfillfull ratio = .97
auth allow insecure global id reclaim = false
osd failsafe full ratio = .99
# one core for five engineers: few threads, small caches
osd op num shards = 1
osd op num threads per shard = 2
osd memory target = 536870912
osd memory cache min = 67108864
bluestore cache autotune = false
bluestore cache size = 67108864
rocksdb cache size = 16777216
ms async op threads = 1
mgr initial modules =
mgr stats period = 30
mon stat smooth intervals = 2
debug default = 0/0
[mon]
mon data = $D/ceph/mon.\$id
mon cluster log file = $D/log/cluster.log
[mgr]
mgr data = $D/ceph/mgr.\$id
keyring = $D/ceph/mgr.\$id/keyring
[osd]
osd data = $D/ceph/osd.\$id
keyring = $D/ceph/osd.\$id/keyring
osd objectstore = bluestore
bluestore block create = true
bluestore block size = $((FLEET_OSD_GB << 30))
bluestore block db create = false
bluestore block wal create = false
bluestore fsck on mkfs = false
bdev enable discard = false
osd max object size = 134217728
EOF
}

init_ceph() {
        local keyring=$D/ceph/keyring
        mkdir -p "$D/ceph/mon.a" "$D/ceph/mgr.x" "$D/ceph/crash"
        write_conf
        ceph-authtool --create-keyring "$keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
        ceph-authtool "$keyring" --gen-key -n client.admin \
                --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
        ceph-authtool "$keyring" --gen-key -n mgr.x \
                --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *' >/dev/null
        ceph-authtool "$keyring" -n mgr.x --print-key >/dev/null
        ceph-authtool --create-keyring "$D/ceph/mgr.x/keyring" -n mgr.x \
                --add-key "$(ceph-authtool "$keyring" -n mgr.x --print-key)" >/dev/null
        monmaptool --create --clobber --fsid "$FLEET_FSID" --addv a "[v1:$IP:$((BASE + 10))]" \
                "$D/ceph/monmap" >/dev/null
        ceph-mon -c "$CONF" --mkfs -i a --monmap "$D/ceph/monmap" --keyring "$keyring" \
                >>"$D/log/mkfs.out" 2>&1 || die "ceph-mon --mkfs failed: $(tail -3 "$D/log/mkfs.out")"
}

start_mon() { spawn mon ceph-mon -f -c "$CONF" -i a; }
start_mgr() { spawn mgr ceph-mgr -f -c "$CONF" -i x; }
start_osd() { spawn "osd$1" ceph-osd -f -c "$CONF" -i "$1"; }

init_osd() { # N: make osd.N (the mon must run)
        local n=$1 dir=$D/ceph/osd.$1 uuid key id
        [ -f "$dir/fsid" ] && return 0
        mkdir -p "$dir"
        uuid=$(uuidgen)
        key=$(ceph-authtool --gen-print-key)
        printf '{"cephx_secret": "%s"}\n' "$key" >"$dir/new.json"
        id=$(ceph_ osd new "$uuid" "$n" -i "$dir/new.json") || die "ceph osd new failed for osd.$n"
        [ "$id" = "$n" ] || die "ceph osd new gave osd.$id, wanted osd.$n"
        rm -f "$dir/new.json"
        ceph-authtool --create-keyring "$dir/keyring" --name "osd.$n" --add-key "$key" >/dev/null
        ceph-osd -c "$CONF" -i "$n" --mkfs --osd-uuid "$uuid" --keyring "$dir/keyring" \
                >>"$D/log/mkfs.out" 2>&1 || die "ceph-osd --mkfs failed for osd.$n: $(tail -3 "$D/log/mkfs.out")"
}

osds_up() { # N: at least N OSDs up
        local up
        up=$(ceph_ osd stat -f json | sed -n 's/.*"num_up_osds":\([0-9]*\).*/\1/p')
        [ -n "$up" ] && [ "$up" -ge "$1" ]
}

pool_ready() {
        ceph_ pg stat | grep -q "active+clean" &&
                ! ceph_ pg stat | grep -Eq "peering|creating|unknown|activating|inactive"
}

cmd_up() {
        need_tools
        mkdir -p "$D/run" "$D/log" "$D/etcd" "$D/ceph"
        if [ ! -f "$D/fleet.env" ]; then
                FLEET_IP=${FLEET_IP:-127.0.0.1}
                FLEET_PORT=${FLEET_PORT:-23790}
                FLEET_OSDS=${FLEET_OSDS:-2}
                FLEET_POOL=${FLEET_POOL:-roam}
                FLEET_OSD_GB=${FLEET_OSD_GB:-8}
                [[ $FLEET_OSDS =~ ^[123]$ ]] || die "FLEET_OSDS must be 1, 2 or 3, not '$FLEET_OSDS'"
                [[ $FLEET_PORT =~ ^[0-9]+$ && $FLEET_PORT -ge 1024 && $FLEET_PORT -le 65000 ]] ||
                        die "FLEET_PORT must be a port from 1024 to 65000, not '$FLEET_PORT'"
                local etcd_urls="" i
                BASE=$FLEET_PORT
                for i in 1 2 3; do
                        etcd_urls+="${etcd_urls:+,}http://$FLEET_IP:$(etcd_client_port "$i")"
                done
                cat >"$D/fleet.env.tmp" <<EOF
FLEET_IP=$FLEET_IP
FLEET_PORT=$FLEET_PORT
FLEET_OSDS=$FLEET_OSDS
FLEET_POOL=$FLEET_POOL
FLEET_OSD_GB=$FLEET_OSD_GB
FLEET_FSID=$(uuidgen)
FLEET_ETCD=$etcd_urls
FLEET_CEPH_CONF=$D/ceph/ceph.conf
EOF
                mv "$D/fleet.env.tmp" "$D/fleet.env"
        fi
        load_env
        local t0=$SECONDS i
        # a port taken by someone else: say so now, not as a daemon's log line
        for i in 1 2 3; do
                if [ -z "$(pid_of "etcd$i")" ] && curl -s -m 1 -o /dev/null "http://$IP:$(etcd_client_port "$i")/health"; then
                        die "port $(etcd_client_port "$i") on $IP is taken (set FLEET_PORT to another base)"
                fi
        done
        for i in 1 2 3; do start_etcd "$i"; done
        [ -f "$D/ceph/mon.a/keyring" ] || init_ceph
        start_mon
        wait_until 60 "the ceph mon" ceph_ mon stat
        start_mgr
        for ((i = 0; i < NOSD; i++)); do
                init_osd "$i"
                start_osd "$i"
        done
        for i in 1 2 3; do wait_until 60 "etcd member $i" etcd_healthy "$i"; done
        wait_until 90 "$NOSD OSDs" osds_up "$NOSD"
        if ! ceph_ osd pool ls | grep -qx "$FLEET_POOL"; then
                ceph_ osd pool create "$FLEET_POOL" 8 8 replicated >/dev/null 2>&1 ||
                        die "cannot create pool '$FLEET_POOL': $(ceph_ osd pool create "$FLEET_POOL" 8 2>&1 | tail -1)"
                if [ "$NOSD" = 1 ]; then
                        ceph_ osd pool set "$FLEET_POOL" size 1 --yes-i-really-mean-it >/dev/null
                fi
                ceph_ osd pool application enable "$FLEET_POOL" roam >/dev/null 2>&1
        fi
        wait_until 90 "pool '$FLEET_POOL'" pool_ready
        say "up in $((SECONDS - t0))s: etcd $FLEET_ETCD; ceph $CONF, pool $FLEET_POOL, $NOSD OSD(s)"
}

stop_one() { # NAME
        local p
        p=$(pid_of "$1")
        [ -n "$p" ] || { rm -f "$D/run/$1.pid"; return 0; }
        kill -TERM "$p" 2>/dev/null || true
        local end=$((SECONDS + 20))
        while kill -0 "$p" 2>/dev/null; do
                if [ $SECONDS -ge $end ]; then
                        kill -KILL "$p" 2>/dev/null || true
                        break
                fi
                sleep 0.2
        done
        rm -f "$D/run/$1.pid"
}

all_names() {
        local i
        for ((i = NOSD - 1; i >= 0; i--)); do echo "osd$i"; done
        echo mgr
        echo mon
        echo etcd1
        echo etcd2
        echo etcd3
}

cmd_down() {
        [ -f "$D/fleet.env" ] || { say "nothing to stop in $D"; return 0; }
        load_env
        local n
        # OSDs first (they would otherwise wait for the mon), then the rest
        for n in $(all_names); do stop_one "$n" & done
        wait
        say "down: $D"
}

cmd_status() {
        load_env
        local n p rc=0
        for n in $(all_names); do
                p=$(pid_of "$n")
                if [ -n "$p" ]; then echo "$n running (pid $p)"; else echo "$n stopped"; rc=3; fi
        done
        return $rc
}

valid_name() {
        case $1 in
        etcd[123] | mon | mgr) return 0 ;;
        osd[0-2]) [ "${1#osd}" -lt "$NOSD" ] ;;
        *) return 1 ;;
        esac
}

case $cmd in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
stop | start)
        [ $# -eq 3 ] || usage
        load_env
        valid_name "$3" || die "no daemon '$3' in this fleet (etcd1..etcd3, mon, mgr, osd0..osd$((NOSD - 1)))"
        if [ "$cmd" = stop ]; then
                stop_one "$3"
        else
                case $3 in
                etcd*) start_etcd "${3#etcd}" ;;
                mon) start_mon ;;
                mgr) start_mgr ;;
                osd*) start_osd "${3#osd}" ;;
                esac
        fi
        ;;
-h | --help | help) usage 0 ;;
*) usage ;;
esac
