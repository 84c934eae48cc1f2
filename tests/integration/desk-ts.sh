#!/usr/bin/env bash
# Desks on terminal servers (issue 11), on the desktop image with the
# terminal-server layer (both built when missing, cached). Three homes: two
# servers (A: ts1, B: ts2, their daemons in the datacenter namespace) and a
# laptop (its terminal server lts, in the laptop namespace behind the
# emulated WAN: 100 Mbit/s, 50 ms round trip). alice and bob get desks on
# ts1; alice types unsaved text in mousepad; a desk CRIU cannot dump (an
# established TCP connection) fails its suspend with CRIU's reason and keeps
# running; alice's desk is suspended into A's store; resumes onto a server
# without the layer (A's and B's), onto a server where alice runs already
# (B's) and from a damaged checkpoint are refused and change nothing; then
# it resumes on B's ts2 with the same process ids and its unsaved text, and
# bob's desk on ts1 never stopped; bob cannot list, open or move alice's
# desk; alice takes her desk offline to the laptop's terminal server and back
# online to ts2, keeping the text.
# Twenty minutes or more under TCG.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../netns.sh"
requires_root
need_desktop
LAYER=$BUILD_DIR/desk-layer
build_artefact build-desk-layer.sh "$LAYER" "the terminal-server layer"
export ROAM_ACCEL=${ROAM_ACCEL:-tcg}
wan_setup

A=$ROAM_HOME B=$T/b L=$T/laptop
rb() { ROAM_HOME=$B roam "$@"; }
rl() { ROAM_HOME=$L roam "$@"; }
for home in "$A" "$B" "$L"; do
	mkdir -p "$home"
	ROAM_HOME=$home must_succeed roam image import desktop "$DESKTOP/desktop.img" --kernel "$DESKTOP/vmlinuz" \
		--initrd "$DESKTOP/initrd.img" --append "$(cat "$DESKTOP/append")" --agent --profile
	ROAM_HOME=$home must_succeed roam image import desktop-ts "$LAYER/desk-layer.qcow2" --layer-of desktop
done
must_succeed roam session create ts1 --image desktop-ts --terminal-server --ram 2G --cpus 2
ROAM_HOME=$B must_succeed roam session create ts2 --image desktop-ts --terminal-server --ram 2G --cpus 2
ROAM_HOME=$L must_succeed roam session create lts --image desktop-ts --terminal-server --ram 2G --cpus 2
must_succeed roam session start ts1
ROAM_HOME=$B must_succeed roam session start ts2
ROAM_HOME=$L must_succeed roam session start lts
# terminal servers of the bare desktop (no layer), never started: on A and on B
must_succeed roam session create tsbare --image desktop --terminal-server --ram 1G
ROAM_HOME=$B must_succeed roam session create tsbare --image desktop --terminal-server --ram 1G
helper_up() { ROAM_HOME=$1 roam session exec "$2" -- systemctl is-active roam-desk >/dev/null 2>&1; }
for hts in "$A ts1" "$B ts2" "$L lts"; do
	set -- $hts
	wait_for 900 helper_up "$1" "$2" || fail "roam-desk does not run in $2: $(ROAM_HOME=$1 roam session log "$2" | tail -n 5)"
done

# B's daemon, in the datacenter namespace; the laptop reaches it through the WAN
PB=$(free_port)
ROAM_HOME=$B in_dc "$ROAM_BIN" serve --listen "$DC_IP:$PB" --max-failed-logins 0 >>"$T/b-serve.log" 2>&1 &
cleanup_add "kill $! 2>/dev/null"
wait_for 20 wan_listening "$DC_NS" "$PB" || { cat "$T/b-serve.log" >&2; fail "B's daemon did not start"; }
wan_relay "$PB"
B_URL=http://$DC_IP:$PB B_WAN=http://127.0.0.1:$PB
B_HOST=$(ROAM_HOME=$B roam token create --role host)
ALICE=$(ROAM_HOME=$B roam token create --role user --user alice) BOB=$(ROAM_HOME=$B roam token create --role user --user bob)
laptop_desk() { ROAM_HOME=$L in_laptop "$ROAM_BIN" desk "$@"; }
# A sends from its namespace
send_a() { ROAM_HOME=$A in_dc "$ROAM_BIN" desk resume "$@" --to "$B_URL" --token "$B_HOST"; }

must_succeed roam desk start ts1 alice
must_succeed roam desk start ts1 bob
must_fail roam desk start ts1 alice
expect_match "$ERR" "runs on terminal server 'ts1' already"
roam desk list ts1 >"$T/list"
grep -q "^alice *running *ts1" "$T/list" && grep -q "^bob *running *ts1" "$T/list" ||
	fail "desk list: $(cat "$T/list")"

DH=$A # the home the desk checks ask (where alice's desk runs)
dx() { local u=$1; shift; ROAM_HOME=$DH roam desk exec "$u" --timeout 120 -- "$@"; }
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
		out=$(ROAM_HOME=${2:-$DH} roam desk ps "$1" 2>/dev/null) && break
		sleep 3
	done
	sed -n 's/^proc=\([0-9]*\):\(Xvnc\|mousepad\|xfwm4\)$/\2=\1/p' <<<"$out" | sort
}
alice_pids=$(pids_of alice)
echo "$alice_pids" | grep -q '^mousepad=' || fail "no mousepad in alice's desk: $(roam desk ps alice)"
bob_pid=$(roam desk show bob --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
bob_pids=$(pids_of bob "$A")
[ "$bob_pid" -gt 0 ] || fail "no pid for bob's desk"

# inside the terminal server bob's desk cannot reach alice's display: each desk
# has its own network namespace (its abstract X socket, its loopback with Xvnc)
alice_display=$(roam desk show alice --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["display"])')
dx alice xdotool getmouselocation >/dev/null || fail "alice cannot reach her own display"
must_fail dx bob env DISPLAY=":$alice_display" xdotool getmouselocation
expect_match "$ERR" "an't open display"
must_fail dx bob bash -c "exec 3<>/dev/tcp/127.0.0.1/$((5900 + alice_display))"
expect_match "$ERR" "onnection refused"

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
file_holds "$ROAM_HOME/sessions/ts1/xfer.raw" "$TEXT" || fail "the checkpoint does not hold the editor's text"
id0=$(roam desk show alice --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
same_desk() { [ "$(roam desk show alice --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["state"], d["id"])')" = "suspended $id0" ]; }

# a server without the layer: refused, nothing changed (here and on B)
must_fail roam desk resume alice --on tsbare
expect_match "$ERR" "started on layer .* which 'tsbare' does not run"
expect_one_line "$ERR"
same_desk || fail "a refused resume changed the desk"
# a damaged checkpoint: one of its chunks altered in A's store (here, and on its way to B:
# first, while B lacks every chunk)
chunk=$(find "$A/store/chunks" -type f -newer "$T/before-suspend" -size +1k -print -quit)
[ -n "$chunk" ] || fail "no chunk of the checkpoint found"
cp "$chunk" "$T/chunk.bak"
chmod u+w "$chunk"
printf 'XXXXXXXX' | dd of="$chunk" bs=1 seek=100 conv=notrunc 2>/dev/null
must_fail roam desk resume alice --on ts1
expect_match "$ERR" "damaged|corrupt|does not match"
same_desk || fail "a refused resume changed the desk"
must_fail send_a alice --on ts2
expect_match "$ERR" "damaged|corrupt|does not match"
expect_match "$ERR" "suspended here again"
same_desk || fail "a refused resume changed the desk"
cp "$T/chunk.bak" "$chunk"
must_fail send_a alice --on tsbare
expect_match "$ERR" "started on layer .* which 'tsbare' does not run.*suspended here again"
expect_one_line "$ERR"
same_desk || fail "a resume refused by B changed the desk"
[ -z "$(rb desk list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)) or "")')" ] ||
	fail "a refused resume left a desk on B: $(rb desk list)"
# a server where alice runs already (a stray desk made behind roam's back on B's ts2)
uid_disp=$(roam desk show alice --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["uid"], d["display"])')
rb session exec ts2 --timeout 300 -- /usr/local/sbin/roam-desk start alice $uid_disp >/dev/null ||
	fail "cannot make a stray desk of alice on ts2"
must_fail send_a alice --on ts2
expect_match "$ERR" "runs here already.*nothing was changed here.*suspended here again"
expect_one_line "$ERR"
same_desk || fail "a refused resume changed the desk"
[ -z "$(rb desk list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)) or "")')" ] ||
	fail "a refused resume left a desk on B: $(rb desk list)"
rb session exec ts2 -- /usr/local/sbin/roam-desk kill alice >/dev/null
rb session exec ts2 -- /usr/local/sbin/roam-desk forget alice >/dev/null

# --- resume on B's ts2 (another host): the same processes, the same text ---------
out=$(send_a alice --on ts2 2>&1) || { tail -n 20 "$T/b-serve.log" >&2; fail "the resume on B failed: $out"; }
log "$out"
expect_match "$out" "resumed on 'ts2'"
DH=$B
grep -q "^alice *running *ts2" <(rb desk list) || fail "alice's desk does not run on B's ts2: $(rb desk list)"
grep -q "^alice *away *ts1" <(roam desk list) || fail "A does not show alice's desk as moved: $(roam desk list)"
roam desk show alice | grep -q "^at: *$B_URL" || fail "A does not say where alice's desk went: $(roam desk show alice)"
must_fail roam desk resume alice --on ts1
expect_match "$ERR" "moved to $B_URL"
[ "$(pids_of alice)" = "$alice_pids" ] || fail "alice's process ids changed: $(pids_of alice) vs $alice_pids"
[ "$(title)" = "*Untitled 1 - Mousepad" ] || fail "the editor lost its unsaved text (title '$(title)')"
# bob's desk on ts1 never stopped
[ "$(roam desk show bob --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["ts"], d["pid"])')" = "ts1 $bob_pid" ] ||
	fail "bob's desk changed"
[ "$(pids_of bob "$A")" = "$bob_pids" ] || fail "bob's processes changed"

# --- isolation over B's HTTP API: bob cannot list, open or move alice's desk ------
U=$B_WAN/v1/desks
in_api() { in_laptop curl -s -o "$T/api.out" -w '%{http_code}' -H "Authorization: Bearer $1" "${@:2}"; }
[ "$(in_api "$BOB" "$U")" = 200 ] || fail "bob cannot list his desks"
[ "$(python3 -c 'import json,sys; print(" ".join(d["user"] for d in json.load(open(sys.argv[1]))["desks"]))' "$T/api.out")" = "" ] ||
	fail "bob's list holds another's desk: $(cat "$T/api.out")"
[ "$(in_api "$BOB" "$U/alice")" = 404 ] || fail "bob can open alice's desk: $(cat "$T/api.out")"
[ "$(in_api "$BOB" -X POST "$U/alice/suspend")" = 404 ] || fail "bob can suspend alice's desk"
[ "$(in_api "$BOB" -X POST -d '{"on": "ts2"}' "$U/alice/resume")" = 404 ] || fail "bob can move alice's desk"
[ "$(in_api "$BOB" -X POST -d '{"to": "bob"}' "$U/alice/lend")" = 404 ] || fail "bob can take alice's desk offline"
[ "$(in_api "$BOB" -X POST "$U/alice/logoff")" = 404 ] || fail "bob can log alice off"
must_fail laptop_desk offline alice --from "$B_WAN" --token "$BOB"
expect_match "$ERR" "no desk of 'alice'"
[ "$(in_api "$ALICE" "$U/alice")" = 200 ] || fail "alice cannot open her desk"
grep -q '"ts": *"ts2"' "$T/api.out" && grep -q '"state": *"running"' "$T/api.out" ||
	fail "alice's desk as the API shows it: $(cat "$T/api.out")"
[ "$(pids_of alice)" = "$alice_pids" ] || fail "alice's desk changed under bob's tries"
# alice's display through the console (noVNC, a real browser), bob's refused
if command -v node >/dev/null && CHROMIUM=${CHROMIUM:-$(command -v chromium || true)} && [ -n "$CHROMIUM" ] &&
	[ -f "$SRC_DIR/web/node_modules/playwright-core/package.json" ]; then
	rc=0
	in_dc env ROAM_URL="$B_URL" DESK_USER=alice USER_TOKEN="$ALICE" OTHER_TOKEN="$BOB" SHOTS="$T/shots" \
		CHROMIUM="$CHROMIUM" WEB_DIR="$SRC_DIR/web" timeout 300 node "$SRC_DIR/tests/browser/desk-console.test.js" >&2 ||
		rc=$?
	[ $rc = 0 ] || { tail -n 20 "$T/b-serve.log" >&2; fail "the console's desk view failed ($rc)"; }
else
	log "no chromium, node or web/node_modules: the console's desk view is not checked (scripts/deps.sh web)"
fi
[ "$(pids_of alice)" = "$alice_pids" ] || fail "alice's desk changed under the console"

# --- offline to the laptop's terminal server, over the WAN, and back --------------
out=$(laptop_desk offline alice --from "$B_WAN" --token "$ALICE" 2>&1) ||
	{ tail -n 20 "$T/b-serve.log" >&2; fail "desk offline failed: $out"; }
log "$out"
file_holds "$B/sessions/ts2/xfer.raw" "$TEXT" || fail "the checkpoint B took does not hold the editor's text"
DH=$L
grep -q "^alice *running *lts" <(rl desk list) || fail "alice's desk does not run on the laptop: $(rl desk list)"
grep -q "^alice *away *ts2" <(rb desk list) || fail "B does not show alice's desk as lent: $(rb desk list)"
[ "$(pids_of alice)" = "$alice_pids" ] || fail "alice's process ids changed offline: $(pids_of alice) vs $alice_pids"
[ "$(title)" = "*Untitled 1 - Mousepad" ] || fail "the editor lost its text offline (title '$(title)')"
must_fail rb desk resume alice --on ts2
expect_match "$ERR" "moved to laptop"
# a user's token may not send a desk (it is restored by root in a shared
# terminal server): refused before anything stops
must_fail laptop_desk online alice --to "$B_WAN" --token "$ALICE"
expect_match "$ERR" "only with a host or admin token.*nothing was changed"
grep -q "^alice *running *lts" <(rl desk list) || fail "a refused online changed the desk: $(rl desk list)"
B_HOST_WAN=$B_HOST # the laptop's own host token of B (a managed laptop)
out=$(laptop_desk online alice --to "$B_WAN" --token "$B_HOST_WAN" 2>&1) ||
	{ tail -n 20 "$T/b-serve.log" >&2; fail "desk online failed: $out"; }
log "$out"
echo "$out" | grep -q "resumed on 'ts2'" || fail "desk online did not resume on the server it came from: $out"
DH=$B
grep -q "^alice *running *ts2" <(rb desk list) || fail "alice's desk is not back on ts2: $(rb desk list)"
grep -q "^alice *away *lts" <(rl desk list) || fail "the laptop does not show alice's desk as gone: $(rl desk list)"
[ "$(pids_of alice)" = "$alice_pids" ] || fail "alice's process ids changed online: $(pids_of alice) vs $alice_pids"
[ "$(title)" = "*Untitled 1 - Mousepad" ] || fail "the editor lost its text online (title '$(title)')"

must_succeed rb desk logoff alice
must_succeed roam desk logoff bob
[ -z "$(rb desk list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)) or "")')" ] ||
	fail "desks left on B after log-off"
# A still keeps alice's desk as moved to B: it does not know of the log-off there
[ "$(roam desk list --json | python3 -c 'import json,sys; print(" ".join(d["state"] for d in json.load(sys.stdin)))')" = away ] ||
	fail "A's desks after log-off: $(roam desk list)"
must_fail roam desk logoff alice
expect_match "$ERR" "desk forget alice"
must_succeed roam desk forget alice
[ -z "$(roam desk list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)) or "")')" ] ||
	fail "desks left on A: $(roam desk list)"
