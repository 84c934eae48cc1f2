#!/usr/bin/env bash
# App layers (roam image import NAME FILE --layer-of BASE) on the test guest:
# only what differs from the base is stored, sessions run the chain master <-
# layer <- delta and see the layer's files, the layer brings its base along in
# a bundle, and a layer whose base is missing is refused naming it.
. "$(dirname "$0")/../lib.sh"
need_guest
requires debugfs
export ROAM_ACCEL=${ROAM_ACCEL:-tcg}

must_succeed roam image import base "$GUEST/master.img"
base_disk=$(roam image show base --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["disk"])')

# the app: the base's disk with one file more
cp --sparse=always "$GUEST/master.img" "$T/full.img"
echo "layer mark $$" >"$T/mark"
debugfs -w -R "write $T/mark /layer-mark" "$T/full.img" >/dev/null 2>&1
must_succeed roam image import app "$T/full.img" --layer-of base
roam image show app >"$T/show"
grep -q "^layer of: " "$T/show" || fail "image show does not name the base: $(cat "$T/show")"
stored=$(roam image show app --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
[ "$stored" -lt 1048576 ] || fail "the layer stores $stored bytes for one small file"

# bad input: a layer of another size, of a missing image, with its own kernel
truncate -s 128M "$T/small.img"
mkfs.ext4 -q -F "$T/small.img"
must_fail roam image import small "$T/small.img" --layer-of base
expect_match "$ERR" "has its base's size"
expect_one_line "$ERR"
must_fail roam image import x "$T/full.img" --layer-of nope
expect_match "$ERR" "image 'nope' not found"
must_fail roam image import x "$T/full.img" --layer-of base --kernel "$GUEST/vmlinux"
expect_match "$ERR" "without --layer-of"
must_fail roam image show x

# a session of the layer: master <- layer <- its delta
must_succeed roam session create s1 --image app --user alice --ram 256M \
	--kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img"
layer_master=$ROAM_HOME/masters/$(roam session show s1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["image_id"])').raw
[ -f "$ROAM_HOME/masters/$base_disk.raw" ] || fail "the base's master was not exported under the layer"
qemu-img info "$layer_master" | grep -q "backing file: $base_disk.raw" ||
	fail "the layer's master does not sit on the base's: $(qemu-img info "$layer_master")"
qemu-img info "$ROAM_HOME/sessions/s1/overlay.qcow2" | grep -q "backing file format: qcow2" ||
	fail "the session's overlay does not sit on the layer"
must_succeed roam session start s1
wait_for 120 sh -c "'$ROAM_BIN' session log s1 | grep -q '^tick 2'" ||
	fail "the session of the layer does not run: $(roam session log s1 | tail -n 5)"
must_succeed roam session stop s1
qemu-img convert -O raw "$ROAM_HOME/sessions/s1/overlay.qcow2" "$T/view.raw"
[ "$(ext4_file "$T/view.raw" /layer-mark)" = "layer mark $$" ] ||
	fail "the session does not see the layer's file"

# a bundle of the layer carries its base; a second host runs it
must_succeed roam bundle create -o "$T/app.bundle" app
H2=$T/home2
must_succeed env ROAM_HOME="$H2" "$ROAM_BIN" bundle apply "$T/app.bundle"
must_succeed env ROAM_HOME="$H2" "$ROAM_BIN" session create s2 --image app --user bob --ram 256M \
	--kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img"
[ -f "$H2/masters/$base_disk.raw" ] || fail "the second host lacks the base's master"

# a layer whose base this host lacks: refused, naming the missing disk
H3=$T/home3
mkdir -p "$H3"
must_succeed env ROAM_HOME="$H3" "$ROAM_BIN" bundle apply "$T/app.bundle"
rm -f "$H3"/masters/*.raw
obj=$(find "$H3/store" -type f -name "$base_disk*" -print -quit)
[ -n "$obj" ] || fail "cannot find the base's index in the third store"
rm -f "$obj"
must_fail env ROAM_HOME="$H3" "$ROAM_BIN" session create s3 --image app --user bob --ram 256M \
	--kernel "$GUEST/vmlinux" --initrd "$GUEST/initrd.img"
expect_match "$ERR" "sits on image disk ${base_disk:0:12}, which this host lacks"
expect_one_line "$ERR"
[ -z "$(ls "$H3/sessions" 2>/dev/null)" ] || fail "a refused create left a session directory"
log "ok: layer stored in $stored bytes"
