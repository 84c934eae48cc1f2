/* SPDX-License-Identifier: MIT */
#pragma once

/* Index: the ordered chunk list that rebuilds one blob (disk image, overlay,
 * RAM image). Format (little-endian, docs/store-format.md):
 *
 *   0  8  magic "ROAMIDX\0"
 *   8  4  version (1)
 *  12  4  chunk size (power of two, 4 KiB..4 MiB)
 *  16  8  blob size in bytes
 *  24  8  number of chunks n = ceil(blob size / chunk size)
 *  32  n*32 chunk ids; the all-zero id marks an all-zero chunk (not stored)
 *
 * Stored as an object: its own SHA-256 names and protects it. */

#include <stddef.h>
#include <stdint.h>

#include "../basic/hash.h"

#define INDEX_MAGIC "ROAMIDX"
#define INDEX_HEADER_SIZE 32
#define INDEX_MAX_CHUNKS (1ULL << 26) /* 4 TiB at 64 KiB chunks */

typedef struct Index {
        uint32_t chunk_size;
        uint64_t blob_size;
        uint64_t n_chunks;
        RoamId *ids; /* n_chunks entries */
} Index;

/* Allocates an index for a blob of blob_size bytes, all chunks zero.
 * Caller frees with index_free(). */
int index_new(uint32_t chunk_size, uint64_t blob_size, Index **ret);
void index_free(Index *x);
static inline void index_freep(Index **x) {
        if (*x)
                index_free(*x);
}

/* Length of chunk i (the last one may be short). */
uint32_t index_chunk_len(const Index *x, uint64_t i);

/* Serializes; caller frees *ret. */
int index_serialize(const Index *x, void **ret, size_t *ret_len);
/* Parses with bounds checks on every field; -EBADMSG on any violation. */
int index_parse(const void *data, size_t len, Index **ret);
/* True if data starts with the index magic. */
int index_is_index(const void *data, size_t len);
