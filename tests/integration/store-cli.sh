#!/usr/bin/env bash
# The store through the roam binary: import, export, list, show, rm, fsck,
# gc, stats, bundles, and the bad-input cases of the store issue.
. "$(dirname "$0")/../lib.sh"

cd "$T"
make_image a.raw 48 1
# b = a with some blocks changed and a new file appended (a user session)
cp --sparse=always a.raw b.raw
python3 - <<'PY'
import random
r = random.Random(7)
with open("b.raw", "r+b") as f:
    for blk in (3, 100, 101, 500):
        f.seek(blk * 65536); f.write(r.randbytes(65536))
PY

log "help and version"
must_succeed roam --help; expect_match "$OUT" "image"
must_succeed roam --version; expect_match "$OUT" "^roam [0-9]"
for c in "image" "image import" "image export" "image list" "image show" "image rm" "store fsck" "store gc" "store stats" "store init" "bundle create" "bundle apply"; do
        must_succeed roam $c --help
        expect_match "$OUT" "usage: roam" "$c --help"
done
must_fail roam frobnicate; expect_match "$ERR" "unknown command"

log "image list on an empty home (a home that does not exist is an error: cli-bad-input.sh)"
mkdir -p "$ROAM_HOME"
must_succeed roam image list

log "import, export byte-identical and sparse"
must_succeed roam image import base a.raw
expect_match "$OUT" "^[0-9a-f]{64}$" "image id"
id_a=$OUT
must_succeed roam image export base out.raw
cmp a.raw out.raw || fail "export differs from import"
[ "$(du -k out.raw | cut -f1)" -lt "$(du -k --apparent-size out.raw | cut -f1)" ] || fail "export is not sparse"
must_succeed roam image show base; expect_match "$OUT" "$id_a"
must_succeed roam image list; expect_match "$OUT" "base"

log "importing the same bytes gives the same id; the changed copy stores few new chunks"
must_succeed roam image import again a.raw
[ "$OUT" = "$id_a" ] || fail "same content, different id"
roam image import session b.raw 2>err.txt >/dev/null || fail "import of b failed"
cat err.txt >&2
expect_match "$(cat err.txt)" " 4 new chunks" "incremental import"
must_succeed roam image export session out-b.raw
cmp b.raw out-b.raw || fail "export of b differs"

log "qcow2 input is converted"
if command -v qemu-img >/dev/null; then
        qemu-img convert -f raw -O qcow2 a.raw a.qcow2
        must_succeed roam image import fromqcow a.qcow2
        [ "$OUT" = "$id_a" ] || fail "qcow2 import differs from raw import"
fi

log "stats"
must_succeed roam store stats
expect_match "$OUT" "dedup ratio: +[0-9]"
expect_match "$OUT" "chunks: +[1-9]"

log "bad input: each a one-line error, exit != 0"
must_fail roam image import x "$T/does-not-exist"; expect_one_line "$ERR"; expect_match "$ERR" "cannot open"
must_fail roam image import x "$T"; expect_one_line "$ERR"; expect_match "$ERR" "directory"
: >empty.raw
must_fail roam image import x empty.raw; expect_one_line "$ERR"; expect_match "$ERR" "empty"
echo "hello, I am not a disk image" >note.txt
must_fail roam image import x note.txt; expect_one_line "$ERR"; expect_match "$ERR" "not a disk image"
for bad in "a/b" ".." "../x" "$(printf 'tab\there')" "$(printf 'bell\a')" ""; do
        must_fail roam image import "$bad" a.raw; expect_one_line "$ERR"; expect_match "$ERR" "invalid"
done
must_fail roam image import base a.raw; expect_match "$ERR" "already exists"
must_fail roam image export nosuch x.raw; expect_match "$ERR" "not found"
must_fail roam image export base out.raw; expect_match "$ERR" "exists"
must_fail roam image show nosuch; expect_match "$ERR" "not found"
must_fail roam image rm nosuch; expect_match "$ERR" "not found"
must_fail roam image import; expect_match "$ERR" "see 'roam image import --help'"
must_fail roam store init --chunk-size 3000; expect_match "$ERR" "power of two"
must_succeed roam store fsck

log "bundles: whole, delta with --since, and damaged ones"
must_succeed roam bundle create -o full.bundle base
must_succeed roam bundle create -o delta.bundle session --since base
[ "$(stat -c %s delta.bundle)" -lt $(( $(stat -c %s full.bundle) / 10 )) ] || fail "delta bundle is not small"
export ROAM_HOME=$T/home2
must_fail roam bundle apply delta.bundle; expect_match "$ERR" "base"
must_fail roam image show session
must_succeed roam bundle apply full.bundle
must_succeed roam bundle apply delta.bundle
must_succeed roam image export session out-b2.raw
cmp b.raw out-b2.raw || fail "image from bundles differs"
must_succeed roam store fsck

export ROAM_HOME=$T/home3
cp full.bundle flipped.bundle
python3 -c "
import os
f = open('flipped.bundle', 'r+b'); n = os.path.getsize('flipped.bundle'); f.seek(n // 3)
b = f.read(1); f.seek(n // 3); f.write(bytes([b[0] ^ 1]))"
must_fail roam bundle apply flipped.bundle; expect_one_line "$ERR"; expect_match "$ERR" "corrupt|checksum"
head -c $(( $(stat -c %s full.bundle) - 100 )) full.bundle >trunc.bundle
must_fail roam bundle apply trunc.bundle; expect_one_line "$ERR"; expect_match "$ERR" "truncated|corrupt"
must_fail roam bundle apply note.txt; expect_match "$ERR" "not a roam bundle"
must_fail roam image show base
must_succeed roam store fsck

log "corrupt chunk and truncated index are found and named"
export ROAM_HOME=$T/home
chunk=$(find "$ROAM_HOME/store/chunks" -type f -print -quit)
printf 'X' | dd of="$chunk" bs=1 seek=10 conv=notrunc 2>/dev/null
must_fail roam store fsck; expect_match "$ERR" "damaged"
name=$(basename "$chunk")
must_fail roam image export base bad-out.raw 2>&1
[ ! -e bad-out.raw ] || fail "a failed export left a file behind"
if ! grep -q "$name" <<<"$ERR"; then
        # the corrupt chunk may belong only to the other image
        must_fail roam image export session bad-out.raw; expect_match "$ERR" "$name"
fi
expect_one_line "$ERR"
rm -f "$chunk"
must_fail roam store fsck; expect_match "$ERR" "damaged"
must_succeed roam image rm base again session fromqcow
must_succeed roam store gc --grace 0
must_succeed roam store fsck

must_succeed roam image import t a.raw
idx=$(find "$ROAM_HOME/store/objects" -type f -print -quit)
truncate -s 100 "$idx"
must_fail roam image export t t.raw; expect_one_line "$ERR"; expect_match "$ERR" "corrupt"
must_fail roam store fsck
must_fail roam store gc; expect_match "$ERR" "fsck"
log "ok"
