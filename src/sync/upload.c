/* SPDX-License-Identifier: MIT */
/* Making what a push or a hand-over sends in one request: a pack filled by
 * a thread per core (sync_pack_fill()), the upload of a remainder made whole
 * (sync_upload_build()) or while it is sent (sync_upload_stream()), and its
 * plan against what the remote holds (sync_upload_plan_new()). */
#include "sync.h"

#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"
#include "../basic/idset.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../store/reach.h"
#include "pack-out.h"
#include "pack.h"
#include "page-chunk.h"
#include "pages.h"
#include "sync-internal.h"

/* The chunk records of a pack are made by a thread per core: each reads its
 * chunks and, with a page sender, finds their pages in the bases (about
 * 0.3 ms a chunk: 650 chunks, the remainder of a busy 2 GiB desktop, took
 * 190 ms in one thread, in a hand-over's pause). Records go into the pack in
 * the order of the list. */
#define PACK_FILL_THREADS 8u

typedef struct FillJob {
        Store *s;
        PageSender *ps; /* NULL: the chunks as stored */
        const RoamId *ids;
        size_t n;
        void **z;
        size_t *zlen;
        int *err;
        size_t max;                  /* stop taking chunks beyond this many bytes */
        _Atomic size_t next, claimed; /* claimed: how many of ids were taken */
        _Atomic uint64_t bytes;
} FillJob;

static void *fill_worker(void *arg) {
        FillJob *j = arg;
        _cleanup_(chunk_codec_freep) ChunkCodec *codec = j->ps ? NULL : chunk_codec_new(j->s);
        _cleanup_(page_sender_freep) PageSender *ps = NULL;
        int r = j->ps ? page_sender_clone(j->ps, &ps) : codec ? 0 : -ENOMEM;
        for (;;) {
                size_t i = atomic_fetch_add(&j->next, 1);
                if (i >= j->n)
                        break;
                if (atomic_load(&j->bytes) > j->max) {
                        j->err[i] = -E2BIG; /* not made: the pack is full before it */
                        continue;
                }
                j->err[i] = r < 0 ? r
                            : ps  ? page_sender_payload(ps, &j->ids[i], &j->z[i], &j->zlen[i], NULL)
                                  : store_chunk_get_compressed(j->s, codec, &j->ids[i], &j->z[i], &j->zlen[i]);
                if (j->err[i] >= 0)
                        atomic_fetch_add(&j->bytes, j->zlen[i] + 40);
        }
        return NULL;
}

int sync_pack_fill(Store *s, const Reach *want, const Reach *have, PageSender *ps, PackWriter *pw,
                   bool *ret_complete, RoamId *ret_missing) {
        size_t pos = 0;
        RoamId id;
        bool deltas = false;
        int k = pack_put_objects(s, want, have, ps, pw, &deltas);
        /* the chunks the other side lacks, in the set's order */
        _cleanup_free_ RoamId *ids = NULL;
        size_t n = 0;
        if (k >= 0) {
                ids = malloc(MAX(idset_size(want->chunks), (size_t) 1) * sizeof *ids);
                if (!ids)
                        k = -ENOMEM;
        }
        pos = 0;
        while (k >= 0 && idset_next(want->chunks, &pos, &id))
                if (!idset_contains(have->chunks, &id))
                        ids[n++] = id;
        _cleanup_free_ void **z = NULL;
        _cleanup_free_ size_t *zlen = NULL;
        _cleanup_free_ int *err = NULL;
        if (k >= 0 && n > 0) {
                z = calloc(n, sizeof *z);
                zlen = calloc(n, sizeof *zlen);
                err = calloc(n, sizeof *err);
                if (!z || !zlen || !err)
                        k = -ENOMEM;
        }
        if (k >= 0 && n > 0) {
                FillJob j = { .s = s, .ps = ps, .ids = ids, .n = n, .z = z, .zlen = zlen, .err = err,
                              .max = pw->max > pw->len ? pw->max - pw->len : 0 };
                unsigned threads = (unsigned) MIN((size_t) MIN(cpus_online(), PACK_FILL_THREADS), n);
                run_threads(threads, fill_worker, &j);
        }
        for (size_t i = 0; k >= 0 && i < n; i++) {
                k = err[i];
                if (k == -ENOENT)
                        *ret_missing = ids[i];
                if (k >= 0)
                        k = pack_writer_add(pw, PACK_CHUNK, &ids[i], z[i], zlen[i]);
                if (k >= 0 && ps && page_chunk_is(z[i], zlen[i]))
                        pw->n_paged++;
        }
        for (size_t i = 0; z && i < n; i++)
                free(z[i]);
        *ret_complete = k >= 0;
        if (k == -E2BIG)
                k = 0; /* full: the receiver gets the rest the usual way */
        if (k >= 0)
                pack_writer_finish(pw, (*ret_complete ? PACK_COMPLETE : 0) | (ps ? PACK_PAGED : 0) |
                                               (deltas ? PACK_DELTA : 0));
        return k;
}

struct SyncUploadPlan {
        Reach *have;
        RoamId bases[PAGE_CHUNK_MAX_BASES];
        unsigned nb;    /* of them */
        PageSender *ps; /* NULL: no bases, chunks go as stored */
};

void sync_upload_plan_free(SyncUploadPlan *p) {
        if (!p)
                return;
        reach_free(p->have);
        page_sender_free(p->ps);
        free(p);
}

/* The plan's first half: what is below the haves. */
static int plan_have(Store *s, const RoamId *haves, size_t n_have, SyncUploadPlan **ret) {
        _cleanup_(sync_upload_plan_freep) SyncUploadPlan *p = calloc(1, sizeof *p);
        if (!p || !(p->have = reach_new()))
                return -ENOMEM;
        for (size_t i = 0; i < n_have; i++) {
                int k = reach_add_object(s, p->have, &haves[i]);
                if (k < 0)
                        return k;
        }
        *ret = TAKE_PTR(p);
        return 0;
}

/* The second: the bases, the blobs below what the remote holds whole (the
 * pre-copy of a hand-over), against which a changed chunk goes as its
 * changed pages. */
static int plan_bases(Store *s, SyncUploadPlan *p, const RoamId *haves, size_t n_have, bool no_pages) {
        if (!no_pages && pages_enabled()) {
                int k = pages_pick_bases(s, NULL, NULL, haves, n_have, p->bases, &p->nb);
                if (k >= 0 && p->nb > 0)
                        k = page_sender_new(s, p->bases, p->nb, &p->ps);
                if (k < 0)
                        return k;
        }
        if (!p->ps)
                p->nb = 0;
        return 0;
}

int sync_upload_plan_new(Store *s, const RoamId *haves, size_t n_have, bool no_pages, SyncUploadPlan **ret) {
        _cleanup_(sync_upload_plan_freep) SyncUploadPlan *p = NULL;
        int k = plan_have(s, haves, n_have, &p);
        if (k >= 0)
                k = plan_bases(s, p, haves, n_have, no_pages);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(p);
        return 0;
}

int sync_upload_build(Store *s, const RoamId *root, const Reach *need, const RoamId *haves, size_t n_have,
                      bool no_pages, SyncUpload *ret) {
        *ret = (SyncUpload){ 0 };
        _cleanup_(reach_freep) Reach *own = NULL;
        if (!need) {
                int k = sync_reach_root(s, root, -EUCLEAN, "unreadable objects here (run 'roam store fsck')", &own);
                if (k < 0)
                        return k;
                need = own;
        }
        _cleanup_(sync_upload_plan_freep) SyncUploadPlan *plan = NULL;
        int k = plan_have(s, haves, n_have, &plan);
        if (k < 0)
                return k;
        const Reach *have = plan->have;
        /* only a remainder goes as a pack; more goes the usual way (parallel,
         * resumable, with progress) */
        uint64_t bytes = 0;
        size_t pos = 0;
        RoamId id;
        while (idset_next(need->chunks, &pos, &id)) {
                uint64_t size = 0;
                if (!idset_contains(have->chunks, &id) && store_chunk_stat(s, &id, &size) >= 0 &&
                    (bytes += size) > PACK_AUTO_BYTES)
                        return -E2BIG;
        }
        k = plan_bases(s, plan, haves, n_have, no_pages);
        if (k < 0)
                return k;
        PageSender *ps = plan->ps;
        const RoamId *bases = plan->bases;
        unsigned nb = plan->nb;
        PackWriter pw;
        k = pack_writer_init(&pw, PACK_MAX_BYTES);
        bool complete = false;
        RoamId missing;
        if (k >= 0)
                k = sync_pack_fill(s, need, have, ps, &pw, &complete, &missing);
        if (k >= 0 && !complete)
                k = -E2BIG;
        if (k < 0) {
                pack_writer_done(&pw);
                return k;
        }
        /* with bases, the body starts with their ids */
        size_t head = ps ? (size_t) nb * ID_SIZE : 0;
        uint8_t *body = malloc(head + pw.len);
        if (!body) {
                pack_writer_done(&pw);
                return -ENOMEM;
        }
        if (head)
                memcpy(body, bases, head);
        memcpy(body + head, pw.buf, pw.len);
        *ret = (SyncUpload){ .body = body,
                             .len = head + pw.len,
                             .n_bases = ps ? nb : 0,
                             .objects = pw.n_objects,
                             .chunks = pw.n_chunks,
                             .paged = pw.n_paged,
                             .deltas = pw.n_delta };
        pack_writer_done(&pw);
        return 0;
}

int sync_upload_stream(Store *s, const RoamId *root, const SyncUploadPlan *plan, json_t *line, PackOut **ret) {
        _cleanup_(reach_freep) Reach *want = NULL;
        int k = sync_reach_root(s, root, -EUCLEAN, "unreadable objects here (run 'roam store fsck')", &want);
        if (k < 0)
                return k;
        unsigned nb = plan->nb;
        if (nb && json_object_set_new(line, "bases", json_integer((json_int_t) nb)) < 0)
                return -ENOMEM;
        _cleanup_free_ char *text = json_dumps(line, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        size_t tlen = strlen(text), plen = tlen + 1 + (size_t) nb * ID_SIZE;
        _cleanup_free_ uint8_t *prefix = malloc(plen);
        if (!prefix)
                return -ENOMEM;
        memcpy(prefix, text, tlen);
        prefix[tlen] = '\n';
        memcpy(prefix + tlen + 1, plan->bases, (size_t) nb * ID_SIZE);
        RoamId missing;
        return pack_out_new(s, want, plan->have, plan->ps, PACK_AUTO_BYTES, prefix, plen, ret, &missing);
}

void sync_upload_done(SyncUpload *u) {
        free(u->body);
        *u = (SyncUpload){ 0 };
}
