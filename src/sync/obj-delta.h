/* SPDX-License-Identifier: MIT */
#pragma once

/* An object as the changes to an object the receiver holds (a "delta"), for
 * a pack's object records (docs/sync-protocol.md, "Objects as deltas").
 *
 * The index object of a guest's RAM lists the id of every 64 KiB chunk: 1 MiB
 * for 2 GiB, and as much again for a disk, of SHA-256 ids that do not
 * compress. A hand-over's final checkpoint changes a few hundred of them, so
 * its index goes as the entries that differ from the pre-copy's index, which
 * the receiver named as a base of the transfer:
 *
 *      0  4  "RDX1"
 *      4  1  base (index into the transfer's bases)
 *      5  4  length L of the object (LE, 1..max)
 *      9  4  runs R (LE)
 *     13  R x 8: u32 LE bytes copied from the base at the same offset, then
 *              u32 LE bytes that follow in the literal part
 *     then   the literal bytes, concatenated: exactly what the runs name
 *
 * The runs cover the object from offset 0 to L in order; a copy never reads
 * past the base's end. The receiver rebuilds the object from its own copy of
 * the base and stores it only when it hashes to the record's id: a stale or
 * tampered delta, or a base it lacks, leaves the object missing, and it is
 * fetched (or, in an upload, sent) whole. Parsing is pure and bounded
 * (tests/fuzz/fuzz-objdelta.c). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OBJ_DELTA_MAGIC "RDX1"
#define OBJ_DELTA_HEADER 13u
#define OBJ_DELTA_MIN 4096u /* a smaller object goes whole */

typedef struct ObjDelta {
        unsigned base;
        uint32_t len;
        uint32_t n_runs;
        const uint8_t *runs;    /* n_runs x 8 bytes */
        const uint8_t *literal; /* the literal bytes */
        size_t literal_len;
        uint64_t copied; /* bytes the runs copy from the base */
        uint64_t copy_end; /* the base must be at least this long */
} ObjDelta;

bool obj_delta_is(const void *p, size_t len);
/* Checks the framing: magic, base < n_bases, 1 <= L <= max, the runs adding
 * up to L with the literal part exactly as long as they say. -EBADMSG
 * otherwise. */
int obj_delta_parse(const void *p, size_t len, unsigned n_bases, size_t max, ObjDelta *ret);
/* Rebuilds the object into out (d->len bytes) from the base's bytes:
 * -ESTALE when the base is shorter than the runs read. */
int obj_delta_apply(const ObjDelta *d, const void *base, size_t base_len, void *out);
/* The delta of obj against base (runs at 32-byte granularity: an index's
 * entries), as base number base_no, into a new buffer: 0 with it, -E2BIG
 * when it would not be smaller than limit bytes (send the object whole). */
int obj_delta_encode(const void *base, size_t base_len, const void *obj, size_t len, unsigned base_no, size_t limit,
                     uint8_t **ret, size_t *ret_len);
