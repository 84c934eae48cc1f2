/* SPDX-License-Identifier: MIT */
#include "laptop.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/failpoint.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../crypto/fingerprint.h"
#include "../session/handoff.h"
#include "../session/move.h"
#include "../sync/sync.h"
#include "auth.h"
#include "api-keys.h"
#include "laptop-identity.h"
#include "laptop-registry.h"
#include "api-session.h"

#define LAPTOP_MAX_SESSIONS 64

typedef struct Track {
        char name[NAME_MAX_LEN + 1];
        char user[NAME_MAX_LEN + 1];
        char owner[256];          /* as the server reports it */
        char state[32];
        int64_t epoch;
        uint64_t remainder;       /* server's estimate of what a click would send */
        double rate;              /* measured pull rate, bytes/s */
        int64_t precopy_at;       /* unix time of the last pre-copy pulled */
        double last_checkpoint;   /* monotonic, local checkpoints of sessions here */
        int64_t lease_until;      /* of a session offline here, as the server last renewed it */
        char lease_error[256];    /* why the last renewal failed ("" = it did not) */
} Track;

typedef struct Laptop {
        Daemon *d;
        SessionHost *h;
        Hoard *hoard;
        LaptopOptions o;
        LaptopIdentity *id;
        char holder[sizeof LAPTOP_HOLDER_PREFIX + SIGN_KEY_ID_LEN]; /* "laptop:ID", the server's owner for us */
        Remote *server; /* signs what needs signing (laptop-identity.h) */
        char pair_error[640]; /* why pairing failed ("" = paired or not tried) */
        pthread_mutex_t lock;  /* tracks */
        pthread_mutex_t op;    /* one hand-over or pre-copy at a time */
        Track tracks[LAPTOP_MAX_SESSIONS];
        bool connected;
        int64_t last_contact;
} Laptop;

static Track *track(Laptop *l, const char *name) {
        Track *free_slot = NULL;
        for (size_t i = 0; i < LAPTOP_MAX_SESSIONS; i++) {
                if (!strcmp(l->tracks[i].name, name))
                        return &l->tracks[i];
                if (!l->tracks[i].name[0] && !free_slot)
                        free_slot = &l->tracks[i];
        }
        if (free_slot)
                snprintf(free_slot->name, sizeof free_slot->name, "%s", name);
        return free_slot;
}

static int remote_json(Remote *server, const char *method, const char *path, json_t *body, json_t **ret,
                       uint64_t *wire);

static int server_json(Laptop *l, const char *method, const char *path, json_t *body, json_t **ret, uint64_t *wire) {
        return remote_json(l->server, method, path, body, ret, wire);
}

static int remote_json(Remote *server, const char *method, const char *path, json_t *body, json_t **ret,
                       uint64_t *wire) {
        _cleanup_(remote_conn_freep) RemoteConn *c = remote_conn_new(server);
        if (!c)
                return -ENOMEM;
        _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        RemoteResponse resp;
        int k = remote_request(c, method, path, text, text ? strlen(text) : 0, "application/json", 16 << 20, &resp);
        if (k < 0)
                return k;
        if (wire)
                *wire += resp.wire_bytes;
        if (resp.status != 200) {
                k = remote_status_error(server, &resp, path);
                remote_response_done(&resp);
                return k;
        }
        json_t *j = json_loadb((const char *) resp.body, resp.len, 0, NULL);
        remote_response_done(&resp);
        if (!j)
                return err_set(-EBADMSG, "%s sent a malformed answer to %s", remote_url(server), path);
        *ret = j;
        return 0;
}

/* ---- background work ---- */

/* What the laptop's store holds of a session, with everything below: its
 * last pre-copy and its latest checkpoint (hints for a pack; sync.h). */
static size_t local_haves(Laptop *l, const char *user, const char *name, RoamId have[2]) {
        static const char *const leaves[] = { "precopy", "latest" };
        size_t n = 0;
        for (size_t i = 0; i < ELEMENTSOF(leaves); i++) {
                char ref[REF_NAME_MAX_LEN + 1];
                snprintf(ref, sizeof ref, "sessions/%s/%s/%s", user, name, leaves[i]);
                if (store_ref_get(daemon_store(l->d), ref, &have[n]) >= 0)
                        n++;
        }
        err_clear();
        return n;
}

static void precopy_one(Laptop *l, const char *name, const char *user) {
        char path[256], ref[REF_NAME_MAX_LEN + 1];
        Track *t;
        pthread_mutex_lock(&l->lock);
        t = track(l, name);
        double rate = t ? t->rate : 0;
        pthread_mutex_unlock(&l->lock);
        snprintf(path, sizeof path, "/v1/sessions/%s/precopy?rate=%.0f", name, rate);
        json_t *j = NULL;
        err_clear();
        int k = server_json(l, "POST", path, NULL, &j, NULL);
        if (k < 0) {
                daemon_log(l->d, DAEMON_LOG_DEBUG, "pre-copy of '%s': %s", name, err_message(k));
                return;
        }
        uint64_t remainder = (uint64_t) json_integer_value(json_object_get(j, "new_stored"));
        json_decref(j);
        snprintf(ref, sizeof ref, "sessions/%s/%s/precopy", user, name);
        RoamId have[2];
        SyncOptions so = { .parallel = 4, .have = have, .n_have = local_haves(l, user, name, have) };
        SyncStats st;
        k = sync_pull(daemon_store(l->d), l->server, ref, NULL, &so, &st);
        if (k < 0) {
                daemon_log(l->d, DAEMON_LOG_INFO, "pre-copy of '%s': %s", name, err_message(k));
                return;
        }
        failpoint("precopy:after-pull");
        /* its RAM file too, so that take offline writes only what changed */
        SessionStageResult sr;
        err_clear();
        k = session_stage_ram(l->h, name, &st.id, &sr);
        if (k < 0)
                daemon_log(l->d, DAEMON_LOG_INFO, "staging the RAM of '%s': %s", name, err_message(k));
        else
                daemon_log(l->d, DAEMON_LOG_DEBUG, "staged the RAM of '%s': %s%llu chunks in %.0f ms%s%s (%.0f ms)",
                           name, sr.full ? "in full, " : "", (unsigned long long) sr.chunks_written,
                           sr.seconds * 1000,
                           !sr.warm ? (sr.warm_error[0] ? "; no QEMU waits: " : "; no QEMU waits")
                           : sr.warm_started ? "; QEMU started" : "; QEMU patched",
                           sr.warm_error,
                           sr.warm_seconds * 1000);
        pthread_mutex_lock(&l->lock);
        t = track(l, name);
        if (t) {
                t->remainder = remainder;
                t->precopy_at = (int64_t) time(NULL);
                /* a rate from transfers big enough to mean something */
                if (st.wire_bytes > (1u << 20) && st.seconds > 0)
                        t->rate = (double) st.wire_bytes / st.seconds;
        }
        pthread_mutex_unlock(&l->lock);
}

static int do_offline(Laptop *l, const char *name, json_t **ret);

/* The session is this laptop's at epoch (or later) in its own catalog. */
static bool owned_here(Laptop *l, const char *name, int64_t epoch) {
        SessionInfo i = { 0 };
        bool here = session_get(l->h, name, &i) >= 0 && !strcmp(i.row.owner, SESSION_OWNER_LOCAL) &&
                    i.row.epoch >= epoch;
        session_info_done(&i);
        err_clear();
        return here;
}

/* The server gave the session to this laptop, but it is not here: a take
 * offline that a crash of this daemon cut short (after the grant, before the
 * restore). Finish it: the grant is idempotent (the same checkpoint again). */
static void finish_offline(Laptop *l, const char *name, int64_t epoch) {
        pthread_mutex_lock(&l->op);
        if (!owned_here(l, name, epoch)) {
                handoff_busy_begin(l->h, name);
                json_t *res = NULL;
                err_clear();
                int k = do_offline(l, name, &res);
                handoff_busy_end(l->h, name);
                daemon_log(l->d, DAEMON_LOG_INFO, "session '%s' was given to this laptop but did not run here: %s",
                           name, k >= 0 ? "take offline finished" : err_message(k));
                json_decref(res);
        }
        pthread_mutex_unlock(&l->op);
}

/* The session runs here under an older epoch than the server's, which
 * another owner holds: the server reclaimed it (the laptop was lost or
 * revoked). The copy here is stale; it must not run on beside the real one.
 * It is checkpointed and stopped, its state kept here (nothing is lost);
 * taking it online is refused by the server, which keeps that state too. */
static void stop_if_stale(Laptop *l, const char *name, const char *owner, int64_t epoch) {
        pthread_mutex_lock(&l->op);
        SessionInfo i = { 0 };
        bool older = session_get(l->h, name, &i) >= 0 && !strcmp(i.row.owner, SESSION_OWNER_LOCAL) &&
                     i.row.epoch < epoch;
        bool stale = older && (i.row.state == SESSION_RUNNING || i.row.state == SESSION_PAUSED);
        int64_t mine = i.row.epoch;
        session_info_done(&i);
        err_clear();
        StaleNote note;
        if (older && (handoff_stale_note_get(l->h, name, &note) < 0 || note.server_epoch != epoch)) {
                /* for 'roam session export-stale' */
                note = (StaleNote){ .epoch = mine, .server_epoch = epoch, .at = (int64_t) time(NULL) };
                snprintf(note.server_owner, sizeof note.server_owner, "%s", owner);
                int n = handoff_stale_note_set(l->h, name, &note);
                if (n < 0)
                        daemon_log(l->d, DAEMON_LOG_WARNING, "noting that session '%s' is stale: %s", name,
                                   err_message(n));
        }
        err_clear();
        int k = 0;
        if (stale) {
                handoff_busy_begin(l->h, name);
                SessionCheckpointResult ck;
                k = session_checkpoint(l->h, name, SESSION_CHECKPOINT_QUIT, &ck);
                handoff_busy_end(l->h, name);
        }
        pthread_mutex_unlock(&l->op);
        if (stale)
                daemon_log(l->d, DAEMON_LOG_INFO,
                           "session '%s' here is stale: the server gave it to %s at epoch %lld (this laptop has "
                           "epoch %lld); %s",
                           name, !strcmp(owner, SESSION_OWNER_LOCAL) ? "itself" : owner, (long long) epoch, (long long) mine,
                           k >= 0 ? "stopped here, its state kept in a checkpoint ('roam session export-stale' "
                                    "writes it to a file for the admin)"
                                  : err_message(k));
}

/* The server renews the lease of a session offline here (a signed request;
 * refused once this laptop is revoked). */
static void renew_lease(Laptop *l, const char *name) {
        char path[256];
        snprintf(path, sizeof path, "/v1/sessions/%s/renew", name);
        json_t *j = NULL;
        err_clear();
        int k = server_json(l, "POST", path, NULL, &j, NULL);
        int64_t until = k >= 0 ? json_integer_value(json_object_get(j, "lease_until")) : 0;
        json_decref(j);
        if (k >= 0)
                k = handoff_lease_set(l->h, name, until);
        pthread_mutex_lock(&l->lock);
        Track *t = track(l, name);
        bool new_error = false;
        if (t) {
                if (k >= 0)
                        t->lease_until = until;
                new_error = k < 0 && strcmp(t->lease_error, err_message(k));
                snprintf(t->lease_error, sizeof t->lease_error, "%s", k < 0 ? err_message(k) : "");
        }
        pthread_mutex_unlock(&l->lock);
        if (new_error)
                daemon_log(l->d, DAEMON_LOG_INFO, "renewing the lease of '%s': %s", name, err_message(k));
}

/* Pairs this laptop's key with the server until it has answered yes, and
 * keeps nonces at hand for the next signed request. */
static bool ensure_paired(Laptop *l) {
        if (laptop_identity_paired(l->id)) {
                (void) laptop_identity_refill(l->id);
                (void) laptop_key_ensure(l->d, l->server); /* an encrypted laptop's data key */
                return true;
        }
        err_clear();
        int k = laptop_identity_pair(l->id, l->server);
        pthread_mutex_lock(&l->lock);
        bool changed = strcmp(l->pair_error, k < 0 ? err_message(k) : "");
        snprintf(l->pair_error, sizeof l->pair_error, "%s", k < 0 ? err_message(k) : "");
        pthread_mutex_unlock(&l->lock);
        if (k >= 0) {
                daemon_log(l->d, DAEMON_LOG_INFO, "paired with %s as laptop '%s' (id %s)", l->o.server_url,
                           laptop_identity_name(l->id), laptop_identity_id(l->id));
                (void) laptop_key_ensure(l->d, l->server);
        }
        else if (changed)
                daemon_log(l->d, DAEMON_LOG_ERROR, "pairing with %s: %s", l->o.server_url, err_message(k));
        return k >= 0;
}

static void sync_with_server(Laptop *l) {
        json_t *j = NULL;
        err_clear();
        int k = server_json(l, "GET", "/v1/sessions", NULL, &j, NULL);
        pthread_mutex_lock(&l->lock);
        l->connected = k >= 0;
        if (k >= 0)
                l->last_contact = (int64_t) time(NULL);
        pthread_mutex_unlock(&l->lock);
        if (k < 0)
                return;
        bool paired = ensure_paired(l);
        if (!laptop_key_usable(l->d))
                return; /* locked: nothing is hoarded or pre-copied */
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(j, "sessions"), i, s) {
                const char *name = json_string_value(json_object_get(s, "name"));
                const char *user = json_string_value(json_object_get(s, "user"));
                const char *image = json_string_value(json_object_get(s, "image"));
                const char *owner = json_string_value(json_object_get(s, "owner"));
                const char *state = json_string_value(json_object_get(s, "state"));
                if (!name || !user || !owner || !state || !name_is_valid(name) || !name_is_valid(user))
                        continue;
                pthread_mutex_lock(&l->lock);
                Track *t = track(l, name);
                if (t) {
                        snprintf(t->user, sizeof t->user, "%s", user);
                        snprintf(t->owner, sizeof t->owner, "%s", owner);
                        snprintf(t->state, sizeof t->state, "%s", state);
                        t->epoch = json_integer_value(json_object_get(s, "epoch"));
                }
                pthread_mutex_unlock(&l->lock);
                int64_t epoch = json_integer_value(json_object_get(s, "epoch"));
                if (!strcmp(owner, l->holder) && !owned_here(l, name, epoch))
                        finish_offline(l, name, epoch);
                else if (paired && !strcmp(owner, l->holder))
                        renew_lease(l, name);
                else if (strcmp(owner, l->holder))
                        stop_if_stale(l, name, owner, epoch);
                if (image && name_is_valid(image)) {
                        char ref[REF_NAME_MAX_LEN + 1];
                        snprintf(ref, sizeof ref, "images/%s", image);
                        (void) hoard_ensure(l->hoard, l->o.server_url, ref, l->o.token);
                }
                /* the server runs it: keep our copy close to its live state */
                if (!l->o.no_precopy && !strcmp(owner, SESSION_OWNER_LOCAL) && !strcmp(state, "running")) {
                        pthread_mutex_lock(&l->op);
                        precopy_one(l, name, user);
                        pthread_mutex_unlock(&l->op);
                } else if (!strcmp(owner, SESSION_OWNER_LOCAL) && strcmp(state, "paused")) {
                        /* the server has it, stopped: a staged RAM file would only hold memory */
                        pthread_mutex_lock(&l->op);
                        session_unstage_ram(l->h, name);
                        pthread_mutex_unlock(&l->op);
                }
        }
        json_decref(j);
}

/* Sessions that run here: local checkpoints (for a restart while offline). */
static void care_for_local(Laptop *l, bool at_start) {
        SessionInfo *list = NULL;
        size_t n = 0;
        if (session_list(l->h, &list, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                SessionInfo *s = &list[i];
                if (strcmp(s->row.owner, SESSION_OWNER_LOCAL))
                        continue;
                const char *name = s->row.name;
                if (s->row.state == SESSION_CRASHED && s->row.last_checkpoint) {
                        err_clear();
                        int k = handoff_lease_check(l->h, name);
                        if (k >= 0)
                                k = session_restore(l->h, name, NULL, NULL);
                        daemon_log(l->d, DAEMON_LOG_INFO, "session '%s' was not running: %s", name,
                                   k >= 0 ? "restored from its latest checkpoint" : err_message(k));
                        continue;
                }
                if (at_start || s->row.state != SESSION_RUNNING)
                        continue;
                pthread_mutex_lock(&l->lock);
                Track *t = track(l, name);
                bool due = t && now_s() - t->last_checkpoint >= l->o.checkpoint_interval_s;
                if (due)
                        t->last_checkpoint = now_s();
                pthread_mutex_unlock(&l->lock);
                if (!due)
                        continue;
                pthread_mutex_lock(&l->op);
                SessionCheckpointResult ck;
                err_clear();
                int k = session_checkpoint(l->h, name, 0, &ck);
                if (k < 0)
                        daemon_log(l->d, DAEMON_LOG_INFO, "checkpoint of '%s': %s", name, err_message(k));
                else if (l->connected && !l->o.no_precopy) {
                        /* pre-copy back: the server gets what take-online will need */
                        char ref[REF_NAME_MAX_LEN + 1], staging[REF_NAME_MAX_LEN + 1];
                        snprintf(ref, sizeof ref, "sessions/%s/%s/latest", s->row.user, name);
                        snprintf(staging, sizeof staging, "sessions/%s/%s/precopy-back", s->row.user, name);
                        SyncOptions so = { .parallel = 4 };
                        k = sync_push(daemon_store(l->d), l->server, ref, staging, &so, NULL);
                        if (k < 0)
                                daemon_log(l->d, DAEMON_LOG_DEBUG, "pre-copy back of '%s': %s", name,
                                           err_message(k));
                }
                pthread_mutex_unlock(&l->op);
        }
        session_info_list_free(list, n);
}

static void laptop_worker(DaemonWorker *w, void *userdata) {
        Laptop *l = userdata;
        /* an encrypted laptop that starts locked recovers once it is unlocked */
        bool recovered = false;
        do {
                if (!recovered && laptop_key_usable(l->d)) {
                        care_for_local(l, true);
                        recovered = true;
                }
                sync_with_server(l);
                if (recovered && laptop_key_usable(l->d))
                        care_for_local(l, false);
        } while (daemon_worker_sleep(w, l->o.precopy_interval_s));
}

/* ---- hand-overs ---- */

/* What this laptop knows the server has of a session it took offline: for a
 * later take online by file (sync-file.h), which sends only the rest. */
static void note_grant(Laptop *l, const char *name, const char *user, const char *server_id, int64_t epoch,
                       const RoamId *ck) {
        GrantNote g = { .epoch = epoch };
        snprintf(g.server, sizeof g.server, "%s", server_id ? server_id : "");
        id_to_hex(ck, g.checkpoint);
        char ref[REF_NAME_MAX_LEN + 1];
        snprintf(ref, sizeof ref, "sessions/%s/%s/server-has", user, name);
        int k = handoff_grant_note_set(l->h, name, &g);
        if (k >= 0)
                k = store_ref_set(daemon_store(l->d), ref, ck, NULL);
        if (k < 0)
                daemon_log(l->d, DAEMON_LOG_INFO, "noting the grant of '%s': %s", name, err_message(k));
}

/* The take-offline request: *ret_grant, the server's grant. When ask is
 * given, the request asks for the remainder in the same answer (the grant as
 * one line, then a pack: api-session.h) and *ret_packed says whether it came
 * and was stored. */
/* The answer to the take-offline request as it comes: once the grant's line
 * is whole, the pack after it goes to stream (stored while the rest comes). */
typedef struct GrantWatch {
        SyncPackStream *stream;
        size_t pack_at; /* 0: the grant's line is not whole yet */
        bool gone;      /* a body went away: the stream stopped, the pack is taken whole */
} GrantWatch;

static void grant_watch(void *userdata, const uint8_t *data, size_t n) {
        GrantWatch *g = userdata;
        if (g->gone)
                return;
        if (!data) {
                sync_pack_stream_stop(g->stream);
                g->gone = true;
                return;
        }
        if (!g->pack_at) {
                const uint8_t *nl = memchr(data, '\n', MIN(n, (size_t) API_GRANT_LINE_MAX));
                if (!nl)
                        return;
                g->pack_at = (size_t) (nl - data) + 1;
        }
        if (n > g->pack_at)
                sync_pack_stream_feed(g->stream, data + g->pack_at, n - g->pack_at);
}

static int request_grant(Laptop *l, const char *name, SyncPackAsk *ask, json_t *ask_json, json_t **ret_grant,
                         SyncStats *st, uint64_t *wire, bool *ret_packed, uint64_t *ret_store_ns) {
        *ret_packed = false;
        json_t *body = json_pack("{s:s}", "holder", l->holder);
        if (body && ask_json)
                json_object_set(body, "pack", ask_json);
        _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        _cleanup_(remote_conn_freep) RemoteConn *c = text ? remote_conn_new(l->server) : NULL;
        if (!c)
                return -ENOMEM;
        char path[256];
        snprintf(path, sizeof path, "/v1/sessions/%s/offline", name);
        /* the remainder is stored as it comes (unless streams are off: then
         * once it is all here) */
        _cleanup_(sync_pack_stream_freep) SyncPackStream *stream = NULL;
        GrantWatch watch = { 0 };
        if (ask && !l->o.no_stream_pack && sync_pack_stream_new(ask, &stream) >= 0) {
                watch.stream = stream;
                remote_conn_observe(c, grant_watch, &watch);
        }
        err_clear();
        RemoteResponse resp;
        int k = remote_request(c, "POST", path, text, strlen(text), "application/json",
                               PACK_MAX_BYTES + API_GRANT_LINE_MAX, &resp);
        remote_conn_observe(c, NULL, NULL);
        if (k < 0)
                return k; /* the stream stopped when the body went away */
        /* the threads storing the pack are done with the body before anything
         * else happens to it (what storing it still took after its last byte
         * came is the laptop's wait) */
        uint64_t t_stored = now_ns();
        if (stream)
                sync_pack_stream_stop(stream);
        *wire += resp.wire_bytes;
        if (resp.status != 200) {
                k = remote_status_error(l->server, &resp, path);
                remote_response_done(&resp);
                return k;
        }
        /* the grant: the first line, or all of it (an answer without a pack) */
        const uint8_t *nl = memchr(resp.body, '\n', MIN(resp.len, (size_t) API_GRANT_LINE_MAX));
        size_t glen = nl ? (size_t) (nl - resp.body) : resp.len;
        json_t *g = json_loadb((const char *) resp.body, glen, 0, NULL);
        if (!json_is_object(g)) {
                json_decref(g);
                remote_response_done(&resp);
                return err_set(-EBADMSG, "%s sent a malformed answer to %s", remote_url(l->server), path);
        }
        if (ask && nl && resp.len > glen + 1) {
                /* a stream that read this very pack: its chunks are stored, the rest now */
                k = stream && !watch.gone && watch.pack_at == glen + 1
                            ? sync_pack_stream_finish(stream, nl + 1, resp.len - glen - 1, st)
                            : sync_pack_take(ask, nl + 1, resp.len - glen - 1, st);
                *ret_store_ns = now_ns() - t_stored;
                if (k < 0) {
                        /* the pull below fetches what it did not bring */
                        daemon_log(l->d, DAEMON_LOG_INFO, "the remainder of '%s' with its grant: %s", name,
                                   err_message(k));
                        err_clear();
                } else
                        *ret_packed = true;
        }
        remote_response_done(&resp);
        *ret_grant = g;
        return 0;
}

static int offline_steps(Laptop *l, const char *name, json_t **ret);

/* The remainder is stored and, a moment later, patched into the staged RAM
 * by the restore: it is read from memory then (store_keep_fresh()). */
static int do_offline(Laptop *l, const char *name, json_t **ret) {
        store_keep_fresh(daemon_store(l->d), HANDOFF_FRESH_S);
        int k = offline_steps(l, name, ret);
        store_keep_fresh(daemon_store(l->d), 0);
        return k;
}

static int offline_steps(Laptop *l, const char *name, json_t **ret) {
        uint64_t t0 = now_ns(), wire = 0;
        if (!laptop_identity_paired(l->id)) {
                int k = laptop_identity_pair(l->id, l->server);
                if (k < 0)
                        return k;
        }
        /* the remainder comes with the grant when this laptop knows what it
         * holds of the session (its user's refs): one round trip */
        char known_user[NAME_MAX_LEN + 1] = "";
        pthread_mutex_lock(&l->lock);
        Track *t = track(l, name);
        if (t)
                snprintf(known_user, sizeof known_user, "%s", t->user);
        pthread_mutex_unlock(&l->lock);
        RoamId have[2];
        SyncOptions so = { .parallel = 4, .have = have };
        if (known_user[0] && name_is_valid(known_user))
                so.n_have = local_haves(l, known_user, name, have);
        _cleanup_(sync_pack_ask_freep) SyncPackAsk *ask = NULL;
        _cleanup_(json_decrefp) json_t *ask_json = NULL;
        if (so.n_have > 0 && !l->o.no_grant_pack && sync_pack_ask(daemon_store(l->d), &so, &ask_json, &ask) < 0)
                err_clear(); /* then without */
        /* the pre-copy's RAM as staged here: the pages of the remainder's
         * chunks that did not change are copied from it */
        SessionStagedView view = { 0 };
        if (ask && session_staged_view(l->h, name, &view) >= 0)
                sync_pack_ask_attach_plain(ask, &view.id, view.addr, view.len);
        err_clear();
        json_t *g = NULL;
        SyncStats pst = { 0 };
        bool packed = false;
        uint64_t store_ns = 0;
        int k = request_grant(l, name, ask, ask_json, &g, &pst, &wire, &packed, &store_ns);
        /* done with the staged file before the restore takes it */
        sync_pack_ask_free(TAKE_PTR(ask));
        session_staged_view_done(&view);
        if (k < 0)
                return k;
        const char *ck = json_string_value(json_object_get(g, "checkpoint"));
        const char *user = json_string_value(json_object_get(g, "user"));
        int64_t epoch = json_integer_value(json_object_get(g, "epoch"));
        int64_t lease = json_integer_value(json_object_get(g, "lease_until"));
        int64_t server_pause = json_integer_value(json_object_get(g, "pause_ms"));
        if (!ck || !user || !name_is_valid(user) || epoch < 1) {
                json_decref(g);
                return err_set(-EBADMSG, "%s sent a malformed offline grant", l->o.server_url);
        }
        if (owned_here(l, name, epoch)) {
                /* taken offline already (a repeated click, or this daemon finished it after a crash) */
                *ret = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "session", name, "checkpoint", ck, "epoch",
                                 (json_int_t) epoch, "downtime_ms", (json_int_t) 0, "bytes_after_click",
                                 (json_int_t) wire, "lease_until", (json_int_t) lease, "already", 1);
                json_decref(g);
                return 0;
        }
        failpoint("offline:after-grant");
        uint64_t t_grant = now_ns();
        char ref[REF_NAME_MAX_LEN + 1];
        snprintf(ref, sizeof ref, "sessions/%s/%s/latest", user, name);
        /* the remainder: what the pre-copy did not bring, in one pack (which
         * came with the grant already when packed: then this only checks that
         * all is here, fetches anything still missing, and sets the ref) */
        if (strcmp(user, known_user))
                so.n_have = local_haves(l, user, name, have);
        so.no_pack = packed;
        SyncStats st = { 0 };
        SessionRestoreResult rr = { 0 };
        RoamId ck_id;
        k = id_from_hex(ck, &ck_id) < 0 ? err_set(-EBADMSG, "%s sent a malformed checkpoint id", l->o.server_url)
                                         : sync_pull_object(daemon_store(l->d), l->server, &ck_id, ref, &so, &st);
        uint64_t t_pulled = now_ns();
        if (k >= 0) {
                wire += st.wire_bytes;
                st.chunks_sent += pst.chunks_sent;
                st.chunks_paged += pst.chunks_paged;
                st.pages_referenced += pst.pages_referenced;
                st.chunks_page_fallback += pst.chunks_page_fallback;
                st.objects_delta += pst.objects_delta;
                failpoint("offline:after-pull");
                k = session_move_in(l->h, name, ck, epoch, -1, &rr);
        }
        failpoint("offline:after-restore");
        /* the guest runs here from now on: what follows is bookkeeping */
        uint64_t downtime = now_ns() - t0;
        if (k >= 0)
                k = handoff_lease_set(l->h, name, lease);
        if (k >= 0)
                note_grant(l, name, user, json_string_value(json_object_get(g, "server_id")), epoch, &ck_id);
        if (k < 0) {
                json_decref(g);
                return err_set_if_none(k, "taking session '%s' offline failed", name);
        }
        *ret = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:I, s:I}", "session", name,
                         "checkpoint", ck, "epoch", (json_int_t) epoch, "downtime_ms",
                         (json_int_t) (downtime / 1000000), "bytes_after_click", (json_int_t) wire,
                         "chunks_after_click", (json_int_t) st.chunks_sent, "server_pause_ms",
                         (json_int_t) server_pause, "lease_until", (json_int_t) lease, "restore_ms",
                         (json_int_t) (rr.total_ns / 1000000), "ram_staged", rr.ram_staged, "chunks_paged",
                         (json_int_t) st.chunks_paged, "pages_referenced", (json_int_t) st.pages_referenced,
                         "chunks_page_fallback", (json_int_t) st.chunks_page_fallback);
        json_object_set_new(*ret, "qemu_waiting", json_boolean(rr.warm));
        json_object_set_new(*ret, "remainder_with_grant", json_boolean(packed));
        json_object_set_new(*ret, "objects_as_deltas", json_integer((json_int_t) st.objects_delta));
        json_decref(g);
        daemon_log(l->d, DAEMON_LOG_INFO, "session '%s' taken offline: downtime %llu ms, %llu bytes after the click",
                   name, (unsigned long long) (downtime / 1000000), (unsigned long long) wire);
        daemon_log(l->d, DAEMON_LOG_DEBUG,
                   "take offline of '%s': grant %.0f ms (of it, storing the remainder that came with it %.0f ms: "
                   "%llu chunks, %llu as pages with %llu page references, %llu fetched in full), pull %.0f ms, "
                   "restore %.0f ms; the pull: objects %.0f, their chunks %.0f, which are here %.0f, ref %.0f; "
                   "objects rebuilt from deltas %llu, objects the pull fetched %llu",
                   name, (t_grant - t0) / 1e6, store_ns / 1e6, (unsigned long long) st.chunks_sent,
                   (unsigned long long) st.chunks_paged, (unsigned long long) st.pages_referenced,
                   (unsigned long long) st.chunks_page_fallback, (t_pulled - t_grant) / 1e6,
                   (now_ns() - t_pulled) / 1e6, st.objects_ns / 1e6, st.reach_ns / 1e6, st.check_ns / 1e6,
                   st.ref_ns / 1e6, (unsigned long long) st.objects_delta,
                   (unsigned long long) st.objects_sent);
        daemon_log(l->d, DAEMON_LOG_DEBUG,
                   "restore of '%s': %.0f ms: verify %.0f, RAM %.0f (%s), files %.0f in all, QEMU start %.0f%s, "
                   "device state and cont %.0f (loading the device state %.0f, cont %.0f)",
                   name, rr.total_ns / 1e6, rr.verify_ns / 1e6, rr.ram_ns / 1e6, rr.ram_staged ? "staged" : "full",
                   rr.export_ns / 1e6, rr.launch_ns / 1e6, rr.warm ? " (waiting already)" : "",
                   (rr.qemu_ns - rr.launch_ns) / 1e6, rr.devstate_ns / 1e6, rr.cont_ns / 1e6);
        return 0;
}

/* A powered-off session goes back as its disk delta; the server finalizes it. */
static int do_online_powered_off(Laptop *l, const char *name, json_t **ret) {
        uint64_t t0 = now_ns(), wire = 0;
        SessionInfo i = { 0 };
        int k = session_get(l->h, name, &i);
        if (k < 0)
                return k;
        int64_t epoch = i.row.epoch;
        _cleanup_free_ char *user = strdup(i.row.user);
        session_info_done(&i);
        if (!user)
                return -ENOMEM;
        SessionCheckpointResult ck;
        k = session_checkpoint(l->h, name, 0, &ck);
        if (k < 0)
                return k;
        char ref[REF_NAME_MAX_LEN + 1], staging[REF_NAME_MAX_LEN + 1], hex[ID_HEX_SIZE], path[256];
        snprintf(ref, sizeof ref, "sessions/%s/%s/latest", user, name);
        snprintf(staging, sizeof staging, "sessions/%s/%s/in-e%lld", user, name, (long long) (epoch + 1));
        SyncOptions so = { .parallel = 4 };
        SyncStats st = { 0 };
        k = sync_push(daemon_store(l->d), l->server, ref, staging, &so, &st);
        if (k < 0)
                return k;
        failpoint("online-off:after-push");
        wire += st.wire_bytes;
        /* the server boots the guest for its log-off: allow it minutes */
        RemoteOptions ro = { .cacert = l->o.cacert, .stall_timeout_s = 600,
                             .signer = laptop_identity_signer(l->id) };
        _cleanup_(remote_freep) Remote *slow = NULL;
        k = remote_new(l->o.server_url, l->o.token, &ro, &slow);
        if (k < 0)
                return k;
        json_t *body = json_pack("{s:s, s:I, s:I}", "checkpoint", id_to_hex(&ck.id, hex), "epoch",
                                 (json_int_t) (epoch + 1), "from_epoch", (json_int_t) epoch);
        json_t *res = NULL;
        snprintf(path, sizeof path, "/v1/sessions/%s/finalize-in", name);
        /* from here a crash leaves the question "does the server have it?" to handoff_recover() */
        k = handoff_mark(l->h, name, "out", l->o.server_url, l->o.token, epoch + 1, hex);
        if (k < 0) {
                json_decref(body);
                return k;
        }
        failpoint("online-off:before-finalize");
        k = remote_json(slow, "POST", path, body, &res, &wire);
        json_decref(body);
        failpoint("online-off:after-finalize");
        if (k < 0 && k != -ESTALE && k != -EBADMSG && k != -EACCES && k != -EPERM && k != -ENOENT) {
                /* no clear answer, or the server failed after taking it: ask, never guess */
                char saved[1024];
                snprintf(saved, sizeof saved, "%s", err_message(k));
                int owns = handoff_ask_peer(l->o.server_url, l->o.token, name, epoch + 1);
                if (owns < 0)
                        return err_set(k, "taking session '%s' online: no clear answer from %s (%s); it stays "
                                       "stopped here until the server says whether it has it (the daemon asks "
                                       "again)", name, l->o.server_url, saved);
                if (owns > 0) {
                        k = session_set_owner(l->h, name, l->o.server_url, epoch + 1, epoch);
                        if (k >= 0) {
                                (void) handoff_unmark(l->h, name);
                                (void) handoff_lease_set(l->h, name, 0);
                        }
                        return err_set(k >= 0 ? -EIO : k, "session '%s' is the server's now (epoch %lld), but its "
                                       "log-off there did not finish: %s", name, (long long) (epoch + 1), saved);
                }
                k = err_set(k, "%s", saved);
        }
        if (k < 0) {
                /* the server did not take it: it stays here */
                (void) handoff_unmark(l->h, name);
                return k;
        }
        k = session_set_owner(l->h, name, l->o.server_url, epoch + 1, epoch);
        if (k >= 0) {
                (void) handoff_unmark(l->h, name);
                (void) handoff_lease_set(l->h, name, 0);
        }
        json_object_set_new(res, "session", json_string(name));
        json_object_set_new(res, "bytes_after_click", json_integer((json_int_t) wire));
        json_object_set_new(res, "downtime_ms", json_integer(0));
        json_object_set_new(res, "total_ms", json_integer((json_int_t) ((now_ns() - t0) / 1000000)));
        json_object_set_new(res, "chunks_sent", json_integer((json_int_t) st.chunks_sent));
        *ret = res;
        daemon_log(l->d, DAEMON_LOG_INFO, "powered-off session '%s' taken online: %llu bytes, finalized by the server",
                   name, (unsigned long long) wire);
        return k;
}

static int do_online(Laptop *l, const char *name, json_t **ret) {
        SessionInfo i = { 0 };
        int k0 = session_get(l->h, name, &i);
        SessionState state = k0 >= 0 ? i.row.state : SESSION_CREATED;
        session_info_done(&i);
        if (k0 < 0)
                return k0;
        if (state == SESSION_STOPPED)
                return do_online_powered_off(l, name, ret);
        SessionMoveOptions mo = { .owner_url = l->o.server_url,
                                  .token = l->o.token,
                                  .no_remainder_with_move_in = l->o.no_grant_pack,
                                  .no_stream_remainder = l->o.no_stream_pack };
        SessionMoveResult res;
        int k = session_move(l->h, name, l->server, &mo, &res);
        if (k < 0)
                return k;
        (void) handoff_lease_set(l->h, name, 0);
        *ret = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "session", name, "epoch", (json_int_t) res.epoch,
                         "downtime_ms", (json_int_t) (res.downtime_ns / 1000000), "bytes_after_click",
                         (json_int_t) res.final_wire_bytes, "bytes_before_pause",
                         (json_int_t) res.precopy_wire_bytes, "total_ms", (json_int_t) (res.total_ns / 1000000),
                         "restore_ms", (json_int_t) (res.target_restore_ns / 1000000), "ram_staged",
                         res.target_ram_staged);
        json_object_set_new(*ret, "qemu_waiting", json_boolean(res.target_warm));
        json_object_set_new(*ret, "remainder_with_move_in", json_boolean(res.remainder_with_move_in));
        json_object_set_new(*ret, "chunks_after_click", json_integer((json_int_t) res.final_chunks));
        json_object_set_new(*ret, "chunks_paged", json_integer((json_int_t) res.final_paged));
        json_object_set_new(*ret, "objects_as_deltas", json_integer((json_int_t) res.final_deltas));
        json_object_set_new(*ret, "remainder_streamed", json_boolean(res.remainder_streamed));
        char parts[256], ready[128];
        if (res.remainder_streamed)
                snprintf(ready, sizeof ready, "remainder planned %.0f ms, then sent while made (in %.0f ms)",
                         res.remainder_ns / 1e6, res.remainder_made_ns / 1e6);
        else
                snprintf(ready, sizeof ready, "remainder made ready %.0f ms", res.remainder_ns / 1e6);
        daemon_log(l->d, DAEMON_LOG_INFO, "session '%s' taken online: downtime %llu ms%s", name,
                   (unsigned long long) (res.downtime_ns / 1000000),
                   !res.remainder_with_move_in ? ", its remainder pushed first"
                   : res.remainder_streamed    ? ", its remainder sent while made"
                                               : ", its remainder sent whole");
        daemon_log(l->d, DAEMON_LOG_DEBUG,
                   "take online of '%s': final checkpoint %.0f ms, %s (%llu chunks, %llu "
                   "as pages, %llu objects as deltas%s), the server's answer after %.0f ms (its restore %.0f ms); "
                   "the final checkpoint: %s",
                   name, res.final_checkpoint_ns / 1e6, ready,
                   (unsigned long long) res.final_chunks, (unsigned long long) res.final_paged,
                   (unsigned long long) res.final_deltas,
                   res.remainder_with_move_in ? ", with the move-in" : ", pushed first",
                   (res.downtime_ns - res.final_checkpoint_ns - res.remainder_ns) / 1e6,
                   res.target_restore_ns / 1e6, session_checkpoint_parts(&res.final_ck, parts, sizeof parts));
        return 0;
}

static bool local_admin(const HttpRequest *req) {
        const Auth *a = auth_of(req);
        return !a || a->role == CATALOG_ROLE_ADMIN || a->role == CATALOG_ROLE_HOST;
}

static int route_handoff(HttpRequest *req, void *userdata) {
        Laptop *l = userdata;
        if (!local_admin(req))
                return http_reply_error(req, 403, "only the laptop's admin may hand sessions over");
        const char *what = http_request_rest(req);
        bool off = !strcmp(what, "offline"), on = !strcmp(what, "online");
        if (!off && !on)
                return http_reply_error(req, 404, "unknown hand-over '%s' (offline or online)", what);
        size_t len;
        const void *body = http_request_body(req, &len);
        json_t *j = json_loadb(body, len, 0, NULL);
        const char *name = json_string_value(json_object_get(j, "session"));
        if (!name || !name_is_valid(name)) {
                json_decref(j);
                return http_reply_error(req, 400, "expected {\"session\": NAME}");
        }
        json_t *res = NULL;
        pthread_mutex_lock(&l->op);
        err_clear();
        handoff_busy_begin(l->h, name);
        int k = off ? do_offline(l, name, &res) : do_online(l, name, &res);
        handoff_busy_end(l->h, name);
        pthread_mutex_unlock(&l->op);
        json_decref(j);
        if (k < 0)
                return http_reply_error(req, k == -ESTALE || k == -EBUSY ? 409 : 502, "%s", err_message(k));
        return http_reply_json(req, 200, res);
}

static int route_status(HttpRequest *req, void *userdata) {
        Laptop *l = userdata;
        json_t *arr = json_array();
        pthread_mutex_lock(&l->lock);
        for (size_t i = 0; i < LAPTOP_MAX_SESSIONS; i++) {
                Track *t = &l->tracks[i];
                if (!t->name[0])
                        continue;
                double predicted = HANDOFF_OFFLINE_FIXED_S + (t->rate > 0 ? (double) t->remainder / t->rate : 0);
                json_array_append_new(
                        arr, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:f, s:I, s:f, s:I, s:o}", "name", t->name,
                                       "user", t->user, "server_owner", t->owner, "server_state", t->state, "epoch",
                                       (json_int_t) t->epoch, "remainder_bytes", (json_int_t) t->remainder,
                                       "link_rate", t->rate, "precopy_at", (json_int_t) t->precopy_at,
                                       "predicted_offline_s", predicted, "lease_until", (json_int_t) t->lease_until,
                                       "lease_error", t->lease_error[0] ? json_string(t->lease_error) : json_null()));
        }
        Fingerprint fp;
        char fptext[FINGERPRINT_TEXT_SIZE];
        bool pinned = remote_pinned(l->server, &fp) && !strncmp(l->o.server_url, "https://", 8);
        if (pinned)
                fingerprint_format(&fp, fptext);
        json_t *j = json_pack("{s:s, s:s?, s:s, s:{s:s, s:s, s:b, s:o}, s:b, s:I, s:o}", "server", l->o.server_url,
                              "server_fingerprint", pinned ? fptext : NULL, "holder", l->holder, "laptop", "id", laptop_identity_id(l->id), "name",
                              laptop_identity_name(l->id), "paired", laptop_identity_paired(l->id), "pair_error",
                              l->pair_error[0] ? json_string(l->pair_error) : json_null(), "connected", l->connected,
                              "last_contact", (json_int_t) l->last_contact, "sessions", arr);
        pthread_mutex_unlock(&l->lock);
        return http_reply_json(req, 200, j);
}

static const HttpRoute routes[] = {
        { "POST", "/v1/handoff/*", 64 * 1024, route_handoff },
        { "GET", "/v1/handoff", 0, route_status },
};

/* A laptop daemon without a server: it answers the hand-over routes too, so
 * that 'roam status' and 'roam offline' say what it is. */
static int route_no_server_status(HttpRequest *req, void *userdata) {
        return http_reply_json(req, 200, json_pack("{s:n, s:n, s:n, s:b, s:I, s:[]}", "server", "server_fingerprint",
                                                   "laptop", "connected", 0, "last_contact", (json_int_t) 0,
                                                   "sessions"));
}

static int route_no_server_handoff(HttpRequest *req, void *userdata) {
        return http_reply_error(req, 409, "this laptop daemon pairs with no server (start it with --server URL "
                                          "--token T to take sessions offline and online)");
}

static const HttpRoute no_server_routes[] = {
        { "POST", "/v1/handoff/*", 64 * 1024, route_no_server_handoff },
        { "GET", "/v1/handoff", 0, route_no_server_status },
};

int laptop_register_without_server(Daemon *d) {
        return daemon_add_routes(d, no_server_routes, ELEMENTSOF(no_server_routes), NULL);
}

int laptop_register(Daemon *d, SessionHost *h, Hoard *hoard, const LaptopOptions *o) {
        static Laptop l; /* lives as long as the daemon process */
        l.d = d;
        l.h = h;
        l.hoard = hoard;
        l.o = *o;
        if (l.o.precopy_interval_s <= 0)
                l.o.precopy_interval_s = 5;
        if (l.o.checkpoint_interval_s <= 0)
                l.o.checkpoint_interval_s = 30;
        char host[NAME_MAX_LEN + 1] = "laptop";
        if (!o->name && gethostname(host, sizeof host - 1) == 0 && !name_is_valid(host))
                snprintf(host, sizeof host, "laptop");
        const char *nm = o->name ? o->name : host;
        if (!name_is_valid(nm))
                return err_set(-EINVAL, "laptop name '%s' is invalid (use " NAME_RULE ")", nm);
        pthread_mutex_init(&l.lock, NULL);
        pthread_mutex_init(&l.op, NULL);
        /* from here on the token carries the fingerprint to pin: every
         * Remote made from it, and the hand-over markers, pin the server */
        char *pinned = NULL;
        int r = laptop_pin_resolve(daemon_home(d), o->server_url, o->token, o->fingerprint, &pinned);
        if (r < 0)
                return r;
        l.o.token = pinned; /* lives as long as l */
        o = &l.o;
        LaptopIdentityOptions io = { .home = daemon_home(d), .name = nm, .server_url = o->server_url,
                                     .token = o->token, .cacert = o->cacert };
        r = laptop_identity_open(&io, &l.id);
        if (r < 0)
                return r;
        snprintf(l.holder, sizeof l.holder, LAPTOP_HOLDER_PREFIX "%s", laptop_identity_id(l.id));
        RemoteOptions ro = { .cacert = o->cacert, .limit_rate = o->precopy_rate,
                             .signer = laptop_identity_signer(l.id) };
        r = remote_new(o->server_url, o->token, &ro, &l.server);
        if (r < 0)
                return r;
        daemon_log(d, DAEMON_LOG_INFO, "laptop '%s', id %s (key in %s/%s)", nm, laptop_identity_id(l.id),
                   daemon_home(d), LAPTOP_KEY_FILE);
        r = daemon_add_routes(d, routes, ELEMENTSOF(routes), &l);
        if (r < 0)
                return r;
        return daemon_add_worker(d, "laptop", laptop_worker, &l, NULL);
}
