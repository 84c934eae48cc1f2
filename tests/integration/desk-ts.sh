#!/usr/bin/env bash
# Desks on terminal servers (issue 11), on the desktop image with the
# terminal-server layer (both built when missing, cached): two terminal
# servers on this host; alice and bob get desks on ts1; alice types unsaved
# text in mousepad; a desk CRIU cannot dump (an established TCP connection)
# fails its suspend with CRIU's reason and keeps running; alice's desk is
# suspended into the store; a resume onto a server without the layer, onto a
# server where alice runs already, and from a damaged checkpoint are refused
# and change nothing; then it resumes on ts2 with the same process ids and
# its unsaved text, and bob's desk on ts1 never stopped.
# Several minutes under TCG.
. "$(dirname "$0")/../lib.sh"
requires_root
need_desktop
LAYER=$BUILD_DIR/desk-layer
build_artefact build-desk-layer.sh "$LAYER" "the terminal-server layer"
export ROAM_ACCEL=${ROAM_ACCEL:-tcg}

must_succeed roam image import desktop "$DESKTOP/desktop.img" --kernel "$DESKTOP/vmlinuz" \
	--initrd "$DESKTOP/initrd.img" --append "$(cat "$DESKTOP/append")" --agent --profile
must_succeed roam image import desktop-ts "$LAYER/desk-layer.qcow2" --layer-of desktop
for ts in ts1 ts2; do
	must_succeed roam session create $ts --image desktop-ts --terminal-server --ram 2G --cpus 2
	must_succeed roam session start $ts
done
# a terminal server of the bare desktop (no layer), never started
must_succeed roam session create tsbare --image desktop --terminal-server --ram 1G
helper_up() { roam session exec "$1" -- systemctl is-active roam-desk >/dev/null 2>&1; }
for ts in ts1 ts2; do
	wait_for 600 helper_up $ts || fail "roam-desk does not run in $ts: $(roam session log $ts | tail -n 5)"
done

must_succeed roam desk start ts1 alice
must_succeed roam desk start ts1 bob
must_fail roam desk start ts2 alice
expect_match "$ERR" "runs on terminal server 'ts1' already"
roam desk list ts1 >"$T/list"
grep -q "^alice *running *ts1" "$T/list" && grep -q "^bob *running *ts1" "$T/list" ||
	fail "desk list: $(cat "$T/list")"

dx() { local u=$1; shift; roam desk exec "$u" --timeout 120 -- "$@"; }
panel_up() { dx "$1" xdotool search --onlyvisible --class xfce4-panel >/dev/null 2>&1; }
wait_for 600 panel_up alice || fail "alice's panel did not come up"
dx alice sh -c 'setsid mousepad >/dev/null 2>&1 </dev/null &'
editor() { [ -n "$(dx alice xdotool search --onlyvisible --name Mousepad 2>/dev/null)" ]; }
wait_for 300 editor || fail "mousepad did not open in alice's desk"
# (one word: GTK's text buffer may keep what was typed in pieces)
TEXT=Kestrelroam
w=$(dx alice xdotool search --onlyvisible --name Mousepad | tail -n 1)
dx alice sh -c "xdotool windowactivate $w; sleep 1; xdotool type --delay 40 '$TEXT'"
title() { dx alice sh -c 'xdotool search --onlyvisible --class mousepad getwindowname %@ | grep Mousepad | head -n 1'; }
[ "$(title)" = "*Untitled 1 - Mousepad" ] || fail "the typed text is not in the editor (title '$(title)')"
pids_of() { # the desk's Xvnc, xfwm4 and mousepad with their ids (a busy agent socket: asked again)
	local out i
	for i in 1 2 3 4 5; do
		out=$(roam desk ps "$1" 2>/dev/null) && break
		sleep 3
	done
	sed -n 's/^proc=\([0-9]*\):\(Xvnc\|mousepad\|xfwm4\)$/\2=\1/p' <<<"$out" | sort
}
alice_pids=$(pids_of alice)
echo "$alice_pids" | grep -q '^mousepad=' || fail "no mousepad in alice's desk: $(roam desk ps alice)"
bob_pid=$(roam desk show bob --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
bob_pids=$(pids_of bob)
[ "$bob_pid" -gt 0 ] || fail "no pid for bob's desk"

# --- bad input: a desk with an external TCP connection cannot be dumped ----------
bob_port=$((5900 + $(roam desk show bob --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["display"])')))
dx bob sh -c "setsid bash -c 'exec 3<>/dev/tcp/127.0.0.1/$bob_port; sleep 100000' >/dev/null 2>&1 </dev/null &"
sleep 2
must_fail roam desk suspend bob
expect_match "$ERR" "criu dump: .*TCP"
expect_one_line "$ERR"
[ "$(roam desk show bob --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["state"], d["pid"])')" = "running $bob_pid" ] ||
	fail "bob's desk did not keep running after the failed suspend"
dx bob pkill -f 'sleep 100000' || true

# --- suspend alice ---------------------------------------------------------------
touch "$T/before-suspend"
sleep 1
must_succeed roam desk suspend alice
log "$ERR"
grep -q "^alice *suspended" <(roam desk list) || fail "alice's desk is not suspended: $(roam desk list)"
must_fail roam desk ps alice
grep -qa "$TEXT" "$ROAM_HOME/sessions/ts1/xfer.raw" ||
	fail "the checkpoint does not hold the editor's text ($(grep -ac Kestrel "$ROAM_HOME/sessions/ts1/xfer.raw") lines with Kestrel)"
id0=$(roam desk show alice --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
same_desk() { [ "$(roam desk show alice --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["state"], d["id"])')" = "suspended $id0" ]; }

# a server without the layer: refused, nothing changed
must_fail roam desk resume alice --on tsbare
expect_match "$ERR" "started on layer .* which 'tsbare' does not run"
expect_one_line "$ERR"
same_desk || fail "a refused resume changed the desk"
# a server where alice runs already (a stray desk made behind roam's back)
uid_disp=$(roam desk show alice --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["uid"], d["display"])')
roam session exec ts2 --timeout 300 -- /usr/local/sbin/roam-desk start alice $uid_disp >/dev/null ||
	fail "cannot make a stray desk of alice on ts2"
must_fail roam desk resume alice --on ts2
expect_match "$ERR" "runs here already"
same_desk || fail "a refused resume changed the desk"
roam session exec ts2 -- /usr/local/sbin/roam-desk kill alice >/dev/null
roam session exec ts2 -- /usr/local/sbin/roam-desk forget alice >/dev/null
# a damaged checkpoint: one of its chunks altered in the store
chunk=$(find "$ROAM_HOME/store/chunks" -type f -newer "$T/before-suspend" -size +1k -print -quit)
[ -n "$chunk" ] || fail "no chunk of the checkpoint found"
cp "$chunk" "$T/chunk.bak"
chmod u+w "$chunk"
printf 'XXXXXXXX' | dd of="$chunk" bs=1 seek=100 conv=notrunc 2>/dev/null
must_fail roam desk resume alice --on ts2
expect_match "$ERR" "damaged|corrupt|does not match"
same_desk || fail "a refused resume changed the desk"
cp "$T/chunk.bak" "$chunk"

# --- resume on ts2: the same processes, the same text ----------------------------
must_succeed roam desk resume alice --on ts2
log "$ERR"
grep -q "^alice *running *ts2" <(roam desk list) || fail "alice's desk does not run on ts2: $(roam desk list)"
[ "$(pids_of alice)" = "$alice_pids" ] || fail "alice's process ids changed: $(pids_of alice) vs $alice_pids"
[ "$(title)" = "*Untitled 1 - Mousepad" ] || fail "the editor lost its unsaved text (title '$(title)')"
# bob's desk on ts1 never stopped
[ "$(roam desk show bob --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["ts"], d["pid"])')" = "ts1 $bob_pid" ] ||
	fail "bob's desk changed"
[ "$(pids_of bob)" = "$bob_pids" ] || fail "bob's processes changed"

# --- isolation over the HTTP API: bob cannot list, open or move alice's desk ------
ALICE=$(roam token create --role user --user alice) BOB=$(roam token create --role user --user bob)
PORT=$(free_port)
start_daemon "$ROAM_HOME" "127.0.0.1:$PORT" --max-failed-logins 0
api() { local tok=$1; shift; curl -s -o "$T/api.out" -w '%{http_code}' -H "Authorization: Bearer $tok" "$@"; }
U=http://127.0.0.1:$PORT/v1/desks
[ "$(api "$BOB" "$U")" = 200 ] || fail "bob cannot list his desks"
[ "$(python3 -c 'import json,sys; print(" ".join(d["user"] for d in json.load(open(sys.argv[1]))["desks"]))' "$T/api.out")" = bob ] ||
	fail "bob's list is not his desk alone: $(cat "$T/api.out")"
[ "$(api "$BOB" "$U/alice")" = 404 ] || fail "bob can open alice's desk: $(cat "$T/api.out")"
[ "$(api "$BOB" -X POST "$U/alice/suspend")" = 404 ] || fail "bob can suspend alice's desk"
[ "$(api "$BOB" -X POST -d '{"on": "ts1"}' "$U/alice/resume")" = 404 ] || fail "bob can move alice's desk"
[ "$(api "$BOB" -X POST "$U/alice/logoff")" = 404 ] || fail "bob can log alice off"
[ "$(api "$ALICE" "$U/alice")" = 200 ] || fail "alice cannot open her desk"
grep -q '"ts": *"ts2"' "$T/api.out" && grep -q '"state": *"running"' "$T/api.out" ||
	fail "alice's desk as the API shows it: $(cat "$T/api.out")"
# the daemon asks the servers' agents every 5 s: it goes before the command line asks them again
kill "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
[ "$(pids_of alice)" = "$alice_pids" ] || fail "alice's desk changed under bob's tries"

# the editor still holds the text: a second suspend carries it again, and stores little
must_succeed roam desk suspend alice
grep -qa "$TEXT" "$ROAM_HOME/sessions/ts2/xfer.raw" || fail "the resumed editor lost the text"
log "$ERR"
must_succeed roam desk resume alice
must_succeed roam desk logoff alice
must_succeed roam desk logoff bob
[ -z "$(roam desk list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)) or "")')" ] ||
	fail "desks left after log-off"
