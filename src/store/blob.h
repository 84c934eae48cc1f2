/* SPDX-License-Identifier: MIT */
#pragma once

/* Import a blob (disk image, RAM image, any file) into the store as chunks
 * plus an index object, and export it back, byte for byte. Both use a pool of
 * threads: hashing (SHA-256) and zstd run on every core.
 *
 * Incremental import: blob_import_fd_base() also computes a fast hash
 * (XXH3-128) of every chunk and, given the fast hashes and the index of an
 * earlier import (a BlobBase), takes the earlier SHA-256 id for every chunk
 * whose fast hash is unchanged, without SHA-256, zstd or a store lookup. Its
 * cost is then one fast hash over the input plus the full cost of the changed
 * chunks only. Split in two (blob_import_fd_begin(), blob_import_finish()),
 * the first half is a fast hash over the input plus a copy of the changed
 * chunks, with no disk waits: what a paused VM's checkpoint needs. */

#include <stdbool.h>
#include <stdint.h>

#include "../basic/progress.h"
#include "index.h"
#include "store.h"

typedef struct BlobStats {
        uint64_t chunks;       /* chunks in the blob */
        uint64_t zero_chunks;  /* all-zero chunks (holes), not stored */
        uint64_t new_chunks;   /* chunks the store did not have */
        uint64_t new_bytes;    /* plain bytes of new chunks */
        uint64_t stored_bytes; /* compressed bytes written for new chunks */
        double seconds;
        uint64_t reused_chunks; /* taken from the base by fast hash (no SHA-256) */
        uint64_t hashed_chunks; /* non-zero chunks read and hashed with SHA-256 */
} BlobStats;

/* threads 0 = one per core. map: read the input through mmap() instead of
 * pread() (saves a copy of every unchanged chunk); only for inputs that
 * nobody truncates below size while they are read (a read past the end of a
 * mapped file is SIGBUS), like a QEMU RAM backing file (chunks that are
 * partly holes are still read with pread(): reading a tmpfs hole through a
 * shared mapping would allocate it). */
typedef struct BlobOptions {
        unsigned threads;
        Progress *progress;
        bool map;
        /* with map: the caller's own read-only shared mapping of the whole
         * input (size bytes), used instead of a mapping of the import's own,
         * which costs a page fault per page read and an munmap at the end */
        const void *map_addr;
        uint64_t capture_max; /* blob_import_fd_begin() only, see there */
        volatile int *cancel;  /* set non-zero to stop early (-ECANCELED) */
        /* Also write the blob's page index (page-index.h) from the bytes the
         * import reads: a seeded XXH3 per non-zero 4 KiB page, no second read.
         * For blobs that will be bases of page references (master images,
         * boot files). Skipped when a chunk was taken from a base unread, or
         * the blob has more pages than a page index holds. */
        bool page_index;
} BlobOptions;

/* Imports size bytes of fd (a regular file: holes are detected with
 * SEEK_DATA) and stores its index as an object. Chunks are committed durably
 * before the index object is written. *ret_id = index object id; *ret_stats
 * optional. */
int blob_import_fd(Store *s, int fd, uint64_t size, const BlobOptions *o, RoamId *ret_id, BlobStats *ret_stats);

/* ---- incremental import ---- */

#define BLOB_FAST_HASH_SIZE 16
#define BLOB_FAST_MAGIC "ROAMFST"

/* The fast hashes of one import: hashes[i] = XXH3-128 (seeded) of the plain
 * bytes of chunk i (all-zero chunks and holes included: the hash of their
 * zeros), computed from exactly the bytes whose SHA-256 is ids[i] of the
 * index object index_id. The seed is random (getrandom) for a first import
 * and kept by every import that uses the result as its base, so that nobody
 * who does not know it (a guest writing its own RAM) can aim at a collision.
 * Serialized (little-endian), e.g. as a session's RAM or overlay sidecar:
 *
 *   0  8  magic "ROAMFST\0"
 *   8  4  version (1)
 *  12  4  chunk size (power of two, as in an index)
 *  16  8  blob size in bytes
 *  24  8  count n = ceil(blob size / chunk size), <= INDEX_MAX_CHUNKS
 *  32  8  seed
 *  40 32  index id
 *  72 n*16 hashes
 *  72+16n 32  SHA-256 of all bytes before it (a torn or damaged file is
 *             refused, never taken for a base)
 */
typedef struct BlobFast {
        RoamId index_id;
        uint64_t seed;
        uint32_t chunk_size;
        uint64_t blob_size;
        uint64_t count;
        uint8_t (*hashes)[BLOB_FAST_HASH_SIZE]; /* count entries */
} BlobFast;

void blob_fast_free(BlobFast *f);
static inline void blob_fast_freep(BlobFast **f) {
        if (*f)
                blob_fast_free(*f);
}
/* Caller frees *ret. */
int blob_fast_serialize(const BlobFast *f, void **ret, size_t *ret_len);
/* Bounds-checks every field and the checksum: -EBADMSG (or
 * -EPROTONOSUPPORT for another version) on any violation. Caller frees *ret
 * with blob_fast_free(). */
int blob_fast_parse(const void *data, size_t len, BlobFast **ret);
/* Writes f to path atomically for readers (a temp file beside it, then
 * rename). Not fsync'd: the file is a cache; one lost in a crash costs a full
 * import, one torn is refused by the checksum. */
int blob_fast_save(const BlobFast *f, const char *path);
/* Reads and parses path (at most the size that INDEX_MAX_CHUNKS allows).
 * -ENOENT if missing, -EBADMSG if malformed. Caller frees *ret. */
int blob_fast_load(const char *path, BlobFast **ret);

/* A base for blob_import_fd_base(): a BlobFast and the index it names,
 * checked against the store. */
typedef struct BlobBase BlobBase;

/* Prepares a base from fast (copied; the caller keeps fast). Loads the index
 * object fast->index_id (verified), checks that it matches fast (chunk size
 * = the store's, blob size, count), that every all-zero chunk of the index
 * has the zero hash, that every chunk of the index is in the store (a gc may
 * have removed the chunks of an unreferenced index; the store lock held by a
 * writer keeps them there from this check on), and re-hashes a few sampled
 * chunks from the store. Errors: -ENOENT (index or a chunk missing),
 * -EBADMSG (fast does not describe the index). The checks cost one store
 * lookup per distinct chunk: do them before a pause, not in it. Caller frees
 * *ret with blob_base_free(). */
int blob_base_new(Store *s, const BlobFast *fast, BlobBase **ret);
void blob_base_free(BlobBase *b);
static inline void blob_base_freep(BlobBase **b) {
        if (*b)
                blob_base_free(*b);
}
/* Loads the sidecar at path and prepares a base from it. A missing,
 * malformed, stale or mismatching sidecar is no base: *ret = NULL and 0 (the
 * import is then a full one). Only -ENOMEM is an error. */
int blob_base_load(Store *s, const char *path, BlobBase **ret);

/* Imports like blob_import_fd() and, when ret_fast is non-NULL, returns the
 * fast hashes of the new index in *ret_fast (caller frees), to be the base of
 * the next import of the same file.
 *
 * base (NULL = none): chunk i whose fast hash equals the base's chunk i of
 * the same length gets the base's id (all-zero stays all-zero), with no
 * SHA-256, no zstd and no store lookup; every other chunk is read, hashed and
 * stored as by blob_import_fd() (holes found with SEEK_DATA are zero without
 * being read). The input may be larger or smaller than the base's blob.
 *
 * Contract: the ids are always those of the bytes read, whatever the base,
 * as long as the base is an unaltered result of this function (a BlobFast
 * whose hashes describe its index, which blob_base_new() spot-checks): the
 * fast hash only decides whether a chunk still equals the base's own chunk.
 * A base of another file is correct too, merely useless. Its chunks must
 * stay in the store until the new index is referenced: hold the store lock
 * (as every writer does) from blob_base_new() on. */
int blob_import_fd_base(Store *s, int fd, uint64_t size, const BlobOptions *o, const BlobBase *base,
                        RoamId *ret_id, BlobStats *ret_stats, BlobFast **ret_fast);

/* blob_import_fd_base() in two halves, for a paused VM. The first reads the
 * input (which may change right after it returns) and compares it with the
 * base. Of the chunks that changed it keeps a copy in memory, up to
 * o->capture_max bytes; the others (all of them with capture_max 0) are
 * hashed and written to the store's temp area right away. With enough
 * capture_max it costs one fast hash over the input plus a copy of what
 * changed: no SHA-256, no zstd, no disk waits. The second half hashes and
 * stores the copies, makes every pending chunk of the store durable
 * (store_commit(), one for all imports begun before it), then writes the
 * index object: nothing may reference the blob before it returned. Pending
 * chunks count as present for the other imports of this process meanwhile.
 * Fast hashes are always computed. *ret: caller frees with
 * blob_pending_free() (an import that is never finished may leave temp
 * files, which gc removes). */
typedef struct BlobPending BlobPending;
int blob_import_fd_begin(Store *s, int fd, uint64_t size, const BlobOptions *o, const BlobBase *base,
                         BlobPending **ret);
/* Outputs as blob_import_fd_base(); stats->seconds spans both halves. */
int blob_import_finish(BlobPending *p, RoamId *ret_id, BlobStats *ret_stats, BlobFast **ret_fast);
void blob_pending_free(BlobPending *p);
static inline void blob_pending_freep(BlobPending **p) {
        if (*p)
                blob_pending_free(*p);
}

/* Reads the index object id (verified). Caller frees *ret. */
int blob_load_index(Store *s, const RoamId *id, Index **ret);

/* Writes the blob into fd (truncated to the blob size first; all-zero chunks
 * become holes). Every chunk is verified. Does not fsync. */
int blob_export_fd(Store *s, const Index *x, int fd, const BlobOptions *o, BlobStats *ret_stats);

/* Turns fd, which holds the blob of index from, into the blob of index to:
 * writes only the chunks whose ids differ (a chunk that became all-zero is
 * punched out), then sets the size. Every chunk written is verified. The
 * caller vouches for fd's content; a failure leaves fd half-patched. Does not
 * fsync. *ret_stats (optional): chunks = chunks written. */
int blob_patch_fd(Store *s, const Index *from, const Index *to, int fd, BlobStats *ret_stats);
