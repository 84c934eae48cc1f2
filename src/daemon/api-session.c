/* SPDX-License-Identifier: MIT */
#include "api-session.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../session/move.h"
#include "auth.h"

static json_t *session_json(const SessionInfo *i) {
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:o, s:I, s:I, s:I}", "name", i->row.name, "user",
                         i->row.user, "image", i->row.image, "state", session_state_to_string(i->row.state), "owner",
                         i->row.owner, "epoch", (json_int_t) i->row.epoch, "last_checkpoint",
                         i->row.last_checkpoint ? json_string(i->row.last_checkpoint) : json_null(), "checkpoints",
                         (json_int_t) i->row.checkpoints, "ram_mib", (json_int_t) i->config.ram_mib, "updated",
                         (json_int_t) i->row.updated);
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
        SessionHost *h = userdata;
        SessionInfo *list = NULL;
        size_t n = 0;
        int r = session_list(h, &list, &n);
        if (r < 0)
                return http_reply_errno(req, r);
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
                if (may_see(req, &list[i]))
                        json_array_append_new(arr, session_json(&list[i]));
        session_info_list_free(list, n);
        return http_reply_json(req, 200, json_pack("{s:o}", "sessions", arr));
}

static int move_in(HttpRequest *req, SessionHost *h, const char *name) {
        if (!is_admin_or_host(req))
                return http_reply_error(req, 403, "only admin and host tokens may move sessions in");
        size_t len;
        const void *body = http_request_body(req, &len);
        json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        const char *ck = json_string_value(json_object_get(j, "checkpoint"));
        json_t *ep = json_object_get(j, "epoch");
        RoamId id;
        int r;
        if (!json_is_object(j) || !ck || id_from_hex(ck, &id) < 0 || !json_is_integer(ep) ||
            json_integer_value(ep) < 1)
                r = http_reply_error(req, 400, "expected {\"checkpoint\": HEX, \"epoch\": N >= 1}");
        else {
                SessionRestoreResult res;
                err_clear();
                r = session_move_in(h, name, ck, (int64_t) json_integer_value(ep), &res);
                if (r == -ESTALE || r == -EBUSY)
                        r = http_reply_error(req, 409, "%s", err_message(r));
                else if (r < 0)
                        r = http_reply_error(req, r == -ENOENT ? 412 : 500, "%s", err_message(r));
                else
                        r = http_reply_json(req, 200,
                                            json_pack("{s:s, s:s, s:I, s:I}", "name", name, "state", "running",
                                                      "epoch", (json_int_t) json_integer_value(ep), "restore_ns",
                                                      (json_int_t) res.total_ns));
        }
        json_decref(j);
        return r;
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
        SessionHost *h = userdata;
        char name[NAME_MAX_LEN + 1];
        const char *action;
        if (split(http_request_rest(req), name, &action) < 0 || *action)
                return http_reply_error(req, 404, "unknown route");
        SessionInfo i = { 0 };
        int r = session_get(h, name, &i);
        if (r == -ENOENT || (r >= 0 && !may_see(req, &i))) {
                session_info_done(&i);
                return http_reply_error(req, 404, "session '%s' not found", name);
        }
        if (r < 0)
                return http_reply_errno(req, r);
        r = http_reply_json(req, 200, session_json(&i));
        session_info_done(&i);
        return r;
}

static int route_post(HttpRequest *req, void *userdata) {
        SessionHost *h = userdata;
        char name[NAME_MAX_LEN + 1];
        const char *action;
        if (split(http_request_rest(req), name, &action) < 0)
                return http_reply_error(req, 404, "unknown route");
        if (!strcmp(action, "move-in"))
                return move_in(req, h, name);
        return http_reply_error(req, 404, "unknown session action '%s'", action);
}

static const HttpRoute routes[] = {
        { "GET", "/v1/sessions", 0, route_list },
        { "GET", "/v1/sessions/*", 0, route_get },
        { "POST", "/v1/sessions/*", 64 * 1024, route_post },
};

int api_session_register(Daemon *d, SessionHost *h) {
        return daemon_add_routes(d, routes, ELEMENTSOF(routes), h);
}
