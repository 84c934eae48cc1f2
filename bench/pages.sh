#!/usr/bin/env bash
# Page references (docs/sync-protocol.md): the bytes of a first take offline
# without pre-copy, with and without them, in the same run. bench/sync.sh runs
# it at its end (its own section of docs/benchmarks.md, "sync-pages").
#
# Each run: a server home and a laptop home on this machine (loopback), the
# master image, kernel and initrd on the laptop beforehand (a bundle, as from a
# USB stick), the test guest (256 MiB) started on the server and let run to
# tick 10, the server's page indexes of those blobs built (as they are after
# the first take offline of any session on that image), then the laptop daemon
# with --no-precopy and 'roam offline s1'. Modes alternate run by run: page
# references on (default), off (ROAM_PAGE_DEDUP=0 for the laptop daemon).
# Reported: the bytes after the click (bodies of the laptop's requests and the
# server's answers, as 'roam offline' counts them), chunks sent, chunks sent as
# pages and the 4 KiB pages they referenced, downtime; median and range of
# $ROAM_BENCH_REPEAT runs each.
#
# usage: bash bench/pages.sh
# env:   ROAM_BENCH_REPEAT (default 3), ROAM_BENCH_DOC=0, ROAM_BENCH_KEEP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/guest.sh"

REPEAT=${ROAM_BENCH_REPEAT:-3}
SETTLE_TICK=10

bench_prereqs
command -v jq >/dev/null || die "needs jq"
bench_start roam-pages
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

# warm_pages HOME URL TOKEN: the server builds the page indexes of the
# checkpoint's image, kernel and initrd (one chunks/pages request naming them)
warm_pages() {
        python3 - "$1/store" >"$T/warm.body" <<'PY' || die "cannot make the warm-up request"
import json, struct, sys
store = sys.argv[1]
def obj(h):
        return open("%s/objects/%s/%s" % (store, h[:2], h), "rb").read()
ck = open(store + "/refs/sessions/alice/s1/base").read().split()[2]
m = obj(ck)
n = int.from_bytes(m[12:16], "little")
objs = json.loads(m[16:16 + n])["objects"]
bases = [objs[k] for k in ("image", "kernel", "initrd") if k in objs]
x = obj(objs["image"])
chunk = next(x[32 + 32 * i:64 + 32 * i] for i in range(int.from_bytes(x[24:32], "little")) if any(x[32 + 32 * i:64 + 32 * i]))
sys.stdout.buffer.write(struct.pack("<I", len(bases)) + b"".join(bytes.fromhex(b) for b in bases) + chunk)
PY
        curl -sf -o /dev/null -H "Authorization: Bearer $3" --data-binary "@$T/warm.body" "$2/v1/chunks/pages" ||
                die "the warm-up request failed"
}

declare -A BYTES=() DOWN=() CHUNKS=() PAGED=() REFS=() FALLBACK=()
run_one() { # MODE I
        local mode=$1 i=$2 d S L sp lp alice host url out rc=0 envs=()
        d=$T/$mode-$i S=$d/server L=$d/laptop
        mkdir -p "$S" "$L"
        HOMES+=("$S" "$L")
        roam_in "" "$S" image import deb "$GUEST/master.img" >/dev/null 2>&1 || die "image import failed"
        roam_in "" "$S" session create s1 --image deb --user alice --ram 256M --kernel "$GUEST/vmlinux" \
                --initrd "$GUEST/initrd.img" >/dev/null 2>&1 || die "session create failed"
        alice=$(roam_in "" "$S" token create --role user --user alice)
        host=$(roam_in "" "$S" token create --role host)
        roam_in "" "$S" bundle create -o "$d/usb.bundle" images/deb sessions/alice/s1/base >/dev/null 2>&1 ||
                die "bundle create failed"
        roam_in "" "$L" bundle apply "$d/usb.bundle" >/dev/null 2>&1 || die "bundle apply failed"
        rm -f "$d/usb.bundle"
        roam_in "" "$S" session start s1 >/dev/null || die "session start failed"
        sp=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        url=http://127.0.0.1:$sp
        ROAM_HOME=$S "$ROAM_BIN" serve --listen "127.0.0.1:$sp" -v --log "$d/server.log" >/dev/null 2>&1 &
        DPIDS+=($!)
        wait_for 20 curl -sf -o /dev/null "$url/v1/info" -H "Authorization: Bearer $host" ||
                die "the server daemon did not start"
        wait_tick "$S/sessions/s1/serial.log" $SETTLE_TICK
        warm_pages "$S" "$url" "$host"
        [ "$mode" = whole ] && envs=(ROAM_PAGE_DEDUP=0)
        lp=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        env "${envs[@]}" ROAM_HOME="$L" "$ROAM_BIN" serve --role laptop --listen "127.0.0.1:$lp" --server "$url" \
                --token "$alice" --name lt --no-precopy -v --log "$d/laptop.log" >/dev/null 2>&1 &
        DPIDS+=($!)
        wait_for 20 curl -s -o /dev/null "http://127.0.0.1:$lp/v1/info" || die "the laptop daemon did not start"
        sleep 1 # pairing
        out=$(roam_in "" "$L" offline s1 --json 2>&1) || rc=$?
        [ $rc = 0 ] || die "take offline ($mode) failed: $out; $(tail -n 5 "$d/laptop.log")"
        BYTES[$mode]+="$(jq -r .bytes_after_click <<<"$out") "
        DOWN[$mode]+="$(jq -r .downtime_ms <<<"$out") "
        CHUNKS[$mode]+="$(jq -r .chunks_after_click <<<"$out") "
        PAGED[$mode]+="$(jq -r .chunks_paged <<<"$out") "
        REFS[$mode]+="$(jq -r .pages_referenced <<<"$out") "
        FALLBACK[$mode]+="$(jq -r .chunks_page_fallback <<<"$out") "
        log "  $mode $i: $(jq -c '{bytes_after_click, downtime_ms, chunks_after_click, chunks_paged, pages_referenced, chunks_page_fallback}' <<<"$out")"
        kill_qemus
        stop_serves
        homes_rm
}

for ((i = 1; i <= REPEAT; i++)); do
        for mode in pages whole; do
                log "run $i, page references $([ $mode = pages ] && echo on || echo off)"
                run_one "$mode" "$i"
        done
done

med() { tr ' ' '\n' <<<"$1" | grep . | median; }
range() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk 'NR == 1 { a = $1 } { b = $1 } END { printf "%s–%s", a, b }'; }
hrange() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk 'NR == 1 { a = $1 } { b = $1 } END { print a, b }' |
        { read -r a b; printf '%s–%s' "$(human "$a")" "$(human "$b")"; }; }
row() {
        local mode=$1 label=$2
        printf '| first take offline, no pre-copy, test guest 256 MiB | %s | %s | %s ms | %s chunks, %s as pages (%s pages referenced, %s fetched whole); median of %s runs (bytes %s, downtime %s ms) |\n' \
                "$label" "$(human "$(med "${BYTES[$mode]}")")" "$(med "${DOWN[$mode]}")" "$(med "${CHUNKS[$mode]}")" \
                "$(med "${PAGED[$mode]}")" "$(med "${REFS[$mode]}")" "$(med "${FALLBACK[$mode]}")" "$REPEAT" \
                "$(hrange "${BYTES[$mode]}")" "$(range "${DOWN[$mode]}")"
}
b_on=$(med "${BYTES[pages]}") b_off=$(med "${BYTES[whole]}")
TABLE=$(
        echo "| scenario | page references | bytes after the click | downtime | notes |"
        echo "| --- | --- | ---: | ---: | --- |"
        row pages "on (default)"
        row whole "off (ROAM_PAGE_DEDUP=0)"
)
printf '%s\n' "$TABLE"
SAVED="Page references saved $(human $((b_off - b_on))) of $(human "$b_off") ($(awk -v a="$b_on" -v b="$b_off" 'BEGIN { printf "%.1f%%", 100 * (b - a) / b }')) of the bytes after the click."
log "$SAVED"

if [ "${ROAM_BENCH_DOC:-1}" != 0 ]; then
        body=$T/section.md
        {
                echo "## Sync: page references in a first take offline"
                echo
                echo "The test guest (256 MiB, busybox; its master image, kernel and initrd on the laptop"
                echo "beforehand) taken offline at tick 10 by a laptop daemon with \`--no-precopy\`, over"
                echo "loopback, page references on and off in alternate runs. Bytes: the bodies of the"
                echo "laptop's requests and the server's answers after the click, as \`roam offline\`"
                echo "counts them. The server's page indexes of the image, kernel and initrd were built"
                echo "beforehand (they are cached per image: only the first take offline on an image"
                echo "builds them)."
                echo
                printf '%s\n' "$TABLE"
                echo
                echo "$SAVED Most of this guest's RAM pages that equal blocks of"
                echo "its kernel are in 64 KiB chunks equal to the kernel's own chunks already (the"
                echo "kernel is loaded chunk-aligned), so they cost nothing either way; page"
                echo "references catch the pages of the page cache (blocks of the master image) and of"
                echo "the kernel in chunks that differ elsewhere. A guest that has read more of its"
                echo "disk (a desktop) has more of them."
                echo
                loaded_note
                echo "Run $(date -u +%Y-%m-%d) on $(machine); load average at the start $LOAD (the machine"
                echo "is shared; bytes do not depend on the load, downtimes do);"
                echo "roam $(git -C "$SRC_DIR" describe --always --dirty 2>/dev/null || echo '?'). Command: \`bash bench/pages.sh\`."
        } >"$body"
        doc_section sync-pages "$body"
        log "updated docs/benchmarks.md (sync-pages section)"
fi
