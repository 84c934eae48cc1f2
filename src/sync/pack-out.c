/* SPDX-License-Identifier: MIT */
#include "pack-out.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"
#include "../basic/idset.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "obj-delta.h"
#include "page-chunk.h"
#include "wire.h"

/* The objects of the bases, read once for all the deltas of a pack. */
typedef struct BaseObjects {
        unsigned n;
        void *data[PAGE_CHUNK_MAX_BASES];
        size_t len[PAGE_CHUNK_MAX_BASES];
} BaseObjects;

static void base_objects_done(BaseObjects *bo) {
        for (unsigned i = 0; i < bo->n; i++)
                free(bo->data[i]);
}

static int base_objects_load(Store *s, PageSender *ps, BaseObjects *bo) {
        unsigned n;
        const RoamId *ids = page_sender_bases(ps, &n);
        for (bo->n = 0; bo->n < n; bo->n++) {
                int k = store_object_get(s, &ids[bo->n], STORE_OBJECT_MAX, &bo->data[bo->n], &bo->len[bo->n]);
                if (k == -ENOMEM)
                        return k;
                if (k < 0) {
                        bo->data[bo->n] = NULL; /* a base not here takes no part */
                        err_clear();
                }
        }
        return 0;
}

/* An object's record: the smallest of its zstd frame and its deltas against
 * the bases (*ret_delta says which). */
static int object_record(const BaseObjects *bo, const void *data, size_t len, void **ret, size_t *ret_len,
                         bool *ret_delta) {
        int k = pack_object_compress(data, len, ret, ret_len);
        *ret_delta = false;
        for (unsigned i = 0; k >= 0 && bo && len >= OBJ_DELTA_MIN && i < bo->n; i++) {
                uint8_t *d;
                size_t dlen;
                if (!bo->data[i])
                        continue;
                int r = obj_delta_encode(bo->data[i], bo->len[i], data, len, i, *ret_len, &d, &dlen);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        continue; /* not smaller */
                free(*ret);
                *ret = d;
                *ret_len = dlen;
                *ret_delta = true;
        }
        return k;
}

int pack_put_objects(Store *s, const Reach *want, const Reach *have, PageSender *ps, PackWriter *pw,
                     bool *ret_deltas) {
        size_t pos = 0;
        RoamId id;
        int k = 0;
        *ret_deltas = false;
        /* with bases, an object may go as a delta against one of them */
        BaseObjects bo = { 0 };
        if (ps)
                k = base_objects_load(s, ps, &bo);
        while (k >= 0 && idset_next(want->objects, &pos, &id)) {
                if (idset_contains(have->objects, &id))
                        continue;
                _cleanup_free_ void *data = NULL, *z = NULL;
                size_t len, zlen;
                bool delta = false;
                k = store_object_get(s, &id, STORE_OBJECT_MAX, &data, &len);
                if (k >= 0)
                        k = object_record(ps ? &bo : NULL, data, len, &z, &zlen, &delta);
                if (k >= 0)
                        k = pack_writer_add(pw, PACK_OBJECT, &id, z, zlen);
                if (k >= 0 && delta) {
                        pw->n_delta++;
                        *ret_deltas = true;
                }
        }
        base_objects_done(&bo);
        return k;
}

/* ---- a pack sent while it is made ---- */

#define OUT_THREADS 8u

typedef struct Slot {
        void *z; /* the record's payload, once made */
        size_t zlen;
        int err;
        _Atomic bool ready; /* set after the above */
} Slot;

struct PackOut {
        Store *s;
        uint8_t *head; /* prefix, pack header and object records */
        size_t head_len, head_off;
        RoamId *ids;
        Slot *slot;
        size_t n;
        /* the reader: record `cur`, of which `off` bytes went */
        size_t cur, off;
        uint8_t rec_head[WIRE_RECORD_HEADER];
        /* the workers */
        pthread_mutex_t lock;
        pthread_cond_t made;
        _Atomic size_t next;
        _Atomic bool stop;
        pthread_t threads[OUT_THREADS];
        PageSender *senders[OUT_THREADS];
        ChunkCodec *codecs[OUT_THREADS];
        unsigned n_threads;
        _Atomic unsigned started; /* workers that took their sender/codec */
        PackOutStats st;
        uint64_t t0;
        _Atomic uint32_t paged;
};

typedef struct OutWorker {
        PackOut *po;
        unsigned no;
} OutWorker;

static void *out_worker(void *arg) {
        PackOut *po = ((OutWorker *) arg)->po;
        unsigned no = ((OutWorker *) arg)->no;
        free(arg);
        PageSender *ps = po->senders[no];
        ChunkCodec *codec = po->codecs[no];
        for (;;) {
                size_t i = atomic_fetch_add(&po->next, 1);
                if (i >= po->n || atomic_load(&po->stop))
                        break;
                void *z = NULL;
                size_t zlen = 0;
                int r = ps ? page_sender_payload(ps, &po->ids[i], &z, &zlen, NULL)
                           : store_chunk_get_compressed(po->s, codec, &po->ids[i], &z, &zlen);
                if (r >= 0 && ps && page_chunk_is(z, zlen))
                        atomic_fetch_add(&po->paged, 1);
                if (r < 0)
                        err_clear(); /* the reader ends the body short */
                pthread_mutex_lock(&po->lock);
                po->slot[i].z = z;
                po->slot[i].zlen = zlen;
                po->slot[i].err = r;
                atomic_store(&po->slot[i].ready, true);
                if (i + 1 == po->n)
                        po->st.made_ns = now_ns() - po->t0;
                pthread_cond_broadcast(&po->made);
                pthread_mutex_unlock(&po->lock);
        }
        return NULL;
}

void pack_out_free(PackOut *po) {
        if (!po)
                return;
        atomic_store(&po->stop, true);
        for (unsigned i = 0; i < po->n_threads; i++)
                pthread_join(po->threads[i], NULL);
        for (unsigned i = 0; i < OUT_THREADS; i++) {
                page_sender_free(po->senders[i]);
                chunk_codec_free(po->codecs[i]);
        }
        for (size_t i = 0; po->slot && i < po->n; i++)
                free(po->slot[i].z);
        free(po->slot);
        free(po->ids);
        free(po->head);
        pthread_mutex_destroy(&po->lock);
        pthread_cond_destroy(&po->made);
        free(po);
}

/* The chunks of want not in have, and whether their stored frames (each
 * record is at most that) fit after `used` bytes within max. */
static int out_list(PackOut *po, const Reach *want, const Reach *have, size_t used, size_t max,
                    RoamId *ret_missing, uint64_t *ret_bytes) {
        po->ids = malloc(MAX(idset_size(want->chunks), (size_t) 1) * sizeof *po->ids);
        if (!po->ids)
                return -ENOMEM;
        uint64_t bytes = used;
        size_t pos = 0;
        RoamId id;
        while (idset_next(want->chunks, &pos, &id)) {
                if (idset_contains(have->chunks, &id))
                        continue;
                uint64_t size;
                int r = store_chunk_stat(po->s, &id, &size);
                if (r == -ENOENT)
                        *ret_missing = id;
                if (r < 0)
                        return r;
                bytes += WIRE_RECORD_HEADER + size;
                if (bytes > max || po->n >= PACK_MAX_CHUNKS)
                        return -E2BIG;
                po->ids[po->n++] = id;
        }
        *ret_bytes = bytes;
        po->slot = calloc(MAX(po->n, (size_t) 1), sizeof *po->slot);
        return po->slot ? 0 : -ENOMEM;
}

int pack_out_new(Store *s, const Reach *want, const Reach *have, PageSender *ps, size_t max, const void *prefix,
                 size_t prefix_len, PackOut **ret, RoamId *ret_missing) {
        if (max == 0 || max > PACK_MAX_BYTES)
                max = PACK_MAX_BYTES;
        PackOut *po = calloc(1, sizeof *po);
        if (!po)
                return -ENOMEM;
        po->s = s;
        po->t0 = now_ns();
        pthread_mutex_init(&po->lock, NULL);
        pthread_cond_init(&po->made, NULL);
        PackWriter pw;
        int r = pack_writer_init(&pw, max);
        bool deltas = false;
        uint64_t bound = 0;
        if (r >= 0)
                r = pack_put_objects(s, want, have, ps, &pw, &deltas);
        if (r >= 0)
                r = out_list(po, want, have, pw.len, max, ret_missing, &bound);
        if (r >= 0) {
                /* every record announced: the header says complete */
                pack_writer_finish(&pw, PACK_COMPLETE | (ps ? PACK_PAGED : 0) | (deltas ? PACK_DELTA : 0));
                put_le32(pw.buf + 12, (uint32_t) po->n);
                po->st = (PackOutStats){ .n_objects = pw.n_objects, .n_delta = pw.n_delta, .n_chunks = (uint32_t) po->n,
                                         .object_bytes = pw.object_bytes, .bound = prefix_len + bound };
                po->head_len = prefix_len + pw.len;
                po->head = malloc(po->head_len);
                if (!po->head)
                        r = -ENOMEM;
        }
        if (r >= 0) {
                memcpy(po->head, prefix, prefix_len);
                memcpy(po->head + prefix_len, pw.buf, pw.len);
        }
        if (pw.buf)
                pack_writer_done(&pw);
        /* a sender and codec per worker, made here: the caller's ps may go
         * when this returns */
        unsigned want_threads = (unsigned) MIN((size_t) MIN(cpus_online(), OUT_THREADS), MAX(po->n, (size_t) 1));
        for (unsigned i = 0; r >= 0 && i < want_threads; i++) {
                r = ps ? page_sender_clone(ps, &po->senders[i])
                       : (po->codecs[i] = chunk_codec_new(s)) ? 0 : -ENOMEM;
        }
        for (unsigned i = 0; r >= 0 && i < want_threads && po->n > 0; i++) {
                OutWorker *w = malloc(sizeof *w);
                if (!w) {
                        r = -ENOMEM;
                        break;
                }
                *w = (OutWorker){ .po = po, .no = i };
                if (pthread_create(&po->threads[po->n_threads], NULL, out_worker, w) != 0) {
                        free(w);
                        break;
                }
                po->n_threads++;
        }
        if (r >= 0 && po->n > 0 && po->n_threads == 0)
                r = -EAGAIN;
        if (r < 0) {
                pack_out_free(po);
                return r;
        }
        *ret = po;
        return 0;
}

ssize_t pack_out_read(PackOut *po, void *buf, size_t max) {
        uint8_t *out = buf;
        size_t done = 0;
        if (po->head_off < po->head_len) {
                done = MIN(max, po->head_len - po->head_off);
                memcpy(out, po->head + po->head_off, done);
                po->head_off += done;
                po->st.bytes += done;
                return (ssize_t) done;
        }
        while (done < max && po->cur < po->n) {
                Slot *sl = &po->slot[po->cur];
                if (!atomic_load(&sl->ready)) {
                        if (done > 0)
                                break; /* what is here goes first */
                        pthread_mutex_lock(&po->lock);
                        while (!atomic_load(&sl->ready))
                                pthread_cond_wait(&po->made, &po->lock);
                        pthread_mutex_unlock(&po->lock);
                }
                if (sl->err < 0)
                        return sl->err;
                if (po->off == 0) {
                        memcpy(po->rec_head, &po->ids[po->cur], ID_SIZE);
                        put_le32(po->rec_head + ID_SIZE, (uint32_t) sl->zlen);
                }
                size_t k = wire_record_copy(out + done, max - done, po->rec_head, sl->z, sl->zlen, po->off);
                po->off += k;
                done += k;
                if (po->off == WIRE_RECORD_HEADER + sl->zlen) {
                        free(sl->z);
                        sl->z = NULL;
                        po->cur++;
                        po->off = 0;
                }
        }
        po->st.bytes += done;
        return (ssize_t) done;
}

void pack_out_stats(PackOut *po, PackOutStats *ret) {
        pthread_mutex_lock(&po->lock);
        *ret = po->st;
        pthread_mutex_unlock(&po->lock);
        ret->n_paged = atomic_load(&po->paged);
}
