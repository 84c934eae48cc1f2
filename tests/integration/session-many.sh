#!/usr/bin/env bash
# Many sessions of one image on one host share one read-only master file;
# each has only a small overlay. Two of them run at once (the machine has
# few cores and QEMU runs under TCG here), each with its own RAM file,
# sockets and console.
. "$(dirname "$0")/../lib.sh"

requires qemu-system-x86_64
requires qemu-img
export ROAM_ACCEL=tcg

need_guest
export ROAM_RAM_DIR=/dev/shm/roam-test-$$-many
cleanup_add "rm -rf '$ROAM_RAM_DIR'"

state() { roam session list | awk -v n="$1" '$1 == n { print $4 }'; }
has_tick() { grep -qx "tick $2" <<<"$(roam session log "$1")"; }

must_succeed roam image import deb "$GUEST/master.img"
for i in 1 2 3 4 5 6 7 8; do
	must_succeed roam session create "u$i" --image deb --user "user$i" --ram 128M \
		--kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img"
done
[ "$(roam session list | tail -n +2 | wc -l)" = 8 ] || fail "expected 8 sessions: $(roam session list)"

# one master, read-only, shared by every overlay
masters=("$ROAM_HOME"/masters/*)
[ ${#masters[@]} = 1 ] || fail "expected one master file, got: ${masters[*]}"
[ "$(stat -c %a "${masters[0]}")" = 444 ] || fail "master is not read-only"
[ "$(ls "$ROAM_HOME/boot" | wc -l)" = 2 ] || fail "expected one kernel and one initrd: $(ls "$ROAM_HOME/boot")"
for i in 1 2 3 4 5 6 7 8; do
	ov=$ROAM_HOME/sessions/u$i/overlay.qcow2
	[ -f "$ov" ] || fail "no overlay for u$i"
	qemu-img info "$ov" | grep -q "backing file: ${masters[0]}\$" || fail "u$i does not use the shared master"
	kib=$(du -k "$ov" | cut -f1)
	[ "$kib" -lt 1024 ] || fail "overlay of u$i is $kib KiB"
done
master_kib=$(du -k "${masters[0]}" | cut -f1)
overlays_kib=$(du -ck "$ROAM_HOME"/sessions/*/overlay.qcow2 | tail -n 1 | cut -f1)
log "8 sessions: one master of ${master_kib} KiB on disk, 8 overlays of ${overlays_kib} KiB together"

# two at once
must_succeed roam session start u1
must_succeed roam session start u2
[ "$(state u1)" = running ] && [ "$(state u2)" = running ] || fail "u1/u2 not running: $(roam session list)"
wait_for 120 has_tick u1 3 || fail "u1 does not tick: $(roam session log u1 | tail -n 3)"
wait_for 120 has_tick u2 3 || fail "u2 does not tick: $(roam session log u2 | tail -n 3)"
id1=$(roam session log u1 | sed -n 's/^roam-guest: boot_id=//p')
id2=$(roam session log u2 | sed -n 's/^roam-guest: boot_id=//p')
[ -n "$id1" ] && [ "$id1" != "$id2" ] || fail "u1 and u2 share a console or a boot ($id1, $id2)"
[ -f "$ROAM_RAM_DIR/u1.ram" ] && [ -f "$ROAM_RAM_DIR/u2.ram" ] || fail "missing RAM files: $(ls "$ROAM_RAM_DIR")"
[ "$(state u3)" = created ] || fail "u3 is $(state u3)"

# a checkpoint of one leaves the other alone
must_succeed roam session checkpoint u1
a=$(roam session log u2 | grep -c '^tick ')
wait_for 10 has_tick u2 $((a + 2)) || fail "u2 stopped ticking"

must_succeed roam session stop u1
must_succeed roam session stop u2
[ "$(state u1)" = stopped ] && [ "$(state u2)" = stopped ] || fail "stop: $(roam session list)"
for i in 1 2 3 4 5 6 7 8; do
	must_succeed roam session rm "u$i"
done
[ -z "$(roam session list | tail -n +2)" ] || fail "sessions left: $(roam session list)"
[ -z "$(ls -A "$ROAM_RAM_DIR" 2>/dev/null)" ] || fail "RAM files left: $(ls "$ROAM_RAM_DIR")"
echo "ok: 8 sessions share one master (${master_kib} KiB) with ${overlays_kib} KiB of overlays; two ran at once"
