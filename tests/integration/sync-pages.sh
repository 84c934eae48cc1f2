#!/usr/bin/env bash
# Page references (docs/sync-protocol.md, "Page references"): the RAM of a
# checkpoint travels partly as references to 4 KiB blocks of the master image
# that the receiver holds, and arrives byte for byte the same as without them
# (ROAM_PAGE_DEDUP=0), in fewer bytes; a take offline without pre-copy uses
# them and the guest goes on from the same state on the laptop; a tampered
# page index on the server (references to the wrong blocks) costs a fetch in
# full, never wrong RAM.
. "$(dirname "$0")/../lib.sh"
requires qemu-system-x86_64
requires python3
requires curl
export ROAM_ACCEL=tcg

need_guest

S=$T/server L=$T/laptop P1=$T/pages P2=$T/whole P3=$T/tampered
on() { local h=$1; shift; ROAM_HOME=$h "$ROAM_BIN" "$@"; }
state() { on "$1" session list 2>/dev/null | awk '$1 == "s1" { print $4 }'; }
# ram_of HOME CHECKPOINT: the RAM index id of a checkpoint manifest
ram_of() {
        python3 - "$1/store/objects" "$2" <<'PY'
import json, sys
d, ck = sys.argv[1], sys.argv[2]
b = open("%s/%s/%s" % (d, ck[:2], ck), "rb").read()
assert b[:8] == b"ROAMMAN\0", "not a manifest"
n = int.from_bytes(b[12:16], "little")
print(json.loads(b[16:16 + n])["objects"]["ram"])
PY
}
# export_ram HOME CHECKPOINT OUT: the checkpoint's RAM blob as a file (through
# an image ref that names the RAM index: 'image export' writes any blob)
export_ram() {
        local ram
        ram=$(ram_of "$1" "$2") || fail "no RAM in checkpoint $2 in $1"
        mkdir -p "$1/store/refs/images"
        printf 'roam-ref 1 %s\n' "$ram" >"$1/store/refs/images/ram-check"
        on "$1" image export --force ram-check "$3" >/dev/null 2>&1 || fail "cannot export the RAM of $2 from $1"
        on "$1" image rm ram-check >/dev/null 2>&1
}
ref_of() { awk '{ print $3 }' "$1/store/refs/$2"; }
# paged_of OUTPUT: "N M K" from a pull's line "N chunks rebuilt here from M page references, K fetched whole"
paged_of() { sed -nE 's/^ *([0-9]+) chunks rebuilt here from ([0-9]+) page references, ([0-9]+) fetched whole.*/\1 \2 \3/p' <<<"$1"; }
wire_of() { sed -nE 's/.* chunks transferred, ([0-9.]+ [KMG]?i?B) on the wire.*/\1/p' <<<"$1"; }
to_bytes() {
        awk -v s="$1" 'BEGIN { split(s, a, " "); m = 1
                if (a[2] == "KiB") m = 1024; else if (a[2] == "MiB") m = 1048576; else if (a[2] == "GiB") m = 1073741824
                printf "%.0f", a[1] * m }'
}

on "$S" image import deb "$GUEST/master.img" >/dev/null 2>&1
ALICE=$(on "$S" token create --role user --user alice)
HOST=$(on "$S" token create --role host)
on "$S" session create s1 --image deb --user alice --ram 256M --kernel "$GUEST/vmlinux" \
        --initrd "$GUEST/initrd.img" >/dev/null
# the master image, kernel and initrd on every receiver beforehand (a USB stick)
on "$S" bundle create -o "$T/usb.bundle" images/deb sessions/alice/s1/base >/dev/null 2>&1 ||
        fail "bundle create failed"
for h in "$L" "$P1" "$P2" "$P3"; do
        on "$h" bundle apply "$T/usb.bundle" >/dev/null 2>&1 || fail "bundle apply into $h failed"
done
on "$S" session start s1 >/dev/null
wait_for 90 bash -c "ROAM_HOME=$S $ROAM_BIN session log s1 | grep -q '^tick 5'" || fail "no ticks from the guest"
must_succeed on "$S" session checkpoint s1
CK=$(ref_of "$S" sessions/alice/s1/latest)
SP=$(free_port)
URL=http://127.0.0.1:$SP
start_daemon "$S" "127.0.0.1:$SP" --verbose
SPID=$DAEMON_PID

log "the checkpoint pulled without page references, then with them"
out2=$(ROAM_PAGE_DEDUP=0 on "$P2" pull "$URL" sessions/alice/s1/latest --token "$HOST" 2>&1 >/dev/null) ||
        fail "pull without page references failed: $out2"
log "$out2"
[ -z "$(paged_of "$out2")" ] || fail "ROAM_PAGE_DEDUP=0 still used page references: $out2"
out1=$(on "$P1" pull "$URL" sessions/alice/s1/latest --token "$HOST" 2>&1 >/dev/null) ||
        fail "pull with page references failed: $out1"
log "$out1"
read -r paged refs fallback <<<"$(paged_of "$out1")"
[ "${paged:-0}" -gt 0 ] && [ "${refs:-0}" -gt 0 ] || fail "no chunk came as page references: $out1"
[ "$fallback" = 0 ] || fail "$fallback chunks had to be fetched whole: $out1"
w1=$(to_bytes "$(wire_of "$out1")") w2=$(to_bytes "$(wire_of "$out2")")
[ "$w1" -lt "$w2" ] || fail "page references saved nothing: $w1 bytes against $w2"
log "on the wire: $w1 bytes with page references, $w2 without ($paged chunks rebuilt from $refs pages)"
for h in "$P1" "$P2"; do
        [ "$(ref_of "$h" sessions/alice/s1/latest)" = "$CK" ] || fail "$h has another checkpoint"
        must_succeed on "$h" store fsck
done
export_ram "$S" "$CK" "$T/ram-server"
export_ram "$P1" "$CK" "$T/ram-pages"
export_ram "$P2" "$CK" "$T/ram-whole"
cmp "$T/ram-server" "$T/ram-pages" || fail "the RAM pulled with page references differs from the server's"
cmp "$T/ram-pages" "$T/ram-whole" || fail "the RAM differs with and without page references"

log "pushed to a server that holds the master: pages there too, the same RAM"
S2=$T/server2
on "$S2" bundle apply "$T/usb.bundle" >/dev/null 2>&1 || fail "bundle apply into $S2 failed"
ADMIN2=$(on "$S2" token create --role admin)
S2P=$(free_port)
start_daemon "$S2" "127.0.0.1:$S2P"
S2PID=$DAEMON_PID
outp=$(on "$P1" push "http://127.0.0.1:$S2P" sessions/alice/s1/latest --token "$ADMIN2" 2>&1 >/dev/null) ||
        fail "push with page references failed: $outp"
log "$outp"
pushed=$(sed -nE 's/^ *([0-9]+) chunks sent as page references and rebuilt there.*/\1/p' <<<"$outp")
[ "${pushed:-0}" -gt 0 ] || fail "the push sent no page references: $outp"
kill "$S2PID"
wait "$S2PID" 2>/dev/null || true
must_succeed on "$S2" store fsck
export_ram "$S2" "$CK" "$T/ram-pushed"
cmp "$T/ram-server" "$T/ram-pushed" || fail "the RAM pushed with page references differs"

log "take offline without pre-copy: the RAM comes partly as page references, the guest goes on"
LP=$(free_port)
start_daemon "$L" "127.0.0.1:$LP" --role laptop --server "$URL" --token "$ALICE" --name lt --no-precopy
before=$(on "$S" session log s1 | grep -c '^tick')
res=$(on "$L" offline s1 --json 2>&1) || fail "take offline failed: $res"
log "$res"
[ "$(state "$L")" = running ] || fail "the session is not running on the laptop"
paged=$(jq -r .chunks_paged <<<"$res")
[ "$paged" -gt 0 ] || fail "the take offline used no page references: $res"
[ "$(jq -r .chunks_page_fallback <<<"$res")" = 0 ] || fail "chunks fetched whole in the take offline: $res"
OFF=$(jq -r .checkpoint <<<"$res")
export_ram "$S" "$OFF" "$T/ram-off-server"
export_ram "$L" "$OFF" "$T/ram-off-laptop"
cmp "$T/ram-off-server" "$T/ram-off-laptop" || fail "the laptop restored other RAM than the server's checkpoint"
last=$(on "$S" session log s1 | grep '^tick' | tail -1 | awk '{ print $2 }')
wait_for 60 bash -c "ROAM_HOME=$L $ROAM_BIN session log s1 | grep -q '^tick $((last + 1))\$'" ||
        fail "the guest did not go on from tick $last on the laptop ($before ticks on the server)"

log "a tampered page index on the server: references to the wrong blocks, fetched whole instead"
kill "$SPID"
wait "$SPID" 2>/dev/null || true
ls "$S"/store/pages/* >/dev/null 2>&1 || fail "the server kept no page index"
# every page index the server keeps (the master's, the kernel's, ...)
for f in "$S"/store/pages/*; do
        python3 - "$f" <<'PY'
import hashlib, struct, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack_from("<Q", b, 24)[0]
pages = [struct.unpack_from("<I", b, 72 + 12 * i + 8)[0] for i in range(n)]
for i in range(n):  # every hash now names the next entry's page
        struct.pack_into("<I", b, 72 + 12 * i + 8, pages[(i + 1) % n])
b[-32:] = hashlib.sha256(bytes(b[:-32])).digest()
open(p, "wb").write(bytes(b))
PY
done
start_daemon "$S" "127.0.0.1:$SP" --verbose
out3=$(on "$P3" pull "$URL" sessions/alice/s1/latest --token "$HOST" 2>&1 >/dev/null) ||
        fail "pull against the tampered page index failed: $out3"
log "$out3"
read -r paged refs fallback <<<"$(paged_of "$out3")"
[ "${fallback:-0}" -gt 0 ] || fail "no chunk was fetched whole after wrong references: $out3"
must_succeed on "$P3" store fsck
export_ram "$P3" "$(ref_of "$S" sessions/alice/s1/latest)" "$T/ram-tampered"
export_ram "$S" "$(ref_of "$S" sessions/alice/s1/latest)" "$T/ram-server-now"
cmp "$T/ram-server-now" "$T/ram-tampered" || fail "wrong RAM after tampered references"
log ok
