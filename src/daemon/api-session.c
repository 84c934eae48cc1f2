/* SPDX-License-Identifier: MIT */
#include "api-session.h"

#include <errno.h>
#include <unistd.h>
#include <pthread.h>
#include <time.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../basic/failpoint.h"
#include "../session/handoff.h"
#include "../session/move.h"
#include "api-laptop.h"
#include "api-store.h"
#include "../session/host-id.h"
#include "../sync/pack.h"
#include "../sync/page-chunk.h"
#include "sync-file.h"
#include "auth.h"

#define READY_MAX 256

/* What the last pre-copy of a session said about its offline readiness. */
typedef struct Ready {
        char name[NAME_MAX_LEN + 1];
        uint64_t remainder; /* bytes a click would still send (changed between the last two pre-copies) */
        uint64_t rate;      /* the receiver's measured link rate, bytes/s (0 = unknown) */
        int64_t at;         /* unix time of the pre-copy */
} Ready;

typedef struct ApiSession {
        Daemon *d;
        SessionHost *h;
        int64_t lease_s;
        bool stream_grant; /* a take offline's remainder sent while it is packed, a take online's stored
                            * while it comes */
        ApiLaptop *laptops;
        pthread_mutex_t lock;
        Ready ready[READY_MAX];
} ApiSession;

static const ApiSessionFleet *fleet_hooks; /* NULL: a standalone server */

void api_session_set_fleet(const ApiSessionFleet *f) {
        fleet_hooks = f;
}

static json_t *readiness_json(ApiSession *a, const char *name) {
        json_t *j = NULL;
        pthread_mutex_lock(&a->lock);
        for (size_t i = 0; i < READY_MAX; i++) {
                Ready *r = &a->ready[i];
                if (!r->name[0] || strcmp(r->name, name))
                        continue;
                double predicted = HANDOFF_OFFLINE_FIXED_S + (r->rate ? (double) r->remainder / (double) r->rate : 0);
                j = json_pack("{s:I, s:I, s:I, s:f}", "remainder_bytes", (json_int_t) r->remainder, "link_rate",
                              (json_int_t) r->rate, "precopy_at", (json_int_t) r->at, "predicted_offline_s",
                              predicted);
                break;
        }
        pthread_mutex_unlock(&a->lock);
        return j ? j : json_null();
}

static void readiness_set(ApiSession *a, const char *name, uint64_t remainder, uint64_t rate) {
        pthread_mutex_lock(&a->lock);
        Ready *slot = NULL;
        for (size_t i = 0; i < READY_MAX; i++) {
                Ready *r = &a->ready[i];
                if (r->name[0] && !strcmp(r->name, name)) {
                        slot = r;
                        break;
                }
                if (!r->name[0] && !slot)
                        slot = r;
        }
        if (!slot)
                slot = &a->ready[0]; /* full: reuse */
        snprintf(slot->name, sizeof slot->name, "%s", name);
        slot->remainder = remainder;
        slot->rate = rate;
        slot->at = (int64_t) time(NULL);
        pthread_mutex_unlock(&a->lock);
}

/* The guest agent's liveness as the host last saw it: null without an agent. */
static json_t *agent_json(const SessionInfo *i) {
        if (!i->config.agent)
                return json_null();
        const SessionAgentStatus *a = &i->agent;
        const char *state = a->checked ? session_agent_state_to_string(a->state) : "unknown";
        return json_pack("{s:s, s:o, s:I, s:o}", "state", state, "ping_ms",
                         a->state == SESSION_AGENT_ANSWERING ? json_integer((json_int_t) a->ping_ms) : json_null(),
                         "checked", (json_int_t) a->checked, "error",
                         a->state == SESSION_AGENT_SILENT && a->error[0] ? json_string(a->error) : json_null());
}

json_t *session_api_json(Catalog *c, const SessionInfo *i) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:o, s:I, s:I, s:I}", "name", i->row.name, "user",
                         i->row.user, "image", i->row.image, "state", session_state_to_string(i->row.state), "owner",
                         i->row.owner, "laptop", laptop_holder_json(c, i->row.name, i->row.owner), "epoch",
                         (json_int_t) i->row.epoch, "last_checkpoint",
                         i->row.last_checkpoint ? json_string(i->row.last_checkpoint) : json_null(), "checkpoints",
                         (json_int_t) i->row.checkpoints, "ram_mib", (json_int_t) i->config.ram_mib, "updated",
                         (json_int_t) i->row.updated);
        if (j && (json_object_set_new(j, "agent", agent_json(i)) < 0 ||
                  json_object_set_new(j, "profile", json_boolean(i->has_profile)) < 0)) {
                json_decref(j);
                return NULL;
        }
        return j;
}

static json_t *session_json(ApiSession *a, const SessionInfo *i) {
        json_t *j = session_api_json(daemon_catalog(a->d), i);
        if (j)
                json_object_set_new(j, "readiness", readiness_json(a, i->row.name));
        return j;
}

/* A user token sees only that user's sessions. */
static bool may_see(const HttpRequest *req, const SessionInfo *i) {
        const Auth *a = auth_of(req);
        return !a || a->role != CATALOG_ROLE_USER || (a->user && !strcmp(a->user, i->row.user));
}

static bool is_admin_or_host(const HttpRequest *req) {
        const Auth *a = auth_of(req);
        return !a || a->role == CATALOG_ROLE_ADMIN || a->role == CATALOG_ROLE_HOST;
}

static int route_list(HttpRequest *req, void *userdata) {
        ApiSession *a = userdata;
        SessionHost *h = a->h;
        SessionInfo *list = NULL;
        size_t n = 0;
        int r = session_list(h, &list, &n);
        if (r < 0)
                return http_reply_errno(req, r);
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
                if (may_see(req, &list[i]))
                        json_array_append_new(arr, session_json(a, &list[i]));
        session_info_list_free(list, n);
        if (fleet_hooks && !http_request_query(req, "local"))
                arr = fleet_hooks->list(fleet_hooks->userdata, req, arr);
        return http_reply_json(req, 200, json_pack("{s:o}", "sessions", arr));
}

static int visible(HttpRequest *req, SessionHost *h, const char *name, char **ret_user);
static int handover_gate(HttpRequest *req, ApiSession *a, const char *name, bool may_be_new, char **ret_laptop);

int parse_handover(const void *body, size_t len, bool need_from, Handover *ret) {
        json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        const char *ck = json_string_value(json_object_get(j, "checkpoint"));
        json_t *ep = json_object_get(j, "epoch"), *from = json_object_get(j, "from_epoch");
        RoamId id;
        int r = -EBADMSG;
        if (json_is_object(j) && ck && id_from_hex(ck, &id) == 0 && json_is_integer(ep) &&
            json_integer_value(ep) >= 1 && (from ? json_is_integer(from) && json_integer_value(from) >= 0 : !need_from)) {
                id_to_hex(&id, ret->checkpoint);
                ret->epoch = (int64_t) json_integer_value(ep);
                ret->from_epoch = from ? (int64_t) json_integer_value(from) : -1;
                r = 0;
        }
        json_decref(j);
        return r;
}


int parse_move_in(const void *body, size_t len, const char *name, MoveIn *ret) {
        *ret = (MoveIn){ 0 };
        const uint8_t *b = body;
        const uint8_t *nl = b ? memchr(b, '\n', MIN(len, (size_t) API_GRANT_LINE_MAX + 1)) : NULL;
        if (!nl)
                return len > API_GRANT_LINE_MAX ? -EBADMSG : parse_handover(body, len, false, &ret->ho);
        size_t jlen = (size_t) (nl - b);
        int r = parse_handover(b, jlen, false, &ret->ho);
        if (r < 0)
                return r;
        json_t *j = json_loadb(body, jlen, JSON_REJECT_DUPLICATES, NULL);
        const char *ref = json_string_value(json_object_get(j, "ref"));
        json_t *nb = json_object_get(j, "bases");
        if (nb && (!json_is_integer(nb) || json_integer_value(nb) < 0 ||
                   json_integer_value(nb) > PAGE_CHUNK_MAX_BASES))
                r = -EBADMSG;
        else
                ret->bases = nb ? (unsigned) json_integer_value(nb) : 0;
        /* only the staging ref of this session at this epoch */
        char tail[NAME_MAX_LEN + 32];
        snprintf(tail, sizeof tail, "/%s/in-e%lld", name, (long long) ret->ho.epoch);
        size_t rl = ref ? strlen(ref) : 0, tl = strlen(tail);
        if (r < 0)
                ;
        else if (ref && ref_name_is_valid(ref) && rl < sizeof ret->ref && !strncmp(ref, "sessions/", 9) && rl > 9 + tl &&
            !strcmp(ref + rl - tl, tail) && !memchr(ref + 9, '/', rl - 9 - tl))
                memcpy(ret->ref, ref, rl + 1);
        else
                r = -EBADMSG;
        json_decref(j);
        if (r < 0)
                return r;
        ret->upload = nl + 1;
        ret->upload_len = len - jlen - 1;
        return 0;
}

static int move_in_steps(HttpRequest *req, ApiSession *a, const char *name, const MoveIn *mi,
                         const char *laptop, UploadStream *stream);

/* ---- a move-in's remainder stored while it comes ----
 *
 * The observer of POST /v1/sessions/NAME/move-in: once the request's line is
 * here and names a staging ref the token may write, the upload after it goes
 * to store threads record by record (api_store_upload_stream_*()), its pages
 * taken from the RAM staged here, so that only what came last is left to
 * store when the handler runs. Nothing changes hands before the handler's
 * checks: what the stream stored are chunks checked against their ids, which
 * gc removes if no ref comes to name them. */
static int split(const char *rest, char name[static NAME_MAX_LEN + 1], const char **action);

typedef struct MoveInWatch {
        bool off;            /* not a move-in with a remainder, or not streamed */
        size_t upload_at;    /* where the upload starts in the body */
        SessionStagedView view;
        UploadStream *u;
} MoveInWatch;

static void move_in_watch_done(void *state) {
        MoveInWatch *w = state;
        api_store_upload_stream_free(w->u); /* before the view its threads read */
        session_staged_view_done(&w->view);
        free(w);
}

static MoveInWatch *move_in_watch_new(HttpRequest *req, ApiSession *a, const uint8_t *body, size_t len) {
        MoveInWatch *w = calloc(1, sizeof *w);
        if (!w)
                return NULL;
        w->off = true;
        char name[NAME_MAX_LEN + 1];
        const char *action;
        MoveIn mi;
        if (!a->stream_grant || fleet_hooks || split(http_request_rest(req), name, &action) < 0 ||
            strcmp(action, "move-in") != 0 || parse_move_in(body, len, name, &mi) < 0 || !mi.upload)
                return w;
        UploadPlain plain = { 0 };
        if (session_staged_view(a->h, name, &w->view) >= 0)
                plain = (UploadPlain){ .id = &w->view.id, .data = w->view.addr, .len = w->view.len };
        err_clear();
        w->u = api_store_upload_stream_new(daemon_api_store(a->d), req, mi.ref, mi.bases,
                                           w->view.addr ? &plain : NULL);
        if (!w->u)
                return w;
        /* the remainder, stored now, is read again by the restore */
        store_keep_fresh(session_host_store(a->h), HANDOFF_FRESH_S);
        w->upload_at = (size_t) ((const uint8_t *) mi.upload - body);
        w->off = false;
        return w;
}

static void move_in_feed(HttpRequest *req, const uint8_t *body, size_t len, void **state, void *userdata) {
        MoveInWatch *w = *state;
        if (!w) {
                /* the line first (it names the ref and the bases) */
                if (!memchr(body, '\n', MIN(len, (size_t) API_GRANT_LINE_MAX + 1)) && len <= API_GRANT_LINE_MAX)
                        return;
                w = *state = move_in_watch_new(req, userdata, body, len);
                if (!w)
                        return;
        }
        if (!w->off)
                api_store_upload_stream_feed(w->u, body + w->upload_at, len - w->upload_at);
}

static const HttpBodyObserver move_in_observer = { .feed = move_in_feed, .done = move_in_watch_done };

static int move_in(HttpRequest *req, ApiSession *a, const char *name) {
        SessionHost *h = a->h;
        _cleanup_free_ char *laptop = NULL;
        int g = handover_gate(req, a, name, true, &laptop);
        if (g != 0)
                return g < 0 ? g : 0;
        size_t len;
        const void *body = http_request_body(req, &len);
        MoveIn mi;
        if (parse_move_in(body, len, name, &mi) < 0)
                return http_reply_error(req, 400,
                                        "expected {\"checkpoint\": HEX, \"epoch\": N >= 1, \"from_epoch\": N?}, "
                                        "or that with \"ref\": \"sessions/USER/%s/in-eN\" as one line, then an "
                                        "upload",
                                        name);
        /* the remainder, stored now, is read again by the restore */
        store_keep_fresh(session_host_store(h), HANDOFF_FRESH_S);
        MoveInWatch *w = http_request_observed(req);
        int r = move_in_steps(req, a, name, &mi, laptop, w && !w->off ? w->u : NULL);
        store_keep_fresh(session_host_store(h), 0);
        return r;
}

static int move_in_steps(HttpRequest *req, ApiSession *a, const char *name, const MoveIn *mip,
                         const char *laptop, UploadStream *stream) {
        SessionHost *h = a->h;
        const MoveIn mi = *mip;
        const Handover ho = mi.ho;
        uint64_t t0 = now_ns();
        size_t done_by_then = api_store_upload_stream_done(stream);
        UploadTimes times = { 0 };
        if (mi.upload) {
                /* the remainder came along: stored, and the staging ref set,
                 * before anything changes hands (a refusal changes nothing) */
                RoamId id;
                if (id_from_hex(ho.checkpoint, &id) < 0)
                        return http_reply_error(req, 400, "checkpoint id is malformed");
                err_clear();
                /* the pre-copy's RAM as staged here: the pages of the
                 * remainder's chunks that did not change come from it */
                SessionStagedView view = { 0 };
                UploadPlain plain = { 0 };
                if (!stream && session_staged_view(h, name, &view) >= 0)
                        plain = (UploadPlain){ .id = &view.id, .data = view.addr, .len = view.len };
                err_clear();
                int k = api_store_take_upload(daemon_api_store(a->d), req, mi.bases, mi.upload, mi.upload_len,
                                              mi.ref, &id, view.addr ? &plain : NULL, stream, &times);
                session_staged_view_done(&view);
                if (k != 0)
                        return k < 0 ? k : 0;
        }
        SessionRestoreResult res;
        err_clear();
        uint64_t t_stored = now_ns();
        int r = session_move_in(h, name, ho.checkpoint, ho.epoch, ho.from_epoch, &res);
        if (r >= 0)
                daemon_log(a->d, DAEMON_LOG_DEBUG,
                           "move-in of '%s': %.0f ms since the request came (its upload %zu bytes, here after "
                           "%.0f ms; %zu chunk records of it taken while it came, %zu of them stored by its last "
                           "byte); what was left of the remainder stored in %.0f ms (checked and stored %.0f, "
                           "durable %.0f, all below the checkpoint here %.0f); restore %.0f ms (verify %.0f, RAM "
                           "%.0f, files %.0f in all, device state and cont %.0f [loading the device state %.0f, "
                           "cont %.0f])",
                           name, (now_ns() - http_request_start_ns(req)) / 1e6, mi.upload_len,
                           (t0 - http_request_start_ns(req)) / 1e6, api_store_upload_stream_early(stream),
                           done_by_then, (t_stored - t0) / 1e6, times.store_ns / 1e6, times.commit_ns / 1e6,
                           times.check_ns / 1e6, res.total_ns / 1e6, res.verify_ns / 1e6, res.ram_ns / 1e6,
                           res.export_ns / 1e6, (res.qemu_ns - res.launch_ns) / 1e6, res.devstate_ns / 1e6,
                           res.cont_ns / 1e6);
        if (r >= 0 && laptop)
                (void) laptop_grant_drop(daemon_catalog(a->d), name);
        if (r == -ESTALE || r == -EBUSY)
                return http_reply_error(req, 409, "%s", err_message(r));
        if (r < 0)
                return http_reply_error(req, r == -ENOENT ? 412 : 500, "%s", err_message(r));
        return http_reply_json(req, 200,
                               json_pack("{s:s, s:s, s:I, s:I, s:b, s:b}", "name", name, "state", "running", "epoch",
                                         (json_int_t) ho.epoch, "restore_ns", (json_int_t) res.total_ns, "ram_staged",
                                         res.ram_staged, "qemu_waiting", res.warm));
}

/* "/v1/sessions/NAME" and "/v1/sessions/NAME/ACTION" */
static int split(const char *rest, char name[static NAME_MAX_LEN + 1], const char **action) {
        const char *slash = strchr(rest, '/');
        size_t n = slash ? (size_t) (slash - rest) : strlen(rest);
        if (n == 0 || n > NAME_MAX_LEN)
                return -EINVAL;
        memcpy(name, rest, n);
        name[n] = 0;
        if (!name_is_valid(name))
                return -EINVAL;
        *action = slash ? slash + 1 : "";
        return 0;
}

static int route_get(HttpRequest *req, void *userdata) {
        ApiSession *a = userdata;
        SessionHost *h = a->h;
        char name[NAME_MAX_LEN + 1];
        const char *action;
        if (split(http_request_rest(req), name, &action) < 0 || *action)
                return http_reply_error(req, 404, "unknown route");
        if (fleet_hooks && !http_request_query(req, "local")) {
                int f = fleet_hooks->route(fleet_hooks->userdata, req, name, "", a->lease_s);
                if (f != 0)
                        return f < 0 ? f : 0;
        }
        SessionInfo i = { 0 };
        int r = session_get(h, name, &i);
        if (r == -ENOENT || (r >= 0 && !may_see(req, &i))) {
                session_info_done(&i);
                return http_reply_error(req, 404, "session '%s' not found", name);
        }
        if (r < 0)
                return http_reply_errno(req, r);
        r = http_reply_json(req, 200, session_json(a, &i));
        session_info_done(&i);
        return r;
}

/* The session must exist and be visible to the token (users: their own):
 * 0, or a negative errno for the handler to return (the server answers it:
 * -ENOENT is 404, the same for another user's session as for none). */
static int visible(HttpRequest *req, SessionHost *h, const char *name, char **ret_user) {
        SessionInfo i = { 0 };
        int r = session_get(h, name, &i);
        if (r >= 0 && !may_see(req, &i))
                r = -ENOENT;
        if (r >= 0 && ret_user && !(*ret_user = strdup(i.row.user)))
                r = -ENOMEM;
        session_info_done(&i);
        if (r == -ENOENT)
                return err_set(r, "session '%s' not found", name);
        return r;
}

/* "session 's1' is offline on laptop 'alice-t14' (id 3f2a...) since ..." */
static void describe_holder(ApiSession *a, const char *name, const char *owner, char *buf, size_t size) {
        char who[384];
        laptop_owner_describe(daemon_catalog(a->d), name, owner, false, who, sizeof who);
        snprintf(buf, size, "session '%s' is offline on %s", name, who);
}

/* Who may hand session name over: a user only a session of theirs that
 * this host knows (admin and host tokens may also bring a new one when
 * may_be_new), and a session that a laptop holds offline only by a request
 * signed by that laptop. 0: go on (*ret_laptop: the laptop's id when the
 * session is a laptop's, else NULL); 1: replied (refused); < 0: an errno. */
static int handover_gate(HttpRequest *req, ApiSession *a, const char *name, bool may_be_new, char **ret_laptop) {
        int r = may_be_new && is_admin_or_host(req) ? 0 : visible(req, a->h, name, NULL);
        if (r < 0)
                return r;
        SessionInfo i = { 0 };
        r = session_get(a->h, name, &i);
        _cleanup_free_ char *owner = r >= 0 ? strdup(i.row.owner) : NULL;
        session_info_done(&i);
        err_clear();
        if (r == -ENOENT)
                return 0; /* a new session (admin and host tokens may bring one) */
        if (r < 0)
                return r;
        if (!owner)
                return -ENOMEM;
        const char *holder = laptop_holder_id(owner);
        if (!holder)
                return 0;
        char what[512];
        describe_holder(a, name, owner, what, sizeof what);
        LaptopRecord l;
        r = api_laptop_verify(a->laptops, req, &l);
        if (r == -ENOENT)
                return http_reply_error(req, 403, "%s; only that laptop hands it back (with a signed request)",
                                        what) ?: 1;
        if (r != 0)
                return r;
        if (strcmp(l.id, holder))
                return http_reply_error(req, 409, "%s; reclaim it from the console", what) ?: 1;
        *ret_laptop = strdup(l.id);
        return *ret_laptop ? 0 : -ENOMEM;
}

static int precopy(HttpRequest *req, ApiSession *a, const char *name) {
        int r = visible(req, a->h, name, NULL);
        if (r < 0)
                return r;
        uint64_t rate = 0;
        const char *q = http_request_query(req, "rate");
        if (q && parse_u64(q, &rate) < 0)
                return http_reply_error(req, 400, "rate must be a number of bytes/s");
        PrecopyResult p;
        err_clear();
        r = handoff_precopy(a->h, name, &p);
        if (r < 0)
                return http_reply_error(req, r == -EINVAL ? 409 : 500, "%s", err_message(r));
        readiness_set(a, name, p.new_stored, rate);
        char hex[ID_HEX_SIZE];
        return http_reply_json(req, 200,
                               json_pack("{s:s, s:I, s:I, s:I, s:I, s:o}", "id", id_to_hex(&p.id, hex), "chunks",
                                         (json_int_t) p.chunks, "new_chunks", (json_int_t) p.new_chunks,
                                         "new_stored", (json_int_t) p.new_stored, "ms", (json_int_t) (p.ns / 1000000),
                                         "readiness", readiness_json(a, name)));
}

/* The answer to a take offline: the grant, and when the request asked for it
 * ({"pack": {"have", "bases", "max_bytes"}}, as for POST /v1/pack/get) the
 * remainder below the checkpoint right after it, so that the laptop needs no
 * second round trip: the grant as one line of JSON, then the pack
 * (docs/sync-protocol.md). Whatever fails of the pack, the grant goes alone
 * (the laptop then pulls as before). */
/* A grant whose remainder goes while it is packed (pack-out.h). */
typedef struct GrantStream {
        ApiSession *a;
        char name[NAME_MAX_LEN + 1];
        PackOut *po;
} GrantStream;

static ssize_t grant_stream_read(void *userdata, uint64_t pos, void *buf, size_t max) {
        GrantStream *gs = userdata;
        return pack_out_read(gs->po, buf, max);
}

static void grant_stream_free(void *userdata) {
        GrantStream *gs = userdata;
        PackOutStats st;
        pack_out_stats(gs->po, &st);
        daemon_log(gs->a->d, DAEMON_LOG_DEBUG,
                   "take offline of '%s': the remainder packed in %.0f ms, sent while it was packed (%u chunks, %u as "
                   "pages; %u objects, %u as deltas, %zu bytes of them; %llu bytes with the grant)",
                   gs->name, st.made_ns / 1e6, st.n_chunks, st.n_paged, st.n_objects, st.n_delta, st.object_bytes,
                   (unsigned long long) st.bytes);
        pack_out_free(gs->po);
        store_keep_fresh(session_host_store(gs->a->h), 0);
        free(gs);
}

static int reply_grant(HttpRequest *req, ApiSession *a, const char *name, json_t *grant, const RoamId *checkpoint,
                       bool *ret_streaming) {
        size_t len;
        const void *body = http_request_body(req, &len);
        _cleanup_(json_decrefp) json_t *j = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
        json_t *ask = json_object_get(j, "pack");
        if (!grant || !json_is_object(ask))
                return http_reply_json(req, 200, grant);
        char hex[ID_HEX_SIZE];
        PackRequest pr;
        PackWriter pw = { 0 };
        RoamId missing;
        _cleanup_free_ char *line = json_dumps(grant, JSON_COMPACT), *text = NULL;
        int r = line && json_object_set_new(ask, "want", json_string(id_to_hex(checkpoint, hex))) == 0 &&
                                (text = json_dumps(ask, JSON_COMPACT))
                        ? pack_request_parse(text, strlen(text), &pr)
                        : -ENOMEM;
        if (r >= 0 && a->stream_grant) {
                /* the grant's line, then the pack while it is made */
                GrantStream *gs = calloc(1, sizeof *gs);
                _cleanup_free_ char *prefix = NULL;
                int k = gs && asprintf(&prefix, "%s\n", line) > 0
                                ? pack_answer_stream(session_host_store(a->h), &pr, prefix, strlen(prefix), &gs->po,
                                                     &missing)
                                : -ENOMEM;
                if (k >= 0) {
                        gs->a = a;
                        snprintf(gs->name, sizeof gs->name, "%s", name);
                        json_decref(grant);
                        *ret_streaming = true; /* its end closes the window of fresh chunks */
                        return http_reply_stream(req, 200, API_GRANT_PACK_TYPE, UINT64_MAX, grant_stream_read, gs,
                                                 grant_stream_free);
                }
                free(gs);
                if (k != -E2BIG) {
                        daemon_log(a->d, DAEMON_LOG_DEBUG, "take offline of '%s': the grant goes without its pack: %s",
                                   name, err_message(k));
                        err_clear();
                        return http_reply_json(req, 200, grant);
                }
                err_clear(); /* too big to announce whole: what fits, made first */
        }
        uint64_t t_pack = now_ns();
        if (r >= 0)
                r = pack_answer(session_host_store(a->h), &pr, &pw, &missing);
        if (r >= 0)
                daemon_log(a->d, DAEMON_LOG_DEBUG,
                           "take offline of '%s': the remainder packed in %.0f ms (%u chunks, %u as pages; %u "
                           "objects, %u as deltas, %zu bytes of them; %zu bytes)",
                           name, (now_ns() - t_pack) / 1e6, pw.n_chunks, pw.n_paged, pw.n_objects, pw.n_delta,
                           pw.object_bytes, pw.len);
        uint8_t *out = NULL;
        size_t n = line ? strlen(line) : 0, total = n + 1 + pw.len;
        if (r >= 0 && (out = malloc(total))) {
                memcpy(out, line, n);
                out[n] = '\n';
                memcpy(out + n + 1, pw.buf, pw.len);
        }
        if (r >= 0)
                pack_writer_done(&pw);
        if (!out) {
                daemon_log(a->d, DAEMON_LOG_DEBUG, "take offline of '%s': the grant goes without its pack: %s", name,
                           r < 0 ? err_message(r) : "out of memory");
                err_clear();
                return http_reply_json(req, 200, grant);
        }
        json_decref(grant);
        return http_reply_buffer(req, 200, API_GRANT_PACK_TYPE, out, total);
}

/* Take offline: only a paired laptop's signed request; the holder is the
 * laptop the signature proves, never a name from the body. */
static int offline_steps(HttpRequest *req, ApiSession *a, const char *name, bool *ret_streaming);

/* The last checkpoint's new chunks, stored in the pause, are packed for the
 * laptop right after it: from memory (store_keep_fresh()), until the grant's
 * answer is made (or sent, when it goes while it is packed). */
static int offline(HttpRequest *req, ApiSession *a, const char *name) {
        store_keep_fresh(session_host_store(a->h), HANDOFF_FRESH_S);
        bool streaming = false;
        int r = offline_steps(req, a, name, &streaming);
        if (!streaming)
                store_keep_fresh(session_host_store(a->h), 0);
        return r;
}

static int offline_steps(HttpRequest *req, ApiSession *a, const char *name, bool *ret_streaming) {
        _cleanup_free_ char *user = NULL;
        int r = visible(req, a->h, name, &user);
        if (r < 0)
                return r;
        LaptopRecord l;
        r = api_laptop_verify(a->laptops, req, &l);
        if (r == -ENOENT)
                return http_reply_error(req, 401,
                                        "take offline needs a paired laptop's signed request (roam serve --role "
                                        "laptop pairs itself)");
        if (r != 0)
                return r < 0 ? r : 0;
        if (strcmp(l.user, user))
                return http_reply_error(req, 403, "laptop '%s' (id %s) is user '%s''s, not '%s''s", l.name, l.id,
                                        l.user, user);
        char holder[sizeof LAPTOP_HOLDER_PREFIX + SIGN_KEY_ID_LEN];
        snprintf(holder, sizeof holder, LAPTOP_HOLDER_PREFIX "%s", l.id);
        SessionInfo i = { 0 };
        r = session_get(a->h, name, &i);
        _cleanup_free_ char *owner = r >= 0 ? strdup(i.row.owner) : NULL;
        int64_t epoch = i.row.epoch;
        session_info_done(&i);
        if (r < 0)
                return r;
        if (owner && laptop_holder_id(owner) && strcmp(owner, holder)) {
                char what[512];
                describe_holder(a, name, owner, what, sizeof what);
                return http_reply_error(req, 409, "%s; reclaim it from the console", what);
        }
        /* the grant's record first, while the session still runs (a write less
         * in the pause); it counts only once the owner is this laptop's */
        Catalog *c = daemon_catalog(a->d);
        int64_t lease_until = a->lease_s > 0 ? (int64_t) time(NULL) + a->lease_s : 0;
        bool again = owner && !strcmp(owner, holder);
        err_clear();
        r = again ? 0 : laptop_grant_set(c, name, l.id, epoch + 1, lease_until);
        if (r < 0)
                return r;
        OfflineGrant g;
        r = handoff_grant_offline(a->h, name, holder, a->lease_s, &g);
        if (r < 0 && !again)
                (void) laptop_grant_drop(c, name); /* it did not move: no record of a grant */
        if (r == -EBUSY)
                return http_reply_error(req, 409, "%s", err_message(r));
        if (r < 0)
                return http_reply_error(req, r == -EINVAL ? 409 : 500, "%s", err_message(r));
        LaptopGrant rec;
        if (laptop_grant_get(c, name, &rec) >= 0 && !strcmp(rec.laptop, l.id) && rec.epoch == g.epoch)
                g.lease_until = rec.lease_until; /* the lease as recorded (asked again: the one it has) */
        err_clear();
        daemon_log(a->d, DAEMON_LOG_INFO, "session '%s' %s offline on laptop '%s' (id %s) at epoch %lld", name,
                   g.again ? "stays" : "taken", l.name, l.id, (long long) g.epoch);
        char parts[256];
        if (!g.again)
                daemon_log(a->d, DAEMON_LOG_DEBUG,
                           "take offline of '%s': %.0f ms since the request came; grant %.0f ms: checkpoint %.0f (%s)",
                           name, (now_ns() - http_request_start_ns(req)) / 1e6, g.pause_ns / 1e6, g.ck.total_ns / 1e6,
                           session_checkpoint_parts(&g.ck, parts, sizeof parts));
        char hex[ID_HEX_SIZE], server[HOST_ID_LEN + 1] = "";
        (void) host_id_get(daemon_home(a->d), server); /* for a later take online by file */
        err_clear();
        json_t *grant = json_pack("{s:s, s:s, s:I, s:I, s:I, s:b, s:s, s:s}", "checkpoint",
                                  id_to_hex(&g.checkpoint, hex), "user", user, "epoch", (json_int_t) g.epoch,
                                  "lease_until", (json_int_t) g.lease_until, "pause_ms",
                                  (json_int_t) (g.pause_ns / 1000000), "again", g.again, "laptop", l.id,
                                  "server_id", server);
        return reply_grant(req, a, name, grant, &g.checkpoint, ret_streaming);
}

/* The laptop that holds a session offline extends its lease (while it
 * reaches the server): a revoked laptop cannot. */
static int renew(HttpRequest *req, ApiSession *a, const char *name) {
        _cleanup_free_ char *laptop = NULL;
        int r = handover_gate(req, a, name, false, &laptop);
        if (r != 0)
                return r < 0 ? r : 0;
        if (!laptop)
                return http_reply_error(req, 409, "session '%s' is not offline on a laptop", name);
        SessionInfo i = { 0 };
        r = session_get(a->h, name, &i);
        int64_t epoch = i.row.epoch;
        session_info_done(&i);
        if (r < 0)
                return r;
        int64_t until = a->lease_s > 0 ? (int64_t) time(NULL) + a->lease_s : 0;
        err_clear();
        r = laptop_grant_renew(daemon_catalog(a->d), name, laptop, epoch, until);
        if (r == -ESTALE)
                return http_reply_error(req, 409, "%s", err_message(r));
        if (r < 0)
                return r;
        return http_reply_json(req, 200,
                               json_pack("{s:s, s:I, s:I}", "name", name, "epoch", (json_int_t) epoch, "lease_until",
                                         (json_int_t) until));
}

/* A laptop hands back a powered-off session: adopt its disk delta at the new
 * epoch (only from the epoch this server gave it), run the guest's log-off,
 * apply the policy, and keep the result as a checkpoint. */
static int finalize_in(HttpRequest *req, ApiSession *a, const char *name) {
        _cleanup_free_ char *laptop = NULL;
        int r = handover_gate(req, a, name, false, &laptop);
        if (r != 0)
                return r < 0 ? r : 0;
        size_t len;
        const void *body = http_request_body(req, &len);
        Handover ho;
        if (parse_handover(body, len, true, &ho) < 0)
                return http_reply_error(req, 400, "expected {\"checkpoint\": HEX, \"epoch\": N, \"from_epoch\": N}");
        FinalizeInResult f;
        err_clear();
        r = handoff_finalize_in(a->h, name, ho.checkpoint, ho.epoch, ho.from_epoch, &f);
        if (f.adopted && laptop)
                (void) laptop_grant_drop(daemon_catalog(a->d), name);
        if (r == -ESTALE || r == -EBUSY)
                return http_reply_error(req, 409, "%s", err_message(r));
        if (r < 0)
                return http_reply_error(req, 500, "%s", err_message(r));
        char hex[ID_HEX_SIZE], phex[ID_HEX_SIZE];
        return http_reply_json(req, 200,
                               json_pack("{s:s, s:s, s:I, s:s, s:b, s:s, s:I, s:s, s:s?}", "name", name, "state",
                                         "stopped", "epoch", (json_int_t) ho.epoch, "policy",
                                         vm_policy_to_string(f.finalize.policy), "reset", f.finalize.reset, "logoff",
                                         f.finalize.logoff, "checkpoint_seq", (json_int_t) f.checkpoint.seq,
                                         "checkpoint", id_to_hex(&f.checkpoint.id, hex), "profile",
                                         f.finalize.profile_saved ? id_to_hex(&f.finalize.profile, phex) : NULL));
}

/* A sender about to move a session here: write the RAM of its pre-copy
 * (pushed already) ahead of the move-in, so that the restore then writes only
 * what changed (session_stage_ram()). */
static int stage(HttpRequest *req, ApiSession *a, const char *name) {
        /* as for move-in: admin and host tokens may also bring new sessions,
         * and a laptop's session is staged by that laptop only */
        _cleanup_free_ char *laptop = NULL;
        int r = handover_gate(req, a, name, true, &laptop);
        if (r != 0)
                return r < 0 ? r : 0;
        size_t len;
        const void *body = http_request_body(req, &len);
        _cleanup_(json_decrefp) json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        const char *hex = json_string_value(json_object_get(j, "checkpoint"));
        RoamId id;
        if (!json_is_object(j) || !hex || id_from_hex(hex, &id) < 0)
                return http_reply_error(req, 400, "expected {\"checkpoint\": HEX}");
        SessionStageResult st;
        err_clear();
        r = session_stage_ram(a->h, name, &id, &st);
        if (r == -ENOENT)
                return http_reply_error(req, 404, "%s", err_message(r));
        if (r == -EINVAL || r == -EBUSY || r == -EBADMSG)
                return http_reply_error(req, 409, "%s", err_message(r));
        if (r < 0)
                return http_reply_error(req, 500, "%s", err_message(r));
        return http_reply_json(req, 200,
                               json_pack("{s:s, s:b, s:I, s:I}", "name", name, "full", st.full, "chunks_written",
                                         (json_int_t) st.chunks_written, "ms", (json_int_t) (st.seconds * 1000)));
}

static int route_post(HttpRequest *req, void *userdata) {
        ApiSession *a = userdata;
        char name[NAME_MAX_LEN + 1];
        const char *action;
        if (split(http_request_rest(req), name, &action) < 0)
                return http_reply_error(req, 404, "unknown route");
        if (fleet_hooks) {
                int f = fleet_hooks->route(fleet_hooks->userdata, req, name, action, a->lease_s);
                if (f != 0)
                        return f < 0 ? f : 0;
        }
        if (!strcmp(action, "move-in"))
                return move_in(req, a, name);
        if (!strcmp(action, "renew"))
                return renew(req, a, name);
        if (!strcmp(action, "precopy"))
                return precopy(req, a, name);
        if (!strcmp(action, "offline"))
                return offline(req, a, name);
        if (!strcmp(action, "finalize-in"))
                return finalize_in(req, a, name);
        if (!strcmp(action, "stage"))
                return stage(req, a, name);
        return http_reply_error(req, 404, "unknown session action '%s'", action);
}

static unsigned sync_status(int r) {
        switch (-r) {
        case ESTALE:
        case EXDEV:
        case EALREADY:
                return 409;
        case EPERM:
        case EKEYREVOKED:
                return 403;
        case ENOENT:
                return 404;
        case EBADMSG:
        case EINVAL:
        case EPROTONOSUPPORT:
                return 400;
        default:
                return http_status_from_errno(r);
        }
}

/* A laptop's take-online sync file, uploaded (sync-file.h): the same checks
 * and hand-over as 'roam session apply-sync'; a user token applies only a
 * file of its own sessions. */
static int route_sync_apply(HttpRequest *req, void *userdata) {
        ApiSession *a = userdata;
        const Auth *au = auth_of(req);
        size_t len;
        const void *body = http_request_body(req, &len);
        if (!body || len == 0)
                return http_reply_error(req, 400, "expected a sync file as the body ('roam online NAME --to-file')");
        _cleanup_free_ char *dir = path_join(daemon_home(a->d), "tmp"), *tmp = NULL;
        int fd = dir && mkdir_p(dir, 0700) >= 0 ? tmpfile_create(dir, &tmp) : -EIO;
        int r = fd < 0 ? fd : loop_write(fd, body, len);
        if (fd >= 0)
                close(fd);
        if (r < 0) {
                if (tmp)
                        unlink(tmp);
                return http_reply_error(req, 507, "cannot keep the uploaded sync file: %s", strerror(-r));
        }
        SyncCtx x = { .home = daemon_home(a->d), .store = daemon_store(a->d), .catalog = daemon_catalog(a->d),
                      .host = a->h };
        SyncFileResult res;
        err_clear();
        r = sync_file_apply(&x, tmp, au && au->role == CATALOG_ROLE_USER ? au->user : NULL, &res);
        unlink(tmp);
        if (r < 0)
                return http_reply_error(req, sync_status(r), "%s", err_message(r));
        if (res.terms.kind == SYNC_STALE_COPY) {
                daemon_log(a->d, DAEMON_LOG_INFO, "stale copy of session '%s' from laptop %s (epoch %lld) kept as "
                           "ref '%s'", res.terms.session, res.terms.laptop, (long long) res.terms.epoch,
                           res.kept_ref);
                return http_reply_json(req, 200, json_pack("{s:s, s:s, s:I, s:s, s:s}", "session", res.terms.session,
                                                           "kind", "stale-copy", "stale_epoch",
                                                           (json_int_t) res.terms.epoch, "checkpoint",
                                                           res.terms.checkpoint, "kept_as", res.kept_ref));
        }
        daemon_log(a->d, DAEMON_LOG_INFO, "session '%s' taken online by sync file from laptop %s at epoch %lld",
                   res.terms.session, res.terms.laptop, (long long) res.terms.epoch + 1);
        json_t *j = json_pack("{s:s, s:I, s:s, s:b, s:I}", "session", res.terms.session, "epoch",
                              (json_int_t) res.terms.epoch + 1, "state", res.terms.powered_off ? "stopped" : "running",
                              "powered_off", res.terms.powered_off, "chunks", (json_int_t) res.stats.chunks);
        if (j && res.terms.powered_off) {
                json_object_set_new(j, "logoff", json_string(res.finalize.finalize.logoff));
                json_object_set_new(j, "policy", json_string(vm_policy_to_string(res.finalize.finalize.policy)));
        }
        return http_reply_json(req, 200, j);
}

static const HttpRoute routes[] = {
        { "GET", "/v1/sessions", 0, route_list },
        { "GET", "/v1/sessions/*", 0, route_get },
        /* a move-in may bring its remainder (parse_move_in()) */
        { "POST", "/v1/sessions/*", API_GRANT_LINE_MAX + 1 + PAGE_CHUNK_MAX_BASES * ID_SIZE + PACK_MAX_BYTES,
          route_post, .observe = &move_in_observer },
        { "POST", "/v1/sync-files", API_SYNC_FILE_MAX, route_sync_apply },
};

static void recover_log(const char *msg, void *userdata) {
        daemon_log(userdata, DAEMON_LOG_INFO, "%s", msg);
}

/* Settles hand-overs a crash left in doubt (handoff_recover()): at start,
 * then every 10 s (cheap: a look at each session's marker file). */
static void recover_worker(DaemonWorker *w, void *userdata) {
        ApiSession *a = userdata;
        do
                (void) handoff_recover(a->h, recover_log, daemon_worker_daemon(w));
        while (daemon_worker_sleep(w, 10));
}

/* The guest agents of the sessions that run here, asked every few seconds
 * (each look bounded by GUEST_AGENT_PING_MS): their liveness in the session
 * list and the console comes from these looks, never from a request. */
#define AGENT_WATCH_S 5
static void agent_worker(DaemonWorker *w, void *userdata) {
        ApiSession *a = userdata;
        do {
                SessionInfo *list = NULL;
                size_t n = 0;
                if (session_list(a->h, &list, &n) < 0)
                        continue;
                for (size_t i = 0; i < n; i++)
                        if (list[i].config.agent && !strcmp(list[i].row.owner, SESSION_OWNER_LOCAL))
                                (void) session_agent_probe(a->h, list[i].row.name, 0, NULL);
                session_info_list_free(list, n);
                err_clear();
        } while (daemon_worker_sleep(w, AGENT_WATCH_S));
}

int api_session_register(Daemon *d, SessionHost *h, int64_t lease_s, ApiLaptop *laptops, bool stream_grant) {
        /* lives as long as the daemon process */
        static ApiSession a;
        a.d = d;
        a.h = h;
        a.laptops = laptops;
        a.lease_s = lease_s;
        a.stream_grant = stream_grant;
        pthread_mutex_init(&a.lock, NULL);
        int r = daemon_add_routes(d, routes, ELEMENTSOF(routes), &a);
        if (r < 0)
                return r;
        r = daemon_add_worker(d, "handover-recovery", recover_worker, &a, NULL);
        if (r < 0)
                return r;
        return daemon_add_worker(d, "agent-watch", agent_worker, &a, NULL);
}
