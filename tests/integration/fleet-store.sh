#!/usr/bin/env bash
# The store on Ceph RADOS (docs/fleet.md): import, export byte-identical,
# fsck, stats, gc with and without grace; a corrupt chunk is found and never
# read as wrong bytes; an OSD down and writes and reads go on (2 copies);
# 'roam serve --store rados:...' serves it to a pull into a local store, and
# the home keeps it as its store; bad specs fail with one line.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../fleet.sh"
requires curl
fleet_setup 1 2

cd "$T"
make_image a.raw 16 41
make_image b.raw 8 42
RC="-c $FLEET_CEPH_CONF -p $FLEET_POOL"
# rs ARGS...: roam on host 1 with the RADOS store
rs() { ROAM_STORE=$FLEET_STORE roam_host 1 "$@"; }
rados_() { in_hub rados $RC "$@"; }

log "import into RADOS, export byte-identical, fsck, stats"
must_succeed rs image import a "$T/a.raw"
rs image export a "$T/a.out" >/dev/null 2>&1 || fail "export from RADOS failed"
cmp "$T/a.raw" "$T/a.out" || fail "the export differs from the import"
must_succeed rs store fsck
expect_match "$OUT" "store is consistent"
must_succeed rs store stats --json
n=$(jq -r .chunks <<<"$OUT")
[ "$n" -gt 0 ] || fail "stats counts no chunks: $OUT"
[ "$(rados_ -N chunks ls | wc -l)" = "$n" ] || fail "stats says $n chunks, RADOS holds $(rados_ -N chunks ls | wc -l)"
[ "$(rados_ -N refs ls)" = "images/a" ] || fail "refs in RADOS: $(rados_ -N refs ls)"
[ ! -e "$T/host1/store/chunks" ] || [ -z "$(find "$T/host1/store/chunks" -type f)" ] ||
        fail "chunks landed in the local store"

log "a corrupt chunk: fsck finds it, export refuses, never wrong bytes"
victim=$(rados_ -N chunks ls | head -n 1)
rados_ -N chunks get "$victim" "$T/victim"
printf 'not a zstd frame' >"$T/garbage"
rados_ -N chunks put "$victim" "$T/garbage"
must_fail rs store fsck
OUT=$(rs store fsck --json 2>/dev/null || true)
[ "$(jq -r .corrupt_chunks <<<"$OUT")" = 1 ] || fail "fsck did not count the corrupt chunk: $OUT"
must_fail rs image export a "$T/a.bad"
expect_match "$ERR" "chunk $victim is corrupt"
rados_ -N chunks put "$victim" "$T/victim"
must_succeed rs store fsck

log "an OSD down: writes and reads go on"
fleet_daemon stop osd1
must_succeed rs image import b "$T/b.raw"
rs image export b "$T/b.out" >/dev/null 2>&1 || fail "export with an OSD down failed"
cmp "$T/b.raw" "$T/b.out" || fail "export with an OSD down differs"
fleet_daemon start osd1

log "gc: the grace keeps young garbage, --grace 0 removes it"
must_succeed rs image rm b
must_succeed rs store gc
expect_match "$OUT" "^removed 0 chunks .*kept [1-9][0-9]* chunks"
must_succeed rs store gc --grace 0
expect_match "$OUT" "^removed [1-9][0-9]* chunks"
must_succeed rs store fsck --json
[ "$(jq -r .unreferenced_chunks <<<"$OUT")" = 0 ] || fail "gc left unreferenced chunks: $OUT"
[ "$(jq -r .ok <<<"$OUT")" = true ] || fail "fsck after gc: $OUT"

log "roam serve --store rados:...: serves the pool; the home keeps it as its store"
PORT=7450
URL=http://${HOST_IP[1]}:$PORT
mkdir -p "$T/host1"
ROAM_HOME=$T/host1 in_host 1 "$ROAM_BIN" serve --listen "${HOST_IP[1]}:$PORT" --store "$FLEET_STORE" \
        >>"$T/serve1.log" 2>&1 &
SPID=$!
cleanup_add "kill $SPID 2>/dev/null; wait $SPID 2>/dev/null"
wait_for 30 in_host 1 curl -s -o /dev/null "$URL/v1/info" || fail "serve did not start: $(tail -n 3 "$T/serve1.log")"
grep -q "serving store 'rados:$FLEET_POOL" "$T/serve1.log" || fail "serve does not say it serves RADOS: $(cat "$T/serve1.log")"
[ "$(cat "$T/host1/store.url")" = "$FLEET_STORE" ] || fail "the home does not record its store"
TOKEN=$(roam_host 1 token create --role host)
ROAM_HOME=$T/client in_host 1 "$ROAM_BIN" pull "$URL" a --token "$TOKEN" >/dev/null 2>"$T/pull.err" ||
        fail "pull from the RADOS server failed: $(cat "$T/pull.err")"
ROAM_HOME=$T/client in_host 1 "$ROAM_BIN" image export a "$T/a.pulled" >/dev/null 2>&1
cmp "$T/a.raw" "$T/a.pulled" || fail "pulled image differs"
# the home's own commands use the recorded store (no ROAM_STORE), gc goes through the daemon
must_succeed roam_host 1 store fsck
expect_match "$OUT" "store is consistent"
must_succeed roam_host 1 store gc --grace 0
must_succeed roam_host 1 image list
expect_match "$OUT" "^a "

log "bad specs: one line each, non-zero"
for spec in "rados:" "rados:bad/pool" "rados:$FLEET_POOL?bogus=1" "rados:$FLEET_POOL?conf=$T/nonexistent.conf"; do
        ROAM_STORE=$spec must_fail roam_host 1 store stats
        expect_one_line "$ERR"
done
expect_match "$ERR" "cannot read Ceph config"
ROAM_STORE="rados:nosuchpool?conf=$FLEET_CEPH_CONF" must_fail roam_host 1 store stats
expect_one_line "$ERR"
expect_match "$ERR" "pool 'nosuchpool'"
log "ok"
