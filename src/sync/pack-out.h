/* SPDX-License-Identifier: MIT */
#pragma once

/* A pack sent while it is made (src/sync/pack.h): its objects first, then its
 * chunk records in the order of the list, each as soon as a worker thread
 * made it (read from the store, and with bases, as its changed pages). A
 * hand-over's remainder so crosses the link while the rest of it is still
 * being packed: for the 2 GiB desktop that took 140 ms before the first
 * byte went.
 *
 * The header says how many records come and that the pack is complete, so
 * it is only streamed when it surely fits: every record is at most its
 * stored frame (a chunk goes as pages only when that is smaller), and the
 * sum of those, found before the first byte, is within the bound. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../basic/hash.h"
#include "../store/reach.h"
#include "../store/store.h"
#include "pack.h"
#include "pages.h"

/* Appends the object records of want that are not in have (as deltas
 * against ps's bases where that is smaller, src/sync/obj-delta.h; ps may be
 * NULL); *ret_deltas says whether one is. */
int pack_put_objects(Store *s, const Reach *want, const Reach *have, PageSender *ps, PackWriter *pw,
                     bool *ret_deltas);

typedef struct PackOut PackOut;

typedef struct PackOutStats {
        uint32_t n_objects, n_delta, n_chunks, n_paged;
        size_t object_bytes;
        uint64_t bytes;   /* of the whole body, prefix included */
        uint64_t bound;   /* the most the whole body can be (known from the start) */
        uint64_t made_ns; /* from pack_out_new() to the last record made */
} PackOutStats;

/* Starts the pack of want minus have, after prefix (copied: the grant's
 * line): objects made now, chunk records by a thread per core from now on
 * (ps, when the receiver named bases, is cloned: the caller keeps its own).
 * -E2BIG when it might exceed max bytes (the caller makes it whole, with
 * sync_pack_fill()), -ENOENT with the chunk in *ret_missing when a chunk is
 * not here. */
int pack_out_new(Store *s, const Reach *want, const Reach *have, PageSender *ps, size_t max, const void *prefix,
                 size_t prefix_len, PackOut **ret, RoamId *ret_missing);
/* Up to max bytes of the body: waits for the next record; 0 at the end, < 0
 * when a record could not be made (the body then ends short). */
ssize_t pack_out_read(PackOut *po, void *buf, size_t max);
void pack_out_stats(PackOut *po, PackOutStats *ret);
/* Stops the workers (at any point) and frees. */
void pack_out_free(PackOut *po);
static inline void pack_out_freep(PackOut **po) {
        if (*po)
                pack_out_free(*po);
}
