#!/usr/bin/env bash
# Sessions in the fleet (docs/fleet.md), three 'roam serve' in network
# namespaces on one etcd + Ceph, the busybox guest (its console prints
# "tick N boot=ID" every second):
#  - placement: 'roam session create' on one member's home spreads three
#    sessions over the three members; --host places on the one named;
#  - a move between members through the shared store ('roam session move
#    --to-host', from a third member's home) keeps the boot id and the counter;
#  - kill -9 of a member's roam alone: its QEMUs die with it (the member's
#    watchdog) before another member restarts its session; the session runs
#    again on another member within 60 s, from its last checkpoint (same boot
#    id, the counter goes on from there); the member back refuses it (epoch);
#  - a laptop (a fourth namespace) pairs with the fleet through one member,
#    takes a session another member runs offline (the owner record in etcd
#    is the laptop's, no member may start it, the lease is renewed there) and
#    online again through the same member: the session lands back where it
#    was, same boot, the counter goes on; taken offline again and reclaimed
#    by an admin through a third member, it runs there, the laptop's copy
#    stops and its take online is refused (stale);
#  - 'roam host drain' moves every session off a member;
#  - gc on one member while a writer on another reuses the garbage gc is
#    removing (dedup hits on chunks older than the grace): nothing is lost;
#  - the RADOS store passes fsck after all of it.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../fleet.sh"
requires qemu-system-x86_64
requires curl
requires jq
export ROAM_ACCEL=tcg
need_guest
fleet_setup 4 2 # host 4: the laptop
for n in 1 2 3; do fleet_serve "$n" --fleet-checkpoint 5; done

# garbage for gc's race at the end: chunks nothing references, old by then
make_image "$T/g.img" 24 7
must_succeed roam_host 2 image import g "$T/g.img"
must_succeed roam_host 2 image rm g
t_garbage=$SECONDS

# sessions_view: GET /v1/fleet/sessions from the first member that answers
sessions_view() {
        local n
        for n in 1 2 3; do
                fleet_api "$n" GET /v1/fleet/sessions 2>/dev/null || continue
                [ "$CODE" = 200 ] && return 0
        done
        return 1
}
# owner S: the member that owns S now ("" for none)
owner() {
        sessions_view || return 0
        jq -r --arg s "$1" '.sessions[] | select(.name == $s) | .host // ""' <<<"$OUT"
}
epoch() {
        sessions_view || return 0
        jq -r --arg s "$1" '.sessions[] | select(.name == $s) | .epoch' <<<"$OUT"
}
# ticks N S: the counter of session S's console on member N, one a line;
# boot_ids N S: the boots it shows ("roam-guest: boot_id=ID"; a restore shows none)
console() { # N S: the guest's console (an encrypted laptop keeps it on tmpfs: 'console:' of session show)
        local p=$T/host$1/sessions/$2/serial.log
        [ -e "$p" ] || p=$(ROAM_HOME=$T/host$1 "$ROAM_BIN" session show "$2" 2>/dev/null | awk '$1 == "console:" { print $2 }')
        [ -n "$p" ] || return 0
        tr -d '\r' <"$p" 2>/dev/null || true
}
ticks() { console "$1" "$2" | grep -aE '^tick [0-9]+$' | awk '{ print $2 }'; }
last_tick() { ticks "$1" "$2" | tail -n 1; }
boot_ids() { console "$1" "$2" | sed -n 's/^roam-guest: boot_id=//p'; }
ticking() { # N S AFTER: a tick past AFTER on member N
        local t
        t=$(last_tick "$1" "$2")
        [ -n "$t" ] && [ "$t" -gt "$3" ]
}
host_no() { echo "${1#h}"; }
runs_on_other_than() { local o; o=$(owner "$1"); [ -n "$o" ] && [ "$o" != "$2" ]; }

log "placement spreads three sessions over three members"
must_succeed roam_host 1 image import deb "$GUEST/master.img"
for s in s1 s2 s3; do
        roam_host 1 session create "$s" --image deb --user alice --ram 128M --kernel "$GUEST/vmlinux" \
                --initrd "$GUEST/initrd.img" 2>"$T/create.err" || fail "create $s: $(cat "$T/create.err")"
        log "$(cat "$T/create.err")"
        fleet_api 1 POST "/v1/fleet/sessions/$s/start"
        [ "$CODE" = 200 ] || fail "start $s through h1: $CODE $OUT"
done
owners=$(for s in s1 s2 s3; do owner "$s"; done | sort | tr '\n' ' ')
[ "$owners" = "h1 h2 h3 " ] || fail "placement did not spread the sessions: $owners"
must_succeed roam_host 2 host list --json
log "hosts: $(jq -c '[.hosts[] | {name, sessions}]' <<<"$OUT")"
ROAM_HOME=$T/host1 must_fail roam_host 1 session create s9 --image deb --user alice --ram 128M \
        --kernel "$GUEST/vmlinux" --host nosuchhost
expect_one_line "$ERR"
expect_match "$ERR" "no fleet member 'nosuchhost'"
ROAM_HOME=$T/host1 must_fail roam_host 1 session create s1 --image deb --user alice --ram 128M \
        --kernel "$GUEST/vmlinux" --host h2
expect_match "$ERR" "s1"

log "a move between members keeps the boot id and the counter"
from=$(owner s1)
fn=$(host_no "$from")
to=h$((fn % 3 + 1))
tn=$(host_no "$to")
wait_for 60 ticking "$fn" s1 2 || fail "s1 does not tick on $from"
boot=$(boot_ids "$fn" s1)
[ -n "$boot" ] || fail "s1 showed no boot on $from"
e0=$(epoch s1)
roam_host $(((fn + 1) % 3 + 1)) session move s1 --to-host "$to" 2>"$T/move.err" || fail "move: $(cat "$T/move.err")"
log "$(cat "$T/move.err")"
before=$(last_tick "$fn" s1)
[ "$(owner s1)" = "$to" ] || fail "s1 is owned by $(owner s1) after the move to $to"
[ "$(epoch s1)" = $((e0 + 1)) ] || fail "the move did not bump the epoch ($e0 -> $(epoch s1))"
wait_for 60 ticking "$tn" s1 0 || fail "s1 does not tick on $to after the move"
[ -z "$(boot_ids "$tn" s1)" ] || fail "s1 rebooted in the move: boot $boot, then $(boot_ids "$tn" s1)"
first=$(ticks "$tn" s1 | head -n 1)
[ "$first" -gt "$before" ] && [ "$first" -le $((before + 30)) ] ||
        fail "the counter did not go on: last $before on $from, first $first on $to"
fleet_api "$fn" POST /v1/console/sessions/s1/start
[ "$CODE" != 200 ] || fail "the old member started s1 after the move"

log "kill -9 of a member's roam alone: its QEMUs die with it; its session runs again elsewhere within 60 s"
victim=$(owner s2)
vn=$(host_no "$victim")
wait_for 60 ticking "$vn" s2 8 || fail "s2 does not tick on $victim"
fleet_api "$vn" POST /v1/fleet/sessions/s2/checkpoint # a fresh one; the worker makes them too
[ "$CODE" = 200 ] || fail "checkpoint of s2: $CODE $OUT"
sleep 2
t_kill=$SECONDS
last_before=$(last_tick "$vn" s2)
qemus=$(cat "$T/host$vn"/sessions/*/qemu.pid "$T/host$vn"/warm/*/qemu.pid 2>/dev/null | tr '\n' ' ' || true)
for p in $qemus; do pid_alive "$p" || fail "QEMU $p of $victim does not run before the kill"; done
[ -n "$qemus" ] || fail "no QEMU of $victim to watch"
cleanup_add "kill -9 $qemus 2>/dev/null"
qemus_gone() { local p; for p in $qemus; do ! pid_alive "$p" || return 1; done; }
kill -9 "${SERVE_PID[vn]}" # roam alone: not its QEMUs
wait "${SERVE_PID[vn]}" 2>/dev/null || true
wait_for 5 qemus_gone || fail "the QEMUs of $victim still run after its roam was killed: $(for p in $qemus; do pid_alive "$p" && tr '\0' ' ' </proc/$p/cmdline | cut -c1-300; done); $(tail -n 3 "$T/host$vn/serve.log")"
! runs_on_other_than s2 "$victim" || fail "s2 ran elsewhere before the QEMUs of $victim were gone"
log "the QEMUs of $victim were gone $((SECONDS - t_kill))s after its roam was killed; s2 not yet elsewhere"
grep -q "fleet watchdog: .* killed [1-9]" "$T/host$vn/serve.log" || fail "no watchdog line in $victim's log"
wait_for 60 runs_on_other_than s2 "$victim" || fail "s2 was not taken over within 60 s"
new=$(owner s2)
nn=$(host_no "$new")
wait_for 60 ticking "$nn" s2 0 || fail "s2 does not tick on $new"
took=$((SECONDS - t_kill))
log "s2 ran again on $new after ${took}s"
[ "$took" -le 60 ] || fail "the takeover took ${took}s"
[ -z "$(boot_ids "$nn" s2)" ] || fail "s2 rebooted in the takeover"
first=$(ticks "$nn" s2 | head -n 1)
[ "$first" -le "$last_before" ] && [ "$first" -gt 1 ] ||
        fail "s2 did not go on from its last checkpoint: first tick $first, $last_before before the kill"
grep -q "took over session 's2'" "$T/host$nn/serve.log" || fail "no takeover in $new's log"

log "the member back refuses the session (epoch)"
fleet_serve "$vn" --fleet-checkpoint 5
fleet_api "$vn" POST /v1/console/sessions/s2/start
[ "$CODE" != 200 ] || fail "the old member started s2 again"
expect_match "$OUT" "owned by fleet host '$new'"
[ "$(owner s2)" = "$new" ] || fail "s2 changed hands: $(owner s2)"

log "the broker: any member proxies a desktop from the member that runs it"
s3at=$(owner s3)
via=$(( $(host_no "$s3at") % 3 + 1 ))
# desktop N S WS: the first bytes of S's desktop through member N (raw, or a WebSocket)
desktop() {
        in_host "$1" python3 - "${HOST_IP[$1]}" "$(cat "$T/host$1/local.token")" "$2" "$3" <<'PY'
import base64, os, socket, sys
ip, tok, name, ws = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "ws"
s = socket.create_connection((ip, 7450), timeout=20)
hdr = "GET /v1/fleet/sessions/%s/vnc HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\n" % (name, ip, tok)
if ws:
    hdr += "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n" % base64.b64encode(os.urandom(16)).decode()
else:
    hdr += "Upgrade: roam-vnc\r\n"
s.sendall((hdr + "\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    d = s.recv(4096)
    if not d:
        break
    buf += d
head, _, rest = buf.partition(b"\r\n\r\n")
status = head.split(b"\r\n")[0].decode(errors="replace")
while len(rest) < (14 if ws else 12):   # "RFB 003.008\n", in a frame for a WebSocket
    d = s.recv(4096)
    if not d:
        break
    rest += d
if ws and len(rest) >= 2:
    rest = rest[2:]   # a short binary frame from the server: 2 bytes of header
print(status, rest[:12].decode(errors="replace").strip())
PY
}
out=$(desktop "$via" s3 raw) || { tail -n 5 "$T/host$via/serve.log" "$T/host$(host_no "$s3at")/serve.log" >&2; fail "no desktop through h$via"; }
expect_match "$out" "^HTTP/1.1 101 .* RFB 003.00[0-9]$" "the raw desktop through h$via"
out=$(desktop "$via" s3 ws)
expect_match "$out" "^HTTP/1.1 101 .* RFB 003.00[0-9]$" "the WebSocket desktop through h$via"
out=$(desktop "$via" nosuch raw)
expect_match "$out" "^HTTP/1.1 (404|409) " "a desktop of no session"

log "the console of a member shows the whole fleet and opens a desktop another member runs"
WEB=$SRC_DIR/web
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
if command -v node >/dev/null && [ -n "$CHROMIUM" ] &&
        { { [ -f "$WEB/node_modules/playwright-core/package.json" ] && [ -f "$WEB/node_modules/@novnc/novnc/core/rfb.js" ]; } ||
                bash "$SRC_DIR/scripts/web-deps.sh" >"$T/web-deps.log" 2>&1; }; then
        atok=$(roam_host "$via" token create --role user --user alice)
        mkdir -p "$T/shots"
        ROAM_URL=http://${HOST_IP[via]}:7450 ADMIN_TOKEN=$(cat "$T/host$via/local.token") ALICE_TOKEN=$atok \
                HOSTS=h1,h2,h3 SESSIONS="s1:$(owner s1),s2:$(owner s2),s3:$s3at" REMOTE=s3 SHOTS=$T/shots \
                CHROMIUM=$CHROMIUM WEB_DIR=$WEB in_host "$via" timeout 300 node "$SRC_DIR/tests/browser/fleet-console.test.js" \
                >"$T/browser.out" 2>&1 || fail "the fleet's console in chromium: $(tail -n 8 "$T/browser.out")"
        log "$(grep -c '^ok' "$T/browser.out") browser checks passed ($(grep '^ok' "$T/browser.out" | tail -n 1))"
        ! grep -q ': attempt ' "$T/browser.out" || log "$(grep ': attempt ' "$T/browser.out")"
else
        log "the browser part skipped: no node, chromium or web packages (scripts/deps.sh web)"
fi

log "a laptop pairs with the fleet through one member; takes offline a session another member runs"
s1at=$(owner s1)
an=$(host_no "$s1at")
via=$((an % 3 + 1)) # the laptop's member: not the one that runs s1
third=$((via % 3 + 1))
[ "$third" != "$an" ] || third=$((third % 3 + 1))
tok=$(roam_host "$via" token create --role user --user alice) || fail "no user token on h$via"
mkdir -p "$T/host4"
ROAM_HOME=$T/host4 ip netns exec "${HOST_NS[4]}" "$ROAM_BIN" serve --listen 127.0.0.1:7460 --role laptop \
        --server "http://${HOST_IP[via]}:7450" --token "$tok" --name lt --precopy-interval 2 \
        >>"$T/host4/serve.log" 2>&1 &
LT_PID=$!
cleanup_add "kill $LT_PID 2>/dev/null; wait $LT_PID 2>/dev/null"
roam_lt() { ROAM_HOME=$T/host4 ip netns exec "${HOST_NS[4]}" "$ROAM_BIN" "$@"; }
wait_for 30 roam_lt laptop id || fail "the laptop daemon made no key: $(tail -n 3 "$T/host4/serve.log")"
lid=$(roam_lt laptop id)
paired() { [ -n "$(etcd_get "/roam/laptops/$lid")" ]; }
wait_for 60 paired || fail "laptop $lid did not pair with the fleet: $(tail -n 3 "$T/host4/serve.log")"
must_succeed roam_host "$third" laptop list --json
[ "$(jq -r --arg l "$lid" '.laptops[] | select(.id == $l) | .name' <<<"$OUT")" = lt ] ||
        fail "h$third does not know the laptop paired through h$via: $OUT"
precopied() { roam_lt status --json | jq -e '.handoff.sessions[] | select(.name == "s1" and .precopy_at > 0)'; }
wait_for 90 precopied || fail "the laptop pre-copied nothing of s1 through h$via: $(tail -n 3 "$T/host4/serve.log")"
e1=$(epoch s1)
boots_before=$(boot_ids "$an" s1 | wc -l)
roam_lt offline s1 2>"$T/lt.err" >"$T/lt.out" || fail "take offline through h$via: $(cat "$T/lt.err")"
log "$(cat "$T/lt.out")"
[ "$(owner s1)" = "laptop:$lid" ] || fail "the fleet says s1 is $(owner s1)'s, not laptop:$lid's"
[ "$(epoch s1)" = $((e1 + 1)) ] || fail "take offline did not bump the epoch ($e1 -> $(epoch s1))"
grant=$(etcd_get /roam/grants/s1)
[ "$(jq -r .laptop <<<"$grant")" = "$lid" ] && [ "$(jq -r .from <<<"$grant")" = "$s1at" ] ||
        fail "the grant in etcd: $grant"
wait_for 60 ticking 4 s1 0 || fail "s1 does not tick on the laptop"
fleet_api "$third" POST /v1/fleet/sessions/s1/start
[ "$CODE" = 409 ] || fail "a member started s1 while the laptop has it: $CODE $OUT"
expect_match "$OUT" "offline on laptop:$lid"
lease0=$(jq -r .lease_until <<<"$grant")
renewed() { [ "$(etcd_get /roam/grants/s1 | jq -r .lease_until)" -gt "$lease0" ]; }
wait_for 30 renewed || fail "the laptop's lease was not renewed in etcd"

log "... and takes it online through the same member: it lands back where it was"
before=$(last_tick 4 s1)
roam_lt online s1 2>"$T/lt.err" >"$T/lt.out" || fail "take online through h$via: $(cat "$T/lt.err")"
log "$(cat "$T/lt.out")"
[ "$(owner s1)" = "$s1at" ] || fail "s1 landed on $(owner s1), not back on $s1at"
[ "$(epoch s1)" = $((e1 + 2)) ] || fail "take online did not bump the epoch ($(epoch s1))"
[ -z "$(etcd_get /roam/grants/s1)" ] || fail "the grant stayed in etcd"
wait_for 60 ticking "$an" s1 "$before" || fail "s1 does not tick on $s1at after take online (laptop's last $before)"
[ "$(boot_ids "$an" s1 | wc -l)" = "$boots_before" ] || fail "s1 rebooted in the hand-overs"

log "a lost laptop: an admin reclaims its session through any member; the laptop's copy stops, its take online is refused"
roam_lt offline s1 2>"$T/lt.err" >"$T/lt.out" || fail "take offline again: $(cat "$T/lt.err")"
e2=$(epoch s1)
fleet_api "$third" POST /v1/fleet/sessions/s1/reclaim
[ "$CODE" = 200 ] || fail "reclaim through h$third: $CODE $OUT"
[ "$(owner s1)" = "h$third" ] && [ "$(epoch s1)" = $((e2 + 1)) ] || fail "after the reclaim: $(owner s1) at $(epoch s1)"
wait_for 60 ticking "$third" s1 0 || fail "s1 does not tick on h$third after the reclaim"
lt_state() { roam_lt session list 2>/dev/null | awk '$1 == "s1" { print $4 }'; }
lt_stopped() { [ "$(lt_state)" = stopped ]; }
wait_for 60 lt_stopped || fail "the laptop's stale copy runs on: $(lt_state)"
must_fail roam_lt online s1
expect_match "$ERR" "stale"
[ "$(owner s1)" = "h$third" ] || fail "the stale laptop changed the owner: $(owner s1)"

log "drain a member: every session moves off it"
busy=$(owner s3)
bn=$(host_no "$busy")
roam_host 1 host drain "$busy" >"$T/drain.out" 2>"$T/drain.err" || fail "drain: $(cat "$T/drain.err")"
log "$(cat "$T/drain.out" "$T/drain.err")"
sessions_view || fail "no member answers"
[ -z "$(jq -r --arg h "$busy" '.sessions[] | select(.host == $h) | .name' <<<"$OUT")" ] ||
        fail "sessions left on the drained member: $OUT"
s3at=$(owner s3)
wait_for 60 ticking "$(host_no "$s3at")" s3 0 || fail "s3 does not tick on $s3at after the drain"
roam_host 1 host drain "$busy" --undo 2>/dev/null || fail "drain --undo failed"

log "a session removed through any member: gone from its member and from etcd"
fleet_api 2 POST /v1/fleet/sessions/s3/stop
[ "$CODE" = 200 ] || fail "stop of s3: $CODE $OUT"
fleet_api 2 POST /v1/fleet/sessions/s3/remove
[ "$CODE" = 200 ] || fail "remove of s3: $CODE $OUT"
[ -z "$(owner s3)" ] && [ -z "$(in_hub etcdctl --endpoints="$FLEET_ETCD" get --prefix --keys-only /roam/ | grep -w s3)" ] ||
        fail "s3 left records in etcd: $(in_hub etcdctl --endpoints="$FLEET_ETCD" get --prefix --keys-only /roam/ | grep s3)"

log "gc on one member while a writer on another reuses its garbage: nothing is lost"
# the garbage is older than gc's grace (70 s) and than STORE_TOUCH_S (60 s):
# gc removes what no writer touched; the writer's dedup hits refresh the
# token of what it reuses, and gc's removal guarded by the token it read
# then fails (or the chunk is gone and the writer writes it again)
GRACE=70
[ $((SECONDS - t_garbage)) -gt $((GRACE + 5)) ] || sleep $((GRACE + 5 - (SECONDS - t_garbage)))
gc_loop() {
        local i
        for i in 1 2 3 4 5 6; do
                roam_host 1 store gc --grace "$GRACE" || return 1
        done
}
gc_loop >"$T/gc.out" 2>&1 &
gc_pid=$!
must_succeed roam_host 3 image import g "$T/g.img"
log "the writer on h3: $OUT"
wait "$gc_pid" || fail "gc on h1 failed: $(cat "$T/gc.out")"
log "gc on h1 meanwhile: $(grep -m1 -E 'removed|kept' "$T/gc.out")"
[ "$(grep -c '^removed' "$T/gc.out")" = 6 ] || fail "gc on h1 did not run six times: $(cat "$T/gc.out")"
must_succeed roam_host 2 image export g "$T/g.out"
cmp -s "$T/g.img" "$T/g.out" || fail "the image the writer reused is not what was imported"

log "the RADOS store passes fsck"
must_succeed roam_host 1 store fsck
expect_match "$OUT" "store is consistent"
log "ok"
