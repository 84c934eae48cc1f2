/* SPDX-License-Identifier: MIT */
#pragma once

/* The page index of a blob: for every non-zero 4 KiB page of the blob, a
 * 64-bit hash (XXH3, seeded) and the page's number, sorted by hash. A sender
 * looks up the pages of a chunk the receiver lacks (a guest's RAM holds many
 * pages equal to blocks of its master image, in its page cache, and to pages
 * of earlier checkpoints) and sends a reference to a page of a blob the
 * receiver holds instead of the bytes (src/sync/page-chunk.h,
 * docs/sync-protocol.md "Page references").
 *
 * Cached per blob in the store, DIR/pages/<index id>, rebuilt when missing or
 * damaged (it is derived data: never fsync'd, never trusted for more than a
 * hint, since the receiver checks every rebuilt chunk against its id). The
 * seed is random per file, so that a guest cannot aim its pages at a
 * collision. Format (little-endian):
 *
 *   0  8  magic "ROAMPGX\0"
 *   8  4  version (1)
 *  12  4  page size (4096)
 *  16  8  blob size in bytes
 *  24  8  count n of entries (at most blob size / 4096, at most
 *         PAGE_INDEX_MAX_ENTRIES)
 *  32  8  seed
 *  40 32  the blob's index object id
 *  72 n*12 entries: u64 hash, u32 page number (page * 4096 + 4096 <= blob
 *         size); hashes strictly ascending (one page per hash: the first)
 *  72+12n 32  SHA-256 of every byte before it
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../basic/hash.h"
#include "store.h"

#define PAGE_INDEX_MAGIC "ROAMPGX"
#define PAGE_SIZE_4K 4096u
#define PAGE_INDEX_HEADER 72
#define PAGE_INDEX_ENTRY 12
/* 64 GiB of distinct non-zero pages, 192 MiB of index: a bound on what one
 * request can make a sender build and hold (bigger blobs are no bases) */
#define PAGE_INDEX_MAX_ENTRIES (1u << 24)

typedef struct PageIndex {
        RoamId blob; /* the blob's index object id */
        uint64_t blob_size;
        uint64_t seed;
        uint64_t n;
        uint64_t *hashes; /* n, ascending */
        uint32_t *pages;  /* n */
        _Atomic unsigned refs; /* page_index_get()'s, 0 for one of one's own */
} PageIndex;

void page_index_free(PageIndex *x);
static inline void page_index_freep(PageIndex **x) {
        if (*x)
                page_index_free(*x);
}

/* The hash of one 4 KiB page under x's seed. */
uint64_t page_index_hash(const PageIndex *x, const void *page);
/* Looks up a page hash: true with *ret_page set, false if absent. */
bool page_index_lookup(const PageIndex *x, uint64_t hash, uint32_t *ret_page);

/* Serializes; caller frees *ret. */
int page_index_serialize(const PageIndex *x, void **ret, size_t *ret_len);
/* Pure and bounded (tests/fuzz/fuzz-pageidx.c): -EBADMSG for any violation,
 * -EPROTONOSUPPORT for another version. Caller frees *ret. */
int page_index_parse(const void *data, size_t len, PageIndex **ret);

/* Builds the page index of the blob whose index object is blob: reads
 * (and verifies) every non-zero chunk. -ENOENT if the blob or a chunk is
 * missing, -EFBIG if the blob has more pages than a page number holds. */
int page_index_build(Store *s, const RoamId *blob, PageIndex **ret);

/* The cached page index of blob: from memory (the last used, up to 8 and
 * 512 MiB, shared by the threads of this process: a page index depends on
 * the blob's bytes only), else DIR/pages/<hex> when it is there, intact and
 * for this blob, else built and saved (atomically for readers), but only
 * when the blob has at most build_max non-zero bytes (UINT64_MAX: any):
 * -EAGAIN otherwise, so that a request that names a big blob never waits
 * for its index (it is built where the blob is made: an image import,
 * blob.h's BlobOptions.page_index). The result is shared and read only:
 * release it with page_index_unref(). */
int page_index_get(Store *s, const RoamId *blob, uint64_t build_max, PageIndex **ret);
void page_index_unref(PageIndex *x);
/* Another reference to x (NULL: NULL). */
PageIndex *page_index_ref(PageIndex *x);
static inline void page_index_unrefp(PageIndex **x) {
        if (*x)
                page_index_unref(*x);
}

/* Turns slots (x->n entries in blob order, page UINT32_MAX where there is
 * none) into a page index: sorted, one page per hash. -EFBIG with more than
 * PAGE_INDEX_MAX_ENTRIES distinct pages. */
int page_index_finish_slots(PageIndex *x);
/* Writes x as the cache of x->blob (atomically for readers, not fsync'd). */
int page_index_save(Store *s, const PageIndex *x);

/* Page indexes of a series of blobs (a session's RAM, checkpoint after
 * checkpoint): only the last `keep` are worth their disk (a hand-over's
 * remainder goes against the pre-copy the receiver holds, one of the last).
 * Adds blob to the list in file `list` (when its page index exists) and
 * removes the page indexes of the older ones beyond keep (1..
 * PAGE_INDEX_KEEP_MAX). A cache: a damaged list starts over. */
#define PAGE_INDEX_KEEP_MAX 16
int page_index_keep_recent(Store *s, const char *list, const RoamId *blob, unsigned keep);

/* Where the cache of blob lives (caller frees). */
char *page_index_path(Store *s, const RoamId *blob);
/* Removes the cached page indexes of blobs keep() says no (gc). Returns the
 * number removed. */
int page_index_prune(Store *s, bool (*keep)(const RoamId *blob, void *userdata), void *userdata, uint64_t *ret_removed);
