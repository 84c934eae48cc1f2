#!/usr/bin/env bash
# The parts of the desktop (issue 10) that the small test guest can show in
# seconds; tests/integration/desktop-wan.sh runs the real desktop.
#  - an image that boots by itself: 'image import --kernel --initrd --append
#    --agent --profile' keeps its boot files in the store (an image manifest),
#    'session create' then needs no --kernel; a truncated or damaged image or
#    kernel is refused at import, nothing stored;
#  - the user's profile disk: checked out by the first session of alice that
#    boots, refused to a second one with its holder named, carried in its
#    checkpoints, checked into users/alice/profile by the log-off (finalize),
#    then the other session may have it; it mounts what the first one left;
#  - the guest agent: this guest runs none, so the agent is silent: exec
#    times out within its bound (exit 2, one line), 'session show' and the
#    daemon's session list say "silent" while the daemon keeps answering;
#    exec on a stopped session: exit 2, one line, nothing changed;
#  - the console's thumbnail of a running session: a PNG, refused (404) to
#    another user's token, 409 for a session that does not run.
. "$(dirname "$0")/../lib.sh"

requires qemu-system-x86_64
requires qemu-img
requires mke2fs
requires debugfs
requires curl
requires jq
export ROAM_ACCEL=tcg

need_guest
cd "$T"

state() { roam session list | awk -v n="$1" '$1 == n { print $4 }'; }
has_tick() { grep -qx "tick $2" <<<"$(roam session log "$1")"; }
ref_of() { roam store stats >/dev/null 2>&1; cat "$ROAM_HOME/store/refs/$1" 2>/dev/null | awk '{ print $3 }'; }
manifest() { tail -c +17 "$ROAM_HOME/store/objects/${1:0:2}/$1"; }

# --- import: bad images and kernels are refused, nothing stored --------------------
truncate -s 16M small.img
mke2fs -q -F -t ext4 -L small small.img
cp small.img cut.img
truncate -s 8M cut.img
must_fail roam image import cut cut.img
expect_match "$ERR" "'cut.img' is a damaged disk image: it is truncated: its ext4 file system is 16777216 bytes, the file 8388608"
expect_one_line "$ERR"
cp small.img bad.img
printf '\x01\x02\x03\x04' | dd of=bad.img bs=1 seek=$((1024 + 0x20)) conv=notrunc 2>/dev/null
must_fail roam image import bad bad.img
expect_match "$ERR" "superblock is damaged|e2fsck found errors"
expect_one_line "$ERR"
head -c 100000 "$GUEST/vmlinuz" >short.kernel
must_fail roam image import k1 "$GUEST/master.img" --kernel short.kernel
expect_match "$ERR" "kernel 'short.kernel' is not usable: it is truncated"
head -c 4096 /dev/urandom >junk.kernel
must_fail roam image import k2 "$GUEST/master.img" --kernel junk.kernel
expect_match "$ERR" "neither a bzImage nor an ELF kernel"
must_fail roam image import k3 "$GUEST/master.img" --agent
expect_match "$ERR" "go with --kernel"
[ -z "$(roam image list --json | jq -r '.images[].name')" ] || fail "a refused import left an image"

# --- an image with its boot files ------------------------------------------------------
must_succeed roam image import deb "$GUEST/master.img" --kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img" \
	--append "console=ttyS0 quiet panic=-1" --agent --profile
roam image show --json deb | jq -e '.boot.agent and .boot.profile and (.boot.kernel | length) == 64 and
	(.disk | length) == 64 and .id != .disk' >/dev/null || fail "image show: $(roam image show --json deb)"
roam image list | grep -q '^deb .*(boots: kernel, initrd)' || fail "image list: $(roam image list)"
# export gives back the disk itself, byte for byte
must_succeed roam image export deb back.img
cmp -s back.img "$GUEST/master.img" || fail "the exported disk differs from the imported one"
rm -f back.img

must_succeed roam session create s1 --image deb --user alice --ram 128M --policy pooled
must_succeed roam session create s2 --image deb --user alice --ram 128M
roam session show --json s1 | jq -e '(.append | endswith("roam.user=alice")) and .agent.state == "down" and
	.profile == false' >/dev/null || fail "s1 does not take its boot from the image: $(roam session show --json s1)"

# --- exec on a session that does not run ---------------------------------------------------
rc=0; ERR=$(roam session exec s1 -- /bin/true 2>&1) || rc=$?
[ $rc = 2 ] || fail "exec on a stopped session exited $rc, not 2"
expect_match "$ERR" "session 's1' is not running"
expect_one_line "$ERR"
[ "$(state s1)" = created ] || fail "exec changed s1"

# --- the profile: one session at a time -------------------------------------------------------
must_succeed roam session start s1
[ -f "$ROAM_HOME/sessions/s1/profile.img" ] || fail "s1 boots without alice's profile disk"
must_fail roam session start s2
expect_match "$ERR" "cannot start session 's2': the profile of user 'alice' is attached to session 's1' \(running here\)"
expect_one_line "$ERR"
[ "$(state s2)" = created ] || fail "the refused start changed s2"
roam session show s2 | grep -q "^profile: .*held by session 's1'" || fail "show s2: $(roam session show s2)"
wait_for 60 has_tick s1 3 || fail "s1 does not run"

# --- a silent agent: bounded, one line, exit 2; the daemon keeps answering ----------------------
PORT=$(free_port)
start_daemon "$ROAM_HOME" "127.0.0.1:$PORT"
TOKEN=$(cat "$ROAM_HOME/local.token")
t0=$SECONDS
rc=0; ERR=$(roam session exec s1 -- /bin/true 2>&1) || rc=$?
[ $rc = 2 ] || fail "exec to a silent agent exited $rc, not 2"
expect_match "$ERR" "session 's1': .*did not answer within 5000 ms"
expect_one_line "$ERR"
[ $((SECONDS - t0)) -lt 30 ] || fail "exec to a silent agent took $((SECONDS - t0)) s"
roam session show s1 | grep -q '^agent: *silent' || fail "show: $(roam session show s1)"
silent_in_list() {
	curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/sessions" |
		jq -e '.sessions[] | select(.name == "s1") | .agent.state == "silent" and .profile' >/dev/null
}
wait_for 30 silent_in_list || fail "the daemon's list does not say the agent is silent: $(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/sessions")"
t0=$(date +%s%N)
curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/info" >/dev/null || fail "the daemon does not answer"
log "the daemon answered in $((($(date +%s%N) - t0) / 1000000)) ms while it asks a silent agent"

# --- the console's thumbnail ---------------------------------------------------------------------------
BOB=$(roam token create --role user --user bob)
ALICE=$(roam token create --role user --user alice)
code=$(curl -s -o thumb.png -w '%{http_code}' -H "Authorization: Bearer $ALICE" "http://127.0.0.1:$PORT/v1/console/thumbnails/s1")
[ "$code" = 200 ] || fail "thumbnail: HTTP $code: $(cat thumb.png)"
[ "$(head -c 8 thumb.png | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "the thumbnail is not a PNG"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $BOB" "http://127.0.0.1:$PORT/v1/console/thumbnails/s1")
[ "$code" = 404 ] || fail "bob's token got alice's thumbnail: HTTP $code"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/console/thumbnails/s1")
[ "$code" = 401 ] || fail "no token got a thumbnail: HTTP $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ALICE" "http://127.0.0.1:$PORT/v1/console/thumbnails/s2")
[ "$code" = 409 ] || fail "the thumbnail of a session that does not run: HTTP $code"
kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true

# --- the profile travels in checkpoints ---------------------------------------------------------------
ck=$(roam session checkpoint s1 2>/dev/null) || fail "checkpoint of s1 failed"
manifest "$ck" | jq -e '.objects.profile | length == 64' >/dev/null || fail "the checkpoint lacks the profile disk"
must_succeed roam session stop s1

# --- the log-off: the profile into the store; the other session may have it now ------------------------
must_succeed roam session finalize s1
pid=$(ref_of users/alice/profile)
[ -n "$pid" ] || fail "no users/alice/profile after the log-off"
manifest "$pid" | jq -e '.kind == "profile" and .session == "s1" and .user == "alice"' >/dev/null ||
	fail "users/alice/profile: $(manifest "$pid")"
expect_match "$(ext4_file "$ROAM_HOME/profiles/alice.img" /alice/logoff-done)" tick \
	"alice's logoff-done (the log-off hook on her profile disk)"
[ ! -e "$ROAM_HOME/profiles/alice.hold" ] || fail "the log-off left the profile held"
must_succeed roam session start s2
expect_match "$(ext4_file "$ROAM_HOME/sessions/s2/profile.img" /alice/logoff-done)" tick \
	"the logoff-done s2 got with the profile s1 left"
must_fail roam session start s1
expect_match "$ERR" "attached to session 's2'"
must_succeed roam session stop s2
# removing the holder saves its profile and lets it go
must_succeed roam session rm s2
[ "$(ref_of users/alice/profile)" != "$pid" ] || fail "rm of the holder did not save the profile"
[ ! -e "$ROAM_HOME/profiles/alice.hold" ] || fail "rm of the holder left the profile held"
must_succeed roam store fsck
log "ok"
