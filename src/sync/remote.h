/* SPDX-License-Identifier: MIT */
#pragma once

/* A remote roam daemon reached over HTTP(S) with libcurl: the client side of
 * docs/sync-protocol.md. One Remote is shared by threads; each thread makes
 * requests through its own RemoteConn (one keep-alive connection). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct Remote Remote;
struct Fingerprint;
struct RoamId;
typedef struct RemoteConn RemoteConn;

/* Signs the requests that need it (a laptop's, crypto/request-sig.h). */
typedef struct RemoteSigner {
        /* Header lines ("Name: value", joined by '\n') for this request in *ret
         * (caller frees), or *ret = NULL when it goes unsigned. */
        int (*sign)(void *userdata, const char *method, const char *path, const void *body, size_t len,
                    char **ret);
        /* The same for a body streamed while it is made, given its SHA-256
         * once it all went (the lines then go as trailer fields). */
        int (*sign_digest)(void *userdata, const char *method, const char *path, const struct RoamId *body_sha,
                           char **ret);
        /* the names of the fields sign_digest() gives ("A, B, C"), announced
         * in a streamed request's Trailer header; NULL: not announced */
        const char *trailer_fields;
        /* The server refused the request's nonce (used, expired, or lost in a
         * restart): forget pooled nonces. The request is then signed and sent
         * once more. */
        void (*nonce_refused)(void *userdata);
        void *userdata;
} RemoteSigner;

typedef struct RemoteOptions {
        uint64_t limit_rate;     /* bytes/s per connection, 0 = none */
        const char *cacert;      /* PEM file to trust for https (NULL = system); unused when pinned */
        /* the server certificate's SHA-256 to pin for https ("sha256:HEX",
         * crypto/fingerprint.h); wins over one the token carries. NULL = the
         * token's, else none (then the CA chain is verified) */
        const char *fingerprint;
        unsigned connect_timeout_s; /* default 10 */
        unsigned stall_timeout_s;   /* abort a transfer that moves nothing this long; default 30 */
        const RemoteSigner *signer; /* NULL = nothing is signed; must outlive the Remote */
} RemoteOptions;

typedef struct RemoteResponse {
        long status;
        uint8_t *body; /* NUL-terminated; caller frees with remote_response_done() */
        size_t len;
        uint64_t wire_bytes; /* request + response body bytes */
} RemoteResponse;

/* url: "http://host:port" or "https://..." (a trailing "/" is fine). token may
 * be NULL (requests then get 401); a pairing token "TOKEN@sha256:HEX"
 * (crypto/fingerprint.h) sends TOKEN and pins the fingerprint for https: a
 * server with another certificate is refused (-EKEYREJECTED, both
 * fingerprints in the detail) before anything is sent. Caller frees with
 * remote_free(). */
int remote_new(const char *url, const char *token, const RemoteOptions *o, Remote **ret);
void remote_free(Remote *r);
static inline void remote_freep(Remote **r) {
        if (*r)
                remote_free(*r);
}
const char *remote_url(const Remote *r);
/* True when https connections are pinned; the pin in *ret (may be NULL). */
bool remote_pinned(const Remote *r, struct Fingerprint *ret);

/* Caller frees with remote_conn_free() (accepts NULL). */
RemoteConn *remote_conn_new(Remote *r);
void remote_conn_free(RemoteConn *c);
static inline void remote_conn_freep(RemoteConn **c) {
        if (*c)
                remote_conn_free(*c);
}

/* Performs one request. body may be NULL. The response body is bounded by
 * max_response (-EFBIG beyond). Transport errors are negative errnos with a
 * detail naming the URL (-ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH, -EIO).
 * Any HTTP status is a success here: look at ret->status. */
int remote_request(RemoteConn *c, const char *method, const char *path, const void *body, size_t len,
                   const char *content_type, size_t max_response, RemoteResponse *ret);
void remote_response_done(RemoteResponse *r);

/* Reads up to max bytes of a streamed request body into buf: the count, 0 at
 * its end, or a negative errno (the request is then aborted). */
#define REMOTE_BODY_BOUND_HEADER "Roam-Body-Bound" /* the server's HTTP_BODY_BOUND_HEADER */
typedef ssize_t (*RemoteReadFn)(void *userdata, void *buf, size_t max);

/* One request whose body is made while it is sent (chunked transfer
 * encoding): read gives it piece by piece; bound (> 0) is the most it can
 * be, sent as header Roam-Body-Bound so that the server can keep it in one
 * buffer and read it while it comes. When the Remote has a signer, the body
 * is hashed as it goes and the signature lines follow it as trailer fields
 * (crypto/request-sig.h). It goes on a connection of its own (never one
 * kept alive: see remote.c). Not sent again: a server that refused the
 * nonce
 * is -EKEYEXPIRED (pooled nonces forgotten; make the body anew and call
 * again); a read (or signature) that failed ends the body short, which the
 * server never acts on: -ECANCELED. Any other answer is returned as by
 * remote_request(). */
int remote_request_stream(Remote *r, const char *method, const char *path, RemoteReadFn read, void *userdata,
                          uint64_t bound, const char *content_type, size_t max_response, RemoteResponse *ret);

/* fn (NULL: none) sees the body of c's next requests as it comes: the whole
 * of it so far (data, n bytes) after every piece, from the thread of
 * remote_request(). data stays where it is until remote_response_done(), so
 * fn may hand out pointers into it, or until fn is called with (NULL, 0):
 * the body goes away now (a failed transfer, or a second attempt with a new
 * body), and whatever uses it must stop first. Whatever the answer's status
 * turns out to be: fn learns that only when remote_request() returns. */
typedef void (*RemoteObserveFn)(void *userdata, const uint8_t *data, size_t n);
void remote_conn_observe(RemoteConn *c, RemoteObserveFn fn, void *userdata);

/* Maps a non-2xx response to a negative errno with a one-line detail taken
 * from the server's {"error": ...} body: 401 -EACCES, 403 -EPERM, 404 -ENOENT,
 * 409 -ESTALE, 412 -ENODATA, 413 -EFBIG, 400 -EBADMSG, else -EPROTO; a 4xx
 * without that body (roam's always have one) is -EPROTO, "not a roam server".
 * what names the request ("ref 'images/x'"). */
int remote_status_error(const Remote *r, const RemoteResponse *resp, const char *what);

/* One request with a JSON body (taken: decref'd here; NULL: {} for a POST,
 * none for a GET) to path; a 200 answer's JSON goes to *ret (may be NULL; set
 * to NULL when the answer is not JSON), another is an error naming what
 * (remote_status_error()). *wire (may be NULL) grows by the bytes moved;
 * *ret_answered (may be NULL) becomes true once an HTTP answer came: then an
 * error is the far side's refusal, else the request may have been carried
 * out. remote_post_json() is the POST without ret_answered. */
struct json_t;
int remote_request_json(Remote *r, const char *method, const char *path, struct json_t *body, const char *what,
                        struct json_t **ret, uint64_t *wire, bool *ret_answered);
int remote_post_json(Remote *r, const char *path, struct json_t *body, const char *what, struct json_t **ret,
                     uint64_t *wire);

/* True for errors worth retrying (link down, timeouts, 5xx). */
bool remote_error_is_transient(int r);

/* The token from the argument, else $ROAM_TOKEN, else NULL. */
const char *remote_token_from_env(const char *arg);
