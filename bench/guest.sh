# Helpers of the benchmarks that run the test guest (bench/session.sh,
# bench/handoff.sh): sourced after bench/lib.sh; bench_prereqs, then
# bench_start TAG, then the rest.

# bench_prereqs: root, the tools, the roam binary, TCG; builds (or finds
# cached) the test guest in GUEST; BENCH_T0 = the start
bench_prereqs() {
        [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
        local t rc=0
        for t in qemu-system-x86_64 qemu-img python3 ip tc curl ss sha256sum; do
                command -v "$t" >/dev/null || die "needs $t"
        done
        [ -x "$ROAM_BIN" ] || die "no roam binary at $ROAM_BIN (run: make)"
        export ROAM_ACCEL=tcg
        BENCH_T0=$(date +%s)
        GUEST=$BUILD_DIR/guest
        log "building the test guest (cached)"
        bash "$SRC_DIR/scripts/build-guest.sh" "$GUEST" >/dev/null 2>&1 || rc=$?
        [ $rc = 0 ] || die "scripts/build-guest.sh $GUEST failed ($rc; 3: no packages and no cache)"
}

cleanup_add() { _cleanups+=("$*"); }
fail() { die "$*"; }
skip() { die "cannot run here: $*"; }
requires_root() { :; }

wait_for() {
        local t=$1
        shift
        local end=$((SECONDS + t))
        until "$@" >/dev/null 2>&1; do
                [ $SECONDS -lt $end ] || return 1
                sleep 0.1
        done
}
ram_dir_of() { printf '/dev/shm/roam-%s' "$(printf '%s' "$1" | sha256sum | cut -c1-12)"; }

# kill_pidfile FILE: SIGKILL the QEMU that wrote FILE, if it still runs (a
# pid is only trusted while its command line names that pid file: pids are
# reused) and remove FILE
# (ALSO: another pid file name the QEMU's command line may give: a QEMU a
# restore took from warm/NAME names warm/NAME/qemu.pid)
kill_pidfile() {
        local f=$1 also=${2:-$1} pid
        [ -f "$f" ] || return 0
        pid=$(cat "$f" 2>/dev/null) || pid=""
        if [[ $pid =~ ^[0-9]+$ ]] && grep -qaF -e "$f" -e "$also" "/proc/$pid/cmdline" 2>/dev/null; then
                kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$f"
}

kill_qemus() {
        local p h
        for p in "${QPIDS[@]}"; do kill_pidfile "$p"; done
        for h in "${HOMES[@]}"; do
                for p in "$h"/sessions/*/qemu.pid; do
                        kill_pidfile "$p" "$h/warm/$(basename "$(dirname "$p")")/qemu.pid"
                done
                for p in "$h"/warm/*/qemu.pid; do kill_pidfile "$p"; done
        done
        return 0
}

stop_serves() {
        local p
        for p in "${DPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
        for p in "${DPIDS[@]}"; do wait "$p" 2>/dev/null || true; done
        DPIDS=()
}

jget() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
to_bytes() {
        awk -v s="$1" 'BEGIN { split(s, a, " "); m = 1
                if (a[2] == "KiB") m = 1024; else if (a[2] == "MiB") m = 1048576
                else if (a[2] == "GiB") m = 1073741824
                printf "%.0f", a[1] * m }'
}
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
fmt_s() { awk -v ms="$1" 'BEGIN { if (ms >= 1000) printf "%.2f s", ms / 1000; else printf "%.0f ms", ms }'; }
fmt_ms() { awk -v ms="$1" 'BEGIN { printf "%.0f ms", ms }'; }
gib() { awk -v m="$1" 'BEGIN { if (m >= 1024) printf "%g GiB", m / 1024; else printf "%d MiB", m }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f%%", 100 * a / b }'; }
# mig_fields JSON: bench/qmp-migrate.py's figures into the caller's (local)
# pause qd total mig ram_b mir_b dl ready srcd dstd
mig_fields() {
        read -r pause qd total mig ram_b mir_b dl ready srcd dstd < <(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print(*(j[k] for k in ("guest_pause_ms", "qemu_downtime_ms", "total_ms", "migrate_total_ms", "ram_transferred",
                       "mirror_bytes", "downtime_limit_ms", "mirror_ready_ms", "src_completed_ms",
                       "dst_completed_ms")))' "$1")
}

# the guest's console: "tick N" lines
last_tick() { tr -d '\r' <"$1" | sed -n 's/^tick \([0-9]*\)$/\1/p' | tail -n 1; }
first_tick() { tr -d '\r' <"$1" | sed -n 's/^tick \([0-9]*\)$/\1/p' | head -n 1; }
has_tick() { tr -d '\r' <"$1" 2>/dev/null | grep -qx "tick $2"; }
wait_tick() { # FILE N
        wait_for 180 has_tick "$1" "$2" || die "no 'tick $2' in $1: $(tail -n 3 "$1" 2>/dev/null)"
}

roam_in() {
        local ns=$1 home=$2
        shift 2
        if [ -n "$ns" ]; then
                ROAM_HOME=$home ip netns exec "$ns" "$ROAM_BIN" "$@"
        else
                ROAM_HOME=$home "$ROAM_BIN" "$@"
        fi
}

homes_rm() {
        local h
        for h in "${HOMES[@]}"; do
                rm -rf "$(ram_dir_of "$h")"
                [ "${ROAM_BENCH_KEEP:-0}" = 1 ] || rm -rf "$h"
        done
        HOMES=()
}

QEMU_VGA=(-device VGA)
qemu_vm() { # NS NAME RAM_MIB OVERLAY [EXTRA...]: the command line roam uses; QEMU_VGA: the display device(s)
        local ns=$1 n=$2 ram=$3 ov=$4
        shift 4
        QPIDS+=("$T/$n.pid")
        ip netns exec "$ns" qemu-system-x86_64 -M pc-q35-7.2,memory-backend=mem -accel tcg -cpu qemu64 \
                -m "$ram" -smp 1 \
                -object "memory-backend-file,id=mem,size=${ram}M,mem-path=/dev/shm/$BENCH_TAG-$$-$n.ram,share=on" \
                -nodefaults -no-reboot -no-shutdown -display none "${QEMU_VGA[@]}" \
                -chardev "file,id=serial0,path=$T/$n.serial,append=on" -serial chardev:serial0 \
                -qmp "unix:$T/$n.qmp,server=on,wait=off" -vnc "unix:$T/$n.vnc" \
                -kernel "$GUEST/vmlinux" -initrd "$GUEST/initrd.img" -append 'console=ttyS0 quiet panic=-1' \
                -drive "file=$ov,format=qcow2,if=virtio,cache=writeback,discard=unmap,id=disk0,node-name=disk0-fmt" \
                -daemonize -pidfile "$T/$n.pid" "$@" 2>"$T/$n.err" || die "qemu $n failed: $(cat "$T/$n.err")"
}

qemu_quit() { # NAME
        kill_pidfile "$T/$1.pid"
        rm -f "/dev/shm/$BENCH_TAG-$$-$1.ram"
}

# ---- QEMU live migration with storage: the peer roam is measured against ----

QMPDRV=$SRC_DIR/bench/qmp-migrate.py # DESIGN.md's verified sequence, one driver for both benches

# qemu_pair NAME RAM_MIB SRC_NS DST_NS: QEMU NAME-src booted in SRC_NS and
# NAME-dst waiting for it (-incoming defer) in DST_NS, each on its own overlay
# over a copy of the test guest's master (QEMU_MASTER, made once)
qemu_pair() {
        local n=$1 ram=$2
        [ -f "$QEMU_MASTER" ] || { cp --sparse=always "$GUEST/master.img" "$QEMU_MASTER" && chmod 444 "$QEMU_MASTER"; }
        qemu-img create -q -f qcow2 -F raw -b "$QEMU_MASTER" "$T/$n-src.qcow2"
        qemu-img create -q -f qcow2 -F raw -b "$QEMU_MASTER" "$T/$n-dst.qcow2"
        qemu_vm "$3" "$n-src" "$ram" "$T/$n-src.qcow2"
        qemu_vm "$4" "$n-dst" "$ram" "$T/$n-dst.qcow2" -incoming defer -S
}

# qemu_migrate NAME MIG_LISTEN MIG_CONNECT NBD_LISTEN NBD_CONNECT [MAX_S]:
# bench/qmp-migrate.py moves NAME-src to NAME-dst (max-bandwidth
# MAX_BANDWIDTH; cancelled after MAX_S seconds); its figures in $T/NAME.json
qemu_migrate() {
        local n=$1
        python3 "$QMPDRV" "$T/$n-src.qmp" "$T/$n-dst.qmp" "$2" "$3" "$4" "$5" "$MAX_BANDWIDTH" ${6:+"$6"} \
                >"$T/$n.json" 2>"$T/$n.drv.err" || die "QEMU migration failed: $(tail -n 3 "$T/$n.drv.err")"
}

# qemu_pair_done NAME: both QEMUs of qemu_pair end, their overlays go
qemu_pair_done() {
        qemu_quit "$1-src"
        qemu_quit "$1-dst"
        rm -f "$T/$1-src.qcow2" "$T/$1-dst.qcow2"
}

# bench_cleanup: at exit, every QEMU and daemon the bench started goes, then
# what cleanup_add registered, the RAM files, and $T (ROAM_BENCH_KEEP=1 keeps it)
bench_cleanup() {
        local rc=$? i h
        trap - EXIT INT TERM
        set +e
        kill_qemus
        stop_serves
        for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
                eval "${_cleanups[$i]}" >/dev/null 2>&1
        done
        for h in "${HOMES[@]}"; do rm -rf "$(ram_dir_of "$h")"; done
        rm -f "/dev/shm/$BENCH_TAG-$$-"*.ram
        if [ "${ROAM_BENCH_KEEP:-0}" = 1 ]; then log "kept $T"; else rm -rf "$T"; fi
        exit $rc
}

# bench_start TAG: the scratch directory T (/tmp/TAG.XXXXXX: short, unix
# socket paths live below it), the lists bench_cleanup works through, the exit
# trap, and copies of the binaries to run (a 'make' during the run must not
# swap them): ROAM_BIN, DELAY_RELAY
bench_start() {
        BENCH_TAG=$1 # the QEMU peers' RAM files: /dev/shm/TAG-PID-NAME.ram
        T=$(mktemp -d "/tmp/$BENCH_TAG.XXXXXX")
        _cleanups=()
        HOMES=() # every ROAM_HOME used: their QEMUs die, their RAM dirs go
        QPIDS=() # pid files of the QEMU peers
        QEMU_MASTER=$T/master.img # their master image (qemu_pair)
        DPIDS=() # roam serve daemons
        trap bench_cleanup EXIT
        trap 'exit 130' INT TERM
        # laptops are encrypted by default: their daemons and commands unlock with this
        printf 'roam bench passphrase\n' >"$T/passphrase"
        export ROAM_PASSPHRASE_FILE=$T/passphrase
        mkdir "$T/bin"
        cp "$ROAM_BIN" "$T/bin/roam"
        ROAM_BIN=$T/bin/roam
        cp "$BUILD_DIR/tests/tools/delay-relay" "$T/bin/delay-relay" 2>/dev/null ||
                die "no $BUILD_DIR/tests/tools/delay-relay (run: make)"
        DELAY_RELAY=$T/bin/delay-relay
}
