/* SPDX-License-Identifier: MIT */
#pragma once

/* A raw byte stream to a roam daemon: one GET with "Connection: Upgrade" and
 * "Upgrade: PROTOCOL" (bearer token, TLS as for every request), then, after
 * "101 Switching Protocols", bytes both ways on that connection. libcurl
 * makes the connection (CONNECT_ONLY: its TLS, its CA options); the request
 * and the answer's head are ours, bounded:
 *
 *   -> GET /v1/console/sessions/s1/vnc HTTP/1.1
 *      Host: H:P / Authorization: Bearer T / Connection: Upgrade / Upgrade: roam-vnc
 *   <- HTTP/1.1 101 Switching Protocols / Upgrade: roam-vnc     then bytes
 *   <- HTTP/1.1 404 Not Found / Content-Length: N / {"error": "..."}   an error
 *
 * Not thread-safe: one stream, one thread. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define REMOTE_STREAM_HEAD_MAX ((size_t) 16 << 10) /* the answer's status line and headers */
#define REMOTE_STREAM_ERROR_BODY_MAX ((size_t) 64 << 10)
#define REMOTE_STREAM_TIMEOUT_MS 15000 /* to connect, and for the answer's head */

typedef struct RemoteStream RemoteStream;

/* Opens the stream. url: "http(s)://HOST:PORT"; token may be NULL or a
 * pairing token (remote.h: remote_new()); o (may be NULL): cacert and
 * fingerprint as for remote_new() (the rest is unused). An answer other than 101 with the same
 * Upgrade is an error mapped as remote_status_error() maps it (404 -ENOENT
 * with the server's words, ...). Caller frees with remote_stream_free(). */
struct RemoteOptions;
int remote_stream_open(const char *url, const char *token, const struct RemoteOptions *o, const char *path,
                       const char *protocol, RemoteStream **ret);
void remote_stream_free(RemoteStream *s);
static inline void remote_stream_freep(RemoteStream **s) {
        if (*s)
                remote_stream_free(*s);
}

/* The socket, to poll for input and output. */
int remote_stream_fd(const RemoteStream *s);
/* Non-blocking; the count, 0 at the end (read), -EAGAIN when nothing can move
 * now, or another negative errno. Bytes that came with the answer's head are
 * read first. The signature fits RelayEnd (basic/relay.h). */
ssize_t remote_stream_read(void *s, void *buf, size_t n);
ssize_t remote_stream_write(void *s, const void *buf, size_t n);

/* The answer's head, parsed (pure; fuzzed): head is the bytes up to and
 * including the blank line. *ret_status; *ret_content_length (-1 when
 * absent); *ret_upgrade true when an Upgrade header names protocol.
 * -EBADMSG for a malformed head or Content-Length. */
int remote_stream_parse_head(const char *head, size_t len, const char *protocol, int *ret_status,
                             int64_t *ret_content_length, bool *ret_upgrade);
/* The length of the head in buf (through "\r\n\r\n"), or 0 when buf holds no
 * complete head yet. */
size_t remote_stream_head_end(const char *buf, size_t len);
