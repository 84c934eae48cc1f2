/* SPDX-License-Identifier: MIT */
#include "api-gc.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <string.h>

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../store/fsck.h"
#include "auth.h"

#define GC_BODY_MAX 4096u

static pthread_mutex_t gc_running = PTHREAD_MUTEX_INITIALIZER;

static int body_uint(json_t *j, const char *key, unsigned max, unsigned dflt, unsigned *ret) {
        json_t *v = json_object_get(j, key);
        if (!v || json_is_null(v)) {
                *ret = dflt;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (json_int_t) max)
                return err_set(-EBADMSG, "gc: \"%s\" must be a number of seconds from 0 to %u", key, max);
        *ret = (unsigned) json_integer_value(v);
        return 0;
}

/* The gc itself, with this daemon's writers out (the write gate) and the
 * store lock exclusive: nobody writes, as for 'roam store gc' without a
 * daemon. Waits at most wait_ms for both. */
static int gc_handed_over(Daemon *d, const GcOptions *o, unsigned wait_ms, GcReport *ret, uint64_t *ret_wait_ms) {
        Store *s = daemon_store(d);
        uint64_t t0 = now_ns();
        int r = store_write_exclude(s, wait_ms);
        if (r < 0)
                return r;
        /* chunks a failed request left pending would be published later from
         * temp files that the sweep takes for stray: publish them now */
        r = api_store_commit(daemon_api_store(d));
        uint64_t spent = (now_ns() - t0) / 1000000;
        if (r >= 0)
                r = store_lock_within(s, true, spent < wait_ms ? wait_ms - (unsigned) spent : 0);
        *ret_wait_ms = (now_ns() - t0) / 1000000;
        if (r >= 0)
                r = store_gc(s, o, ret);
        uint64_t more = 0; /* the rest of the home, as the CLI's gc does */
        if (r >= 0)
                r = store_stray_tmp(s, daemon_home(d), STORE_TMP_MIN_AGE_S, true, &more, NULL);
        if (r >= 0)
                ret->tmp_removed += more;
        /* back to shared (also after a failed hand-over, which released it):
         * this waits while another process's gc holds it; our writers stay
         * out until it is ours again */
        int k = store_lock(s, false, false);
        if (k < 0)
                daemon_log(d, DAEMON_LOG_ERROR, "gc: cannot take the store lock back: %s", err_message(k));
        store_write_allow(s);
        return r;
}

static int h_store_gc(HttpRequest *req, void *userdata) {
        Daemon *d = userdata;
        const Auth *au = auth_of(req);
        if (au && au->role != CATALOG_ROLE_ADMIN)
                return http_reply_error(req, 403, "only an admin token may run gc (the daemon's local token is one)");
        size_t len;
        const char *body = http_request_body(req, &len);
        json_error_t e;
        _cleanup_(json_decrefp) json_t *j = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &e) : json_object();
        if (!j || !json_is_object(j))
                return http_reply_error(req, 400, "gc request must be a JSON object {\"grace_s\": N, \"wait_s\": N}");
        GcOptions o = { 0 };
        unsigned wait_s;
        int r = body_uint(j, "grace_s", STORE_GC_GRACE_MAX_S, STORE_GC_GRACE_DEFAULT_S, &o.grace_s);
        if (r >= 0)
                r = body_uint(j, "wait_s", API_GC_WAIT_MAX_S, API_GC_WAIT_DEFAULT_S, &wait_s);
        if (r < 0)
                return http_reply_error(req, 400, "%s", err_message(r));
        if (pthread_mutex_trylock(&gc_running) != 0)
                return http_reply_error(req, 503, "a gc of store '%s' is running already; try again when it is done",
                                        store_path(daemon_store(d)));
        daemon_log(d, DAEMON_LOG_INFO, "gc: started (grace %u s)", o.grace_s);
        uint64_t t0 = now_ns(), waited = 0;
        GcReport g = { 0 };
        r = gc_handed_over(d, &o, wait_s * 1000u, &g, &waited);
        pthread_mutex_unlock(&gc_running);
        uint64_t took = (now_ns() - t0) / 1000000;
        if (r < 0) {
                daemon_log(d, DAEMON_LOG_ERROR, "gc: %s", err_message(r));
                return http_reply_errno(req, r);
        }
        daemon_log(d, DAEMON_LOG_INFO,
                   "gc: removed %llu chunks (%llu bytes), %llu objects, %llu temp files; kept %llu chunks, %llu "
                   "objects younger than %u s; waited %llu ms, %llu ms in all",
                   (unsigned long long) g.chunks_removed, (unsigned long long) g.bytes_removed,
                   (unsigned long long) g.objects_removed, (unsigned long long) g.tmp_removed,
                   (unsigned long long) g.chunks_young, (unsigned long long) g.objects_young, o.grace_s,
                   (unsigned long long) waited, (unsigned long long) took);
        return http_reply_json(req, 200,
                               json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "chunks_removed",
                                         (json_int_t) g.chunks_removed, "bytes_removed", (json_int_t) g.bytes_removed,
                                         "objects_removed", (json_int_t) g.objects_removed, "tmp_removed",
                                         (json_int_t) g.tmp_removed, "chunks_young", (json_int_t) g.chunks_young,
                                         "objects_young", (json_int_t) g.objects_young, "wait_ms",
                                         (json_int_t) waited, "gc_ms", (json_int_t) (took - waited)));
}

static const HttpRoute routes[] = {
        { "POST", "/v1/store/gc", GC_BODY_MAX, h_store_gc },
};

int api_gc_register(Daemon *d) {
        return daemon_add_routes(d, routes, ELEMENTSOF(routes), d);
}
