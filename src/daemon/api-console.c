/* SPDX-License-Identifier: MIT */
#include "api-console.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/relay.h"
#include "../basic/util.h"
#include "../desk/desk.h"
#include "../http/websocket.h"
#include "../session/handoff.h"
#include "../session/move.h"
#include "../store/index.h"
#include "../guest/image.h"
#include "api-store.h"
#include "../sync/remote.h"
#include "api-session.h"
#include "auth.h"
#include "laptop-registry.h"

#define STATIC_FILE_MAX ((size_t) 8 << 20)
#define STATIC_PATH_MAX 200
#define EVENT_CHECK_MS 1000
#define EVENT_KEEPALIVE_S 10
#define DESKTOP_TOKEN_CHECK_MS 1000 /* a revoked token closes its desktop within this (and a poll) */
#define MOVE_URL_MAX 512
#define MOVE_TOKEN_MAX 512

typedef struct Console {
        Daemon *d;
        SessionHost *h;
        char web[PATH_MAX];   /* "" when not found */
        char novnc[PATH_MAX]; /* "" when not installed */
} Console;

/* ---- finding the files ---- */

static bool has_index(const char *dir) {
        char p[PATH_MAX];
        struct stat st;
        return snprintf(p, sizeof p, "%s/index.html", dir) < (int) sizeof p && stat(p, &st) == 0 &&
               S_ISREG(st.st_mode);
}

static void find_web_dir(Console *c) {
        char exe[PATH_MAX], cand[PATH_MAX];
        const char *env = getenv("ROAM_WEB_DIR");
        c->web[0] = c->novnc[0] = 0;
        if (env && *env) {
                if (has_index(env))
                        snprintf(c->web, sizeof c->web, "%s", env);
        } else {
                ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
                char *slash;
                if (n > 0) {
                        exe[n] = 0;
                        slash = strrchr(exe, '/');
                        if (slash)
                                *slash = 0;
                }
                const char *rel[] = { "/../web", "/../share/roam/web" };
                for (size_t i = 0; n > 0 && i < ELEMENTSOF(rel) && !c->web[0]; i++)
                        if (snprintf(cand, sizeof cand, "%s%s", exe, rel[i]) < (int) sizeof cand &&
                            has_index(cand) && realpath(cand, c->web) == NULL)
                                c->web[0] = 0;
                if (!c->web[0] && has_index("/usr/share/roam/web"))
                        snprintf(c->web, sizeof c->web, "/usr/share/roam/web");
        }
        if (!c->web[0])
                return;
        struct stat st;
        if (snprintf(cand, sizeof cand, "%s/node_modules/@novnc/novnc/core/rfb.js", c->web) < (int) sizeof cand &&
            stat(cand, &st) == 0)
                snprintf(c->novnc, sizeof c->novnc, "%s/node_modules/@novnc/novnc", c->web);
}

/* ---- static files ---- */

static const char *content_type(const char *path) {
        static const struct {
                const char *ext, *type;
        } types[] = {
                { ".html", "text/html; charset=utf-8" }, { ".js", "text/javascript; charset=utf-8" },
                { ".css", "text/css; charset=utf-8" },   { ".json", "application/json" },
                { ".svg", "image/svg+xml" },             { ".png", "image/png" },
                { ".ico", "image/x-icon" },              { ".txt", "text/plain; charset=utf-8" },
        };
        const char *dot = strrchr(path, '.');
        for (size_t i = 0; dot && i < ELEMENTSOF(types); i++)
                if (!strcmp(dot, types[i].ext))
                        return types[i].type;
        return "application/octet-stream";
}

/* A relative path of segments [A-Za-z0-9._-], none starting with '.'. */
static bool safe_rel_path(const char *p) {
        size_t n = strlen(p);
        if (n == 0 || n > STATIC_PATH_MAX)
                return false;
        bool seg_start = true;
        for (const char *s = p; *s; s++) {
                char ch = *s;
                if (ch == '/') {
                        if (seg_start)
                                return false; /* empty segment or leading '/' */
                        seg_start = true;
                        continue;
                }
                if (seg_start && ch == '.')
                        return false;
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                      ch == '.' || ch == '_' || ch == '-'))
                        return false;
                seg_start = false;
        }
        return !seg_start;
}

static int send_file(HttpRequest *req, const char *dir, const char *rel) {
        char path[PATH_MAX];
        if (!dir[0] || !safe_rel_path(rel) || snprintf(path, sizeof path, "%s/%s", dir, rel) >= (int) sizeof path)
                return http_reply_error(req, 404, "no such file '%s'", http_request_path(req));
        struct stat st;
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
                return http_reply_error(req, 404, "no such file '%s'", http_request_path(req));
        char *data = NULL;
        size_t len = 0;
        int r = read_full_file(path, STATIC_FILE_MAX, &data, &len);
        if (r < 0)
                return http_reply_error(req, 500, "cannot read '%s': %s", path, strerror(-r));
        return http_reply_buffer(req, 200, content_type(path), data, len);
}

static int route_index(HttpRequest *req, void *userdata) {
        Console *c = userdata;
        if (!c->web[0])
                return http_reply_error(req, 404,
                                        "the web console's files are not installed (set ROAM_WEB_DIR to the "
                                        "directory that holds index.html)");
        return send_file(req, c->web, "index.html");
}

static int route_static(HttpRequest *req, void *userdata) {
        Console *c = userdata;
        const char *rel = http_request_rest(req);
        if (strchr(rel, '/')) /* the console's own files are flat */
                return http_reply_error(req, 404, "no such file '%s'", http_request_path(req));
        return send_file(req, c->web, rel);
}

static int route_novnc(HttpRequest *req, void *userdata) {
        Console *c = userdata;
        const char *rel = http_request_rest(req);
        if (!c->novnc[0])
                return http_reply_error(req, 404, "noVNC is not installed (run scripts/web-deps.sh)");
        /* "/novnc/rN/..." is "/novnc/...": the console's second and third
         * try to load noVNC (web/app.js) under other URLs, because a browser
         * keeps a module that failed to load as failed for its URL */
        if (rel[0] == 'r' && rel[1] >= '1' && rel[1] <= '9' && rel[2] == '/')
                rel += 3;
        /* only the library: its ES modules and the vendored inflate code */
        if (strncmp(rel, "core/", 5) && strncmp(rel, "vendor/", 7))
                return http_reply_error(req, 404, "no such file '%s'", http_request_path(req));
        return send_file(req, c->novnc, rel);
}

/* ---- who may do what ---- */

static bool is_admin_or_host(const HttpRequest *req) {
        const Auth *a = auth_of(req);
        return !a || a->role == CATALOG_ROLE_ADMIN || a->role == CATALOG_ROLE_HOST;
}

static bool auth_may_see(const Auth *a, const SessionInfo *i) {
        return !a || a->role != CATALOG_ROLE_USER || (a->user && !strcmp(a->user, i->row.user));
}

/* "NAME/ACTION" -> name, action. */
static int split(const char *rest, char name[static NAME_MAX_LEN + 1], const char **action) {
        const char *slash = strchr(rest, '/');
        size_t n = slash ? (size_t) (slash - rest) : strlen(rest);
        if (!slash || n == 0 || n > NAME_MAX_LEN)
                return -EINVAL;
        memcpy(name, rest, n);
        name[n] = 0;
        if (!name_is_valid(name))
                return -EINVAL;
        *action = slash + 1;
        return 0;
}

/* The session, if the token may see it: 0 with *ret filled, or an answer
 * already sent (404 for a session of another user, as for one that does not
 * exist) and 1. */
static int get_visible(HttpRequest *req, SessionHost *h, const char *name, SessionInfo *ret) {
        SessionInfo i = { 0 };
        int r = session_get(h, name, &i);
        if (r >= 0 && !auth_may_see(auth_of(req), &i))
                r = -ENOENT;
        if (r < 0) {
                session_info_done(&i);
                if (r == -ENOENT)
                        http_reply_error(req, 404, "session '%s' not found", name);
                else
                        http_reply_errno(req, r);
                return 1;
        }
        *ret = i;
        return 0;
}

/* For a stream that outlives its request (events, desktop): true once
 * token, checked at most every every_ms (*last: monotonic ns of the last
 * check), was revoked or expired. NULL token (no auth): never. */
static bool token_revoked(Catalog *catalog, const char *token, uint64_t *last, unsigned every_ms) {
        if (!token || now_ns() - *last < (uint64_t) every_ms * 1000000ull)
                return false;
        *last = now_ns();
        CatalogRole role;
        char *user = NULL;
        int r = catalog_token_check(catalog, token, &role, &user);
        free(user);
        return r == -EACCES;
}

static json_t *session_json(Console *c, const SessionInfo *i) {
        bool here = !strcmp(i->row.owner, SESSION_OWNER_LOCAL);
        bool live = here && (i->row.state == SESSION_RUNNING || i->row.state == SESSION_PAUSED);
        json_t *j = session_api_json(daemon_catalog(c->d), i);
        if (j)
                json_object_set_new(j, "desktop", json_boolean(live && i->vnc));
        return j;
}

/* ---- actions ---- */

static json_t *state_after(SessionHost *h, const char *name) {
        SessionInfo i = { 0 };
        json_t *j = session_get(h, name, &i) >= 0 ? json_string(session_state_to_string(i.row.state)) : json_null();
        session_info_done(&i);
        return j;
}

static int do_move(HttpRequest *req, Console *c, const char *name, json_t **ret) {
        size_t len;
        const void *body = http_request_body(req, &len);
        json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        const char *url = json_string_value(json_object_get(j, "url"));
        const char *token = json_string_value(json_object_get(j, "token"));
        if (!json_is_object(j) || !url || !token || strlen(url) > MOVE_URL_MAX || strlen(token) > MOVE_TOKEN_MAX ||
            (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))) {
                json_decref(j);
                return err_set(-EINVAL, "expected {\"url\": \"http(s)://HOST:PORT\", \"token\": TOKEN}");
        }
        Remote *remote = NULL;
        RemoteOptions ro = { 0 };
        int r = remote_new(url, token, &ro, &remote);
        json_decref(j);
        if (r < 0)
                return r;
        SessionMoveOptions mo = { 0 };
        SessionMoveResult res;
        r = session_move(c->h, name, remote, &mo, &res);
        if (r >= 0) {
                char hex[ID_HEX_SIZE];
                *ret = json_pack("{s:s, s:I, s:s, s:I, s:I}", "owner", remote_url(remote), "epoch",
                                 (json_int_t) res.epoch, "checkpoint", id_to_hex(&res.checkpoint, hex), "downtime_ms",
                                 (json_int_t) (res.downtime_ns / 1000000), "total_ms",
                                 (json_int_t) (res.total_ns / 1000000));
        }
        remote_free(remote);
        return r;
}

static int route_action(HttpRequest *req, void *userdata) {
        Console *c = userdata;
        char name[NAME_MAX_LEN + 1];
        const char *action;
        if (split(http_request_rest(req), name, &action) < 0)
                return http_reply_error(req, 404, "unknown route '%s'", http_request_path(req));
        static const char *const known[] = { "start", "stop", "pause", "resume", "checkpoint", "reclaim", "move" };
        bool ok = false;
        for (size_t k = 0; k < ELEMENTSOF(known); k++)
                ok = ok || !strcmp(action, known[k]);
        if (!ok)
                return http_reply_error(req, 404,
                                        "unknown session action '%s' (start, stop, pause, resume, checkpoint, "
                                        "reclaim, move)",
                                        action);
        SessionInfo i;
        if (get_visible(req, c->h, name, &i))
                return 0;
        session_info_done(&i);
        bool privileged = !strcmp(action, "reclaim") || !strcmp(action, "move");
        if (privileged && !is_admin_or_host(req))
                return http_reply_error(req, 403, "only an admin may %s session '%s'", action, name);

        json_t *detail = NULL;
        int r;
        uint64_t t0 = now_ns();
        err_clear();
        if (!strcmp(action, "start"))
                r = session_start(c->h, name);
        else if (!strcmp(action, "stop")) {
                bool forced = false;
                r = session_stop(c->h, name, SESSION_STOP_TIMEOUT_S_DEFAULT, &forced);
                if (r >= 0)
                        detail = json_pack("{s:b}", "forced", forced);
        } else if (!strcmp(action, "pause"))
                r = session_pause(c->h, name);
        else if (!strcmp(action, "resume"))
                r = session_resume(c->h, name);
        else if (!strcmp(action, "checkpoint")) {
                SessionCheckpointResult res;
                r = session_checkpoint(c->h, name, 0, &res);
                if (r >= 0) {
                        char hex[ID_HEX_SIZE];
                        detail = json_pack("{s:s, s:I, s:b, s:I, s:I}", "checkpoint", id_to_hex(&res.id, hex), "seq",
                                           (json_int_t) res.seq, "powered_off", res.powered_off, "pause_ms",
                                           (json_int_t) (res.pause_ns / 1000000), "new_bytes",
                                           (json_int_t) res.new_bytes);
                }
        } else if (!strcmp(action, "reclaim")) {
                ReclaimResult res = { 0 };
                r = laptop_reclaim(daemon_catalog(c->d), c->h, name, &res);
                if (r >= 0) {
                        char hex[ID_HEX_SIZE];
                        detail = json_pack("{s:s, s:I, s:s?, s:I}", "checkpoint", id_to_hex(&res.checkpoint, hex),
                                           "epoch", (json_int_t) res.epoch, "lost_owner", res.lost_owner,
                                           "checkpoint_age_s", (json_int_t) res.checkpoint_age);
                }
                free(res.lost_owner);
        } else
                r = do_move(req, c, name, &detail);
        if (r < 0) {
                unsigned status = r == -EBUSY || r == -EREMOTE || r == -ESTALE ? 409 : http_status_from_errno(r);
                daemon_log(c->d, DAEMON_LOG_WARNING, "console: %s of session '%s' failed: %s", action, name,
                           err_message(r));
                return http_reply_error(req, status, "%s", err_message(r));
        }
        daemon_log(c->d, DAEMON_LOG_INFO, "console: %s of session '%s' done", action, name);
        json_t *j = json_pack("{s:s, s:s, s:o, s:I}", "session", name, "action", action, "state",
                              state_after(c->h, name), "ms", (json_int_t) ((now_ns() - t0) / 1000000));
        if (j && detail)
                json_object_update(j, detail);
        json_decref(detail);
        return http_reply_json(req, 200, j);
}

/* ---- images ---- */

typedef struct ImagesCtx {
        Store *store;
        const Auth *auth;
        json_t *arr;
} ImagesCtx;

static int image_cb(const char *name, const RoamId *id, void *userdata) {
        ImagesCtx *x = userdata;
        if (!id || auth_ref_access(x->auth, name) == AUTH_ACCESS_NONE)
                return 0;
        void *data = NULL;
        size_t len = 0;
        Index *ix = NULL;
        char hex[ID_HEX_SIZE];
        json_t *j = json_pack("{s:s, s:s}", "name", name + strlen("images/"), "id", id_to_hex(id, hex));
        /* an image with its boot files names a manifest: the size is its disk's */
        ImageInfo info = {};
        if (image_resolve(x->store, id, &info) >= 0) {
                json_object_set_new(j, "boots", json_boolean(info.boot));
                id = &info.disk;
        }
        err_clear();
        if (store_object_get(x->store, id, API_OBJECT_MAX, &data, &len) >= 0 && index_parse(data, len, &ix) >= 0) {
                json_object_set_new(j, "size", json_integer((json_int_t) ix->blob_size));
                json_object_set_new(j, "chunks", json_integer((json_int_t) ix->n_chunks));
        }
        index_free(ix);
        free(data);
        image_info_done(&info);
        return json_array_append_new(x->arr, j) < 0 ? -ENOMEM : 0;
}

static int route_images(HttpRequest *req, void *userdata) {
        Console *c = userdata;
        ImagesCtx x = { .store = daemon_store(c->d), .auth = auth_of(req), .arr = json_array() };
        int r = store_ref_foreach(x.store, "images/", image_cb, &x);
        if (r < 0) {
                json_decref(x.arr);
                return http_reply_errno(req, r);
        }
        return http_reply_json(req, 200, json_pack("{s:o}", "images", x.arr));
}

/* ---- server-sent events ---- */

typedef struct Events {
        Console *c;
        HttpServer *server;
        Auth auth; /* a copy: the request's is freed before the stream ends */
        bool restricted;
        char *token;      /* checked again while the stream lasts: a revoked token ends it */
        uint64_t last_token_check_ns;
        char *last;       /* the last "sessions" data sent */
        char *pending;    /* text not yet handed to the server */
        size_t pending_len, pending_off;
        uint64_t last_send_ns;
} Events;

static void events_free(void *p) {
        Events *e = p;
        free(e->auth.user);
        free(e->token);
        free(e->last);
        free(e->pending);
        free(e);
}

static char *sessions_text(Events *e) {
        SessionInfo *list = NULL;
        size_t n = 0;
        if (session_list(e->c->h, &list, &n) < 0)
                return NULL;
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
                if (auth_may_see(e->restricted ? &e->auth : NULL, &list[i]))
                        json_array_append_new(arr, session_json(e->c, &list[i]));
        session_info_list_free(list, n);
        json_t *j = json_pack("{s:o}", "sessions", arr);
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        return text;
}

static int queue_text(Events *e, const char *a, const char *b, const char *c) {
        size_t n = strlen(a) + strlen(b) + strlen(c);
        char *t = malloc(n + 1);
        if (!t)
                return -ENOMEM;
        snprintf(t, n + 1, "%s%s%s", a, b, c);
        free(e->pending);
        e->pending = t;
        e->pending_len = n;
        e->pending_off = 0;
        e->last_send_ns = now_ns();
        return 0;
}

static ssize_t events_read(void *userdata, uint64_t pos, void *buf, size_t max) {
        Events *e = userdata;
        while (!e->pending) {
                if (http_server_stopping(e->server))
                        return 0; /* the end of the stream; EventSource reconnects */
                /* revoked meanwhile: the stream ends, and the reconnect gets its 401 */
                /* (each round: EVENT_CHECK_MS) */
                if (token_revoked(daemon_catalog(e->c->d), e->token, &e->last_token_check_ns, 0))
                        return 0;
                char *text = sessions_text(e);
                if (text && (!e->last || strcmp(text, e->last))) {
                        int r = queue_text(e, pos == 0 ? "retry: 2000\nevent: sessions\ndata: " : "event: sessions\ndata: ",
                                           text, "\n\n");
                        free(e->last);
                        e->last = text;
                        if (r < 0)
                                return r;
                        break;
                }
                free(text);
                if (now_ns() - e->last_send_ns >= (uint64_t) EVENT_KEEPALIVE_S * 1000000000ull) {
                        if (queue_text(e, ": keep-alive\n\n", "", "") < 0)
                                return -ENOMEM;
                        break;
                }
                for (int k = 0; k < EVENT_CHECK_MS / 100 && !http_server_stopping(e->server); k++) {
                        struct timespec ts = { 0, 100 * 1000 * 1000 };
                        nanosleep(&ts, NULL);
                }
        }
        size_t n = MIN(max, e->pending_len - e->pending_off);
        memcpy(buf, e->pending + e->pending_off, n);
        e->pending_off += n;
        if (e->pending_off == e->pending_len) {
                free(e->pending);
                e->pending = NULL;
        }
        return (ssize_t) n;
}

static int route_events(HttpRequest *req, void *userdata) {
        Console *c = userdata;
        Events *e = calloc(1, sizeof *e);
        if (!e)
                return -ENOMEM;
        e->c = c;
        e->server = daemon_http(c->d);
        const Auth *a = auth_of(req);
        if (a) {
                e->restricted = true;
                e->auth.role = a->role;
                const char *token = http_request_bearer(req);
                if ((a->user && !(e->auth.user = strdup(a->user))) || (token && !(e->token = strdup(token)))) {
                        events_free(e);
                        return -ENOMEM;
                }
                e->last_token_check_ns = now_ns();
        }
        return http_reply_stream(req, 200, "text/event-stream", UINT64_MAX, events_read, e, events_free);
}

/* ---- the desktop: WebSocket <-> VNC ---- */

typedef struct Vnc {
        int fd;
        int lock; /* a desk's display port's lock (desk_vnc_open()), else -1 */
        bool raw; /* Upgrade: roam-vnc, the bytes as they are (roam session connect) */
        HttpServer *server;
        Catalog *catalog;
        char *token; /* checked again while the desktop is open: a revoked token closes it */
        uint64_t last_token_check_ns;
} Vnc;

static void vnc_free(void *p) {
        Vnc *v = p;
        if (v->fd >= 0)
                close(v->fd);
        if (v->lock >= 0)
                close(v->lock);
        free(v->token);
        free(v);
}

static bool vnc_stop(void *userdata) {
        Vnc *v = userdata;
        return http_server_stopping(v->server) ||
               token_revoked(v->catalog, v->token, &v->last_token_check_ns, DESKTOP_TOKEN_CHECK_MS);
}

static void vnc_bridge(HttpServer *s, int fd, const void *extra, size_t extra_len, void *userdata) {
        Vnc *v = userdata;
        v->server = s;
        if (v->raw) {
                RelayEnd client = { .fd = fd }, desktop = { .fd = v->fd };
                (void) relay_run(&client, &desktop, extra, extra_len, vnc_stop, v);
        } else
                (void) ws_bridge(fd, extra, extra_len, v->fd, vnc_stop, v);
}

/* A comma-separated header value that lists token (case-insensitive). */
static bool header_lists(const char *value, const char *token) {
        size_t n = strlen(token);
        for (const char *p = value; p && *p;) {
                while (*p == ' ' || *p == ',' || *p == '\t')
                        p++;
                const char *end = p + strcspn(p, ",");
                const char *e = end;
                while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
                        e--;
                if ((size_t) (e - p) == n && !strncasecmp(p, token, n))
                        return true;
                p = end;
        }
        return false;
}

/* A desktop route's request is an Upgrade roam can answer: 0 (then
 * vnc_upgrade()), or 1 after answering it with an error. */
static int vnc_check_upgrade(HttpRequest *req) {
        const char *upgrade = http_request_header(req, "Upgrade");
        const char *connection = http_request_header(req, "Connection");
        const char *version = http_request_header(req, "Sec-WebSocket-Version");
        const char *key = http_request_header(req, "Sec-WebSocket-Key");
        char accept[WS_ACCEPT_SIZE];
        bool raw = upgrade && header_lists(upgrade, VNC_RAW_PROTOCOL) && header_lists(connection, "upgrade");
        int k = 0;
        if (!raw && (!upgrade || !header_lists(upgrade, "websocket") || !header_lists(connection, "upgrade")))
                k = http_reply_error(req, 400,
                                     "this route is a WebSocket (open it with noVNC) or a raw byte stream "
                                     "(Upgrade: " VNC_RAW_PROTOCOL ", 'roam session connect')");
        else if (!raw && (!version || strcmp(version, "13")))
                k = http_reply_error(req, 400, "only WebSocket version 13 is supported");
        else if (!raw && ws_accept_key(key, accept) < 0)
                k = http_reply_error(req, 400, "malformed Sec-WebSocket-Key");
        else
                return 0;
        return k < 0 ? k : 1;
}

/* Answers a checked Upgrade with the bridge to fd (the desktop's RFB
 * stream; lock, when >= 0, goes with it). Takes fd and lock. */
static int vnc_upgrade(HttpRequest *req, Console *c, int fd, int lock, const char *what) {
        const char *upgrade = http_request_header(req, "Upgrade");
        const char *connection = http_request_header(req, "Connection");
        const char *key = http_request_header(req, "Sec-WebSocket-Key");
        char accept[WS_ACCEPT_SIZE] = "";
        bool raw = upgrade && header_lists(upgrade, VNC_RAW_PROTOCOL) && header_lists(connection, "upgrade");
        if (!raw)
                (void) ws_accept_key(key, accept); /* checked by vnc_check_upgrade() */
        Vnc *v = calloc(1, sizeof *v);
        const char *token = http_request_bearer(req);
        if (v && token)
                v->token = strdup(token);
        if (!v || (token && !v->token)) {
                free(v);
                close(fd);
                if (lock >= 0)
                        close(lock);
                return -ENOMEM;
        }
        v->fd = fd;
        v->lock = lock;
        v->raw = raw;
        v->catalog = daemon_catalog(c->d);
        v->last_token_check_ns = now_ns();
        const char *raw_headers[] = { "Upgrade", VNC_RAW_PROTOCOL, NULL };
        const char *protocols = http_request_header(req, "Sec-WebSocket-Protocol");
        const char *headers[] = { "Upgrade",
                                  "websocket",
                                  "Sec-WebSocket-Accept",
                                  accept,
                                  protocols && header_lists(protocols, "binary") ? "Sec-WebSocket-Protocol" : NULL,
                                  "binary",
                                  NULL };
        daemon_log(c->d, DAEMON_LOG_DEBUG, "console: desktop of %s opened%s", what, raw ? " (raw)" : "");
        return http_reply_upgrade(req, raw ? raw_headers : headers, vnc_bridge, v, vnc_free);
}

static int route_vnc(HttpRequest *req, void *userdata) {
        Console *c = userdata;
        char name[NAME_MAX_LEN + 1];
        const char *action;
        if (split(http_request_rest(req), name, &action) < 0 || strcmp(action, "vnc"))
                return http_reply_error(req, 404, "unknown route '%s'", http_request_path(req));
        SessionInfo i;
        if (get_visible(req, c->h, name, &i))
                return 0;
        bool live = !strcmp(i.row.owner, SESSION_OWNER_LOCAL) &&
                    (i.row.state == SESSION_RUNNING || i.row.state == SESSION_PAUSED) && i.vnc;
        _cleanup_free_ char *path = live ? strdup(i.vnc) : NULL;
        char state[32];
        snprintf(state, sizeof state, "%s", session_state_to_string(i.row.state));
        session_info_done(&i);
        if (!live)
                return http_reply_error(req, 409, "session '%s' has no desktop here (it is %s)", name, state);
        if (!path)
                return -ENOMEM;
        int r = vnc_check_upgrade(req);
        if (r != 0)
                return r < 0 ? r : 0;
        int fd = unix_connect(path);
        if (fd < 0)
                return http_reply_error(req, 503, "cannot reach the desktop of session '%s': %s", name,
                                        strerror(-fd));
        char what[NAME_MAX_LEN + 32];
        snprintf(what, sizeof what, "session '%s'", name);
        return vnc_upgrade(req, c, fd, -1, what);
}

/* /v1/console/desks/USER/vnc: a desk's display, through one of its terminal
 * server's display ports (desk_vnc_open()); a user token reaches its own
 * desk only (another's is 404, as one that does not exist). */
static int route_desk_vnc(HttpRequest *req, void *userdata) {
        Console *c = userdata;
        char user[NAME_MAX_LEN + 1];
        const char *action;
        if (split(http_request_rest(req), user, &action) < 0 || strcmp(action, "vnc"))
                return http_reply_error(req, 404, "unknown route '%s'", http_request_path(req));
        const Auth *a = auth_of(req);
        if (a && a->role == CATALOG_ROLE_USER && (!a->user || strcmp(a->user, user)))
                return http_reply_error(req, 404, "no desk of '%s'", user);
        int r = vnc_check_upgrade(req);
        if (r != 0)
                return r < 0 ? r : 0;
        DeskVnc dv;
        err_clear();
        r = desk_vnc_open(c->h, user, &dv);
        if (r < 0) {
                unsigned status = r == -ENOENT ? 404 : r == -EBUSY || r == -ESRCH || r == -EREMOTE ? 409 : 503;
                return http_reply_error(req, status, "%s", err_message(r));
        }
        char what[NAME_MAX_LEN + 32];
        snprintf(what, sizeof what, "the desk of '%s'", user);
        return vnc_upgrade(req, c, dv.fd, dv.lock, what);
}

/* ---- thumbnails ---- */

/* The console's session list shows each running session's screen: QEMU's
 * screendump (PNG), kept here for THUMB_MAX_AGE_S so that many browsers
 * asking every few seconds cost one screendump per session that often. The
 * browser scales it down. A screendump never waits for the session's lock,
 * and QEMU's QMP socket (one client at a time: a long operation may hold it)
 * is given THUMB_QMP_MS; past that the last picture is served, or 503. */
#define THUMB_MAX_AGE_S 10
#define THUMB_QMP_MS 2000
#define THUMB_MAX 64
#define THUMB_BYTES_MAX ((size_t) 16 << 20)

typedef struct Thumb {
        char name[NAME_MAX_LEN + 1];
        char *png;
        size_t len;
        double at; /* now_s() of the screendump */
} Thumb;

static pthread_mutex_t thumb_lock = PTHREAD_MUTEX_INITIALIZER;
static Thumb thumbs[THUMB_MAX];

static Thumb *thumb_slot(const char *name) {
        Thumb *free_slot = NULL, *oldest = &thumbs[0];
        for (size_t i = 0; i < THUMB_MAX; i++) {
                if (thumbs[i].name[0] && !strcmp(thumbs[i].name, name))
                        return &thumbs[i];
                if (!thumbs[i].name[0] && !free_slot)
                        free_slot = &thumbs[i];
                if (thumbs[i].at < oldest->at)
                        oldest = &thumbs[i];
        }
        Thumb *t = free_slot ? free_slot : oldest;
        free(t->png);
        *t = (Thumb) {};
        snprintf(t->name, sizeof t->name, "%s", name);
        return t;
}

/* A PNG of the screen of the QEMU at qmp into *ret (caller frees). */
static int screendump(Console *c, const char *qmp, char **ret, size_t *ret_len) {
        _cleanup_free_ char *dir = path_join(daemon_home(c->d), "tmp"), *tmp = NULL;
        if (!dir)
                return -ENOMEM;
        int r = mkdir_p(dir, 0700);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = tmpfile_create(dir, &tmp);
        if (fd < 0)
                return fd;
        _cleanup_(qmp_freep) Qmp *q = NULL;
        r = qmp_connect(qmp, THUMB_QMP_MS, &q);
        if (r >= 0)
                r = qmp_execute(q, "screendump", json_pack("{s:s, s:s}", "filename", tmp, "format", "png"),
                                THUMB_QMP_MS, NULL);
        if (r >= 0)
                r = read_full_file(tmp, THUMB_BYTES_MAX, ret, ret_len);
        if (r >= 0 && (*ret_len < 8 || memcmp(*ret, "\x89PNG\r\n\x1a\n", 8))) {
                free(*ret);
                r = -EIO;
        }
        (void) unlink(tmp);
        return r;
}

static int route_thumbnail(HttpRequest *req, void *userdata) {
        Console *c = userdata;
        const char *name = http_request_rest(req);
        if (!name_is_valid(name))
                return http_reply_error(req, 404, "unknown route '%s'", http_request_path(req));
        SessionInfo i;
        if (get_visible(req, c->h, name, &i))
                return 0;
        bool live = !strcmp(i.row.owner, SESSION_OWNER_LOCAL) &&
                    (i.row.state == SESSION_RUNNING || i.row.state == SESSION_PAUSED) && i.config.vga;
        _cleanup_free_ char *qmp = live ? strdup(i.qmp) : NULL;
        char state[32];
        snprintf(state, sizeof state, "%s", session_state_to_string(i.row.state));
        session_info_done(&i);
        if (!live)
                return http_reply_error(req, 409, "session '%s' has no screen here (it is %s)", name, state);
        if (!qmp)
                return -ENOMEM;
        pthread_mutex_lock(&thumb_lock);
        Thumb *t = thumb_slot(name);
        if (!t->png || now_s() - t->at >= THUMB_MAX_AGE_S) {
                char *png = NULL;
                size_t len = 0;
                err_clear();
                int r = screendump(c, qmp, &png, &len);
                if (r >= 0) {
                        free(t->png);
                        t->png = png;
                        t->len = len;
                        t->at = now_s();
                } else if (!t->png) {
                        pthread_mutex_unlock(&thumb_lock);
                        return http_reply_error(req, 503, "no picture of session '%s' now: %s", name,
                                                err_message(r));
                }
        }
        char *copy = malloc(t->len);
        size_t len = t->len;
        if (copy)
                memcpy(copy, t->png, len);
        pthread_mutex_unlock(&thumb_lock);
        if (!copy)
                return -ENOMEM;
        return http_reply_buffer(req, 200, "image/png", copy, len);
}

/* ---- registration ---- */

static const HttpRoute routes[] = {
        { "GET", "/", 0, route_index, HTTP_ROUTE_PUBLIC },
        { "GET", "/console/*", 0, route_static, HTTP_ROUTE_PUBLIC },
        { "GET", "/novnc/*", 0, route_novnc, HTTP_ROUTE_PUBLIC },
        { "GET", "/v1/events", 0, route_events, HTTP_ROUTE_QUERY_TOKEN },
        { "GET", "/v1/console/images", 0, route_images, 0 },
        { "GET", "/v1/console/sessions/*", 0, route_vnc, HTTP_ROUTE_QUERY_TOKEN },
        { "GET", "/v1/console/desks/*", 0, route_desk_vnc, HTTP_ROUTE_QUERY_TOKEN },
        { "GET", "/v1/console/thumbnails/*", 0, route_thumbnail, 0 },
        { "POST", "/v1/console/sessions/*", 64 * 1024, route_action, 0 },
};

int api_console_register(Daemon *d, SessionHost *h) {
        static Console c; /* lives as long as the daemon process */
        c.d = d;
        c.h = h;
        find_web_dir(&c);
        if (c.web[0])
                daemon_log(d, DAEMON_LOG_DEBUG, "console: files from %s%s", c.web,
                           c.novnc[0] ? "" : " (noVNC missing: run scripts/web-deps.sh)");
        else
                daemon_log(d, DAEMON_LOG_INFO, "console: no web files found (set ROAM_WEB_DIR)");
        return daemon_add_routes(d, routes, ELEMENTSOF(routes), &c);
}
