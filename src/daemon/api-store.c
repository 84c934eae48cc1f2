/* SPDX-License-Identifier: MIT */
#include "api-store.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "config.h"

#include "../basic/error.h"
#include "../basic/failpoint.h"
#include "../basic/fileio.h"
#include "../basic/idset.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../store/reach.h"
#include "../sync/obj-delta.h"
#include "../sync/pack-out.h"
#include "../sync/pack.h"
#include "../sync/page-chunk.h"
#include "../sync/pages.h"
#include "../sync/sync.h"
#include "../sync/wire.h"
#include "auth.h"

#define REF_JSON_MAX_DEPTH 8

/* Per-thread state: a ChunkCodec for the store and a decoder for verifying
 * chunks before anything is written. Freed when the thread exits. */
typedef struct Worker {
        ChunkCodec *codec;
        ZSTD_DCtx *dctx;
        uint8_t *plain;
} Worker;

struct ApiStore {
        Store *s;
        char *role;
        char fingerprint[80]; /* "" for plain HTTP */
        uint32_t chunk_size;
        size_t max_record;
        pthread_key_t worker_key;
        pthread_rwlock_t commit_lock;
};

static void worker_free(void *p) {
        Worker *w = p;
        if (!w)
                return;
        chunk_codec_free(w->codec);
        ZSTD_freeDCtx(w->dctx);
        free(w->plain);
        free(w);
}

static Worker *worker_get(ApiStore *a) {
        Worker *w = pthread_getspecific(a->worker_key);
        if (w)
                return w;
        w = calloc(1, sizeof *w);
        if (!w)
                return NULL;
        w->codec = chunk_codec_new(a->s);
        w->dctx = ZSTD_createDCtx();
        w->plain = malloc(a->chunk_size);
        if (!w->codec || !w->dctx || !w->plain || pthread_setspecific(a->worker_key, w) != 0) {
                worker_free(w);
                return NULL;
        }
        return w;
}

int api_store_new(Store *s, const char *server_role, ApiStore **ret) {
        ApiStore *a = calloc(1, sizeof *a);
        if (!a)
                return -ENOMEM;
        a->s = s;
        a->chunk_size = store_chunk_size(s);
        a->max_record = ZSTD_compressBound(a->chunk_size);
        a->role = strdup(server_role ? server_role : "server");
        if (!a->role) {
                free(a);
                return -ENOMEM;
        }
        int r = -pthread_key_create(&a->worker_key, worker_free);
        if (r < 0) {
                free(a->role);
                free(a);
                return r;
        }
        pthread_rwlockattr_t attr;
        pthread_rwlockattr_init(&attr);
        /* a waiting commit holds back new writers, so acknowledgements are not starved */
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&a->commit_lock, &attr);
        pthread_rwlockattr_destroy(&attr);
        *ret = a;
        return 0;
}

void api_store_free(ApiStore *a) {
        if (!a)
                return;
        /* the calling thread's worker; server threads freed theirs on exit */
        worker_free(pthread_getspecific(a->worker_key));
        pthread_key_delete(a->worker_key);
        pthread_rwlock_destroy(&a->commit_lock);
        free(a->role);
        free(a);
}

void api_store_put_begin(ApiStore *a) {
        pthread_rwlock_rdlock(&a->commit_lock);
}

void api_store_put_end(ApiStore *a) {
        pthread_rwlock_unlock(&a->commit_lock);
}

int api_store_commit(ApiStore *a) {
        pthread_rwlock_wrlock(&a->commit_lock);
        int r = store_commit(a->s);
        pthread_rwlock_unlock(&a->commit_lock);
        return r;
}

/* ---- the ref update body ---- */

/* Nesting depth of JSON text, counted outside strings; bounds the parser's
 * recursion before it runs. */
static size_t json_depth(const char *p, size_t len) {
        size_t depth = 0, max = 0;
        bool in_string = false;
        for (size_t i = 0; i < len; i++) {
                char ch = p[i];
                if (in_string) {
                        if (ch == '\\')
                                i++;
                        else if (ch == '"')
                                in_string = false;
                } else if (ch == '"')
                        in_string = true;
                else if (ch == '[' || ch == '{')
                        max = MAX(max, ++depth);
                else if ((ch == ']' || ch == '}') && depth > 0)
                        depth--;
        }
        return max;
}

static int parse_id_member(json_t *v, const char *key, RoamId *ret) {
        RoamId id;
        if (!json_is_string(v) || id_from_hex(json_string_value(v), &id) < 0 || id_is_null(&id))
                return err_set(-EBADMSG, "ref update: \"%s\" must be an object id of 64 hex digits", key);
        *ret = id;
        return 0;
}

int ref_update_parse(const void *body, size_t len, RefUpdate *ret) {
        if (len > API_REF_BODY_MAX)
                return err_set(-EBADMSG, "ref update is larger than %u bytes", API_REF_BODY_MAX);
        if (json_depth(body, len) > REF_JSON_MAX_DEPTH)
                return err_set(-EBADMSG, "ref update is nested too deeply (send {\"id\": HEX, \"old\": HEX or null})");
        json_error_t e;
        _cleanup_(json_decrefp) json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
        if (!j)
                return err_set(-EBADMSG, "ref update is not valid JSON: %s (send {\"id\": HEX, \"old\": HEX or null})",
                               e.text);
        if (!json_is_object(j))
                return err_set(-EBADMSG, "ref update must be a JSON object {\"id\": HEX, \"old\": HEX or null}");
        RefUpdate u = { 0 };
        int r = parse_id_member(json_object_get(j, "id"), "id", &u.id);
        if (r < 0)
                return r;
        json_t *old = json_object_get(j, "old");
        if (old) {
                u.conditional = true;
                if (!json_is_null(old)) {
                        r = parse_id_member(old, "old", &u.old);
                        if (r < 0)
                                return err_set(r, "ref update: \"old\" must be an object id of 64 hex digits or null");
                }
        }
        *ret = u;
        return 0;
}

int pack_request_parse(const void *body, size_t len, PackRequest *ret) {
        static const char *shape = "(send {\"want\": HEX, \"have\": [HEX, ...]})";
        if (len > API_REF_BODY_MAX)
                return err_set(-EBADMSG, "pack request is larger than %u bytes", API_REF_BODY_MAX);
        if (json_depth(body, len) > REF_JSON_MAX_DEPTH)
                return err_set(-EBADMSG, "pack request is nested too deeply %s", shape);
        json_error_t e;
        _cleanup_(json_decrefp) json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
        if (!j || !json_is_object(j))
                return err_set(-EBADMSG, "pack request is not a JSON object %s", shape);
        PackRequest p = { 0 };
        json_t *want = json_object_get(j, "want"), *have = json_object_get(j, "have");
        if (!json_is_string(want) || id_from_hex(json_string_value(want), &p.want) < 0 || id_is_null(&p.want))
                return err_set(-EBADMSG, "pack request: \"want\" must be an object id of 64 hex digits");
        if (have && (!json_is_array(have) || json_array_size(have) > API_PACK_HAVE_MAX))
                return err_set(-EBADMSG, "pack request: \"have\" must be a list of at most %d object ids",
                               API_PACK_HAVE_MAX);
        size_t i;
        json_t *v;
        json_array_foreach(have, i, v) {
                if (!json_is_string(v) || id_from_hex(json_string_value(v), &p.have[i]) < 0 ||
                    id_is_null(&p.have[i]))
                        return err_set(-EBADMSG, "pack request: \"have\" entry %zu is not an object id of 64 hex "
                                       "digits", i + 1);
                p.n_have++;
        }
        json_t *bases = json_object_get(j, "bases");
        if (bases && (!json_is_array(bases) || json_array_size(bases) > PAGE_CHUNK_MAX_BASES))
                return err_set(-EBADMSG, "pack request: \"bases\" must be a list of at most %d index ids",
                               PAGE_CHUNK_MAX_BASES);
        json_array_foreach(bases, i, v) {
                if (!json_is_string(v) || id_from_hex(json_string_value(v), &p.bases[i]) < 0 ||
                    id_is_null(&p.bases[i]))
                        return err_set(-EBADMSG, "pack request: \"bases\" entry %zu is not an object id of 64 hex "
                                       "digits", i + 1);
                p.n_bases++;
        }
        json_t *max = json_object_get(j, "max_bytes");
        p.max_bytes = PACK_MAX_BYTES;
        if (max) {
                if (!json_is_integer(max) || json_integer_value(max) < (1 << 20) ||
                    json_integer_value(max) > PACK_MAX_BYTES)
                        return err_set(-EBADMSG, "pack request: \"max_bytes\" must be from %u to %u", 1u << 20,
                                       PACK_MAX_BYTES);
                p.max_bytes = (size_t) json_integer_value(max);
        }
        *ret = p;
        return 0;
}

/* ---- helpers ---- */

static const char *ref_name_of(HttpRequest *req) {
        const char *name = http_request_rest(req);
        return ref_name_is_valid(name) ? name : NULL;
}

static int reply_bad_ref_name(HttpRequest *req) {
        return http_reply_error(req, 400,
                                "ref name '%.300s' is invalid (use " REF_NAME_RULE ")",
                                http_request_rest(req));
}

static int reply_ref_not_found(HttpRequest *req, const char *name) {
        return http_reply_error(req, 404, "ref '%s' not found", name);
}

static int parse_hex_rest(HttpRequest *req, const char *what, RoamId *ret) {
        const char *hex = http_request_rest(req);
        if (id_from_hex(hex, ret) < 0) {
                http_reply_error(req, 400, "invalid %s id '%.80s' (give 64 hex digits)", what, hex);
                return -EINVAL;
        }
        return 0;
}

/* ---- /v1/info ---- */

static int h_info(HttpRequest *req, void *userdata) {
        ApiStore *a = userdata;
        const Auth *au = auth_of(req);
        return http_reply_json(req, 200,
                               json_pack("{s:s, s:s, s:I, s:s?, s:s?, s:s?}", "version", ROAM_VERSION, "role",
                                         a->role, "chunk_size", (json_int_t) a->chunk_size, "user",
                                         au ? au->user : NULL, "token_role",
                                         au ? catalog_role_to_string(au->role) : NULL, "tls_fingerprint",
                                         a->fingerprint[0] ? a->fingerprint : NULL));
}

void api_store_set_fingerprint(ApiStore *a, const char *fingerprint) {
        snprintf(a->fingerprint, sizeof a->fingerprint, "%s", fingerprint ? fingerprint : "");
}

/* ---- refs ---- */

typedef struct ListCtx {
        const Auth *auth;
        json_t *refs;
} ListCtx;

static int list_cb(const char *name, const RoamId *id, void *userdata) {
        ListCtx *l = userdata;
        if (!id || auth_ref_access(l->auth, name) == AUTH_ACCESS_NONE)
                return 0;
        char hex[ID_HEX_SIZE];
        return json_object_set_new(l->refs, name, json_string(id_to_hex(id, hex))) < 0 ? -ENOMEM : 0;
}

static int h_refs_list(HttpRequest *req, void *userdata) {
        ApiStore *a = userdata;
        const char *prefix = http_request_query(req, "prefix");
        if (prefix && strlen(prefix) > REF_NAME_MAX_LEN)
                return http_reply_error(req, 400, "prefix is longer than %d characters", REF_NAME_MAX_LEN);
        _cleanup_(json_decrefp) json_t *refs = json_object();
        if (!refs)
                return -ENOMEM;
        ListCtx l = { .auth = auth_of(req), .refs = refs };
        int r = store_ref_foreach(a->s, prefix ? prefix : "", list_cb, &l);
        if (r < 0)
                return r;
        return http_reply_json(req, 200, json_pack("{s:O}", "refs", refs));
}

static int h_ref_get(HttpRequest *req, void *userdata) {
        ApiStore *a = userdata;
        const char *name = ref_name_of(req);
        if (!name)
                return reply_bad_ref_name(req);
        if (auth_ref_access(auth_of(req), name) == AUTH_ACCESS_NONE)
                return reply_ref_not_found(req, name);
        RoamId id;
        int r = store_ref_get(a->s, name, &id);
        if (r == -ENOENT)
                return reply_ref_not_found(req, name);
        if (r < 0)
                return r;
        char hex[ID_HEX_SIZE];
        return http_reply_json(req, 200, json_pack("{s:s, s:s}", "name", name, "id", id_to_hex(&id, hex)));
}

static void first_problem(const char *msg, void *userdata) {
        char *buf = userdata;
        if (!buf[0])
                snprintf(buf, 512, "%s", msg);
}

/* 0 if every object below id is stored and every chunk published, 1 with a
 * message if not, or a negative errno. */
static int check_complete(ApiStore *a, const RoamId *id, char *msg, size_t size) {
        _cleanup_(reach_freep) Reach *reach = reach_new();
        if (!reach)
                return -ENOMEM;
        char problem[512] = "";
        reach->problem = first_problem;
        reach->userdata = problem;
        int r = reach_add_object(a->s, reach, id);
        if (r < 0)
                return r;
        if (reach->bad_objects > 0) {
                snprintf(msg, size, "%llu objects it needs are missing or malformed, first: %s",
                         (unsigned long long) reach->bad_objects, problem);
                return 1;
        }
        size_t pos = 0, missing = 0;
        RoamId c, first;
        while (idset_next(reach->chunks, &pos, &c)) {
                /* published chunks only: a pending one is not durable yet */
                r = store_chunk_published(a->s, &c);
                if (r == 0 && missing++ == 0)
                        first = c;
                if (r < 0)
                        return r;
        }
        if (missing > 0) {
                char hex[ID_HEX_SIZE];
                snprintf(msg, size, "the server lacks %zu of its %zu chunks, first: %s", missing,
                         idset_size(reach->chunks), id_to_hex(&first, hex));
                return 1;
        }
        return 0;
}

/* The ref named by the path, if the token may write it: returns 0 and sets
 * *ret_name. Otherwise it answers (400; 404 as if absent; 403 "may not
 * VERB") and returns -EPERM: the handler then returns 0 (like parse_hex_rest). */
static int ref_name_to_write(HttpRequest *req, const char *name, const char *verb, const char *hint) {
        if (!name)
                reply_bad_ref_name(req);
        else {
                AuthAccess acc = auth_ref_access(auth_of(req), name);
                if (acc == AUTH_ACCESS_NONE)
                        reply_ref_not_found(req, name);
                else if (acc != AUTH_ACCESS_WRITE)
                        http_reply_error(req, 403, "this token may not %s ref '%s'%s", verb, name, hint);
                else
                        return 0;
        }
        return -EPERM;
}

static int ref_to_write(HttpRequest *req, const char *verb, const char *hint, const char **ret_name) {
        const char *name = ref_name_of(req);
        int r = ref_name_to_write(req, name, verb, hint);
        if (r >= 0)
                *ret_name = name;
        return r;
}

/* Sets ref name as u says after the completeness check, and answers: 200
 * with {"name", "id"} and the members of extra (taken), 412 or 409. */
static int apply_ref_update(HttpRequest *req, ApiStore *a, const char *name, const RefUpdate *u, json_t *extra) {
        _cleanup_(json_decrefp) json_t *more = extra;
        char msg[1024], hex[ID_HEX_SIZE];
        int r = check_complete(a, &u->id, msg, sizeof msg);
        if (r < 0)
                return r;
        if (r > 0)
                return http_reply_error(req, 412, "ref '%s' cannot point to %s: %s (push them first)", name,
                                        id_to_hex(&u->id, hex), msg);
        r = store_ref_set(a->s, name, &u->id, u->conditional ? &u->old : NULL);
        if (r == -ESTALE) {
                RoamId cur;
                char chex[ID_HEX_SIZE];
                int k = store_ref_get(a->s, name, &cur);
                return http_reply_error(req, 409, "ref '%s' is %s, not %s as expected (pull it, then retry)", name,
                                        k >= 0 ? id_to_hex(&cur, chex) : "absent",
                                        id_is_null(&u->old) ? "absent" : id_to_hex(&u->old, hex));
        }
        if (r < 0)
                return r;
        json_t *j = json_pack("{s:s, s:s}", "name", name, "id", id_to_hex(&u->id, hex));
        if (j && more)
                json_object_update(j, more);
        return http_reply_json(req, 200, j);
}

static int h_ref_put(HttpRequest *req, void *userdata) {
        ApiStore *a = userdata;
        const char *name;
        if (ref_to_write(req, "change", " (user tokens write only sessions/USER/...)", &name) < 0)
                return 0;
        size_t len;
        const void *body = http_request_body(req, &len);
        RefUpdate u;
        int r = ref_update_parse(body ? body : "", len, &u);
        if (r < 0)
                return http_reply_error(req, 400, "%s", err_message(r));
        return apply_ref_update(req, a, name, &u, NULL);
}

static int h_ref_delete(HttpRequest *req, void *userdata) {
        ApiStore *a = userdata;
        const char *name;
        if (ref_to_write(req, "delete", "", &name) < 0)
                return 0;
        int r = store_ref_delete(a->s, name);
        if (r == -ENOENT)
                return reply_ref_not_found(req, name);
        if (r < 0)
                return r;
        return http_reply_json(req, 200, json_pack("{s:s}", "name", name));
}

/* ---- objects ---- */

static int h_object_get(HttpRequest *req, void *userdata) {
        ApiStore *a = userdata;
        RoamId id;
        if (parse_hex_rest(req, "object", &id) < 0)
                return 0;
        void *data;
        size_t len;
        int r = store_object_get(a->s, &id, API_OBJECT_MAX, &data, &len);
        if (r == -ENOENT) {
                char hex[ID_HEX_SIZE];
                return http_reply_error(req, 404, "object %s not found", id_to_hex(&id, hex));
        }
        if (r < 0)
                return http_reply_error(req, 500, "%s", err_message(r));
        return http_reply_buffer(req, 200, "application/octet-stream", data, len);
}

static int h_object_put(HttpRequest *req, void *userdata) {
        ApiStore *a = userdata;
        RoamId id, got;
        char hex[ID_HEX_SIZE], ghex[ID_HEX_SIZE];
        if (parse_hex_rest(req, "object", &id) < 0)
                return 0;
        size_t len;
        const void *body = http_request_body(req, &len);
        sha256(body ? body : "", len, &got);
        if (!id_equal(&id, &got))
                return http_reply_error(req, 400, "object body does not match its id %s (its SHA-256 is %s)",
                                        id_to_hex(&id, hex), id_to_hex(&got, ghex));
        int r = store_object_put(a->s, body ? body : "", len, &got);
        if (r < 0)
                return r;
        return http_reply_json(req, 201, json_pack("{s:s}", "id", id_to_hex(&id, hex)));
}

/* ---- chunks ---- */

static int reply_bad_id_list(HttpRequest *req, size_t max) {
        return http_reply_error(req, 400,
                                "body must be a list of at most %zu chunk ids of 32 bytes each, none all-zero", max);
}

static int h_chunks_missing(HttpRequest *req, void *userdata) {
        ApiStore *a = userdata;
        size_t len, n;
        const void *body = http_request_body(req, &len);
        if (wire_id_list_check(body, len, WIRE_MAX_IDS_MISSING, &n) < 0)
                return reply_bad_id_list(req, WIRE_MAX_IDS_MISSING);
        uint8_t *out = malloc(MAX(n * ID_SIZE, 1u));
        if (!out)
                return -ENOMEM;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                int r = store_chunk_has(a->s, wire_id_at(body, i));
                if (r < 0) {
                        free(out);
                        return r;
                }
                if (r == 0)
                        memcpy(out + ID_SIZE * k++, wire_id_at(body, i), ID_SIZE);
        }
        return http_reply_buffer(req, 200, "application/octet-stream", out, k * ID_SIZE);
}

/* The response of POST /v1/chunks/get, produced record by record. */
typedef struct ChunkStream {
        ApiStore *a;
        RoamId *ids;
        uint64_t *sizes;
        size_t n;
        size_t next;                   /* record to load next */
        uint8_t head[WIRE_RECORD_HEADER];
        void *data;                    /* current record's frame */
        size_t rec_len, rec_off;       /* current record: header + frame */
} ChunkStream;

static void chunk_stream_free(void *p) {
        ChunkStream *cs = p;
        free(cs->ids);
        free(cs->sizes);
        free(cs->data);
        free(cs);
}

static int chunk_stream_load(ChunkStream *cs) {
        Worker *w = worker_get(cs->a);
        if (!w)
                return -ENOMEM;
        free(cs->data);
        cs->data = NULL;
        size_t zlen;
        const RoamId *id = &cs->ids[cs->next];
        int r = store_chunk_get_compressed(cs->a->s, w->codec, id, &cs->data, &zlen);
        if (r < 0)
                return r;
        /* the Content-Length promised the stat size; anything else must abort */
        if (zlen != cs->sizes[cs->next])
                return -EIO;
        memcpy(cs->head, id->b, ID_SIZE);
        put_le32(cs->head + ID_SIZE, (uint32_t) zlen);
        cs->rec_len = WIRE_RECORD_HEADER + zlen;
        cs->rec_off = 0;
        cs->next++;
        return 0;
}

static ssize_t chunk_stream_read(void *userdata, uint64_t pos, void *buf, size_t max) {
        ChunkStream *cs = userdata;
        uint8_t *out = buf;
        size_t done = 0;
        while (done < max) {
                if (cs->rec_off == cs->rec_len) {
                        if (cs->next == cs->n)
                                break;
                        int r = chunk_stream_load(cs);
                        if (r < 0)
                                return r;
                }
                size_t k = wire_record_copy(out + done, max - done, cs->head, cs->data,
                                            cs->rec_len - WIRE_RECORD_HEADER, cs->rec_off);
                cs->rec_off += k;
                done += k;
        }
        return (ssize_t) done;
}

static int h_chunks_get(HttpRequest *req, void *userdata) {
        ApiStore *a = userdata;
        size_t len, n;
        const void *body = http_request_body(req, &len);
        if (wire_id_list_check(body, len, WIRE_MAX_IDS_GET, &n) < 0)
                return reply_bad_id_list(req, WIRE_MAX_IDS_GET);
        ChunkStream *cs = calloc(1, sizeof *cs);
        if (!cs)
                return -ENOMEM;
        cs->a = a;
        cs->n = n;
        cs->ids = malloc(MAX(n, 1u) * sizeof *cs->ids);
        cs->sizes = malloc(MAX(n, 1u) * sizeof *cs->sizes);
        if (!cs->ids || !cs->sizes) {
                chunk_stream_free(cs);
                return -ENOMEM;
        }
        uint64_t total = 0;
        for (size_t i = 0; i < n; i++) {
                cs->ids[i] = *wire_id_at(body, i);
                int r = store_chunk_stat(a->s, &cs->ids[i], &cs->sizes[i]);
                if (r < 0) {
                        char hex[ID_HEX_SIZE];
                        chunk_stream_free(cs);
                        if (r == -ENOENT)
                                return http_reply_error(req, 404, "chunk %s not found",
                                                        id_to_hex(wire_id_at(body, i), hex));
                        return r;
                }
                total += WIRE_RECORD_HEADER + cs->sizes[i];
        }
        return http_reply_stream(req, 200, "application/octet-stream", total, chunk_stream_read, cs, chunk_stream_free);
}

/* POST /v1/chunks/pages: like chunks/get, but a chunk some of whose pages
 * are pages of the bases the client named may come as pages
 * (src/sync/pages.h). Built whole: a batch is a few MiB. */
static int h_chunks_pages(HttpRequest *req, void *userdata) {
        ApiStore *a = userdata;
        size_t len, n;
        const void *body = http_request_body(req, &len);
        const uint8_t *bases, *ids;
        unsigned nb;
        if (page_request_parse(body ? body : "", len, WIRE_MAX_IDS_GET, &bases, &nb, &ids, &n) < 0)
                return http_reply_error(req, 400,
                                        "body must be a u32 base count (1-%d), that many 32-byte index ids, then "
                                        "1-%d 32-byte chunk ids",
                                        PAGE_CHUNK_MAX_BASES, WIRE_MAX_IDS_GET);
        RoamId base_ids[PAGE_CHUNK_MAX_BASES];
        memcpy(base_ids, bases, (size_t) nb * ID_SIZE);
        _cleanup_(page_sender_freep) PageSender *ps = NULL;
        int r = page_sender_new(a->s, base_ids, nb, &ps);
        if (r < 0)
                return r;
        _cleanup_free_ uint8_t *out = NULL;
        size_t olen = 0, ocap = 0;
        for (size_t i = 0; i < n; i++) {
                RoamId id;
                memcpy(id.b, ids + i * ID_SIZE, ID_SIZE);
                _cleanup_free_ void *payload = NULL;
                size_t plen;
                r = page_sender_payload(ps, &id, &payload, &plen, NULL);
                if (r == -ENOENT) {
                        char hex[ID_HEX_SIZE];
                        return http_reply_error(req, 404, "chunk %s not found", id_to_hex(&id, hex));
                }
                if (r < 0)
                        return http_reply_error(req, 500, "%s", err_message(r));
                r = wire_append_record(&out, &olen, &ocap, &id, payload, (uint32_t) plen);
                if (r < 0)
                        return r;
        }
        return http_reply_buffer(req, 200, "application/octet-stream", TAKE_PTR(out), olen);
}

/* Checks a record as store_chunk_put_compressed() will, without storing it. */
static int verify_record(ApiStore *a, Worker *w, const RoamId *id, const uint8_t *z, size_t zlen) {
        char hex[ID_HEX_SIZE], ghex[ID_HEX_SIZE];
        unsigned long long want = ZSTD_getFrameContentSize(z, zlen);
        if (want == ZSTD_CONTENTSIZE_ERROR || want == ZSTD_CONTENTSIZE_UNKNOWN || want == 0 || want > a->chunk_size)
                return err_set(-EBADMSG, "chunk %s is not a zstd frame of 1 to %u bytes with its size in the header",
                               id_to_hex(id, hex), a->chunk_size);
        size_t n = ZSTD_decompressDCtx(w->dctx, w->plain, a->chunk_size, z, zlen);
        if (ZSTD_isError(n) || n != want)
                return err_set(-EBADMSG, "chunk %s does not decompress", id_to_hex(id, hex));
        RoamId got;
        sha256(w->plain, n, &got);
        if (!id_equal(&got, id))
                return err_set(-EBADMSG, "chunk %s does not match its id (its content hashes to %s)",
                               id_to_hex(id, hex), id_to_hex(&got, ghex));
        if (n == a->chunk_size && memory_is_zero(w->plain, n))
                return err_set(-EBADMSG, "chunk %s is all zeros (never sent: the index marks zero chunks)",
                               id_to_hex(id, hex));
        return 0;
}

/* The chunk stream of chunks/put and chunks/put-pages: every record
 * checked first (a malformed one is a 400 and nothing is stored), then
 * stored. With bases (pb), a record may be pages (src/sync/pages.h); one
 * whose pages do not rebuild here (a base or page this store lacks or holds
 * otherwise) is skipped and counted: the client sends it whole. */
static int put_stream(HttpRequest *req, ApiStore *a, Worker *w, const uint8_t *stream, size_t slen,
                      PageBases *pb, unsigned nb) {
        WireReader rd;
        RoamId id;
        const uint8_t *z;
        uint32_t zlen;
        int k;
        char hex[ID_HEX_SIZE];
        /* pass 1: every record well formed, every frame right */
        wire_reader_init(&rd, stream, slen, a->max_record);
        while ((k = wire_reader_next(&rd, &id, &z, &zlen)) > 0) {
                PageChunk pc;
                int r = pb && page_chunk_is(z, zlen) ? page_chunk_parse(z, zlen, a->chunk_size, nb, &pc) < 0
                                                               ? err_set(-EBADMSG, "chunk %s: malformed pages",
                                                                         id_to_hex(&id, hex))
                                                               : 0
                                                     : verify_record(a, w, &id, z, zlen);
                if (r < 0)
                        return http_reply_error(req, 400, "%s (nothing of this request was stored)", err_message(r));
        }
        if (k < 0)
                return http_reply_error(req, 400,
                                        "chunk stream is malformed at record %zu (truncated, a length of 0 or over "
                                        "%zu, or more than %d records)",
                                        rd.count + 1, a->max_record, WIRE_MAX_RECORDS);
        /* pass 2: store */
        uint64_t stored = 0, present = 0, paged = 0, skipped = 0;
        int r = 0;
        api_store_put_begin(a);
        wire_reader_init(&rd, stream, slen, a->max_record);
        while (r >= 0 && wire_reader_next(&rd, &id, &z, &zlen) > 0) {
                r = store_chunk_has(a->s, &id);
                if (r > 0)
                        present++;
                else if (r == 0 && pb && page_chunk_is(z, zlen)) {
                        r = page_bases_store(pb, w->codec, &id, z, zlen);
                        if (r >= 0)
                                stored++, paged++;
                        else if (r == -ESTALE) {
                                skipped++;
                                r = 0;
                        }
                } else if (r == 0) {
                        r = store_chunk_put_compressed(a->s, w->codec, &id, z, zlen);
                        if (r >= 0)
                                stored++;
                }
        }
        api_store_put_end(a);
        if (r < 0)
                return r;
        r = api_store_commit(a);
        if (r < 0)
                return r;
        json_t *j = json_pack("{s:I, s:I}", "stored", (json_int_t) stored, "present", (json_int_t) present);
        if (j && pb) {
                json_object_set_new(j, "paged", json_integer((json_int_t) paged));
                json_object_set_new(j, "skipped", json_integer((json_int_t) skipped));
        }
        return http_reply_json(req, 200, j);
}

static int h_chunks_put(HttpRequest *req, void *userdata) {
        ApiStore *a = userdata;
        Worker *w = worker_get(a);
        if (!w)
                return -ENOMEM;
        size_t len;
        const void *body = http_request_body(req, &len);
        return put_stream(req, a, w, body, len, NULL, 0);
}

/* POST /v1/chunks/put-pages: like chunks/put, with the bases the client
 * named (blobs it believes this store holds) first (put_stream()). */
static int h_chunks_put_pages(HttpRequest *req, void *userdata) {
        ApiStore *a = userdata;
        Worker *w = worker_get(a);
        if (!w)
                return -ENOMEM;
        size_t len, slen;
        const void *body = http_request_body(req, &len);
        const uint8_t *bases, *stream;
        unsigned nb;
        if (page_put_parse(body ? body : "", len, &bases, &nb, &stream, &slen) < 0)
                return http_reply_error(req, 400, "body must be a u32 base count (1-%d), that many 32-byte index "
                                        "ids, then a chunk stream",
                                        PAGE_CHUNK_MAX_BASES);
        RoamId base_ids[PAGE_CHUNK_MAX_BASES];
        memcpy(base_ids, bases, (size_t) nb * ID_SIZE);
        _cleanup_(page_bases_freep) PageBases *pb = NULL;
        int r = page_bases_new(a->s, base_ids, nb, &pb);
        if (r < 0)
                return r;
        return put_stream(req, a, w, stream, slen, pb, nb);
}

static int h_chunk_get(HttpRequest *req, void *userdata) {
        ApiStore *a = userdata;
        RoamId id;
        if (parse_hex_rest(req, "chunk", &id) < 0)
                return 0;
        Worker *w = worker_get(a);
        if (!w)
                return -ENOMEM;
        void *data;
        size_t len;
        int r = store_chunk_get_compressed(a->s, w->codec, &id, &data, &len);
        if (r == -ENOENT) {
                char hex[ID_HEX_SIZE];
                return http_reply_error(req, 404, "chunk %s not found", id_to_hex(&id, hex));
        }
        if (r < 0)
                return http_reply_error(req, 500, "%s", err_message(r));
        return http_reply_buffer(req, 200, "application/zstd", data, len);
}

/* ---- packs ---- */

static int h_pack_get(HttpRequest *req, void *userdata) {
        ApiStore *a = userdata;
        size_t len;
        const void *body = http_request_body(req, &len);
        PackRequest pr;
        int r = pack_request_parse(body ? body : "", len, &pr);
        if (r < 0)
                return http_reply_error(req, 400, "%s", err_message(r));
        PackWriter pw;
        RoamId missing;
        r = pack_answer(a->s, &pr, &pw, &missing);
        char hex[ID_HEX_SIZE], mhex[ID_HEX_SIZE];
        if (r == -ENOENT && id_is_null(&missing))
                return http_reply_error(req, 404, "object %s (or an object below it) not found",
                                        id_to_hex(&pr.want, hex));
        if (r == -ENOENT)
                return http_reply_error(req, 404, "chunk %s (below %s) not found", id_to_hex(&missing, mhex),
                                        id_to_hex(&pr.want, hex));
        if (r < 0)
                return r;
        return http_reply_buffer(req, 200, "application/octet-stream", pw.buf, pw.len);
}

/* What a pack answers: want and have as the request says, and a page sender
 * when it named bases. */
static int pack_sources(Store *s, const PackRequest *pr, Reach **ret_want, Reach **ret_have, PageSender **ret_ps) {
        _cleanup_(reach_freep) Reach *want = reach_new(), *have = reach_new();
        if (!want || !have)
                return -ENOMEM;
        /* what the receiver says it has: objects this store lacks subtract nothing */
        int r = 0;
        for (size_t i = 0; i < pr->n_have && r >= 0; i++)
                r = reach_add_object(s, have, &pr->have[i]);
        if (r >= 0)
                r = reach_add_object(s, want, &pr->want);
        if (r < 0)
                return r;
        if (want->bad_objects > 0)
                return -ENOENT;
        *ret_ps = NULL;
        if (pr->n_bases > 0) {
                r = page_sender_new(s, pr->bases, (unsigned) pr->n_bases, ret_ps);
                if (r < 0)
                        return r;
        }
        *ret_want = TAKE_PTR(want);
        *ret_have = TAKE_PTR(have);
        return 0;
}

int pack_answer(Store *s, const PackRequest *pr, PackWriter *pw, RoamId *ret_missing) {
        *ret_missing = ID_NULL;
        _cleanup_(reach_freep) Reach *want = NULL, *have = NULL;
        _cleanup_(page_sender_freep) PageSender *ps = NULL;
        int r = pack_sources(s, pr, &want, &have, &ps);
        if (r < 0)
                return r;
        r = pack_writer_init(pw, pr->max_bytes);
        if (r < 0)
                return r;
        bool complete;
        r = sync_pack_fill(s, want, have, ps, pw, &complete, ret_missing);
        if (r < 0)
                pack_writer_done(pw);
        return r;
}

int pack_answer_stream(Store *s, const PackRequest *pr, const void *prefix, size_t prefix_len, PackOut **ret,
                       RoamId *ret_missing) {
        *ret_missing = ID_NULL;
        _cleanup_(reach_freep) Reach *want = NULL, *have = NULL;
        _cleanup_(page_sender_freep) PageSender *ps = NULL;
        int r = pack_sources(s, pr, &want, &have, &ps);
        if (r < 0)
                return r;
        return pack_out_new(s, want, have, ps, pr->max_bytes, prefix, prefix_len, ret, ret_missing);
}

/* Checks every record of a pack as storing it will, without storing. nb:
 * the bases the client named (0: none, and a chunk record is a frame); a
 * record as pages is checked for its form here, and for its bytes when it is
 * rebuilt (page_bases_store()). */
static int pack_verify(ApiStore *a, Worker *w, const void *body, size_t len, unsigned nb) {
        PackReader rd;
        if (pack_reader_init(&rd, body, len, ZSTD_compressBound(API_OBJECT_MAX), a->max_record) < 0)
                return err_set(-EBADMSG, "pack header is malformed (magic, at most %u objects and %u chunks)",
                               PACK_MAX_OBJECTS, PACK_MAX_CHUNKS);
        if ((rd.flags & PACK_PAGED) && nb == 0)
                return err_set(-EBADMSG, "pack header says pages, but the upload names no bases (bases=N)");
        PackKind kind;
        RoamId id, got;
        const uint8_t *z;
        uint32_t zlen;
        int k;
        char hex[ID_HEX_SIZE];
        uint64_t plain = 0;
        while ((k = pack_reader_next(&rd, &kind, &id, &z, &zlen)) > 0) {
                if (kind == PACK_CHUNK && (rd.flags & PACK_PAGED) && page_chunk_is(z, zlen)) {
                        PageChunk pc;
                        if (page_chunk_parse(z, zlen, a->chunk_size, nb, &pc) < 0)
                                return err_set(-EBADMSG, "chunk %s: malformed pages", id_to_hex(&id, hex));
                        continue;
                }
                if (kind == PACK_CHUNK) {
                        int r = verify_record(a, w, &id, z, zlen);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (obj_delta_is(z, zlen)) {
                        /* its bytes are checked when it is rebuilt (page_bases_store_object()) */
                        ObjDelta d;
                        if (!(rd.flags & PACK_DELTA) ||
                            obj_delta_parse(z, zlen, nb, API_OBJECT_MAX, &d) < 0)
                                return err_set(-EBADMSG, "object %s: malformed delta (or the pack says none)",
                                               id_to_hex(&id, hex));
                        plain += d.len;
                        if (plain > API_PACK_OBJECTS_MAX)
                                return err_set(-EBADMSG, "pack objects come to more than %u bytes",
                                               API_PACK_OBJECTS_MAX);
                        continue;
                }
                _cleanup_free_ void *data = NULL;
                size_t n;
                if (pack_object_decompress(z, zlen, API_OBJECT_MAX, &data, &n) < 0)
                        return err_set(-EBADMSG, "object %s is not a zstd frame of at most %u bytes",
                                       id_to_hex(&id, hex), API_OBJECT_MAX);
                sha256(data, n, &got);
                if (!id_equal(&got, &id))
                        return err_set(-EBADMSG, "object %s does not match its id", id_to_hex(&id, hex));
                plain += n;
                if (plain > API_PACK_OBJECTS_MAX)
                        return err_set(-EBADMSG, "pack objects come to more than %u bytes", API_PACK_OBJECTS_MAX);
        }
        if (k < 0)
                return err_set(-EBADMSG, "pack is malformed at record %u (truncated, a bad length, or bytes after "
                               "the last record)", rd.seen + 1);
        return 0;
}

static int pack_store(ApiStore *a, Worker *w, const void *body, size_t len, uint64_t *ret_objects,
                      uint64_t *ret_stored, uint64_t *ret_present) {
        PackReader rd;
        int r = pack_reader_init(&rd, body, len, ZSTD_compressBound(API_OBJECT_MAX), a->max_record);
        PackKind kind;
        RoamId id, got;
        const uint8_t *z;
        uint32_t zlen;
        api_store_put_begin(a);
        while (r >= 0 && pack_reader_next(&rd, &kind, &id, &z, &zlen) > 0) {
                if (kind == PACK_OBJECT) {
                        _cleanup_free_ void *data = NULL;
                        size_t n;
                        r = pack_object_decompress(z, zlen, API_OBJECT_MAX, &data, &n);
                        if (r >= 0)
                                r = store_object_put(a->s, data, n, &got);
                        if (r >= 0)
                                (*ret_objects)++;
                        continue;
                }
                r = store_chunk_has(a->s, &id);
                if (r > 0)
                        (*ret_present)++;
                else if (r == 0) {
                        r = store_chunk_put_compressed(a->s, w->codec, &id, z, zlen);
                        if (r >= 0)
                                (*ret_stored)++;
                }
        }
        api_store_put_end(a);
        if (r < 0)
                return r;
        return api_store_commit(a);
}

/* Stores an upload: the body of pack/put (and of a move-in that brings its
 * remainder): a pack, after nb base index ids of blobs the client believes
 * this store holds whole (nb <= PAGE_CHUNK_MAX_BASES: the callers' parsers
 * bound it), of which the pack's chunk records may be pages
 * (src/sync/pages.h). 0 with the counts; 1 when it answered the request
 * (malformed: nothing stored; a chunk whose pages do not rebuild it: 412, the
 * rest stored); < 0 for the server to answer. */
struct UploadStream {
        ApiStore *a;
        unsigned nb;
        UploadPlain plain; /* .data NULL: none */
        bool failed;
        PageBases *pb;
        SyncPackStream *ps; /* once the bases' ids came */
        size_t taken_before; /* chunk records taken before the latest piece */
};

UploadStream *api_store_upload_stream_new(ApiStore *a, HttpRequest *req, const char *ref, unsigned bases,
                                          const UploadPlain *plain) {
        if (!ref || bases > PAGE_CHUNK_MAX_BASES || auth_ref_access(auth_of(req), ref) != AUTH_ACCESS_WRITE)
                return NULL;
        UploadStream *u = calloc(1, sizeof *u);
        if (!u)
                return NULL;
        u->a = a;
        u->nb = bases;
        if (plain)
                u->plain = *plain;
        return u;
}

void api_store_upload_stream_feed(UploadStream *u, const uint8_t *upload, size_t n) {
        size_t skip = (size_t) u->nb * ID_SIZE;
        if (u->failed || n < skip)
                return;
        if (!u->ps) {
                RoamId ids[PAGE_CHUNK_MAX_BASES];
                memcpy(ids, upload, skip);
                if ((u->nb > 0 && page_bases_new(u->a->s, ids, u->nb, &u->pb) < 0) ||
                    sync_pack_stream_new_bases(u->a->s, u->pb, &u->ps) < 0) {
                        err_clear();
                        u->failed = true; /* the handler stores all of it */
                        return;
                }
                if (u->pb && u->plain.data)
                        page_bases_attach_plain(u->pb, u->plain.id, u->plain.data, u->plain.len);
        }
        u->taken_before = sync_pack_stream_taken(u->ps);
        sync_pack_stream_feed(u->ps, upload + skip, n - skip);
}

size_t api_store_upload_stream_early(const UploadStream *u) {
        return u ? u->taken_before : 0;
}

size_t api_store_upload_stream_done(UploadStream *u) {
        return u ? sync_pack_stream_done(u->ps) : 0;
}

void api_store_upload_stream_free(UploadStream *u) {
        if (!u)
                return;
        sync_pack_stream_free(u->ps); /* stops its threads first */
        page_bases_free(u->pb);
        free(u);
}

static int upload_store(HttpRequest *req, ApiStore *a, Worker *w, unsigned nb, const UploadPlain *plain,
                        const uint8_t *body, size_t len,
                        uint64_t *ret_objects, uint64_t *ret_stored, uint64_t *ret_present, UploadStream *u,
                        UploadTimes *times) {
        uint64_t t0 = now_ns();
        if (!body)
                body = (const uint8_t *) "";
        if (len < (size_t) nb * ID_SIZE) {
                int k = http_reply_error(req, 400, "body is shorter than the %u base ids it must start with", nb);
                return k < 0 ? k : 1;
        }
        if (u && !u->ps)
                u = NULL; /* it never started: stored here, all of it */
        _cleanup_(page_bases_freep) PageBases *pb = NULL;
        if (u && nb > 0) {
                body += (size_t) nb * ID_SIZE;
                len -= (size_t) nb * ID_SIZE;
        } else if (nb > 0) {
                RoamId base_ids[PAGE_CHUNK_MAX_BASES];
                memcpy(base_ids, body, (size_t) nb * ID_SIZE);
                int k = page_bases_new(a->s, base_ids, nb, &pb);
                if (k < 0)
                        return k;
                if (plain)
                        page_bases_attach_plain(pb, plain->id, plain->data, plain->len);
                body += (size_t) nb * ID_SIZE;
                len -= (size_t) nb * ID_SIZE;
        }
        int r = pack_verify(a, w, body, len, nb);
        if (r < 0) {
                int k = http_reply_error(req, 400, "%s (%s)", err_message(r),
                                         u ? "no ref was set" : "nothing of this request was stored");
                return k < 0 ? k : 1;
        }
        if (!pb && !u)
                return pack_store(a, w, body, len, ret_objects, ret_stored, ret_present);
        /* chunks as pages are rebuilt here, on every core (sync.h); with a
         * stream, the chunk records that came before the last byte are stored */
        SyncStats st = { 0 };
        api_store_put_begin(a);
        r = u ? sync_pack_stream_finish(u->ps, body, len, &st) : sync_pack_store(a->s, pb, body, len, &st);
        api_store_put_end(a);
        uint64_t t_stored = now_ns();
        if (r >= 0)
                r = api_store_commit(a);
        if (times) {
                times->commit_ns = now_ns() - t_stored;
                times->store_ns = t_stored - t0;
        }
        if (r < 0)
                return r;
        if (st.chunks_page_fallback > 0) {
                int k = http_reply_error(req, 412,
                                         "%llu chunks came as pages that do not match this store's bases (send them "
                                         "whole); the rest is stored",
                                         (unsigned long long) st.chunks_page_fallback);
                return k < 0 ? k : 1;
        }
        *ret_objects = st.objects_sent;
        *ret_stored = st.chunks_sent;
        PackReader hr; /* verified above */
        if (pack_reader_init(&hr, body, len, ZSTD_compressBound(API_OBJECT_MAX), a->max_record) >= 0)
                *ret_present = hr.n_chunks > st.chunks_sent ? hr.n_chunks - st.chunks_sent : 0;
        return 0;
}

int api_store_take_upload(ApiStore *a, HttpRequest *req, unsigned bases, const void *body, size_t len,
                          const char *ref, const RoamId *id, const UploadPlain *plain, UploadStream *stream,
                          UploadTimes *times) {
        if (times)
                *times = (UploadTimes){ 0 };
        Worker *w = worker_get(a);
        if (!w)
                return -ENOMEM;
        if (ref_name_to_write(req, ref, "change", " (user tokens write only sessions/USER/...)") < 0)
                return 1;
        uint64_t objects = 0, stored = 0, present = 0;
        if (stream && stream->nb != bases)
                stream = NULL; /* not this upload's */
        int r = upload_store(req, a, w, bases, plain, body, len, &objects, &stored, &present, stream, times);
        if (r != 0)
                return r;
        char msg[1024], hex[ID_HEX_SIZE];
        uint64_t t_check = now_ns();
        r = check_complete(a, id, msg, sizeof msg);
        if (times)
                times->check_ns = now_ns() - t_check;
        if (r < 0)
                return r;
        if (r > 0) {
                int k = http_reply_error(req, 412, "checkpoint %s is not complete here: %s (push it first)",
                                         id_to_hex(id, hex), msg);
                return k < 0 ? k : 1;
        }
        failpoint("pack-put:before-ref"); /* as in pack/put: stored, the ref not set */
        return store_ref_set(a->s, ref, id, NULL);
}

static int h_pack_put(HttpRequest *req, void *userdata) {
        ApiStore *a = userdata;
        Worker *w = worker_get(a);
        if (!w)
                return -ENOMEM;
        /* the ref to set afterwards, if any: checked before anything is stored */
        const char *name = http_request_query(req, "ref");
        RefUpdate u = { 0 };
        if (name) {
                if (!ref_name_is_valid(name))
                        return http_reply_error(req, 400, "ref name '%.300s' is invalid (1-8 components of letters, "
                                                "digits, '.', '_', '-', joined by '/')", name);
                if (ref_name_to_write(req, name, "change", " (user tokens write only sessions/USER/...)") < 0)
                        return 0;
                const char *id = http_request_query(req, "id"), *old = http_request_query(req, "old");
                if (!id || id_from_hex(id, &u.id) < 0 || id_is_null(&u.id))
                        return http_reply_error(req, 400, "pack upload with ref '%s' needs id=HEX (64 hex digits)",
                                                name);
                if (old) {
                        u.conditional = true;
                        if (strcmp(old, "none") != 0 && (id_from_hex(old, &u.old) < 0 || id_is_null(&u.old)))
                                return http_reply_error(req, 400, "old must be 64 hex digits or 'none'");
                }
        }
        /* bases=N: the body starts with the N index ids of the blobs the
         * client believes this store holds whole, and the pack's chunk
         * records may be pages of them (src/sync/pages.h) */
        const char *nbs = http_request_query(req, "bases");
        unsigned long nb = 0;
        char *end = NULL;
        if (nbs && (*nbs < '1' || *nbs > '9' || (nb = strtoul(nbs, &end, 10)) > PAGE_CHUNK_MAX_BASES || *end))
                return http_reply_error(req, 400, "bases must be 1..%d", PAGE_CHUNK_MAX_BASES);
        size_t len;
        const uint8_t *body = http_request_body(req, &len);
        uint64_t objects = 0, stored = 0, present = 0;
        int r = upload_store(req, a, w, (unsigned) nb, NULL, body, len, &objects, &stored, &present, NULL, NULL);
        if (r != 0)
                return r < 0 ? r : 0;
        json_t *counts = json_pack("{s:I, s:I, s:I}", "objects", (json_int_t) objects, "stored", (json_int_t) stored,
                                   "present", (json_int_t) present);
        if (!name)
                return http_reply_json(req, 200, counts);
        failpoint("pack-put:before-ref");
        return apply_ref_update(req, a, name, &u, counts);
}

static const HttpRoute routes[] = {
        { "GET", "/v1/info", 0, h_info },
        { "GET", "/v1/refs", 0, h_refs_list },
        { "GET", "/v1/refs/*", 0, h_ref_get },
        { "PUT", "/v1/refs/*", API_REF_BODY_MAX, h_ref_put },
        { "DELETE", "/v1/refs/*", 0, h_ref_delete },
        { "GET", "/v1/objects/*", 0, h_object_get },
        { "PUT", "/v1/objects/*", API_OBJECT_MAX, h_object_put },
        { "POST", "/v1/chunks/missing", WIRE_MAX_IDS_MISSING * ID_SIZE, h_chunks_missing },
        { "POST", "/v1/chunks/get", WIRE_MAX_IDS_GET * ID_SIZE, h_chunks_get },
        { "POST", "/v1/chunks/pages", 4 + (PAGE_CHUNK_MAX_BASES + WIRE_MAX_IDS_GET) * ID_SIZE, h_chunks_pages },
        { "POST", "/v1/chunks/put", WIRE_MAX_STREAM, h_chunks_put },
        { "POST", "/v1/chunks/put-pages", 4 + PAGE_CHUNK_MAX_BASES * ID_SIZE + WIRE_MAX_STREAM, h_chunks_put_pages },
        { "GET", "/v1/chunks/*", 0, h_chunk_get },
        { "POST", "/v1/pack/get", API_REF_BODY_MAX, h_pack_get },
        { "POST", "/v1/pack/put", PACK_MAX_BYTES, h_pack_put },
};

int api_store_register(ApiStore *a, HttpServer *srv) {
        return http_server_add_routes(srv, routes, ELEMENTSOF(routes), a);
}
