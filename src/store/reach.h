/* SPDX-License-Identifier: MIT */
#pragma once

/* Reachability: from refs (or object ids) to every object and chunk they
 * need. Used by fsck, gc, stats, sync and bundles. */

#include <stdint.h>

#include "../basic/idset.h"
#include "store.h"

typedef struct Reach {
        IdSet *objects;
        IdSet *chunks;
        uint64_t refs;
        uint64_t blob_bytes;    /* sum of the sizes of all reachable blobs */
        uint64_t nonzero_bytes; /* plain bytes of non-zero chunk references (repeats counted) */
        uint64_t bad_objects;   /* missing, corrupt or malformed objects met */
        uint64_t bad_refs;      /* malformed ref files */
        /* called for every problem met (may be NULL) */
        void (*problem)(const char *msg, void *userdata);
        void *userdata;
} Reach;

/* Caller frees with reach_free() (accepts NULL). */
Reach *reach_new(void);
void reach_free(Reach *r);
static inline void reach_freep(Reach **r) {
        if (*r)
                reach_free(*r);
}

/* Adds an object and everything below it. Problems are counted and reported,
 * not returned: the return value is only for hard errors (-ENOMEM). */
int reach_add_object(Store *s, Reach *r, const RoamId *id);
/* Adds every ref whose name starts with prefix ("" = all). */
int reach_add_refs(Store *s, Reach *r, const char *prefix);
