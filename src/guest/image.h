/* SPDX-License-Identifier: MIT */
#pragma once

/* Images that boot by themselves: what `roam session create` needs besides
 * the disk, kept in the store with the image so that it travels with it
 * (pull, hoard, bundle).
 *
 * The ref images/NAME names either
 *   - an index: a bare disk image (the busybox test guest; boot files are
 *     given to `session create`), or
 *   - an image manifest (`roam image import NAME FILE --kernel K ...`):
 *
 *       {"kind": "image", "objects": {"disk": IDX, "kernel": IDX, "initrd": IDX?},
 *        "append": "console=ttyS0 root=/dev/vda ...", "agent": true,
 *        "profile": true, "created": unix}
 *
 *   - a layer's image manifest (`roam image import NAME FILE --layer-of BASE`):
 *     the same with objects.base (what images/BASE named) and a disk that is
 *     a qcow2 delta over the base's disk. In the store, and in a host's
 *     masters/ directory, the layer's qcow2 names its backing file by the base
 *     disk's id ("<hex>.raw", relative), so the chain master <- layers is
 *     in the files themselves; kernel, initrd and the rest are the base's
 *     (a layer over a bare disk has none).
 *
 *     "agent": sessions of the image get the guest agent's port;
 *     "profile": they run with the user's profile disk attached (docs/desktop.md).
 *     Reachability follows "objects", so disk, kernel and initrd go wherever
 *     the ref goes.
 *
 * A session's row and checkpoints name the disk index (objects.image), never
 * the manifest: the master file on a host is that of the disk.
 *
 * Checks at import: a raw image with an ext4 superblock is refused when the
 * file system is longer than the file (truncated), the superblock is
 * damaged (magic, block size, checksum), or marked with errors; a kernel must
 * be a bzImage (the "HdrS" header) or an ELF vmlinux. The pure checks are
 * fuzzed (tests/fuzz/fuzz-image.c). */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../basic/hash.h"
#include "../store/store.h"

#define IMAGE_APPEND_MAX 4096 /* as VM_APPEND_MAX */

typedef struct ImageInfo {
        RoamId id;     /* what the ref names: the disk index or the manifest */
        RoamId disk;   /* the disk's index */
        bool boot;     /* a manifest with boot files (kernel, initrd, append set only then) */
        bool layer;    /* a layer: disk is a qcow2 over base's disk */
        RoamId base;   /* a layer's base: what images/BASE named (an index or a manifest) */
        RoamId kernel;
        bool has_initrd;
        RoamId initrd;
        char *append;  /* NULL: none */
        bool agent, profile;
} ImageInfo;

void image_info_done(ImageInfo *i);

/* The manifest JSON of i (boot or layer must be set). Caller json_decref()s. */
int image_manifest_build(const ImageInfo *i, json_t **ret);
/* Parses the bytes of an image manifest object (bounded, pure): its kind,
 * objects and members are checked. -EBADMSG with detail. *ret (caller
 * image_info_done()s) has boot or layer set; its id is not. */
int image_manifest_parse(const void *data, size_t len, ImageInfo *ret);

/* What images/<name> names (id): an index or an image manifest. -EBADMSG
 * for anything else. */
int image_resolve(Store *s, const RoamId *id, ImageInfo *ret);
/* The same from the ref images/<name>: -ENOENT "image 'X' not found". */
int image_lookup(Store *s, const char *name, ImageInfo *ret);

#define IMAGE_EXT4_SB_OFFSET 1024
#define IMAGE_EXT4_SB_SIZE 1024

/* Checks an ext4 superblock (sb: the IMAGE_EXT4_SB_SIZE bytes at
 * IMAGE_EXT4_SB_OFFSET) against the image's size. 0 when sb is not ext4 at
 * all (no magic), 1 when it is ext4 and fine, -EBADMSG with a reason in why
 * (truncated, damaged, errors). */
int image_check_ext4(const uint8_t *sb, size_t sb_len, uint64_t file_size, char *why, size_t why_size);
/* Checks the start of a kernel file (head: its first bytes, n of them, at
 * least 0x210 for a bzImage): 0 for a bzImage or an ELF image, -EBADMSG with
 * a reason in why. */
int image_check_kernel(const uint8_t *head, size_t n, uint64_t file_size, char *why, size_t why_size);

/* Layers nest at most this deep (master <- layer <- layer ...). */
#define IMAGE_LAYER_DEPTH_MAX 8
#define IMAGE_QCOW2_HEAD 4096 /* what image_qcow2_backing() needs of a file */
#define IMAGE_BACKING_MAX 1023 /* as QEMU's */

/* The backing file a qcow2 header names (head: the file's first n bytes,
 * IMAGE_QCOW2_HEAD or the whole file when shorter): 0 when head is not
 * qcow2, 1 when it is, the backing file's name in ret ("" when none),
 * -EBADMSG with a reason in why (a damaged header, a name that does not fit
 * or has control characters). Pure, bounded, fuzzed. */
int image_qcow2_backing(const uint8_t *head, size_t n, char *ret, size_t size, char *why, size_t why_size);
/* The disk id in a layer's backing name as roam writes it: 64 hex digits
 * and ".raw". -EBADMSG for anything else. */
int image_layer_backing_id(const char *name, RoamId *ret);
