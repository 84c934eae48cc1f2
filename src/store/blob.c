/* SPDX-License-Identifier: MIT */
#include "blob.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "page-index.h"

#define MAX_THREADS 64

typedef uint8_t FastHash[BLOB_FAST_HASH_SIZE];

struct BlobBase {
        BlobFast *fast;
        Index *index;
        PageIndex *pages; /* its page index when the store has one, or NULL */
};

typedef struct Job {
        Store *store;
        Index *index;
        int fd;
        Progress *progress;
        _Atomic uint64_t next;
        _Atomic int error;
        _Atomic uint64_t zero_chunks, new_chunks, new_bytes, stored_bytes, reused_chunks, hashed_chunks;
        char errdetail[512];
        pthread_mutex_t lock;
        /* incremental import */
        const uint8_t *map;    /* the input mapped, or NULL: pread() */
        FastHash *fast;        /* out: one per chunk, or NULL: no fast hashes */
        uint64_t seed;
        FastHash zero_full;    /* fast hash of a full all-zero chunk */
        FastHash zero_last;    /* ... and of an all-zero last chunk */
        const BlobBase *base;  /* or NULL */
        /* two-phase import: changed chunks copied in the first phase and
         * stored in the second (captured[i] = the copy, or NULL) */
        uint8_t **captured;
        _Atomic uint64_t capture_left; /* bytes that may still be copied */
        volatile int *cancel;          /* BlobOptions.cancel */
        /* the page index (BlobOptions.page_index): ppc entries per chunk, a
         * page that is not there has page UINT32_MAX */
        PageIndex *pages;
        uint32_t ppc;
        _Atomic bool pages_incomplete; /* a chunk was not read */
        /* a chunk taken from a base unread gets its entries from the base's
         * page index (pages_from_base[i] = 1, pages_merge()), or, when the
         * base has none and nothing is paused (no capture), is read after
         * all and hashed (pages_read_base) */
        uint8_t *pages_from_base;
        bool pages_read_base;
} Job;

static void fast_hash(const void *p, size_t len, uint64_t seed, FastHash out) {
        XXH128_hash_t h = XXH3_128bits_withSeed(p, len, seed);
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, h);
        memcpy(out, c.digest, BLOB_FAST_HASH_SIZE);
}

static void fast_hash_zero(uint32_t len, uint64_t seed, FastHash out) {
        static const uint8_t zeros[STORE_CHUNK_SIZE_MAX];
        fast_hash(zeros, MIN(len, (uint32_t) sizeof zeros), seed, out);
}

/* Length of chunk i of a blob of size bytes. */
static uint32_t chunk_len_of(uint32_t cs, uint64_t size, uint64_t i) {
        uint64_t off = i * cs;
        return off >= size ? 0 : (uint32_t) MIN(size - off, (uint64_t) cs);
}

static unsigned pick_threads(unsigned t) {
        return MIN(t ? t : cpus_online(), (unsigned) MAX_THREADS);
}

/* Worker errors carry their err_set() detail across threads. */
static void job_fail(Job *j, int r) {
        int expected = 0;
        if (atomic_compare_exchange_strong(&j->error, &expected, r)) {
                pthread_mutex_lock(&j->lock);
                snprintf(j->errdetail, sizeof j->errdetail, "%s", err_message(r));
                pthread_mutex_unlock(&j->lock);
        }
}

/* True (and the job failed) once the caller asked to stop. */
static bool job_cancelled(Job *j) {
        if (!j->cancel || !*j->cancel)
                return false;
        job_fail(j, err_set(-ECANCELED, "stopped on request"));
        return true;
}

static int run_pool(Job *j, unsigned threads, void *(*fn)(void *)) {
        run_threads(threads, fn, j);
        int r = atomic_load(&j->error);
        if (r < 0)
                return err_set(r, "%s", j->errdetail);
        return 0;
}

/* ---- the committer: publishes an import's chunks while it runs ----
 *
 * store_chunk_put() commits by itself every 4096 pending chunks, in the
 * worker that wrote the last one: that worker then waits for syncfs() while
 * the others go on. An import of many new chunks instead runs a committer
 * thread that publishes them every COMMIT_EVERY_BYTES, so that no worker ever
 * waits for the disk, and the commit at the end, which must wait, finds
 * little left to write. Durability is unchanged: the index object is still
 * written after the last commit (blob_import_finish()). */

#define COMMIT_EVERY_BYTES (64u << 20)
#define COMMIT_EVERY_MAX 1024 /* chunks: a store of small chunks commits more often */
#define COMMITTER_MIN_CHUNKS 256 /* smaller imports commit at the end only */

typedef struct Committer {
        Store *store;
        Job *job;
        size_t every; /* pending chunks that trigger a commit */
        pthread_t tid;
        bool running;
        bool stop;
        pthread_mutex_t lock;
        pthread_cond_t wake;
} Committer;

static void *committer_main(void *arg) {
        Committer *c = arg;
        pthread_mutex_lock(&c->lock);
        while (!c->stop) {
                struct timespec until;
                clock_gettime(CLOCK_MONOTONIC, &until);
                until.tv_nsec += 20 * 1000 * 1000;
                if (until.tv_nsec >= 1000000000L) {
                        until.tv_sec++;
                        until.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&c->wake, &c->lock, &until);
                if (c->stop || store_chunk_pending(c->store) < c->every)
                        continue;
                pthread_mutex_unlock(&c->lock);
                int r = store_commit(c->store);
                if (r < 0)
                        job_fail(c->job, r);
                pthread_mutex_lock(&c->lock);
        }
        pthread_mutex_unlock(&c->lock);
        return NULL;
}

/* Starts the committer for an import of n chunks (not for small ones: they
 * commit at the end). Without a thread the import just goes on without it. */
static void committer_start(Committer *c, Store *s, Job *j, uint64_t n) {
        *c = (Committer){ .store = s, .job = j };
        if (n < COMMITTER_MIN_CHUNKS)
                return;
        c->every = MIN((size_t) COMMIT_EVERY_MAX, MAX((size_t) 64, (size_t) (COMMIT_EVERY_BYTES / store_chunk_size(s))));
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&c->wake, &ca);
        pthread_condattr_destroy(&ca);
        pthread_mutex_init(&c->lock, NULL);
        c->running = pthread_create(&c->tid, NULL, committer_main, c) == 0;
        if (!c->running) {
                pthread_cond_destroy(&c->wake);
                pthread_mutex_destroy(&c->lock);
        }
}

static void committer_stop(Committer *c) {
        if (!c->running)
                return;
        pthread_mutex_lock(&c->lock);
        c->stop = true;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->tid, NULL);
        pthread_cond_destroy(&c->wake);
        pthread_mutex_destroy(&c->lock);
        c->running = false;
}

/* Sets chunk i to all-zero (a hole or zero bytes). */
static void take_zero(Job *j, uint64_t i, uint32_t len) {
        j->index->ids[i] = ID_NULL;
        if (j->fast)
                memcpy(j->fast[i], len == j->index->chunk_size ? j->zero_full : j->zero_last, BLOB_FAST_HASH_SIZE);
        atomic_fetch_add(&j->zero_chunks, 1);
        progress_add(j->progress, len);
}

static void hash_pages(Job *j, uint64_t i, const uint8_t *buf, uint32_t len);

/* Takes the base's id for chunk i when the fast hash h of its len bytes
 * equals the base's of a chunk of the same length. buf: those bytes, or
 * NULL when they were hashed in place (then they are not hashed for the
 * page index). */
static bool take_from_base(Job *j, uint64_t i, uint32_t len, const FastHash h, const uint8_t *buf) {
        const BlobBase *b = j->base;
        if (!b || i >= b->index->n_chunks || index_chunk_len(b->index, i) != len ||
            memcmp(h, b->fast->hashes[i], BLOB_FAST_HASH_SIZE) != 0)
                return false;
        j->index->ids[i] = b->index->ids[i];
        memcpy(j->fast[i], h, BLOB_FAST_HASH_SIZE);
        if (j->pages && !id_is_null(&b->index->ids[i])) {
                if (j->pages_from_base)
                        j->pages_from_base[i] = 1;
                else if (buf)
                        hash_pages(j, i, buf, len);
                else
                        atomic_store(&j->pages_incomplete, true); /* its pages were not read */
        }
        if (id_is_null(&b->index->ids[i]))
                atomic_fetch_add(&j->zero_chunks, 1);
        else
                atomic_fetch_add(&j->reused_chunks, 1);
        progress_add(j->progress, len);
        return true;
}

static int store_new(Job *j, ChunkCodec *codec, uint64_t i, const uint8_t *buf, uint32_t len);

/* The page index entries of chunk i (not all zero): one per whole non-zero
 * page, in the chunk's slots (workers never share a chunk). */
static void hash_pages(Job *j, uint64_t i, const uint8_t *buf, uint32_t len) {
        uint64_t *h = j->pages->hashes + i * j->ppc;
        uint32_t *pg = j->pages->pages + i * j->ppc;
        uint32_t first = (uint32_t) (i * j->ppc);
        for (uint32_t k = 0; k < j->ppc; k++) {
                size_t off = (size_t) k * PAGE_SIZE_4K;
                if (off + PAGE_SIZE_4K > len || memory_is_zero(buf + off, PAGE_SIZE_4K))
                        continue; /* zero pages travel as zero pages; a short page is no base */
                h[k] = page_index_hash(j->pages, buf + off);
                pg[k] = first + k;
        }
}
static bool capture(Job *j, uint64_t i, const uint8_t *buf, uint32_t len);

static void *import_worker(void *arg) {
        Job *j = arg;
        Index *x = j->index;
        uint32_t cs = x->chunk_size;
        _cleanup_(chunk_codec_freep) ChunkCodec *codec = chunk_codec_new(j->store);
        _cleanup_free_ uint8_t *buf = malloc(cs);
        if (!codec || !buf) {
                job_fail(j, -ENOMEM);
                return NULL;
        }
        /* What SEEK_DATA/SEEK_HOLE told this worker: [hole_start, hole_end) is a
         * hole, [data_start, data_end) is data. Each worker takes chunks in
         * increasing order, so two lseeks per extent are enough, not one per chunk. */
        uint64_t hole_start = 0, hole_end = 0, data_start = 0, data_end = 0;
        for (;;) {
                if (atomic_load(&j->error) || job_cancelled(j))
                        break;
                uint64_t i = atomic_fetch_add(&j->next, 1);
                if (i >= x->n_chunks)
                        break;
                uint64_t off = i * cs;
                uint32_t len = index_chunk_len(x, i);
                bool hole = off >= hole_start && off + len <= hole_end;
                if (!hole && !(off >= data_start && off + len <= data_end)) {
                        off_t data = lseek(j->fd, (off_t) off, SEEK_DATA);
                        if (data < 0 && errno == ENXIO) /* nothing but hole up to the end */
                                hole_start = off, hole_end = UINT64_MAX;
                        else if (data >= 0 && (uint64_t) data >= off + len)
                                hole_start = off, hole_end = (uint64_t) data;
                        else if (data >= 0) {
                                off_t end = lseek(j->fd, data, SEEK_HOLE);
                                if (end > data)
                                        data_start = (uint64_t) data, data_end = (uint64_t) end;
                        }
                        hole = off >= hole_start && off + len <= hole_end;
                }
                /* a chunk that lies in a hole is zero without reading it */
                if (hole) {
                        take_zero(j, i, len);
                        continue;
                }
                /* through the mapping only a chunk that is all data: reading a
                 * hole of a tmpfs file through a shared mapping would allocate it */
                const uint8_t *mapped =
                        j->map && off >= data_start && off + len <= data_end ? j->map + off : NULL;
                FastHash h;
                bool hashed = false;
                if (mapped && j->base && j->pages_read_base) {
                        /* the page index needs this chunk's pages: hash the
                         * copy, so that both hashes describe the same bytes */
                        memcpy(buf, mapped, len);
                        fast_hash(buf, len, j->seed, h);
                        if (take_from_base(j, i, len, h, buf))
                                continue;
                        hashed = true;
                } else if (mapped && j->base) {
                        /* compare in place; copy only what changed */
                        fast_hash(mapped, len, j->seed, h);
                        if (take_from_base(j, i, len, h, NULL))
                                continue;
                }
                if (hashed)
                        ; /* in buf already */
                else if (mapped)
                        memcpy(buf, mapped, len);
                else {
                        ssize_t n = loop_pread(j->fd, buf, len, off);
                        if (n < 0) {
                                job_fail(j, err_set((int) n, "cannot read input at offset %llu: %s",
                                                    (unsigned long long) off, strerror((int) -n)));
                                break;
                        }
                        if ((size_t) n != len) {
                                job_fail(j, err_set(-EIO, "input shrank while reading (at offset %llu)",
                                                    (unsigned long long) off));
                                break;
                        }
                }
                if (j->fast && !hashed) {
                        /* the fast hash and the id must describe the same bytes: a
                         * mapped input may have changed since the hash above */
                        fast_hash(buf, len, j->seed, h);
                        if (take_from_base(j, i, len, h, buf))
                                continue;
                }
                if (memory_is_zero(buf, len)) {
                        take_zero(j, i, len);
                        continue;
                }
                if (j->pages)
                        hash_pages(j, i, buf, len);
                if (j->fast)
                        memcpy(j->fast[i], h, BLOB_FAST_HASH_SIZE);
                if (j->captured && capture(j, i, buf, len))
                        continue;
                int r = store_new(j, codec, i, buf, len);
                if (r < 0) {
                        job_fail(j, r);
                        break;
                }
        }
        return NULL;
}

/* Hashes chunk i (len bytes in buf, not all zero) and stores it unless the
 * store has it. */
static int store_new(Job *j, ChunkCodec *codec, uint64_t i, const uint8_t *buf, uint32_t len) {
        RoamId id;
        sha256(buf, len, &id);
        j->index->ids[i] = id;
        atomic_fetch_add(&j->hashed_chunks, 1);
        int r = store_chunk_has(j->store, &id);
        if (r == 0) {
                r = store_chunk_put(j->store, codec, &id, buf, len);
                if (r >= 0) {
                        atomic_fetch_add(&j->new_chunks, 1);
                        atomic_fetch_add(&j->new_bytes, len);
                        atomic_fetch_add(&j->stored_bytes, (uint64_t) r);
                }
        }
        if (r < 0)
                return r;
        progress_add(j->progress, len);
        return 0;
}

/* Keeps a copy of chunk i for the second phase, within the budget. */
static bool capture(Job *j, uint64_t i, const uint8_t *buf, uint32_t len) {
        uint64_t left = atomic_load(&j->capture_left);
        do {
                if (left < len)
                        return false;
        } while (!atomic_compare_exchange_weak(&j->capture_left, &left, left - len));
        uint8_t *copy = malloc(len);
        if (!copy) {
                atomic_fetch_add(&j->capture_left, len);
                return false; /* stored right away instead */
        }
        memcpy(copy, buf, len);
        j->captured[i] = copy;
        return true;
}

/* The second phase: hashes and stores the captured chunks. */
static void *finish_worker(void *arg) {
        Job *j = arg;
        _cleanup_(chunk_codec_freep) ChunkCodec *codec = chunk_codec_new(j->store);
        if (!codec) {
                job_fail(j, -ENOMEM);
                return NULL;
        }
        for (;;) {
                if (atomic_load(&j->error))
                        break;
                uint64_t i = atomic_fetch_add(&j->next, 1);
                if (i >= j->index->n_chunks)
                        break;
                if (!j->captured[i])
                        continue;
                int r = store_new(j, codec, i, j->captured[i], index_chunk_len(j->index, i));
                free(j->captured[i]);
                j->captured[i] = NULL;
                if (r < 0) {
                        job_fail(j, r);
                        break;
                }
        }
        return NULL;
}

static int random_seed(uint64_t *ret) {
        for (;;) {
                ssize_t n = getrandom(ret, sizeof *ret, 0);
                if (n == (ssize_t) sizeof *ret)
                        return 0;
                if (n < 0 && errno != EINTR)
                        return err_set(-errno, "getrandom failed: %s", strerror(errno));
        }
}

struct BlobPending {
        Store *store;
        Index *index;
        BlobFast *fast; /* NULL: no fast hashes wanted */
        PageIndex *pages; /* n_chunks * ppc slots (BlobOptions.page_index), or NULL */
        uint8_t *pages_from_base; /* n_chunks flags (Job), or NULL */
        bool pages_incomplete;
        BlobStats stats;
        double t0;
        unsigned threads;
        uint8_t **captured; /* n_chunks entries, or NULL */
        void *map;          /* the input's mapping, unmapped later: munmap of a
                             * large mapping takes tens of ms, not for a pause */
        size_t map_size;
};

static void pending_unmap(BlobPending *p) {
        if (p->map)
                (void) munmap(p->map, p->map_size);
        p->map = NULL;
}

void blob_pending_free(BlobPending *p) {
        if (!p)
                return;
        pending_unmap(p);
        if (p->captured)
                for (uint64_t i = 0; i < p->index->n_chunks; i++)
                        free(p->captured[i]);
        free(p->captured);
        index_free(p->index);
        blob_fast_free(p->fast);
        page_index_free(p->pages);
        free(p->pages_from_base);
        free(p);
}

/* Slots for the page index of the blob, when it can have one. With a base,
 * the chunks taken from it unread get their entries from its page index (same
 * seed), or are read after all (no capture: nothing is paused). */
static int pages_begin(BlobPending *p, Job *j) {
        uint32_t ppc = p->index->chunk_size / PAGE_SIZE_4K;
        uint64_t slots = p->index->n_chunks * ppc;
        if (slots > 4ull * PAGE_INDEX_MAX_ENTRIES || p->index->blob_size / PAGE_SIZE_4K > UINT32_MAX)
                return 0; /* too large for a page index: none */
        PageIndex *x = calloc(1, sizeof *x);
        if (!x)
                return -ENOMEM;
        x->hashes = calloc(MAX(slots, (uint64_t) 1), sizeof *x->hashes);
        x->pages = malloc(MAX(slots, (uint64_t) 1) * sizeof *x->pages);
        if (!x->hashes || !x->pages) {
                page_index_free(x);
                return -ENOMEM;
        }
        memset(x->pages, 0xff, MAX(slots, (uint64_t) 1) * sizeof *x->pages); /* UINT32_MAX: no page */
        x->n = slots;
        x->blob_size = p->index->blob_size;
        const PageIndex *bx = j->base ? j->base->pages : NULL;
        if (bx && bx->blob_size == x->blob_size) {
                x->seed = bx->seed;
                p->pages_from_base = calloc(MAX(p->index->n_chunks, (uint64_t) 1), 1);
                if (!p->pages_from_base) {
                        page_index_free(x);
                        return -ENOMEM;
                }
                j->pages_from_base = p->pages_from_base;
        } else {
                int r = random_seed(&x->seed);
                if (r < 0) {
                        page_index_free(x);
                        return r;
                }
                j->pages_read_base = j->base && !j->captured;
        }
        p->pages = x;
        j->pages = x;
        j->ppc = ppc;
        return 0;
}

/* The entries of the chunks taken from the base unread: the base's (its
 * pages are the same pages; a page whose bytes are also elsewhere in the base
 * has the base's first one only, and is then missing here: a reference less,
 * never a wrong one). */
static void pages_merge(BlobPending *p, const PageIndex *bx) {
        PageIndex *x = p->pages;
        uint32_t ppc = p->index->chunk_size / PAGE_SIZE_4K;
        for (uint64_t e = 0; e < bx->n; e++) {
                uint32_t pg = bx->pages[e];
                if (pg >= x->n || !p->pages_from_base[pg / ppc])
                        continue;
                x->hashes[pg] = bx->hashes[e];
                x->pages[pg] = pg;
        }
}

/* The reading half of an import: the index in memory; chunks written
 * (pending) or, with capture, copied for the second half. */
static int import_begin(Store *s, int fd, uint64_t size, const BlobOptions *o, const BlobBase *base, bool want_fast,
                        bool capture, BlobPending **ret) {
        static const BlobOptions defaults = { 0 };
        if (!o)
                o = &defaults;
        double t0 = now_s();
        if (base && base->index->chunk_size != store_chunk_size(s))
                base = NULL; /* blob_base_new() refuses it; be safe anyway */
        _cleanup_(blob_pending_freep) BlobPending *p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->store = s;
        p->t0 = t0;
        p->threads = pick_threads(o->threads);
        int r = index_new(store_chunk_size(s), size, &p->index);
        if (r < 0)
                return err_set(r, "input is too large (%llu bytes)", (unsigned long long) size);
        Index *x = p->index;
        Job j = { .store = s, .index = x, .fd = fd, .progress = o->progress, .cancel = o->cancel };
        if (capture && o->capture_max > 0) {
                p->captured = calloc(MAX(x->n_chunks, (uint64_t) 1), sizeof *p->captured);
                if (!p->captured)
                        return -ENOMEM;
                j.captured = p->captured;
                j.capture_left = o->capture_max;
        }
        if (base || want_fast) {
                BlobFast *fast = p->fast = calloc(1, sizeof *fast);
                if (!fast)
                        return -ENOMEM;
                fast->chunk_size = x->chunk_size;
                fast->blob_size = size;
                fast->count = x->n_chunks;
                fast->hashes = malloc(MAX(x->n_chunks, (uint64_t) 1) * BLOB_FAST_HASH_SIZE);
                if (!fast->hashes)
                        return -ENOMEM;
                if (base)
                        fast->seed = base->fast->seed;
                else {
                        r = random_seed(&fast->seed);
                        if (r < 0)
                                return r;
                }
                j.fast = fast->hashes;
                j.seed = fast->seed;
                j.base = base;
                fast_hash_zero(x->chunk_size, j.seed, j.zero_full);
                fast_hash_zero(chunk_len_of(x->chunk_size, size, x->n_chunks ? x->n_chunks - 1 : 0), j.seed,
                               j.zero_last);
        }
        if (o->page_index) {
                r = pages_begin(p, &j);
                if (r < 0)
                        return r;
        }
        struct stat st;
        if (o->map && o->map_addr && size > 0)
                j.map = o->map_addr; /* the caller's: not unmapped here */
        else if (o->map && size > 0 && size <= SIZE_MAX && fstat(fd, &st) >= 0 && S_ISREG(st.st_mode) &&
                 (uint64_t) st.st_size >= size) {
                void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
                if (map != MAP_FAILED) {
                        (void) madvise(map, size, MADV_SEQUENTIAL);
                        j.map = p->map = map;
                        p->map_size = size;
                }
        }
        /* the workers read the input in (nearly) increasing order: a wider readahead */
        if (!j.map)
                (void) posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        pthread_mutex_init(&j.lock, NULL);
        /* not while a paused VM's changed chunks are captured: that half
         * writes little, and nothing of the disk's, in the pause */
        Committer com;
        committer_start(&com, s, &j, p->captured ? 0 : x->n_chunks);
        r = run_pool(&j, p->threads, import_worker);
        committer_stop(&com);
        if (r >= 0 && atomic_load(&j.error) < 0) /* the committer's */
                r = err_set(atomic_load(&j.error), "%s", j.errdetail);
        pthread_mutex_destroy(&j.lock);
        if (r < 0)
                return r;
        p->pages_incomplete = atomic_load(&j.pages_incomplete);
        if (p->pages_from_base && !p->pages_incomplete)
                pages_merge(p, base->pages);
        p->stats = (BlobStats){
                .chunks = x->n_chunks,
                .zero_chunks = j.zero_chunks,
                .new_chunks = j.new_chunks,
                .new_bytes = j.new_bytes,
                .stored_bytes = j.stored_bytes,
                .reused_chunks = j.reused_chunks,
                .hashed_chunks = j.hashed_chunks,
        };
        *ret = TAKE_PTR(p);
        return 0;
}

int blob_import_fd_begin(Store *s, int fd, uint64_t size, const BlobOptions *o, const BlobBase *base,
                         BlobPending **ret) {
        return import_begin(s, fd, size, o, base, true, true, ret);
}

int blob_import_finish(BlobPending *p, RoamId *ret_id, BlobStats *ret_stats, BlobFast **ret_fast) {
        int r;
        if (ret_fast && !p->fast)
                return -EINVAL;
        pending_unmap(p);
        if (p->captured) {
                Job j = { .store = p->store, .index = p->index, .captured = p->captured };
                pthread_mutex_init(&j.lock, NULL);
                r = run_pool(&j, p->threads, finish_worker);
                pthread_mutex_destroy(&j.lock);
                if (r < 0)
                        return r;
                free(TAKE_PTR(p->captured));
                p->stats.hashed_chunks += j.hashed_chunks;
                p->stats.new_chunks += j.new_chunks;
                p->stats.new_bytes += j.new_bytes;
                p->stats.stored_bytes += j.stored_bytes;
        }
        r = store_commit(p->store);
        if (r < 0)
                return r;
        _cleanup_free_ void *ser = NULL;
        size_t len;
        r = index_serialize(p->index, &ser, &len);
        if (r < 0)
                return r;
        RoamId id;
        r = store_object_put(p->store, ser, len, &id);
        if (r < 0)
                return r;
        if (p->pages && !p->pages_incomplete) {
                /* a cache: without it, the blob is a base only once built on demand */
                p->pages->blob = id;
                if (page_index_finish_slots(p->pages) < 0 || page_index_save(p->store, p->pages) < 0)
                        err_clear();
        }
        if (ret_stats) {
                *ret_stats = p->stats;
                ret_stats->seconds = now_s() - p->t0;
        }
        if (ret_fast) {
                p->fast->index_id = id;
                *ret_fast = TAKE_PTR(p->fast);
        }
        *ret_id = id;
        return 0;
}

int blob_import_fd(Store *s, int fd, uint64_t size, const BlobOptions *o, RoamId *ret_id, BlobStats *ret_stats) {
        return blob_import_fd_base(s, fd, size, o, NULL, ret_id, ret_stats, NULL);
}

int blob_import_fd_base(Store *s, int fd, uint64_t size, const BlobOptions *o, const BlobBase *base,
                        RoamId *ret_id, BlobStats *ret_stats, BlobFast **ret_fast) {
        _cleanup_(blob_pending_freep) BlobPending *p = NULL;
        int r = import_begin(s, fd, size, o, base, ret_fast != NULL, false, &p);
        if (r < 0)
                return r;
        return blob_import_finish(p, ret_id, ret_stats, ret_fast);
}

int blob_load_index(Store *s, const RoamId *id, Index **ret) {
        _cleanup_free_ void *data = NULL;
        size_t len;
        char hex[ID_HEX_SIZE];
        int r = store_object_get(s, id, STORE_OBJECT_MAX, &data, &len);
        if (r < 0)
                return r;
        r = index_parse(data, len, ret);
        if (r < 0)
                return err_set(-EBADMSG, "object %s is not a valid index (run 'roam store fsck')", id_to_hex(id, hex));
        return 0;
}

/* ---- fast hashes and bases ---- */

#define FAST_HEADER_SIZE 72
#define FAST_VERSION 1

static bool chunk_size_valid(uint32_t cs) {
        return cs >= STORE_CHUNK_SIZE_MIN && cs <= STORE_CHUNK_SIZE_MAX && (cs & (cs - 1)) == 0;
}

void blob_fast_free(BlobFast *f) {
        if (!f)
                return;
        free(f->hashes);
        free(f);
}

int blob_fast_serialize(const BlobFast *f, void **ret, size_t *ret_len) {
        if (f->count > INDEX_MAX_CHUNKS)
                return -EINVAL;
        size_t len = FAST_HEADER_SIZE + (size_t) f->count * BLOB_FAST_HASH_SIZE + ID_SIZE;
        uint8_t *b = malloc(len);
        if (!b)
                return -ENOMEM;
        memcpy(b, BLOB_FAST_MAGIC, 8); /* includes the NUL */
        put_le32(b + 8, FAST_VERSION);
        put_le32(b + 12, f->chunk_size);
        put_le64(b + 16, f->blob_size);
        put_le64(b + 24, f->count);
        put_le64(b + 32, f->seed);
        memcpy(b + 40, f->index_id.b, ID_SIZE);
        if (f->count)
                memcpy(b + FAST_HEADER_SIZE, f->hashes, (size_t) f->count * BLOB_FAST_HASH_SIZE);
        RoamId sum;
        sha256(b, len - ID_SIZE, &sum);
        memcpy(b + len - ID_SIZE, sum.b, ID_SIZE);
        *ret = b;
        *ret_len = len;
        return 0;
}

int blob_fast_parse(const void *data, size_t len, BlobFast **ret) {
        const uint8_t *b = data;
        if (len < FAST_HEADER_SIZE + ID_SIZE || memcmp(b, BLOB_FAST_MAGIC, 8) != 0)
                return -EBADMSG;
        if (get_le32(b + 8) != FAST_VERSION)
                return -EPROTONOSUPPORT;
        uint32_t cs = get_le32(b + 12);
        uint64_t size = get_le64(b + 16), n = get_le64(b + 24);
        if (!chunk_size_valid(cs) || n > INDEX_MAX_CHUNKS || n != size / cs + (size % cs ? 1 : 0))
                return -EBADMSG;
        if ((len - FAST_HEADER_SIZE - ID_SIZE) % BLOB_FAST_HASH_SIZE ||
            (len - FAST_HEADER_SIZE - ID_SIZE) / BLOB_FAST_HASH_SIZE != n)
                return -EBADMSG;
        RoamId sum;
        sha256(b, len - ID_SIZE, &sum);
        if (memcmp(sum.b, b + len - ID_SIZE, ID_SIZE) != 0)
                return -EBADMSG;
        _cleanup_(blob_fast_freep) BlobFast *f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        f->hashes = malloc(MAX(n, (uint64_t) 1) * BLOB_FAST_HASH_SIZE);
        if (!f->hashes)
                return -ENOMEM;
        f->chunk_size = cs;
        f->blob_size = size;
        f->count = n;
        f->seed = get_le64(b + 32);
        memcpy(f->index_id.b, b + 40, ID_SIZE);
        if (n)
                memcpy(f->hashes, b + FAST_HEADER_SIZE, (size_t) n * BLOB_FAST_HASH_SIZE);
        *ret = TAKE_PTR(f);
        return 0;
}

int blob_fast_save(const BlobFast *f, const char *path) {
        _cleanup_free_ void *data = NULL;
        size_t len;
        int r = blob_fast_serialize(f, &data, &len);
        if (r < 0)
                return r;
        r = write_file_replace(path, data, len, 0600, false);
        if (r < 0)
                return err_set(r, "cannot write '%s': %s", path, strerror(-r));
        return 0;
}

int blob_fast_load(const char *path, BlobFast **ret) {
        const size_t max = FAST_HEADER_SIZE + (size_t) INDEX_MAX_CHUNKS * BLOB_FAST_HASH_SIZE + ID_SIZE;
        _cleanup_free_ char *data = NULL;
        size_t len;
        int r = read_full_file(path, max, &data, &len);
        if (r < 0)
                return r == -EFBIG ? -EBADMSG : r;
        return blob_fast_parse(data, len, ret);
}

void blob_base_free(BlobBase *b) {
        if (!b)
                return;
        page_index_unref(b->pages);
        blob_fast_free(b->fast);
        index_free(b->index);
        free(b);
}

/* Chunks of a base re-hashed from the store: enough to catch a sidecar that
 * was paired with the wrong index, cheap enough to do every time. */
#define BASE_SAMPLES 4

int blob_base_new(Store *s, const BlobFast *fast, BlobBase **ret) {
        char hex[ID_HEX_SIZE];
        id_to_hex(&fast->index_id, hex);
        if (fast->chunk_size != store_chunk_size(s))
                return err_set(-EBADMSG, "fast hashes of blob %.12s are for %u-byte chunks, the store has %u", hex,
                               fast->chunk_size, store_chunk_size(s));
        _cleanup_(index_freep) Index *x = NULL;
        int r = blob_load_index(s, &fast->index_id, &x);
        if (r < 0)
                return r;
        if (x->chunk_size != fast->chunk_size || x->blob_size != fast->blob_size || x->n_chunks != fast->count)
                return err_set(-EBADMSG, "fast hashes do not match blob %.12s (size or chunk count)", hex);
        FastHash zero_full, zero_last;
        fast_hash_zero(x->chunk_size, fast->seed, zero_full);
        fast_hash_zero(chunk_len_of(x->chunk_size, x->blob_size, x->n_chunks ? x->n_chunks - 1 : 0), fast->seed,
                       zero_last);
        uint64_t nonzero = 0;
        for (uint64_t i = 0; i < x->n_chunks; i++) {
                if (id_is_null(&x->ids[i])) {
                        const uint8_t *z = index_chunk_len(x, i) == x->chunk_size ? zero_full : zero_last;
                        if (memcmp(fast->hashes[i], z, BLOB_FAST_HASH_SIZE) != 0)
                                return err_set(-EBADMSG, "fast hashes do not match blob %.12s (chunk %llu)", hex,
                                               (unsigned long long) i);
                        continue;
                }
                nonzero++;
                /* runs of one id (a repeated page pattern) need one lookup */
                if (i > 0 && id_equal(&x->ids[i], &x->ids[i - 1]))
                        continue;
                r = store_chunk_has(s, &x->ids[i]);
                if (r < 0)
                        return r;
                if (r == 0)
                        return err_set(-ENOENT, "chunk %llu of blob %.12s is no longer in the store",
                                       (unsigned long long) i, hex);
        }
        if (nonzero > 0) {
                _cleanup_(chunk_codec_freep) ChunkCodec *codec = chunk_codec_new(s);
                _cleanup_free_ uint8_t *buf = malloc(x->chunk_size);
                if (!codec || !buf)
                        return -ENOMEM;
                /* the k-th sample: the first non-zero chunk at or after k/BASE_SAMPLES of the blob */
                for (unsigned k = 0; k < BASE_SAMPLES; k++) {
                        uint64_t i = x->n_chunks * k / BASE_SAMPLES;
                        while (i < x->n_chunks && id_is_null(&x->ids[i]))
                                i++;
                        if (i == x->n_chunks)
                                break;
                        size_t n;
                        r = store_chunk_get(s, codec, &x->ids[i], buf, &n);
                        if (r < 0)
                                return r;
                        FastHash h;
                        fast_hash(buf, n, fast->seed, h);
                        if (n != index_chunk_len(x, i) || memcmp(h, fast->hashes[i], BLOB_FAST_HASH_SIZE) != 0)
                                return err_set(-EBADMSG, "fast hashes do not match blob %.12s (chunk %llu)", hex,
                                               (unsigned long long) i);
                }
        }
        _cleanup_free_ BlobBase *b = calloc(1, sizeof *b);
        if (!b)
                return -ENOMEM;
        b->fast = calloc(1, sizeof *b->fast);
        if (!b->fast)
                return -ENOMEM;
        *b->fast = *fast;
        b->fast->hashes = malloc(MAX(fast->count, (uint64_t) 1) * BLOB_FAST_HASH_SIZE);
        if (!b->fast->hashes) {
                free(b->fast);
                return -ENOMEM;
        }
        if (fast->count)
                memcpy(b->fast->hashes, fast->hashes, (size_t) fast->count * BLOB_FAST_HASH_SIZE);
        b->index = TAKE_PTR(x);
        /* its page index, when it has one (never built here: an import
         * that wants one and finds none reads the chunks instead) */
        r = page_index_get(s, &fast->index_id, 0, &b->pages);
        if (r == -ENOMEM) {
                blob_base_free(TAKE_PTR(b));
                return r;
        }
        if (r < 0) {
                b->pages = NULL;
                err_clear();
        }
        *ret = TAKE_PTR(b);
        return 0;
}

int blob_base_load(Store *s, const char *path, BlobBase **ret) {
        _cleanup_(blob_fast_freep) BlobFast *f = NULL;
        int r = blob_fast_load(path, &f);
        if (r >= 0)
                r = blob_base_new(s, f, ret);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                err_clear();
                *ret = NULL;
        }
        return 0;
}

/* Chunk i of j->index (not all zero) from the store to its place in j->fd;
 * buf holds a chunk. */
static int write_chunk(Job *j, ChunkCodec *codec, uint8_t *buf, uint64_t i) {
        const Index *x = j->index;
        uint32_t want = index_chunk_len(x, i);
        size_t n;
        int r = store_chunk_get(j->store, codec, &x->ids[i], buf, &n);
        if (r >= 0 && n != want) {
                char hex[ID_HEX_SIZE];
                r = err_set(-EBADMSG, "chunk %s has %zu bytes where the index wants %u", id_to_hex(&x->ids[i], hex),
                            n, want);
        }
        if (r >= 0) {
                r = loop_pwrite(j->fd, buf, n, i * x->chunk_size);
                if (r < 0)
                        r = err_set(r, "cannot write output: %s", strerror(-r));
        }
        return r;
}

static void *export_worker(void *arg) {
        Job *j = arg;
        Index *x = j->index;
        _cleanup_(chunk_codec_freep) ChunkCodec *codec = chunk_codec_new(j->store);
        _cleanup_free_ uint8_t *buf = malloc(x->chunk_size);
        if (!codec || !buf) {
                job_fail(j, -ENOMEM);
                return NULL;
        }
        for (;;) {
                if (atomic_load(&j->error) || job_cancelled(j))
                        break;
                uint64_t i = atomic_fetch_add(&j->next, 1);
                if (i >= x->n_chunks)
                        break;
                uint32_t want = index_chunk_len(x, i);
                if (id_is_null(&x->ids[i])) {
                        progress_add(j->progress, want);
                        continue;
                }
                int r = write_chunk(j, codec, buf, i);
                if (r < 0) {
                        job_fail(j, r);
                        break;
                }
                progress_add(j->progress, want);
        }
        return NULL;
}

int blob_export_fd(Store *s, const Index *x, int fd, const BlobOptions *o, BlobStats *ret_stats) {
        static const BlobOptions defaults = { 0 };
        if (!o)
                o = &defaults;
        double t0 = now_s();
        if (x->chunk_size != store_chunk_size(s))
                return err_set(-EINVAL, "index chunk size %u differs from the store's %u", x->chunk_size,
                               store_chunk_size(s));
        if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t) x->blob_size) < 0)
                return err_set(-errno, "cannot size output: %s", strerror(errno));
        Job j = { .store = s, .index = (Index *) x, .fd = fd, .progress = o->progress, .cancel = o->cancel };
        pthread_mutex_init(&j.lock, NULL);
        int r = run_pool(&j, pick_threads(o->threads), export_worker);
        pthread_mutex_destroy(&j.lock);
        if (r < 0)
                return r;
        if (ret_stats) {
                uint64_t zero = 0;
                for (uint64_t i = 0; i < x->n_chunks; i++)
                        zero += id_is_null(&x->ids[i]);
                *ret_stats = (BlobStats){ .chunks = x->n_chunks, .zero_chunks = zero, .seconds = now_s() - t0 };
        }
        return 0;
}

/* The chunks of a patch to write, one per worker at a time (Job.index is
 * the new blob's index, Job.captured unused). */
typedef struct PatchJob {
        Job job;
        const uint64_t *todo;
        uint64_t n;
} PatchJob;

static void *patch_worker(void *arg) {
        PatchJob *p = arg;
        Job *j = &p->job;
        _cleanup_(chunk_codec_freep) ChunkCodec *codec = chunk_codec_new(j->store);
        _cleanup_free_ uint8_t *buf = malloc(j->index->chunk_size);
        if (!codec || !buf) {
                job_fail(j, -ENOMEM);
                return NULL;
        }
        for (;;) {
                uint64_t k = atomic_fetch_add(&j->next, 1);
                if (k >= p->n || atomic_load(&j->error) < 0)
                        break;
                int r = write_chunk(j, codec, buf, p->todo[k]);
                if (r < 0) {
                        job_fail(j, r);
                        break;
                }
        }
        return NULL;
}

int blob_patch_fd(Store *s, const Index *from, const Index *to, int fd, BlobStats *ret_stats) {
        double t0 = now_s();
        if (from->chunk_size != store_chunk_size(s) || to->chunk_size != store_chunk_size(s))
                return err_set(-EINVAL, "index chunk size differs from the store's %u", store_chunk_size(s));
        _cleanup_free_ uint8_t *buf = malloc(to->chunk_size);
        _cleanup_free_ uint64_t *todo = malloc(MAX(to->n_chunks, (uint64_t) 1) * sizeof *todo);
        if (!buf || !todo)
                return -ENOMEM;
        if (ftruncate(fd, (off_t) to->blob_size) < 0)
                return err_set(-errno, "cannot size output: %s", strerror(errno));
        uint64_t written = 0, zero = 0, n = 0;
        for (uint64_t i = 0; i < to->n_chunks; i++) {
                const RoamId *want = &to->ids[i];
                uint32_t len = index_chunk_len(to, i);
                /* the old content of the chunk's range, if the old blob had it whole */
                bool same_range = i < from->n_chunks && index_chunk_len(from, i) == len;
                if (id_is_null(want))
                        zero++;
                if (same_range && id_equal(&from->ids[i], want))
                        continue;
                if (id_is_null(want)) {
                        if (i >= from->n_chunks)
                                continue; /* beyond the old end: a hole already */
                        if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t) (i * to->chunk_size),
                                      len) < 0) {
                                memset(buf, 0, len);
                                int r = loop_pwrite(fd, buf, len, i * to->chunk_size);
                                if (r < 0)
                                        return err_set(r, "cannot write output: %s", strerror(-r));
                        }
                        written++;
                        continue;
                }
                todo[n++] = i; /* read from the store and written by the workers */
        }
        if (n > 0) {
                /* a RAM file patched in a hand-over's pause: hundreds of chunks,
                 * each read, decrypted, decompressed and verified; on every core */
                PatchJob p = { .job = { .store = s, .index = (Index *) to, .fd = fd }, .todo = todo, .n = n };
                pthread_mutex_init(&p.job.lock, NULL);
                int r = run_pool(&p.job, (unsigned) MIN((uint64_t) pick_threads(0), n), patch_worker);
                pthread_mutex_destroy(&p.job.lock);
                if (r < 0)
                        return r;
                written += n;
        }
        if (ret_stats)
                *ret_stats = (BlobStats){ .chunks = written, .zero_chunks = zero, .seconds = now_s() - t0 };
        return 0;
}
