/* SPDX-License-Identifier: MIT */
#include "blob.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"

#define MAX_THREADS 64

typedef struct Job {
        Store *store;
        Index *index;
        int fd;
        Progress *progress;
        _Atomic uint64_t next;
        _Atomic int error;
        _Atomic uint64_t zero_chunks, new_chunks, new_bytes, stored_bytes;
        char errdetail[512];
        pthread_mutex_t lock;
} Job;

static unsigned pick_threads(unsigned t) {
        if (t == 0) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                t = n > 0 ? (unsigned) n : 1;
        }
        return MIN(t, (unsigned) MAX_THREADS);
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

static int run_pool(Job *j, unsigned threads, void *(*fn)(void *)) {
        pthread_t tid[MAX_THREADS];
        unsigned started = 0;
        for (unsigned i = 1; i < threads; i++) {
                if (pthread_create(&tid[i], NULL, fn, j) != 0)
                        break;
                started = i;
        }
        fn(j); /* the calling thread works too */
        for (unsigned i = 1; i <= started; i++)
                pthread_join(tid[i], NULL);
        int r = atomic_load(&j->error);
        if (r < 0)
                return err_set(r, "%s", j->errdetail);
        return 0;
}

static void *import_worker(void *arg) {
        Job *j = arg;
        Store *s = j->store;
        Index *x = j->index;
        uint32_t cs = x->chunk_size;
        _cleanup_(chunk_codec_freep) ChunkCodec *codec = chunk_codec_new(s);
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
                if (atomic_load(&j->error))
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
                        x->ids[i] = ID_NULL;
                        atomic_fetch_add(&j->zero_chunks, 1);
                        progress_add(j->progress, len);
                        continue;
                }
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
                if (memory_is_zero(buf, len)) {
                        x->ids[i] = ID_NULL;
                        atomic_fetch_add(&j->zero_chunks, 1);
                        progress_add(j->progress, len);
                        continue;
                }
                RoamId id;
                sha256(buf, len, &id);
                x->ids[i] = id;
                int r = store_chunk_has(s, &id);
                if (r == 0) {
                        r = store_chunk_put(s, codec, &id, buf, len);
                        if (r >= 0) {
                                atomic_fetch_add(&j->new_chunks, 1);
                                atomic_fetch_add(&j->new_bytes, len);
                                atomic_fetch_add(&j->stored_bytes, (uint64_t) r);
                        }
                }
                if (r < 0) {
                        job_fail(j, r);
                        break;
                }
                progress_add(j->progress, len);
        }
        return NULL;
}

int blob_import_fd(Store *s, int fd, uint64_t size, const BlobOptions *o, RoamId *ret_id, BlobStats *ret_stats) {
        static const BlobOptions defaults = { 0 };
        if (!o)
                o = &defaults;
        double t0 = now_s();
        _cleanup_(index_freep) Index *x = NULL;
        int r = index_new(store_chunk_size(s), size, &x);
        if (r < 0)
                return err_set(r, "input is too large (%llu bytes)", (unsigned long long) size);
        /* the workers read the input in (nearly) increasing order: a wider readahead */
        (void) posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        Job j = { .store = s, .index = x, .fd = fd, .progress = o->progress };
        pthread_mutex_init(&j.lock, NULL);
        r = run_pool(&j, pick_threads(o->threads), import_worker);
        pthread_mutex_destroy(&j.lock);
        if (r < 0)
                return r;
        r = store_commit(s);
        if (r < 0)
                return r;
        _cleanup_free_ void *ser = NULL;
        size_t len;
        r = index_serialize(x, &ser, &len);
        if (r < 0)
                return r;
        RoamId id;
        r = store_object_put(s, ser, len, &id);
        if (r < 0)
                return r;
        if (ret_stats) {
                *ret_stats = (BlobStats){
                        .chunks = x->n_chunks,
                        .zero_chunks = j.zero_chunks,
                        .new_chunks = j.new_chunks,
                        .new_bytes = j.new_bytes,
                        .stored_bytes = j.stored_bytes,
                        .seconds = now_s() - t0,
                };
        }
        *ret_id = id;
        return 0;
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
                if (atomic_load(&j->error))
                        break;
                uint64_t i = atomic_fetch_add(&j->next, 1);
                if (i >= x->n_chunks)
                        break;
                uint32_t want = index_chunk_len(x, i);
                if (id_is_null(&x->ids[i])) {
                        progress_add(j->progress, want);
                        continue;
                }
                size_t n;
                int r = store_chunk_get(j->store, codec, &x->ids[i], buf, &n);
                if (r >= 0 && n != want) {
                        char hex[ID_HEX_SIZE];
                        r = err_set(-EBADMSG, "chunk %s has %zu bytes where the index wants %u",
                                    id_to_hex(&x->ids[i], hex), n, want);
                }
                if (r >= 0) {
                        r = loop_pwrite(j->fd, buf, n, i * x->chunk_size);
                        if (r < 0)
                                r = err_set(r, "cannot write output: %s", strerror(-r));
                }
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
        Job j = { .store = s, .index = (Index *) x, .fd = fd, .progress = o->progress };
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
