/* SPDX-License-Identifier: MIT */
#include "server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/util.h"

#define TLS_FILE_MAX (1u << 20)
#define LISTEN_BACKLOG 128
#define THREAD_STACK_SIZE (1u << 20)
#define URL_MAX 160

typedef struct RouteTable {
        const HttpRoute *routes;
        size_t n;
        void *userdata;
} RouteTable;

struct HttpServer {
        struct MHD_Daemon *mhd;
        int listen_fd;
        bool ipv6;
        uint16_t port;
        char url[URL_MAX];
        char *tls_cert;
        char *tls_key;
        size_t tls_key_len;
        HttpServerOptions o;
        RouteTable *tables;
        size_t n_tables;
        atomic_uint in_flight;
        atomic_size_t body_memory; /* bytes of request bodies buffered now */
        atomic_bool stopping;
        atomic_uint upgraded; /* upgraded connections whose handler still runs */
        bool stopped;
};

struct HttpRequest {
        HttpServer *server;
        struct MHD_Connection *conn;
        char *method;
        char *path;
        const char *rest; /* points into path */
        const HttpRoute *route;
        void *route_userdata;
        uint8_t *body;
        size_t body_len, body_cap; /* body_cap bytes are counted in body_memory */
        bool body_whole;           /* body_cap is the announced length (or bound): the buffer never moves */
        void *observed;            /* the route's observer's state */
        bool too_large;
        bool replied;
        unsigned status;
        uint64_t reply_bytes;
        uint64_t start_ns;
        char peer[INET6_ADDRSTRLEN];
        void *auth;
        void (*auth_free)(void *);
        char *error; /* the message of a 5xx answer, for the log */
};

static void logf_(HttpServer *s, HttpLogLevel level, const char *fmt, ...) _printf_(3, 4);
static void logf_(HttpServer *s, HttpLogLevel level, const char *fmt, ...) {
        if (!s->o.log)
                return;
        char line[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        s->o.log(level, line, s->o.log_userdata);
}

/* One of libmicrohttpd's own messages as one roam log line: "http: " and
 * its first line, starting lowercase, with the HTML of an error page it
 * quotes ("<html><head><title>Request malformed</title></head><body>Your HTTP
 * request ...") reduced to its text ("Request malformed: Your HTTP ..."). */
static void mhd_line(const char *in, char *out, size_t size) {
        size_t n = (size_t) snprintf(out, size, "http: ");
        size_t start = n;
        bool tag = false, after_title = false;
        for (const char *p = in; *p && *p != '\r' && *p != '\n' && n + 3 < size; p++) {
                if (*p == '<') {
                        tag = true;
                        after_title |= !strncmp(p, "</title>", 8);
                } else if (tag)
                        tag = *p != '>';
                else {
                        if (after_title)
                                out[n++] = ':', out[n++] = ' ';
                        after_title = false;
                        out[n++] = *p;
                }
        }
        out[n] = 0;
        out[start] = (char) tolower((unsigned char) out[start]);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
        HttpServer *s = cls;
        if (!s->o.log)
                return;
        char raw[1024], line[1024];
        vsnprintf(raw, sizeof raw, fmt, ap);
        mhd_line(raw, line, sizeof line);
        s->o.log(HTTP_LOG_ERROR, line, s->o.log_userdata);
}

/* Reads a PEM file (a TLS certificate or key: what) of at most TLS_FILE_MAX. */
static int read_pem(const char *path, const char *what, char **ret, size_t *ret_len) {
        _cleanup_free_ char *text = NULL;
        int r = read_full_file(path, TLS_FILE_MAX, &text, ret_len);
        if (r < 0 && r != -EFBIG)
                return err_set(r, "cannot read TLS %s '%s': %s", what, path, strerror(-r));
        if (r == -EFBIG || !strstr(text, "-----BEGIN"))
                return err_set(-EINVAL, "TLS %s '%s' is not a PEM %s (give the '-----BEGIN ...' file)", what, path,
                               what);
        *ret = TAKE_PTR(text);
        return 0;
}

/* ---- listen address ---- */

int http_listen_parse(const char *listen, struct sockaddr_storage *ret, socklen_t *ret_len, bool *ret_v6) {
        const char *colon;
        char host[INET6_ADDRSTRLEN + 2];
        bool v6 = false;
        if (!listen || !*listen)
                return -EINVAL;
        if (listen[0] == '[') {
                const char *close = strchr(listen, ']');
                if (!close || close[1] != ':' || (size_t) (close - listen - 1) >= sizeof host)
                        return -EINVAL;
                memcpy(host, listen + 1, (size_t) (close - listen - 1));
                host[close - listen - 1] = 0;
                colon = close + 1;
                v6 = true;
        } else {
                colon = strrchr(listen, ':');
                if (!colon || (size_t) (colon - listen) >= sizeof host)
                        return -EINVAL;
                memcpy(host, listen, (size_t) (colon - listen));
                host[colon - listen] = 0;
        }
        uint64_t port;
        if (parse_u64(colon + 1, &port) < 0 || port > 65535)
                return -EINVAL;
        struct sockaddr_storage ss = { 0 };
        if (v6) {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *) &ss;
                a->sin6_family = AF_INET6;
                a->sin6_port = htons((uint16_t) port);
                if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
                        return -EINVAL;
                *ret_len = sizeof *a;
        } else {
                struct sockaddr_in *a = (struct sockaddr_in *) &ss;
                a->sin_family = AF_INET;
                a->sin_port = htons((uint16_t) port);
                if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
                        return -EINVAL;
                *ret_len = sizeof *a;
        }
        *ret = ss;
        *ret_v6 = v6;
        return 0;
}

static int bind_listen(HttpServer *s) {
        struct sockaddr_storage ss;
        socklen_t sl;
        int r = http_listen_parse(s->o.listen, &ss, &sl, &s->ipv6);
        if (r < 0)
                return err_set(r,
                               "listen address '%s' is invalid (use ADDR:PORT with an IPv4 literal or [IPv6]:PORT, "
                               "e.g. 127.0.0.1:7450)",
                               s->o.listen ? s->o.listen : "");
        _cleanup_close_ int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return err_set(-errno, "cannot create a socket for '%s': %m", s->o.listen);
        int one = 1;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *) &ss, sl) < 0) {
                r = -errno;
                if (r == -EADDRINUSE)
                        return err_set(r, "address '%s' is in use (is another 'roam serve' running? pick another "
                                          "--listen port)",
                                       s->o.listen);
                return err_set(r, "cannot listen on '%s': %s", s->o.listen, strerror(-r));
        }
        if (listen(fd, LISTEN_BACKLOG) < 0)
                return err_set(-errno, "cannot listen on '%s': %m", s->o.listen);
        struct sockaddr_storage bound;
        socklen_t bl = sizeof bound;
        if (getsockname(fd, (struct sockaddr *) &bound, &bl) < 0)
                return -errno;
        char host[INET6_ADDRSTRLEN];
        if (s->ipv6) {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *) &bound;
                s->port = ntohs(a->sin6_port);
                if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr))
                        strcpy(host, "::1");
                else
                        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        } else {
                struct sockaddr_in *a = (struct sockaddr_in *) &bound;
                s->port = ntohs(a->sin_port);
                if (a->sin_addr.s_addr == htonl(INADDR_ANY))
                        strcpy(host, "127.0.0.1");
                else
                        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        }
        snprintf(s->url, sizeof s->url, "%s://%s%s%s:%u", s->o.tls_cert ? "https" : "http", s->ipv6 ? "[" : "", host,
                 s->ipv6 ? "]" : "", s->port);
        s->listen_fd = TAKE_FD(fd);
        return 0;
}

/* ---- server life cycle ---- */

int http_server_new(const HttpServerOptions *o, HttpServer **ret) {
        if (!!o->tls_cert != !!o->tls_key)
                return err_set(-EINVAL, "TLS needs both a certificate and a key (--tls-cert FILE --tls-key FILE)");
        HttpServer *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->o = *o;
        s->listen_fd = -1;
        if (!s->o.max_connections)
                s->o.max_connections = HTTP_MAX_CONNECTIONS_DEFAULT;
        if (!s->o.max_per_ip)
                s->o.max_per_ip = HTTP_MAX_PER_IP_DEFAULT;
        if (!s->o.timeout_s)
                s->o.timeout_s = HTTP_TIMEOUT_DEFAULT_S;
        if (!s->o.stop_grace_s)
                s->o.stop_grace_s = HTTP_STOP_GRACE_DEFAULT_S;
        if (!s->o.max_body_memory)
                s->o.max_body_memory = HTTP_MAX_BODY_MEMORY_DEFAULT;
        /* the option strings are the caller's; only the pointers are kept until start */
        int r = 0;
        if (o->tls_cert) {
                size_t n;
                r = read_pem(o->tls_cert, "certificate", &s->tls_cert, &n);
                if (r >= 0)
                        r = read_pem(o->tls_key, "key", &s->tls_key, &s->tls_key_len);
                if (r >= 0 && !MHD_is_feature_supported(MHD_FEATURE_TLS))
                        r = err_set(-EOPNOTSUPP, "this libmicrohttpd has no TLS support (serve without --tls-cert)");
        }
        if (r >= 0)
                r = bind_listen(s);
        if (r < 0) {
                http_server_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

int http_server_add_routes(HttpServer *s, const HttpRoute *routes, size_t n, void *userdata) {
        if (s->mhd)
                return -EBUSY;
        RouteTable *t = realloc(s->tables, (s->n_tables + 1) * sizeof *t);
        if (!t)
                return -ENOMEM;
        s->tables = t;
        s->tables[s->n_tables++] = (RouteTable){ .routes = routes, .n = n, .userdata = userdata };
        return 0;
}

uint16_t http_server_port(const HttpServer *s) {
        return s->port;
}

const char *http_server_url(const HttpServer *s) {
        return s->url;
}

unsigned http_server_in_flight(const HttpServer *s) {
        return atomic_load(&((HttpServer *) s)->in_flight);
}

bool http_server_stopping(const HttpServer *s) {
        return atomic_load(&((HttpServer *) s)->stopping);
}

/* Grows the request's share of the server-wide body budget to cap bytes. */
static bool body_reserve(HttpRequest *req, size_t cap) {
        HttpServer *s = req->server;
        size_t delta = cap - req->body_cap;
        size_t before = atomic_fetch_add(&s->body_memory, delta);
        if (before + delta > s->o.max_body_memory) {
                atomic_fetch_sub(&s->body_memory, delta);
                return false;
        }
        return true;
}

static void body_release(HttpRequest *req) {
        atomic_fetch_sub(&req->server->body_memory, req->body_cap);
        free(req->body);
        req->body = NULL;
        req->body_len = req->body_cap = 0;
}

static void request_free(HttpRequest *req) {
        if (!req)
                return;
        if (req->observed)
                req->route->observe->done(req->observed);
        body_release(req);
        if (req->auth_free)
                req->auth_free(req->auth);
        free(req->method);
        free(req->path);
        free(req->error);
        free(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
        HttpServer *s = cls;
        HttpRequest *req = *con_cls;
        if (!req)
                return;
        *con_cls = NULL;
        double ms = (double) (now_ns() - req->start_ns) / 1e6;
        const char *how = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? ""
                          : toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? " (timed out)"
                          : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? " (aborted: shutting down)"
                          : toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT ? " (client went away)"
                                                                         : " (aborted)";
        logf_(s, req->status >= 500 ? HTTP_LOG_ERROR : HTTP_LOG_DEBUG, "%s %s %s %u %llu %.1fms%s%s%s", req->peer,
              req->method, req->path, req->status, (unsigned long long) req->reply_bytes, ms, how,
              req->error ? ": " : "", req->error ? req->error : "");
        request_free(req);
        atomic_fetch_sub(&s->in_flight, 1);
}

static HttpServer *request_server(const HttpRequest *req) {
        return req->server;
}

/* ---- replies ---- */

static int queue(HttpRequest *req, unsigned status, struct MHD_Response *resp, uint64_t bytes) {
        if (!resp)
                return -ENOMEM;
        if (atomic_load(&request_server(req)->stopping))
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
        enum MHD_Result ok = MHD_queue_response(req->conn, status, resp);
        MHD_destroy_response(resp);
        if (ok != MHD_YES)
                return -EIO;
        req->replied = true;
        req->status = status;
        req->reply_bytes = bytes;
        return 0;
}

int http_reply_buffer(HttpRequest *req, unsigned status, const char *content_type, void *data, size_t len) {
        if (req->replied) {
                free(data);
                return -EALREADY;
        }
        struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, data, free);
        if (!resp) {
                free(data);
                return -ENOMEM;
        }
        if (content_type)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        return queue(req, status, resp, len);
}

int http_reply_empty(HttpRequest *req, unsigned status) {
        if (req->replied)
                return -EALREADY;
        return queue(req, status, MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT), 0);
}

/* A JSON reply with one extra header (header may be NULL). Takes j. */
static int reply_json_ex(HttpRequest *req, unsigned status, json_t *j, const char *header, const char *value) {
        if (!j)
                return -ENOMEM;
        char *text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!text)
                return -ENOMEM;
        if (req->replied) {
                free(text);
                return -EALREADY;
        }
        size_t n = strlen(text);
        char *body = realloc(text, n + 2);
        if (!body) {
                free(text);
                return -ENOMEM;
        }
        body[n++] = '\n';
        body[n] = 0;
        struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(n, body, free);
        if (!resp) {
                free(body);
                return -ENOMEM;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        if (header)
                MHD_add_response_header(resp, header, value);
        return queue(req, status, resp, n);
}

int http_reply_json(HttpRequest *req, unsigned status, json_t *j) {
        return reply_json_ex(req, status, j, NULL, NULL);
}

/* {"error": msg}; bytes that are not valid UTF-8 (a client's path, say)
 * become '?' so that the message always makes it into JSON. */
static json_t *error_json(const char *msg) {
        json_t *j = json_pack("{s:s}", "error", msg);
        if (j)
                return j;
        char clean[1024];
        size_t i;
        for (i = 0; msg[i] && i < sizeof clean - 1; i++)
                clean[i] = (msg[i] < 0x20 || msg[i] > 0x7e) ? '?' : msg[i];
        clean[i] = 0;
        return json_pack("{s:s}", "error", clean);
}

static int reply_error_str(HttpRequest *req, unsigned status, const char *msg) {
        if (status >= 500 && !req->error)
                req->error = strdup(msg);
        return http_reply_json(req, status, error_json(msg));
}

int http_reply_error(HttpRequest *req, unsigned status, const char *fmt, ...) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        return reply_error_str(req, status, msg);
}

unsigned http_status_from_errno(int r) {
        switch (-r) {
        case ENOENT:
                return MHD_HTTP_NOT_FOUND;
        case EINVAL:
        case EBADMSG:
                return MHD_HTTP_BAD_REQUEST;
        case EACCES:
        case EPERM:
                return MHD_HTTP_FORBIDDEN;
        case EEXIST:
        case ESTALE:
                return MHD_HTTP_CONFLICT;
        case EFBIG:
                return MHD_HTTP_CONTENT_TOO_LARGE;
        case ENOSPC:
        case EDQUOT:
                return MHD_HTTP_INSUFFICIENT_STORAGE;
        case EBUSY:
        case EAGAIN:
                return MHD_HTTP_SERVICE_UNAVAILABLE;
        default:
                return MHD_HTTP_INTERNAL_SERVER_ERROR;
        }
}

int http_reply_errno(HttpRequest *req, int r) {
        return reply_error_str(req, http_status_from_errno(r), err_message(r));
}

typedef struct Stream {
        HttpStreamFn read;
        void *userdata;
        void (*free_fn)(void *);
} Stream;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
        Stream *st = cls;
        ssize_t n = st->read(st->userdata, pos, buf, max);
        if (n < 0)
                return MHD_CONTENT_READER_END_WITH_ERROR;
        if (n == 0)
                return MHD_CONTENT_READER_END_OF_STREAM;
        return n;
}

static void stream_free(void *cls) {
        Stream *st = cls;
        if (st->free_fn)
                st->free_fn(st->userdata);
        free(st);
}

int http_reply_stream(HttpRequest *req, unsigned status, const char *content_type, uint64_t size, HttpStreamFn read,
                      void *userdata, void (*free_fn)(void *)) {
        Stream *st = req->replied ? NULL : malloc(sizeof *st);
        if (!st) {
                if (free_fn)
                        free_fn(userdata);
                return req->replied ? -EALREADY : -ENOMEM;
        }
        *st = (Stream){ .read = read, .userdata = userdata, .free_fn = free_fn };
        struct MHD_Response *resp = MHD_create_response_from_callback(size == UINT64_MAX ? MHD_SIZE_UNKNOWN : size,
                                                                      64 * 1024, stream_read, st, stream_free);
        if (!resp) {
                stream_free(st);
                return -ENOMEM;
        }
        if (content_type)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        return queue(req, status, resp, size == UINT64_MAX ? 0 : size);
}

/* ---- protocol upgrades ---- */

typedef struct Upgrade {
        HttpServer *server;
        HttpUpgradeFn fn;
        void *userdata;
        void (*free_fn)(void *);
        int fd;
        char *extra;
        size_t extra_len;
        struct MHD_UpgradeResponseHandle *urh;
} Upgrade;

static void upgrade_free(Upgrade *u) {
        if (u->free_fn)
                u->free_fn(u->userdata);
        free(u->extra);
        free(u);
}

static void *upgrade_thread(void *p) {
        Upgrade *u = p;
        HttpServer *s = u->server;
        u->fn(s, u->fd, u->extra, u->extra_len, u->userdata);
        MHD_upgrade_action(u->urh, MHD_UPGRADE_ACTION_CLOSE);
        upgrade_free(u);
        atomic_fetch_sub(&s->upgraded, 1);
        return NULL;
}

static void on_upgrade(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra_in,
                       size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh) {
        Upgrade *u = cls;
        HttpServer *s = u->server;
        u->fd = sock;
        u->urh = urh;
        u->extra = extra_in_size ? malloc(extra_in_size) : NULL;
        if (u->extra) {
                memcpy(u->extra, extra_in, extra_in_size);
                u->extra_len = extra_in_size;
        }
        /* the handler may block for the connection's life: a thread of its
         * own (with HTTPS, this thread forwards the TLS data once we return) */
        atomic_fetch_add(&s->upgraded, 1);
        pthread_attr_t attr;
        pthread_t t;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, THREAD_STACK_SIZE);
        int r = (extra_in_size && !u->extra) ? ENOMEM : pthread_create(&t, &attr, upgrade_thread, u);
        pthread_attr_destroy(&attr);
        if (r != 0) {
                logf_(s, HTTP_LOG_ERROR, "cannot start the handler of an upgraded connection: %s", strerror(r));
                MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
                upgrade_free(u);
                atomic_fetch_sub(&s->upgraded, 1);
        }
}

int http_reply_upgrade(HttpRequest *req, const char *const *headers, HttpUpgradeFn fn, void *userdata,
                       void (*free_fn)(void *)) {
        Upgrade *u = req->replied ? NULL : calloc(1, sizeof *u);
        if (!u) {
                if (free_fn)
                        free_fn(userdata);
                return req->replied ? -EALREADY : -ENOMEM;
        }
        *u = (Upgrade){ .server = req->server, .fn = fn, .userdata = userdata, .free_fn = free_fn, .fd = -1 };
        struct MHD_Response *resp = MHD_create_response_for_upgrade(on_upgrade, u);
        if (!resp) {
                upgrade_free(u);
                return -ENOMEM;
        }
        for (size_t i = 0; headers && headers[i] && headers[i + 1]; i += 2)
                MHD_add_response_header(resp, headers[i], headers[i + 1]);
        /* MHD calls on_upgrade at most once; if the connection fails before,
         * u leaks with its userdata: a rare, bounded loss (MHD has no hook) */
        return queue(req, MHD_HTTP_SWITCHING_PROTOCOLS, resp, 0);
}

/* ---- request accessors ---- */

const char *http_request_method(const HttpRequest *req) {
        return req->method;
}
const char *http_request_path(const HttpRequest *req) {
        return req->path;
}
const char *http_request_rest(const HttpRequest *req) {
        return req->rest ? req->rest : "";
}
const char *http_request_query(const HttpRequest *req, const char *key) {
        return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}
const char *http_request_header(const HttpRequest *req, const char *name) {
        return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_request_trailer(const HttpRequest *req, const char *name) {
        return MHD_lookup_connection_value(req->conn, MHD_FOOTER_KIND, name);
}
const char *http_request_bearer(const HttpRequest *req) {
        const char *v = http_request_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
        if (!v && req->route && (req->route->flags & HTTP_ROUTE_QUERY_TOKEN)) {
                v = http_request_query(req, "access_token");
                return v && *v ? v : NULL;
        }
        if (!v || strncasecmp(v, "Bearer ", 7))
                return NULL;
        v += 7;
        while (*v == ' ')
                v++;
        return *v ? v : NULL;
}
const void *http_request_body(const HttpRequest *req, size_t *ret_len) {
        *ret_len = req->body_len;
        return req->body_len ? req->body : NULL;
}
void *http_request_observed(const HttpRequest *req) {
        return req->observed;
}
const char *http_request_peer(const HttpRequest *req) {
        return req->peer;
}
uint64_t http_request_start_ns(const HttpRequest *req) {
        return req->start_ns;
}
void http_request_set_auth(HttpRequest *req, void *auth, void (*free_fn)(void *)) {
        if (req->auth_free)
                req->auth_free(req->auth);
        req->auth = auth;
        req->auth_free = free_fn;
}
void *http_request_auth(const HttpRequest *req) {
        return req->auth;
}

/* ---- routing ---- */

static bool path_matches(const char *pattern, const char *path, const char **ret_rest) {
        size_t n = strlen(pattern);
        if (n > 0 && pattern[n - 1] == '*') {
                if (strncmp(pattern, path, n - 1))
                        return false;
                *ret_rest = path + n - 1;
                return true;
        }
        if (strcmp(pattern, path))
                return false;
        *ret_rest = "";
        return true;
}

/* Finds the route for method and path. Returns 1 with a route, 0 if the path
 * matches but not the method (allow lists the methods), -ENOENT if no path matches. */
static int route_find(HttpRequest *req, char *allow, size_t allow_size) {
        HttpServer *s = req->server;
        bool path_known = false;
        allow[0] = 0;
        for (size_t t = 0; t < s->n_tables; t++)
                for (size_t i = 0; i < s->tables[t].n; i++) {
                        const HttpRoute *rt = &s->tables[t].routes[i];
                        const char *rest;
                        if (!path_matches(rt->path, req->path, &rest))
                                continue;
                        path_known = true;
                        if (!strcmp(rt->method, req->method)) {
                                req->route = rt;
                                req->route_userdata = s->tables[t].userdata;
                                req->rest = rest;
                                return 1;
                        }
                        if (!strstr(allow, rt->method)) {
                                size_t l = strlen(allow);
                                snprintf(allow + l, allow_size - l, "%s%s", l ? ", " : "", rt->method);
                        }
                }
        return path_known ? 0 : -ENOENT;
}

static void request_peer(HttpRequest *req) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        strcpy(req->peer, "?");
        if (!ci || !ci->client_addr)
                return;
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, req->peer, sizeof req->peer);
        else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, req->peer, sizeof req->peer);
}

/* The first call for a request: headers are complete, no body read yet.
 * Everything that can be refused without reading the body is refused here. */
static int request_begin(HttpRequest *req) {
        HttpServer *s = req->server;
        if (atomic_load(&s->stopping))
                return http_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "server is shutting down (retry later)");
        char allow[64];
        int found = route_find(req, allow, sizeof allow);
        if (s->o.auth && !(found == 1 && (req->route->flags & HTTP_ROUTE_PUBLIC))) {
                err_clear();
                int r = s->o.auth(req, s->o.auth_userdata);
                if (r == -EACCES || r == -EPERM) {
                        struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
                        if (resp)
                                MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
                        return queue(req, MHD_HTTP_UNAUTHORIZED, resp, 0);
                }
                if (r == HTTP_AUTH_THROTTLED)
                        return http_reply_error(req, MHD_HTTP_TOO_MANY_REQUESTS, "%s", err_message(r));
                if (r < 0)
                        return http_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "cannot check the token: %s",
                                                err_message(r));
        }
        if (found == -ENOENT)
                return http_reply_error(req, MHD_HTTP_NOT_FOUND, "no such route '%s' (see docs/sync-protocol.md)",
                                        req->path);
        if (found == 0) {
                char msg[512];
                snprintf(msg, sizeof msg, "method %s is not allowed on '%s' (use %s)", req->method, req->path, allow);
                return reply_json_ex(req, MHD_HTTP_METHOD_NOT_ALLOWED, error_json(msg),
                                     MHD_HTTP_HEADER_ALLOW, allow);
        }
        const char *cl = http_request_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH),
                   *bound = cl ? NULL : http_request_header(req, HTTP_BODY_BOUND_HEADER);
        uint64_t len = 0;
        if (cl && parse_u64(cl, &len) < 0)
                return http_reply_error(req, MHD_HTTP_BAD_REQUEST, "malformed Content-Length");
        if (bound && parse_u64(bound, &len) < 0)
                return http_reply_error(req, MHD_HTTP_BAD_REQUEST, "malformed %s (a byte count)",
                                        HTTP_BODY_BOUND_HEADER);
        if (len > req->route->max_body)
                return http_reply_error(req, MHD_HTTP_CONTENT_TOO_LARGE,
                                        "request body of %llu bytes is larger than %zu, the limit of this route",
                                        (unsigned long long) len, req->route->max_body);
        if (len > 0) {
                if (!body_reserve(req, len))
                        return http_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE,
                                                "the server is receiving too much data at once (retry later)");
                req->body = malloc(len);
                if (!req->body) {
                        atomic_fetch_sub(&s->body_memory, len);
                        return http_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE,
                                                "out of memory for a %llu byte body (retry later)",
                                                (unsigned long long) len);
                }
                req->body_cap = len;
                req->body_whole = true;
        }
        return 0;
}

static int body_append(HttpRequest *req, const char *data, size_t n) {
        if (req->body_whole && n > req->body_cap - req->body_len)
                return -EPROTO; /* more than it announced (an observer may be reading the buffer) */
        if (req->too_large || n > req->route->max_body - req->body_len) {
                /* chunked upload past the limit: drop it, answer 413 at the end */
                req->too_large = true;
                body_release(req);
                return 0;
        }
        if (req->body_len + n > req->body_cap) {
                size_t nc = req->body_cap ? req->body_cap : 64 * 1024;
                while (nc < req->body_len + n)
                        nc *= 2;
                nc = MIN(nc, req->route->max_body);
                if (!body_reserve(req, nc))
                        return -ENOMEM; /* closes the connection */
                uint8_t *nb = realloc(req->body, nc);
                if (!nb) {
                        atomic_fetch_sub(&req->server->body_memory, nc - req->body_cap);
                        return -ENOMEM;
                }
                req->body = nb;
                req->body_cap = nc;
        }
        memcpy(req->body + req->body_len, data, n);
        req->body_len += n;
        return 0;
}

static void request_run(HttpRequest *req) {
        if (req->too_large) {
                http_reply_error(req, MHD_HTTP_CONTENT_TOO_LARGE,
                                 "request body is larger than %zu, the limit of this route", req->route->max_body);
                return;
        }
        err_clear();
        HttpServer *s = req->server;
        void *token = s->o.enter ? s->o.enter(req, s->o.enter_userdata) : NULL;
        int r = req->route->handler(req, req->route_userdata);
        if (s->o.leave)
                s->o.leave(token, s->o.enter_userdata);
        if (req->replied)
                return;
        if (r >= 0)
                r = err_set(-EIO, "handler for '%s' gave no answer", req->path);
        http_reply_errno(req, r);
}

static int hex_digit(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

size_t http_unescape(char *s) {
        char *w = s;
        for (const char *r = s; *r;) {
                int hi = r[0] == '%' ? hex_digit(r[1]) : -1, lo = hi >= 0 ? hex_digit(r[2]) : -1;
                if (lo >= 0 && (hi || lo)) {
                        *w++ = (char) (hi << 4 | lo);
                        r += 3;
                } else
                        *w++ = *r++;
        }
        *w = 0;
        return (size_t) (w - s);
}

static size_t unescape(void *cls, struct MHD_Connection *c, char *s) {
        return http_unescape(s);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
        HttpServer *s = cls;
        HttpRequest *req = *con_cls;
        if (!req) {
                req = calloc(1, sizeof *req);
                if (!req)
                        return MHD_NO;
                req->server = s;
                req->conn = conn;
                req->start_ns = now_ns();
                req->method = strdup(method);
                req->path = strdup(url);
                *con_cls = req;
                atomic_fetch_add(&s->in_flight, 1);
                if (!req->method || !req->path)
                        return MHD_NO;
                request_peer(req);
                if (request_begin(req) < 0)
                        return MHD_NO;
                return MHD_YES;
        }
        if (req->replied) {
                /* answered before the body (401, 404, 413, ...): discard whatever comes */
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                if (body_append(req, upload_data, *upload_data_size) < 0)
                        return MHD_NO;
                *upload_data_size = 0;
                if (req->route->observe && req->body_whole && !req->too_large && req->body)
                        req->route->observe->feed(req, req->body, req->body_len, &req->observed,
                                                  req->route_userdata);
                return MHD_YES;
        }
        request_run(req);
        return req->replied ? MHD_YES : MHD_NO;
}

int http_server_start(HttpServer *s) {
        if (s->mhd)
                return -EBUSY;
        unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                         MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE;
        if (s->ipv6)
                flags |= MHD_USE_IPv6;
        if (s->tls_cert)
                flags |= MHD_USE_TLS;
        struct MHD_OptionItem tls[] = {
                { MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert },
                { MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key },
                { MHD_OPTION_END, 0, NULL },
        };
        /* the logger first, so that MHD never prints on its own */
        s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s,
                                  MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s,
                                  MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
                                  MHD_OPTION_CONNECTION_LIMIT, s->o.max_connections,
                                  MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->o.max_per_ip,
                                  MHD_OPTION_CONNECTION_TIMEOUT, s->o.timeout_s,
                                  MHD_OPTION_THREAD_STACK_SIZE, (size_t) THREAD_STACK_SIZE,
                                  MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                  MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
                                  MHD_OPTION_ARRAY, s->tls_cert ? tls : tls + 2,
                                  MHD_OPTION_END);
        if (!s->mhd)
                return err_set(-EIO, "cannot start the HTTP server on '%s'%s", s->o.listen,
                               s->tls_cert ? " (check that the TLS certificate and key belong together)" : "");
        /* the daemon owns the listen socket now */
        logf_(s, HTTP_LOG_INFO, "listening on %s", s->url);
        return 0;
}

void http_server_stop(HttpServer *s) {
        if (!s || !s->mhd || s->stopped)
                return;
        atomic_store(&s->stopping, true);
        MHD_socket fd = MHD_quiesce_daemon(s->mhd);
        if (fd != MHD_INVALID_SOCKET)
                close(fd);
        s->listen_fd = -1;
        uint64_t deadline = now_ns() + (uint64_t) s->o.stop_grace_s * 1000000000ull;
        unsigned n;
        while ((n = atomic_load(&s->in_flight)) > 0 && now_ns() < deadline) {
                struct timespec ts = { 0, 20 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        if (n > 0)
                logf_(s, HTTP_LOG_INFO, "aborting %u requests still in flight", n);
        /* upgraded connections end themselves once they see stopping;
         * MHD_stop_daemon() would wait for them forever */
        deadline = now_ns() + (uint64_t) s->o.stop_grace_s * 1000000000ull;
        while (atomic_load(&s->upgraded) > 0 && now_ns() < deadline) {
                struct timespec ts = { 0, 20 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        MHD_stop_daemon(s->mhd);
        s->mhd = NULL;
        s->stopped = true;
}

void http_server_free(HttpServer *s) {
        if (!s)
                return;
        http_server_stop(s);
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        free(s->tls_cert);
        if (s->tls_key) {
                explicit_bzero(s->tls_key, s->tls_key_len);
                free(s->tls_key);
        }
        free(s->tables);
        free(s);
}
