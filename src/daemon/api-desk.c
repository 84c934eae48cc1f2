/* SPDX-License-Identifier: MIT */
/* The desks' HTTP API (docs/desk.md):
 *
 *   GET  /v1/desks                 the desks the token may see (users: their own)
 *   GET  /v1/desks/USER            one desk
 *   POST /v1/desks/USER/start      {"ts": TS}
 *   POST /v1/desks/USER/suspend
 *   POST /v1/desks/USER/resume     {"on": TS} (optional)
 *   POST /v1/desks/USER/logoff
 *   POST /v1/desks/USER/receive    {"id": CHECKPOINT, "on": TS (optional)}: take
 *                                  the desk pushed as desk-in/USER (another
 *                                  host's, a laptop's) and resume it
 *   POST /v1/desks/USER/lend       {"to": WHERE}: suspend it (when it runs) and
 *                                  mark it away at WHERE (a laptop takes it)
 *   POST /v1/desks/USER/unlend     {"id": CHECKPOINT}: the lend did not
 *                                  happen after all: suspended here again
 *
 * A user token sees and acts on its own desk only: another user's desk is
 * 404, the same answer as for no desk at all. Admin and host tokens see all.
 * Desk operations take minutes under TCG: one request waits for its end. */
#include "api-desk.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../desk/desk.h"

static bool may_see(const HttpRequest *req, const char *user) {
        const Auth *a = auth_of(req);
        return !a || a->role != CATALOG_ROLE_USER || (a->user && !strcmp(a->user, user));
}

static unsigned status_of(int r) {
        switch (-r) {
        case ENOENT:
                return 404;
        case EEXIST:
        case EREMOTE:
        case ESTALE:
        case EALREADY:
        case EBUSY:
        case ESRCH:
                return 409;
        case EINVAL:
        case EBADMSG:
                return 400;
        case EIO:
                return 422; /* the helper (CRIU) refused: its reason is in the message */
        default:
                return http_status_from_errno(r);
        }
}

static int route_list(HttpRequest *req, void *userdata) {
        SessionHost *h = userdata;
        DeskInfo *v = NULL;
        size_t n = 0;
        int r = desk_list(h, NULL, &v, &n);
        if (r < 0)
                return http_reply_errno(req, r);
        json_t *a = json_array();
        for (size_t i = 0; a && i < n; i++)
                if (may_see(req, v[i].user))
                        json_array_append_new(a, desk_info_json(&v[i]));
        free(v);
        return http_reply_json(req, 200, json_pack("{s:o}", "desks", a));
}

/* USER[/ACTION] */
static int split(const char *rest, char user[static NAME_MAX_LEN + 1], const char **action) {
        const char *slash = strchr(rest, '/');
        size_t n = slash ? (size_t) (slash - rest) : strlen(rest);
        if (n == 0 || n > NAME_MAX_LEN)
                return -EINVAL;
        memcpy(user, rest, n);
        user[n] = 0;
        if (!name_is_valid(user))
                return -EINVAL;
        *action = slash ? slash + 1 : "";
        return 0;
}

static int route_get(HttpRequest *req, void *userdata) {
        SessionHost *h = userdata;
        char user[NAME_MAX_LEN + 1];
        const char *action;
        if (split(http_request_rest(req), user, &action) < 0 || *action)
                return http_reply_error(req, 404, "unknown route");
        if (!may_see(req, user))
                return http_reply_error(req, 404, "no desk of '%s'", user);
        DeskInfo i;
        err_clear();
        int r = desk_get(h, user, &i);
        if (r < 0)
                return http_reply_error(req, status_of(r), "%s", err_message(r));
        return http_reply_json(req, 200, desk_info_json(&i));
}

/* A member of the request's JSON body, or NULL (no body, not JSON, absent). */
static char *body_string(HttpRequest *req, const char *key) {
        size_t len;
        const char *body = http_request_body(req, &len);
        if (!body || !len)
                return NULL;
        json_t *j = json_loadb(body, len, 0, NULL);
        const char *v = json_string_value(json_object_get(j, key));
        char *s = v ? strdup(v) : NULL;
        json_decref(j);
        return s;
}

static int route_post(HttpRequest *req, void *userdata) {
        SessionHost *h = userdata;
        char user[NAME_MAX_LEN + 1];
        const char *action;
        if (split(http_request_rest(req), user, &action) < 0)
                return http_reply_error(req, 404, "unknown route");
        if (!may_see(req, user))
                return http_reply_error(req, 404, "no desk of '%s'", user);
        err_clear();
        int r;
        if (!strcmp(action, "start")) {
                _cleanup_free_ char *ts = body_string(req, "ts");
                if (!ts)
                        return http_reply_error(req, 400, "start needs {\"ts\": TS}");
                DeskInfo i;
                r = desk_start(h, ts, user, &i);
                if (r >= 0)
                        return http_reply_json(req, 200, desk_info_json(&i));
        } else if (!strcmp(action, "suspend")) {
                DeskMoveStats st;
                r = desk_suspend(h, user, &st);
                if (r >= 0)
                        return http_reply_json(req, 200,
                                               json_pack("{s:s, s:I, s:I, s:I}", "user", user, "bytes",
                                                         (json_int_t) st.bytes, "new_chunks",
                                                         (json_int_t) st.new_chunks, "total_ms",
                                                         (json_int_t) st.total_ms));
        } else if (!strcmp(action, "resume")) {
                _cleanup_free_ char *on = body_string(req, "on");
                DeskMoveStats st;
                r = desk_resume(h, user, on, &st);
                if (r >= 0)
                        return http_reply_json(req, 200,
                                               json_pack("{s:s, s:I, s:I, s:I}", "user", user, "bytes",
                                                         (json_int_t) st.bytes, "pid", (json_int_t) st.pid,
                                                         "total_ms", (json_int_t) st.total_ms));
        } else if (!strcmp(action, "receive") || !strcmp(action, "unlend")) {
                _cleanup_free_ char *id = body_string(req, "id");
                RoamId ck;
                if (!id || id_from_hex(id, &ck) < 0 || id_is_null(&ck))
                        return http_reply_error(req, 400, "%s needs {\"id\": CHECKPOINT} (64 hex digits)", action);
                const Auth *au = auth_of(req);
                if (!strcmp(action, "receive") && au && au->role == CATALOG_ROLE_USER)
                        return http_reply_error(req, 403,
                                                "a desk comes here only from a host or admin token: its checkpoint "
                                                "is restored by root in a terminal server other users share");
                if (!strcmp(action, "unlend")) {
                        r = desk_unlend(h, user, &ck);
                        if (r >= 0)
                                return http_reply_json(req, 200, json_pack("{s:s, s:s}", "user", user, "state",
                                                                           "suspended"));
                } else {
                        _cleanup_free_ char *on = body_string(req, "on");
                        DeskMoveStats st = {};
                        char ts[NAME_MAX_LEN + 1] = "";
                        r = desk_receive(h, user, &ck, on, &st, ts);
                        if (r >= 0) {
                                /* taken: 200 whether or not it resumed (the sender must not take it back) */
                                json_t *j = json_pack("{s:s, s:b, s:I, s:I}", "user", user, "resumed", r == 0, "pid",
                                                      (json_int_t) st.pid, "resume_ms", (json_int_t) st.total_ms);
                                if (j && *ts)
                                        json_object_set_new(j, "ts", json_string(ts));
                                if (j && r == 1)
                                        json_object_set_new(j, "error", json_string(err_message(-EIO)));
                                return http_reply_json(req, 200, j);
                        }
                }
        } else if (!strcmp(action, "lend")) {
                _cleanup_free_ char *to = body_string(req, "to");
                const Auth *a = auth_of(req);
                char dflt[NAME_MAX_LEN + 32];
                snprintf(dflt, sizeof dflt, "a laptop of %s", a && a->user ? a->user : "an admin");
                RoamId ck;
                DeskMoveStats st = {};
                bool suspended = false;
                r = desk_lend(h, user, to ? to : dflt, &ck, &st, &suspended);
                if (r >= 0) {
                        char hex[ID_HEX_SIZE];
                        return http_reply_json(req, 200,
                                               json_pack("{s:s, s:s, s:b, s:I, s:I}", "user", user, "id",
                                                         id_to_hex(&ck, hex), "suspended", suspended, "bytes",
                                                         (json_int_t) st.bytes, "suspend_ms",
                                                         (json_int_t) st.total_ms));
                }
        } else if (!strcmp(action, "logoff")) {
                r = desk_logoff(h, user);
                if (r >= 0)
                        return http_reply_json(req, 200, json_pack("{s:s}", "user", user));
        } else
                return http_reply_error(req, 404, "unknown desk action '%s'", action);
        return http_reply_error(req, status_of(r), "%s", err_message(r));
}

static const HttpRoute routes[] = {
        { "GET", "/v1/desks", 0, route_list },
        { "GET", "/v1/desks/*", 0, route_get },
        { "POST", "/v1/desks/*", 4096, route_post },
};

int api_desk_register(Daemon *d, SessionHost *h) {
        return daemon_add_routes(d, routes, ELEMENTSOF(routes), h);
}
