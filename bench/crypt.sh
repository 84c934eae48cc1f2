#!/usr/bin/env bash
# Encryption at rest: what it costs a laptop. Every figure is taken for a
# plain laptop home ('roam laptop init --no-encryption') and an encrypted one
# (the default) in the same run, alternating (plain, encrypted, plain, ...),
# so that the shared machine's noise falls on both; the table gives medians
# and the ratio encrypted / plain.
#
#   1. import: 'roam image import' of a 512 MiB image (half pseudo-random,
#      half text-like: both kinds of chunks) into a fresh home
#   2. pull: 'roam pull' of that image from a server daemon on loopback into
#      a fresh home
#   3. checkpoint: a session of the test guest (256 MiB, TCG) runs in the
#      laptop home; 'roam session checkpoint' a few times: the guest's pause
#      and the whole checkpoint
#   4. take offline: a server daemon runs the session, a laptop daemon
#      (--precopy-interval 2) pre-copies it; 'roam offline s1' once a round
#      landed: the downtime it prints; then 'roam online s1' brings it back
#
# Loopback only: a WAN adds the same link time to both columns, which only
# hides the difference (docs/benchmarks.md, "Handoff", has the WAN figures).
#
# usage: bash bench/crypt.sh     (as root; about 10 minutes on 2 cores)
# env:   ROAM_BENCH_REPEAT   rounds of each pair (default 3)
#        ROAM_BENCH_PARTS    the parts to run (default "import checkpoint offline")
#        ROAM_BENCH_DOC=0    do not update docs/benchmarks.md
#        ROAM_BENCH_KEEP=1   keep the scratch directory
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/guest.sh"

REPEAT=${ROAM_BENCH_REPEAT:-3}
PARTS=${ROAM_BENCH_PARTS:-import checkpoint offline}
part() { [[ " $PARTS " == *" $1 "* ]]; }
IMAGE_MIB=512
CHECKPOINTS=3 # per session run
bench_prereqs
bench_start roam-crypt

# a fresh laptop home of MODE (plain or crypt) at $1
new_home() {
        local h=$1 mode=$2
        rm -rf "$h" "$(ram_dir_of "$h")"
        mkdir -p "$h"
        HOMES+=("$h")
        if [ "$mode" = plain ]; then
                roam_in "" "$h" laptop init --no-encryption >/dev/null
        else
                roam_in "" "$h" laptop init >/dev/null
                roam_in "" "$h" unlock >/dev/null
        fi
}
rm_home() { rm -rf "$1" "$(ram_dir_of "$1")"; }

log "the image: $IMAGE_MIB MiB, half pseudo-random, half text"
# (the writers end on SIGPIPE when head has enough: not an error here)
{
        openssl enc -aes-128-ctr -nosalt -pass pass:roam-bench -in /dev/zero 2>/dev/null | head -c $((IMAGE_MIB / 2 << 20)) || true
        yes 'the quick brown fox jumps over the lazy dog 0123456789 roam bench line' | head -c $((IMAGE_MIB / 2 << 20)) || true
} >"$T/image.raw"
[ "$(stat -c %s "$T/image.raw")" = $((IMAGE_MIB << 20)) ] || die "the image is not $IMAGE_MIB MiB"
warm "$T/image.raw"

declare -A V # V[metric,mode] = "v1 v2 ..."
add() { V[$1,$2]="${V[$1,$2]:-} $3"; }
med() { tr ' ' '\n' <<<"${V[$1,$2]:-}" | grep . | median || true; }

log "1. import, 2. pull"
S=$T/server
HOMES+=("$S")
roam_in "" "$S" image import img "$T/image.raw" >/dev/null 2>&1
SP=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ROAM_HOME=$S "$ROAM_BIN" serve --listen "127.0.0.1:$SP" >"$T/server.log" 2>&1 &
DPIDS+=($!)
wait_for 20 curl -s -o /dev/null "http://127.0.0.1:$SP/v1/info" || die "the server daemon did not start"
HOST=$(roam_in "" "$S" token create --role host)
# Each laptop home of this part lives on a file system of its own, made
# fresh for it and gone after it: ext4 with a journal, as a laptop has it.
# This machine's root file system is ext4 *without* a journal, whose inode
# allocation skips inodes deleted in the last minutes (perf:
# recently_deleted() under ext4_create): a store made minutes after another
# one was deleted paid seconds of kernel CPU for it, in either mode, and the
# medians of earlier runs (pull 1.13) measured that rather than encryption.
# A fresh file system also keeps one run's writeback out of the next one.
LFS=$T/laptop-fs
LFS_IMG=$T/laptop-fs.img
fs_up() {
        mkdir -p "$LFS"
        truncate -s 8G "$LFS_IMG"
        mkfs.ext4 -q -F "$LFS_IMG" || die "mkfs.ext4 of the laptop file system failed"
        mount -o loop "$LFS_IMG" "$LFS" || die "cannot mount the laptop file system (a loop device)"
}
fs_down() { # HOME: its RAM directory goes; the home goes with its file system
        rm -rf "$(ram_dir_of "$1")"
        umount "$LFS" && rm -f "$LFS_IMG"
}
cleanup_add "umount '$LFS'"
for i in $(seq "$REPEAT"); do
        part import || break
        order="plain crypt"
        [ $((i % 2)) = 1 ] || order="crypt plain" # neither mode always first
        for mode in $order; do
                fs_up
                new_home "$LFS/imp" "$mode"
                timed t roam_in "" "$LFS/imp" image import img "$T/image.raw"
                add import "$mode" "$t"
                add import_cpu "$mode" "$t_cpu"
                fs_down "$LFS/imp"
                fs_up
                new_home "$LFS/pull" "$mode"
                timed t roam_in "" "$LFS/pull" pull "http://127.0.0.1:$SP" images/img --token "$HOST"
                add pull "$mode" "$t"
                add pull_cpu "$mode" "$t_cpu"
                fs_down "$LFS/pull"
                log "round $i $mode: import ${V[import,$mode]##* } s, pull ${V[pull,$mode]##* } s"
        done
done

log "3. checkpoint on the laptop"
for i in $(seq "$REPEAT"); do
        part checkpoint || break
        for mode in plain crypt; do
                L=$T/cp-$mode
                new_home "$L" "$mode"
                roam_in "" "$L" image import deb "$GUEST/master.img" >/dev/null 2>&1
                roam_in "" "$L" session create s1 --image deb --user alice --ram 256M --kernel "$GUEST/vmlinux" \
                        --initrd "$GUEST/initrd.img" >/dev/null
                roam_in "" "$L" session start s1 >/dev/null
                SERIAL=$(roam_in "" "$L" session show s1 | sed -n 's/^serial: *//p')
                [ -n "$SERIAL" ] || SERIAL=$(find "$L/sessions/s1" "$(ram_dir_of "$L")" -name serial.log 2>/dev/null | head -n 1)
                wait_tick "$SERIAL" 10
                for k in $(seq "$CHECKPOINTS"); do
                        # "checkpoint N of 's1': pause P ms (...), total T ms; ..."
                        out=$(roam_in "" "$L" session checkpoint s1 2>&1 >/dev/null)
                        add pause "$mode" "$(sed -n 's/.*: pause \([0-9]*\) ms.*/\1/p' <<<"$out")"
                        add cktotal "$mode" "$(sed -n 's/.*, total \([0-9]*\) ms.*/\1/p' <<<"$out")"
                        sleep 1
                done
                roam_in "" "$L" session stop s1 >/dev/null 2>&1 || true
                kill_qemus
                rm_home "$L"
                log "round $i $mode: pauses${V[pause,$mode]} ms"
        done
done

log "4. take offline (loopback)"
ALICE=$(roam_in "" "$S" token create --role user --user alice)
roam_in "" "$S" image import deb "$GUEST/master.img" >/dev/null 2>&1
roam_in "" "$S" session create s1 --image deb --user alice --ram 256M --kernel "$GUEST/vmlinux" \
        --initrd "$GUEST/initrd.img" >/dev/null
roam_in "" "$S" session start s1 >/dev/null
# the server daemon again, now that it has a running session (as in the tests)
stop_serves
ROAM_HOME=$S "$ROAM_BIN" serve --listen "127.0.0.1:$SP" >>"$T/server.log" 2>&1 &
DPIDS+=($!)
wait_for 20 curl -s -o /dev/null "http://127.0.0.1:$SP/v1/info" || die "the server daemon did not start again"
for mode in plain crypt; do
        new_home "$T/lt-$mode" "$mode"
        roam_in "" "$T/lt-$mode" bundle apply <(roam_in "" "$S" bundle create -o /dev/stdout images/deb 2>/dev/null) \
                >/dev/null 2>&1 || true
done
precopied() { grep -q '"precopy_at": [1-9]' <<<"$(roam_in "" "$1" status --json)"; }
for i in $(seq "$REPEAT"); do
        part offline || break
        for mode in plain crypt; do
                L=$T/lt-$mode
                LP=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
                ROAM_HOME=$L "$ROAM_BIN" serve --role laptop --listen "127.0.0.1:$LP" --server "http://127.0.0.1:$SP" \
                        --token "$ALICE" --name "lt-$mode" --precopy-interval 2 >>"$T/lt-$mode.log" 2>&1 &
                lpid=$!
                DPIDS+=($lpid)
                wait_for 20 curl -s -o /dev/null "http://127.0.0.1:$LP/v1/info" || die "laptop daemon did not start"
                sleep 8 # a few pre-copy rounds
                wait_for 180 precopied "$L" || die "no pre-copy on the $mode laptop: $(tail -n 20 "$T/lt-$mode.log")"
                out=$(roam_in "" "$L" offline s1 --json) || die "take offline failed: $(tail -n 5 "$T/lt-$mode.log")"
                add downtime "$mode" "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["downtime_ms"])' <<<"$out")"
                sleep 3
                roam_in "" "$L" online s1 >/dev/null || die "take online failed: $(tail -n 5 "$T/lt-$mode.log")"
                kill "$lpid"
                wait "$lpid" 2>/dev/null || true
                log "round $i $mode: downtime ${V[downtime,$mode]##* } ms"
        done
done

row() { # LABEL METRIC UNIT
        local p c
        p=$(med "$2" plain)
        c=$(med "$2" crypt)
        printf '| %s | %s %s | %s %s | %s |\n' "$1" "$p" "$3" "$c" "$3" "$(ratio "$c" "$p")"
}
body=$T/doc.md
{
        cat <<EOF
## Encryption at rest: what it costs a laptop

\`bash bench/crypt.sh\` — $(machine); test guest under TCG; loopback. Each
figure is the median of $REPEAT rounds (checkpoints: $((REPEAT * CHECKPOINTS)))
taken alternately on a plain laptop home (\`roam laptop init
--no-encryption\`) and an encrypted one (the default: AES-256-GCM per chunk,
keyed names, the session's overlay on tmpfs; docs/store-format.md), in the
same run. Import and pull write each home on a fresh ext4 with a journal
(a loop file system made for that run). Goal: at most 10% slower.

| | plain | encrypted | encrypted / plain |
|---|---|---|---|
EOF
        row "import ${IMAGE_MIB} MiB (\`roam image import\`): wall" import s
        row "import: CPU time (user + system)" import_cpu s
        row "pull ${IMAGE_MIB} MiB on loopback (\`roam pull\`): wall" pull s
        row "pull: CPU time of the client" pull_cpu s
        row "checkpoint: the guest's pause" pause ms
        row "checkpoint: the whole of it" cktotal ms
        row "take offline: downtime (\`roam offline\`)" downtime ms
        cat <<EOF

CPU time is the steadier measure on this shared machine (other engineers'
jobs stretch wall times by tens of percent from one run to the next). All
runs (plain / encrypted): import ${V[import,plain]:--} / ${V[import,crypt]:--} s
(CPU ${V[import_cpu,plain]:--} / ${V[import_cpu,crypt]:--} s);
pull ${V[pull,plain]:--} / ${V[pull,crypt]:--} s (CPU ${V[pull_cpu,plain]:--} /
${V[pull_cpu,crypt]:--} s); pause ${V[pause,plain]:--} /
${V[pause,crypt]:--} ms; checkpoint ${V[cktotal,plain]:--} / ${V[cktotal,crypt]:--} ms;
downtime ${V[downtime,plain]:--} / ${V[downtime,crypt]:--} ms.
EOF
} >"$body"
cat "$body"
[ "${ROAM_BENCH_DOC:-1}" = 0 ] || doc_section crypt "$body"
