#!/usr/bin/env bash
# The desk benchmark (issue 11): a user's desk (Xfce, mousepad with typed
# text) moved between hosts over the emulated WAN, side by side with the
# same user's whole desktop VM moved over the same link in the same run; and
# the density of desks: a terminal server's memory with 1, 4 and 8 desks
# next to desktop VMs of the same users.
#
# Two hosts: A (the datacenter namespace) and B (the laptop namespace),
# joined by the emulated WAN of tests/netns.sh (100 Mbit/s by tbf, 25 ms each
# way by a delaying relay with a 1 MiB buffer, as bench/handoff.sh). Each has
# a roam daemon and a terminal server of the desktop image with the
# terminal-server layer (make desktop-layer), 3 GiB, 2 vCPUs.
#
#   desk moves: A -> B ('roam desk resume --to', a push), B -> A ('roam desk
#   online', a push), A -> B ('roam desk offline' run on B, a pull), B -> A
#   again. The desk is down from the click to its resume's end (suspend:
#   CRIU dump, the tar through the transfer disk, the store; the sync of
#   what the far side lacks; restore).
#   desktop-VM moves: the desktop image as a VM of the same user (2 GiB, 2
#   vCPUs) with the same workload, 'roam session move' A -> B and back, twice (live:
#   a pre-copy, then the pause). Its pause is roam's downtime.
#   bytes: both directions of the veth, counted by the kernel.
#
# usage: bash bench/desk.sh   (as root; 40 to 60 minutes on 2 cores)
# env:   ROAM_BENCH_DESK_DENSITY  desk counts for the density table (default
#                                 "1 4 8"; "" skips it)
#        ROAM_BENCH_DOC=0         do not update docs/benchmarks.md
#        ROAM_BENCH_KEEP=1        keep the scratch directory
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/guest.sh"
DENSITY=${ROAM_BENCH_DESK_DENSITY-1 4 8}
WAN_RATE=100
WAN_DELAY=25
bench_prereqs
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
D=$BUILD_DIR/desktop
log "building the desktop guest and the terminal-server layer (cached)"
bash "$SRC_DIR/scripts/build-desktop.sh" "$D" >/dev/null 2>&1 || die "scripts/build-desktop.sh failed"
bash "$SRC_DIR/scripts/build-desk-layer.sh" "$BUILD_DIR/desk-layer" >/dev/null 2>&1 ||
	die "scripts/build-desk-layer.sh failed"

bench_start rbk
WAN_RELAY_OPTS=${WAN_RELAY_OPTS:---max-buffer-mib 1}
. "$SRC_DIR/tests/netns.sh"
wan_setup $WAN_RATE $WAN_DELAY
wire_bytes() { ip netns exec "$LT_NS" awk -v d="$WAN_DEV:" '$1 == d { printf "%.0f\n", $2 + $10 }' /proc/net/dev; }
now_ms() { date +%s%3N; }

A=$T/a B=$T/b
HOMES+=("$A" "$B")
ra() { ROAM_HOME=$A ip netns exec "$DC_NS" "$ROAM_BIN" "$@"; }
rb() { ROAM_HOME=$B ip netns exec "$LT_NS" "$ROAM_BIN" "$@"; }
for h in ra rb; do
	$h image import desktop "$D/desktop.img" --kernel "$D/vmlinuz" --initrd "$D/initrd.img" \
		--append "$(cat "$D/append")" --agent --profile >/dev/null 2>&1 || die "import desktop ($h)"
	$h image import desktop-ts "$BUILD_DIR/desk-layer/desk-layer.qcow2" --layer-of desktop >/dev/null 2>&1 ||
		die "import the layer ($h)"
done
PA=7520 PB=7521
ROAM_HOME=$A ip netns exec "$DC_NS" "$ROAM_BIN" serve --listen "$DC_IP:$PA" >"$T/a.log" 2>&1 &
DPIDS+=($!)
ROAM_HOME=$B ip netns exec "$LT_NS" "$ROAM_BIN" serve --listen "$LT_IP:$PB" >"$T/b.log" 2>&1 &
DPIDS+=($!)
wait_for 20 wan_listening "$DC_NS" $PA || die "A's daemon did not start"
wait_for 20 wan_listening "$LT_NS" $PB || die "B's daemon did not start"
wan_relay $PA      # B -> A: 127.0.0.1:PA in B's namespace
wan_relay_dc $PB   # A -> B: 127.0.0.1:PB in A's namespace
A_URL=http://127.0.0.1:$PA B_URL=http://127.0.0.1:$PB
TOK_A=$(ROAM_HOME=$A "$ROAM_BIN" token create --role host) TOK_B=$(ROAM_HOME=$B "$ROAM_BIN" token create --role host)

helper_up() { "$1" session exec "$2" -- systemctl is-active roam-desk >/dev/null 2>&1; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$(cat "$1/sessions/$2/qemu.pid")/status"; }
guest_used_kib() {
	"$1" session exec "$2" -- awk '/^MemTotal/ { t = $2 } /^MemAvailable/ { a = $2 } END { print t - a }' /proc/meminfo
}
ra session create ts1 --image desktop-ts --terminal-server --ram 3G --cpus 2 >/dev/null 2>&1 || die "create ts1"
rb session create ts2 --image desktop-ts --terminal-server --ram 3G --cpus 2 >/dev/null 2>&1 || die "create ts2"
ra session start ts1 >/dev/null || die "start ts1"
rb session start ts2 >/dev/null || die "start ts2"
wait_for 900 helper_up ra ts1 || die "ts1 did not come up"
wait_for 900 helper_up rb ts2 || die "ts2 did not come up"

# --- the user's workload: Xfce, mousepad, a typed line -------------------------------
dx() { local h=$1 u=$2; shift 2; "$h" desk exec "$u" --timeout 120 -- "$@"; }
panel_up() { dx "$1" "$2" xdotool search --onlyvisible --class xfce4-panel >/dev/null 2>&1; }
editor() { [ -n "$(dx "$1" "$2" xdotool search --onlyvisible --name Mousepad 2>/dev/null)" ]; }
ra desk start ts1 alice 2>/dev/null || die "desk start"
wait_for 900 panel_up ra alice || die "alice's panel"
dx ra alice sh -c 'setsid mousepad >/dev/null 2>&1 </dev/null &'
wait_for 300 editor ra alice || die "mousepad"
w=$(dx ra alice xdotool search --onlyvisible --name Mousepad | tail -n 1)
dx ra alice sh -c "xdotool windowactivate $w; sleep 1; xdotool type --delay 40 'a line of a user'" >/dev/null
sleep 10

# --- desk moves ------------------------------------------------------------------------
# measure CMD...: runs a move; OUT, MS (click to its end) and BYTES (on the link)
measure() {
	local w0 t0
	w0=$(wire_bytes)
	t0=$(now_ms)
	OUT=$("$@" 2>&1) || die "$*: $OUT"
	MS=$(($(now_ms) - t0))
	BYTES=$(($(wire_bytes) - w0))
	log "$OUT"
}
field() { sed -nE "s/.*$1 ([0-9]+) ms.*/\\1/p" | head -n 1; }
fmt_mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
ROWS=""
desk_move() { # N WHAT CMD...: a table row; the desk is down for all of it
	local n=$1 what=$2
	shift 2
	measure "$@"
	ROWS+=$(printf '| %s | desk: %s | %s | %s | %s | %s |' "$n" "$what" "$(fmt_mib "$BYTES")" \
		"$(sed -nE 's/.*: ([0-9]+ of [0-9]+) chunks had to move.*/\1/p' <<<"$OUT")" "$MS" \
		"$(field restore <<<"$OUT")")$'\n'
	eval "DESK_BYTES_$n=$BYTES DESK_DOWN_$n=$MS"
}
desk_move 1 "A -> B (resume --to)" ra desk resume alice --on ts2 --to "$B_URL" --token "$TOK_B"
desk_move 2 "B -> A (online)" rb desk online alice --to "$A_URL" --token "$TOK_A"
desk_move 3 "A -> B (offline, pulled by B)" rb desk offline alice --from "$A_URL" --token "$TOK_A" --on ts2
desk_move 4 "B -> A (online)" rb desk online alice --to "$A_URL" --token "$TOK_A"
editor ra alice || die "mousepad is not back on A"
ra desk logoff alice >/dev/null 2>&1
rb desk forget alice >/dev/null 2>&1
ra session stop ts1 >/dev/null 2>&1
rb session stop ts2 >/dev/null 2>&1

# --- the same user as a desktop VM, moved live ----------------------------------------
ra session create d1 --image desktop --user alice --ram 2G --cpus 2 >/dev/null 2>&1 || die "create d1"
ra session start d1 >/dev/null || die "start d1"
ax() { local h=$1; shift; "$h" session exec d1 --user alice --timeout 60 -- "$@"; }
vm_panel() { ax "$1" xdotool search --onlyvisible --class xfce4-panel >/dev/null 2>&1; }
vm_editor() { ax "$1" xdotool search --onlyvisible --class mousepad >/dev/null 2>&1; }
wait_for 900 vm_panel ra || die "the desktop VM's panel"
ax ra sh -c 'setsid mousepad >/dev/null 2>&1 </dev/null &' >/dev/null
wait_for 300 vm_editor ra || die "mousepad in the VM"
ax ra xdotool search --onlyvisible --class mousepad windowactivate --sync type --delay 40 'a line of a user' >/dev/null
sleep 10
VM_RSS=$(rss_kib "$A" d1) VM_GUEST=$(guest_used_kib ra d1)
vm_move() { # N WHAT CMD...: a table row; the VM is down for its pause only
	local n=$1 what=$2 down
	shift 2
	measure "$@"
	down=$(sed -nE 's/^downtime ([0-9]+) ms.*/\1/p' <<<"$OUT")
	ROWS+=$(printf '| %s | desktop VM: %s | %s | - | %s | %s (pause) |' "$n" "$what" "$(fmt_mib "$BYTES")" "$MS" \
		"$down")$'\n'
	eval "VM_BYTES_$n=$BYTES VM_DOWN_$n=$down"
}
vm_move 1 "A -> B (session move)" ra session move d1 --to "$B_URL" --token "$TOK_B"
vm_move 2 "B -> A (session move)" rb session move d1 --to "$A_URL" --token "$TOK_A"
vm_move 3 "A -> B (session move)" ra session move d1 --to "$B_URL" --token "$TOK_B"
vm_move 4 "B -> A (session move)" rb session move d1 --to "$A_URL" --token "$TOK_A"
ra session stop d1 >/dev/null 2>&1

# --- density ---------------------------------------------------------------------------
DENS=""
PER_DESK_LAST="" LAST_N=""
if [ -n "$DENSITY" ]; then
	ra session create ts3 --image desktop-ts --terminal-server --ram 3G --cpus 2 >/dev/null 2>&1 || die "create ts3"
	ra session start ts3 >/dev/null || die "start ts3"
	wait_for 900 helper_up ra ts3 || die "ts3 did not come up"
	sleep 20
	DENS=$(printf '| a terminal server, no desk | %s MiB | %s MiB | - |' $(($(rss_kib "$A" ts3) / 1024)) \
		$(($(guest_used_kib ra ts3) / 1024)))$'\n'
	n=0
	for want in $DENSITY; do
		while [ $n -lt "$want" ]; do
			n=$((n + 1))
			ra desk start ts3 "user$n" 2>/dev/null || die "desk start user$n"
			wait_for 1500 panel_up ra "user$n" || die "user$n's panel"
		done
		sleep 30
		rss=$(rss_kib "$A" ts3) guest=$(guest_used_kib ra ts3)
		DENS+=$(printf '| %s desk%s on one terminal server | %s MiB | %s MiB | %s MiB |' "$want" \
			"$([ "$want" = 1 ] || echo s)" $((rss / 1024)) $((guest / 1024)) $((rss / 1024 / want)))$'\n'
		log "$want desks: rss $((rss / 1024)) MiB, guest used $((guest / 1024)) MiB"
		PER_DESK_LAST=$((rss / 1024 / want)) LAST_N=$want
	done
	ra session stop ts3 >/dev/null 2>&1
fi
ELAPSED=$(($(date +%s) - BENCH_T0))
ratio_row() { # A B DIGITS: the ratios A_n / B_n (variables) of moves 1 to 4, as table cells
	local n a b
	for n in 1 2 3 4; do
		a=${1}_$n b=${2}_$n
		printf '%s× | ' "$(ratio "${!a:-0}" "${!b:-0}" "$3")"
	done
}

DOC=$T/doc.md
{
	cat <<EOF
## Desks: terminal-server sessions moved and packed (bench/desk.sh)

Host A and host B joined by the emulated WAN (${WAN_RATE} Mbit/s, $((2 * WAN_DELAY)) ms
round trip), a terminal server on each (the desktop image with the
terminal-server layer, 3 GiB, 2 vCPUs, TCG). The user: Xfce with mousepad
holding a typed line. A desk is down from the click to the end of its
resume (CRIU dump in the guest, the tar through the transfer disk, the
store, the sync of what the far side lacks, CRIU restore); the desktop VM
(the same image, the same user and workload, 2 GiB) is moved live by
\`roam session move\` and is paused only for its downtime. Bytes: both
directions of the link, counted by the kernel.

| # | what | bytes on the link | chunks that moved | click to running (ms) | restore / pause (ms) |
|---|---|---|---|---|---|
$ROWS
The desk against the desktop VM, move by move (#1 the first to a host that
holds nothing of it, #2 the first back, #3 and #4 again):

| | #1 | #2 | #3 | #4 | goal |
|---|---|---|---|---|---|
| bytes, desk / VM | $(ratio_row DESK_BYTES VM_BYTES 3) ≤ 0.25× |
| down, desk / VM pause | $(ratio_row DESK_DOWN VM_DOWN 1) ≤ 0.5× |

EOF
	if [ -n "$DENS" ]; then
		cat <<EOF
Memory on host A (QEMU's resident set: the guest RAM it touched) and in the
guest (MemTotal - MemAvailable), each desk a user with Xfce running; the
desktop VM with Xfce and mousepad, before its moves:

| what | host RSS | guest used | per user (host) |
|---|---|---|---|
${DENS}| 1 desktop VM (2 GiB) | $((VM_RSS / 1024)) MiB | $((VM_GUEST / 1024)) MiB | $((VM_RSS / 1024)) MiB |

Per user, $LAST_N desks on a terminal server cost ${PER_DESK_LAST:-?} MiB of host memory
against $((VM_RSS / 1024)) MiB for a desktop VM: $(ratio $((VM_RSS / 1024)) "${PER_DESK_LAST:-0}" 1)× the users per GiB (goal ≥ 3×).

EOF
	fi
	cat <<EOF
Run $(date +%Y-%m-%d) on $(BENCH_CACHE=/dev/shm machine); load average at the start $LOAD;
${ELAPSED} s for the whole run. Command: \`bash bench/desk.sh\`.
EOF
} >"$DOC"
cat "$DOC"
if [ "${ROAM_BENCH_DOC:-1}" != 0 ]; then
	doc_section desk "$DOC"
	log "wrote the desk section of docs/benchmarks.md"
fi
