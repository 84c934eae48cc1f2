/* SPDX-License-Identifier: MIT */
#pragma once

/* Import a blob (disk image, RAM image, any file) into the store as chunks
 * plus an index object, and export it back, byte for byte. Both use a pool of
 * threads: hashing (SHA-256) and zstd run on every core. */

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
} BlobStats;

/* threads 0 = one per core. */
typedef struct BlobOptions {
        unsigned threads;
        Progress *progress;
} BlobOptions;

/* Imports size bytes of fd (a regular file: holes are detected with
 * SEEK_DATA) and stores its index as an object. Chunks are committed durably
 * before the index object is written. *ret_id = index object id; *ret_stats
 * optional. */
int blob_import_fd(Store *s, int fd, uint64_t size, const BlobOptions *o, RoamId *ret_id, BlobStats *ret_stats);

/* Reads the index object id (verified). Caller frees *ret. */
int blob_load_index(Store *s, const RoamId *id, Index **ret);

/* Writes the blob into fd (truncated to the blob size first; all-zero chunks
 * become holes). Every chunk is verified. Does not fsync. */
int blob_export_fd(Store *s, const Index *x, int fd, const BlobOptions *o, BlobStats *ret_stats);
