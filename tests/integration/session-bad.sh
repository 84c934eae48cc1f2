#!/usr/bin/env bash
# Sessions and bad input: an unknown image, a duplicate name, a name with
# '/', more RAM than the host has, a missing QEMU, a QEMU that refuses to
# start (a kernel that is no kernel), a stale QMP socket and pid file, a
# checkpoint whose chunks are missing. Each is a one-line error with a
# non-zero exit, and nothing half-created is left behind.
. "$(dirname "$0")/../lib.sh"

requires qemu-system-x86_64
requires qemu-img
export ROAM_ACCEL=tcg

need_guest
export ROAM_RAM_DIR=/dev/shm/roam-test-$$-bad
cleanup_add "rm -rf '$ROAM_RAM_DIR'"

K=(--kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img")
state() { roam session list | awk -v n="$1" '$1 == n { print $4 }'; }
snapshot() { # what must not change after a failed command
	{
		roam session list
		ls -A "$ROAM_HOME/sessions" 2>/dev/null || true
		find "$ROAM_HOME/store/refs" -type f 2>/dev/null | sort || true
		ls -A "$ROAM_RAM_DIR" 2>/dev/null || true
	} >"$T/snap.$1"
}
unchanged() {
	snapshot after
	cmp -s "$T/snap.before" "$T/snap.after" || fail "$1 left something behind: $(diff "$T/snap.before" "$T/snap.after")"
}
# bad_create REGEX ARGS...: create must fail with one line matching REGEX, changing nothing
bad_create() {
	local re=$1
	shift
	snapshot before
	must_fail roam session create "$@"
	expect_one_line "$ERR"
	expect_match "$ERR" "$re"
	unchanged "session create $*"
}

must_succeed roam image import deb "$GUEST/master.img"

# --- create: bad input ---------------------------------------------------------------
bad_create "image 'nope' not found \(try 'roam image list'\)" s1 --image nope --user alice "${K[@]}"
bad_create "session name 'a/b' is invalid" a/b --image deb --user alice "${K[@]}"
bad_create "session name '\.\.' is invalid" .. --image deb --user alice "${K[@]}"
bad_create "user name 'x/y' is invalid" s1 --image deb --user x/y "${K[@]}"
bad_create "kernel '$T/none': No such file" s1 --image deb --user alice --kernel "$T/none"
avail_mib=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
bad_create "$((avail_mib + 4096)) MiB of RAM is more than this host can give" \
	s1 --image deb --user alice --ram "$((avail_mib + 4096))M" "${K[@]}"
bad_create "invalid RAM size" s1 --image deb --user alice --ram 4M "${K[@]}"
snapshot before
must_fail roam session create s1 --image deb --user alice --ram lots "${K[@]}"
expect_match "$ERR" "--ram takes a size"
unchanged "create --ram lots"
[ ! -e "$ROAM_HOME/sessions/s1" ] || fail "a failed create left a directory"

must_succeed roam session create s1 --image deb --user alice --ram 128M "${K[@]}"
bad_create "session 's1' already exists" s1 --image deb --user bob "${K[@]}"

# --- start: QEMU missing or refusing -----------------------------------------------------
snapshot before
ROAM_QEMU=/nonexistent/qemu must_fail roam session start s1
expect_one_line "$ERR"
expect_match "$ERR" "qemu '/nonexistent/qemu' not found"
unchanged "start without qemu"
[ "$(state s1)" = created ] || fail "a failed start changed the state to $(state s1)"

head -c 1000000 /dev/urandom >"$T/notakernel"
must_succeed roam session create junk --image deb --user alice --ram 64M --kernel "$T/notakernel" --initrd "$GUEST/initrd.img"
snapshot before
must_fail roam session start junk
expect_one_line "$ERR"
expect_match "$ERR" "session 'junk': qemu failed to start \(exit 1\): .*kernel"
unchanged "start with a bad kernel"
[ ! -e "$ROAM_HOME/sessions/junk/qemu.pid" ] || fail "failed start left a pid file"
must_succeed roam session rm junk

# --- stale QMP socket and pid file (a QEMU that died unseen) -------------------------------
S=$ROAM_HOME/sessions/s1
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$S/qmp.sock"
[ -S "$S/qmp.sock" ] || fail "could not make a stale socket"
sleep 300 &
decoy=$!
cleanup_add "kill $decoy"
echo "$decoy" >"$S/qemu.pid" # a live process, but not our QEMU
[ "$(state s1)" = created ] || fail "a stale pid file of another process makes the session '$(state s1)'"
must_succeed roam session start s1
[ "$(state s1)" = running ] || fail "start over a stale socket: state $(state s1)"
kill -0 "$decoy" || fail "roam killed an unrelated process named in a stale pid file"

# --- a checkpoint whose chunks are missing ------------------------------------------------
touch "$T/marker"
sleep 1
must_succeed roam session checkpoint s1
ckpt=$OUT
kill -9 "$(cat "$S/qemu.pid")"
is_crashed() { [ "$(state s1)" = crashed ]; }
wait_for 10 is_crashed || fail "killed QEMU: state $(state s1)"
# the chunks this checkpoint added (RAM, overlay, device state) disappear
find "$ROAM_HOME/store/chunks" -type f -newer "$T/marker" >"$T/new-chunks"
[ -s "$T/new-chunks" ] || fail "the checkpoint added no chunks?"
xargs rm -f <"$T/new-chunks"
md5_before=$(md5sum <"$S/overlay.qcow2")
snapshot before
must_fail roam session restore s1
expect_one_line "$ERR"
expect_match "$ERR" "cannot restore session 's1': checkpoint ${ckpt:0:12} lacks [0-9]+ chunks"
unchanged "restore of a damaged checkpoint"
[ "$(state s1)" = crashed ] || fail "failed restore changed the state to $(state s1)"
[ "$(md5sum <"$S/overlay.qcow2")" = "$md5_before" ] || fail "failed restore changed the overlay"

# --- other refusals ------------------------------------------------------------------------
must_fail roam session restore ghost
expect_match "$ERR" "session 'ghost' not found \(try 'roam session list'\)"
must_fail roam session restore s1 nonsense
expect_match "$ERR" "checkpoint 'nonsense' is neither"
must_succeed roam session create s2 --image deb --user bob --ram 64M "${K[@]}"
must_fail roam session restore s2
expect_match "$ERR" "session 's2' has no checkpoint 'latest'"
# a session that never ran has a powered-off checkpoint: its (empty) disk delta alone
out=$(roam session checkpoint s2 2>&1) || fail "checkpoint of created s2: $out"
expect_match "$out" "checkpoint 000001 of 's2' \(powered off\)"
out=$(roam session restore s2 2>&1) || fail "restore of s2's powered-off checkpoint: $out"
expect_match "$out" "\(stopped\)"
[ "$(roam session list | awk '$1 == "s2" { print $4 }')" = stopped ] || fail "s2 is not stopped after restore"
must_fail roam session stop s2
expect_match "$ERR" "session 's2' is not running"
must_fail roam session show nope
expect_match "$ERR" "session 'nope' not found"
expect_one_line "$ERR"
must_fail roam session create
[ $(roam session create 2>/dev/null; echo $?) = 2 ] || fail "a usage error is not exit 2"

must_succeed roam session rm s1
must_succeed roam session rm s2
[ -z "$(roam session list | tail -n +2)" ] || fail "sessions left: $(roam session list)"
echo "ok: bad session input is refused cleanly"
