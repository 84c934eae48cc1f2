#!/usr/bin/env bash
# The desk benchmark (issue 11), on one host (no emulated WAN yet): a desk
# (Xfce + mousepad with typed text) suspended on one terminal server and
# resumed on another, twice (the second suspend stores only what changed),
# and the density of desks: the terminal server's memory with 1, 4 and 8
# desks next to one desktop VM (make desktop) with the same user's desktop.
#
#   memory: the resident memory of the QEMU process on the host (its guest RAM
#   is a shared file in /dev/shm, so what the guest touched counts), and the
#   guest's own MemTotal - MemAvailable.
#
# usage: bash bench/desk.sh   (as root; 20 to 30 minutes on 2 loaded cores)
# env:   ROAM_BENCH_DOC=0   do not update docs/benchmarks.md
#        ROAM_BENCH_KEEP=1  keep the scratch directory
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/guest.sh"

export ROAM_ACCEL=tcg
T0=$SECONDS
LOAD=$(cut -d' ' -f1 /proc/loadavg)
bash "$SRC_DIR/scripts/build-desk-layer.sh" "$SRC_DIR/build/desk-layer" "$SRC_DIR/build/desktop" >&2 ||
	die "cannot build the terminal-server layer"
D=$SRC_DIR/build/desktop
W=$(mktemp -d /tmp/roam-bench-desk.XXXXXX)
export ROAM_HOME=$W/home
cleanup() {
	local p
	for p in "$ROAM_HOME"/sessions/*/qemu.pid; do
		[ -f "$p" ] && grep -qaF -- "$p" "/proc/$(cat "$p")/cmdline" 2>/dev/null && kill -9 "$(cat "$p")"
	done
	rm -rf "/dev/shm/roam-$(printf '%s' "$ROAM_HOME" | sha256sum | cut -c1-12)"
	[ "${ROAM_BENCH_KEEP:-0}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT

roam image import desktop "$D/desktop.img" --kernel "$D/vmlinuz" --initrd "$D/initrd.img" \
	--append "$(cat "$D/append")" --agent --profile >/dev/null 2>&1 || die "import desktop"
roam image import desktop-ts "$SRC_DIR/build/desk-layer/desk-layer.qcow2" --layer-of desktop >/dev/null 2>&1 ||
	die "import the layer"
for ts in ts1 ts2; do
	roam session create $ts --image desktop-ts --terminal-server --ram 3G --cpus 2 >/dev/null 2>&1 || die "create $ts"
	roam session start $ts || die "start $ts"
done
helper_up() { roam session exec "$1" -- systemctl is-active roam-desk >/dev/null 2>&1; }
for ts in ts1 ts2; do wait_for 900 helper_up $ts || die "$ts did not come up"; done
dx() { local u=$1; shift; roam desk exec "$u" --timeout 120 -- "$@"; }
panel_up() { dx "$1" xdotool search --onlyvisible --class xfce4-panel >/dev/null 2>&1; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$(cat "$ROAM_HOME/sessions/$1/qemu.pid")/status"; }
guest_used_kib() {
	roam session exec "$1" -- awk '/^MemTotal/ { t = $2 } /^MemAvailable/ { a = $2 } END { print t - a }' /proc/meminfo
}

# --- a desk moved: ts1 -> ts2 -> ts1 -------------------------------------------
roam desk start ts1 alice 2>/dev/null || die "desk start"
wait_for 600 panel_up alice || die "alice's panel"
dx alice sh -c 'setsid mousepad >/dev/null 2>&1 </dev/null &'
editor() { [ -n "$(dx alice xdotool search --onlyvisible --name Mousepad 2>/dev/null)" ]; }
wait_for 300 editor || die "mousepad"
w=$(dx alice xdotool search --onlyvisible --name Mousepad | tail -n 1)
dx alice sh -c "xdotool windowactivate $w; sleep 1; xdotool type --delay 40 'a line of a user'" >/dev/null
field() { sed -nE "s/.*$1 ([0-9]+) ms.*/\\1/p"; }
move() { # move N TS: suspend, resume on TS; one table row
	local n=$1 to=$2 s r
	s=$(roam desk suspend alice 2>&1) || die "suspend: $s"
	r=$(roam desk resume alice --on "$to" 2>&1) || die "resume: $r"
	local bytes new stored
	bytes=$(sed -nE 's/.*: ([0-9.]+ [KMG]iB) checkpoint.*/\1/p' <<<"$s")
	new=$(sed -nE 's/.* ([0-9]+) new chunks \(([0-9.]+ [KMG]?i?B) stored\).*/\1 (\2)/p' <<<"$s")
	printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$bytes" "$new" \
		"$(field total <<<"$s")" "$(field total <<<"$r")" \
		"$(( $(field total <<<"$s") + $(field total <<<"$r") ))" "$to"
}
MOVES=$(move 1 ts2; move 2 ts1)
log "moves:"$'\n'"$MOVES"

# --- density: 1, 4, 8 desks on a fresh terminal server -------------------------------
# (ts1 and ts2 touched most of their RAM moving the desk: their page cache)
roam desk logoff alice 2>/dev/null
roam session stop ts1 >/dev/null 2>&1
roam session stop ts2 >/dev/null 2>&1
roam session create ts3 --image desktop-ts --terminal-server --ram 3G --cpus 2 >/dev/null 2>&1 || die "create ts3"
roam session start ts3 || die "start ts3"
wait_for 900 helper_up ts3 || die "ts3 did not come up"
sleep 20
DENS=$(printf '| a terminal server, no desk | %s MiB | %s MiB | - |' $(($(rss_kib ts3) / 1024)) \
	$(($(guest_used_kib ts3) / 1024)))$'\n'
n=0
for want in 1 4 8; do
	while [ $n -lt $want ]; do
		n=$((n + 1))
		roam desk start ts3 "user$n" 2>/dev/null || die "desk start user$n"
		wait_for 1500 panel_up "user$n" || die "user$n's panel"
	done
	sleep 30
	rss=$(rss_kib ts3) guest=$(guest_used_kib ts3)
	DENS+=$(printf '| %s desk%s on one terminal server | %s MiB | %s MiB | %s MiB |' "$want" \
		"$([ $want = 1 ] || echo s)" $((rss / 1024)) $((guest / 1024)) $((rss / 1024 / want)))$'\n'
	log "$want desks: rss $((rss / 1024)) MiB, guest used $((guest / 1024)) MiB"
done
for i in $(seq 1 $n); do roam desk logoff "user$i" 2>/dev/null; done
roam session stop ts3 >/dev/null 2>&1

# --- one desktop VM of one user ------------------------------------------------------
roam session create d1 --image desktop --user vmuser --ram 2G --cpus 2 >/dev/null 2>&1 || die "create d1"
roam session start d1 || die "start d1"
vm_panel() { roam session exec d1 --user vmuser -- xdotool search --onlyvisible --class xfce4-panel >/dev/null 2>&1; }
wait_for 900 vm_panel || die "the desktop VM's panel"
sleep 30
VM_RSS=$(rss_kib d1) VM_GUEST=$(guest_used_kib d1)
DENS+=$(printf '| 1 desktop VM (2 GiB) | %s MiB | %s MiB | %s MiB |' $((VM_RSS / 1024)) $((VM_GUEST / 1024)) \
	$((VM_RSS / 1024)))$'\n'
roam session stop d1 >/dev/null 2>&1
PER_DESK8=$(echo "$DENS" | sed -n '4p' | awk -F'|' '{ print $5 }' | tr -dc 0-9)
ELAPSED=$((SECONDS - T0))

DOC=$W/doc.md
{
	cat <<EOF
## Desks: terminal-server sessions moved and packed (bench/desk.sh)

A desk (Xfce with mousepad and typed text) suspended on one terminal server
and resumed on another, on one host (no emulated WAN in this run), twice:

| move | checkpoint | new chunks (stored) | suspend ms | resume ms | desk down ms | to |
|---|---|---|---|---|---|---|
$MOVES

The desk is down from the start of the suspend to the end of the resume
(CRIU dump, the tar through the transfer disk, the store, CRIU restore).

Memory on the host (QEMU's resident set: the guest RAM it touched) and in
the guest (MemTotal - MemAvailable), each desk a user with Xfce running:

| what | host RSS | guest used | per user (host) |
|---|---|---|---|
$DENS
Per user, 8 desks on a terminal server cost ${PER_DESK8:-?} MiB of host memory
against $((VM_RSS / 1024)) MiB for a desktop VM: $(ratio $((VM_RSS / 1024)) "${PER_DESK8:-0}" 1)× the users per GiB.

Run $(date +%Y-%m-%d) on $(BENCH_CACHE=/dev/shm machine); load average at the start $LOAD;
${ELAPSED} s for the whole run. Command: \`bash bench/desk.sh\`.
EOF
} >"$DOC"
cat "$DOC"
if [ "${ROAM_BENCH_DOC:-1}" != 0 ]; then
	doc_section desk "$DOC"
	log "wrote the desk section of docs/benchmarks.md"
fi
