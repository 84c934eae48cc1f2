/* SPDX-License-Identifier: MIT */
#include "pages.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../store/blob.h"
#include "obj-delta.h"

#define PAGE 4096u
#define SMALL_FRAME 512 /* a frame this small has nothing worth referencing */
/* A sender builds the page index of a base it has none of only when that
 * is quick (about 20 ms here): a request in a hand-over's pause never waits
 * for the index of a big blob (those are built where the blob is made, or
 * after a pull of an image, sync.c). */
#define PAGES_BUILD_MAX (16u << 20)

bool pages_enabled(void) {
        const char *e = getenv("ROAM_PAGE_DEDUP");
        return !e || strcmp(e, "0") != 0;
}

/* ---- the sender ---- */

struct PageSender {
        Store *s;
        unsigned n;
        RoamId ids[PAGE_CHUNK_MAX_BASES];
        PageIndex *x[PAGE_CHUNK_MAX_BASES]; /* NULL: no part */
        unsigned usable;
        ChunkCodec *codec;
        ZSTD_CCtx *cctx;
        ZSTD_DCtx *dctx;
        uint8_t *plain;
        uint8_t *buf;
        size_t cap;
};

void page_sender_free(PageSender *ps) {
        if (!ps)
                return;
        for (unsigned i = 0; i < ps->n; i++)
                page_index_unref(ps->x[i]);
        chunk_codec_free(ps->codec);
        ZSTD_freeCCtx(ps->cctx);
        ZSTD_freeDCtx(ps->dctx);
        free(ps->plain);
        free(ps->buf);
        free(ps);
}

/* The scratch of a sender (one per thread). */
static int sender_scratch(PageSender *ps) {
        ps->codec = chunk_codec_new(ps->s);
        ps->cctx = ZSTD_createCCtx();
        ps->dctx = ZSTD_createDCtx();
        ps->plain = malloc(store_chunk_size(ps->s));
        return ps->codec && ps->cctx && ps->dctx && ps->plain ? 0 : -ENOMEM;
}

int page_sender_new(Store *s, const RoamId *bases, unsigned n, PageSender **ret) {
        if (n > PAGE_CHUNK_MAX_BASES)
                return -EINVAL;
        _cleanup_(page_sender_freep) PageSender *ps = calloc(1, sizeof *ps);
        if (!ps)
                return -ENOMEM;
        ps->s = s;
        ps->n = n;
        if (n > 0)
                memcpy(ps->ids, bases, n * sizeof *bases);
        for (unsigned i = 0; i < n; i++) {
                /* a base this store lacks (or cannot index now) is no base */
                int r = page_index_get(s, &bases[i], PAGES_BUILD_MAX, &ps->x[i]);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        ps->x[i] = NULL;
                        err_clear();
                }
                if (ps->x[i])
                        ps->usable++;
        }
        int r = sender_scratch(ps);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(ps);
        return 0;
}

int page_sender_clone(const PageSender *from, PageSender **ret) {
        _cleanup_(page_sender_freep) PageSender *ps = calloc(1, sizeof *ps);
        if (!ps)
                return -ENOMEM;
        ps->s = from->s;
        ps->n = from->n;
        memcpy(ps->ids, from->ids, sizeof ps->ids);
        ps->usable = from->usable;
        for (unsigned i = 0; i < from->n; i++)
                ps->x[i] = page_index_ref(from->x[i]);
        int r = sender_scratch(ps);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(ps);
        return 0;
}

const RoamId *page_sender_bases(const PageSender *ps, unsigned *ret_n) {
        *ret_n = ps->n;
        return ps->ids;
}

static bool sender_find(void *userdata, const void *page, PageRef *ret) {
        PageSender *ps = userdata;
        for (unsigned i = 0; i < ps->n; i++) {
                uint32_t p;
                if (ps->x[i] && page_index_lookup(ps->x[i], page_index_hash(ps->x[i], page), &p)) {
                        *ret = (PageRef){ .base = (uint8_t) i, .page = p };
                        return true;
                }
        }
        return false;
}

/* The chunk of plain bytes ps->plain[0..n) as pages, when some are
 * references and that is smaller than its stored frame of flen bytes: 1 with
 * a copy in *ret, 0 when not. */
static int pages_if_smaller(PageSender *ps, size_t n, uint64_t flen, void **ret, size_t *ret_len,
                            uint32_t *ret_refs) {
        uint32_t refs = 0;
        int k = page_chunk_encode(ps->plain, n, ps->cctx, 1, sender_find, ps, &ps->buf, &ps->cap, &refs);
        if (k <= 0 || (uint64_t) k >= flen)
                return k < 0 ? k : 0;
        void *p = malloc((size_t) k);
        if (!p)
                return -ENOMEM;
        memcpy(p, ps->buf, (size_t) k);
        *ret = p;
        *ret_len = (size_t) k;
        if (ret_refs)
                *ret_refs = refs;
        return 1;
}

int page_sender_payload(PageSender *ps, const RoamId *id, void **ret, size_t *ret_len, uint32_t *ret_refs) {
        /* a chunk stored a moment ago (a hand-over's last checkpoint,
         * store_keep_fresh()): from its plain bytes in memory */
        size_t n;
        uint64_t fresh_len;
        if (ps->usable > 0 && store_chunk_fresh(ps->s, id, ps->plain, &n) > 0 &&
            store_chunk_stat(ps->s, id, &fresh_len) >= 0 && fresh_len >= SMALL_FRAME) {
                int k = pages_if_smaller(ps, n, fresh_len, ret, ret_len, ret_refs);
                if (k != 0)
                        return k < 0 ? k : 0;
        }
        err_clear();
        void *frame;
        size_t flen;
        int r = store_chunk_get_compressed(ps->s, ps->codec, id, &frame, &flen);
        if (r < 0)
                return r;
        if (ps->usable > 0 && flen >= SMALL_FRAME) {
                n = ZSTD_decompressDCtx(ps->dctx, ps->plain, store_chunk_size(ps->s), frame, flen);
                int k = !ZSTD_isError(n) && n > 0 ? pages_if_smaller(ps, n, flen, ret, ret_len, ret_refs) : 0;
                if (k != 0) {
                        free(frame);
                        return k < 0 ? k : 0;
                }
        }
        *ret = frame;
        *ret_len = flen;
        if (ret_refs)
                *ret_refs = 0;
        return 0;
}

/* ---- the receiver ---- */

typedef struct Pick {
        Store *s;
        const IdSet *missing;
        RoamId *out;
        unsigned n;
        IdSet *seen;
} Pick;

/* Adds index object id when it is a complete, non-empty blob here. */
static int consider(Pick *p, const RoamId *id) {
        if (p->n >= PAGE_CHUNK_MAX_BASES)
                return 0;
        int r = idset_add(p->seen, id);
        if (r <= 0)
                return r;
        _cleanup_free_ void *data = NULL;
        size_t len;
        r = store_object_get(p->s, id, STORE_OBJECT_MAX, &data, &len);
        if (r < 0 || !index_is_index(data, len)) {
                err_clear();
                return 0;
        }
        _cleanup_(index_freep) Index *x = NULL;
        if (index_parse(data, len, &x) < 0 || x->chunk_size != store_chunk_size(p->s) ||
            x->blob_size < PAGE)
                return 0;
        uint64_t nonzero = 0;
        for (uint64_t i = 0; i < x->n_chunks; i++) {
                if (id_is_null(&x->ids[i]))
                        continue;
                if (p->missing && idset_contains(p->missing, &x->ids[i]))
                        return 0;
                nonzero++;
        }
        if (nonzero == 0)
                return 0;
        p->out[p->n++] = *id;
        return 0;
}

int pages_pick_bases(Store *s, const Reach *need, const IdSet *missing, const RoamId *have, size_t n_have,
                     RoamId *ret, unsigned *ret_n) {
        Pick p = { .s = s, .missing = missing, .out = ret, .seen = idset_new() };
        if (!p.seen)
                return -ENOMEM;
        int r = 0;
        /* below the have objects first: whole by definition, and for a
         * session the earlier state of the same RAM */
        for (size_t i = 0; i < n_have && r >= 0; i++) {
                _cleanup_(reach_freep) Reach *h = reach_new();
                if (!h) {
                        r = -ENOMEM;
                        break;
                }
                r = reach_add_object(s, h, &have[i]);
                size_t pos = 0;
                RoamId id;
                while (r >= 0 && idset_next(h->objects, &pos, &id))
                        r = consider(&p, &id);
        }
        size_t pos = 0;
        RoamId id;
        while (r >= 0 && need && idset_next(need->objects, &pos, &id))
                r = consider(&p, &id);
        idset_free(p.seen);
        if (r < 0)
                return r;
        *ret_n = p.n;
        return 0;
}

/* decoded base chunks, shared by the threads of a transfer: the pages of a
 * file in the page cache are often the blocks of one master chunk */
#define CACHE_SLOTS 32

typedef struct Slot {
        RoamId id;
        uint8_t *data; /* chunk_size bytes */
        size_t len;
        uint64_t used;
} Slot;

struct PageBases {
        Store *s;
        unsigned n;
        RoamId ids[PAGE_CHUNK_MAX_BASES];
        Index *x[PAGE_CHUNK_MAX_BASES]; /* NULL: cannot be read here */
        const uint8_t *plain[PAGE_CHUNK_MAX_BASES]; /* a plain copy of the base's bytes, or NULL */
        size_t plain_len[PAGE_CHUNK_MAX_BASES];
        pthread_mutex_t lock;
        Slot slot[CACHE_SLOTS];
        uint64_t clock;
};

void page_bases_free(PageBases *b) {
        if (!b)
                return;
        for (unsigned i = 0; i < b->n; i++)
                index_free(b->x[i]);
        for (unsigned i = 0; i < CACHE_SLOTS; i++)
                free(b->slot[i].data);
        pthread_mutex_destroy(&b->lock);
        free(b);
}

int page_bases_new(Store *s, const RoamId *ids, unsigned n, PageBases **ret) {
        if (n > PAGE_CHUNK_MAX_BASES)
                return -EINVAL;
        PageBases *b = calloc(1, sizeof *b);
        if (!b)
                return -ENOMEM;
        pthread_mutex_init(&b->lock, NULL);
        b->s = s;
        b->n = n;
        if (n > 0)
                memcpy(b->ids, ids, n * sizeof *ids);
        for (unsigned i = 0; i < n; i++) {
                int r = blob_load_index(s, &ids[i], &b->x[i]);
                if (r == -ENOMEM) {
                        page_bases_free(b);
                        return r;
                }
                if (r < 0)
                        err_clear();
                if (b->x[i] && b->x[i]->chunk_size != store_chunk_size(s)) {
                        index_free(b->x[i]);
                        b->x[i] = NULL;
                }
        }
        *ret = b;
        return 0;
}

void page_bases_attach_plain(PageBases *b, const RoamId *id, const void *data, size_t len) {
        for (unsigned i = 0; i < b->n; i++)
                if (id_equal(&b->ids[i], id) && b->x[i] && len == b->x[i]->blob_size) {
                        b->plain[i] = data;
                        b->plain_len[i] = len;
                }
}

unsigned page_bases_count(const PageBases *b) {
        return b->n;
}

typedef struct Rebuild {
        PageBases *b;
        ChunkCodec *codec;
        uint8_t *tmp; /* chunk_size */
} Rebuild;

/* Copies page `page` of base `base` into out, from the cache or the store. */
static int rebuild_page(void *userdata, unsigned base, uint32_t page, void *out) {
        Rebuild *rb = userdata;
        PageBases *b = rb->b;
        const Index *x = base < b->n ? b->x[base] : NULL;
        if (!x || ((uint64_t) page + 1) * PAGE > x->blob_size)
                return -ESTALE;
        uint64_t at = (uint64_t) page * PAGE, ci = at / x->chunk_size;
        if (b->plain[base]) {
                /* unchecked bytes: the rebuilt chunk's hash decides */
                memcpy(out, b->plain[base] + at, PAGE);
                return 0;
        }
        size_t off = (size_t) (at % x->chunk_size);
        const RoamId *cid = &x->ids[ci];
        if (id_is_null(cid)) {
                memset(out, 0, PAGE);
                return 0;
        }
        pthread_mutex_lock(&b->lock);
        for (unsigned i = 0; i < CACHE_SLOTS; i++)
                if (b->slot[i].data && id_equal(&b->slot[i].id, cid)) {
                        bool ok = off + PAGE <= b->slot[i].len;
                        if (ok)
                                memcpy(out, b->slot[i].data + off, PAGE);
                        b->slot[i].used = ++b->clock;
                        pthread_mutex_unlock(&b->lock);
                        return ok ? 0 : -ESTALE;
                }
        pthread_mutex_unlock(&b->lock);
        size_t len;
        int r = store_chunk_get(b->s, rb->codec, cid, rb->tmp, &len);
        if (r < 0) {
                /* gone or damaged here: this reference cannot be served */
                if (r != -ENOMEM)
                        err_clear();
                return r == -ENOMEM ? r : -ESTALE;
        }
        if (off + PAGE > len)
                return -ESTALE;
        memcpy(out, rb->tmp + off, PAGE);
        pthread_mutex_lock(&b->lock);
        unsigned victim = 0;
        for (unsigned i = 1; i < CACHE_SLOTS; i++)
                if (b->slot[i].used < b->slot[victim].used)
                        victim = i;
        Slot *sl = &b->slot[victim];
        if (!sl->data)
                sl->data = malloc(store_chunk_size(b->s));
        if (sl->data) {
                memcpy(sl->data, rb->tmp, len);
                sl->id = *cid;
                sl->len = len;
                sl->used = ++b->clock;
        }
        pthread_mutex_unlock(&b->lock);
        return 0;
}

int page_bases_store(PageBases *b, ChunkCodec *codec, const RoamId *id, const void *payload, size_t len) {
        uint32_t cs = store_chunk_size(b->s);
        PageChunk pc;
        if (page_chunk_parse(payload, len, cs, b->n, &pc) < 0)
                return -ESTALE;
        uint8_t *out = chunk_codec_scratch(codec, 0), *tmp = chunk_codec_scratch(codec, 1);
        if (!out || !tmp)
                return -ENOMEM;
        /* (a one-shot decompression: rebuild_page()'s store reads may use
         * the same context between its calls) */
        Rebuild rb = { .b = b, .codec = codec, .tmp = tmp };
        int r = page_chunk_decode(&pc, chunk_codec_dctx(codec), out, rebuild_page, &rb);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return -ESTALE;
        /* the content address decides: anything else is fetched in full */
        RoamId got;
        sha256(out, pc.len, &got);
        if (!id_equal(&got, id))
                return -ESTALE;
        if (pc.len == cs && memory_is_zero(out, pc.len))
                return -ESTALE; /* never stored; the index marks it */
        r = store_chunk_has(b->s, id);
        if (r == 0)
                r = store_chunk_put(b->s, codec, id, out, pc.len);
        return r < 0 ? r : (int) pc.n_refs;
}

int page_bases_store_object(PageBases *b, const RoamId *id, const void *delta, size_t len, size_t max) {
        ObjDelta d;
        if (obj_delta_parse(delta, len, b->n, max, &d) < 0)
                return 0;
        _cleanup_free_ void *base = NULL;
        size_t blen;
        int r = store_object_get(b->s, &b->ids[d.base], STORE_OBJECT_MAX, &base, &blen);
        if (r < 0) {
                if (r == -ENOMEM)
                        return r;
                err_clear();
                return 0; /* not here: fetched whole */
        }
        _cleanup_free_ uint8_t *out = malloc(d.len);
        if (!out)
                return -ENOMEM;
        if (obj_delta_apply(&d, base, blen, out) < 0)
                return 0;
        /* the content address decides */
        RoamId got;
        sha256(out, d.len, &got);
        if (!id_equal(&got, id))
                return 0;
        r = store_object_put(b->s, out, d.len, &got);
        return r < 0 ? r : 1;
}
