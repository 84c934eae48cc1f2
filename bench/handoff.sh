#!/usr/bin/env bash
# Hand-over benchmark: take a live session offline onto a laptop and back
# online, with and without the laptop's background pre-copy, against QEMU's
# own live migration with storage over the same link. One table.
#
# Two network namespaces joined by the emulated WAN of tests/netns.sh
# (100 Mbit/s by tbf on the veth, 25 ms each way by a delaying relay with a
# 1 MiB buffer, about what such a link holds in flight), the "server" and the
# "laptop", as in scripts/demo.sh. The guest is the test guest
# (scripts/build-guest.sh) under TCG, 512 MiB and 2 GiB of RAM, booted fresh
# for every run. For every size:
#
#   1. roam WITH background pre-copy: the server runs the session, the laptop
#      daemon ('roam serve --role laptop --precopy-interval 2') pre-copies it
#      for $PRECOPY_S s; 'roam offline s1' as soon as a pre-copy round landed
#      (not in the middle of the next one); the session runs on the laptop for
#      $DWELL_S s (the daemon's local checkpoint is pushed back to the server
#      meanwhile); 'roam online s1'.
#   2. roam WITHOUT pre-copy: the same with 'roam serve --role laptop
#      --no-precopy' (no pre-copy, no pre-copy back; 'roam online' still runs
#      its own pre-copy round before it pauses the guest, as every 'session
#      move' does).
#   3. QEMU 7.2 live migration with storage from a server-namespace QEMU to a
#      laptop-namespace QEMU: the destination (-incoming defer -S) exports its
#      own overlay over NBD, the source drive-mirrors into it, migrates, the
#      mirror is cancelled, the destination continues (the sequence and the
#      QMP driver of bench/session.sh, copied here). It starts at tick
#      $QEMU_TICK, about the guest's age at roam's click.
#   4. The same QEMU migration of the guest without its VGA device: the
#      control for what the VGA console's redraws cost QEMU's dirty log.
#
# The master image, kernel and initrd are on the laptop beforehand in every
# case (a bundle, the "USB stick", not over the link), as the QEMU peer's
# destination has them as files. Bytes on the wire are counted by the kernel
# on the laptop's end of the veth (IP packets with headers, both directions)
# during each click, next to what roam prints. Where the downtime goes comes
# from the daemons' request logs (-v: every request with its duration, ms
# timestamps, one clock).
#
# usage: bash bench/handoff.sh     (as root; 6-13 minutes on 2 cores: roam's
#                                  runs take 5, QEMU's migrations 1 to 6 more)
# env:   ROAM_BENCH_HANDOFF_RAM    guest sizes in MiB (default "512 2048")
#        ROAM_BENCH_HANDOFF_RUNS   runs of each roam variant (default 3): the summary
#                                  table gives the median and the range; the detailed
#                                  rows are of the first run of each
#        ROAM_BENCH_HANDOFF_LEVERS the variants with one lever off each, a regex
#                                  matched against: nowarm (--no-warm-restore on both
#                                  daemons), nograntpack (--no-grant-pack: the
#                                  remainder pulled after the grant, pushed before
#                                  the move-in), nostream (--no-stream-pack on both
#                                  daemons: the remainder sent once all of it is
#                                  packed, stored once all of it came, by the
#                                  laptop and by the server), nopages (no page
#                                  references, ROAM_PAGE_DEDUP=0), plain (a
#                                  laptop without encryption at rest: what
#                                  encryption costs a hand-over), notmppool
#                                  (--no-tmp-pool on both daemons: every chunk
#                                  written makes its temp file)
#        ROAM_BENCH_HANDOFF_ONLY   the parts to run, a regex matched against each
#                                  whole name: precopy, noprecopy, qemu, qemu-novga
#        ROAM_BENCH_HANDOFF_QEMU_TICK  the guest's tick at which QEMU migrates
#                                  (default 130: about its age at roam's click)
#        ROAM_BENCH_HANDOFF_QEMU_MAX_S a QEMU migration not converged by then is
#                                  cancelled and reported (default 180)
#        ROAM_BENCH_DOC=0          do not update docs/benchmarks.md
#        ROAM_BENCH_KEEP=1         keep the scratch directory (logs, consoles)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/guest.sh"

RAM_SIZES=${ROAM_BENCH_HANDOFF_RAM:-512 2048}
RUNS=${ROAM_BENCH_HANDOFF_RUNS:-3}
LEVERS=${ROAM_BENCH_HANDOFF_LEVERS:-nowarm|nograntpack|nostream|nopages|plain|notmppool}
PRECOPY_S=25     # background pre-copy before the click (s since the laptop daemon started)
INTERVAL=2       # --precopy-interval
DWELL_S=15       # seconds on the laptop between take offline and take online
SETTLE_TICK=10   # the guest's counter before anything happens (about 2 s after boot)
QEMU_TICK=${ROAM_BENCH_HANDOFF_QEMU_TICK:-130} # QEMU migrates at about the guest age of roam's click
QEMU_MAX_S=${ROAM_BENCH_HANDOFF_QEMU_MAX_S:-180} # a QEMU migration not converged by then is cancelled
WAN_RATE=100     # Mbit/s
WAN_DELAY=25     # ms each way
PORT=7460        # roam serve on the server
LPORT=7461       # the laptop daemon (local only)
PORT_MIG=7471    # QEMU migration stream (laptop side)
PORT_NBD=7472    # QEMU NBD export (laptop side)
MAX_BANDWIDTH=$((10 << 30)) # QEMU max-bandwidth (7.2 default: 128 MiB/s)

bench_prereqs # root, tools, the test guest in GUEST (bench/guest.sh)
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

shm_mib=$(df -m --output=avail /dev/shm | tail -1)
need=$(( $(echo "$RAM_SIZES" | tr ' ' '\n' | sort -n | tail -1) * 5 ))
[ "$shm_mib" -ge "$need" ] || die "/dev/shm has $shm_mib MiB free, the largest guest needs about $need MiB"

# ---- scratch, cleanup (tests/netns.sh expects tests/lib.sh's helpers) ----

bench_start rbh # T, traps, copies of the binaries (bench/guest.sh)
# the relay's buffer stands for the link's own capacity (see bench/session.sh)
WAN_RELAY_OPTS=${WAN_RELAY_OPTS:---max-buffer-mib 1}
. "$SRC_DIR/tests/netns.sh"

# ---- helpers ----

# wire_bytes: bytes on the link so far (the laptop's end of the veth, both directions)
# (printf: awk would print a sum above 2^31 in %.6g, which bash cannot add)
wire_bytes() { ip netns exec "$LT_NS" awk -v d="$WAN_DEV:" '$1 == d { printf "%.0f\n", $2 + $10 }' /proc/net/dev; }
# to_bytes "47.7 MiB": roam's human sizes back to bytes

# continuity LAST_BEFORE DST_LOG SKIP_LINES [SRC_LOG]: whether the first tick
# DST_LOG printed after line SKIP_LINES (its length before the hand-over)
# follows LAST_BEFORE; when not, both consoles are kept in $BENCH_CACHE
continuity() {
        local a=$1 f=$2 skip=$3 src=${4:-} b
        wait_for 30 has_tick "$f" $((a + 1)) || true
        # no pipe into an early-exiting reader (pipefail would see its SIGPIPE)
        b=$(awk -v s="$skip" 'NR > s { sub(/\r$/, ""); if ($0 ~ /^tick [0-9]+$/) { print $2; exit } }' "$f")
        if [ -n "$b" ] && [ "$b" = $((a + 1)) ]; then
                echo "counter continues ($a → $b)"
                return
        fi
        # keep the consoles: the scratch directory goes at exit
        local keep what
        keep=$BENCH_CACHE/handoff-failures/$(date +%Y%m%d-%H%M%S)-$(basename "$(dirname "$f")")-$(basename "$f")
        mkdir -p "$keep"
        cp "$f" "$keep/target.serial" 2>/dev/null || true
        [ -z "$src" ] || cp "$src" "$keep/source.serial" 2>/dev/null || true
        what=$(awk -v s="$skip" 'NR > s && /BUG:|Kernel panic/ { sub(/\r$/, ""); sub(/^\[ *[0-9.]+\] /, ""); print; exit }' "$f")
        log "the guest did not continue after the hand-over (tick $a → ${b:-none}); consoles kept in $keep"
        [ -z "$what" ] || what=", on the target's console: \"$what\""
        echo "GUEST BROKEN: counter $a → ${b:-none}$what (consoles in $keep)"
}
lines_of() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }

# roam_in NS HOME ARGS...: roam with ROAM_HOME=HOME in namespace NS ("" = here)

# rows: one line per table row, in order
ROWS=$T/rows
row() { # GUEST HANDOVER TOOL DOWNTIME AFTER WIRE TOTAL NOTES
        [ "${ROW_QUIET:-0}" = 0 ] || return 0
        local f
        for f in "$@"; do printf '| %s ' "$f"; done >>"$ROWS"
        printf '|\n' >>"$ROWS"
}
# goal results, one line per guest size and direction
GOALS=$T/goals

# ---- log analysis ----

# timeline.py KIND DC_LOG LT_LOG T0 T1: where a click's time went, from the
# daemons' request logs (ms timestamps; the server logs each request when it
# completes, with its duration). Prints shell assignments.
TIMELINE=$T/timeline.py
cat >"$TIMELINE" <<'PY'
import calendar, re, sys, time
kind, dc_log, lt_log, t0, t1 = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
line_re = re.compile(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z roam\[\d+\] \w+: (.*)$')
req_re = re.compile(r'^(\S+) (GET|POST|PUT|HEAD|DELETE) (\S+) (\d+) (\d+) ([0-9.]+)ms')
def entries(path):
    out = []
    for l in open(path, errors="replace"):
        m = line_re.match(l.rstrip("\n"))
        if not m:
            continue
        ts = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + int(m.group(2)) / 1000
        out.append((ts, m.group(3)))
    return out
# the log has ms resolution: allow 5 ms around the click
dc = [(ts, m) for ts, m in entries(dc_log) if t0 - 0.005 <= ts <= t1 + 0.005]
lt = [(ts, m) for ts, m in entries(lt_log) if t0 - 0.005 <= ts <= t1 + 0.005]
reqs = []
for ts, msg in dc:
    m = req_re.match(msg)
    if m:
        d = float(m.group(6)) / 1000
        reqs.append(dict(end=ts, start=ts - d, method=m.group(2), path=m.group(3), status=int(m.group(4)),
                         bytes=int(m.group(5)), dur=d))
def ms(x):
    return "%.0f" % (x * 1000)
r = {}
# the daemons' own accounts (-v): the laptop's of the click, the server's of its part
def first(entries, rx):
    for ts, msg in entries:
        m = re.search(rx, msg)
        if m:
            return m
    return None
if kind == "offline":
    g = [q for q in reqs if q["path"].endswith("/offline")]
    if g:
        g = g[0]
        r["to_server_ms"] = ms(g["start"] - t0)
        pulls = [q for q in reqs if q["start"] >= g["end"] - 0.005 and q is not g and "/sessions" not in q["path"]]
        r["pull_reqs"] = str(len(pulls))
    m = first(lt, r"take offline of '\S+': grant (\d+) ms \(of it, storing the remainder that came with it (\d+) ms: "
                  r"(\d+) chunks, (\d+) as pages with (\d+) page references, (\d+) fetched in full\), pull (\d+) ms, "
                  r"restore (\d+) ms")
    if m:
        r.update(lt_grant_ms=m.group(1), lt_store_ms=m.group(2), chunks=m.group(3), paged=m.group(4),
                 pull_ms=m.group(7), restore_ms=m.group(8))
    m = first(dc, r"take offline of '\S+': (\d+) ms since the request came; grant \d+ ms: checkpoint \d+ \((.*)\)$")
    if m:
        r.update(server_ms=m.group(1), server_parts="'%s'" % m.group(2).replace("'", ""))
    m = first(dc, r"take offline of '\S+': the remainder packed in (\d+) ms(, sent while it was packed)?")
    r["pack_ms"] = m.group(1) if m else "0"
    r["pack_how"] = "'packing the remainder, which goes while it is packed'" if m and m.group(2) else "'packing the remainder'"
    if "lt_grant_ms" in r and "server_ms" in r and "to_server_ms" in r:
        # the rest of the grant: the answer's way back with the remainder, before it is stored
        r["back_ms"] = str(int(r["lt_grant_ms"]) - int(r["lt_store_ms"]) - int(r["server_ms"]) -
                           int(r["to_server_ms"]) - int(r["pack_ms"]))
else:
    # the pause began 'downtime' before the laptop daemon logged "taken online"
    down = float(sys.argv[6]) / 1000
    mi = [q for q in reqs if q["path"].endswith("/move-in")]
    done = [ts for ts, msg in lt if "taken online" in msg]
    if mi and done:
        mi = mi[0]
        pause = done[0] - down
        r["movein_ms"] = ms(mi["dur"])
        sync = [q for q in reqs if q is not mi and "/sessions" not in q["path"]]
        before = [q for q in sync if q["start"] < pause]
        final = [q for q in sync if q["start"] >= pause and q["end"] <= mi["start"] + 0.005]
        r["pre_reqs"] = str(len(before))
        r["push_reqs"] = str(len(final))
        if final:
            r["push_ms"] = ms(mi["start"] - min(q["start"] for q in final))
    # the remainder made whole before it went, or (since 3e86b91) planned,
    # then sent while it was made
    m = first(lt, r"take online of '\S+': final checkpoint (\d+) ms, (?:remainder made ready (\d+) ms|"
                  r"remainder planned (\d+) ms, then sent while made \(in \d+ ms\)) \((\d+) chunks, "
                  r"(\d+) as pages, (\d+) objects as deltas, (with the move-in|pushed first)\), the server's answer "
                  r"after (\d+) ms \(its restore (\d+) ms\)")
    if m:
        r.update(final_ckpt_ms=m.group(1), ready_ms=m.group(2) or m.group(3), chunks=m.group(4), paged=m.group(5),
                 deltas=m.group(6), how="'%s'" % m.group(7), answer_ms=m.group(8), server_restore_ms=m.group(9),
                 ready_how="'made whole first'" if m.group(2) else "'planned, then sent while made'")
for k, v in r.items():
    print("tl_%s=%s" % (k, v))
PY
# timeline KIND DC_LOG LT_LOG T0 T1: sets tl_* (empty when not found)
timeline() {
        unset tl_to_server_ms tl_pull_reqs tl_pull_ms tl_restore_ms tl_movein_ms tl_pre_reqs tl_push_reqs \
                tl_final_ckpt_ms tl_push_ms tl_lt_grant_ms tl_lt_store_ms tl_chunks tl_paged tl_server_ms \
                tl_server_parts tl_pack_ms tl_back_ms tl_ready_ms tl_ready_how tl_how tl_answer_ms tl_server_restore_ms
        eval "$(python3 "$TIMELINE" "$@" 2>>"$T/timeline.err")"
}

# handoff_status: the laptop daemon's view of s1 (GET /v1/handoff) as
# "precopy_at remainder_bytes predicted_offline_s link_rate"
handoff_status() {
        ROAM_HOME=$LTH in_laptop curl -s -m 5 -H "Authorization: Bearer $(cat "$LTH/local.token")" \
                "http://127.0.0.1:$LPORT/v1/handoff" | python3 -c '
import json, sys
s = [x for x in json.load(sys.stdin)["sessions"] if x["name"] == "s1"]
if s:
    x = s[0]
    print(x["precopy_at"], x["remainder_bytes"], "%.2f" % x["predicted_offline_s"], "%.0f" % x["link_rate"])'
}
precopy_after() { # UNIX_TIME: a pre-copy landed after it (its status in PRE_ST)
        local s
        s=$(handoff_status) || return 1
        [ -n "$s" ] && [ "${s%% *}" -gt "$1" ] || return 1
        PRE_ST=$s
}
ref_newer() { [ -f "$1" ] && [ "$(stat -c %Y "$1")" -ge "$2" ]; }

# ---- roam: take offline, take online ----

bench_roam() { # RAM_MIB precopy|noprecopy
        local ram=$1 mode=$2 sz d
        sz=$(gib "$ram")
        d=$T/roam-$ram-$mode
        # every run its own homes (ROAM_BENCH_KEEP=1 keeps the earlier ones)
        local n=1
        while [ -e "$d" ]; do
                n=$((n + 1))
                d=$T/roam-$ram-$mode-$n
        done
        DCH=$d/dc LTH=$d/lt
        mkdir -p "$DCH" "$LTH"
        HOMES+=("$DCH" "$LTH")
        log "roam, $sz guest, $mode: server home $DCH, laptop home $LTH"
        roam_in "" "$DCH" image import deb "$GUEST/master.img" >/dev/null 2>&1 || die "image import failed"
        roam_in "" "$DCH" session create s1 --image deb --user alice --ram "${ram}M" \
                --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" >/dev/null 2>&1 || die "session create failed"
        local alice
        alice=$(roam_in "" "$DCH" token create --role user --user alice)
        # a laptop as 'roam laptop init' makes it: encrypted at rest (the
        # passphrase file: bench_start), unlocked; the "plain" variant one
        # without. (Until 2026-12-06 this bench applied the bundle to a home
        # nobody had initialised: a plain store, so its laptops were plain.)
        if [ "$VARIANT_PLAIN" = 1 ]; then
                roam_in "" "$LTH" laptop init --no-encryption >/dev/null || die "laptop init --no-encryption failed"
        else
                roam_in "" "$LTH" laptop init >/dev/null || die "laptop init failed"
                roam_in "" "$LTH" unlock >/dev/null || die "unlock failed"
        fi
        # the "USB stick": master image, kernel and initrd on the laptop beforehand
        roam_in "" "$DCH" bundle create -o "$d/usb.bundle" images/deb sessions/alice/s1/base >/dev/null 2>"$T/err" ||
                die "bundle create failed: $(cat "$T/err")"
        roam_in "" "$LTH" bundle apply "$d/usb.bundle" >/dev/null 2>"$T/err" || die "bundle apply failed: $(cat "$T/err")"
        rm -f "$d/usb.bundle"

        roam_in "$DC_NS" "$DCH" session start s1 >/dev/null || die "session start failed"
        # a simple command, not a function: $! is the daemon itself
        ROAM_HOME=$DCH ip netns exec "$DC_NS" env "${VARIANT_ENV[@]}" "$ROAM_BIN" serve --listen "$DC_IP:$PORT" \
                "${VARIANT_DC[@]}" -v --log "$d/dc.log" >/dev/null 2>&1 &
        DPIDS+=($!)
        wait_for 20 wan_listening "$DC_NS" $PORT || die "the server daemon did not start: $(tail -n 3 "$d/dc.log")"
        local dc_serial=$DCH/sessions/s1/serial.log lt_serial=$LTH/sessions/s1/serial.log
        wait_tick "$dc_serial" $SETTLE_TICK

        local extra=()
        [ "$mode" = noprecopy ] && extra=(--no-precopy)
        local w_start t_start
        w_start=$(wire_bytes)
        t_start=$(date +%s)
        ROAM_HOME=$LTH ip netns exec "$LT_NS" env "${VARIANT_ENV[@]}" "$ROAM_BIN" serve --role laptop \
                --listen "127.0.0.1:$LPORT" --server "http://127.0.0.1:$PORT" --token "$alice" --name lt \
                --precopy-interval $INTERVAL "${extra[@]}" "${VARIANT_LT[@]}" -v --log "$d/lt.log" >/dev/null 2>&1 &
        DPIDS+=($!)
        wait_for 20 wan_listening "$LT_NS" $LPORT || die "the laptop daemon did not start: $(tail -n 3 "$d/lt.log")"
        log "the laptop home is $([ -e "$LTH/keys/home.key" ] && echo encrypted || echo plain)"

        # ---- before the click ----
        local rounds=0 st="" pre_note
        if [ "$mode" = precopy ]; then
                wait_for 180 precopy_after 0 || die "no pre-copy reached the laptop: $(tail -n 5 "$d/lt.log")"
                local first_s=$(($(date +%s) - t_start))
                while [ $(($(date +%s) - t_start)) -lt $PRECOPY_S ]; do sleep 0.5; done
                # the click: as soon as a round landed, so that it does not
                # wait for a round in progress (it would: one hand-over or
                # pre-copy at a time)
                local at
                at=$(handoff_status | awk '{ print $1 }')
                wait_for 60 precopy_after "$at" || die "the pre-copy stopped: $(tail -n 5 "$d/lt.log")"
                st=$PRE_ST
                rounds=$(grep -c 'POST /v1/sessions/s1/precopy' "$d/dc.log" || true)
                pre_note="$rounds pre-copy rounds in $(($(date +%s) - t_start)) s before the click (the first landed after $first_s s), $(human $(($(wire_bytes) - w_start))) on the wire; laptop's prediction at the click: $(awk '{ printf "%.1f s (remainder %.1f MB)", $3, $2 / 1e6 }' <<<"$st")"
        else
                while [ $(($(date +%s) - t_start)) -lt $((PRECOPY_S + 1)) ]; do sleep 0.5; done
                pre_note="no pre-copy: $(human $(($(wire_bytes) - w_start))) on the wire before the click (pairing)"
        fi

        # ---- take offline ----
        local before skip w0 w1 t0 t1 out rc=0
        skip=$(lines_of "$lt_serial")
        w0=$(wire_bytes)
        t0=$(now)
        out=$(roam_in "$LT_NS" "$LTH" offline s1 2>&1) || rc=$?
        t1=$(now)
        w1=$(wire_bytes)
        log "$out"
        [ $rc = 0 ] || die "take offline failed: $out; $(tail -n 5 "$d/lt.log" "$d/dc.log")"
        # an encrypted laptop keeps a running guest's console on tmpfs: where
        # 'session show' says (it held no ticks of this guest before the click)
        local console
        console=$(roam_in "" "$LTH" session show s1 2>/dev/null | sed -n 's/^console: *//p')
        if [ -n "$console" ] && [ "$console" != "$lt_serial" ]; then
                lt_serial=$console skip=0
        fi
        local down sent
        down=$(sed -nE 's/.*downtime ([0-9]+) ms.*/\1/p' <<<"$out")
        sent=$(to_bytes "$(sed -nE 's/.*ms, ([0-9.]+ [KMG]?i?B) sent.*/\1/p' <<<"$out")")
        timeline offline "$d/dc.log" "$d/lt.log" "$t0" "$t1"
        before=$(last_tick "$dc_serial")
        local cont
        cont=$(continuity "$before" "$lt_serial" "$skip")
        local tool="roam offline (background pre-copy, every $INTERVAL s)"
        [ "$mode" = noprecopy ] && tool="roam offline (laptop daemon --no-precopy)"
        row "$sz" "take offline: server → laptop" "$tool" "$(fmt_ms "$down")" "$(human "$sent")" \
                "$(human $((w1 - w0)))" "$(fmt_s "$(ms_between "$t0" "$t1")")" \
                "downtime = ${tl_to_server_ms:-?} ms until the request reaches the server + ${tl_server_ms:-?} ms the server's part until its grant (${tl_server_parts:-?}) + ${tl_pack_ms:-?} ms ${tl_pack_how:-packing the remainder} + ${tl_back_ms:-?} ms the answer's way back with the remainder (${tl_chunks:-?} chunks, ${tl_paged:-?} of them as their changed pages) + ${tl_lt_store_ms:-?} ms storing it on the laptop + ${tl_pull_ms:-?} ms pull (checks; ${tl_pull_reqs:-?} requests) + ${tl_restore_ms:-?} ms restore; $pre_note; $cont"
        # the goals' run: the one in the detailed rows (the first with every lever on)
        if [ "$mode" = precopy ] && [ "${ROW_QUIET:-0}" = 0 ]; then
                OFF_DOWN=$down OFF_SENT=$sent OFF_WIRE=$((w1 - w0))
        fi
        RUN_OFF_DOWN=$down RUN_OFF_SENT=$sent

        # ---- on the laptop ----
        local t_off
        t_off=$(date +%s)
        local back_note=""
        if [ "$mode" = precopy ]; then
                # the daemon's first local checkpoint, pushed back to the server
                if wait_for 90 ref_newer "$DCH/store/refs/sessions/alice/s1/precopy-back" "$t_off"; then
                        back_note="the laptop's local checkpoint was pushed back $(($(stat -c %Y "$DCH/store/refs/sessions/alice/s1/precopy-back") - t_off)) s after the offline; "
                else
                        back_note="no pre-copy back reached the server; "
                fi
        fi
        while [ $(($(date +%s) - t_off)) -lt $DWELL_S ]; do sleep 0.5; done

        # ---- take online ----
        rc=0
        local w_on0 w_on1
        skip=$(lines_of "$dc_serial")
        w_on0=$(wire_bytes)
        t0=$(now)
        out=$(roam_in "$LT_NS" "$LTH" online s1 2>&1) || rc=$?
        t1=$(now)
        w_on1=$(wire_bytes)
        log "$out"
        [ $rc = 0 ] || die "take online failed: $out; $(tail -n 5 "$d/lt.log" "$d/dc.log")"
        down=$(sed -nE 's/.*downtime ([0-9]+) ms.*/\1/p' <<<"$out")
        sent=$(to_bytes "$(sed -nE 's/.*ms, ([0-9.]+ [KMG]?i?B) sent.*/\1/p' <<<"$out")")
        timeline online "$d/dc.log" "$d/lt.log" "$t0" "$t1" "$down"
        before=$(last_tick "$lt_serial")
        cont=$(continuity "$before" "$dc_serial" "$skip")
        local wall pre_ms
        wall=$(ms_between "$t0" "$t1")
        pre_ms=$((wall - down))
        [ "$mode" = precopy ] && tool="roam online (pre-copy back from the laptop daemon)"
        [ "$mode" = noprecopy ] && tool="roam online (laptop daemon --no-precopy)"
        row "$sz" "take online: laptop → server" "$tool" "$(fmt_ms "$down")" "$(human "$sent")" \
                "$(human $((w_on1 - w_on0)))" "$(fmt_s "$wall")" \
                "${back_note}the command first runs a checkpoint + push while the guest runs (${pre_ms} ms, ${tl_pre_reqs:-?} requests), then downtime = ${tl_final_ckpt_ms:-?} ms pause + final checkpoint on the laptop + ${tl_ready_ms:-?} ms the remainder made ready (${tl_ready_how:-?}; ${tl_chunks:-?} chunks, ${tl_paged:-?} of them as their changed pages) + ${tl_answer_ms:-?} ms until the server's answer (${tl_how:-?}; ${tl_push_reqs:-?} requests before the move-in; the server's move-in ${tl_movein_ms:-?} ms, of it its restore ${tl_server_restore_ms:-?} ms); on the laptop ${DWELL_S} s; $cont"
        if [ "$mode" = precopy ] && [ "${ROW_QUIET:-0}" = 0 ]; then
                ON_DOWN=$down ON_SENT=$sent ON_WIRE=$((w_on1 - w_on0))
        fi
        RUN_ON_DOWN=$down RUN_ON_SENT=$sent
        kill_qemus
        stop_serves
        homes_rm
}

# ---- QEMU live migration with storage (bench/guest.sh: qemu_pair, qemu_migrate) ----

bench_qemu() { # RAM_MIB [novga]
        local ram=$1 n=q-$1-${2:-vga} sz tool="QEMU 7.2 live migration + NBD drive-mirror"
        sz=$(gib "$ram")
        QEMU_VGA=(-device VGA)
        if [ "${2:-}" = novga ]; then
                QEMU_VGA=()
                tool="$tool; the guest without its VGA device (serial console only)"
        fi
        log "$tool, $sz guest, server → laptop"
        qemu_pair "$n" "$ram" "$DC_NS" "$LT_NS"
        wait_tick "$T/$n-src.serial" "$QEMU_TICK"
        local w0 w1
        w0=$(wire_bytes)
        # the destination listens on the laptop's address; the source reaches
        # it through the server namespace's delaying relays
        qemu_migrate "$n" "$LT_IP:$PORT_MIG" "127.0.0.1:$PORT_MIG" "$LT_IP:$PORT_NBD" "127.0.0.1:$PORT_NBD" "$QEMU_MAX_S"
        w1=$(wire_bytes)
        log "$(cat "$T/$n.json")"
        local j=$T/$n.json
        if [ "$(jget "$j" status)" = timeout ]; then
                qemu_pair_done "$n"
                row "$sz" "live migration: server → laptop" "$tool" \
                        "did not converge" "-" "$(human $((w1 - w0)))" "> ${QEMU_MAX_S} s (cancelled)" \
                        "migration stream $(human "$(jget "$j" ram_transferred)") in $(jget "$j" dirty_sync_count) dirty-log passes, $(human "$(jget "$j" remaining)") still dirty, dirty rate $(jget "$j" dirty_pages_rate) pages/s when cancelled; started at tick $QEMU_TICK"
                if [ -z "${2:-}" ]; then QEMU_DOWN="" QEMU_WIRE=$((w1 - w0)) QEMU_TOTAL=$(jget "$j" total_ms); fi
                return
        fi
        local a cont
        a=$(last_tick "$T/$n-src.serial")
        cont=$(continuity "$a" "$T/$n-dst.serial" 0 "$T/$n-src.serial")
        qemu_pair_done "$n"
        local pause qd total mig ram_b mir_b dl ready srcd dstd
        mig_fields "$j"
        row "$sz" "live migration: server → laptop" "$tool" \
                "$(fmt_ms "$pause") (QEMU: $(fmt_ms "$qd"))" "-" "$(human $((w1 - w0)))" "$(fmt_s "$total")" \
                "guest-visible downtime = source STOP → destination RESUME; started at tick $QEMU_TICK (about the guest's age at roam's click); migration stream $(human "$ram_b") in $(jget "$j" dirty_sync_count) dirty-log passes + mirror $(human "$mir_b"); mirror ready after $(fmt_s "$ready"), migrate $(fmt_s "$mig"); after the source's stop: source done $(fmt_ms "$srcd"), destination has the stream $(fmt_ms "$dstd"); downtime-limit $dl ms (default), max-bandwidth 10 GiB/s; no pre-copy ahead of time: all of it moves after the click; $cont"
        # (whole ms: the goals compare it in shell arithmetic)
        if [ -z "${2:-}" ]; then QEMU_DOWN=$(printf '%.0f' "$pause") QEMU_WIRE=$((w1 - w0)) QEMU_TOTAL=$total; fi
}

# goals RAM_MIB: the issue's goals for the pre-copy rows of this size
goals() {
        local ram=$1 sz lim
        sz=$(gib "$ram")
        lim=$(awk -v m="$ram" 'BEGIN { printf "%.0f", m * 1048576 * 0.02 }')
        local dir down sent wire
        for dir in offline online; do
                if [ $dir = offline ]; then down=$OFF_DOWN sent=$OFF_SENT wire=$OFF_WIRE; else down=$ON_DOWN sent=$ON_SENT wire=$ON_WIRE; fi
                [ -n "$down" ] || continue
                local dg bg after
                # everything after the click counts: the larger of roam's
                # figure and the kernel's count for the whole command
                after=$wire
                [ "$sent" -le "$after" ] || after=$sent
                GOAL_N=$((GOAL_N + 1))
                if [ "$down" -le 1000 ]; then dg="met" GOAL_DOWN=$((GOAL_DOWN + 1)); else dg="NOT met"; fi
                if [ "$after" -le "$lim" ]; then bg="met" GOAL_BYTES=$((GOAL_BYTES + 1)); else bg="NOT met"; fi
                printf -- '* %s, take %s with pre-copy: downtime %s ms — goal ≤ 1 s **%s**; after the click %s on the wire (roam: %s during the pause), %s of RAM — goal ≤ 2%% of RAM (%s) + the disk delta **%s**\n' \
                        "$sz" "$dir" "$down" "$dg" "$(human "$after")" "$(human "$sent")" "$(pct "$after" $((ram * 1048576)))" "$(human "$lim")" "$bg" >>"$GOALS"
        done
        # the speed goals: the median of the runs with every lever on
        local m
        for dir in offline online; do
                if [ $dir = offline ]; then m=${SUM_OFF:-}; else m=${SUM_ON:-}; fi
                [ -n "$m" ] || continue
                local g1 g2="no QEMU figure"
                if [ "$m" -le 300 ]; then g1="met"; else g1="NOT met"; fi
                if [ -n "$QEMU_DOWN" ]; then
                        if [ $((m * 100)) -le $((QEMU_DOWN * 35)) ]; then g2="met"; else g2="NOT met"; fi
                        g2="$g2 ($(awk -v a="$m" -v b="$QEMU_DOWN" 'BEGIN { printf "%.2f", a / b }')× QEMU's $QEMU_DOWN ms)"
                fi
                printf -- '* %s, take %s, median of %s runs with every lever on: %s ms — goal ≤ 300 ms **%s**; ≤ 0.35× QEMU'"'"'s guest-visible downtime **%s**\n' \
                        "$sz" "$dir" "$RUNS" "$m" "$g1" "$g2" >>"$GOALS"
        done
        if [ -n "$QEMU_DOWN" ]; then
                printf -- '* %s, for comparison, QEMU live migration: guest-visible downtime %s, %s on the wire after the click, %s in all\n' \
                        "$sz" "$(fmt_ms "$QEMU_DOWN")" "$(human "$QEMU_WIRE")" "$(fmt_s "$QEMU_TOTAL")" >>"$GOALS"
        elif [ -n "$QEMU_TOTAL" ]; then
                printf -- '* %s, for comparison, QEMU live migration: did not converge in %s (cancelled), %s on the wire by then\n' \
                        "$sz" "$(fmt_s "$QEMU_TOTAL")" "$(human "$QEMU_WIRE")" >>"$GOALS"
        fi
}
GOAL_N=0 GOAL_DOWN=0 GOAL_BYTES=0

# ---- runs and levers: median and range ----

SUMMARY=$T/summary
VARIANT_ENV=() VARIANT_DC=() VARIANT_LT=() VARIANT_PLAIN=0
variant() { # NAME: the daemons' extra settings of a variant (all levers on, or one off)
        VARIANT_ENV=() VARIANT_DC=() VARIANT_LT=() VARIANT_PLAIN=0
        case $1 in
        all) ;;
        nowarm) VARIANT_DC=(--no-warm-restore) VARIANT_LT=(--no-warm-restore) ;;
        nograntpack) VARIANT_LT=(--no-grant-pack) ;;
        nostream) VARIANT_DC=(--no-stream-pack) VARIANT_LT=(--no-stream-pack) ;;
        nopages) VARIANT_ENV=(ROAM_PAGE_DEDUP=0) ;;
        plain) VARIANT_PLAIN=1 ;;
        notmppool) VARIANT_DC=(--no-tmp-pool) VARIANT_LT=(--no-tmp-pool) ;;
        esac
}
variant_text() {
        case $1 in
        all) echo "all levers on (pre-copy, staged RAM, QEMU waiting, remainder with the grant, sent while it is packed and stored as it comes, page references, indexes as changes)" ;;
        nowarm) echo "without the waiting QEMU (--no-warm-restore): QEMU starts at the click" ;;
        nograntpack) echo "without the remainder in the grant's answer or the move-in's request (--no-grant-pack): pulled after the grant, pushed before the move-in, one round trip more each" ;;
        nostream) echo "without the remainder streamed (--no-stream-pack on both daemons): sent once all of it is packed (take offline by the server, take online by the laptop), stored once all of it came (take offline on the laptop, take online on the server)" ;;
        nopages) echo "without page references (ROAM_PAGE_DEDUP=0)" ;;
        plain) echo "a plain laptop (laptop init --no-encryption): encryption's cost is this row against the first" ;;
        notmppool) echo "without temp files made ahead (--no-tmp-pool on both daemons): every chunk a pause writes makes its file" ;;
        esac
}
stats() { # VALUES...: "median (min–max)"
        local sorted
        sorted=$(printf '%s\n' "$@" | sort -n)
        printf '%s (%s–%s)' "$(median <<<"$sorted")" "$(head -n 1 <<<"$sorted")" "$(tail -n 1 <<<"$sorted")"
}
# bench_variant RAM NAME: RUNS runs of the pre-copy hand-over in variant NAME,
# a summary row (the first run also gives the detailed rows)
bench_variant() {
        local ram=$1 v=$2 i offs=() ons=() offb=() onb=()
        variant "$v"
        for i in $(seq 1 "$RUNS"); do
                ROW_QUIET=$([ "$i" = 1 ] && [ "$v" = all ] && echo 0 || echo 1)
                RUN_OFF_DOWN="" RUN_ON_DOWN=""
                bench_roam "$ram" precopy
                offs+=("$RUN_OFF_DOWN") ons+=("$RUN_ON_DOWN") offb+=("$RUN_OFF_SENT") onb+=("$RUN_ON_SENT")
                log "$(gib "$ram") $v run $i: take offline $RUN_OFF_DOWN ms, take online $RUN_ON_DOWN ms"
        done
        ROW_QUIET=0
        variant all
        printf '| %s | %s | %s | %s | %s | %s |\n' "$(gib "$ram")" "$(variant_text "$v")" \
                "$(stats "${offs[@]}") ms" "$(stats "${ons[@]}") ms" \
                "$(human "$(printf '%s\n' "${offb[@]}" | median)")" "$(human "$(printf '%s\n' "${onb[@]}" | median)")" \
                >>"$SUMMARY"
        if [ "$v" = all ]; then
                SUM_OFF=$(printf '%s\n' "${offs[@]}" | median) SUM_ON=$(printf '%s\n' "${ons[@]}" | median)
        fi
}

# ---- run ----

want() { [[ $1 =~ ^(${ROAM_BENCH_HANDOFF_ONLY:-.*})$ ]]; }
ROAM_VERSION=$(git -C "$SRC_DIR" describe --always --dirty 2>/dev/null || echo '?')
QEMU_VERSION=$(qemu-system-x86_64 --version | head -n 1 | sed 's/ (.*//')
log "roam $ROAM_VERSION; $QEMU_VERSION; load $LOAD"

wan_setup $WAN_RATE $WAN_DELAY
wan_relay $PORT              # laptop → server API
wan_relay_dc $PORT_MIG       # server QEMU → laptop QEMU: migration stream
wan_relay_dc $PORT_NBD       # ... and the NBD export it mirrors into

for ram in $RAM_SIZES; do
        OFF_DOWN="" OFF_SENT="" OFF_WIRE="" ON_DOWN="" ON_SENT="" ON_WIRE="" QEMU_DOWN="" QEMU_WIRE="" QEMU_TOTAL=""
        SUM_OFF="" SUM_ON=""
        if want precopy; then
                bench_variant "$ram" all
                for v in nowarm nograntpack nostream nopages plain notmppool; do
                        if [[ $v =~ ^($LEVERS)$ ]]; then bench_variant "$ram" "$v"; fi
                done
        fi
        if want noprecopy; then bench_roam "$ram" noprecopy; fi
        if want qemu; then bench_qemu "$ram"; fi
        # the control: what QEMU's dirty log sees of the VGA console's redraws
        if want qemu-novga; then bench_qemu "$ram" novga; fi
        goals "$ram"
done

ELAPSED=$(($(date +%s) - BENCH_T0))
log "done in ${ELAPSED}s"

# ---- output ----

TABLE=$T/table.md
{
        if [ -s "$SUMMARY" ]; then
                echo "| guest | roam, with background pre-copy | take offline downtime, median (range) of $RUNS | take online downtime, median (range) | sent after the click, offline (median) | online (median) |"
                echo "| --- | --- | ---: | ---: | ---: | ---: |"
                cat "$SUMMARY"
                echo
        fi
        echo "| guest | hand-over | tool | downtime | sent after the click (roam) | on the wire during the command | command time | notes |"
        echo "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"
        cat "$ROWS"
} >"$TABLE"
cat "$TABLE"
[ -f "$GOALS" ] && cat "$GOALS" >&2

[ "${ROAM_BENCH_DOC:-1}" = 0 ] && exit 0
DOC=$T/section.md
SIZES_TEXT=""
for ram in $RAM_SIZES; do SIZES_TEXT="${SIZES_TEXT:+$SIZES_TEXT, }$(gib "$ram")"; done
{
        cat <<EOF
## Handoff: take offline and take online over a WAN (roam vs QEMU live migration)

The portable session's two clicks (\`docs/handoff.md\`) over an emulated WAN
of ${WAN_RATE} Mbit/s with ${WAN_DELAY} ms each way: the server and the laptop are two
network namespaces (tests/netns.sh: tbf on a veth pair, a delaying relay with
a 1 MiB buffer), both on this one machine and its 2 cores. Guest: the test
guest (\`scripts/build-guest.sh\`; its workload prints and fsyncs a counter
every 0.2 s) under TCG, \`-M pc-q35-7.2 -cpu qemu64 -smp 1\`, RAM in a shared
file in /dev/shm, booted fresh for every run ($SIZES_TEXT). The master image,
kernel and initrd are on the laptop beforehand in every case (a bundle: the
USB stick), as the QEMU destination has them as files.

EOF
        cat "$TABLE"
        cat <<EOF

Goals of the issue, for the test workload, with background pre-copy:
downtime ≤ 1 s and bytes after the click ≤ 2% of RAM + the disk delta
(checked here against 2% of RAM alone, which is stricter).

EOF
        echo "In short: the downtime goal is met in $GOAL_DOWN of $GOAL_N hand-overs with pre-copy, the bytes goal in $GOAL_BYTES of $GOAL_N."
        echo
        cat "$GOALS"
        cat <<EOF

* The first table: $RUNS runs of each variant, the median and the range of
  the downtime (each lever off in turn, to show what it gains). The second:
  the first run with every lever on, in detail, and QEMU's migration (one
  run). Bytes are decimal (1 MB = 10^6 bytes). On this shared
  2-core machine the same hand-over varies by a few hundred ms from run to
  run with the load, so a downtime within about 100 ms of the goal is no
  clear pass or fail.
* **downtime**: for roam, what \`roam offline\`/\`roam online\` print (the
  click's request → the guest runs on the other side; offline: the server's
  pause starts when the request reaches it, one connection set-up through
  the relay after the click). For QEMU, the guest-visible pause: the
  source's STOP event to the destination's RESUME event (QMP timestamps),
  and QEMU's own figure (query-migrate \`downtime\`) in brackets.
* **sent after the click (roam)**: what roam prints, its HTTP bodies during
  the pause. **on the wire during the command**: what the kernel counted on
  the laptop's end of the link (IP packets with headers, both directions)
  from the command's start to its end, for QEMU from \`drive-mirror\` to the
  destination's RESUME. For take online that includes the pre-copy round the
  command runs before it pauses the guest.
* **with pre-copy**: the laptop daemon (\`roam serve --role laptop
  --precopy-interval $INTERVAL\`) pre-copies for about $PRECOPY_S s; the click comes as
  soon as the script sees a round land (it polls the daemon's status), so
  that it does not wait for a round in progress: the daemon runs one
  pre-copy or hand-over at a time, and a click during a round first waits
  for its end (not downtime: the guest runs meanwhile). On the laptop the
  daemon takes a local checkpoint at once and pushes it back to the server
  (pre-copy back); take online comes $DWELL_S s after take offline.
  **without pre-copy**: \`--no-precopy\` (neither), the click at the same
  time after the daemon's start. \`roam online\` runs its own pre-copy round
  (a checkpoint and push while the guest runs) in both cases, and the server
  still has the chunks of the checkpoint it gave away.
* Where the time goes comes from the two daemons' own accounts (\`-v\`: the
  laptop's "take offline of"/"take online of" lines, the server's "take
  offline of" line) and request logs (ms timestamps, one clock). Take
  offline: the request's way to the server; the server's part until its
  grant (the bases loaded while the guest still runs, pause, device state,
  RAM and overlay into the store [the scan of RAM and disks for changed
  chunks, the device state, storing what was new and making it durable],
  sidecars, manifest and refs, QEMU ends; then the owner change); packing the
  remainder (its chunks as their changed pages, a thread per core); the
  answer's way back with the remainder (what is left of the laptop's wait
  for it); storing the remainder on the laptop (chunks rebuilt from their
  changed pages and the pre-copy, verified, compressed, encrypted: with
  every lever on, while the pack comes, and this is only what was left
  after its last byte); "pull" (it checks that everything is there and sets
  the ref); "restore" into the waiting QEMU. Take online: the laptop's
  final checkpoint; the remainder made ready (chunks as their changed
  pages: by default only its plan and the pack's head before the first
  byte goes, the records then made while they are sent; with
  \`--no-stream-pack\` all of it first); the one request that carries it
  with the move-in until the server's answer (the server stores it, then
  restores: "its restore").
* **QEMU 7.2**: the source in the server namespace, the destination in the
  laptop's (\`-incoming defer -S\`, exporting its own overlay over the same
  master through NBD); \`drive-mirror sync=top mode=existing\` into it,
  BLOCK_JOB_READY, \`migrate\` (max-bandwidth raised to 10 GiB/s,
  downtime-limit at its default of 300 ms), \`block-job-cancel\`, \`cont\` on
  the destination; both connections through the server namespace's delaying
  relays. It starts at tick $QEMU_TICK of the guest's counter, about the
  guest's age at roam's click; a migration still not converged after
  ${QEMU_MAX_S} s is cancelled and reported as such. QEMU has no pre-copy ahead of the
  click: everything it sends is sent after it. "dirty-log passes" is its
  \`dirty-sync-count\`: how often it went over the pages written since the
  previous pass. How long it takes and how much it sends depend on how fast
  the guest writes pages compared with the link, and vary a lot from run to
  run with this guest. The test guest prints its counter on the VGA console
  too (bochs DRM), 5 times a second, and every line redraws the frame
  buffer: QEMU's dirty log counts those pages as written again and again,
  and it converges only when a last pass happens to fit into its downtime
  limit. The rows "without its VGA device" are the control: the same guest
  and link with the serial console only. roam keeps no dirty log: a
  pre-copy round sends the 64 KiB chunks whose content is new, and the
  frame buffer (in the device state) goes with the final checkpoint. A
  chunk of the remainder goes as its changed 4 KiB pages, the others
  references to the pre-copy the receiver holds (the pre-copy's page index,
  \`docs/sync-protocol.md\`, "Page references").
* "counter continues (a → b)": the first tick on the target's console
  follows the last one on the source's: the same boot, nothing lost or
  repeated. "GUEST BROKEN" flags a run where it did not (the consoles are
  kept in $BENCH_CACHE/handoff-failures).

Run $(date +%Y-%m-%d) on $(BENCH_CACHE=/dev/shm machine); load average at the start $LOAD;
roam $ROAM_VERSION; $QEMU_VERSION; ${ELAPSED} s for the whole run.
Command: \`bash bench/handoff.sh\`.
EOF
} >"$DOC"
doc_section handoff "$DOC"
log "wrote the handoff section of docs/benchmarks.md"
