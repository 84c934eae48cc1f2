#!/usr/bin/env bash
# Store benchmark: roam against casync on the same files, one table.
#
# Corpus (built once, cached in $ROAM_BENCH_CACHE, default /var/tmp/roam-bench):
#   base.img     a Debian bookworm minbase root filesystem (debootstrap) in a
#                1.5 GiB ext4 image made with mke2fs -d, no mounting
#   session.img  base.img after a user session, written in place with
#                debugfs -w so the block layout stays: new documents and
#                photos, a copied directory tree, appended logs and configs,
#                a few bytes changed inside binaries, two binaries replaced
#
# Measured (page cache warm for every run: inputs read once before timing;
# sync before each timed run; the median of $ROAM_BENCH_REPEAT runs):
#   1. import throughput: roam --threads 1, roam (all cores), casync make
#   2. bytes stored for base.img: roam, casync, zstd -3 of the image, non-zero data
#   3. incremental import of session.img into the same store: new bytes
#      stored, against rsync's literal data for the same update
#   4. export throughput: roam image export, casync extract (both cmp-verified)
#
# usage: bash bench/store.sh   (or: make bench)
# env:   ROAM_BENCH_CACHE   corpus cache directory (default /var/tmp/roam-bench)
#        ROAM_BENCH_REPEAT  timed runs per measurement (default 5)
#        ROAM_BENCH_LEVELS  zstd levels to compare with the default (default "3 -1 -3")
#        ROAM_BENCH_MIRROR  Debian mirror (default: the one apt uses)
#        ROAM_BENCH_DOC=0   do not update docs/benchmarks.md
#        ROAM_BENCH_DENSE=0 skip the dense corpus at the end (bench/store-dense.sh)
. "$(dirname "$0")/lib.sh"

SUITE=bookworm
CORPUS_VERSION=1 # bump when the corpus recipe changes: old cached images are rebuilt
REPEAT=${ROAM_BENCH_REPEAT:-5}
LEVELS=${ROAM_BENCH_LEVELS:-3 -1 -3} # zstd levels compared with the default (1)
IMG_SIZE=1536M

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, mke2fs -d of a root filesystem)"
for t in debootstrap mke2fs debugfs e2fsck casync rsync zstd openssl; do
        command -v "$t" >/dev/null || die "needs $t (run: scripts/deps.sh bench)"
done
[ -x "$ROAM_BIN" ] || die "no roam binary at $ROAM_BIN (run: make)"

mkdir -p "$BENCH_CACHE"
ROOTFS=$BENCH_CACHE/rootfs-$SUITE
BASE=$BENCH_CACHE/base-v$CORPUS_VERSION.img
SESSION=$BENCH_CACHE/session-v$CORPUS_VERSION.img
RUN=$BENCH_CACHE/run
# ext4 without a journal (this machine's root) skips inodes deleted in the
# last 60 s when it allocates new ones, 360 s while their inode table block
# is dirty, which new files next to them keep it: creating thousands of files
# after deleting thousands is 2-3 times slower for minutes (recently_deleted()
# in fs/ext4/ialloc.c). So the timed runs never follow a big delete of ours:
# the stores are removed at the end, and a rerun waits.
CLEANED=$BENCH_CACHE/run.cleaned
if [ -d "$RUN" ]; then
        log "removing the leftovers of an interrupted run"
        rm -rf "$RUN"
        date +%s >"$CLEANED"
fi
mkdir -p "$RUN"
trap 'rm -rf "$RUN"; sync; date +%s >"$CLEANED"' EXIT
wait_after_delete() {
        local last wait
        last=$(cat "$CLEANED" 2>/dev/null || echo 0)
        wait=$((last + 370 - $(date +%s)))
        if [ "$wait" -gt 0 ]; then
                log "waiting ${wait}s: ext4 is slow to allocate inodes after the last run's delete"
                sync
                sleep "$wait"
        fi
}

# ---- corpus ----

make_rootfs() {
        [ -f "$ROOTFS/etc/os-release" ] && return
        local mirror
        mirror=$(apt_mirror "$SUITE")
        log "debootstrap --variant=minbase $SUITE from $mirror (once; cached in $ROOTFS)"
        rm -rf "$ROOTFS.tmp"
        debootstrap --variant=minbase "$SUITE" "$ROOTFS.tmp" "$mirror" >"$BENCH_CACHE/debootstrap.log" 2>&1 ||
                die "debootstrap failed (log: $BENCH_CACHE/debootstrap.log)"
        mv "$ROOTFS.tmp" "$ROOTFS"
}

# sparsify TMP IMG: IMG = TMP with every all-zero 4 KiB block (and every
# unwritten extent) a hole, as in a sparse raw image; its allocated size is
# then its non-zero data
sparsify() {
        cp --sparse=always "$1" "$2.sparse"
        rm -f "$1"
        mv "$2.sparse" "$2"
}

make_base() {
        [ -f "$BASE" ] && return
        log "mke2fs -t ext4 -d $ROOTFS ($IMG_SIZE)"
        rm -f "$BASE.tmp"
        E2FSPROGS_FAKE_TIME=1700000000 mke2fs -q -F -t ext4 -U 6f9a1b52-7d0c-4a51-9a61-1f0c2b7e0d11 \
                -E hash_seed=0b1e7c3a-2f43-4d2a-8a57-3c6d9e1f0a22 -d "$ROOTFS" "$BASE.tmp" "$IMG_SIZE" >&2
        sparsify "$BASE.tmp" "$BASE"
}

# gen_text SEED BYTES: prose-like text made of the words of the GPL
gen_text() {
        tr -cs 'A-Za-z' ' ' <"$ROOTFS/usr/share/common-licenses/GPL-3" | awk -v seed="$1" -v n="$2" '
                { for (i = 1; i <= NF; i++) w[k++] = $i }
                END { srand(seed); out = 0; line = ""
                      while (out < n) {
                              line = line w[int(rand() * k)] " "
                              if (length(line) > 72) { print line; out += length(line) + 1; line = "" }
                      } }'
}

# gen_random SEED BYTES: incompressible bytes (a photo, an archive), reproducible
gen_random() {
        head -c "$2" /dev/zero | openssl enc -aes-128-ctr -nosalt -K "$(printf '%032x' "$1")" -iv "$(printf '%032x' 0)"
}

# session_cmds DIR: writes the files of the session into DIR and prints the
# debugfs commands that apply it
session_cmds() {
        local g=$1 i f
        mkdir -p "$g/docs" "$g/pics" "$g/tree" "$g/edit"
        echo "mkdir /home/user"
        echo "mkdir /home/user/Documents"
        echo "mkdir /home/user/Pictures"
        echo "cd /home/user/Documents"
        for i in $(seq 1 40); do # 40 documents, ~100 kB each
                gen_text "$i" $((60000 + i * 2000)) >"$g/docs/report-$i.txt"
                echo "write $g/docs/report-$i.txt report-$i.txt"
        done
        echo "cd /home/user/Pictures"
        for i in 1 2 3 4; do # 4 photos, 750 kB each
                gen_random "$i" 768000 >"$g/pics/IMG_000$i.jpg"
                echo "write $g/pics/IMG_000$i.jpg IMG_000$i.jpg"
        done
        # a copied directory tree (perl's library, ~5 MB in ~700 files)
        local src=usr/lib/x86_64-linux-gnu/perl-base dst=/home/user/perl-copy
        (cd "$ROOTFS/$src" && find . -mindepth 1 -type d | sort) | while read -r f; do
                echo "mkdir $dst/${f#./}"
        done | sed "1i mkdir $dst"
        (cd "$ROOTFS/$src" && find . -type f | sort) | while read -r f; do
                f=${f#./}
                echo "cd $dst/$(dirname "$f")"
                echo "write $ROOTFS/$src/$f $(basename "$f")"
        done
        # logs and configs that grew or changed (rewritten: rm + write)
        local -A edits=(
                [/var/log/dpkg.log]="$(for i in $(seq 1 400); do echo "2024-05-0$((i % 9 + 1)) 10:$((i % 60)):00 status installed libfoo$i:amd64 1.$i-1"; done)"
                [/var/log/alternatives.log]="$(for i in $(seq 1 50); do echo "update-alternatives 2024-05-01 10:00:$((i % 60)): link group editor updated to /usr/bin/vim.$i"; done)"
                [/etc/passwd]="user:x:1000:1000:User,,,:/home/user:/bin/bash"
                [/etc/group]="user:x:1000:"
                [/etc/shadow]='user:$y$j9T$abcdefghijklmnopqrstu.$ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcde:19800:0:99999:7:::'
                [/etc/bash.bashrc]="$(printf 'alias ll="ls -l"\nexport EDITOR=vi\n')"
        )
        for f in "${!edits[@]}"; do
                local e=$g/edit/$(echo "$f" | tr / _)
                { cat "$ROOTFS$f"; echo "${edits[$f]}"; } >"$e"
                echo "rm $f"
                echo "cd $(dirname "$f")"
                echo "write $e $(basename "$f")"
        done
        gen_text 99 40000 >"$g/edit/history"
        echo "cd /root"
        echo "write $g/edit/history .bash_history"
        gen_text 98 200000 >"$g/edit/history.log"
        echo "cd /var/log/apt"
        echo "write $g/edit/history.log history.log"
        # binaries replaced by an "upgrade" with a few bytes changed
        for f in /usr/bin/dpkg /usr/bin/apt-get; do
                local e=$g/edit/$(basename "$f")
                cp "$ROOTFS$f" "$e"
                printf 'roam-bench' | dd of="$e" bs=1 seek=4096 conv=notrunc status=none
                echo "rm $f"
                echo "cd $(dirname "$f")"
                echo "write $e $(basename "$f")"
        done
        # bytes changed in place inside binaries (a patched library, a tool)
        echo "zap_block -f /usr/bin/ls -o 100 -l 16 -p 0x90 2"
        echo "zap_block -f /usr/lib/x86_64-linux-gnu/libc.so.6 -o 2000 -l 64 -p 0xcc 40"
        echo "zap_block -f /usr/lib/x86_64-linux-gnu/libc.so.6 -o 0 -l 8 -p 0x00 300"
        echo "zap_block -f /usr/bin/bash -o 512 -l 32 -p 0x41 17"
}

make_session() {
        [ -f "$SESSION" ] && return
        log "session image: debugfs -w writes into a copy of the base image"
        local g=$RUN/session-files
        mkdir -p "$g"
        session_cmds "$g" >"$g/cmds"
        cp --sparse=always "$BASE" "$SESSION.tmp"
        E2FSPROGS_FAKE_TIME=1700086400 debugfs -w -f "$g/cmds" "$SESSION.tmp" >"$g/debugfs.log" 2>&1
        if grep -iE 'error|not found|cannot|exists' "$g/debugfs.log" >&2; then
                die "debugfs reported errors (above) while building the session image"
        fi
        e2fsck -fn "$SESSION.tmp" >"$g/fsck.log" 2>&1 || {
                cat "$g/fsck.log" >&2
                die "the session image does not pass e2fsck"
        }
        sparsify "$SESSION.tmp" "$SESSION" # $g goes with $RUN, at the end
}

make_rootfs
make_base
make_session
wait_after_delete
LOAD=$(cut -d' ' -f1-3 /proc/loadavg) # other jobs on the machine skew the times

RAW=$(stat -c %s "$BASE")
NONZERO=$(($(stat -c %b "$BASE") * 512)) # allocated after sparsify = non-zero 4 KiB blocks
SESSION_NONZERO=$(($(stat -c %b "$SESSION") * 512))
log "base: $(human "$RAW") raw, $(human "$NONZERO") non-zero; session: $(human "$SESSION_NONZERO") non-zero"

# ---- helpers ----

# median_of N VAR SETUP CMD: runs SETUP then times CMD (after warm + sync) N
# times; VAR = the median wall time, VAR_cpu = the median CPU time
median_of() {
        local _n=$1 _var=$2 _setup=$3 _cmd=$4 _i _t _t_cpu _times=() _cpus=() _cv
        for ((_i = 0; _i < _n; _i++)); do
                $_setup
                warm "$BASE" "$SESSION"
                timed _t "$_cmd"
                _times+=("$_t")
                _cpus+=("$_t_cpu")
        done
        _cv=${_var}_cpu
        printf -v "$_var" '%s' "$(printf '%s\n' "${_times[@]}" | median)"
        printf -v "$_cv" '%s' "$(printf '%s\n' "${_cpus[@]}" | median)"
        log "  wall ${_times[*]} s -> median ${!_var} s; cpu ${_cpus[*]} s -> median ${!_cv} s"
}

# Every run gets new store directories and nothing is deleted until the end
# (see above: deleting thousands of chunk files would slow the next run).
n_dir=0
fresh_roam() {
        n_dir=$((n_dir + 1))
        export ROAM_HOME=$RUN/roam-$n_dir
        if [ -n "${LEVEL:-}" ]; then roam store init --zstd-level "$LEVEL" >/dev/null; fi
}
fresh_casync() {
        n_dir=$((n_dir + 1))
        CA=$RUN/ca-$n_dir
        mkdir -p "$CA"
}
roam_stored() { tree_bytes "$ROAM_HOME/store/chunks"; }
ca_stored() { tree_bytes "$CA/store.castr"; }
ca_chunks() { find "$CA/store.castr" -type f -name '*.cacnk' | wc -l; }

# the timed commands, each with its own output redirection
roam_import1() { roam image import --threads 1 base "$BASE" >/dev/null 2>>"$RUN/roam.log"; }
roam_import() { roam image import base "$BASE" >/dev/null 2>>"$RUN/roam.log"; }
roam_import_session() { roam image import session "$SESSION" >/dev/null 2>>"$RUN/roam.log"; }
roam_export() { roam image export --force base "$RUN/out-roam.img" 2>>"$RUN/roam.log"; }
ca_make() { casync make --store="$CA/store.castr" "$CA/base.caibx" "$BASE" >/dev/null; }
ca_make_session() { casync make --store="$CA/store.castr" "$CA/session.caibx" "$SESSION" >/dev/null; }
ca_extract() { casync extract --store="$CA/store.castr" "$CA/base.caibx" "$RUN/out-ca.img"; }
no_setup() { :; }
fresh_out_ca() { rm -f "$RUN/out-ca.img"; }

# ---- 1. import ----

log "import: roam --threads 1"
median_of "$REPEAT" t_roam1 fresh_roam roam_import1
# the zstd level trade-off (import at all cores, bytes stored)
declare -A t_lv cpu_lv stored_lv
for LEVEL in $LEVELS; do
        log "import: roam, store with zstd level $LEVEL"
        median_of "$REPEAT" t_level fresh_roam roam_import
        t_lv[$LEVEL]=$t_level
        cpu_lv[$LEVEL]=$t_level_cpu
        stored_lv[$LEVEL]=$(roam_stored)
done
LEVEL=
log "import: roam (all $(nproc) cores; the store of the last run is used below)"
median_of "$REPEAT" t_roam fresh_roam roam_import
log "import: casync make"
median_of "$REPEAT" t_ca fresh_casync ca_make

# ---- 2. bytes stored (stores of the last runs) ----

roam_base=$(roam_stored)
ca_base=$(ca_stored)
roam_index=$(tree_bytes "$ROAM_HOME/store/objects")
ca_index=$(stat -c %s "$CA/base.caibx")
log "zstd -3 of the whole image"
zstd_base=$(zstd -3 -q -c "$BASE" | wc -c)

# ---- 3. incremental import of the session image into the same stores ----

log "incremental: roam"
warm "$SESSION"
timed t_roam_inc roam_import_session
roam_inc=$(($(roam_stored) - roam_base))
roam_inc_chunks=$(sed -n "s/^imported 'session'.*, \([0-9]*\) new chunks.*/\1/p" "$RUN/roam.log" | tail -1)
log "incremental: casync"
warm "$SESSION"
ca_base_chunks=$(ca_chunks)
timed t_ca_inc ca_make_session
ca_inc=$(($(ca_stored) - ca_base))
ca_inc_chunks=$(($(ca_chunks) - ca_base_chunks))
log "incremental: rsync --no-whole-file"
cp --sparse=always "$BASE" "$RUN/rsync-dest.img"
rsync_out=$(rsync --no-whole-file --inplace --stats "$SESSION" "$RUN/rsync-dest.img")
rsync_lit=$(printf '%s\n' "$rsync_out" | awk -F: '/^Literal data/ { gsub(/[^0-9]/, "", $2); print $2 }')
cmp "$SESSION" "$RUN/rsync-dest.img" || die "rsync result differs from the session image"
rm -f "$RUN/rsync-dest.img"

# ---- 4. export ----

log "export: roam"
median_of "$REPEAT" t_roam_exp no_setup roam_export
cmp "$BASE" "$RUN/out-roam.img" && roam_same=yes || roam_same=NO
rm -f "$RUN/out-roam.img"
log "export: casync extract"
median_of "$REPEAT" t_ca_exp fresh_out_ca ca_extract
cmp "$BASE" "$RUN/out-ca.img" && ca_same=yes || ca_same=NO
rm -f "$RUN/out-ca.img"
roam image export --force session "$RUN/out-roam.img" 2>/dev/null
cmp "$SESSION" "$RUN/out-roam.img" || roam_same=NO
rm -f "$RUN/out-roam.img"
casync extract --store="$CA/store.castr" "$CA/session.caibx" "$RUN/out-ca.img"
cmp "$SESSION" "$RUN/out-ca.img" || ca_same=NO
rm -f "$RUN/out-ca.img"

# ---- table ----

level=$(awk '/^zstd-level/ { print $2 }' "$ROAM_HOME/store/config")
chunk_size=$(awk '/^chunk-size/ { print $2 }' "$ROAM_HOME/store/config")
row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }
table() {
        row metric roam casync other ratio
        row --- ---: ---: ---: ---:
        row "import, 1 thread (MB/s)" "$(mbps "$RAW" "$t_roam1")" - "CPU time: roam $t_roam1_cpu s" -
        row "import, all cores (MB/s)" "$(mbps "$RAW" "$t_roam")" "$(mbps "$RAW" "$t_ca")" \
                "CPU time: roam $t_roam_cpu s, casync $t_ca_cpu s" \
                "$(ratio "$t_ca" "$t_roam" 1)× faster, $(ratio "$t_ca_cpu" "$t_roam_cpu" 1)× less CPU"
        for l in $LEVELS; do
                row "roam store at zstd level $l: import, stored" \
                        "$(mbps "$RAW" "${t_lv[$l]}") MB/s, $(human "${stored_lv[$l]}")" - \
                        "CPU time: ${cpu_lv[$l]} s" \
                        "$(ratio "${cpu_lv[$l]}" "$t_roam_cpu")× CPU, $(ratio "${stored_lv[$l]}" "$roam_base")× size of level $level"
        done
        row "stored for base image" "$(human "$roam_base")" "$(human "$ca_base")" \
                "zstd -3 of image: $(human "$zstd_base")" "$(ratio "$roam_base" "$ca_base")× casync"
        row "base image size" - - "raw $(human "$RAW"), non-zero $(human "$NONZERO")" \
                "roam: $(ratio "$roam_base" "$NONZERO")× non-zero"
        row "incremental: new bytes stored" "$(human "$roam_inc") ($roam_inc_chunks chunks)" \
                "$(human "$ca_inc") ($ca_inc_chunks chunks)" \
                "rsync literal data: $(human "$rsync_lit"); roam new chunks uncompressed: $(human $((roam_inc_chunks * chunk_size)))" \
                "$(ratio "$roam_inc" "$ca_inc")× casync"
        row "incremental import (MB/s)" "$(mbps "$RAW" "$t_roam_inc")" "$(mbps "$RAW" "$t_ca_inc")" \
                "CPU time: roam $t_roam_inc_cpu s, casync $t_ca_inc_cpu s" \
                "$(ratio "$t_ca_inc" "$t_roam_inc" 1)× faster"
        row "export (MB/s)" "$(mbps "$RAW" "$t_roam_exp")" "$(mbps "$RAW" "$t_ca_exp")" \
                "CPU time: roam $t_roam_exp_cpu s, casync $t_ca_exp_cpu s" \
                "$(ratio "$t_ca_exp" "$t_roam_exp" 1)× faster"
        row "export byte-identical (cmp)" "$roam_same" "$ca_same" - -
}
TABLE=$(table)
printf '%s\n' "$TABLE"
speedup=$(ratio "$t_ca" "$t_roam" 1)
GOAL="Goal of the store issue: import at least 10× casync and 1 GB/s on this machine:
$(awk -v x="$speedup" -v m="$(mbps "$RAW" "$t_roam")" 'BEGIN { print (x >= 10 && m >= 1000) ? "met" : "NOT met" }') (${speedup}×, $(mbps "$RAW" "$t_roam") MB/s)."
log "$GOAL"

NOTES="roam: $((chunk_size / 1024)) KiB fixed chunks, SHA-256, zstd level $level, zero chunks skipped, chunks
synced (syncfs) before the image ref is written. casync $(dpkg-query -W -f='${Version}' casync 2>/dev/null):
its defaults, i.e. content-defined chunks of 16/64/256 KiB (min/avg/max),
SHA-512/256, zstd level 3, no fsync. Throughput is raw image size ($(human "$RAW"))
divided by wall time; wall and CPU time (user + system, children included) are
medians of $REPEAT runs, page cache warm, sync before each run.
Bytes stored are the sizes of the chunk files (the index of the base image
is another $(human "$roam_index") for roam, $(human "$ca_index") for casync). rsync: \`rsync --no-whole-file
--inplace\` of the session image onto a copy of the base image."

if [ "${ROAM_BENCH_DOC:-1}" != 0 ]; then
        body=$RUN/section.md
        {
                echo "## Store: roam vs casync"
                echo
                echo "Corpus: a Debian $SUITE minbase root filesystem (debootstrap) in a $(human "$RAW") ext4"
                echo "image (mke2fs -d; $(human "$NONZERO") non-zero), and a copy changed in place by a user"
                echo "session through debugfs -w (new documents and photos, a copied directory tree,"
                echo "appended logs and configs, two replaced binaries, bytes patched inside others)."
                echo
                printf '%s\n' "$TABLE"
                echo
                printf '%s\n' "$NOTES"
                echo
                printf '%s\n' "$GOAL"
                echo
                echo "Run $(date -u +%Y-%m-%d) on $(machine); load average at the start $LOAD;"
                echo "roam $(git -C "$SRC_DIR" describe --always --dirty 2>/dev/null || echo '?')."
                echo "Command: \`make bench\` (or \`bash bench/store.sh\`)."
        } >"$body"
        doc_section store "$body"
        log "updated docs/benchmarks.md (store section)"
fi

# the dense corpus (an ext4 image full of files, a guest's RAM): its own
# section of docs/benchmarks.md; ROAM_BENCH_DENSE=0 skips it
if [ "${ROAM_BENCH_DENSE:-1}" != 0 ]; then
        bash "$SRC_DIR/bench/store-dense.sh" || die "bench/store-dense.sh failed"
fi
