/* SPDX-License-Identifier: MIT */
#pragma once

/* A small HTTP(S) server on libmicrohttpd with route tables.
 *
 *   HttpServerOptions o = { .listen = "127.0.0.1:0", .auth = check, .log = log };
 *   http_server_new(&o, &srv);                  binds; http_server_port() is known now
 *   http_server_add_routes(srv, routes, n, ud);  any number of tables, before start
 *   http_server_start(srv);                      serves from its own threads
 *   ...
 *   http_server_stop(srv);                       stop accepting, drain, close
 *   http_server_free(srv);
 *
 * Request flow (one thread per connection, so a handler may block):
 *
 *   headers complete -> auth hook (every path, also unknown ones; failure:
 *   401, empty body) -> route lookup (no path: 404, path but not method: 405
 *   with Allow) -> Content-Length over the route's max_body: 413 at once,
 *   the body is never read -> body buffered (a chunked one may announce its
 *   bound: HTTP_BODY_BOUND_HEADER) -> handler -> one reply.
 *
 * Robustness: idle connections time out (timeout_s), connections are limited
 * in total and per client address, buffered request bodies are limited
 * server-wide (max_body_memory), and a client that trickles its headers
 * occupies only its own thread. Every response carries Content-Length unless
 * streamed with an unknown size. Errors are {"error": "..."} with a 4xx/5xx
 * status.
 *
 * Library code: nothing is printed; one line per finished request goes to
 * the log callback (HTTP_LOG_DEBUG, or HTTP_LOG_ERROR for 5xx), and
 * libmicrohttpd's own complaints go there as HTTP_LOG_ERROR. */

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "../basic/macro.h"

typedef struct HttpServer HttpServer;
/* One request; valid from the auth hook until the handler returns. */
typedef struct HttpRequest HttpRequest;

typedef enum HttpLogLevel {
        HTTP_LOG_DEBUG,
        HTTP_LOG_INFO,
        HTTP_LOG_ERROR,
} HttpLogLevel;

/* A route handler. It answers with exactly one http_reply_*() call and
 * returns 0, or returns a negative errno without answering: the server then
 * answers http_status_from_errno(r) with err_message(r) as the error. */
typedef int (*HttpHandler)(HttpRequest *req, void *userdata);

/* A route that watches its request body while it comes (HttpRoute.observe),
 * e.g. to store a pack record by record before its last byte is here. */
typedef struct HttpBodyObserver {
        /* In the request's thread, after each piece of the body: all of it so
         * far (len bytes at body, which stay where they are until the request
         * ends). *state is the request's, NULL at first (the first calls may
         * leave it so). Only for a body that announced its length, or a
         * chunked one its bound (HTTP_BODY_BOUND_HEADER): one buffer, made at
         * once; never after an answer, and with the route's userdata. */
        void (*feed)(HttpRequest *req, const uint8_t *body, size_t len, void **state, void *userdata);
        /* Once, when the request ends, before its body goes; never with NULL. */
        void (*done)(void *state);
} HttpBodyObserver;

typedef struct HttpRoute {
        const char *method; /* "GET", "PUT", "POST", "DELETE" */
        /* "/v1/info" matches exactly; a pattern that ends in a star ("/v1/refs/" + star)
         * matches every path with that prefix and passes the remainder
         * (http_request_rest(); may be "") to the handler. */
        const char *path;
        size_t max_body; /* largest request body accepted (413 beyond); 0 = none */
        HttpHandler handler;
        unsigned flags; /* HttpRouteFlags; 0 = an ordinary authenticated route */
        const HttpBodyObserver *observe; /* NULL: the handler sees the body once it is all here */
} HttpRoute;

typedef enum HttpRouteFlags {
        /* no authentication at all: the auth hook is not called (static files
         * of the web console; never for a route that returns data) */
        HTTP_ROUTE_PUBLIC = 1 << 0,
        /* http_request_bearer() also takes the token from the query argument
         * access_token= when there is no Authorization header: for the
         * routes a browser opens without headers (WebSocket, EventSource) */
        HTTP_ROUTE_QUERY_TOKEN = 1 << 1,
} HttpRouteFlags;

/* Authentication hook, called for every request before routing. Returns 0
 * to let the request through (it may attach its result with
 * http_request_set_auth()), -EACCES or -EPERM for 401 (empty body), or
 * another negative errno when it could not decide (503 with err_message()). */
typedef int (*HttpAuthFn)(HttpRequest *req, void *userdata);
/* What an auth hook returns for a client refused for now (429 with
 * err_message(), e.g. after too many failed logins). */
#define HTTP_AUTH_THROTTLED (-EUSERS)
/* One line, no newline. Called from any server thread. */
typedef void (*HttpLogFn)(HttpLogLevel level, const char *line, void *userdata);

#define HTTP_MAX_CONNECTIONS_DEFAULT 256u
#define HTTP_MAX_PER_IP_DEFAULT 64u
#define HTTP_TIMEOUT_DEFAULT_S 30u
#define HTTP_STOP_GRACE_DEFAULT_S 10u
#define HTTP_MAX_BODY_MEMORY_DEFAULT ((size_t) 1 << 30)
/* A chunked request body may announce the most it will be in this header
 * (a decimal byte count, within the route's max_body): it is then kept in
 * one buffer of that size, made at once (observers see it as it comes), and
 * more than that ends the connection. */
#define HTTP_BODY_BOUND_HEADER "Roam-Body-Bound"

typedef struct HttpServerOptions {
        /* "ADDR:PORT" with an IPv4 literal or "[IPv6]:PORT"; port 0 picks a free one */
        const char *listen;
        /* PEM files; both set = HTTPS, both NULL = HTTP */
        const char *tls_cert;
        const char *tls_key;
        unsigned max_connections; /* 0 = HTTP_MAX_CONNECTIONS_DEFAULT */
        unsigned max_per_ip;      /* 0 = HTTP_MAX_PER_IP_DEFAULT */
        unsigned timeout_s;       /* idle connection timeout; 0 = HTTP_TIMEOUT_DEFAULT_S */
        unsigned stop_grace_s;    /* http_server_stop() waits this long for requests; 0 = default */
        /* request bodies buffered at once, server-wide; a request past it gets 503 */
        size_t max_body_memory; /* 0 = HTTP_MAX_BODY_MEMORY_DEFAULT */
        HttpAuthFn auth; /* NULL = no authentication (tests) */
        void *auth_userdata;
        HttpLogFn log; /* may be NULL */
        void *log_userdata;
        /* around every handler (not around the stream and upgrade callbacks
         * that run after it returned): enter() may block, and what it returns
         * is passed to leave() once the handler answered. NULL = none. */
        void *(*enter)(HttpRequest *req, void *userdata);
        void (*leave)(void *token, void *userdata);
        void *enter_userdata;
} HttpServerOptions;

/* Parses and binds the listen address (errors: -EINVAL for a malformed
 * address, -EADDRINUSE, ... with detail) and loads the TLS files. Does not
 * serve until http_server_start(). Caller frees with http_server_free(). */
int http_server_new(const HttpServerOptions *o, HttpServer **ret);

/* Percent-decoding of a request's path and query, in place (libmicrohttpd's
 * unescape callback; tests/fuzz/fuzz-notes.c): "%XY" becomes its byte,
 * except "%00", which stays as it is: a NUL never reaches a handler, whose C
 * strings would end there ("/v1/sessions/a1%00x" would name a1), so such a
 * name is simply invalid. Returns the new length (strlen(s)). */
size_t http_unescape(char *s);

/* Parses a listen address as HttpServerOptions.listen takes it ("ADDR:PORT",
 * "[IPv6]:PORT"); -EINVAL without a detail for anything else. Also for other
 * listeners (roam session connect). */
int http_listen_parse(const char *listen, struct sockaddr_storage *ret, socklen_t *ret_len, bool *ret_v6);
/* Adds a route table; the table (not copied) must outlive the server.
 * Tables are searched in the order added, routes in table order; the first
 * route whose path and method match wins. Only before http_server_start(). */
int http_server_add_routes(HttpServer *s, const HttpRoute *routes, size_t n, void *userdata);
int http_server_start(HttpServer *s);
/* Stops accepting, answers new requests on open connections with 503, waits
 * up to stop_grace_s for requests in flight to finish (transfers included),
 * then closes every connection. Idempotent. */
void http_server_stop(HttpServer *s);
/* Stops the server if it runs. Accepts NULL. */
void http_server_free(HttpServer *s);
static inline void http_server_freep(HttpServer **s) {
        if (*s)
                http_server_free(*s);
}

/* The bound port (the chosen one for port 0). */
uint16_t http_server_port(const HttpServer *s);
/* "http://127.0.0.1:7450" or "https://[::1]:7450": the URL a local client
 * uses; a wildcard address (0.0.0.0, ::) is given as loopback. Owned by s. */
const char *http_server_url(const HttpServer *s);
/* Number of requests between their headers and their completion. */
unsigned http_server_in_flight(const HttpServer *s);
/* True once http_server_stop() began: long-running streams and upgraded
 * connections end themselves when they see it. */
bool http_server_stopping(const HttpServer *s);

/* Maps a negative errno to an HTTP status: ENOENT 404, EINVAL/EBADMSG 400,
 * EACCES/EPERM 403, EEXIST/ESTALE 409, EFBIG 413, ENOSPC 507,
 * EBUSY/EAGAIN 503, anything else 500. */
unsigned http_status_from_errno(int r);

/* ---- requests (all strings owned by the request) ---- */
const char *http_request_method(const HttpRequest *req);
/* The decoded path, without the query string. */
const char *http_request_path(const HttpRequest *req);
/* The part of the path after a prefix route's '*'; "" for exact routes. */
const char *http_request_rest(const HttpRequest *req);
/* A query argument (decoded) or NULL. */
const char *http_request_query(const HttpRequest *req, const char *key);
/* A request header (case-insensitive name) or NULL. */
const char *http_request_header(const HttpRequest *req, const char *name);
/* A field of the trailer after a chunked request body (once the body is
 * all here: in the handler), or NULL. */
const char *http_request_trailer(const HttpRequest *req, const char *name);
/* The token of "Authorization: Bearer TOKEN", or NULL. On a route with
 * HTTP_ROUTE_QUERY_TOKEN, also "?access_token=TOKEN" (the header wins). */
const char *http_request_bearer(const HttpRequest *req);
/* The buffered body (NULL and 0 when there is none). */
const void *http_request_body(const HttpRequest *req, size_t *ret_len);
/* What the route's observer (HttpRoute.observe) made of the body, or NULL. */
void *http_request_observed(const HttpRequest *req);
/* The client's address as text ("127.0.0.1", "::1"). */
const char *http_request_peer(const HttpRequest *req);
/* When the request came (now_ns() clock). */
uint64_t http_request_start_ns(const HttpRequest *req);
/* Attaches the auth hook's result; free_fn (may be NULL) frees it after
 * the request. */
void http_request_set_auth(HttpRequest *req, void *auth, void (*free_fn)(void *));
void *http_request_auth(const HttpRequest *req);

/* ---- replies: exactly one per request; each returns 0 or -errno ---- */
/* Takes the reference to j (also on failure). Content-Type application/json. */
int http_reply_json(HttpRequest *req, unsigned status, json_t *j);
/* {"error": "<formatted>"} */
int http_reply_error(HttpRequest *req, unsigned status, const char *fmt, ...) _printf_(3, 4);
/* http_status_from_errno(r) with err_message(r). */
int http_reply_errno(HttpRequest *req, int r);
/* Takes data (malloc'd; freed with free(), also on failure). */
int http_reply_buffer(HttpRequest *req, unsigned status, const char *content_type, void *data, size_t len);
/* No body. */
int http_reply_empty(HttpRequest *req, unsigned status);

/* A streamed body of size bytes (UINT64_MAX = unknown: chunked encoding).
 * read() fills up to max bytes at offset pos and returns how many (> 0), or a
 * negative errno to abort the connection (the client sees a short body).
 * free_fn(userdata) runs when the response is done; it also runs when this
 * call fails. read() runs after the handler returned, on the same thread. */
typedef ssize_t (*HttpStreamFn)(void *userdata, uint64_t pos, void *buf, size_t max);
int http_reply_stream(HttpRequest *req, unsigned status, const char *content_type, uint64_t size, HttpStreamFn read,
                      void *userdata, void (*free_fn)(void *));

/* ---- protocol upgrades (WebSocket) ----
 * Answers 101 Switching Protocols with the given extra headers (name, value
 * pairs, NULL-terminated; "Upgrade" must be among them; "Connection:
 * Upgrade" is added by libmicrohttpd). Once the answer is on the wire, fn runs
 * in a thread of its own with the connection's socket (for HTTPS a socket
 * that libmicrohttpd bridges to TLS) and any bytes the client sent already
 * after its headers (extra, extra_len). fn must not close fd; the server
 * closes it when fn returns. fn should return soon after http_server_stopping()
 * turns true (http_server_stop() waits for it). free_fn(userdata) runs after
 * fn, or at once when the upgrade fails (also when this call fails). The
 * request is finished when fn starts: fn must not touch req. */
typedef void (*HttpUpgradeFn)(HttpServer *s, int fd, const void *extra, size_t extra_len, void *userdata);
int http_reply_upgrade(HttpRequest *req, const char *const *headers, HttpUpgradeFn fn, void *userdata,
                       void (*free_fn)(void *));
