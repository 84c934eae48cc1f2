/* SPDX-License-Identifier: MIT */
#include "sync.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "../basic/error.h"
#include "../basic/failpoint.h"
#include "../basic/idset.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../store/index.h"
#include "../store/manifest.h"
#include "../store/reach.h"
#include "obj-delta.h"
#include "pack-out.h"
#include "pack.h"
#include "page-chunk.h"
#include "pages.h"
#include "sync-internal.h"
#include "wire.h"

#define OBJECT_WIRE_MAX (64u << 20)
#define BATCH_BYTES (8u << 20)
#define COMMIT_INTERVAL_S 0.0 /* commit every batch: a crash re-sends only batches in flight */

/* The caller's options with the defaults filled in. */
static SyncOptions options_of(const SyncOptions *o) {
        SyncOptions opts = o ? *o : (SyncOptions){ 0 };
        if (!opts.retries)
                opts.retries = 3;
        if (!pages_enabled())
                opts.no_pages = true;
        return opts;
}

/* ---- the transfer engine: batches of chunk ids, worker threads ---- */

typedef struct Engine Engine;
typedef int (*BatchFn)(Engine *e, RemoteConn *c, const RoamId *ids, size_t n, uint64_t *wire);

struct Engine {
        Store *s;
        Remote *r;
        const SyncOptions *o;
        RoamId *ids;
        size_t n;
        size_t batch;            /* ids per batch */
        _Atomic size_t next;     /* next batch start */
        _Atomic int error;
        _Atomic uint64_t done, wire, refetched;
        pthread_mutex_t lock;
        double last_commit;
        char errdetail[512];
        BatchFn fn;
        /* pull with page references: the bases named, the local side of
         * them, what could not be rebuilt (fetched in full afterwards) */
        PageBases *pb;
        RoamId bases[PAGE_CHUNK_MAX_BASES];
        unsigned n_bases;
        _Atomic bool no_pages; /* the remote does not serve them */
        _Atomic uint64_t paged, page_refs, skipped;
        bool push_pages; /* push: records as pages against bases (the remote's) */
        RoamId *fallback;
        size_t n_fallback, cap_fallback;
};

static void engine_fail(Engine *e, int r) {
        int expected = 0;
        if (atomic_compare_exchange_strong(&e->error, &expected, r)) {
                pthread_mutex_lock(&e->lock);
                snprintf(e->errdetail, sizeof e->errdetail, "%s", err_message(r));
                pthread_mutex_unlock(&e->lock);
        }
}

static bool cancelled(const SyncOptions *o) {
        return (o->cancel && *o->cancel) || (o->should_stop && o->should_stop(o->userdata));
}

static void *engine_worker(void *arg) {
        Engine *e = arg;
        _cleanup_(remote_conn_freep) RemoteConn *c = remote_conn_new(e->r);
        if (!c) {
                engine_fail(e, -ENOMEM);
                return NULL;
        }
        for (;;) {
                if (atomic_load(&e->error))
                        break;
                if (cancelled(e->o)) {
                        engine_fail(e, err_set(-ECANCELED, "transfer cancelled"));
                        break;
                }
                size_t start = atomic_fetch_add(&e->next, e->batch);
                if (start >= e->n)
                        break;
                size_t n = MIN(e->batch, e->n - start);
                int r = 0;
                for (unsigned attempt = 0;; attempt++) {
                        uint64_t wire = 0;
                        err_clear();
                        r = e->fn(e, c, e->ids + start, n, &wire);
                        atomic_fetch_add(&e->wire, wire);
                        if (r >= 0 || attempt >= e->o->retries || cancelled(e->o))
                                break;
                        if (r == -EBADMSG)
                                atomic_fetch_add(&e->refetched, n);
                        else if (!remote_error_is_transient(r))
                                break;
                        usleep((useconds_t) (200000u << MIN(attempt, 4u)));
                }
                if (r < 0) {
                        engine_fail(e, r);
                        break;
                }
                uint64_t done = atomic_fetch_add(&e->done, n) + n;
                progress_add(e->o->progress, (uint64_t) n * store_chunk_size(e->s));
                pthread_mutex_lock(&e->lock);
                if (now_s() - e->last_commit >= COMMIT_INTERVAL_S) {
                        /* bound what a crash can lose: publish what arrived */
                        e->last_commit = now_s();
                        r = store_commit(e->s);
                }
                if (e->o->on_batch)
                        e->o->on_batch(done, e->n, atomic_load(&e->wire), e->o->userdata);
                pthread_mutex_unlock(&e->lock);
                if (r < 0) {
                        engine_fail(e, r);
                        break;
                }
        }
        return NULL;
}

static int engine_run(Engine *e) {
        unsigned par = e->o->parallel ? e->o->parallel : 4;
        par = MIN(par, 32u);
        pthread_mutex_init(&e->lock, NULL);
        e->last_commit = now_s();
        run_threads(par, engine_worker, e);
        pthread_mutex_destroy(&e->lock);
        int r = atomic_load(&e->error);
        if (r < 0)
                return err_set(r, "%s", e->errdetail);
        return store_commit(e->s);
}

static int ids_from_set(IdSet *set, bool (*want)(Store *, const RoamId *), Store *s, RoamId **ret, size_t *ret_n) {
        size_t cap = MAX(idset_size(set), (size_t) 1), n = 0, pos = 0;
        RoamId *ids = malloc(cap * sizeof *ids);
        if (!ids)
                return -ENOMEM;
        RoamId id;
        while (idset_next(set, &pos, &id))
                if (!want || want(s, &id))
                        ids[n++] = id;
        *ret = ids;
        *ret_n = n;
        return 0;
}

/* sync-internal.h */
int sync_reach_root(Store *s, const RoamId *root, int err, const char *what, Reach **ret) {
        _cleanup_(reach_freep) Reach *need = reach_new();
        if (!need)
                return -ENOMEM;
        int k = reach_add_object(s, need, root);
        if (k < 0)
                return k;
        if (need->bad_objects)
                return err_set(err, "%s", what);
        *ret = TAKE_PTR(need);
        return 0;
}

/* ---- packs: the remainder in one round trip ---- */

/* {"want": HEX, "have": [HEX, ...], "max_bytes": N, "bases": [HEX, ...]} */
static char *pack_request_text(const RoamId *want, const RoamId *haves, size_t n_have, const RoamId *bases,
                               unsigned n_bases) {
        char hex[ID_HEX_SIZE];
        json_t *have = json_array();
        for (size_t i = 0; have && i < MIN(n_have, (size_t) 16); i++)
                json_array_append_new(have, json_string(id_to_hex(&haves[i], hex)));
        json_t *body = json_pack("{s:s, s:o, s:I}", "want", id_to_hex(want, hex), "have", have, "max_bytes",
                                 (json_int_t) PACK_AUTO_BYTES);
        if (body && n_bases > 0) {
                json_t *b = json_array();
                for (unsigned i = 0; b && i < n_bases; i++)
                        json_array_append_new(b, json_string(id_to_hex(&bases[i], hex)));
                json_object_set_new(body, "bases", b);
        }
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        return text;
}

typedef struct Hints {
        RoamId *have;
        size_t n, max;
} Hints;

static int hint_cb(const char *name, const RoamId *id, void *userdata) {
        Hints *h = userdata;
        if (id && h->n < h->max)
                h->have[h->n++] = *id;
        return 0;
}

/* A ref pulled for the first time: its siblings (the refs in the same
 * directory: images/, sessions/USER/NAME/) are likely to share most of it
 * (a new image version, a session's next checkpoint). Returns the new count. */
static size_t sibling_hints(Store *s, const char *ref, RoamId *have, size_t n, size_t max) {
        char dir[REF_NAME_MAX_LEN + 1];
        snprintf(dir, sizeof dir, "%s", ref);
        char *slash = strrchr(dir, '/');
        if (!slash)
                return n;
        slash[1] = 0;
        Hints h = { .have = have, .n = n, .max = max };
        (void) store_ref_foreach(s, dir, hint_cb, &h);
        return h.n;
}

/* The bases of a pull's page references: the blobs below what the hints say
 * is here (the same RAM a moment ago, the master image); *ret_pb NULL when
 * there are none. */
static int pack_bases(Store *s, const RoamId *have, size_t n_have, bool pages, RoamId bases[PAGE_CHUNK_MAX_BASES],
                      unsigned *ret_n, PageBases **ret_pb) {
        *ret_n = 0;
        *ret_pb = NULL;
        if (!pages)
                return 0;
        int k = pages_pick_bases(s, NULL, NULL, have, n_have, bases, ret_n);
        if (k >= 0 && *ret_n > 0)
                k = page_bases_new(s, bases, *ret_n, ret_pb);
        return k;
}

/* One chunk record of a pack, for pack_store()'s threads. */
typedef struct PackChunk {
        RoamId id;
        const uint8_t *z;
        uint32_t zlen;
} PackChunk;

typedef struct PackStoreJob {
        Store *s;
        PageBases *pb; /* or NULL */
        bool paged;    /* the pack says PACK_PAGED */
        const PackChunk *chunks;
        size_t n;
        _Atomic size_t next;
        _Atomic int error;
        _Atomic uint64_t sent, paged_chunks, refs, fallback;
        /* a pack taken as it comes (SyncPackStream): chunks[0..n) grows under
         * lock, and the workers wait for more until done */
        bool streaming, done;
        pthread_mutex_t lock;
        pthread_cond_t more;
} PackStoreJob;

static void job_fail_with(PackStoreJob *j, int k) {
        int none = 0;
        atomic_compare_exchange_strong(&j->error, &none, k);
}

/* Stores chunk record c unless the store has it: as pages rebuilt from the
 * bases, or as the frame it is (verified against its id either way). */
static int pack_store_one(PackStoreJob *j, ChunkCodec *codec, const PackChunk *c) {
        int k = store_chunk_has(j->s, &c->id);
        if (k == 0 && j->pb && j->paged && page_chunk_is(c->z, c->zlen)) {
                /* not rebuilt here: the usual way fetches it whole afterwards */
                k = page_bases_store(j->pb, codec, &c->id, c->z, c->zlen);
                if (k >= 0) {
                        atomic_fetch_add(&j->sent, 1);
                        atomic_fetch_add(&j->paged_chunks, 1);
                        atomic_fetch_add(&j->refs, (uint64_t) k);
                } else if (k == -ESTALE) {
                        atomic_fetch_add(&j->fallback, 1);
                        k = 0;
                }
        } else if (k == 0) {
                k = store_chunk_put_compressed(j->s, codec, &c->id, c->z, c->zlen);
                if (k >= 0)
                        atomic_fetch_add(&j->sent, 1);
        }
        return k < 0 ? k : 0;
}

/* The index of the next chunk to store, or SIZE_MAX at the end. */
static size_t job_take(PackStoreJob *j) {
        if (!j->streaming) {
                size_t i = atomic_fetch_add(&j->next, 1);
                return i < j->n ? i : SIZE_MAX;
        }
        pthread_mutex_lock(&j->lock);
        while (atomic_load(&j->next) >= j->n && !j->done && atomic_load(&j->error) >= 0)
                pthread_cond_wait(&j->more, &j->lock);
        size_t i = SIZE_MAX;
        if (atomic_load(&j->next) < j->n)
                i = atomic_fetch_add(&j->next, 1);
        pthread_mutex_unlock(&j->lock);
        return i;
}

static void *pack_store_worker(void *arg) {
        PackStoreJob *j = arg;
        _cleanup_(chunk_codec_freep) ChunkCodec *codec = chunk_codec_new(j->s);
        if (!codec) {
                job_fail_with(j, -ENOMEM);
                return NULL;
        }
        for (;;) {
                size_t i = job_take(j);
                if (i == SIZE_MAX || atomic_load(&j->error) < 0)
                        break;
                int k = pack_store_one(j, codec, &j->chunks[i]);
                if (k < 0) {
                        job_fail_with(j, k);
                        break;
                }
        }
        return NULL;
}

static void job_add_stats(const PackStoreJob *j, SyncStats *st) {
        st->chunks_sent += atomic_load(&j->sent);
        st->chunks_paged += atomic_load(&j->paged_chunks);
        st->pages_referenced += atomic_load(&j->refs);
        st->chunks_page_fallback += atomic_load(&j->fallback);
}

#define PACK_STORE_THREADS 8u

/* Stores a pack whose first skip chunk records (taken as they came, ids in
 * taken) are stored already: checks all of its framing, stores its objects
 * and the rest of its chunks. */
static int pack_store_rest(Store *s, PageBases *pb, const void *body, size_t len, const PackChunk *taken,
                           size_t skip, SyncStats *st) {
        PackReader rd;
        int k = pack_reader_init(&rd, body, len, ZSTD_compressBound(OBJECT_WIRE_MAX),
                                 ZSTD_compressBound(store_chunk_size(s)));
        if (k < 0)
                return k;
        _cleanup_free_ PackChunk *chunks = malloc(MAX((size_t) rd.n_chunks, (size_t) 1) * sizeof *chunks);
        if (!chunks)
                return -ENOMEM;
        size_t n = 0, seen = 0;
        PackKind kind;
        RoamId id, got;
        const uint8_t *z;
        uint32_t zlen;
        while ((k = pack_reader_next(&rd, &kind, &id, &z, &zlen)) > 0) {
                if (kind == PACK_CHUNK) {
                        if (seen < skip) {
                                /* the same record the stream took, or the pack is not what it read */
                                if (!id_equal(&taken[seen].id, &id) || taken[seen].z != z || taken[seen].zlen != zlen)
                                        return -EBADMSG;
                        } else if (n < rd.n_chunks)
                                chunks[n++] = (PackChunk){ .id = id, .z = z, .zlen = zlen };
                        seen++;
                        continue;
                }
                if (obj_delta_is(z, zlen)) {
                        if (!(rd.flags & PACK_DELTA) || !pb)
                                return -EBADMSG;
                        /* not rebuilt here: the object walk fetches it whole */
                        k = page_bases_store_object(pb, &id, z, zlen, OBJECT_WIRE_MAX);
                        if (k < 0)
                                return k;
                        st->objects_sent += (uint64_t) k;
                        st->objects_delta += (uint64_t) k;
                        continue;
                }
                _cleanup_free_ void *data = NULL;
                size_t dn;
                k = pack_object_decompress(z, zlen, OBJECT_WIRE_MAX, &data, &dn);
                if (k >= 0) {
                        sha256(data, dn, &got);
                        k = id_equal(&got, &id) ? store_object_put(s, data, dn, &got) : -EBADMSG;
                }
                if (k < 0)
                        return k;
                st->objects_sent++;
        }
        if (k < 0)
                return k;
        if (seen < skip)
                return -EBADMSG;
        PackStoreJob j = { .s = s, .pb = pb, .paged = rd.flags & PACK_PAGED, .chunks = chunks, .n = n };
        size_t threads = MIN((size_t) MIN(cpus_online(), PACK_STORE_THREADS), MAX(n, (size_t) 1));
        run_threads((unsigned) threads, pack_store_worker, &j);
        job_add_stats(&j, st);
        k = atomic_load(&j.error);
        if (k < 0)
                return k;
        return rd.flags & PACK_COMPLETE ? 1 : 0;
}

int sync_pack_store(Store *s, PageBases *pb, const void *body, size_t len, SyncStats *st) {
        return pack_store_rest(s, pb, body, len, NULL, 0, st);
}

/* Fetches what the remote thinks the local store lacks below root, in one
 * pack, and stores it (pack_store()). Any failure leaves the rest to the
 * usual way: the caller ignores it. */
static int pull_pack(Store *s, Remote *r, RemoteConn *c, const RoamId *root, const RoamId *have, size_t n_have,
                     bool pages, SyncStats *st) {
        RoamId bases[PAGE_CHUNK_MAX_BASES];
        unsigned n_bases;
        _cleanup_(page_bases_freep) PageBases *pb = NULL;
        int k = pack_bases(s, have, n_have, pages, bases, &n_bases, &pb);
        if (k < 0)
                return k;
        _cleanup_free_ char *text = pack_request_text(root, have, n_have, bases, pb ? n_bases : 0);
        if (!text)
                return -ENOMEM;
        RemoteResponse resp;
        k = remote_request(c, "POST", "/v1/pack/get", text, strlen(text), "application/json",
                           PACK_MAX_BYTES + 4096, &resp);
        if (k < 0)
                return k;
        st->wire_bytes += resp.wire_bytes;
        if (resp.status != 200) {
                k = remote_status_error(r, &resp, "pack");
                remote_response_done(&resp);
                return k;
        }
        k = sync_pack_store(s, pb, resp.body, resp.len, st);
        remote_response_done(&resp);
        return k;
}

struct SyncPackAsk {
        Store *s;
        PageBases *pb;
};

void sync_pack_ask_attach_plain(SyncPackAsk *a, const RoamId *id, const void *data, size_t len) {
        if (a->pb)
                page_bases_attach_plain(a->pb, id, data, len);
}

void sync_pack_ask_free(SyncPackAsk *a) {
        if (!a)
                return;
        page_bases_free(a->pb);
        free(a);
}

int sync_pack_ask(Store *s, const SyncOptions *o, json_t **ret_json, SyncPackAsk **ret) {
        SyncOptions opts = options_of(o);
        SyncPackAsk *a = calloc(1, sizeof *a);
        if (!a)
                return -ENOMEM;
        a->s = s;
        RoamId bases[PAGE_CHUNK_MAX_BASES];
        unsigned n_bases;
        size_t n_have = MIN(opts.n_have, (size_t) 16);
        int k = pack_bases(s, opts.have, n_have, !opts.no_pages, bases, &n_bases, &a->pb);
        json_t *j = NULL;
        if (k >= 0) {
                /* the request text of a pull without its want (the answer's) */
                _cleanup_free_ char *text = pack_request_text(&ID_NULL, opts.have, n_have, bases,
                                                              a->pb ? n_bases : 0);
                j = text ? json_loads(text, 0, NULL) : NULL;
                k = j && json_object_del(j, "want") == 0 ? 0 : -ENOMEM;
        }
        if (k < 0) {
                json_decref(j);
                sync_pack_ask_free(a);
                return k;
        }
        *ret_json = j;
        *ret = a;
        return 0;
}

int sync_pack_take(SyncPackAsk *a, const void *pack, size_t len, SyncStats *st) {
        return sync_pack_store(a->s, a->pb, pack, len, st);
}

/* ---- a pack stored as it comes ---- */

struct SyncPackStream {
        Store *s;
        PageBases *pb;
        bool started, stopped; /* the header was read; the stream gave up (finish reads it all) */
        PackReader rd;
        size_t fed; /* bytes the reader was given */
        PackChunk *chunks;
        PackStoreJob job;
        pthread_t threads[PACK_STORE_THREADS];
        unsigned n_threads;
};

int sync_pack_stream_new(SyncPackAsk *a, SyncPackStream **ret) {
        return sync_pack_stream_new_bases(a->s, a->pb, ret);
}

int sync_pack_stream_new_bases(Store *s, PageBases *pb, SyncPackStream **ret) {
        SyncPackStream *ps = calloc(1, sizeof *ps);
        if (!ps)
                return -ENOMEM;
        ps->s = s;
        ps->pb = pb;
        ps->job = (PackStoreJob){ .s = s, .pb = pb, .streaming = true };
        pthread_mutex_init(&ps->job.lock, NULL);
        pthread_cond_init(&ps->job.more, NULL);
        *ret = ps;
        return 0;
}

/* The header (pack_reader_init()'s checks); starts the workers. */
static int stream_start(SyncPackStream *ps, const uint8_t *pack, size_t n) {
        int k = pack_reader_init(&ps->rd, pack, n, ZSTD_compressBound(OBJECT_WIRE_MAX),
                                 ZSTD_compressBound(store_chunk_size(ps->s)));
        if (k < 0)
                return k;
        ps->fed = n;
        ps->chunks = malloc(MAX((size_t) ps->rd.n_chunks, (size_t) 1) * sizeof *ps->chunks);
        if (!ps->chunks)
                return -ENOMEM;
        ps->job.chunks = ps->chunks;
        ps->job.paged = ps->rd.flags & PACK_PAGED;
        ps->started = true;
        unsigned want = (unsigned) MIN((size_t) MIN(cpus_online(), PACK_STORE_THREADS),
                                       MAX((size_t) ps->rd.n_chunks, (size_t) 1));
        for (unsigned i = 0; i < want; i++)
                if (pthread_create(&ps->threads[ps->n_threads], NULL, pack_store_worker, &ps->job) == 0)
                        ps->n_threads++;
        return ps->n_threads > 0 ? 0 : -EAGAIN;
}

void sync_pack_stream_feed(SyncPackStream *ps, const uint8_t *pack, size_t n) {
        if (ps->stopped)
                return;
        if (!ps->started) {
                if (n < PACK_HEADER)
                        return;
                int k = stream_start(ps, pack, n);
                if (k < 0) {
                        ps->stopped = true; /* finish() reads it all, and refuses it */
                        return;
                }
        } else if (n > ps->fed) {
                pack_reader_more(&ps->rd, n - ps->fed);
                ps->fed = n;
        }
        size_t added = 0;
        PackKind kind;
        RoamId id;
        const uint8_t *z;
        uint32_t zlen;
        int k;
        while ((k = pack_reader_next_ready(&ps->rd, &kind, &id, &z, &zlen)) > 0)
                if (kind == PACK_CHUNK)
                        ps->chunks[ps->job.n + added++] = (PackChunk){ .id = id, .z = z, .zlen = zlen };
        if (k < 0 && k != -EAGAIN)
                ps->stopped = true;
        if (added > 0) {
                pthread_mutex_lock(&ps->job.lock);
                ps->job.n += added;
                pthread_cond_broadcast(&ps->job.more);
                pthread_mutex_unlock(&ps->job.lock);
        }
}

/* Ends the workers; what they stored counts in st. */
static int stream_stop(SyncPackStream *ps, SyncStats *st) {
        pthread_mutex_lock(&ps->job.lock);
        ps->job.done = true;
        pthread_cond_broadcast(&ps->job.more);
        pthread_mutex_unlock(&ps->job.lock);
        for (unsigned i = 0; i < ps->n_threads; i++)
                pthread_join(ps->threads[i], NULL);
        ps->n_threads = 0;
        if (st)
                job_add_stats(&ps->job, st);
        return atomic_load(&ps->job.error);
}

int sync_pack_stream_finish(SyncPackStream *ps, const void *pack, size_t len, SyncStats *st) {
        int k = stream_stop(ps, st);
        if (k < 0)
                return k;
        /* the chunk records the workers took were all stored: the rest now */
        size_t taken = ps->started ? ps->job.n : 0;
        return pack_store_rest(ps->s, ps->pb, pack, len, ps->chunks, taken, st);
}

size_t sync_pack_stream_taken(const SyncPackStream *ps) {
        return ps && ps->started ? ps->job.n : 0;
}

size_t sync_pack_stream_done(SyncPackStream *ps) {
        return ps && ps->started ? (size_t) (atomic_load(&ps->job.sent) + atomic_load(&ps->job.fallback)) : 0;
}

void sync_pack_stream_stop(SyncPackStream *ps) {
        (void) stream_stop(ps, NULL);
        ps->stopped = true;
}

void sync_pack_stream_free(SyncPackStream *ps) {
        if (!ps)
                return;
        (void) stream_stop(ps, NULL);
        pthread_mutex_destroy(&ps->job.lock);
        pthread_cond_destroy(&ps->job.more);
        free(ps->chunks);
        free(ps);
}

/* ---- pull ---- */

static int fetch_json_ref(RemoteConn *c, Remote *r, const char *ref, RoamId *ret, uint64_t *wire) {
        char path[512];
        snprintf(path, sizeof path, "/v1/refs/%s", ref);
        RemoteResponse resp;
        int k = remote_request(c, "GET", path, NULL, 0, NULL, 64 * 1024, &resp);
        if (k < 0)
                return k;
        *wire += resp.wire_bytes;
        char what[300];
        snprintf(what, sizeof what, "ref '%s'", ref);
        if (resp.status != 200) {
                k = remote_status_error(r, &resp, what);
                remote_response_done(&resp);
                return k;
        }
        json_t *j = json_loadb((const char *) resp.body, resp.len, 0, NULL);
        remote_response_done(&resp);
        if (!json_is_object(j)) {
                json_decref(j);
                return err_set(-EPROTO, "'%s' is not a roam server (its answer for ref '%s' is not JSON; check the "
                               "URL and port)", remote_url(r), ref);
        }
        const char *hex = json_string_value(json_object_get(j, "id"));
        k = hex ? id_from_hex(hex, ret) : -EBADMSG;
        json_decref(j);
        if (k < 0)
                return err_set(-EBADMSG, "%s sent a malformed answer for ref '%s'", remote_url(r), ref);
        return 0;
}

typedef struct ObjWalk {
        Store *s;
        RemoteConn *c;
        Remote *r;
        IdSet *seen;
        uint64_t fetched, wire;
        int depth;
} ObjWalk;

static int fetch_object_tree(ObjWalk *w, const RoamId *id);

static int manifest_child(const char *role, const RoamId *id, void *userdata) {
        ObjWalk *w = userdata;
        w->depth++;
        int r = fetch_object_tree(w, id);
        w->depth--;
        return r;
}

/* Makes sure the object and every object below it are in the local store. */
static int fetch_object_tree(ObjWalk *w, const RoamId *id) {
        char hex[ID_HEX_SIZE];
        if (w->depth > 16)
                return err_set(-EBADMSG, "object tree is nested too deeply");
        int k = idset_add(w->seen, id);
        if (k <= 0)
                return k;
        _cleanup_free_ void *data = NULL;
        size_t len = 0;
        k = store_object_has(w->s, id);
        if (k < 0)
                return k;
        if (k > 0) {
                k = store_object_get(w->s, id, STORE_OBJECT_MAX, &data, &len);
                if (k >= 0)
                        k = 1; /* here and intact: nothing to fetch */
        }
        if (k == 0 || k == -EBADMSG) {
                /* fetch it */
                char path[128];
                snprintf(path, sizeof path, "/v1/objects/%s", id_to_hex(id, hex));
                RemoteResponse resp;
                k = remote_request(w->c, "GET", path, NULL, 0, NULL, OBJECT_WIRE_MAX, &resp);
                if (k < 0)
                        return k;
                w->wire += resp.wire_bytes;
                if (resp.status != 200) {
                        char what[100];
                        snprintf(what, sizeof what, "object %s", hex);
                        k = remote_status_error(w->r, &resp, what);
                        remote_response_done(&resp);
                        return k;
                }
                RoamId got, stored;
                sha256(resp.body, resp.len, &got);
                if (!id_equal(&got, id)) {
                        remote_response_done(&resp);
                        return err_set(-EBADMSG, "%s sent wrong bytes for object %s (refused)", remote_url(w->r),
                                       hex);
                }
                k = store_object_put(w->s, resp.body, resp.len, &stored);
                free(data);
                data = resp.body;
                len = resp.len;
                if (k < 0)
                        return k;
                w->fetched++;
        } else if (k < 0)
                return k;
        if (manifest_is_manifest(data, len)) {
                json_t *j;
                k = manifest_parse(data, len, &j);
                if (k < 0)
                        return err_set(-EBADMSG, "object %s is a malformed manifest", hex);
                k = manifest_foreach_object(j, manifest_child, w);
                json_decref(j);
                return k;
        }
        return 0;
}

/* A chunk sent as pages that could not be rebuilt here: fetched in full
 * after the others. */
static int engine_fallback(Engine *e, const RoamId *id) {
        pthread_mutex_lock(&e->lock);
        int k = 0;
        if (e->n_fallback == e->cap_fallback) {
                size_t nc = e->cap_fallback ? 2 * e->cap_fallback : 64;
                RoamId *nf = realloc(e->fallback, nc * sizeof *nf);
                if (nf) {
                        e->fallback = nf;
                        e->cap_fallback = nc;
                } else
                        k = -ENOMEM;
        }
        if (k == 0)
                e->fallback[e->n_fallback++] = *id;
        pthread_mutex_unlock(&e->lock);
        return k;
}

static int pull_batch(Engine *e, RemoteConn *c, const RoamId *ids, size_t n, uint64_t *wire) {
        RemoteResponse resp;
        int k;
        if (e->pb && !atomic_load(&e->no_pages)) {
                _cleanup_free_ void *body = NULL;
                size_t blen;
                k = page_request_build(e->bases, e->n_bases, ids, n, &body, &blen);
                if (k < 0)
                        return k;
                k = remote_request(c, "POST", "/v1/chunks/pages", body, blen, "application/octet-stream",
                                   WIRE_MAX_STREAM, &resp);
                if (k < 0)
                        return k;
                *wire += resp.wire_bytes;
                if (resp.status != 200) {
                        /* an older server (no such route), or whatever: the whole way */
                        remote_response_done(&resp);
                        atomic_store(&e->no_pages, true);
                        k = 1;
                }
        } else
                k = 1;
        if (k == 1) {
                k = remote_request(c, "POST", "/v1/chunks/get", ids, n * ID_SIZE, "application/octet-stream",
                                   WIRE_MAX_STREAM, &resp);
                if (k < 0)
                        return k;
                *wire += resp.wire_bytes;
        }
        if (resp.status != 200) {
                k = remote_status_error(e->r, &resp, "chunks");
                remote_response_done(&resp);
                return k;
        }
        _cleanup_(chunk_codec_freep) ChunkCodec *codec = chunk_codec_new(e->s);
        if (!codec) {
                remote_response_done(&resp);
                return -ENOMEM;
        }
        WireReader wr;
        wire_reader_init(&wr, resp.body, resp.len, ZSTD_compressBound(store_chunk_size(e->s)));
        size_t i = 0;
        RoamId id;
        const uint8_t *data;
        uint32_t len;
        char hex[ID_HEX_SIZE];
        for (;;) {
                k = wire_reader_next(&wr, &id, &data, &len);
                if (k == -EBADMSG)
                        k = err_set(k, "%s sent a malformed chunk stream", remote_url(e->r));
                if (k <= 0)
                        break;
                if (i >= n || !id_equal(&id, &ids[i])) {
                        k = err_set(-EBADMSG, "%s answered with chunks that were not asked for", remote_url(e->r));
                        break;
                }
                k = store_chunk_has(e->s, &id);
                if (k == 0 && e->pb && page_chunk_is(data, len)) {
                        k = page_bases_store(e->pb, codec, &id, data, len);
                        if (k >= 0) {
                                atomic_fetch_add(&e->paged, 1);
                                atomic_fetch_add(&e->page_refs, (uint64_t) k);
                        } else if (k == -ESTALE)
                                k = engine_fallback(e, &id);
                } else if (k == 0)
                        k = store_chunk_put_compressed(e->s, codec, &id, data, len);
                if (k == -EBADMSG)
                        k = err_set(-EBADMSG, "%s sent wrong bytes for chunk %s (refused; tampered or corrupt "
                                    "server store)", remote_url(e->r), id_to_hex(&id, hex));
                if (k < 0)
                        break;
                i++;
        }
        remote_response_done(&resp);
        if (k >= 0 && i != n)
                k = err_set(-EBADMSG, "%s sent %zu of %zu chunks", remote_url(e->r), i, n);
        return k;
}

static bool chunk_missing_locally(Store *s, const RoamId *id) {
        return store_chunk_has(s, id) == 0;
}

/* Names the bases of a transfer (pages.h); for a pull (load) also loads the
 * local side of them, which rebuilds what comes as pages. */
static int engine_pick_bases(Engine *e, Store *s, const Reach *need, const RoamId *have, size_t n_have, bool load) {
        IdSet *missing = idset_new();
        if (!missing)
                return -ENOMEM;
        int k = 0;
        for (size_t i = 0; i < e->n && k >= 0; i++)
                k = idset_add(missing, &e->ids[i]);
        if (k >= 0)
                k = pages_pick_bases(s, need, missing, have, n_have, e->bases, &e->n_bases);
        idset_free(missing);
        if (k >= 0 && load && e->n_bases > 0)
                k = page_bases_new(s, e->bases, e->n_bases, &e->pb);
        return k;
}

int sync_pull(Store *s, Remote *r, const char *ref, const char *local_ref, const SyncOptions *o, SyncStats *ret) {
        SyncOptions opts = options_of(o);
        double t0 = now_s();
        if (!local_ref)
                local_ref = ref;
        if (!ref_name_is_valid(ref) || !ref_name_is_valid(local_ref))
                return err_set(-EINVAL, "ref name '%s' is invalid", ref_name_is_valid(ref) ? local_ref : ref);
        _cleanup_(remote_conn_freep) RemoteConn *c = remote_conn_new(r);
        if (!c)
                return -ENOMEM;
        uint64_t wire = 0;
        RoamId root;
        int k = fetch_json_ref(c, r, ref, &root, &wire);
        if (k < 0)
                return k;
        remote_conn_free(TAKE_PTR(c));
        k = sync_pull_object(s, r, &root, local_ref, &opts, ret);
        if (k >= 0 && ret) {
                ret->wire_bytes += wire;
                ret->seconds = now_s() - t0;
        }
        return k;
}

int sync_pull_object(Store *s, Remote *r, const RoamId *root_id, const char *local_ref, const SyncOptions *o,
                     SyncStats *ret) {
        SyncOptions opts = options_of(o);
        double t0 = now_s();
        if (!ref_name_is_valid(local_ref))
                return err_set(-EINVAL, "ref name '%s' is invalid", local_ref);
        const char *ref = local_ref;
        _cleanup_(remote_conn_freep) RemoteConn *c = remote_conn_new(r);
        if (!c)
                return -ENOMEM;
        SyncStats st = { 0 };
        RoamId root = *root_id;
        int k;
        /* what the local ref points to now is here with everything below it */
        RoamId have[16], cur;
        size_t n_have = MIN(opts.n_have, ELEMENTSOF(have) - 1);
        if (n_have)
                memcpy(have, opts.have, n_have * sizeof *have);
        if (store_ref_get(s, local_ref, &cur) >= 0) {
                if (!id_equal(&cur, &root))
                        have[n_have++] = cur;
        } else
                n_have = sibling_hints(s, local_ref, have, n_have, ELEMENTSOF(have));
        err_clear();
        if (n_have > 0 && !opts.no_pack && pull_pack(s, r, c, &root, have, n_have, !opts.no_pages, &st) < 0)
                err_clear(); /* the usual way below fetches whatever the pack did not bring */
        uint64_t t_step = now_ns();
        ObjWalk w = { .s = s, .c = c, .r = r, .seen = idset_new() };
        if (!w.seen)
                return -ENOMEM;
        k = fetch_object_tree(&w, &root);
        idset_free(w.seen);
        st.wire_bytes += w.wire;
        st.objects_sent += w.fetched;
        if (k < 0)
                return k;
        st.objects_ns = now_ns() - t_step;
        t_step = now_ns();
        _cleanup_(reach_freep) Reach *need = NULL;
        char unreadable[512];
        snprintf(unreadable, sizeof unreadable, "ref '%s' from %s has unreadable objects", ref, remote_url(r));
        k = sync_reach_root(s, &root, -EBADMSG, unreadable, &need);
        if (k < 0)
                return k;
        st.chunks_total = idset_size(need->chunks);
        st.reach_ns = now_ns() - t_step;
        t_step = now_ns();

        Engine e = { .s = s, .r = r, .o = &opts, .fn = pull_batch };
        k = ids_from_set(need->chunks, chunk_missing_locally, s, &e.ids, &e.n);
        if (k < 0)
                return k;
        st.check_ns = now_ns() - t_step;
        if (!opts.no_pages && e.n > 0) {
                /* the blobs here whose pages the server may send references to */
                k = engine_pick_bases(&e, s, need, have, n_have, true);
                if (k < 0) {
                        free(e.ids);
                        return k;
                }
        }
        /* batches of about BATCH_BYTES plain, at most WIRE_MAX_IDS_GET ids */
        e.batch = MAX((size_t) 1, MIN((size_t) WIRE_MAX_IDS_GET, BATCH_BYTES / store_chunk_size(s)));
        progress_set_total(opts.progress, (uint64_t) e.n * store_chunk_size(s));
        if (opts.on_start)
                opts.on_start(st.chunks_total, e.n, opts.userdata);
        k = engine_run(&e);
        free(e.ids);
        st.chunks_sent += e.done;
        st.chunks_refetched = e.refetched;
        st.wire_bytes += e.wire;
        st.chunks_paged += e.paged;
        st.pages_referenced += e.page_refs;
        page_bases_free(TAKE_PTR(e.pb));
        if (k >= 0 && e.n_fallback > 0) {
                /* sent as pages, not rebuilt here: whole, the usual way */
                Engine f = { .s = s, .r = r, .o = &opts, .fn = pull_batch, .ids = e.fallback, .n = e.n_fallback,
                             .batch = e.batch };
                k = engine_run(&f);
                st.chunks_page_fallback += e.n_fallback;
                st.chunks_sent += f.done;
                st.chunks_refetched += f.refetched;
                st.wire_bytes += f.wire;
        }
        free(e.fallback);
        if (k < 0)
                return k;
        /* everything is durable now: move the local ref */
        failpoint("sync-pull:before-ref");
        t_step = now_ns();
        k = store_ref_set(s, local_ref, &root, NULL);
        if (k < 0)
                return k;
        st.ref_ns = now_ns() - t_step;
        st.id = root;
        st.seconds = now_s() - t0;
        if (ret)
                *ret = st;
        return 0;
}

/* ---- push ---- */

/* A batch as pages where that is smaller (POST /v1/chunks/put-pages): 1 when
 * the remote does not take them (the batch then goes the usual way). */
static int push_batch_pages(Engine *e, RemoteConn *c, const RoamId *ids, size_t n, uint64_t *wire) {
        _cleanup_(page_sender_freep) PageSender *ps = NULL;
        int k = page_sender_new(e->s, e->bases, e->n_bases, &ps);
        if (k < 0)
                return k;
        size_t cap = 4 + (size_t) e->n_bases * ID_SIZE, len = cap;
        _cleanup_free_ uint8_t *buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        put_le32(buf, e->n_bases);
        memcpy(buf + 4, e->bases, (size_t) e->n_bases * ID_SIZE);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ void *z = NULL;
                size_t zlen;
                k = page_sender_payload(ps, &ids[i], &z, &zlen, NULL);
                if (k < 0)
                        return k;
                k = wire_append_record(&buf, &len, &cap, &ids[i], z, (uint32_t) zlen);
                if (k < 0)
                        return k;
        }
        RemoteResponse resp;
        k = remote_request(c, "POST", "/v1/chunks/put-pages", buf, len, "application/octet-stream", 64 * 1024,
                           &resp);
        if (k < 0)
                return k;
        *wire += resp.wire_bytes;
        if (resp.status == 404 || resp.status == 405) {
                /* an older server: frames from now on */
                remote_response_done(&resp);
                atomic_store(&e->no_pages, true);
                return 1;
        }
        if (resp.status != 200) {
                k = remote_status_error(e->r, &resp, "chunk upload");
                remote_response_done(&resp);
                return k;
        }
        json_t *j = json_loadb((const char *) resp.body, resp.len, 0, NULL);
        remote_response_done(&resp);
        json_int_t paged = json_integer_value(json_object_get(j, "paged")),
                   skipped = json_integer_value(json_object_get(j, "skipped"));
        json_decref(j);
        atomic_fetch_add(&e->paged, (uint64_t) MAX(paged, (json_int_t) 0));
        atomic_fetch_add(&e->skipped, (uint64_t) MAX(skipped, (json_int_t) 0));
        return 0;
}

static int push_batch(Engine *e, RemoteConn *c, const RoamId *ids, size_t n, uint64_t *wire) {
        if (e->push_pages && !atomic_load(&e->no_pages)) {
                int k = push_batch_pages(e, c, ids, n, wire);
                if (k <= 0)
                        return k;
        }
        _cleanup_(chunk_codec_freep) ChunkCodec *codec = chunk_codec_new(e->s);
        if (!codec)
                return -ENOMEM;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ void *z = NULL;
                size_t zlen;
                int k = store_chunk_get_compressed(e->s, codec, &ids[i], &z, &zlen);
                if (k < 0)
                        return k;
                k = wire_append_record(&buf, &len, &cap, &ids[i], z, (uint32_t) zlen);
                if (k < 0)
                        return k;
        }
        RemoteResponse resp;
        int k = remote_request(c, "POST", "/v1/chunks/put", buf, len, "application/octet-stream", 64 * 1024, &resp);
        if (k < 0)
                return k;
        *wire += resp.wire_bytes;
        if (resp.status != 200)
                k = remote_status_error(e->r, &resp, "chunk upload");
        remote_response_done(&resp);
        return k;
}

/* Asks the remote which of ids it lacks; replaces ids/n with those. */
static int remote_missing(Remote *r, RemoteConn *c, RoamId *ids, size_t *n, uint64_t *wire) {
        size_t out = 0;
        for (size_t start = 0; start < *n; start += WIRE_MAX_IDS_MISSING) {
                size_t cnt = MIN((size_t) WIRE_MAX_IDS_MISSING, *n - start);
                RemoteResponse resp;
                int k = remote_request(c, "POST", "/v1/chunks/missing", ids + start, cnt * ID_SIZE,
                                       "application/octet-stream", (cnt + 1) * ID_SIZE, &resp);
                if (k < 0)
                        return k;
                *wire += resp.wire_bytes;
                size_t m;
                if (resp.status != 200) {
                        k = remote_status_error(r, &resp, "missing chunks");
                        remote_response_done(&resp);
                        return k;
                }
                if (wire_id_list_check(resp.body, resp.len, cnt, &m) < 0) {
                        remote_response_done(&resp);
                        return err_set(-EBADMSG, "%s sent a malformed missing-chunks answer", remote_url(r));
                }
                /* answers come in request order; out <= start so this never overwrites unread ids */
                memmove(ids + out, resp.body, m * ID_SIZE);
                out += m;
                remote_response_done(&resp);
        }
        *n = out;
        return 0;
}

static int remote_ref_get_optional(Remote *r, RemoteConn *c, const char *ref, RoamId *ret, bool *ret_exists,
                                   uint64_t *wire) {
        int k = fetch_json_ref(c, r, ref, ret, wire);
        if (k == -ENOENT) {
                *ret_exists = false;
                return 0;
        }
        if (k < 0)
                return k;
        *ret_exists = true;
        return 0;
}

/* The error of a refused update of the remote ref (PUT /v1/refs, pack/put). */
static int ref_update_error(Remote *r, const RemoteResponse *resp, const char *remote_ref) {
        char what[300];
        snprintf(what, sizeof what, "ref '%s'", remote_ref);
        int k = remote_status_error(r, resp, what);
        if (k == -ESTALE)
                k = err_set(k, "ref '%s' changed on %s while pushing (pull it, then push again)", remote_ref,
                            remote_url(r));
        return k;
}

/* Sends everything below root that is not below the remote's have-objects
 * as one pack that also sets the remote ref. -E2BIG when it does not fit,
 * -ESTALE when the ref changed; other failures leave it to the usual way. */
static int push_pack(Store *s, Remote *r, RemoteConn *c, const RoamId *root, const Reach *need, const char *remote_ref,
                     const RoamId *old, const RoamId *haves, size_t n_have, bool no_pages, SyncStats *st) {
        _cleanup_(sync_upload_done) SyncUpload u = { 0 };
        int k = sync_upload_build(s, root, need, haves, n_have, no_pages, &u);
        if (k < 0)
                return k;
        char hex[ID_HEX_SIZE], oldhex[ID_HEX_SIZE], path[REF_NAME_MAX_LEN + 256], nbs[32] = "";
        if (u.n_bases)
                snprintf(nbs, sizeof nbs, "&bases=%u", u.n_bases);
        snprintf(path, sizeof path, "/v1/pack/put?ref=%s&id=%s%s%s%s", remote_ref, id_to_hex(root, hex),
                 old ? "&old=" : "", old ? (id_is_null(old) ? "none" : id_to_hex(old, oldhex)) : "", nbs);
        RemoteResponse resp;
        k = remote_request(c, "POST", path, u.body, u.len, "application/octet-stream", 64 * 1024, &resp);
        if (k < 0)
                return k;
        st->wire_bytes += resp.wire_bytes;
        if (resp.status != 200)
                k = ref_update_error(r, &resp, remote_ref);
        remote_response_done(&resp);
        if (k >= 0) {
                st->objects_sent += u.objects;
                st->chunks_sent += u.chunks;
                st->chunks_paged += u.paged;
        }
        return k;
}

int sync_push(Store *s, Remote *r, const char *ref, const char *remote_ref, const SyncOptions *o, SyncStats *ret) {
        SyncOptions opts = options_of(o);
        double t0 = now_s();
        if (!remote_ref)
                remote_ref = ref;
        if (!ref_name_is_valid(ref) || !ref_name_is_valid(remote_ref))
                return err_set(-EINVAL, "ref name '%s' is invalid", ref_name_is_valid(ref) ? remote_ref : ref);
        RoamId root;
        int k = store_ref_get(s, ref, &root);
        if (k == -ENOENT)
                return err_set(k, "ref '%s' not found in the local store", ref);
        if (k < 0)
                return k;
        _cleanup_(remote_conn_freep) RemoteConn *c = remote_conn_new(r);
        if (!c)
                return -ENOMEM;
        SyncStats st = { .id = root };
        RoamId old = ID_NULL;
        bool old_exists = false;
        if (!opts.overwrite) {
                k = remote_ref_get_optional(r, c, remote_ref, &old, &old_exists, &st.wire_bytes);
                if (k < 0)
                        return k;
        }
        _cleanup_(reach_freep) Reach *need = NULL;
        char unreadable[512];
        snprintf(unreadable, sizeof unreadable, "ref '%s' has unreadable objects locally (run 'roam store fsck')",
                 ref);
        k = sync_reach_root(s, &root, -EUCLEAN, unreadable, &need);
        if (k < 0)
                return k;
        st.chunks_total = idset_size(need->chunks);
        if (old_exists && id_equal(&old, &root)) {
                st.seconds = now_s() - t0; /* there already */
                if (ret)
                        *ret = st;
                return 0;
        }
        /* what the remote ref points to now is there with everything below it */
        RoamId have[16];
        size_t n_have = MIN(opts.n_have, ELEMENTSOF(have) - 1);
        if (n_have)
                memcpy(have, opts.have, n_have * sizeof *have);
        if (old_exists)
                have[n_have++] = old;
        if (n_have > 0) {
                RoamId none = ID_NULL;
                k = push_pack(s, r, c, &root, need, remote_ref, opts.overwrite ? NULL : old_exists ? &old : &none,
                              have, n_have, opts.no_pages, &st);
                if (k >= 0 || k == -ESTALE || k == -ENOMEM) {
                        st.seconds = now_s() - t0;
                        if (k >= 0 && ret)
                                *ret = st;
                        return k;
                }
                err_clear(); /* too big, or the hint was wrong (412): the usual way */
        }

        Engine e = { .s = s, .r = r, .o = &opts, .fn = push_batch };
        k = ids_from_set(need->chunks, NULL, s, &e.ids, &e.n);
        if (k >= 0)
                k = remote_missing(r, c, e.ids, &e.n, &st.wire_bytes);
        if (k >= 0 && !opts.no_pages && e.n > 0) {
                /* bases: the blobs the remote holds whole (below its ref, or
                 * with no chunk missing there); a wrong one costs a resend */
                k = engine_pick_bases(&e, s, need, have, n_have, false);
                e.push_pages = e.n_bases > 0;
        }
        if (k < 0) {
                free(e.ids);
                return k;
        }
        e.batch = MAX((size_t) 1, MIN((size_t) WIRE_MAX_RECORDS, BATCH_BYTES / store_chunk_size(s)));
        progress_set_total(opts.progress, (uint64_t) e.n * store_chunk_size(s));
        if (opts.on_start)
                opts.on_start(st.chunks_total, e.n, opts.userdata);
        k = engine_run(&e);
        st.chunks_sent = e.done;
        st.wire_bytes += e.wire;
        st.chunks_paged = e.paged;
        if (k >= 0 && e.skipped > 0) {
                /* sent as pages, not rebuilt there: whole, the usual way */
                Engine f = { .s = s, .r = r, .o = &opts, .fn = push_batch, .ids = e.ids, .n = e.n,
                             .batch = e.batch };
                k = remote_missing(r, c, f.ids, &f.n, &st.wire_bytes);
                if (k >= 0)
                        k = engine_run(&f);
                st.chunks_page_fallback = f.n;
                st.chunks_sent += f.done;
                st.wire_bytes += f.wire;
        }
        free(e.ids);
        if (k < 0)
                return k;

        /* objects (few and small next to the chunks), then the ref */
        size_t pos = 0;
        RoamId id;
        char hex[ID_HEX_SIZE], path[512];
        while (idset_next(need->objects, &pos, &id)) {
                _cleanup_free_ void *data = NULL;
                size_t len;
                k = store_object_get(s, &id, STORE_OBJECT_MAX, &data, &len);
                if (k < 0)
                        return k;
                snprintf(path, sizeof path, "/v1/objects/%s", id_to_hex(&id, hex));
                RemoteResponse resp;
                k = remote_request(c, "PUT", path, data, len, "application/octet-stream", 64 * 1024, &resp);
                if (k < 0)
                        return k;
                st.wire_bytes += resp.wire_bytes;
                if (resp.status != 200 && resp.status != 201) {
                        char what[100];
                        snprintf(what, sizeof what, "object %s", hex);
                        k = remote_status_error(r, &resp, what);
                }
                remote_response_done(&resp);
                if (k < 0)
                        return k;
                st.objects_sent++;
        }
        json_t *body = json_pack("{s:s}", "id", id_to_hex(&root, hex));
        char oldhex[ID_HEX_SIZE];
        if (!opts.overwrite)
                json_object_set_new(body, "old", old_exists ? json_string(id_to_hex(&old, oldhex)) : json_null());
        char *text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (!text)
                return -ENOMEM;
        snprintf(path, sizeof path, "/v1/refs/%s", remote_ref);
        RemoteResponse resp;
        k = remote_request(c, "PUT", path, text, strlen(text), "application/json", 64 * 1024, &resp);
        free(text);
        if (k < 0)
                return k;
        st.wire_bytes += resp.wire_bytes;
        if (resp.status != 200 && resp.status != 201)
                k = ref_update_error(r, &resp, remote_ref);
        remote_response_done(&resp);
        if (k < 0)
                return k;
        st.seconds = now_s() - t0;
        if (ret)
                *ret = st;
        return 0;
}
