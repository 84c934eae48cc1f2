/* SPDX-License-Identifier: MIT */
#pragma once

/* Page references in transfers (docs/sync-protocol.md, "Page references"):
 * the receiver names *bases*, blobs it holds whole; the sender sends a chunk
 * the receiver lacks as pages (src/sync/page-chunk.h) when some of its 4 KiB
 * pages are pages of a base, found with the base's page index
 * (src/store/page-index.h); the receiver rebuilds the chunk from its own
 * copy of the bases, checks it against the chunk id and stores it, or says
 * that it must be fetched in full. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../basic/idset.h"
#include "../store/index.h"
#include "../store/page-index.h"
#include "../store/reach.h"
#include "../store/store.h"
#include "page-chunk.h"

/* Off with ROAM_PAGE_DEDUP=0 in the environment of the receiver (for
 * comparisons): it then names no bases, and gets every chunk whole. */
bool pages_enabled(void);

/* ---- the sender ---- */

typedef struct PageSender PageSender;

/* For one request that named n bases (n <= PAGE_CHUNK_MAX_BASES). Bases this
 * store lacks, or whose page index cannot be had, take no part. */
int page_sender_new(Store *s, const RoamId *bases, unsigned n, PageSender **ret);
/* Another sender with the same bases (shared, read only) and scratch of its
 * own: one per thread. */
int page_sender_clone(const PageSender *ps, PageSender **ret);
void page_sender_free(PageSender *ps);
static inline void page_sender_freep(PageSender **ps) {
        if (*ps)
                page_sender_free(*ps);
}
/* The payload of the record of chunk id: as pages when some page is a
 * base's and that is smaller than the stored frame, else the stored frame
 * (verified, as store_chunk_get_compressed()). Caller frees *ret. -ENOENT
 * when the chunk is missing. *ret_refs (optional): pages sent as references. */
/* The bases the sender was made with (n of them), as named. */
const RoamId *page_sender_bases(const PageSender *ps, unsigned *ret_n);
int page_sender_payload(PageSender *ps, const RoamId *id, void **ret, size_t *ret_len, uint32_t *ret_refs);

/* ---- the receiver ---- */

/* The bases a receiver names for a transfer of root: every index object
 * below root or below one of have[] (which it holds with everything below
 * them) whose non-zero chunks are all in the store, at most
 * PAGE_CHUNK_MAX_BASES, those of have[] first. missing: chunks below root
 * that the store lacks (an index with one of them is no base). */
int pages_pick_bases(Store *s, const Reach *need, const IdSet *missing, const RoamId *have, size_t n_have,
                     RoamId *ret, unsigned *ret_n);

typedef struct PageBases PageBases;

/* The receiver's side of n bases: their index objects, loaded once (a base
 * that cannot be loaded is a base of nothing: references to it fail). */
int page_bases_new(Store *s, const RoamId *ids, unsigned n, PageBases **ret);
void page_bases_free(PageBases *b);
static inline void page_bases_freep(PageBases **b) {
        if (*b)
                page_bases_free(*b);
}
unsigned page_bases_count(const PageBases *b);
/* A plain copy of base id's bytes (len: the blob's size; a RAM file staged
 * ahead): pages are copied from it instead of read from the store's chunks
 * (no read, decryption, decompression, or check: the rebuilt chunk's hash
 * decides). It must stay as it is while b rebuilds. */
void page_bases_attach_plain(PageBases *b, const RoamId *id, const void *data, size_t len);
/* Stores an object that came as a delta against one of the bases
 * (src/sync/obj-delta.h): 1 when it rebuilt to id and is stored, 0 when it
 * did not (a base not here, stale, or a malformed delta: the object is then
 * fetched whole), < 0 for a store error. */
int page_bases_store_object(PageBases *b, const RoamId *id, const void *delta, size_t len, size_t max);

/* Rebuilds chunk id from a paged payload with the store's copy of the bases,
 * checks it and stores it (pending until the next store_commit()). The
 * number of pages taken from the bases when stored (or present already);
 * -ESTALE when the payload is malformed or refers to a page that is
 * not there or not the same (the chunk is then to be fetched in full; the
 * store is unchanged); other errors (-ENOMEM, a store that cannot be
 * written) as they come. Safe from several threads. */
int page_bases_store(PageBases *b, ChunkCodec *codec, const RoamId *id, const void *payload, size_t len);
