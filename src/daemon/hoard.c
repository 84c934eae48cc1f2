/* SPDX-License-Identifier: MIT */
#include "hoard.h"

#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../basic/error.h"
#include "../basic/failpoint.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../store/page-index.h"
#include "../sync/sync.h"
#include "auth.h"

struct Hoard {
        Daemon *daemon;
        HoardOptions o;
        DaemonWorker *worker;
        pthread_mutex_t lock;
        int64_t running_id; /* job in progress, 0 = none */
        int64_t cancel_id;  /* job deleted while running */
};

typedef struct Job {
        int64_t id;
        char *url, *ref, *token;
        int64_t limit_rate;
} Job;

static void job_done(Job *j) {
        free(j->url);
        free(j->ref);
        free(j->token);
}

/* keeps the state reachable (for leak checkers) for the life of the process */
static Hoard *registered __attribute__((used));

static Catalog *cat(Hoard *h) {
        return daemon_catalog(h->daemon);
}

/* One statement on the catalog: 't' text, 'i' int64 (catalog_vexec()).
 * Returns the rows changed or a negative errno. */
static int exec_sql(Hoard *h, const char *sql, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = catalog_vexec(cat(h), "a hoard update", sql, fmt, ap);
        va_end(ap);
        return r;
}

static int next_job(Hoard *h, Job *ret) {
        sqlite3 *db = catalog_sqlite(cat(h));
        sqlite3_stmt *st;
        catalog_lock(cat(h));
        int r = 0;
        if (sqlite3_prepare_v2(db,
                               "SELECT id, url, ref, token, limit_rate FROM hoards WHERE state = 'active' "
                               "ORDER BY updated, id LIMIT 1",
                               -1, &st, NULL) != SQLITE_OK) {
                catalog_unlock(cat(h));
                return -EIO;
        }
        if (sqlite3_step(st) == SQLITE_ROW) {
                *ret = (Job){
                        .id = sqlite3_column_int64(st, 0),
                        .url = strdup((const char *) sqlite3_column_text(st, 1)),
                        .ref = strdup((const char *) sqlite3_column_text(st, 2)),
                        .token = strdup((const char *) sqlite3_column_text(st, 3)),
                        .limit_rate = sqlite3_column_int64(st, 4),
                };
                r = ret->url && ret->ref && ret->token ? 1 : -ENOMEM;
                if (r < 0)
                        job_done(ret);
        }
        sqlite3_finalize(st);
        catalog_unlock(cat(h));
        return r;
}

typedef struct Run {
        Hoard *h;
        int64_t id;
        double last_saved;
        uint64_t present; /* chunks this host held when the attempt started */
        uint64_t wire;    /* bytes on the wire in this attempt so far */
} Run;

static bool run_should_stop(void *userdata) {
        Run *run = userdata;
        Hoard *h = run->h;
        pthread_mutex_lock(&h->lock);
        bool cancel = h->cancel_id == run->id;
        pthread_mutex_unlock(&h->lock);
        return cancel || daemon_worker_stopping(h->worker);
}

static void run_start(uint64_t chunks_total, uint64_t to_send, void *userdata) {
        Run *run = userdata;
        run->present = chunks_total - to_send;
        exec_sql(run->h, "UPDATE hoards SET chunks_done = ?, chunks_total = ?, updated = ? WHERE id = ?", "iiii",
                 (int64_t) run->present, (int64_t) chunks_total, (int64_t) time(NULL), run->id);
}

static void run_progress(uint64_t done, uint64_t total, uint64_t wire, void *userdata) {
        Run *run = userdata;
        run->wire = wire;
        double t = now_s();
        if (t - run->last_saved < 0.5 && done < total)
                return;
        run->last_saved = t;
        /* the state keeps no updated = now here: that would reorder the job queue */
        exec_sql(run->h, "UPDATE hoards SET chunks_done = ? WHERE id = ?", "ii", (int64_t) (run->present + done),
                 run->id);
}

/* Pulls one job; returns 0 done, > 0 retry later, < 0 permanent failure. */
static int run_job(Hoard *h, Job *j) {
        RemoteOptions ro = { .limit_rate = (uint64_t) (j->limit_rate ? j->limit_rate
                                                                     : (int64_t) h->o.default_limit_rate) };
        _cleanup_(remote_freep) Remote *r = NULL;
        int k = remote_new(j->url, j->token, &ro, &r);
        if (k < 0)
                return k;
        Run run = { .h = h, .id = j->id };
        SyncOptions so = {
                .parallel = 4,
                .retries = 2,
                .should_stop = run_should_stop,
                .on_start = run_start,
                .on_batch = run_progress,
                .userdata = &run,
        };
        SyncStats st = { 0 };
        err_clear();
        k = sync_pull(daemon_store(h->daemon), r, j->ref, NULL, &so, &st);
        failpoint("hoard:after-pull");
        /* st is only filled on success; the totals of a partial run come from on_batch */
        if (k >= 0) {
                exec_sql(h,
                         "UPDATE hoards SET state = 'done', chunks_done = ?, chunks_total = ?, "
                         "wire_bytes = wire_bytes + ?, last_error = NULL, updated = ? WHERE id = ?",
                         "iiiii", (int64_t) st.chunks_total, (int64_t) st.chunks_total, (int64_t) st.wire_bytes,
                         (int64_t) time(NULL), j->id);
                daemon_log(h->daemon, DAEMON_LOG_INFO, "hoard %s from %s: done (%llu chunks transferred)", j->ref,
                           j->url, (unsigned long long) st.chunks_sent);
                if (!strncmp(j->ref, "images/", 7)) {
                        /* its page index, for page references this laptop sends (a take online) */
                        PageIndex *x = NULL;
                        if (page_index_get(daemon_store(h->daemon), &st.id, UINT64_MAX, &x) < 0)
                                err_clear();
                        page_index_unref(x);
                }
                return 0;
        }
        const char *msg = err_message(k);
        bool transient = remote_error_is_transient(k) || k == -ECANCELED || k == -ENOKEY; /* locked: after 'roam unlock' */
        exec_sql(h,
                 "UPDATE hoards SET attempts = attempts + 1, last_error = ?, state = ?, wire_bytes = wire_bytes + ?, "
                 "updated = ? WHERE id = ?",
                 "ttiii", msg, transient ? "active" : "failed", (int64_t) run.wire, (int64_t) time(NULL), j->id);
        daemon_log(h->daemon, transient ? DAEMON_LOG_INFO : DAEMON_LOG_WARNING, "hoard %s from %s: %s (%s)", j->ref,
                   j->url, msg,
                   transient ? "will retry" : "giving up");
        return transient ? 1 : k;
}

static void hoard_worker(DaemonWorker *w, void *userdata) {
        Hoard *h = userdata;
        double backoff = 1;
        for (;;) {
                Job j;
                int k = next_job(h, &j);
                double wait = 30;
                if (k > 0) {
                        pthread_mutex_lock(&h->lock);
                        h->running_id = j.id;
                        h->cancel_id = 0;
                        pthread_mutex_unlock(&h->lock);
                        k = run_job(h, &j);
                        pthread_mutex_lock(&h->lock);
                        h->running_id = 0;
                        pthread_mutex_unlock(&h->lock);
                        job_done(&j);
                        if (k > 0) {
                                wait = backoff;
                                backoff = MIN(backoff * 2, h->o.retry_max_s);
                        } else {
                                wait = 0;
                                backoff = 1;
                        }
                }
                if (!daemon_worker_sleep(w, wait))
                        return;
        }
}

static bool may_hoard(const HttpRequest *req) {
        const Auth *a = auth_of(req);
        return !a || a->role == CATALOG_ROLE_ADMIN || a->role == CATALOG_ROLE_HOST;
}

static int route_create(HttpRequest *req, void *userdata) {
        Hoard *h = userdata;
        if (!may_hoard(req))
                return http_reply_error(req, 403, "only admin and host tokens may start hoards");
        size_t len;
        const void *body = http_request_body(req, &len);
        json_error_t e;
        json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
        const char *url = json_string_value(json_object_get(j, "url"));
        const char *ref = json_string_value(json_object_get(j, "ref"));
        const char *token = json_string_value(json_object_get(j, "token"));
        json_t *lr = json_object_get(j, "limit_rate");
        int r;
        if (!json_is_object(j) || !url || !ref || !token || (lr && !json_is_integer(lr)) ||
            (lr && json_integer_value(lr) < 0))
                r = http_reply_error(req, 400, "expected {\"url\", \"ref\", \"token\", \"limit_rate\"?}");
        else if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
                r = http_reply_error(req, 400, "url '%s' is not http(s)://HOST:PORT", url);
        else if (!ref_name_is_valid(ref))
                r = http_reply_error(req, 400, "ref name '%s' is invalid", ref);
        else {
                int64_t now = time(NULL);
                /* a finished or failed job of the same url and ref starts over */
                int k = exec_sql(h,
                                 "INSERT INTO hoards (url, ref, token, limit_rate, state, created, updated) "
                                 "VALUES (?, ?, ?, ?, 'active', ?, ?) ON CONFLICT (url, ref) DO UPDATE SET "
                                 "token = excluded.token, limit_rate = excluded.limit_rate, state = 'active', "
                                 "attempts = 0, last_error = NULL, updated = excluded.updated",
                                 "tttiii", url, ref, token, (int64_t) (lr ? json_integer_value(lr) : 0), now, now);
                if (k < 0)
                        r = http_reply_error(req, 500, "cannot record the hoard");
                else {
                        daemon_worker_wake(h->worker);
                        r = http_reply_json(req, 201, json_pack("{s:s, s:s}", "url", url, "ref", ref));
                }
        }
        json_decref(j);
        return r;
}

static int route_list(HttpRequest *req, void *userdata) {
        Hoard *h = userdata;
        if (!may_hoard(req))
                return http_reply_error(req, 403, "only admin and host tokens may list hoards");
        sqlite3 *db = catalog_sqlite(cat(h));
        sqlite3_stmt *st;
        json_t *list = json_array();
        catalog_lock(cat(h));
        if (sqlite3_prepare_v2(db,
                               "SELECT id, url, ref, state, chunks_done, chunks_total, wire_bytes, attempts, "
                               "last_error, limit_rate FROM hoards ORDER BY id",
                               -1, &st, NULL) == SQLITE_OK) {
                while (sqlite3_step(st) == SQLITE_ROW) {
                        const char *err = (const char *) sqlite3_column_text(st, 8);
                        json_array_append_new(
                                list, json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:I}", "id",
                                                (json_int_t) sqlite3_column_int64(st, 0), "url",
                                                (const char *) sqlite3_column_text(st, 1), "ref",
                                                (const char *) sqlite3_column_text(st, 2), "state",
                                                (const char *) sqlite3_column_text(st, 3), "chunks_done",
                                                (json_int_t) sqlite3_column_int64(st, 4), "chunks_total",
                                                (json_int_t) sqlite3_column_int64(st, 5), "wire_bytes",
                                                (json_int_t) sqlite3_column_int64(st, 6), "attempts",
                                                (json_int_t) sqlite3_column_int64(st, 7), "last_error",
                                                err ? json_string(err) : json_null(), "limit_rate",
                                                (json_int_t) sqlite3_column_int64(st, 9)));
                }
                sqlite3_finalize(st);
        }
        catalog_unlock(cat(h));
        return http_reply_json(req, 200, json_pack("{s:o}", "hoards", list));
}

static int route_delete(HttpRequest *req, void *userdata) {
        Hoard *h = userdata;
        if (!may_hoard(req))
                return http_reply_error(req, 403, "only admin and host tokens may remove hoards");
        uint64_t id;
        if (parse_u64(http_request_rest(req), &id) < 0 || id > INT64_MAX)
                return http_reply_error(req, 404, "no hoard '%s'", http_request_rest(req));
        pthread_mutex_lock(&h->lock);
        if (h->running_id == (int64_t) id)
                h->cancel_id = (int64_t) id;
        pthread_mutex_unlock(&h->lock);
        int k = exec_sql(h, "DELETE FROM hoards WHERE id = ?", "i", (int64_t) id);
        if (k == 0)
                return http_reply_error(req, 404, "no hoard %llu (see 'roam status')", (unsigned long long) id);
        if (k < 0)
                return http_reply_error(req, 500, "cannot remove the hoard");
        return http_reply_json(req, 200, json_pack("{s:I}", "removed", (json_int_t) id));
}

static const HttpRoute routes[] = {
        { "POST", "/v1/hoards", 64 * 1024, route_create },
        { "GET", "/v1/hoards", 0, route_list },
        { "DELETE", "/v1/hoards/*", 0, route_delete },
};

int hoard_ensure(Hoard *h, const char *url, const char *ref, const char *token) {
        int64_t now = time(NULL);
        int k = exec_sql(h,
                         "INSERT INTO hoards (url, ref, token, state, created, updated) VALUES (?, ?, ?, 'active', ?, ?) "
                         "ON CONFLICT (url, ref) DO UPDATE SET token = excluded.token, state = 'active', "
                         "updated = excluded.updated WHERE state = 'failed'",
                         "tttii", url, ref, token, now, now);
        if (k > 0)
                daemon_worker_wake(h->worker);
        return k < 0 ? k : 0;
}

int hoard_register(Daemon *d, const HoardOptions *o, Hoard **ret) {
        Hoard *h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->daemon = d;
        if (o)
                h->o = *o;
        if (h->o.retry_max_s <= 0)
                h->o.retry_max_s = 30;
        pthread_mutex_init(&h->lock, NULL);
        registered = h; /* lives as long as the daemon process */
        int r = daemon_add_routes(d, routes, ELEMENTSOF(routes), h);
        if (r >= 0)
                r = daemon_add_worker(d, "hoard", hoard_worker, h, &h->worker);
        if (r >= 0 && ret)
                *ret = h;
        return r;
}
