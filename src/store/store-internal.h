/* SPDX-License-Identifier: MIT */
#pragma once

/* The insides of a Store, shared by store.c (the API every caller uses: the
 * encryption layer, the caches, the codec, the checks) and local.c (the
 * backend of a store in a local directory, backend.h). Nothing else includes
 * this: the rest of roam sees only store.h. */

#include <pthread.h>
#include <stdint.h>

#include "../basic/idset.h"
#include "backend.h"
#include "crypt.h"
#include "fresh.h"
#include "seen.h"
#include "store.h"

/* chunk writes a local store keeps pending before it publishes them by itself */
#define COMMIT_BATCH 4096

typedef struct Pending {
        char *tmp;
        RoamId id;
} Pending;

/* Empty temp files a local store makes ahead, by a thread of its own
 * (store_tmp_pool()), for its chunk writes to take instead of creating a file
 * each: ext4 allocates an inode under the temp directory's lock, which the
 * store's writer threads queue for (about 0.3 ms of CPU a file here, a fifth
 * of a desktop's take offline on the server). */
typedef struct TmpPool {
        char **path;     /* the files ready, under Store.mutex */
        size_t n;
        unsigned target; /* 0: no pool */
        bool stop;
        bool running;    /* the thread was started */
        pthread_t thread;
        pthread_cond_t wake; /* with Store.mutex: below half, or stop */
} TmpPool;

struct Store {
        char *path;
        uint32_t chunk_size;
        int zstd_level;
        int dir_fd;
        int lock_fd;
        pthread_mutex_t mutex; /* pending list, refs */
        /* held through a whole store_commit(): a commit returns only once every
         * chunk put before it (by any thread) is durable, also when another
         * thread's commit took the list */
        pthread_mutex_t commit_lock;
        Pending *pending;
        size_t n_pending, cap_pending;
        IdSet *pending_set;
        IdSet *committing_set; /* the ids a commit is renaming, until it is done */
        /* the write gate: writers shared, gc exclusive (store_write_begin()) */
        pthread_rwlock_t gate;
        /* where the bytes are (backend.h); the fields above from dir_fd on
         * belong to the local directory */
        const StoreBackend *be;
        void *be_data;
        /* an encrypted store (crypt.h): NULL for a plain one */
        StoreCrypt *crypt;
        Seen seen;
        Seen published; /* chunks found published (stat), not just pending: for completeness checks */
        Fresh fresh; /* chunks stored in a hand-over's window, as plain bytes (fresh.h) */
        TmpPool pool; /* local: empty temp files made ahead */
        pthread_t reserve_thread; /* store_fresh_reserve()'s, while reserving */
        bool reserving;
        size_t reserve_bytes;
};

/* The local directory's backend (local.c). */
extern const StoreBackend store_local_backend;
/* Ends the pool's thread and removes the files it made (store_free()). */
void local_tmp_pool_end(Store *s);
