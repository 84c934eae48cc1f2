#!/usr/bin/env bash
# Session benchmark: what a checkpoint costs, and how long a live session is
# paused when it moves to another host -- roam against QEMU's own live
# migration with storage (NBD drive-mirror), on loopback and over an emulated
# WAN (100 Mbit/s, 25 ms each way; tests/netns.sh). One table.
#
# The guest is the test guest (scripts/build-guest.sh) under TCG
# (-M pc-q35-7.2 -cpu qemu64), 256 MiB and 1 GiB of RAM, every run booted
# from a fresh overlay and moved once its workload counter reaches tick
# $SETTLE_TICK (about 2 s after boot). Measured:
#
#   1. roam session checkpoint: pause, total, chunks and bytes added; a second
#      checkpoint 10 s later; roam session restore of the latest one.
#   2. QEMU 7.2 live migration with storage (the peer; DESIGN.md "QMP
#      sequences verified"): the destination waits with -incoming defer -S
#      and exports its own overlay (same master) over NBD; the source mirrors
#      its overlay into it (drive-mirror sync=top mode=existing), then
#      migrates; the mirror is cancelled and the destination continues.
#      Downtime: QEMU's own figure (query-migrate 'downtime', source side)
#      and the guest-visible pause: the source's STOP event to the
#      destination's RESUME event (QMP timestamps, one clock).
#   3. roam session move from host A to B's 'roam serve' (both hosts run a
#      daemon), with and without its pre-copy round ("n/a" rows while the
#      command is not built); and the same "by hand", so that the table shows
#      where the time goes: a checkpoint + roam push while the guest runs,
#      then roam session pause on A, checkpoint, roam push to B's daemon,
#      roam session restore on B (for the first guest size only, unless
#      ROAM_BENCH_SESSION_ONLY is set; its "cold" part adds the by-hand
#      move without pre-copy).
#
# Bytes on the wire are counted by the kernel on the link (IP packets with
# their headers, both directions): the veth of the WAN, or the loopback
# device of a network namespace of its own for the loopback runs, so nothing
# else is counted.
#
# Every measurement runs $ROAM_BENCH_REPEAT times (default 3, interleaved);
# each row is its median run by downtime, with the range in its notes.
#
# usage: bash bench/session.sh     (as root; 10-13 minutes on 2 cores)
# env:   ROAM_BENCH_SESSION_RAM    guest sizes in MiB (default "256 1024")
#        ROAM_BENCH_SESSION_LINKS  links (default "loopback wan")
#        ROAM_BENCH_MOVE_ARGS      arguments of 'roam session move' (words
#                                  NAME, URL (B's daemon), TOKEN (a host
#                                  token of B), AURL (A's daemon, as B
#                                  reaches it) are replaced; default
#                                  "NAME --to URL --token TOKEN")
#        ROAM_BENCH_REPEAT         runs of every measurement (default 3; the
#                                  table shows the median run)
#        ROAM_BENCH_SESSION_ONLY   regex: the parts to run (checkpoint, qemu,
#                                  move, precopy, cold; default all but cold)
#        ROAM_BENCH_DOC=0          do not update docs/benchmarks.md
#        ROAM_BENCH_KEEP=1         keep the scratch directory (logs)
# shellcheck disable=SC2154 # parse_* set PREFIX_* variables by name
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/guest.sh"

RAM_SIZES=${ROAM_BENCH_SESSION_RAM:-256 1024}
LINKS=${ROAM_BENCH_SESSION_LINKS:-loopback wan}
MOVE_ARGS=${ROAM_BENCH_MOVE_ARGS:-NAME --to URL --token TOKEN}
REPEAT=${ROAM_BENCH_REPEAT:-3} # runs of every measurement; the table shows the median
SETTLE_TICK=10   # move/checkpoint once the guest printed this tick
SECOND_AFTER=10  # seconds between checkpoint 1 and 2
WAN_RATE=100     # Mbit/s
WAN_DELAY=25     # ms each way
PORT_MIG=7471    # QEMU migration stream
PORT_NBD=7472    # QEMU NBD export (drive-mirror target)
PORT_B=7450      # roam serve on host B (receiving)
PORT_A=7451      # roam serve on host A (sending; for roam session move)
MAX_BANDWIDTH=$((10 << 30)) # QEMU migrate-set-parameters max-bandwidth (7.2 default: 128 MiB/s)

bench_prereqs # root, tools, the test guest in GUEST (bench/guest.sh)


# ---- scratch, cleanup (tests/netns.sh expects tests/lib.sh's helpers) ----

LO_NS=""
bench_start rbs # T, traps, copies of the binaries (bench/guest.sh)

# The relay's buffer stands for the link's own capacity: 1 MiB is about what
# 100 Mbit/s x 50 ms RTT holds in flight plus tbf's 25 ms queue. The relay's
# default (16 MiB) lets a sender believe it is done seconds before the data
# arrives (QEMU's own downtime figure would then ignore most of the pause).
WAN_RELAY_OPTS=${WAN_RELAY_OPTS:---max-buffer-mib 1}
. "$SRC_DIR/tests/netns.sh"

# jget FILE KEY: a number from a JSON object
# to_bytes "47.7 MiB": roam's human sizes back to bytes

# ---- links ----
# For each link: NS_A/NS_B (sender/receiver namespaces), the addresses B
# listens on and A connects to, and how to read the bytes on the wire.

lo_setup() {
        LO_NS=roam-bench-lo-$$
        ip netns add "$LO_NS" || die "cannot create network namespace $LO_NS"
        # shellcheck disable=SC2016
        cleanup_add 'kill -9 $(ip netns pids "$LO_NS" 2>/dev/null) 2>/dev/null; ip netns del "$LO_NS"'
        ip -n "$LO_NS" link set lo up
}

link_select() { # LINK
        case $1 in
        loopback)
                NS_A=$LO_NS NS_B=$LO_NS
                B_LISTEN=127.0.0.1 A_LISTEN=127.0.0.1 B_FROM_A=127.0.0.1 A_FROM_B=127.0.0.1
                ;;
        wan)
                # A is the "laptop" end, B the "dc" end; A's connections to B
                # (migration, NBD, roam push) go through delaying relays
                NS_A=$LT_NS NS_B=$DC_NS
                B_LISTEN=$DC_IP A_LISTEN=$LT_IP B_FROM_A=127.0.0.1 A_FROM_B=127.0.0.1
                ;;
        esac
        LINK=$1
}

# wire_bytes: bytes (IP + link header, both directions) on the current link so far
wire_bytes() {
        if [ "$LINK" = loopback ]; then # every packet is sent and received once on lo
                ip netns exec "$LO_NS" awk '$1 == "lo:" { printf "%.0f\n", $10 }' /proc/net/dev
        else # %.0f: awk's default print turns sums past 2^31 into exponent form
                ip netns exec "$LT_NS" awk -v d="$WAN_DEV:" '$1 == d { printf "%.0f\n", $2 + $10 }' /proc/net/dev
        fi
}

# ---- helpers ----

# (last_tick, first_tick, has_tick: bench/guest.sh)
# continuity SRC_LOG DST_LOG: whether the target's first tick follows the
# source's last; when not, both consoles are kept in $BENCH_CACHE
continuity() {
        local a b next
        next=$(($(last_tick "$1") + 1))
        wait_for 30 has_tick "$2" "$next" || true
        a=$(last_tick "$1")
        b=$(first_tick "$2")
        if [ -n "$b" ] && [ "$b" = $((a + 1)) ]; then
                echo "counter continues ($a → $b)"
                return
        fi
        local keep
        keep=$BENCH_CACHE/session-failures/$(date +%Y%m%d-%H%M%S)-$SEQ
        mkdir -p "$keep"
        cp "$1" "$keep/source.serial" 2>/dev/null
        cp "$2" "$keep/target.serial" 2>/dev/null
        log "the guest did not continue on the target (tick $a → ${b:-none}); consoles kept in $keep; target's last lines:"
        tr -d '\r' <"$2" 2>/dev/null | tail -n 25 | sed 's/^/#   /' >&2
        if tr -d '\r' <"$2" 2>/dev/null | grep -q 'Kernel panic'; then
                echo "GUEST BROKEN: kernel panic on B after the move (last tick on A $a; consoles in $keep)"
        else
                echo "GUEST BROKEN: counter $a → ${b:-none} (consoles in $keep)"
        fi
}

# roam_in NS HOME ARGS...: roam with ROAM_HOME=HOME in namespace NS

# start_serve NS HOME ADDR PORT: roam serve in the background (pid in DPIDS)
start_serve() {
        local ns=$1 home=$2 addr=$3 port=$4
        ROAM_HOME=$home ip netns exec "$ns" "$ROAM_BIN" serve --listen "$addr:$port" >>"$home/serve.log" 2>&1 &
        DPIDS+=($!)
        wait_for 20 ip netns exec "$ns" curl -s -o /dev/null "http://$addr:$port/v1/info" ||
                die "roam serve on $addr:$port did not start: $(tail -n 3 "$home/serve.log")"
}

# new_home DIR: an empty ROAM_HOME with the test guest's master imported
new_home() {
        mkdir -p "$1"
        HOMES+=("$1")
        roam_in "" "$1" image import deb "$GUEST/master.img" >/dev/null 2>&1 || die "image import into $1 failed"
}
# new_session NS HOME RAM_MIB: session s1 of user alice
new_session() {
        roam_in "$1" "$2" session create s1 --image deb --user alice --ram "$3M" \
                --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" 2>/dev/null || die "session create failed"
}
SEQ=0
# homes_rm: removes the homes of the finished run and their RAM directories
session_qemu_kill() { # HOME
        local p=$1/sessions/s1/qemu.pid
        [ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null
        return 0
}

# row ID KEY SCENARIO TOOL DOWNTIME TOTAL BYTES NOTES: one run's result for
# table row ID; KEY (ms) ranks the runs of one row: the table shows the
# median run, and the range of KEY when there was more than one.
ROW_IDS=()
row() {
        local id=$1 key=$2 f
        shift 2
        f=$T/rows/$id
        mkdir -p "$T/rows"
        [ -f "$f" ] || ROW_IDS+=("$id")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "$@" >>"$f"
}
# table_rows: the median run of every row, in the order the rows first came
table_rows() {
        local id
        for id in "${ROW_IDS[@]}"; do
                sort -t $'\t' -k1,1g "$T/rows/$id" | awk -F '\t' -v OFS='\t' '
                        { line[NR] = $0; key[NR] = $1 }
                        END {
                                split(line[int((NR + 1) / 2)], f, "\t")
                                note = f[7]
                                for (i = 1; i <= NR; i++) {
                                        split(line[i], g, "\t")
                                        if (g[7] ~ /GUEST BROKEN/) broken++
                                }
                                if (broken && f[7] !~ /GUEST BROKEN/)
                                        note = note sprintf("; GUEST BROKEN after the move in %d of %d runs (see the log)", broken, NR)
                                else if (broken > 1)
                                        note = note sprintf(" (%d of %d runs)", broken, NR)
                                if (NR > 1)
                                        note = sprintf("median of %d runs (%s %.0f–%.0f ms); %s", NR,
                                                       f[2] ~ /^checkpoint/ ? "pause" : (f[2] ~ /^restore/ ? "restore" : "downtime"),
                                                       key[1], key[NR], note)
                                printf "| %s | %s | %s | %s | %s | %s |\n", f[2], f[3], f[4], f[5], f[6], note
                        }'
        done
}

# ---- 1. checkpoint and restore on one host ----

# parse_ckpt FILE PREFIX: sets PREFIX_{pause,devstate,copy,total,new,chunks,ram,ov,plain,stored}
parse_ckpt() {
        local l
        l=$(cat "$1")
        [[ $l =~ pause\ ([0-9]+)\ ms\ \(device\ state\ ([0-9]+)\ ms,\ changed\ chunks\ ([0-9]+)\ ms\),\ total\ ([0-9]+)\ ms\;\ ([0-9]+)\ of\ ([0-9]+)\ chunks\ new\ \(ram\ ([0-9]+),\ overlay\ ([0-9]+)\),\ ([0-9.]+\ [KMG]?i?B)\ new,\ ([0-9.]+\ [KMG]?i?B)\ stored ]] ||
                die "cannot parse the checkpoint line: $l"
        printf -v "$2_pause" '%s' "${BASH_REMATCH[1]}"
        printf -v "$2_devstate" '%s' "${BASH_REMATCH[2]}"
        printf -v "$2_copy" '%s' "${BASH_REMATCH[3]}"
        printf -v "$2_total" '%s' "${BASH_REMATCH[4]}"
        printf -v "$2_new" '%s' "${BASH_REMATCH[5]}"
        printf -v "$2_chunks" '%s' "${BASH_REMATCH[6]}"
        printf -v "$2_ram" '%s' "${BASH_REMATCH[7]}"
        printf -v "$2_ov" '%s' "${BASH_REMATCH[8]}"
        printf -v "$2_plain" '%s' "$(to_bytes "${BASH_REMATCH[9]}")"
        printf -v "$2_stored" '%s' "$(to_bytes "${BASH_REMATCH[10]}")"
}
# parse_restore FILE PREFIX: PREFIX_{total,files,qemu}
parse_restore() {
        local l
        l=$(cat "$1")
        [[ $l =~ in\ ([0-9]+)\ ms\ \(files\ ([0-9]+)\ ms,\ qemu\ ([0-9]+)\ ms\) ]] ||
                die "cannot parse the restore line: $l"
        printf -v "$2_total" '%s' "${BASH_REMATCH[1]}"
        printf -v "$2_files" '%s' "${BASH_REMATCH[2]}"
        printf -v "$2_qemu" '%s' "${BASH_REMATCH[3]}"
}
# parse_push FILE PREFIX: PREFIX_{chunks,bytes,secs}
parse_push() {
        local l
        l=$(cat "$1")
        [[ $l =~ :\ ([0-9]+)\ of\ ([0-9]+)\ chunks\ transferred,\ ([0-9.]+\ [KMG]?i?B)\ on\ the\ wire,\ ([0-9.]+)s ]] ||
                die "cannot parse the push line: $l"
        printf -v "$2_chunks" '%s' "${BASH_REMATCH[1]}"
        printf -v "$2_bytes" '%s' "$(to_bytes "${BASH_REMATCH[3]}")"
        printf -v "$2_secs" '%s' "${BASH_REMATCH[4]}"
}

bench_checkpoint() { # RAM_MIB
        local ram=$1 h=$T/ckpt-$1-$((++SEQ)) s
        local sz
        sz=$(gib "$ram")
        log "checkpoint, $sz guest"
        new_home "$h"
        new_session "" "$h" "$ram"
        roam_in "" "$h" session start s1 || die "session start failed"
        s=$h/sessions/s1/serial.log
        wait_tick "$s" $SETTLE_TICK
        roam_in "" "$h" session checkpoint s1 >/dev/null 2>"$T/c1" || die "checkpoint failed: $(cat "$T/c1")"
        log "$(cat "$T/c1")"
        parse_ckpt "$T/c1" c1
        sleep $SECOND_AFTER
        roam_in "" "$h" session checkpoint s1 >/dev/null 2>"$T/c2" || die "checkpoint failed: $(cat "$T/c2")"
        log "$(cat "$T/c2")"
        parse_ckpt "$T/c2" c2
        roam_in "" "$h" session stop s1 --timeout 30 2>/dev/null || die "session stop failed"
        local t0 t1
        t0=$(now)
        roam_in "" "$h" session restore s1 2>"$T/r1" || die "restore failed: $(cat "$T/r1")"
        t1=$(now)
        log "$(cat "$T/r1")"
        parse_restore "$T/r1" r1
        local cont="" n
        n=$(last_tick "$s")
        wait_for 30 has_tick "$s" $((n + 1)) && cont="; the guest runs on" || cont="; GUEST BROKEN: no tick after the restore"
        session_qemu_kill "$h"
        homes_rm

        row "ckpt1-$ram" "$c1_pause" "checkpoint 1, $sz guest" "roam" "$(fmt_ms "$c1_pause") pause" "$(fmt_s "$c1_total")" \
                "$(human "$c1_stored") stored" \
                "$c1_new of $c1_chunks chunks new (RAM $c1_ram, overlay $c1_ov), $(human "$c1_plain") plain; pause = device state $c1_devstate ms + RAM and overlay (changed chunks found and stored) $c1_copy ms"
        row "ckpt2-$ram" "$c2_pause" "checkpoint 2, ${SECOND_AFTER} s later, $sz guest" "roam" "$(fmt_ms "$c2_pause") pause" "$(fmt_s "$c2_total")" \
                "$(human "$c2_stored") stored" \
                "$c2_new of $c2_chunks chunks new (RAM $c2_ram, overlay $c2_ov), $(human "$c2_plain") plain"
        row "restore-$ram" "$r1_total" "restore of checkpoint 2 (after a clean stop), $sz guest" "roam" "-" "$(fmt_s "$r1_total")" "-" \
                "store → files $r1_files ms, QEMU start + device state + cont $r1_qemu ms; $(ms_between "$t0" "$t1") ms wall for the command$cont"
}

# ---- 2. QEMU live migration with storage ----

bench_qemu() { # RAM_MIB
        local ram=$1 n=q-$LINK-$1-$((++SEQ)) sz
        sz=$(gib "$ram")
        log "QEMU live migration with storage, $sz guest, $LINK"
        qemu_pair "$n" "$ram" "$NS_A" "$NS_B"
        wait_tick "$T/$n-src.serial" $SETTLE_TICK
        local w0 w1
        w0=$(wire_bytes)
        qemu_migrate "$n" "$B_LISTEN:$PORT_MIG" "$B_FROM_A:$PORT_MIG" "$B_LISTEN:$PORT_NBD" "$B_FROM_A:$PORT_NBD"
        w1=$(wire_bytes)
        log "$(cat "$T/$n.json")"
        local cont
        cont=$(continuity "$T/$n-src.serial" "$T/$n-dst.serial")
        qemu_pair_done "$n"
        local j=$T/$n.json
        local pause qd total mig ram_b mir_b dl ready srcd dstd
        mig_fields "$j"
        row "$LINK-$ram-qemu" "$pause" "move, $sz guest, $LINK_DESC" "QEMU 7.2 live migration + NBD drive-mirror" \
                "$(fmt_ms "$pause") guest-visible (QEMU: $(fmt_ms "$qd"))" "$(fmt_s "$total")" "$(human $((w1 - w0)))" \
                "migration stream $(human "$ram_b") + mirror $(human "$mir_b"); mirror ready after $(fmt_s "$ready"), migrate $(fmt_s "$mig"); after the source's stop: source done $(fmt_ms "$srcd"), destination has the stream $(fmt_ms "$dstd"); downtime-limit $dl ms (default), max-bandwidth 10 GiB/s; $cont"
}

# ---- 3. roam: session move, or checkpoint + push + restore by hand ----

MOVE_BUILT=0
if "$ROAM_BIN" session move --help >/dev/null 2>&1; then MOVE_BUILT=1; fi

# Two hosts: A (sender, NS_A) and B (receiver, NS_B, roam serve on PORT_B).
# The master image is on both hosts beforehand (pre-deployed), and so are the
# session's kernel and initrd (its base ref goes to B in a bundle before the
# clock runs), as for the QEMU peer, whose destination has them as files.
hosts_setup() { # DIR RAM_MIB
        HA=$1/a HB=$1/b
        new_home "$HA"
        new_home "$HB"
        TOK_B=$(roam_in "" "$HB" token create --role host)
        start_serve "$NS_B" "$HB" "$B_LISTEN" $PORT_B
        URL_B=http://$B_FROM_A:$PORT_B
        URL_A=http://$A_FROM_B:$PORT_A
        new_session "$NS_A" "$HA" "$2"
        # kernel and initrd to B by bundle (the "USB stick"), not over the link
        roam_in "" "$HA" bundle create -o "$1/base.bundle" sessions/alice/s1/base --since images/deb \
                >/dev/null 2>"$T/base.err" || die "bundle create failed: $(cat "$T/base.err")"
        roam_in "" "$HB" bundle apply "$1/base.bundle" >/dev/null 2>"$T/base.err" ||
                die "bundle apply failed: $(cat "$T/base.err")"
        rm -f "$1/base.bundle"
        roam_in "$NS_A" "$HA" session start s1 || die "session start failed"
        wait_tick "$HA/sessions/s1/serial.log" $SETTLE_TICK
}
hosts_done() {
        session_qemu_kill "$HA"
        session_qemu_kill "$HB"
        stop_serves
        homes_rm
}

bench_standin() { # RAM_MIB precopy|cold
        local ram=$1 mode=$2 sz d=$T/hand-$LINK-$1-$2-$((++SEQ))
        sz=$(gib "$ram")
        log "roam checkpoint + push + restore ($mode), $sz guest, $LINK"
        hosts_setup "$d" "$ram"
        local w0 w1 w2 tp0 tp1 pre_ms=0 pre_bytes=0 pre_note=""
        w0=$(wire_bytes)
        tp0=$(now)
        if [ "$mode" = precopy ]; then
                roam_in "$NS_A" "$HA" session checkpoint s1 >/dev/null 2>"$T/p0" || die "checkpoint failed: $(cat "$T/p0")"
                parse_ckpt "$T/p0" p0
                roam_in "$NS_A" "$HA" push "$URL_B" sessions/alice/s1/latest --token "$TOK_B" >/dev/null 2>"$T/p0.push" ||
                        die "push failed: $(cat "$T/p0.push")"
                parse_push "$T/p0.push" p0p
                tp1=$(now)
                pre_ms=$(ms_between "$tp0" "$tp1")
                pre_bytes=$(($(wire_bytes) - w0))
                pre_note="pre-copy while running $(fmt_s "$pre_ms") (checkpoint $p0_total ms, its pause $p0_pause ms; push $p0p_chunks chunks $(human "$p0p_bytes") in ${p0p_secs} s), $(human "$pre_bytes") on the wire; then "
        fi
        w1=$(wire_bytes)
        local t0 t1 t2 t3 t4 id
        t0=$(now)
        roam_in "$NS_A" "$HA" session pause s1 || die "pause failed"
        t1=$(now)
        id=$(roam_in "$NS_A" "$HA" session checkpoint s1 2>"$T/f") || die "checkpoint failed: $(cat "$T/f")"
        t2=$(now)
        roam_in "$NS_A" "$HA" push "$URL_B" sessions/alice/s1/latest --token "$TOK_B" >/dev/null 2>"$T/f.push" ||
                die "push failed: $(cat "$T/f.push")"
        t3=$(now)
        roam_in "$NS_B" "$HB" session restore s1 "$id" 2>"$T/f.restore" || die "restore on B failed: $(cat "$T/f.restore")"
        t4=$(now)
        w2=$(wire_bytes)
        log "$(cat "$T/f")"
        log "$(cat "$T/f.push")"
        log "$(cat "$T/f.restore")"
        parse_ckpt "$T/f" f
        parse_push "$T/f.push" fp
        parse_restore "$T/f.restore" fr
        local cont down total
        cont=$(continuity "$HA/sessions/s1/serial.log" "$HB/sessions/s1/serial.log")
        hosts_done
        down=$(ms_between "$t0" "$t4")
        total=$(ms_between "$tp0" "$t4")
        local label="checkpoint + push + restore, cold"
        [ "$mode" = precopy ] && label="pre-copy, then checkpoint + push + restore"
        row "$LINK-$ram-$mode" "$down" "move, $sz guest, $LINK_DESC" "roam by hand: $label" "$(fmt_ms "$down") paused on A → running on B" \
                "$(fmt_s "$total")" "$(human $((w2 - w0)))" \
                "${pre_note}pause $(ms_between "$t0" "$t1") ms, checkpoint $(ms_between "$t1" "$t2") ms ($f_new chunks new, $(human "$f_stored") stored), push $(ms_between "$t2" "$t3") ms ($fp_chunks chunks, $(human "$fp_bytes"), $(human $((w2 - w1))) on the wire), restore on B $(ms_between "$t3" "$t4") ms (files $fr_files ms, QEMU $fr_qemu ms); $cont"
}

bench_move() { # RAM_MIB precopy|cold
        local ram=$1 mode=$2 sz d=$T/move-$LINK-$1-$2-$((++SEQ)) id=$LINK-$1-move-$2
        local tool="roam session move"
        [ "$mode" = cold ] && tool="roam session move --no-precopy"
        sz=$(gib "$ram")
        if [ $MOVE_BUILT = 0 ]; then
                [ -f "$T/rows/$id" ] ||
                        row "$id" 0 "move, $sz guest, $LINK_DESC" "$tool" "n/a (roam session move not built)" "n/a" "n/a" "-"
                return
        fi
        log "$tool, $sz guest, $LINK"
        hosts_setup "$d" "$ram"
        start_serve "$NS_A" "$HA" "$A_LISTEN" $PORT_A
        local args=() a w0 w1 t0 t1 rc=0
        for a in $MOVE_ARGS; do
                case $a in
                NAME) args+=(s1) ;;
                URL) args+=("$URL_B") ;;
                AURL) args+=("$URL_A") ;;
                TOKEN) args+=("$TOK_B") ;;
                *) args+=("$a") ;;
                esac
        done
        [ "$mode" = cold ] && args+=(--no-precopy)
        w0=$(wire_bytes)
        t0=$(now)
        roam_in "$NS_A" "$HA" session move "${args[@]}" >"$T/move.out" 2>&1 || rc=$?
        t1=$(now)
        w1=$(wire_bytes)
        log "$(cat "$T/move.out")"
        local out down bytes cont
        out=$(tr '\n' ' ' <"$T/move.out")
        if [ $rc != 0 ]; then
                hosts_done
                row "$id" 999999 "move, $sz guest, $LINK_DESC" "$tool" "failed ($rc)" "-" "-" "${out:0:200}"
                return
        fi
        # "downtime N ms (paused here -> running there), total S s"
        # "bytes on the wire: X before the pause, Y during it (N chunks)"
        down=$(sed -nE 's/.*downtime ([0-9.]+) ms.*/\1/p' <<<"$out" | head -n 1)
        local pre fin nch
        if [[ $out =~ bytes\ on\ the\ wire:\ ([0-9.]+\ [KMG]?i?B)\ before\ the\ pause,\ ([0-9.]+\ [KMG]?i?B)\ during\ it\ \(([0-9]+)\ chunks\) ]]; then
                pre=$(to_bytes "${BASH_REMATCH[1]}")
                fin=$(to_bytes "${BASH_REMATCH[2]}")
                nch=${BASH_REMATCH[3]}
                bytes="$(human "$pre") before the pause, $(human "$fin") ($nch chunks) during it"
        fi
        wait_for 20 test -s "$HB/sessions/s1/serial.log" || true
        cont=$(continuity "$HA/sessions/s1/serial.log" "$HB/sessions/s1/serial.log")
        hosts_done
        local key=$down
        [[ $key =~ ^[0-9.]+$ ]] || key=$(ms_between "$t0" "$t1")
        row "$id" "$key" "move, $sz guest, $LINK_DESC" "$tool" \
                "$(if [ -n "$down" ]; then echo "$down ms paused on A → running on B"; else echo "? (not in the output)"; fi)" \
                "$(fmt_s "$(ms_between "$t0" "$t1")")" "$(human $((w1 - w0)))" \
                "roam counts ${bytes:-no bytes} (HTTP bodies); $cont"
}

# ---- run ----

ROAM_VERSION=$(git -C "$SRC_DIR" describe --always --dirty 2>/dev/null || echo '?')
QEMU_VERSION=$(qemu-system-x86_64 --version | head -n 1 | sed 's/ (.*//')
log "roam $ROAM_VERSION; $QEMU_VERSION"
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

# want PART: whether this part runs (ROAM_BENCH_SESSION_ONLY: a regex over
# checkpoint, qemu, move, precopy, cold; by default all but cold, the
# by-hand move without pre-copy, which 'roam session move --no-precopy'
# measures as well)
want() { [[ $1 =~ ${ROAM_BENCH_SESSION_ONLY:-^(checkpoint|qemu|move|precopy)$} ]]; }

for ram in $RAM_SIZES; do
        for ((rep = 1; rep <= REPEAT; rep++)); do
                if want checkpoint; then bench_checkpoint "$ram"; fi
        done
done

for l in $LINKS; do
        case $l in
        loopback)
                lo_setup
                LINK_DESC="loopback"
                ;;
        wan)
                wan_setup $WAN_RATE $WAN_DELAY
                # A's connections to B: migration, NBD, roam push; B's to A (move)
                wan_relay $PORT_MIG
                wan_relay $PORT_NBD
                wan_relay $PORT_B
                wan_relay_dc $PORT_A
                LINK_DESC="WAN ${WAN_RATE} Mbit/s, ${WAN_DELAY} ms each way"
                ;;
        *) die "unknown link '$l' (loopback, wan)" ;;
        esac
        link_select "$l"
        for ram in $RAM_SIZES; do
                for ((rep = 1; rep <= REPEAT; rep++)); do
                        log "--- $LINK, $(gib "$ram"), run $rep of $REPEAT"
                        if want qemu; then bench_qemu "$ram"; fi
                        if want move; then bench_move "$ram" cold; fi
                        if want move; then bench_move "$ram" precopy; fi
                        # by hand: the first size only, unless asked for
                        if [ "$ram" = "${RAM_SIZES%% *}" ] || [ -n "${ROAM_BENCH_SESSION_ONLY:-}" ]; then
                                if want cold; then bench_standin "$ram" cold; fi
                                if want precopy; then bench_standin "$ram" precopy; fi
                        fi
                done
        done
done

ELAPSED=$(($(date +%s) - BENCH_T0))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
log "done in ${ELAPSED}s"

# ---- output ----

TABLE=$T/table.md
{
        echo "| scenario | tool | downtime | total time | bytes | notes |"
        echo "| --- | --- | ---: | ---: | ---: | --- |"
        table_rows
} >"$TABLE"
cat "$TABLE"

[ "${ROAM_BENCH_DOC:-1}" = 0 ] && exit 0
DOC=$T/section.md
{
        cat <<EOF
## Session: checkpoint, restore, and moving a live session (roam vs QEMU live migration)

Guest: the test guest (\`scripts/build-guest.sh\`: Debian 6.1 kernel, busybox,
ext4 master of 256 MiB; its workload prints and fsyncs a counter every 0.2 s)
under TCG, \`-M pc-q35-7.2 -cpu qemu64 -smp 1\`, RAM in a shared file in
/dev/shm. Every run boots a fresh overlay and acts at tick $SETTLE_TICK
(about 2 s after the guest is up). The two hosts are two roam homes (two
QEMUs, two daemons) on this one machine, so both ends share its 2 cores.

EOF
        cat "$TABLE"
        cat <<EOF

* Each row is the median of $REPEAT runs (by downtime; the notes give the
  range). Bytes are decimal (1 MB = 10^6 bytes).
* **checkpoint** rows: \`roam session checkpoint\` of the running guest
  (downtime = the guest's pause as roam prints it; total = until the
  checkpoint is in the store). Bytes are what the store grew by (zstd);
  "plain" is the same chunks uncompressed. The restore row is
  \`roam session restore\` of checkpoint 2 after a clean stop.
* **move** rows: host A hands the live session to host B, over loopback
  (both ends in one network namespace of their own) or over the emulated
  WAN (tests/netns.sh: tbf ${WAN_RATE} Mbit/s on a veth pair, and a delaying
  relay adding ${WAN_DELAY} ms each way, with a 1 MiB buffer, about what such
  a link holds in flight; all of A's connections to B go through it).
  "bytes" is what the kernel counted on that link during the measured
  interval (IP packets with headers, both directions). The master image,
  kernel and initrd are on both hosts beforehand in every case.
* **QEMU 7.2**: the destination QEMU waits (\`-incoming defer -S\`) and
  exports its own overlay (over the same master) through NBD; the source
  runs \`drive-mirror sync=top mode=existing\` into it, waits for
  BLOCK_JOB_READY, \`migrate\`s (max-bandwidth raised to 10 GiB/s,
  downtime-limit at its default), \`block-job-cancel\`s the mirror, and the
  destination \`cont\`s. "guest-visible" downtime runs from the source's
  STOP event to the destination's RESUME event (QMP timestamps, one clock);
  QEMU's own \`downtime\` (query-migrate) ends when the source has written
  its last bytes into the socket. On the WAN the tail of the stream is then
  still in buffers on the way, and the destination has it only hundreds of
  milliseconds later (the notes give both instants). Total: \`drive-mirror\`
  to RESUME. QEMU sends RAM uncompressed (zero pages as markers); its
  stream is counted in "migration stream".
* **roam session move**: \`roam session move s1 --to URL\` on A, B being a
  \`roam serve\`; downtime and the split of the bytes as roam prints them,
  total = the command's wall time. Its pre-copy pushes a checkpoint while the
  guest runs; \`--no-precopy\` pushes everything during the pause.
* **roam by hand**: the same steps as separate commands, timed one by one:
  a checkpoint and \`roam push\` while the guest runs (the pre-copy), then
  \`roam session pause\` on A, \`roam session checkpoint\`, \`roam push\` of
  \`sessions/alice/s1/latest\` to B's daemon, \`roam session restore s1 ID\`
  on B (which adopts the session). Downtime = the pause command's start to
  the restore command's return (the guest runs on B).
  (256 MiB only: the steps cost the same at 1 GiB.)
* "counter continues (a → b)": the guest's counter on B's console starts
  right after the last one on A's: the same boot, nothing lost, nothing
  repeated. "GUEST BROKEN" flags runs where it did not (the consoles are
  kept in $BENCH_CACHE/session-failures).

Run $(date +%Y-%m-%d) on $(BENCH_CACHE=/dev/shm machine); load average at the start $LOAD, at the end $LOAD_END
(other work on the machine shows up as noise, mostly in roam's CPU-bound steps);
roam $ROAM_VERSION; $QEMU_VERSION; ${ELAPSED} s for the whole run.
Command: \`bash bench/session.sh\`.
EOF
} >"$DOC"
doc_section session "$DOC"
log "wrote the session section of docs/benchmarks.md"
