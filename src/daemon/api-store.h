/* SPDX-License-Identifier: MIT */
#pragma once

/* The store routes of the sync protocol (docs/sync-protocol.md) on a Store:
 *
 *   GET    /v1/info                 server and token facts
 *   GET    /v1/refs?prefix=P        readable refs
 *   GET    /v1/refs/NAME            one ref
 *   PUT    /v1/refs/NAME            compare-and-swap after a completeness check
 *   DELETE /v1/refs/NAME
 *   GET    /v1/objects/HEX, PUT /v1/objects/HEX
 *   POST   /v1/chunks/missing, /v1/chunks/get, /v1/chunks/put
 *   GET    /v1/chunks/HEX
 *   POST   /v1/pack/get             the objects and chunks below "want" that are
 *                                   not below any of "have", in one body (pack.h)
 *   POST   /v1/pack/put?ref=R&id=HEX[&old=HEX|none]
 *                                   stores a pack, then sets ref R as PUT /v1/refs
 *
 * Access follows auth.h (a ref a token cannot read answers 404).
 *
 * Durability: POST /v1/chunks/put answers only after store_commit() made its
 * chunks durable; a ref is only set when every object below it is stored
 * and every chunk is published. Chunk puts and commits are ordered by a
 * read/write lock so that a commit never returns while another thread is
 * still publishing the same batch (store_commit() hands the pending list to
 * whichever thread calls it first). Other daemon code that writes chunks
 * into the same Store uses api_store_put_begin()/end() and api_store_commit(). */

#include <stdbool.h>
#include <stddef.h>

#include "../basic/hash.h"
#include "../http/server.h"
#include "../store/store.h"
#include "../sync/pack-out.h"
#include "../sync/pack.h"

#define API_OBJECT_MAX (64u << 20)   /* largest object over the wire */
#define API_REF_BODY_MAX 4096u       /* PUT /v1/refs body */
#define API_PACK_OBJECTS_MAX (256u << 20) /* objects of one uploaded pack, plain */

typedef struct ApiStore ApiStore;

/* s stays the caller's and must outlive the ApiStore; server_role ("server",
 * "laptop") is reported by /v1/info (copied). Caller frees with
 * api_store_free(), after the HTTP server stopped. */
int api_store_new(Store *s, const char *server_role, ApiStore **ret);
/* The certificate fingerprint GET /v1/info reports as "tls_fingerprint"
 * (NULL: plain HTTP, reported as absent). Before serving. */
void api_store_set_fingerprint(ApiStore *a, const char *fingerprint);
void api_store_free(ApiStore *a);
static inline void api_store_freep(ApiStore **a) {
        if (*a)
                api_store_free(*a);
}

/* Adds the routes to srv (before http_server_start()). */
int api_store_register(ApiStore *a, HttpServer *srv);

/* Bracket chunk writes into the store (shared), and publish them
 * (exclusive: waits for writers in progress, then store_commit()). */
void api_store_put_begin(ApiStore *a);
void api_store_put_end(ApiStore *a);
int api_store_commit(ApiStore *a);

/* The remainder of a hand-over that came in the request of its move-in
 * (api-session.c): body as pack/put's with bases=N (0: none); stored, then
 * ref set to id once everything below id is here. 0;
 * 1 when it answered req (an error: bad upload, a ref the token may not
 * write, chunks as pages that do not rebuild here, an incomplete checkpoint);
 * < 0 for the caller to answer. */
typedef struct UploadPlain { /* a plain copy of one base (page_bases_attach_plain()) */
        const RoamId *id;
        const void *data;
        size_t len;
} UploadPlain;
/* An upload stored while it comes (the body observer of a move-in,
 * HttpBodyObserver): new() when its ref is known (NULL when req's token may
 * not write ref: nothing is stored before the handler refuses it); feed() with
 * the upload so far (n bytes at upload, which stay there): once the bases' ids
 * are here, every whole chunk record goes to store threads (checked against
 * its id). The handler then passes it to api_store_take_upload(), which stores
 * what is left. plain (may be NULL) must stay until free(). */
typedef struct UploadStream UploadStream;
UploadStream *api_store_upload_stream_new(ApiStore *a, HttpRequest *req, const char *ref, unsigned bases,
                                          const UploadPlain *plain);
void api_store_upload_stream_feed(UploadStream *u, const uint8_t *upload, size_t n);
void api_store_upload_stream_free(UploadStream *u);
/* Chunk records it had taken before the last piece of the upload came (once
 * the body is whole: what was stored while the rest was on the way). */
size_t api_store_upload_stream_early(const UploadStream *u);
/* Of the chunk records it took, the ones stored so far. */
size_t api_store_upload_stream_done(UploadStream *u);
/* stream: the same upload's stream, or NULL; times (may be NULL): where the
 * time went (for the log) */
typedef struct UploadTimes {
        uint64_t store_ns;  /* checked and stored (what a stream left) */
        uint64_t commit_ns; /* made durable */
        uint64_t check_ns;  /* everything below the checkpoint found here */
} UploadTimes;
int api_store_take_upload(ApiStore *a, HttpRequest *req, unsigned bases, const void *body, size_t len,
                          const char *ref, const RoamId *id, const UploadPlain *plain, UploadStream *stream,
                          UploadTimes *times);

/* The body of PUT /v1/refs/NAME: {"id": HEX, "old": HEX or null}.
 * Unknown keys are ignored. Pure and bounded (fuzzed in fuzz-wire.c). */
typedef struct RefUpdate {
        RoamId id;        /* never the null id */
        bool conditional; /* "old" was given */
        RoamId old;       /* ID_NULL: the ref must not exist */
} RefUpdate;
/* -EBADMSG with an error detail for anything malformed. */
int ref_update_parse(const void *body, size_t len, RefUpdate *ret);

/* The body of POST /v1/pack/get: {"want": HEX, "have": [HEX, ...],
 * "max_bytes": N} with at most API_PACK_HAVE_MAX ids in "have" (optional) and
 * max_bytes (optional) from 1 MiB to PACK_MAX_BYTES. Pure and bounded (fuzzed). */
#define API_PACK_HAVE_MAX 16
typedef struct PackRequest {
        RoamId want;
        RoamId have[API_PACK_HAVE_MAX];
        size_t n_have;
        size_t max_bytes; /* PACK_MAX_BYTES when not given */
        RoamId bases[16]; /* "bases": blobs whose pages the client holds (PAGE_CHUNK_MAX_BASES) */
        size_t n_bases;
} PackRequest;
int pack_request_parse(const void *body, size_t len, PackRequest *ret);
/* Fills pw (pack_writer_init()'d here; the caller frees it with
 * pack_writer_done() on success) with the pack that answers pr, the work of
 * POST /v1/pack/get: -ENOENT when pr's want is not here (*ret_missing null)
 * or a chunk below it is not (*ret_missing that chunk). */
int pack_answer(Store *s, const PackRequest *pr, PackWriter *pw, RoamId *ret_missing);
/* The same, sent while it is made (src/sync/pack-out.h), after prefix:
 * -E2BIG when it might not fit in the request's max_bytes (pack_answer()
 * then makes what fits). */
int pack_answer_stream(Store *s, const PackRequest *pr, const void *prefix, size_t prefix_len, PackOut **ret,
                       RoamId *ret_missing);
