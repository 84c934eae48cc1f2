#!/usr/bin/env bash
# Store benchmark on dense images: roam against casync where (nearly) every
# byte is data, so that the import is measured on what it hashes, compresses
# and writes rather than on holes it skips. bench/store.sh runs it at its end
# (its own section of docs/benchmarks.md, "store-dense").
#
# Corpus (built once, cached in $ROAM_BENCH_CACHE, default /var/tmp/roam-bench):
#   dense-files-vN.img  an ext4 image filled with real files: mke2fs -d of a
#                       hard-linked copy of this host's /usr/bin and /usr/share
#                       (about 1.5 GB), 12% free space; all-zero blocks made holes
#   dense-ram-vN.img    the RAM of a running guest: the test guest (build/guest)
#                       booted under TCG, checkpointed at tick 10 and its RAM
#                       blob exported (the desktop guest's would be denser: not
#                       wired in yet)
#
# Measured on each (page cache warm, sync before each run, runs interleaved
# roam / casync / roam --threads 1 so that load from other jobs on the
# machine falls on all of them alike; the median of $ROAM_BENCH_REPEAT):
#   import MB/s of *non-zero input* (the image's non-zero 4 KiB blocks over
#   the wall time), CPU seconds per GB of it, bytes stored, and for roam the
#   chunks stored raw (zstd did not shrink them by 1/32).
#
# usage: bash bench/store-dense.sh
# env:   ROAM_BENCH_CACHE, ROAM_BENCH_REPEAT (default 3), ROAM_BENCH_DOC=0
. "$(dirname "$0")/lib.sh"

CORPUS_VERSION=1
REPEAT=${ROAM_BENCH_REPEAT:-3} # every run leaves ~50k files that are deleted at the end
GOAL_MBPS=500

[ "$(id -u)" = 0 ] || die "needs root (mke2fs -d of a copy of /usr, a guest under QEMU)"
for t in mke2fs casync cmp; do
        command -v "$t" >/dev/null || die "needs $t (run: scripts/deps.sh bench)"
done
[ -x "$ROAM_BIN" ] || die "no roam binary at $ROAM_BIN (run: make)"

mkdir -p "$BENCH_CACHE"
FILES=$BENCH_CACHE/dense-files-v$CORPUS_VERSION.img
RAMIMG=$BENCH_CACHE/dense-ram-v$CORPUS_VERSION.img
RUN=$BENCH_CACHE/dense-run
# The stores are written to a fresh journaled ext4 (a loop file system made
# for this run), as a server's disk is: on this machine's root file system
# (ext4 without a journal) every file created after many were deleted pays
# for ext4's recently_deleted() scan, which took as much kernel CPU as the
# import itself (perf, 2026-12-06: 4.9 s of sys for 5.1 s of user). The
# stores of the timed runs still go at the end, never between runs.
RUN_IMG=$BENCH_CACHE/dense-run.fs
if mountpoint -q "$RUN" 2>/dev/null; then umount "$RUN" || die "cannot unmount $RUN"; fi
if [ -e "$RUN" ] || [ -e "$RUN_IMG" ]; then
        log "removing the leftovers of an interrupted run"
        rm -rf "$RUN" "$RUN_IMG"
fi
mkdir -p "$RUN"
truncate -s 16G "$RUN_IMG"
mkfs.ext4 -q -F "$RUN_IMG" || die "mkfs.ext4 of the run's file system failed"
mount -o loop "$RUN_IMG" "$RUN" || die "cannot mount the run's file system (a loop device)"
trap 'umount "$RUN" 2>/dev/null; rm -rf "$RUN" "$RUN_IMG"' EXIT

# ---- corpus ----

make_files() {
        [ -f "$FILES" ] && return
        local stage=$BENCH_CACHE/dense-stage size
        log "dense files image: mke2fs -d of a hard-linked copy of /usr/bin and /usr/share (once)"
        rm -rf "$stage" "$FILES.tmp"
        mkdir -p "$stage"
        # hard links when /usr is on the same filesystem (no bytes copied), else a copy
        cp -al /usr/bin /usr/share "$stage/" 2>/dev/null || cp -a /usr/bin /usr/share "$stage/"
        size=$(du -sb "$stage" | awk '{ printf "%d", $1 * 1.12 / 1048576 + 64 }')
        E2FSPROGS_FAKE_TIME=1700000000 mke2fs -q -F -t ext4 -U 4c1d7a42-9f0e-4b3b-8a51-d2e6f0a1b2c3 \
                -E hash_seed=7e2a9c14-3b5d-4f60-9a71-0c8d2e4f6a8b -d "$stage" "$FILES.tmp" "${size}M" >&2 ||
                die "mke2fs -d failed"
        rm -rf "$stage"
        cp --sparse=always "$FILES.tmp" "$FILES"
        rm -f "$FILES.tmp"
}

# the RAM blob of the newest checkpoint of session s1 in home $1, into $2
export_ram() {
        local home=$1 out=$2 ck ram
        ck=$(awk '{ print $3 }' "$home/store/refs/sessions/alice/s1/latest")
        ram=$(python3 - "$home/store/objects" "$ck" <<'PY'
import json, sys
d, ck = sys.argv[1], sys.argv[2]
b = open("%s/%s/%s" % (d, ck[:2], ck), "rb").read()
n = int.from_bytes(b[12:16], "little")
print(json.loads(b[16:16 + n])["objects"]["ram"])
PY
) || die "cannot read the checkpoint manifest"
        mkdir -p "$home/store/refs/images"
        printf 'roam-ref 1 %s\n' "$ram" >"$home/store/refs/images/ram-export"
        ROAM_HOME=$home roam image export --force ram-export "$out" >/dev/null 2>&1 || die "cannot export the RAM"
}

make_ram() {
        [ -f "$RAMIMG" ] && return
        command -v qemu-system-x86_64 >/dev/null || { log "no qemu-system-x86_64: no RAM corpus"; return; }
        local home=$RUN/ram-home kernel initrd image
        bash "$SRC_DIR/scripts/build-guest.sh" "$BUILD_DIR/guest" >/dev/null 2>&1 ||
                { log "the test guest cannot be built here: no RAM corpus"; return; }
        kernel=$BUILD_DIR/guest/vmlinux initrd=$BUILD_DIR/guest/initrd.img image=$BUILD_DIR/guest/master.img
        log "dense RAM: the test guest booted under TCG, checkpointed at tick 10 (once)"
        export ROAM_ACCEL=tcg
        ROAM_HOME=$home roam image import deb "$image" >/dev/null 2>&1 || die "image import failed"
        ROAM_HOME=$home roam session create s1 --image deb --user alice --ram 256M --kernel "$kernel" \
                --initrd "$initrd" >/dev/null 2>&1 || die "session create failed"
        ROAM_HOME=$home roam session start s1 >/dev/null 2>&1 || die "session start failed"
        local i
        for ((i = 0; i < 600; i++)); do
                ROAM_HOME=$home roam session log s1 2>/dev/null | grep -q '^tick 10$' && break
                sleep 0.2
        done
        ROAM_HOME=$home roam session checkpoint s1 >/dev/null 2>&1 || die "checkpoint failed"
        ROAM_HOME=$home roam session stop s1 >/dev/null 2>&1 || true
        export_ram "$home" "$RAMIMG.tmp"
        cp --sparse=always "$RAMIMG.tmp" "$RAMIMG"
        rm -f "$RAMIMG.tmp"
}

make_files
make_ram
wait_after_delete
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- measurement ----

n_dir=0
fresh() {
        n_dir=$((n_dir + 1))
        D=$RUN/s-$n_dir
        mkdir -p "$D"
}
roam_all() { ROAM_HOME=$D roam image import x "$IMG" >/dev/null 2>>"$RUN/roam.log"; }
roam_one() { ROAM_HOME=$D roam image import --threads 1 x "$IMG" >/dev/null 2>>"$RUN/roam.log"; }
ca_make() { casync make --store="$D/store.castr" "$D/x.caibx" "$IMG" >/dev/null; }

# measure NAME IMG: the three tools interleaved REPEAT times; sets the rows
declare -a ROWS=()
measure() {
        local name=$1 i t raw nz tools=(roam_all ca_make roam_one) tool
        IMG=$2
        raw=$(stat -c %s "$IMG")
        nz=$(($(stat -c %b "$IMG") * 512)) # sparse: allocated = non-zero 4 KiB blocks
        log "$name: $(human "$raw") raw, $(human "$nz") non-zero"
        declare -A wall=() cpu=() stored=()
        for ((i = 0; i < REPEAT; i++)); do
                for tool in "${tools[@]}"; do
                        fresh
                        warm "$IMG"
                        timed t "$tool"
                        wall[$tool]+="$t "
                        cpu[$tool]+="${t_cpu} "
                        if [ "$tool" = ca_make ]; then
                                stored[$tool]=$(tree_bytes "$D/store.castr")
                        else
                                stored[$tool]=$(tree_bytes "$D/store/chunks")
                                RAW_CHUNKS=$(raw_chunks "$D/store/chunks")
                                CHUNKS=$(find "$D/store/chunks" -type f | wc -l)
                        fi
                        log "  $tool: $t s wall, $t_cpu s CPU"
                done
        done
        local m c
        declare -A mw=() mc=()
        for tool in "${tools[@]}"; do
                mw[$tool]=$(tr ' ' '\n' <<<"${wall[$tool]}" | grep . | median)
                mc[$tool]=$(tr ' ' '\n' <<<"${cpu[$tool]}" | grep . | median)
        done
        cpu_gb() { awk -v c="$1" -v b="$nz" 'BEGIN { printf "%.2f", c / (b / 1e9) }'; }
        ROWS+=("$(printf '| %s: import, all cores (MB/s of non-zero input) | %s | %s | wall %s s / %s s; CPU %s s / %s s per GB non-zero | %s× faster, %s× less CPU |' \
                "$name" "$(mbps "$nz" "${mw[roam_all]}")" "$(mbps "$nz" "${mw[ca_make]}")" "${mw[roam_all]}" "${mw[ca_make]}" \
                "$(cpu_gb "${mc[roam_all]}")" "$(cpu_gb "${mc[ca_make]}")" \
                "$(ratio "${mw[ca_make]}" "${mw[roam_all]}" 1)" "$(ratio "${mc[ca_make]}" "${mc[roam_all]}" 1)")")
        ROWS+=("$(printf '| %s: import, 1 thread (MB/s of non-zero input) | %s | - | wall %s s; CPU %s s per GB non-zero | all cores: %s× of 1 thread |' \
                "$name" "$(mbps "$nz" "${mw[roam_one]}")" "${mw[roam_one]}" "$(cpu_gb "${mc[roam_one]}")" \
                "$(ratio "${mw[roam_one]}" "${mw[roam_all]}" 2)")")
        ROWS+=("$(printf '| %s: stored | %s (%s of %s chunks raw) | %s | raw %s, non-zero %s | %s× casync |' \
                "$name" "$(human "${stored[roam_all]}")" "$RAW_CHUNKS" "$CHUNKS" "$(human "${stored[ca_make]}")" \
                "$(human "$raw")" "$(human "$nz")" "$(ratio "${stored[roam_all]}" "${stored[ca_make]}")")")
        RESULT_MBPS[$name]=$(mbps "$nz" "${mw[roam_all]}")
        RESULT_CPU[$name]=$(cpu_gb "${mc[roam_all]}")
}

# raw_chunks DIR: chunk files that are zstd frames of raw blocks (chunk-frame.h):
# frame header descriptor 0xa0 and a first block of type 0
raw_chunks() {
        find "$1" -type f -print0 | xargs -0 -r head -c 10 -q 2>/dev/null | python3 -c '
import sys
b = sys.stdin.buffer.read()
n = 0
for i in range(0, len(b) - 9, 10):
        if b[i:i + 5] == bytes([0x28, 0xb5, 0x2f, 0xfd, 0xa0]) and (b[i + 9] >> 1) & 3 == 0:
                n += 1
print(n)'
}

declare -A RESULT_MBPS=() RESULT_CPU=()
measure "files (ext4 of /usr)" "$FILES"
[ -f "$RAMIMG" ] && measure "guest RAM" "$RAMIMG"

TABLE=$(
        printf '| metric | roam | casync | other | ratio |\n| --- | ---: | ---: | ---: | ---: |\n'
        printf '%s\n' "${ROWS[@]}"
)
printf '%s\n' "$TABLE"
goal_line() {
        local name
        for name in "${!RESULT_MBPS[@]}"; do
                awk -v n="$name" -v m="${RESULT_MBPS[$name]}" -v c="${RESULT_CPU[$name]}" -v g=$GOAL_MBPS \
                        -v cores="$(nproc)" 'BEGIN {
                        printf "%s: %s MB/s (%s); CPU %s s per GB, i.e. %.0f MB/s if %d cores were ours alone\n",
                                n, m, (m >= g ? "met" : "NOT met"), c, cores * 1000 / c, cores }'
        done | sort
}
GOAL="Goal of issue 17: import at least $GOAL_MBPS MB/s of non-zero input on $(nproc) cores.
$(goal_line)"
log "$GOAL"

if [ "${ROAM_BENCH_DOC:-1}" != 0 ]; then
        body=$RUN/section.md
        {
                echo "## Store on dense images: roam vs casync"
                echo
                echo "Corpus: an ext4 image filled with real files (mke2fs -d of this host's /usr/bin and"
                echo "/usr/share, 12% free) and the RAM of the running test guest (booted under TCG,"
                echo "checkpointed at tick 10). Throughput is **non-zero input** (the image's non-zero"
                echo "4 KiB blocks) over the wall time; roam and casync ran interleaved, $REPEAT runs"
                echo "each, medians; CPU time is user + system of the command."
                echo
                printf '%s\n' "$TABLE"
                echo
                echo "roam: 64 KiB chunks, SHA-256 (OpenSSL), zstd level 1 on one worker per core, a"
                echo "chunk stored raw when zstd does not shrink it by 1/32, a committer thread"
                echo "publishing chunks (syncfs) while the workers go on. casync: its defaults"
                echo "(content-defined chunks, SHA-512/256, zstd level 3, no fsync)."
                echo
                printf '%s\n' "$GOAL"
                echo
                loaded_note
                echo "Run $(date -u +%Y-%m-%d) on $(machine); load average at the start $LOAD"
                echo "(the machine is shared: wall times are noisy, the CPU seconds and the ratios"
                echo "of interleaved runs less so); roam $(git -C "$SRC_DIR" describe --always --dirty 2>/dev/null || echo '?')."
                echo "Command: \`bash bench/store-dense.sh\` (also the end of \`bash bench/store.sh\`)."
        } >"$body"
        doc_section store-dense "$body"
        log "updated docs/benchmarks.md (store-dense section)"
fi
