/* SPDX-License-Identifier: MIT */
#pragma once

/* Pull and push of refs between the local store and a remote daemon
 * (docs/sync-protocol.md). Both are stateless and resumable: run again after
 * an interruption, they send only what the other side still lacks. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../basic/progress.h"
#include "../store/store.h"
#include "../store/reach.h"
#include "pack.h"
#include "pages.h"
#include "remote.h"

typedef struct SyncOptions {
        unsigned parallel;     /* requests in flight (default 4) */
        unsigned retries;      /* per batch, for transient errors (default 3) */
        Progress *progress;    /* plain bytes of chunks transferred */
        volatile int *cancel;  /* set non-zero to stop early (-ECANCELED) */
        bool (*should_stop)(void *userdata); /* polled too, with userdata (may be NULL) */
        /* called once the chunks to transfer are known (may be NULL) */
        void (*on_start)(uint64_t chunks_total, uint64_t chunks_to_send, void *userdata);
        /* called after every batch, from worker threads, serialized */
        void (*on_batch)(uint64_t chunks_done, uint64_t chunks_total, uint64_t wire_bytes, void *userdata);
        void *userdata;
        /* Pull: objects the local store holds with everything below them;
         * push: objects the remote holds so. With any, the transfer first
         * tries one pack (docs/sync-protocol.md: everything below the root
         * that is not below these, one round trip), then goes the usual way
         * for whatever is still missing: a wrong hint costs time, not data. */
        const RoamId *have;
        size_t n_have;
        /* Push: set the remote ref whatever it is now (no compare-and-swap);
         * for staging refs that only this host writes. */
        bool overwrite;
        /* Pull: no pack (one came already, sync_pack_take()): only the
         * usual way for whatever is still missing */
        bool no_pack;
        /* Never send (push) or ask for (pull) chunks as page references
         * (pages.h); they are off too with ROAM_PAGE_DEDUP=0 in the
         * environment. */
        bool no_pages;
} SyncOptions;

typedef struct SyncStats {
        RoamId id;                /* the ref's object */
        uint64_t objects_sent;    /* objects transferred */
        uint64_t objects_delta;   /* of them, as deltas against a base (obj-delta.h) */
        uint64_t chunks_total;    /* chunks the ref needs */
        uint64_t chunks_sent;     /* chunks transferred */
        uint64_t chunks_refetched;/* chunks received wrong and fetched again */
        uint64_t chunks_paged;    /* chunks sent as pages and rebuilt by the receiver (pages.h) */
        uint64_t pages_referenced;/* pull: pages of those taken from blobs here, not sent */
        uint64_t chunks_page_fallback; /* sent as pages but not rebuilt, then sent whole */
        uint64_t wire_bytes;      /* request and response bodies */
        double seconds;
        /* sync_pull_object()'s steps: the objects fetched or found here, the
         * chunks they name, which of those are missing here, the ref set */
        uint64_t objects_ns, reach_ns, check_ns, ref_ns;
} SyncStats;

/* Fetches remote ref `ref` into the local store and sets local ref
 * `local_ref` (NULL = same name) after every chunk is stored durably.
 * A chunk whose bytes do not match its id never enters the store: the batch is
 * fetched again (up to retries), then the pull fails naming the chunk. */
int sync_pull(Store *s, Remote *r, const char *ref, const char *local_ref, const SyncOptions *o, SyncStats *ret);

/* A pack in the answer to another request (take offline: the server's grant
 * with the remainder right after it, one round trip for both).
 * sync_pack_ask() makes what that request carries as its "pack" member:
 * {"have", "bases", "max_bytes"} as for POST /v1/pack/get, from o's have
 * hints (the want is the answer's); sync_pack_take() stores the pack that came
 * back: 1 when it says it is complete, 0 when not (then sync_pull_object()
 * with no_pack fetches the rest the usual way, as it must anyway to set the
 * ref). Caller frees *ret with sync_pack_ask_free() and owns *ret_json. */
typedef struct SyncPackAsk SyncPackAsk;
int sync_pack_ask(Store *s, const SyncOptions *o, json_t **ret_json, SyncPackAsk **ret);
int sync_pack_take(SyncPackAsk *a, const void *pack, size_t len, SyncStats *st);
/* The same while the pack comes: feed() gets the pack so far (n bytes at
 * pack, which stays where it is: the buffer of remote_conn_observe()) and
 * hands every whole chunk record to threads that store it meanwhile;
 * finish() waits for them, checks the whole pack's framing and stores its
 * objects and whatever chunks are left, and returns as sync_pack_take(). A
 * pack the stream cannot read is left to finish(), which refuses it. */
typedef struct SyncPackStream SyncPackStream;
int sync_pack_stream_new(SyncPackAsk *a, SyncPackStream **ret);
/* The same for a pack with pages of the bases pb (NULL: none; it must stay
 * until the stream is freed): an upload the server stores as it comes. */
int sync_pack_stream_new_bases(Store *s, PageBases *pb, SyncPackStream **ret);
void sync_pack_stream_feed(SyncPackStream *ps, const uint8_t *pack, size_t n);
int sync_pack_stream_finish(SyncPackStream *ps, const void *pack, size_t len, SyncStats *st);
/* Chunk records handed to the threads so far (by the feeder's thread). */
size_t sync_pack_stream_taken(const SyncPackStream *ps);
/* Of them, the ones the threads are done with (stored, or left to the rest). */
size_t sync_pack_stream_done(SyncPackStream *ps);
/* Stops the threads (they no longer touch the pack) and feeds no more: for a
 * body that goes away. What they stored stays (checked chunks). */
void sync_pack_stream_stop(SyncPackStream *ps);
void sync_pack_stream_free(SyncPackStream *ps);
static inline void sync_pack_stream_freep(SyncPackStream **ps) {
        if (*ps)
                sync_pack_stream_free(*ps);
}
/* Stores a pack: every object and chunk verified against its id, chunks as
 * pages rebuilt from the bases pb (NULL: none); its objects in order, then
 * its chunks on every core (a hand-over's remainder: rebuilding, verifying,
 * compressing and, in an encrypted store, encrypting them is work in the
 * pause). A chunk whose pages do not rebuild it is counted in
 * st->chunks_page_fallback and not stored. 1 when the pack says it is
 * complete, 0 when not. */
int sync_pack_store(Store *s, PageBases *pb, const void *body, size_t len, SyncStats *st);
/* A plain copy of one of the bases (page_bases_attach_plain()): a RAM file
 * staged ahead, which must stay as it is until a is freed. */
void sync_pack_ask_attach_plain(SyncPackAsk *a, const RoamId *id, const void *data, size_t len);
void sync_pack_ask_free(SyncPackAsk *a);
static inline void sync_pack_ask_freep(SyncPackAsk **a) {
        if (*a)
                sync_pack_ask_free(*a);
}

/* Like sync_pull(), for an object whose id is known already (no ref lookup):
 * fetches it and everything below it, then sets local_ref to it. */
int sync_pull_object(Store *s, Remote *r, const RoamId *root, const char *local_ref, const SyncOptions *o,
                     SyncStats *ret);

/* An upload of one pack (the body of POST /v1/pack/put, and of a move-in
 * that brings its remainder: docs/sync-protocol.md): everything below root
 * (need: its reach, or NULL to find it) that is not below the haves (which the remote holds
 * whole), as one pack; with n_bases > 0 the body starts with that many base
 * index ids (the blobs below the haves) and changed chunks may go as pages.
 * -E2BIG when it is more than a remainder (then the usual way). */
typedef struct SyncUpload {
        uint8_t *body;
        size_t len;
        unsigned n_bases;
        uint64_t objects, chunks, paged;
        uint64_t deltas; /* objects as deltas against a base (obj-delta.h) */
} SyncUpload;
int sync_upload_build(Store *s, const RoamId *root, const Reach *need, const RoamId *haves, size_t n_have,
                      bool no_pages, SyncUpload *ret);
void sync_upload_done(SyncUpload *u);
/* What an upload against the remote's haves needs from them: what is
 * below them, and (unless no_pages) the bases among them with a sender of
 * changed chunks as their changed pages. Made ahead (a hand-over makes it
 * from the pre-copy before its pause). Caller frees. */
typedef struct SyncUploadPlan SyncUploadPlan;
int sync_upload_plan_new(Store *s, const RoamId *haves, size_t n_have, bool no_pages, SyncUploadPlan **ret);
void sync_upload_plan_free(SyncUploadPlan *p);
static inline void sync_upload_plan_freep(SyncUploadPlan **p) {
        if (*p)
                sync_upload_plan_free(*p);
}
/* The upload of everything below root not below the plan's haves, made
 * while it is sent (pack-out.h: read it with pack_out_read(), the most it
 * can be in pack_out_stats()'s bound): the body is line (a JSON object, to
 * which "bases": N is added when chunks go as pages against N bases) as one
 * line, the bases' ids, then the pack. -E2BIG as sync_upload_build().
 * Caller frees *ret with pack_out_free(). */
struct PackOut;
struct json_t;
int sync_upload_stream(Store *s, const RoamId *root, const SyncUploadPlan *plan, struct json_t *line,
                       struct PackOut **ret);

/* Sends local ref `ref` (and everything it needs) to the remote, then sets
 * remote ref `remote_ref` (NULL = same name) with compare-and-swap against
 * the value it had when the push started (-ESTALE if it changed meanwhile). */
int sync_push(Store *s, Remote *r, const char *ref, const char *remote_ref, const SyncOptions *o, SyncStats *ret);

/* Fills pw (from pack_writer_init()) with every object and then every chunk
 * of want that is not in have, read from s (through ps, when the receiver
 * named bases: chunks then may go as pages, and the pack says PACK_PAGED;
 * NULL: as stored), and writes its header: complete,
 * or, when pw filled up, not (*ret_complete says which). A chunk missing
 * from s is -ENOENT with its id in *ret_missing. */
int sync_pack_fill(Store *s, const Reach *want, const Reach *have, PageSender *ps, PackWriter *pw,
                   bool *ret_complete, RoamId *ret_missing);
