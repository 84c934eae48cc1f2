#!/usr/bin/env bash
# The desktop story (issue 10), run by scripts/demo.sh when build/desktop
# exists (or DEMO=desktop): alice's Debian + Xfce desktop in the datacenter,
# unsaved text in an editor, pre-copy to her laptop, take offline, work with
# the link cut, take online (live), a move between two servers, offline
# again, a file saved and the session powered off on the laptop, taken online
# powered off (the log-off through the guest agent, her profile disk into
# the store, the pooled system delta reset), and her next session in the
# datacenter with her file. A screenshot of every step goes to $DEMO_SHOTS
# (default build/demo-shots/), and a timeline ends it.
#
# Builds the desktop image when it is missing (scripts/build-desktop.sh,
# cached). As root the datacenter and the laptop are two network namespaces
# joined by an emulated WAN (100 Mbit/s, 25 ms each way); otherwise loopback.
SRC=$(cd "$(dirname "$0")/.." && pwd)
export BUILD_DIR=${BUILD_DIR:-$SRC/build}
. "$SRC/tests/lib.sh"
export ROAM_ACCEL=${ROAM_ACCEL:-tcg}
DESKTOP=$BUILD_DIR/desktop
SHOTS=${DEMO_SHOTS:-$BUILD_DIR/demo-shots}
RAM=${DEMO_RAM:-2G}
timeline=()
bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
row() { timeline+=("$(printf '| %-48s | %12s | %14s |' "$1" "$2" "$3")"); }
field() { sed -nE "s/.*$1 ([0-9]+) ms.*/\\1 ms/p"; }
sent() { sed -nE 's/.*ms, ([0-9.]+ [KMG]?i?B) sent.*/\1/p'; }

bold "the desktop image (Debian bookworm + Xfce, built from Debian's packages; cached)"
bash "$SRC/scripts/build-desktop.sh" "$DESKTOP" >"$T/desktop.log" 2>&1 || { tail -n 20 "$T/desktop.log"; fail "cannot build the desktop image"; }
ls -la "$DESKTOP"/{desktop.img,vmlinuz,initrd.img}
mkdir -p "$SHOTS"
rm -f "$SHOTS"/*.png

export DC_HOME=$T/datacenter LT_HOME=$T/laptop DC2_HOME=$T/datacenter2
PORT=$(free_port) LPORT=$(free_port) PORT2=$(free_port)
if [ "$(id -u)" = 0 ]; then
	. "$SRC/tests/netns.sh"
	wan_setup 100 25
	DC_LISTEN=$DC_IP:$PORT
	in_dc_roam() { ROAM_HOME=$DC_HOME in_dc "$ROAM_BIN" "$@"; }
	in_dc2_roam() { ROAM_HOME=$DC2_HOME in_dc "$ROAM_BIN" "$@"; }
	in_lt_roam() { ROAM_HOME=$LT_HOME in_laptop "$ROAM_BIN" "$@"; }
	link="emulated WAN, 100 Mbit/s, 25 ms each way"
else
	DC_LISTEN=127.0.0.1:$PORT
	in_dc_roam() { ROAM_HOME=$DC_HOME "$ROAM_BIN" "$@"; }
	in_dc2_roam() { ROAM_HOME=$DC2_HOME "$ROAM_BIN" "$@"; }
	in_lt_roam() { ROAM_HOME=$LT_HOME "$ROAM_BIN" "$@"; }
	link_down() { :; }
	link_up() { :; }
	link="loopback (run as root for the emulated WAN)"
fi
state_on() { "$1" session list | awk '$1 == "desk" { print $4 }'; }
ax() { local h=$1; shift; "$h" session exec desk --user alice --timeout 60 -- "$@"; }
agent_up() { "$1" session exec desk -- /bin/true >/dev/null 2>&1; }
panel_up() { ax "$1" xdotool search --onlyvisible --class xfce4-panel >/dev/null 2>&1; }
editor() { ax "$1" xdotool search --onlyvisible --class mousepad >/dev/null 2>&1; }
type_text() { ax "$1" xdotool search --onlyvisible --class mousepad windowactivate --sync type --delay 30 "$2" >/dev/null; }
title() { ax "$1" sh -c 'xdotool search --onlyvisible --class mousepad getwindowname %@ | head -n 1'; }
boot_id() { "$1" session exec desk -- cat /proc/sys/kernel/random/boot_id; }
shot() { # HOST FILE CAPTION
	"$1" session screenshot desk "$SHOTS/$2" >/dev/null && echo "screenshot: $SHOTS/$2 ($3)"
}
precopied() {
	in_lt_roam status --json 2>/dev/null |
		python3 -c 'import json, sys; h = json.load(sys.stdin).get("handoff") or {}; s = [x for x in h.get("sessions", []) if x["name"] == "desk"]; sys.exit(0 if s and s[0]["precopy_at"] > 0 else 1)'
}

bold "datacenter: the image with its boot files in the store; a pooled desktop session for alice ($RAM)"
in_dc_roam image import desktop "$DESKTOP/desktop.img" --kernel "$DESKTOP/vmlinuz" --initrd "$DESKTOP/initrd.img" \
	--append "$(cat "$DESKTOP/append")" --agent --profile
in_dc_roam session create desk --image desktop --user alice --ram "$RAM" --cpus 2 --policy pooled
t0=$SECONDS
in_dc_roam session start desk
ALICE=$(in_dc_roam token create --role user --user alice)
in_dc_roam serve --listen "$DC_LISTEN" --log "$T/dc.log" &
cleanup_add "kill $! 2>/dev/null"
sleep 1
if [ "$(id -u)" = 0 ]; then wan_relay "$PORT"; fi
SERVER=http://127.0.0.1:$PORT
echo "booting the desktop under TCG (a minute or more)..."
wait_for 900 agent_up in_dc_roam || fail "the guest agent does not answer"
wait_for 900 panel_up in_dc_roam || fail "no desktop on :0"
echo "alice is logged in on :0 after $((SECONDS - t0)) s; boot id $(boot_id in_dc_roam)"
BOOT=$(boot_id in_dc_roam)
in_dc_roam session show desk | grep -E '^(agent|profile):'
row "boot the desktop in the datacenter" "-" "-"

bold "alice types into mousepad and does not save"
ax in_dc_roam sh -c 'setsid mousepad >/dev/null 2>&1 </dev/null &'
wait_for 120 editor in_dc_roam || fail "no mousepad window"
type_text in_dc_roam 'Dear diary, written in the datacenter. '
echo "window title: $(title in_dc_roam)"
shot in_dc_roam 01-datacenter.png "unsaved text in the datacenter"

bold "laptop: pairs, hoards the image, pre-copies the session ($link)"
in_lt_roam serve --role laptop --listen "127.0.0.1:$LPORT" --server "$SERVER" --token "$ALICE" --name alices-laptop \
	--precopy-interval 3 --log "$T/laptop.log" &
cleanup_add "kill $! 2>/dev/null"
wait_for 600 precopied || { tail -n 20 "$T/laptop.log"; fail "no pre-copy reached the laptop"; }
in_lt_roam status

bold "take offline"
out=$(in_lt_roam offline desk) || { tail -n 20 "$T/laptop.log" "$T/dc.log"; fail "take offline failed"; }
echo "$out"
row "take offline (with background pre-copy)" "$(field downtime <<<"$out")" "$(sent <<<"$out")"
echo "boot id on the laptop: $(boot_id in_lt_roam) (the same boot); title: $(title in_lt_roam)"
shot in_lt_roam 02-laptop.png "the same desktop on the laptop"

bold "the link is cut: alice keeps typing on the laptop"
link_down
type_text in_lt_roam 'And this on the laptop, offline. '
shot in_lt_roam 03-offline.png "working with the link cut"
row "work offline, link down" "0 ms" "0 B"
link_up
sleep 4

bold "back online: take online (live)"
out=$(in_lt_roam online desk) || { tail -n 20 "$T/laptop.log" "$T/dc.log"; fail "take online failed"; }
echo "$out"
row "take online (live)" "$(field downtime <<<"$out")" "$(sent <<<"$out")"
echo "boot id in the datacenter: $(boot_id in_dc_roam); title: $(title in_dc_roam)"
shot in_dc_roam 04-online.png "back in the datacenter, nothing lost"

bold "session move: to a second server and back (live)"
in_dc2_roam serve --listen "127.0.0.1:$PORT2" --log "$T/dc2.log" &
cleanup_add "kill $! 2>/dev/null"
sleep 1
wait_for 20 test -s "$DC2_HOME/local.token" || fail "the second server did not start"
out=$(in_dc_roam session move desk --to "http://127.0.0.1:$PORT2" --token "$(cat "$DC2_HOME/local.token")" 2>&1) || fail "move failed: $out"
echo "$out"
row "session move to a second server" "$(field downtime <<<"$out")" "-"
shot in_dc2_roam 05-moved.png "on the second server"
out=$(in_dc2_roam session move desk --to "http://${DC_LISTEN}" --token "$(cat "$DC_HOME/local.token")" 2>&1) || fail "move back failed: $out"
echo "$out"
row "session move back" "$(field downtime <<<"$out")" "-"

bold "offline again; alice saves a file in her home and powers the laptop's session off"
wait_for 300 precopied || true
out=$(in_lt_roam offline desk) || fail "take offline failed"
row "take offline again" "$(field downtime <<<"$out")" "$(sent <<<"$out")"
ax in_lt_roam sh -c 'echo "notes written on the laptop" >/home/alice/notes.txt && sync'
in_lt_roam session stop --timeout 300 desk

bold "take online powered off: the datacenter logs alice off through the guest agent"
out=$(in_lt_roam online desk) || { tail -n 20 "$T/laptop.log" "$T/dc.log"; fail "take online (powered off) failed"; }
echo "$out"
row "take online powered off (disk delta, log-off)" "-" "$(sent <<<"$out")"
echo "alice's profile in the store: $(cut -d' ' -f3 "$DC_HOME/store/refs/users/alice/profile" | cut -c1-16)"

bold "alice's next session in the datacenter: a fresh system (pooled), her files"
in_dc_roam session start desk
wait_for 900 agent_up in_dc_roam || fail "the guest agent does not answer"
echo "/home/alice/notes.txt: $(ax in_dc_roam cat /home/alice/notes.txt)"
echo "new boot id: $(boot_id in_dc_roam) (was $BOOT)"
wait_for 900 panel_up in_dc_roam || true
shot in_dc_roam 06-next-session.png "alice's next session"
in_dc_roam session stop --timeout 300 desk >/dev/null || true

bold "timeline ($link, $RAM desktop under TCG)"
printf '| %-48s | %12s | %14s |\n' "step" "downtime" "bytes on wire"
printf '|%s|%s|%s|\n' "--------------------------------------------------" "--------------" "----------------"
printf '%s\n' "${timeline[@]}"
echo "screenshots in $SHOTS"
