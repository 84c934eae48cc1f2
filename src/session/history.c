/* SPDX-License-Identifier: MIT */
#include "history.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../store/blob.h"
#include "../store/index.h"
#include "../store/manifest.h"
#include "handoff.h"

#define BRANCH_PREFIX "branch-"
#define HISTORY_MAX 100000

static bool is_numbered(const char *leaf) {
        if (strlen(leaf) != 6)
                return false;
        for (size_t i = 0; i < 6; i++)
                if (leaf[i] < '0' || leaf[i] > '9')
                        return false;
        return true;
}

typedef struct Collect {
        Store *s;
        size_t prefix_len;
        CheckpointEntry *list;
        size_t n, cap;
        RoamId latest;
        int error;
} Collect;

static uint64_t blob_bytes(Store *s, json_t *objects, const char *role) {
        const char *hex = json_string_value(json_object_get(objects, role));
        RoamId id;
        _cleanup_(index_freep) Index *x = NULL;
        if (!hex || id_from_hex(hex, &id) < 0 || blob_load_index(s, &id, &x) < 0)
                return 0;
        return x->blob_size;
}

/* The manifest alone (history reads it; verifying every chunk is restore's job). */
static int load_manifest(Store *s, const RoamId *id, json_t **ret) {
        _cleanup_free_ void *data = NULL;
        size_t len;
        int r = store_object_get(s, id, STORE_OBJECT_MAX, &data, &len);
        return r < 0 ? r : manifest_parse(data, len, ret);
}

static int collect_cb(const char *name, const RoamId *id, void *userdata) {
        Collect *c = userdata;
        const char *leaf = name + c->prefix_len;
        bool branch = !strncmp(leaf, BRANCH_PREFIX, strlen(BRANCH_PREFIX));
        if (!id || strchr(leaf, '/'))
                return 0;
        if (!strcmp(leaf, "latest")) {
                c->latest = *id;
                return 0;
        }
        if (!branch && !is_numbered(leaf))
                return 0;
        if (c->n == HISTORY_MAX)
                return 0;
        if (c->n == c->cap) {
                size_t nc = c->cap ? c->cap * 2 : 32;
                CheckpointEntry *nl = realloc(c->list, nc * sizeof *nl);
                if (!nl)
                        return c->error = -ENOMEM;
                c->list = nl;
                c->cap = nc;
        }
        CheckpointEntry e = { .id = *id, .branch = branch };
        snprintf(e.leaf, sizeof e.leaf, "%s", leaf);
        _cleanup_(json_decrefp) json_t *m = NULL;
        if (load_manifest(c->s, id, &m) >= 0) {
                e.seq = json_integer_value(json_object_get(m, "seq"));
                e.epoch = json_integer_value(json_object_get(m, "epoch"));
                e.created = json_integer_value(json_object_get(m, "created"));
                e.powered_off = json_is_true(json_object_get(m, "powered_off"));
                snprintf(e.host, sizeof e.host, "%s", json_string_value(json_object_get(m, "host")) ?: "");
                json_t *objects = json_object_get(m, "objects");
                e.bytes = blob_bytes(c->s, objects, "ram") + blob_bytes(c->s, objects, "overlay");
        }
        err_clear();
        c->list[c->n++] = e;
        return 0;
}

static int by_time_desc(const void *a, const void *b) {
        const CheckpointEntry *x = a, *y = b;
        if (x->created != y->created)
                return x->created < y->created ? 1 : -1;
        if (x->seq != y->seq)
                return x->seq < y->seq ? 1 : -1;
        return strcmp(y->leaf, x->leaf);
}

/* The session's row and its refs' prefix. */
static int session_of(SessionHost *h, const char *name, SessionInfo *ret, char prefix[static REF_NAME_MAX_LEN + 1]) {
        int r = session_get(h, name, ret);
        if (r < 0)
                return r;
        snprintf(prefix, REF_NAME_MAX_LEN + 1, "sessions/%s/%s/", ret->row.user, name);
        return 0;
}

static int history_of(SessionHost *h, const SessionInfo *i, const char *prefix, CheckpointEntry **ret,
                      size_t *ret_n) {
        Collect c = { .s = session_host_store(h), .prefix_len = strlen(prefix) };
        int r = store_ref_foreach(c.s, prefix, collect_cb, &c);
        if (r >= 0 && c.error < 0)
                r = c.error;
        if (r < 0) {
                free(c.list);
                return r;
        }
        RoamId current = ID_NULL;
        if (i->row.last_checkpoint)
                (void) id_from_hex(i->row.last_checkpoint, &current);
        for (size_t k = 0; k < c.n; k++) {
                c.list[k].latest = id_equal(&c.list[k].id, &c.latest);
                c.list[k].current = id_equal(&c.list[k].id, &current);
        }
        if (c.n > 1)
                qsort(c.list, c.n, sizeof *c.list, by_time_desc);
        *ret = c.list;
        *ret_n = c.n;
        return 0;
}

int session_history(SessionHost *h, const char *name, CheckpointEntry **ret, size_t *ret_n) {
        SessionInfo i = { 0 };
        char prefix[REF_NAME_MAX_LEN + 1];
        int r = session_of(h, name, &i, prefix);
        if (r >= 0)
                r = history_of(h, &i, prefix, ret, ret_n);
        session_info_done(&i);
        return r;
}

/* ---- rollback ---- */

/* spec as session_checkpoint_resolve() takes it, or a branch leaf */
static int resolve(SessionHost *h, const SessionInfo *i, const char *prefix, const char *spec, RoamId *ret) {
        if (!strncmp(spec, BRANCH_PREFIX, strlen(BRANCH_PREFIX))) {
                char ref[REF_NAME_MAX_LEN + 1];
                if (!name_is_valid(spec) || (size_t) snprintf(ref, sizeof ref, "%s%s", prefix, spec) >= sizeof ref)
                        return err_set(-EINVAL, "checkpoint '%s' is malformed", spec);
                int r = store_ref_get(session_host_store(h), ref, ret);
                return r == -ENOENT ? err_set(r, "session '%s' has no checkpoint '%s' (see 'roam session history "
                                              "%s')", i->row.name, spec, i->row.name)
                                    : r;
        }
        return session_checkpoint_resolve(h, i->row.user, i->row.name, spec, ret);
}

int session_rollback(SessionHost *h, const char *name, const char *spec, RollbackResult *ret) {
        SessionInfo i = { 0 };
        char prefix[REF_NAME_MAX_LEN + 1];
        int r = session_of(h, name, &i, prefix);
        _cleanup_free_ char *owner = r >= 0 ? strdup(i.row.owner) : NULL;
        _cleanup_free_ char *user = r >= 0 ? strdup(i.row.user) : NULL;
        SessionState state = i.row.state;
        RoamId to;
        if (r >= 0)
                r = resolve(h, &i, prefix, spec, &to);
        session_info_done(&i);
        if (r < 0)
                return r;
        if (!owner || !user)
                return -ENOMEM;
        if (strcmp(owner, SESSION_OWNER_LOCAL))
                return err_set(-EREMOTE, "session '%s' is owned by %s, not here: roll it back there", name, owner);
        /* the checkpoint must be this session's own (before anything changes) */
        _cleanup_(json_decrefp) json_t *m = NULL;
        r = session_checkpoint_verify(session_host_store(h), &to, &m);
        if (r < 0)
                return r;
        const char *ms = json_string_value(json_object_get(m, "session"));
        const char *mu = json_string_value(json_object_get(m, "user"));
        if (!ms || !mu || strcmp(ms, name) || strcmp(mu, user))
                return err_set(-EINVAL, "checkpoint '%s' belongs to session '%s' of user '%s', not to '%s'", spec,
                               ms ? ms : "?", mu ? mu : "?", name);
        if (state == SESSION_CRASHED)
                return err_set(-EINVAL, "session '%s' is crashed: restore it first, then roll back", name);
        /* the present, kept: a checkpoint (the session stops) under a branch ref */
        handoff_busy_begin(h, name);
        bool live = state == SESSION_RUNNING || state == SESSION_PAUSED;
        SessionCheckpointResult ck;
        RollbackResult res = { .to = to };
        r = session_checkpoint(h, name, live ? SESSION_CHECKPOINT_QUIT : 0, &ck);
        if (r >= 0) {
                char ref[REF_NAME_MAX_LEN + 1];
                snprintf(res.branch, sizeof res.branch, BRANCH_PREFIX "%lld", (long long) time(NULL));
                res.kept = ck.id;
                r = (size_t) snprintf(ref, sizeof ref, "%s%s", prefix, res.branch) < sizeof ref
                            ? store_ref_set(session_host_store(h), ref, &ck.id, NULL)
                            : -ENAMETOOLONG;
        }
        char hex[ID_HEX_SIZE];
        SessionRestoreResult rr;
        if (r >= 0)
                r = session_restore(h, name, id_to_hex(&to, hex), &rr);
        handoff_busy_end(h, name);
        if (r < 0)
                return r;
        res.powered_off = rr.powered_off;
        *ret = res;
        return 0;
}

/* ---- retention ---- */

/* Keeps the newest entry in each of the last n buckets of width seconds. */
static void keep_buckets(const int64_t *created, size_t count, unsigned n, int64_t width, int64_t now, bool *keep) {
        int64_t last_bucket = -1;
        for (size_t i = 0; i < count; i++) {
                int64_t age = now - created[i];
                int64_t b = age < 0 ? 0 : age / width;
                if (b >= (int64_t) n)
                        break; /* newest first: every later one is older */
                if (b != last_bucket) {
                        keep[i] = true;
                        last_bucket = b;
                }
        }
}

void retention_select(const int64_t *created, size_t n, const RetentionPolicy *p, int64_t now, bool *keep) {
        for (size_t i = 0; i < n; i++)
                keep[i] = retention_keeps_all(p) || i < p->keep_last;
        keep_buckets(created, n, p->keep_hourly, 3600, now, keep);
        keep_buckets(created, n, p->keep_daily, 86400, now, keep);
}

static int prune_one(SessionHost *h, const SessionInfo *i, const RetentionPolicy *p, uint64_t *removed) {
        char prefix[REF_NAME_MAX_LEN + 1];
        snprintf(prefix, sizeof prefix, "sessions/%s/%s/", i->row.user, i->row.name);
        CheckpointEntry *list = NULL;
        size_t n = 0;
        int r = history_of(h, i, prefix, &list, &n);
        if (r < 0)
                return r;
        /* the numbered ones, newest first, are what the policy counts */
        int64_t *created = calloc(n ? n : 1, sizeof *created);
        bool *keep = calloc(n ? n : 1, sizeof *keep);
        size_t *at = calloc(n ? n : 1, sizeof *at);
        size_t m = 0;
        if (!created || !keep || !at)
                r = -ENOMEM;
        for (size_t k = 0; r >= 0 && k < n; k++)
                if (!list[k].branch) {
                        at[m] = k;
                        created[m++] = list[k].created;
                }
        if (r >= 0)
                retention_select(created, m, p, (int64_t) time(NULL), keep);
        for (size_t k = 0; r >= 0 && k < m; k++) {
                const CheckpointEntry *e = &list[at[k]];
                if (keep[k] || e->latest || e->current)
                        continue;
                char ref[REF_NAME_MAX_LEN + 1];
                if ((size_t) snprintf(ref, sizeof ref, "%s%s", prefix, e->leaf) >= sizeof ref)
                        continue;
                r = store_ref_delete(session_host_store(h), ref);
                if (r >= 0)
                        (*removed)++;
        }
        free(created);
        free(keep);
        free(at);
        free(list);
        return r;
}

int session_prune(SessionHost *h, const RetentionPolicy *p, uint64_t *ret_removed) {
        *ret_removed = 0;
        if (retention_keeps_all(p))
                return 0;
        SessionInfo *list = NULL;
        size_t n = 0;
        int r = session_list(h, &list, &n);
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (!strcmp(list[i].row.owner, SESSION_OWNER_LOCAL))
                        r = prune_one(h, &list[i], p, ret_removed);
        session_info_list_free(list, n);
        return r;
}
