#!/usr/bin/env bash
# A laptop hoards a master image from the datacenter over an emulated WAN
# (100 Mbit/s, 25 ms each way): the link is cut at about half way and the
# laptop daemon is restarted; the hoard completes, the image is
# byte-identical, and little is sent twice.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../netns.sh"
requires_root
wan_setup 100 25

cd "$T"
export DC_HOME=$T/dc LT_HOME=$T/laptop
make_image big.raw 384 61
roam_dc image import big big.raw >/dev/null 2>&1
HOST=$(roam_dc token create --role host)
PORT=$(free_port)
LPORT=$(free_port)
stored=$(du -sb "$DC_HOME/store/chunks" | cut -f1)
log "image stored on the server: $stored bytes of chunks"

ROAM_HOME=$DC_HOME in_dc "$ROAM_BIN" serve --listen "$DC_IP:$PORT" >dc.log 2>&1 &
cleanup_add "kill $! 2>/dev/null"
wait_for 10 wan_listening "$DC_NS" "$PORT" || fail "dc daemon did not start"
wan_relay "$PORT"

start_laptop() {
        # at most 1 MB/s a connection (4 at a time): slow enough that the test
        # finds the hoard in the middle even on a loaded machine
        ROAM_HOME=$LT_HOME in_laptop "$ROAM_BIN" serve --role laptop --listen "127.0.0.1:$LPORT" --hoard-rate 1M \
                >>lt.log 2>&1 &
        LT_PID=$!
        cleanup_add "kill $LT_PID 2>/dev/null"
        wait_for 10 wan_listening "$LT_NS" "$LPORT" || { cat lt.log >&2; fail "laptop daemon did not start"; }
}
hoard_field() { # FIELD: from 'roam status --json' on the laptop
        roam_laptop status --json | python3 -c "import json,sys; print(json.load(sys.stdin)['hoards'][0]['$1'])"
}
done_at_least() { [ "$(hoard_field chunks_done)" -ge "$1" ]; }
hoard_done() { [ "$(hoard_field state)" = done ]; }

start_laptop
must_succeed roam_laptop hoard "http://127.0.0.1:$PORT" big --token "$HOST"
wait_for 30 bash -c "[ \"\$(ROAM_HOME=$LT_HOME ip netns exec $LT_NS $ROAM_BIN status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"hoards\"][0][\"chunks_total\"])')\" -gt 0 ]" ||
        fail "the hoard did not start"
total=$(hoard_field chunks_total)
log "hoard started: $total chunks"

log "cut the link at about half way"
wait_for 120 done_at_least $((total / 2)) || fail "the hoard did not reach half way"
link_down
log "link down at $(hoard_field chunks_done) of $total chunks"
sleep 4
hoard_done && fail "the hoard finished with the link down"
link_up
log "link up"

log "restart the laptop daemon in the middle"
wait_for 90 done_at_least $((total * 5 / 8)) || true
if hoard_done; then
        fail "the hoard finished before the restart"
else
        kill "$LT_PID"
        wait "$LT_PID" 2>/dev/null || true
        log "laptop daemon stopped at $(sqlite3 "$LT_HOME/catalog.db" 'select chunks_done from hoards' 2>/dev/null || echo '?') chunks"
        start_laptop
fi
wait_for 240 hoard_done || { roam_laptop status >&2; cat lt.log >&2; fail "the hoard did not complete"; }
roam_laptop status >&2

must_succeed roam_laptop image export big "$T/big-out.raw"
cmp big.raw big-out.raw || fail "the hoarded image differs"
roam_laptop store fsck >/dev/null || fail "laptop store is not consistent"
wire=$(hoard_field wire_bytes)
log "bytes on the wire: $wire for $stored bytes of chunks"
# sent twice: at most the batches in flight at the cut and at the restart
# (4 requests of 8 MiB plain each, twice), plus protocol overhead
limit=$((stored + 2 * 4 * 8 * 1024 * 1024 + 2 * 1024 * 1024))
[ "$wire" -le "$limit" ] || fail "too much sent twice: $wire > $limit"
log ok
