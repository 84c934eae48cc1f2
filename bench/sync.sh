#!/usr/bin/env bash
# Sync benchmark: roam pull store to store, on loopback and over the emulated
# WAN, and the changed image against rsync over the same WAN link; one table.
#
# Corpus: bench/store.sh's images in $ROAM_BENCH_CACHE (default
# /var/tmp/roam-bench), base-vN.img (a Debian root filesystem, 1.6 GB raw) and
# session-vN.img (the same after a user session's writes). Missing, they are
# built by running bench/store.sh (its section of docs/benchmarks.md is left
# alone).
#
# Measured (a server home with both images imported, every pull into a fresh
# client home; the server's chunks are in the page cache; sync before each pull):
#   1. loopback: `roam serve` on 127.0.0.1, `roam pull URL base` with the
#      default parallelism and with --parallel 2, 4, 8: raw image MB/s and
#      wire MB/s (median of $ROAM_BENCH_REPEAT runs)
#   2. WAN (tests/netns.sh: tbf 100 Mbit/s both ways, delay-relay 25 ms each
#      way): the daemon in the dc namespace, the client in the laptop
#      namespace through wan_relay: goodput as % of 100 Mbit/s; the link's
#      own counters (frames, both directions) and the time the link sat idle
#   3. the session image pulled after the base over the same WAN: roam against
#      rsync (daemon in the dc namespace, a second relay; the session image
#      rsynced onto a copy of the base image with --no-whole-file --inplace),
#      bytes counted by each tool and by the link, and times
#
# usage: bash bench/sync.sh
# env:   ROAM_BENCH_CACHE   corpus cache directory (default /var/tmp/roam-bench)
#        ROAM_BENCH_REPEAT  timed pulls per setting (default 5; on the WAN at most 3)
#        ROAM_BENCH_PARALLEL  --parallel values tried (default "2 4 8")
#        ROAM_BENCH_WAIT=0  do not wait out ext4's slow inode allocation after
#                           the last benchmark's big delete (see bench/store.sh)
#        ROAM_BENCH_DOC=0   do not update docs/benchmarks.md
#        ROAM_BENCH_PAGES=0 skip page references in a take offline at the end (bench/pages.sh)
. "$(dirname "$0")/lib.sh"

REPEAT=${ROAM_BENCH_REPEAT:-5}
WAN_REPEAT=$((REPEAT > 3 ? 3 : REPEAT))
PARALLEL=${ROAM_BENCH_PARALLEL:-2 4 8}
RATE_MBIT=100
DELAY_MS=25
BENCH_T0=$(date +%s)

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, tc)"
for t in rsync ip tc curl python3 cmp; do
        command -v "$t" >/dev/null || die "needs $t (run: scripts/deps.sh bench)"
done
[ -x "$ROAM_BIN" ] || die "no roam binary at $ROAM_BIN (run: make)"
[ -x "$BUILD_DIR/tests/tools/delay-relay" ] || die "no $BUILD_DIR/tests/tools/delay-relay (run: make)"

# ---- corpus: bench/store.sh's, built by it if missing ----

CORPUS_VERSION=$(sed -n 's/^CORPUS_VERSION=\([0-9]*\).*/\1/p' "$SRC_DIR/bench/store.sh")
[ -n "$CORPUS_VERSION" ] || die "cannot read CORPUS_VERSION from bench/store.sh"
BASE=$BENCH_CACHE/base-v$CORPUS_VERSION.img
SESSION=$BENCH_CACHE/session-v$CORPUS_VERSION.img
if [ ! -f "$BASE" ] || [ ! -f "$SESSION" ]; then
        log "no corpus in $BENCH_CACHE: running bench/store.sh once to build it (its doc section stays)"
        ROAM_BENCH_DOC=0 ROAM_BENCH_REPEAT=1 ROAM_BENCH_LEVELS=" " bash "$SRC_DIR/bench/store.sh" >/dev/null ||
                die "bench/store.sh failed"
        [ -f "$BASE" ] && [ -f "$SESSION" ] || die "bench/store.sh did not build $BASE and $SESSION"
fi

# ---- scratch, cleanup: tests/lib.sh's helpers (tests/netns.sh needs them) ----

. "$SRC_DIR/tests/lib.sh"          # T (scratch, removed at exit), cleanup_add, wait_for, free_port, start_daemon
fail() { die "$*"; }
skip() { die "cannot run here: $*"; }
RUN=$BENCH_CACHE/sync-run           # the stores: on the corpus' filesystem, not in $T
# bench/store.sh's note: on ext4 without a journal, creating thousands of
# files in the minutes after deleting thousands is 2-3 times slower. Every
# pull here creates a store of ~3300 chunk files, so the stores are deleted
# only at the end, the time of that delete goes where bench/store.sh looks
# for it, and a run waits out the last one (ROAM_BENCH_WAIT=0: do not).
CLEANED=$BENCH_CACHE/run.cleaned
stamp_delete() { sync; date +%s >"$CLEANED"; }
if [ -d "$RUN" ]; then
        log "removing the leftovers of an interrupted run"
        rm -rf "$RUN"
        stamp_delete
fi
mkdir -p "$RUN"
cleanup_add "rm -rf '$RUN'; stamp_delete" # added first: runs last, after the daemons and namespaces
trap 'exit 130' INT TERM

# run copies of the binaries: a 'make' during the run must not swap them
mkdir -p "$RUN/bin"
cp "$ROAM_BIN" "$RUN/bin/roam"
cp "$BUILD_DIR/tests/tools/delay-relay" "$RUN/bin/delay-relay"
ROAM_BIN=$RUN/bin/roam
DELAY_RELAY=$RUN/bin/delay-relay
WAN_RELAY_OPTS= # the relay's defaults, as described in the notes
. "$SRC_DIR/tests/netns.sh"

WAITED=0
if [ "${ROAM_BENCH_WAIT:-1}" != 0 ]; then
        wait=$(($(cat "$CLEANED" 2>/dev/null || echo 0) + 370 - $(date +%s)))
        if [ "$wait" -gt 0 ]; then
                log "waiting ${wait}s: ext4 is slow to allocate inodes after the last benchmark's delete"
                sleep "$wait"
                WAITED=$wait
        fi
fi
LOAD=$(cut -d' ' -f1-3 /proc/loadavg) # other jobs on the machine skew the times

RAW=$(stat -c %s "$BASE")
DEFAULT_PAR=$("$ROAM_BIN" pull --help | sed -n 's/.*--parallel N.*(default \([0-9]*\)).*/\1/p')
[ -n "$DEFAULT_PAR" ] || die "cannot read the default --parallel from 'roam pull --help'"

# ---- the server's store ----

SRV=$RUN/srv
log "server store: importing $(basename "$BASE") and $(basename "$SESSION")"
ROAM_HOME=$SRV "$ROAM_BIN" image import base "$BASE" >/dev/null 2>&1
ROAM_HOME=$SRV "$ROAM_BIN" image import session "$SESSION" >/dev/null 2>&1
TOKEN=$(ROAM_HOME=$SRV "$ROAM_BIN" token create --role host)
SRV_CHUNKS=$(tree_bytes "$SRV/store/chunks")
warm "$BASE" "$SESSION"
find "$SRV/store" -type f -exec cat {} + >/dev/null # the server's store in the page cache

# ---- helpers ----

# to_bytes "94.9 MiB": roam's format_bytes back to bytes (to 0.05 of the unit)
to_bytes() {
        awk -v v="$1" -v u="$2" 'BEGIN { m = 1
                if (u == "KiB") m = 1024; else if (u == "MiB") m = 1048576; else if (u == "GiB") m = 1073741824
                printf "%.0f", v * m }'
}

n_home=0
new_home() { # DIR: a fresh client home below DIR ($RUN unless given)
        n_home=$((n_home + 1))
        HOME_DIR=${1:-$RUN}/client-$n_home
}

# pull HOME URL REF [ARGS...]: one timed `roam pull`, run with $NS_EXEC in
# front (the laptop namespace on the WAN). Sets P_T (wall seconds; P_T0 and P_T1 its start and end), P_WIRE
# (roam's count of bytes on the wire), P_SENT and P_TOTAL (chunks).
NS_EXEC=()
pull() {
        local home=$1 url=$2 ref=$3 err t0 t1 line
        shift 3
        err=$RUN/pull-$n_home-$ref.err
        sync
        t0=$(now)
        ROAM_HOME=$home "${NS_EXEC[@]}" "$ROAM_BIN" pull "$url" "$ref" --token "$TOKEN" "$@" >/dev/null 2>"$err" || {
                cat "$err" >&2
                die "roam pull $url $ref $* failed"
        }
        t1=$(now)
        line=$(grep ' chunks transferred, ' "$err" | tail -1)
        P_T0=$t0 P_T1=$t1
        P_T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
        P_SENT=$(sed -E 's/.*: ([0-9]+) of ([0-9]+) chunks.*/\1/' <<<"$line")
        P_TOTAL=$(sed -E 's/.*: ([0-9]+) of ([0-9]+) chunks.*/\2/' <<<"$line")
        # shellcheck disable=SC2046
        P_WIRE=$(to_bytes $(sed -E 's/.*, ([0-9.]+) ([KMGi]*B) on the wire.*/\1 \2/' <<<"$line"))
        log "  $P_SENT of $P_TOTAL chunks, $(human "$P_WIRE") on the wire, $P_T s"
}

# median_by_time: stdin "TIME REST..." lines; prints the line of the median time
median_by_time() { sort -n | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'; }

# ---- 1. loopback ----

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
start_daemon "$SRV" "127.0.0.1:$PORT"
LO_PID=$DAEMON_PID
pars=$(printf '%s\n' $PARALLEL "$DEFAULT_PAR" | sort -nu)
declare -A lo_line lo_runs
# the settings take turns, so that a change in the machine's load hits all of them
for ((i = 0; i < REPEAT; i++)); do
        for p in $pars; do
                log "loopback: roam pull --parallel $p (run $((i + 1)) of $REPEAT)"
                new_home
                pull "$HOME_DIR" "$URL" base --parallel "$p"
                lo_runs[$p]+="$P_T $P_WIRE $HOME_DIR"$'\n'
        done
done
for p in $pars; do
        lo_line[$p]=$(printf '%s' "${lo_runs[$p]}" | median_by_time)
        log "loopback --parallel $p: $(cut -d' ' -f1 <<<"${lo_runs[$p]}" | tr '\n' ' ')s -> median $(cut -d' ' -f1 <<<"${lo_line[$p]}") s"
done
LO_TOTAL=$P_TOTAL
log "loopback: export of a pulled image, cmp with the original"
ROAM_HOME=$(cut -d' ' -f3 <<<"${lo_line[$DEFAULT_PAR]}") "$ROAM_BIN" image export base "$RUN/out.img" 2>/dev/null
cmp "$BASE" "$RUN/out.img" && lo_same=yes || lo_same=NO
rm -f "$RUN/out.img"
kill "$LO_PID"
wait "$LO_PID" 2>/dev/null || true

best_par=$DEFAULT_PAR
for p in $pars; do
        if awk -v a="$(cut -d' ' -f1 <<<"${lo_line[$p]}")" -v b="$(cut -d' ' -f1 <<<"${lo_line[$best_par]}")" \
                'BEGIN { exit !(a < b) }'; then
                best_par=$p
        fi
done

# ---- 2. WAN ----

wan_setup "$RATE_MBIT" "$DELAY_MS"
NS_EXEC=(ip netns exec "$LT_NS")
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
ROAM_HOME=$SRV in_dc "$ROAM_BIN" serve --listen "$DC_IP:$PORT" >>"$RUN/dc-serve.log" 2>&1 &
DC_PID=$!
cleanup_add "kill $DC_PID 2>/dev/null; wait $DC_PID 2>/dev/null"
wait_for 10 wan_listening "$DC_NS" "$PORT" || { cat "$RUN/dc-serve.log" >&2; die "dc daemon did not start"; }
wan_relay "$PORT"

link_tx() { ip netns exec "$1" cat "/sys/class/net/$WAN_DEV/statistics/tx_bytes"; }
# sampler_start: the dc -> laptop byte counter every 50 ms, into $RUN/samples
sampler_start() {
        # shellcheck disable=SC2016
        ip netns exec "$DC_NS" bash -c 'while :; do read -r b </sys/class/net/'"$WAN_DEV"'/statistics/tx_bytes
                echo "$EPOCHREALTIME $b"; sleep 0.05; done' >"$RUN/samples" &
        SAMPLER_PID=$!
}
sampler_stop() {
        kill "$SAMPLER_PID" 2>/dev/null
        wait "$SAMPLER_PID" 2>/dev/null || true
}
# idle_s: seconds of the pull (P_T0 to P_T1) in which dc -> laptop carried under 20%
# of the link's rate (the connection set-up, and stalls)
idle_s() {
        awk -v lim="$((RATE_MBIT * 1000000 / 8 / 5))" -v t0="$P_T0" -v t1="$P_T1" '
                NR > 1 && $1 > p && p >= t0 && $1 <= t1 { if (($2 - b) / ($1 - p) < lim) idle += $1 - p }
                { p = $1; b = $2 } END { printf "%.2f", idle }' "$RUN/samples"
}

# tcp_accepted: TCP connections the dc namespace has accepted so far
tcp_accepted() {
        ip netns exec "$DC_NS" awk '$1 == "Tcp:" { if (!h) { for (i = 1; i <= NF; i++) if ($i == "PassiveOpens") c = i; h = 1 }
                else print $c }' /proc/net/snmp
}

# wan_pull HOME REF [ARGS...]: pull over the WAN; also sets L_DOWN, L_UP (link
# bytes, frames, each direction), L_IDLE and L_CONN (TCP connections to the daemon)
wan_pull() {
        local home=$1 ref=$2 d0 u0 c0
        shift 2
        d0=$(link_tx "$DC_NS")
        u0=$(link_tx "$LT_NS")
        c0=$(tcp_accepted)
        sampler_start
        pull "$home" "$URL" "$ref" "$@"
        sampler_stop
        L_DOWN=$(($(link_tx "$DC_NS") - d0))
        L_UP=$(($(link_tx "$LT_NS") - u0))
        L_CONN=$(($(tcp_accepted) - c0))
        L_IDLE=$(idle_s)
        log "  link: $(human "$L_DOWN") down, $(human "$L_UP") up, idle $L_IDLE s, $L_CONN connections"
}

# pct BYTES SECONDS: BYTES per SECONDS as % of the link rate
pct() { awk -v b="$1" -v s="$2" -v r="$RATE_MBIT" 'BEGIN { printf "%.1f", b * 8 / s / (r * 1e6) * 100 }'; }

declare -A wan_line wan_runs
wan_pars=$(printf '%s\n' "$DEFAULT_PAR" $PARALLEL | awk '!seen[$1]++')
# the same pull with the client's store in memory ("shm"): how much the
# client's disk and CPU hold the link back
SHM=$(mktemp -d /dev/shm/roam-bench-sync.XXXXXX)
cleanup_add "rm -rf '$SHM'"
for ((i = 0; i < WAN_REPEAT; i++)); do
        for p in $wan_pars shm; do
                log "WAN: roam pull --parallel $p (run $((i + 1)) of $WAN_REPEAT)"
                if [ "$p" = shm ]; then
                        new_home "$SHM"
                        wan_pull "$HOME_DIR" base
                else
                        new_home
                        wan_pull "$HOME_DIR" base --parallel "$p"
                fi
                wan_runs[$p]+="$P_T $P_WIRE $L_DOWN $L_UP $L_IDLE $HOME_DIR $L_CONN"$'\n'
        done
done
for p in $wan_pars shm; do
        wan_line[$p]=$(printf '%s' "${wan_runs[$p]}" | median_by_time)
        log "WAN --parallel $p: $(cut -d' ' -f1 <<<"${wan_runs[$p]}" | tr '\n' ' ')s -> median $(cut -d' ' -f1 <<<"${wan_line[$p]}") s"
done
rm -rf "$SHM"

# ---- 3. the changed image over the WAN: roam against rsync ----

# roam: into the client of the median default WAN run, which has the base
CLI=$(cut -d' ' -f6 <<<"${wan_line[$DEFAULT_PAR]}")
log "WAN, session after base: roam pull"
wan_pull "$CLI" session
s_t=$P_T s_wire=$P_WIRE s_sent=$P_SENT s_total=$P_TOTAL s_down=$L_DOWN s_up=$L_UP
s_obj=$(awk '{ print $3 }' "$SRV/store/refs/images/session") # the session ref's object: its index
s_index=$(stat -c %s "$SRV/store/objects/${s_obj:0:2}/$s_obj")
ROAM_HOME=$CLI "$ROAM_BIN" image export session "$RUN/out.img" 2>/dev/null
cmp "$SESSION" "$RUN/out.img" && s_same=yes || s_same=NO
rm -f "$RUN/out.img"

# rsync: a daemon in the dc namespace serving the cache, reached through a relay
RPORT=$(free_port)
cat >"$RUN/rsyncd.conf" <<EOF
use chroot = no
uid = root
gid = root
[bench]
        path = $BENCH_CACHE
        read only = yes
EOF
in_dc rsync --daemon --no-detach --config="$RUN/rsyncd.conf" --address="$DC_IP" --port="$RPORT" \
        --log-file="$RUN/rsyncd.log" &
RSYNCD_PID=$!
cleanup_add "kill $RSYNCD_PID 2>/dev/null; wait $RSYNCD_PID 2>/dev/null"
wait_for 10 wan_listening "$DC_NS" "$RPORT" || { cat "$RUN/rsyncd.log" >&2; die "rsync daemon did not start"; }
wan_relay "$RPORT"
RSYNC_VERSION=$(rsync --version | sed -n '1s/^rsync *version \([^ ]*\).*/\1/p')

# rsync_pull NAME [OPTS...]: the session image onto a copy of the base image
# at the laptop; sets R_T, R_SENT, R_RECV, R_LIT, R_DOWN, R_UP, R_SAME
rsync_pull() {
        local out d0 u0 t0 t1 dest=$RUN/rsync-$1.img
        shift
        cp --sparse=always "$BASE" "$dest"
        warm "$dest"
        sync
        d0=$(link_tx "$DC_NS")
        u0=$(link_tx "$LT_NS")
        t0=$(now)
        out=$(in_laptop rsync --no-whole-file --inplace --stats "$@" \
                "rsync://127.0.0.1:$RPORT/bench/$(basename "$SESSION")" "$dest") || die "rsync $* failed"
        t1=$(now)
        R_DOWN=$(($(link_tx "$DC_NS") - d0))
        R_UP=$(($(link_tx "$LT_NS") - u0))
        R_T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
        stat_of() { printf '%s\n' "$out" | awk -F: -v k="$1" '$1 == k { gsub(/[^0-9]/, "", $2); print $2; exit }'; }
        R_SENT=$(stat_of "Total bytes sent")
        R_RECV=$(stat_of "Total bytes received")
        R_LIT=$(stat_of "Literal data")
        cmp "$SESSION" "$dest" && R_SAME=yes || R_SAME=NO
        rm -f "$dest"
        log "  sent $R_SENT, received $R_RECV, literal $R_LIT; link $(human "$R_DOWN") down, $(human "$R_UP") up; $R_T s"
}
log "WAN, session after base: rsync --no-whole-file --inplace"
rsync_pull plain
r_t=$R_T r_sent=$R_SENT r_recv=$R_RECV r_lit=$R_LIT r_down=$R_DOWN r_up=$R_UP r_same=$R_SAME
log "WAN, session after base: rsync -z --no-whole-file --inplace"
rsync_pull z -z
z_t=$R_T z_sent=$R_SENT z_recv=$R_RECV z_lit=$R_LIT z_down=$R_DOWN z_up=$R_UP z_same=$R_SAME

# ---- table ----

f() { cut -d' ' -f"$2" <<<"$1"; } # field N of a run line
row() { printf '| %s | %s | %s | %s | %s | %s |\n' "$@"; }
par_label() { if [ "$1" = "$DEFAULT_PAR" ]; then echo "$1 (default)"; else echo "$1"; fi; }
table() {
        local p l
        row "pull" "client" "time" "rate" "bytes on the wire" "notes"
        row --- --- ---: ---: ---: ---
        for p in $pars; do
                l=${lo_line[$p]}
                row "base, loopback" "--parallel $(par_label "$p")" "$(f "$l" 1) s" \
                        "$(mbps "$RAW" "$(f "$l" 1)") MB/s image, $(mbps "$(f "$l" 2)" "$(f "$l" 1)") MB/s wire" \
                        "$(human "$(f "$l" 2)")" \
                        "$([ "$p" = "$best_par" ] && echo "fastest; ")$([ "$p" = "$DEFAULT_PAR" ] && echo "export cmp: $lo_same; ")median of $REPEAT"
        done
        for p in $wan_pars; do
                l=${wan_line[$p]}
                row "base, WAN" "--parallel $(par_label "$p")" "$(f "$l" 1) s" \
                        "$(pct "$(f "$l" 2)" "$(f "$l" 1)")% of ${RATE_MBIT} Mbit/s" \
                        "$(human "$(f "$l" 2)"); link $(human "$(f "$l" 3)") + $(human "$(f "$l" 4)")" \
                        "link busy $(pct "$(f "$l" 3)" "$(f "$l" 1)")%, idle $(f "$l" 5) s; $(f "$l" 7) connections; median of $WAN_REPEAT"
        done
        l=${wan_line[shm]}
        row "base, WAN" "default, store in tmpfs" "$(f "$l" 1) s" \
                "$(pct "$(f "$l" 2)" "$(f "$l" 1)")% of ${RATE_MBIT} Mbit/s" \
                "$(human "$(f "$l" 2)"); link $(human "$(f "$l" 3)") + $(human "$(f "$l" 4)")" \
                "link busy $(pct "$(f "$l" 3)" "$(f "$l" 1)")%, idle $(f "$l" 5) s; $(f "$l" 7) connections; median of $WAN_REPEAT; diagnostic"
        row "session after base, WAN" "roam pull" "$s_t s" - \
                "$(human "$s_wire"); link $(human "$s_down") + $(human "$s_up") = $(human $((s_down + s_up)))" \
                "$s_sent of $s_total chunks, and the image's index ($(human "$s_index") plain), in one pack; cmp: $s_same"
        row "session after base, WAN" "rsync --no-whole-file --inplace" "$r_t s" - \
                "$(human $((r_sent + r_recv))); link $(human "$r_down") + $(human "$r_up") = $(human $((r_down + r_up)))" \
                "literal data $(human "$r_lit"); cmp: $r_same"
        row "session after base, WAN" "rsync -z --no-whole-file --inplace" "$z_t s" - \
                "$(human $((z_sent + z_recv))); link $(human "$z_down") + $(human "$z_up") = $(human $((z_down + z_up)))" \
                "literal data $(human "$z_lit") before compression; cmp: $z_same"
}
TABLE=$(table)
printf '%s\n' "$TABLE"

lo_best=$(mbps "$RAW" "$(f "${lo_line[$best_par]}" 1)")
lo_def=$(mbps "$RAW" "$(f "${lo_line[$DEFAULT_PAR]}" 1)")
wan_def=$(pct "$(f "${wan_line[$DEFAULT_PAR]}" 2)" "$(f "${wan_line[$DEFAULT_PAR]}" 1)")
met() { awk "BEGIN { print ($1) ? \"met\" : \"NOT met\" }"; }
roam_link=$((s_down + s_up))
rsync_link=$((r_down + r_up))
GOALS="Goals: loopback pull of the base image at least 500 MB/s (raw image size / time):
$(met "$lo_def >= 500") ($lo_def MB/s at the default parallelism, $lo_best MB/s at --parallel $best_par).
WAN pull at least 90% of the link: $(met "$wan_def >= 90") ($wan_def% at the default parallelism).
The changed image with no more bytes on the wire than rsync: $(met "$roam_link <= $rsync_link")
(link bytes $(human "$roam_link") against $(human "$rsync_link"), $(ratio "$roam_link" "$rsync_link")×); rsync -z, which compresses
its stream, sends $(human $((z_down + z_up))) (roam: $(ratio "$roam_link" $((z_down + z_up)))× of it)."
log "$GOALS"

NOTES="* Image: $(basename "$BASE") ($(human "$RAW") raw; $LO_TOTAL non-zero chunks,
  $(human "$SRV_CHUNKS") of chunk files on the server with the session image's).
  Session: $(basename "$SESSION"), the same after a user session (bench/store.sh).
  Server: a roam home with both imported; \`roam serve\`; token of role host.
  Every pull of the base goes into a fresh client home (on the corpus'
  filesystem); time is the wall time of \`roam pull\` (start to exit: connection,
  ref, index, chunks, commit). sync before each pull; the server's store in
  the page cache.
* **rate**: loopback: raw image size / time, and roam's own count of bytes on
  the wire / time. WAN: roam's count of bytes on the wire (HTTP bodies:
  compressed chunks, the index, the ref) × 8 / time, as % of ${RATE_MBIT} Mbit/s.
  Over TCP/IPv4 with a 1500-byte MTU that tops out near 95.6% (tbf counts
  whole Ethernet frames).
* **WAN**: tests/netns.sh: two network namespaces on a veth pair, tbf
  ${RATE_MBIT} Mbit/s in both directions, delay-relay adding ${DELAY_MS} ms each way (RTT
  $((2 * DELAY_MS)) ms, its default 16 MiB buffer per direction and connection;
  a new connection pays the handshake, 4 × ${DELAY_MS} ms to the first response).
  \"link X + Y\": bytes the kernel counted on the veth (Ethernet frames: IP,
  TCP and link headers) dc → laptop and laptop → dc while the command ran.
  \"busy\": dc → laptop frame bytes × 8 / time. \"idle\": the part of the time
  in which dc → laptop carried under 20% of the rate (50 ms samples): the
  connection set-up and stalls. \"connections\": TCP connections the daemon
  accepted during the pull.
* **tmpfs** row: the same pull with the client's store in /dev/shm, which
  takes the client's disk (one file per chunk, syncfs per batch) out of the
  picture. A worker asks for its next batch only after it has stored the
  last one, so a client slow to store (disk, or CPU taken by other jobs)
  leaves the link idle; \"idle\" shows it.
* **session after base**: the client of the median default WAN run pulls
  the session ref: a first pull, so the base image's ref (its sibling under
  images/) is the pack's hint, and the chunks it lacks and the new index
  (zstd-compressed) come as one pack (docs/sync-protocol.md). rsync
  $RSYNC_VERSION: \`rsync --daemon\` in the dc namespace serving the cache directory,
  reached through a second relay on the same link; the laptop runs
  \`rsync --no-whole-file --inplace --stats rsync://…/$(basename "$SESSION") DEST\`
  with DEST a sparse copy of the base image. Bytes on the wire: rsync's
  \"Total bytes sent\" + \"Total bytes received\" (its protocol stream) and,
  for both tools, the link's counters (both directions). \`rsync -z\`
  negotiates zstd (level 3) here. cmp: the result against the session image (roam:
  \`roam image export\`)."

if [ "${ROAM_BENCH_DOC:-1}" != 0 ]; then
        body=$RUN/section.md
        {
                echo "## Sync: roam pull on loopback and over a WAN, and the changed image against rsync"
                echo
                printf '%s\n' "$TABLE"
                echo
                printf '%s\n' "$NOTES"
                echo
                printf '%s\n' "$GOALS"
                echo
                echo "Run $(date -u +%Y-%m-%d) on $(machine); load average at the start $LOAD;"
                echo "roam $(git -C "$SRC_DIR" describe --always --dirty 2>/dev/null || echo '?'); $(($(date +%s) - BENCH_T0)) s for the whole run$([ "$WAITED" = 0 ] || echo " ($WAITED s of it waiting out the last big delete)")."
                echo "Command: \`bash bench/sync.sh\`."
        } >"$body"
        doc_section sync "$body"
        log "updated docs/benchmarks.md (sync section)"
fi

# page references in a first take offline, on and off (bench/pages.sh): its
# own section of docs/benchmarks.md; ROAM_BENCH_PAGES=0 skips it
if [ "${ROAM_BENCH_PAGES:-1}" != 0 ]; then
        bash "$SRC_DIR/bench/pages.sh" || die "bench/pages.sh failed"
fi
