#!/usr/bin/env bash
# roam session move between two servers (two roam homes, two daemons, loopback):
# the session runs on A, moves to B (counter and boot id continue), A records B
# as owner with a new epoch and refuses to run it, a stale move-in is refused,
# the session moves back to A, and after a clean power-off /data/ticks has no
# gap and no repeat.
. "$(dirname "$0")/../lib.sh"
requires qemu-system-x86_64
requires qemu-img
requires debugfs
requires curl
export ROAM_ACCEL=tcg

need_guest

A=$T/a B=$T/b
on() { local h=$1; shift; ROAM_HOME=$h "$ROAM_BIN" "$@"; }
state_on() { on "$1" session list | awk -v n=s1 '$1 == n { print $4 }'; }
is_state_on() { [ "$(state_on "$1")" = "$2" ]; }
ticks_on() { on "$1" session log s1 | grep -E '^tick [0-9]+$' | awk '{ print $2 }'; }
has_tick_above() { # HOME N: the console shows a tick > N
        [ "$(ticks_on "$1" | tail -n 1)" -gt "$2" ] 2>/dev/null
}

PA=$(free_port) PB=$(free_port)
start_daemon "$A" "127.0.0.1:$PA"
start_daemon "$B" "127.0.0.1:$PB"
TOK_A=$(on "$A" token create --role host)
TOK_B=$(on "$B" token create --role host)

on "$A" image import deb "$GUEST/master.img" >/dev/null
on "$A" session create s1 --image deb --user alice --ram 256M --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" >/dev/null
A_RAM=$(on "$A" session show s1 | sed -n 's/^ram: .* in \(.*\)\/s1.ram)$/\1/p')
on "$A" session start s1
wait_for 90 has_tick_above "$A" 4 || fail "no ticks on A"
boot_a=$(on "$A" session log s1 | sed -n 's/^roam-guest: boot_id=//p')

log "move A -> B"
out=$(on "$A" session move s1 --to "http://127.0.0.1:$PB" --token "$TOK_B") || fail "move to B failed"
printf '%s\n' "$out" >&2
expect_match "$out" "downtime [0-9]+ ms"
# B wrote the pre-copy's RAM before the pause, and started its QEMU on it;
# its restore patched that RAM in that QEMU
expect_match "$out" "RAM staged ahead, QEMU waiting" "the move's output"
last_a=$(ticks_on "$A" | tail -n 1)
is_state_on "$B" running || fail "session is '$(state_on "$B")' on B, expected running"
is_state_on "$A" away || fail "session is '$(state_on "$A")' on A, expected away"
on "$A" session show s1 | grep -Eq "owner: +http://127.0.0.1:$PB" || fail "A does not record B as owner: $(on "$A" session show s1)"
on "$A" session show s1 | grep -Eq "\(epoch 1\)" || fail "A does not record epoch 1"
wait_for 60 has_tick_above "$B" "$last_a" || fail "the counter does not continue on B"
first_b=$(ticks_on "$B" | head -n 1)
[ "$first_b" -gt 5 ] || fail "B restarted the counter ($first_b)"
boot_b=$(on "$B" session log s1 | sed -n 's/^roam-guest: boot_id=//p' | tail -n 1)
[ -z "$boot_b" ] || [ "$boot_b" = "$boot_a" ] || fail "the guest rebooted on B"
grep -q '^roam-guest: boot_id=' <<<"$(on "$B" session log s1)" && fail "B's console shows a boot: a restore has no boot"

log "A never runs it again"
must_fail on "$A" session start s1; expect_match "$ERR" "owned by"
must_fail on "$A" session restore s1; expect_match "$ERR" "owned by"
log "a stale move-in is refused"
ck=$(on "$B" session show s1 | sed -nE 's/^checkpoints: .*, last ([0-9a-f]{64}).*/\1/p')
code=$(curl -s -o "$T/stale.json" -w '%{http_code}' -H "Authorization: Bearer $TOK_A" -X POST \
        -d "{\"checkpoint\": \"${ck:-0000000000000000000000000000000000000000000000000000000000000000}\", \"epoch\": 1}" \
        "http://127.0.0.1:$PA/v1/sessions/s1/move-in")
[ "$code" = 409 ] || fail "stale move-in answered $code: $(cat "$T/stale.json")"

log "staging: bad input, and never for a session that runs there"
stage() { # HOME-PORT TOKEN BODY: prints the HTTP status, the answer in $T/stage.json
        curl -s -o "$T/stage.json" -w '%{http_code}' -H "Authorization: Bearer $2" -X POST -d "$3" \
                "http://127.0.0.1:$1/v1/sessions/s1/stage"
}
code=$(stage "$PB" "$TOK_B" 'not json')
[ "$code" = 400 ] || fail "stage with a malformed body answered $code: $(cat "$T/stage.json")"
code=$(stage "$PB" "$TOK_B" '{"checkpoint": "xyz"}')
[ "$code" = 400 ] || fail "stage with a malformed id answered $code: $(cat "$T/stage.json")"
code=$(stage "$PB" "$TOK_B" "{\"checkpoint\": \"$(printf 'ab%.0s' $(seq 32))\"}")
[ "$code" = 404 ] || fail "stage of an unknown checkpoint answered $code: $(cat "$T/stage.json")"
code=$(stage "$PB" "$TOK_B" "{\"checkpoint\": \"$ck\"}")
[ "$code" = 409 ] || fail "stage of a session running there answered $code: $(cat "$T/stage.json")"
expect_match "$(cat "$T/stage.json")" "runs here"
B_RAM=$(on "$B" session show s1 | sed -n 's/^ram: .* in \(.*\)\/s1.ram)$/\1/p')
[ -n "$B_RAM" ] || fail "no RAM path on B"
ls "$B_RAM"/s1.staged.* 2>/dev/null && fail "B kept a staged RAM file after its move-in"
[ -e "$B/warm/s1" ] && fail "B kept the directory of its waiting QEMU after the move-in"

log "move B -> A"
sleep 1
out=$(on "$B" session move s1 --to "http://127.0.0.1:$PA" --token "$TOK_A") || fail "move back failed"
printf '%s\n' "$out" >&2
expect_match "$out" "RAM staged ahead, QEMU waiting" "the move's output"
ls "$A_RAM"/s1.staged.* 2>/dev/null && fail "A kept a staged RAM file after the move-in"
last_b=$(ticks_on "$B" | tail -n 1)
is_state_on "$A" running || fail "session is '$(state_on "$A")' on A after the move back"
is_state_on "$B" away || fail "B still claims the session"
on "$A" session show s1 | grep -Eq "\(epoch 2\)" || fail "A is not at epoch 2"
wait_for 60 has_tick_above "$A" "$last_b" || fail "the counter does not continue on A"

log "power off; /data/ticks is gap-free across both moves"
on "$A" session stop s1 >/dev/null
is_state_on "$A" stopped || fail "not stopped"
ov=$A/sessions/s1/overlay.qcow2
qemu-img convert -O raw "$ov" "$T/disk.raw"
debugfs -R 'cat /data/ticks' "$T/disk.raw" 2>/dev/null >"$T/ticks"
n=$(awk '!/^tick [0-9]+ boot=/ { exit 1 } $2 != NR { exit 1 } END { print NR }' "$T/ticks") ||
        fail "/data/ticks has a gap or a repeat: $(head -c 600 "$T/ticks")"
[ "$n" -gt "$last_b" ] || fail "/data/ticks ends at $n, before the last tick seen on B ($last_b)"
[ "$(awk '{ print $3 }' "$T/ticks" | sort -u | wc -l)" = 1 ] || fail "/data/ticks spans more than one boot"
log "ok: $n ticks"
