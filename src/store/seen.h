/* SPDX-License-Identifier: MIT */
#pragma once

/* Chunks this process saw in the store lately: store_chunk_has() answered 1
 * for them, or it wrote them. A has() of one of them is answered from memory,
 * without the stored name's HMAC and a file system lookup: a pull checks every
 * chunk of a checkpoint (the master image's and the RAM's) and the restore
 * right after it checks them again, tens of thousands each time, and a
 * laptop's pre-copy rounds every few seconds check the same ones again.
 *
 * Generations of STORE_SEEN_S seconds: a new one starts empty, and an id found
 * in the one before moves on into it (what is in use stays, what is not goes
 * after two generations). So that an answer from memory is never too old, a
 * generation remembers the oldest store lookup behind its ids, and is dropped
 * whole when that is STORE_SEEN_MAX_AGE_S old: an answer from memory is never
 * older than STORE_SEEN_MAX_AGE_S + 2 * STORE_SEEN_S. The file's mtime was
 * refreshed at that lookup (STORE_TOUCH_S), so gc's grace still covers a
 * writer that takes less than grace - STORE_TOUCH_S - that. A removal through
 * the Store (gc, fsck) forgets everything; another process that removes
 * chunks from under a running one is what gc's grace is for anyway.
 * Thread-safe. */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../basic/hash.h"
#include "../basic/idset.h"

#define STORE_SEEN_S 30
#define STORE_SEEN_MAX_AGE_S 600
#define STORE_SEEN_MAX (1u << 21) /* ids a generation holds (64 MiB): beyond, no more are added */

typedef struct Seen {
        pthread_mutex_t lock;
        IdSet *cur, *prev;
        uint64_t cur_start; /* CLOCK_MONOTONIC ns */
        uint64_t cur_looked, prev_looked; /* the oldest store lookup behind a generation's ids */
        bool started;       /* cur_start is set */
} Seen;

void seen_init(Seen *v);
void seen_done(Seen *v);
bool seen_has(Seen *v, const RoamId *id);
void seen_add(Seen *v, const RoamId *id);
void seen_forget(Seen *v);
/* the same at a given CLOCK_MONOTONIC time in ns (for tests) */
bool seen_has_at(Seen *v, const RoamId *id, uint64_t now);
void seen_add_at(Seen *v, const RoamId *id, uint64_t now);
