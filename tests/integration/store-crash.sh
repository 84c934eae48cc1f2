#!/usr/bin/env bash
# Crash safety and concurrency of the store: kill -9 during imports, two
# writers of the same chunks at once, gc racing an import, a full disk.
. "$(dirname "$0")/../lib.sh"

cd "$T"
make_image big.raw 160 11
sync big.raw

log "kill -9 at chosen moments during an import: fsck stays consistent"
for delay in 0.05 0.15 0.3 0.5 0.8; do
        # the binary itself, not the shell function, so that kill hits it
        "$ROAM_BIN" image import big big.raw >/dev/null 2>&1 &
        pid=$!
        sleep "$delay"
        kill -9 $pid 2>/dev/null || true
        wait $pid 2>/dev/null || true
        roam store fsck >fsck.out 2>&1 || { cat fsck.out >&2; fail "fsck after kill -9 at ${delay}s"; }
        roam image rm big >/dev/null 2>&1 || true
done
must_succeed roam store gc --grace 0
must_succeed roam store fsck
expect_match "$OUT" "chunks stored: +0 "
expect_match "$OUT" "temp files: +0"

log "two processes importing the same chunks at once"
"$ROAM_BIN" image import one big.raw >one.id 2>/dev/null &
p1=$!
"$ROAM_BIN" image import two big.raw >two.id 2>/dev/null &
p2=$!
wait $p1 || fail "first concurrent import failed"
wait $p2 || fail "second concurrent import failed"
[ "$(cat one.id)" = "$(cat two.id)" ] || fail "concurrent imports disagree"
must_succeed roam store fsck
must_succeed roam image export two two.raw
cmp big.raw two.raw || fail "export after concurrent imports differs"

log "gc racing an import keeps everything the import references"
roam image rm one two
"$ROAM_BIN" image import three big.raw >/dev/null 2>&1 &
p1=$!
sleep 0.1
roam store gc >/dev/null || fail "gc failed"
wait $p1 || fail "import racing gc failed"
must_succeed roam store fsck
rm -f two.raw
must_succeed roam image export three two.raw
cmp big.raw two.raw || fail "export after gc race differs"

log "a full disk: clear error, store still consistent"
if [ "$(id -u)" = 0 ]; then
        mkdir small
        mount -t tmpfs -o size=24m tmpfs small || skip "cannot mount tmpfs"
        cleanup_add umount -l "$T/small"
        export ROAM_HOME=$T/small/home
        make_image mid.raw 12 5
        must_succeed roam image import fits mid.raw
        must_fail roam image import toobig big.raw
        expect_one_line "$ERR"
        expect_match "$ERR" "space|No space"
        must_succeed roam store fsck
        must_succeed roam store gc
        must_succeed roam store fsck
        expect_match "$OUT" "temp files: +0"
        rm -f mid-out.raw
        must_succeed roam image export fits "$T/mid-out.raw"
        cmp mid.raw "$T/mid-out.raw" || fail "image changed by a failed import"
else
        log "not root: full-disk case skipped"
fi
log ok
