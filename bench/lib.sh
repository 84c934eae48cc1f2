# Shared helpers for roam's benchmarks. Source it first:
#   . "$(dirname "$0")/lib.sh"
# A benchmark prints one table on stdout (progress goes to stderr) and
# replaces its own section of docs/benchmarks.md, between the markers
# <!-- bench:NAME:start --> and <!-- bench:NAME:end -->.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC_DIR/build}
ROAM_BIN=${ROAM_BIN:-$BUILD_DIR/roam}
BENCH_CACHE=${ROAM_BENCH_CACHE:-/var/tmp/roam-bench}
export ROAM_PROGRESS=0
# the daemons serve plain HTTP, as when the figures in docs/benchmarks.md
# were taken (their URLs are http://)
export ROAM_INSECURE_HTTP=${ROAM_INSECURE_HTTP-1}

log() { printf '# %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

roam() { "$ROAM_BIN" "$@"; }

# now: seconds since the epoch, with nanoseconds
now() { date +%s.%N; }

# perf_begin NAME ... perf_end: with ROAM_BENCH_PERF=1, every CPU sampled in
# between (perf record -a -g, cpu-clock: this machine counts no cycles) into
# $T/NAME.perf, read with 'perf report -i' (keep it: ROAM_BENCH_KEEP=1)
perf_begin() {
	[ "${ROAM_BENCH_PERF:-0}" = 1 ] || return 0
	command -v perf >/dev/null || die "ROAM_BENCH_PERF=1 needs perf (apt-get install linux-perf)"
	perf record -a -g -e cpu-clock -F 4000 -o "$T/$1.perf" >/dev/null 2>&1 &
	PERF_PID=$!
	sleep 1 # perf is recording
}
perf_end() {
	[ -n "${PERF_PID:-}" ] || return 0
	kill -INT "$PERF_PID" 2>/dev/null
	wait "$PERF_PID" || true
	PERF_PID=
}

# timed VAR CMD...: runs CMD after a sync; VAR = its wall time in seconds,
# VAR_cpu = the CPU time (user + system) of CMD and its children, which other
# jobs on the machine disturb much less. The caller warms the page cache
# first, so every tool starts from the same state.
timed() {
        local __var=$1 __f __t
        shift
        __f=$(mktemp)
        sync
        # bash's time keyword measures children too; its report goes to __f
        { TIMEFORMAT='%R %U %S' && time "$@" 2>&3; } 3>&2 2>"$__f"
        __t=$(tail -1 "$__f")
        rm -f "$__f"
        printf -v "$__var" '%s' "$(echo "$__t" | awk '{ printf "%.3f", $1 }')"
        printf -v "${__var}_cpu" '%s' "$(echo "$__t" | awk '{ printf "%.3f", $2 + $3 }')"
}

# median: the median of the numbers on stdin
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# warm FILE...: reads the files once so that timed runs find them in the page cache
warm() { cat "$@" >/dev/null; }

# calc EXPR: awk arithmetic, e.g. calc "1536 / 0.7"
calc() { awk "BEGIN { printf \"%s\", $1 }"; }

# mbps BYTES SECONDS: throughput in MB/s (10^6 bytes), no decimals
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s <= 0) s = 0.001; printf "%.0f", b / s / 1e6 }'; }

# ratio A B [DECIMALS]: A / B
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b == 0) print "-"; else printf "%.*f", d, a / b }'; }

# human BYTES: "123.4 MB" (10^6), the unit used in every table
human() {
        awk -v b="$1" 'BEGIN {
                if (b >= 1e9) printf "%.2f GB", b / 1e9
                else if (b >= 1e6) printf "%.1f MB", b / 1e6
                else if (b >= 1e3) printf "%.1f kB", b / 1e3
                else printf "%d B", b }'
}

# tree_bytes DIR: sum of the sizes of the regular files below DIR (what a
# store holds, without directory entries)
tree_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }'; }

# apt_mirror: the Debian mirror apt uses here (ROAM_BENCH_MIRROR overrides),
# from one-line sources.list entries or deb822 *.sources files
apt_mirror() {
        if [ -n "${ROAM_BENCH_MIRROR:-}" ]; then
                echo "$ROAM_BENCH_MIRROR"
                return
        fi
        local suite=$1 m
        m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                awk -v s="$suite" '$1 == "deb" { for (i = 2; i < NF; i++) if ($i ~ /^(https?|file):/ && $(i + 1) == s) { print $i; exit } }')
        if [ -z "$m" ]; then
                m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v s="$suite" '
                        BEGIN { RS = ""; FS = "\n" }
                        { uri = ""; suites = ""; types = ""
                          for (i = 1; i <= NF; i++) {
                                  if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
                                  if ($i ~ /^Suites:/) suites = " " substr($i, 8) " "
                                  if ($i ~ /^Types:/) types = substr($i, 7) " "
                          }
                          if (types ~ /[ \t]deb[ \t]/ && suites ~ ("[ \t]" s "[ \t]") && uri != "") { print uri; exit } }')
        fi
        echo "${m:-http://deb.debian.org/debian}"
}

# machine: one line describing the machine, for the docs
machine() {
        local cpu mem fs dev
        cpu=$(lscpu 2>/dev/null | awk -F: '/^Model name/ { sub(/^[ \t]+/, "", $2); print $2; exit }')
        mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
        fs=$(df --output=fstype "$BENCH_CACHE" | tail -1)
        dev=$(basename "$(df --output=source "$BENCH_CACHE" | tail -1)")
        if [ "$fs" = ext4 ] && ! compgen -G "/proc/fs/jbd2/$dev-*" >/dev/null; then
                fs="ext4 without journal"
        fi
        printf '%s cores (nproc), %s, %s RAM, Linux %s, %s on %s' "$(nproc)" "${cpu:-unknown CPU}" "$mem" \
                "$(uname -r)" "$fs" "$BENCH_CACHE"
}

# doc_section NAME FILE: replaces the NAME section of docs/benchmarks.md with
# the contents of FILE (creating the document, or appending the section, if
# missing); every other section stays as it is
doc_section() {
        local name=$1 body=$2 doc=$SRC_DIR/docs/benchmarks.md
        local start="<!-- bench:$name:start -->" end="<!-- bench:$name:end -->"
        if [ ! -f "$doc" ]; then
                cat >"$doc" <<'EOF'
# Benchmarks

Measured numbers for roam, one section per benchmark in `bench/`. Each
section is rewritten by its script (`make bench` runs them); edit the
scripts, not the numbers.
EOF
        fi
        if ! grep -qF -- "$start" "$doc"; then
                printf '\n%s\n%s\n' "$start" "$end" >>"$doc"
        fi
        awk -v start="$start" -v end="$end" -v body="$body" '
                $0 == start { print; while ((getline line < body) > 0) print line; skip = 1; next }
                $0 == end { skip = 0 }
                !skip { print }' "$doc" >"$doc.tmp"
        mv "$doc.tmp" "$doc"
}

# ext4 without a journal (this machine's root) skips inodes deleted in the
# last 60 s when it allocates new ones, 360 s while their inode table block is
# dirty: creating thousands of files after deleting thousands is 2-3 times
# slower for minutes (recently_deleted() in fs/ext4/ialloc.c). A benchmark
# that deletes many files stamps it (stamp_delete); one that is about to
# create many waits until that is over (wait_after_delete; ROAM_BENCH_WAIT=0
# skips the wait).
CLEANED_STAMP=$BENCH_CACHE/run.cleaned
stamp_delete() { sync; mkdir -p "$BENCH_CACHE"; date +%s >"$CLEANED_STAMP"; }
wait_after_delete() {
        local last wait
        [ "${ROAM_BENCH_WAIT:-1}" = 0 ] && return
        last=$(cat "$CLEANED_STAMP" 2>/dev/null || echo 0)
        wait=$((last + 370 - $(date +%s)))
        if [ "$wait" -gt 0 ]; then
                log "waiting ${wait}s: ext4 is slow to allocate inodes after the last run's delete"
                sync
                sleep "$wait"
        fi
}

# loaded_note: a paragraph for docs/benchmarks.md when the machine had more
# runnable threads than cores at the start ($LOAD, /proc/loadavg's first
# three fields) or now: other jobs shared it, wall times are not the machine's
loaded_note() {
        local l
        l=$(cut -d' ' -f1 /proc/loadavg)
        awk -v a="${LOAD%% *}" -v b="$l" -v c="$(nproc)" 'BEGIN { exit !(a > c || b > c) }' || return 0
        echo "**The machine was loaded** (load average ${LOAD%% *} at the start, $l at the end, on $(nproc)"
        echo "cores: other jobs' QEMUs): wall times and MB/s are far below what it gives when"
        echo "idle; the CPU seconds and the ratios of interleaved runs are the figures to read."
        echo "To be run again on an idle machine."
        echo
}
