/* SPDX-License-Identifier: MIT */
#pragma once

/* The plain bytes of chunks this process stored in a short window that a
 * caller opens (store_keep_fresh()): a hand-over's remainder, stored when it
 * arrives and read again a moment later by the restore that patches them into
 * the staged RAM file. A read of one of them (store_chunk_get()) copies it
 * from memory instead of reading, decrypting, decompressing and checking the
 * stored file again: the bytes were checked against their id when they were
 * stored. At most FRESH_MAX_BYTES; the window closes (and the copies go:
 * their memory back to fresh_reserve()'s pieces, or freed) when its caller
 * closes it, after its seconds, or at a removal through the Store.
 * Thread-safe. */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../basic/hash.h"

#define FRESH_MAX_BYTES (128u << 20)

typedef struct FreshEntry FreshEntry;

typedef struct Fresh {
        pthread_mutex_t lock;
        FreshEntry *slot; /* open addressing: cap slots, a power of two */
        size_t cap, n, bytes;
        uint64_t until; /* CLOCK_MONOTONIC ns; 0: closed */
        /* memory for the copies, touched ahead (fresh_reserve()): slab_len
         * bytes in pieces of piece bytes, the free ones' numbers a stack */
        uint8_t *slab;
        size_t slab_len, piece, n_free;
        uint32_t *free_pieces;
} Fresh;

void fresh_init(Fresh *f);
void fresh_done(Fresh *f);
/* Memory for the copies, bytes in pieces of piece bytes (the store's chunk
 * size), mapped and touched now and kept for the life of f: the first write
 * to a page costs a page fault, ~12-16 us on these machines, which a copy
 * into new memory pays 16 times per 64 KiB chunk while a hand-over's pause
 * waits for it (~130 ms for a desktop's remainder of 680 chunks). Asked for
 * huge pages (one fault per 2 MiB). Copies that do not fit go to malloc().
 * -EBUSY if f has its memory already. */
int fresh_reserve(Fresh *f, size_t piece, size_t bytes);
/* The pieces of fresh_reserve()'s memory not in use (tests, logs). */
size_t fresh_reserve_free(Fresh *f);
/* Opens the window for seconds from now (0: closes it, and forgets all). */
void fresh_open(Fresh *f, unsigned seconds);
/* Whether the window is open (a hand-over is under way). */
bool fresh_is_open(Fresh *f);
/* Keeps a copy of id's plain bytes while the window is open (a cache: no
 * memory or no room, no copy). */
void fresh_put(Fresh *f, const RoamId *id, const void *data, size_t len);
/* 1 with id's bytes copied into buf (at most cap), 0 when not here. */
int fresh_get(Fresh *f, const RoamId *id, void *buf, size_t cap, size_t *ret_len);
/* Forgets all (a removal: the window stays open). */
void fresh_forget(Fresh *f);
