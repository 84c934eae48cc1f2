/* SPDX-License-Identifier: MIT */
#include "remote-stream.h"

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "remote-tls.h"
#include "remote.h"

struct RemoteStream {
        CURL *curl;
        TlsVerify tv;
        int fd;
        uint8_t *extra; /* bytes after the answer's head, handed out first */
        size_t extra_len, extra_off;
};

void remote_stream_free(RemoteStream *s) {
        if (!s)
                return;
        if (s->curl)
                curl_easy_cleanup(s->curl);
        free(s->extra);
        free(s);
}

int remote_stream_fd(const RemoteStream *s) {
        return s->fd;
}

ssize_t remote_stream_read(void *userdata, void *buf, size_t n) {
        RemoteStream *s = userdata;
        if (s->extra_off < s->extra_len) {
                size_t k = MIN(n, s->extra_len - s->extra_off);
                memcpy(buf, s->extra + s->extra_off, k);
                s->extra_off += k;
                return (ssize_t) k;
        }
        size_t got = 0;
        CURLcode cc = curl_easy_recv(s->curl, buf, n, &got);
        if (cc == CURLE_AGAIN)
                return -EAGAIN;
        if (cc != CURLE_OK)
                return -ECONNRESET;
        return (ssize_t) got;
}

ssize_t remote_stream_write(void *userdata, const void *buf, size_t n) {
        RemoteStream *s = userdata;
        size_t sent = 0;
        CURLcode cc = curl_easy_send(s->curl, buf, n, &sent);
        if (cc == CURLE_AGAIN)
                return -EAGAIN;
        if (cc != CURLE_OK)
                return -ECONNRESET;
        return (ssize_t) sent;
}

/* ---- the answer's head ---- */

size_t remote_stream_head_end(const char *buf, size_t len) {
        for (size_t i = 3; i < len; i++)
                if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
                        return i + 1;
        return 0;
}

/* A comma-separated list that holds token (case-insensitive). */
static bool list_has(const char *v, size_t len, const char *token) {
        size_t n = strlen(token), i = 0;
        while (i < len) {
                while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
                        i++;
                size_t start = i;
                while (i < len && v[i] != ',')
                        i++;
                size_t end = i;
                while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
                        end--;
                if (end - start == n && !strncasecmp(v + start, token, n))
                        return true;
        }
        return false;
}

int remote_stream_parse_head(const char *head, size_t len, const char *protocol, int *ret_status,
                             int64_t *ret_content_length, bool *ret_upgrade) {
        /* status line: HTTP/1.x SP DDD [SP reason] CRLF */
        if (len < 14 || memcmp(head, "HTTP/1.", 7) || (head[7] != '0' && head[7] != '1') || head[8] != ' ')
                return -EBADMSG;
        int status = 0;
        for (int i = 9; i < 12; i++) {
                if (head[i] < '0' || head[i] > '9')
                        return -EBADMSG;
                status = status * 10 + (head[i] - '0');
        }
        if (status < 100 || (head[12] != ' ' && head[12] != '\r'))
                return -EBADMSG;
        const char *p = memchr(head, '\n', len), *end = head + len;
        if (!p || p[-1] != '\r')
                return -EBADMSG;
        p++;
        int64_t clen = -1;
        bool upgrade = false;
        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t) (end - p));
                if (!eol || eol == p || eol[-1] != '\r')
                        return -EBADMSG;
                size_t n = (size_t) (eol - 1 - p);
                if (n == 0)
                        break; /* the blank line */
                const char *colon = memchr(p, ':', n);
                if (!colon || colon == p)
                        return -EBADMSG;
                size_t name_len = (size_t) (colon - p);
                const char *v = colon + 1;
                size_t vlen = (size_t) (eol - 1 - v);
                while (vlen > 0 && (*v == ' ' || *v == '\t'))
                        v++, vlen--;
                while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                        vlen--;
                if (name_len == 14 && !strncasecmp(p, "Content-Length", 14)) {
                        if (vlen == 0 || vlen > 18 || clen >= 0)
                                return -EBADMSG;
                        int64_t x = 0;
                        for (size_t i = 0; i < vlen; i++) {
                                if (v[i] < '0' || v[i] > '9')
                                        return -EBADMSG;
                                x = x * 10 + (v[i] - '0');
                        }
                        clen = x;
                } else if (name_len == 7 && !strncasecmp(p, "Upgrade", 7))
                        upgrade = upgrade || list_has(v, vlen, protocol);
                p = eol + 1;
        }
        *ret_status = status;
        *ret_content_length = clen;
        *ret_upgrade = upgrade;
        return 0;
}

/* ---- opening ---- */

static int wait_for(RemoteStream *s, short events, int timeout_ms) {
        struct pollfd p = { .fd = s->fd, .events = events };
        int k = poll(&p, 1, timeout_ms);
        if (k < 0)
                return errno == EINTR ? 0 : -errno;
        return k;
}

static int send_all(RemoteStream *s, const char *buf, size_t n, const char *url) {
        while (n > 0) {
                ssize_t k = remote_stream_write(s, buf, n);
                if (k == -EAGAIN) {
                        int w = wait_for(s, POLLOUT, REMOTE_STREAM_TIMEOUT_MS);
                        if (w < 0)
                                return w;
                        if (w == 0)
                                return err_set(-ETIMEDOUT, "%s: timed out sending the request", url);
                        continue;
                }
                if (k <= 0)
                        return err_set(-ECONNRESET, "%s closed the connection", url);
                buf += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Reads into buf[*have..cap) once something arrives: 1, 0 at the end, or -errno. */
static int recv_some(RemoteStream *s, char *buf, size_t cap, size_t *have, uint64_t deadline_ns, const char *url) {
        for (;;) {
                size_t got = 0;
                CURLcode cc = curl_easy_recv(s->curl, buf + *have, cap - *have, &got);
                if (cc == CURLE_OK) {
                        *have += got;
                        return got > 0;
                }
                if (cc != CURLE_AGAIN)
                        return err_set(-ECONNRESET, "%s: the connection failed: %s", url, curl_easy_strerror(cc));
                uint64_t now = now_ns();
                if (now >= deadline_ns)
                        return err_set(-ETIMEDOUT, "%s did not answer within %d s", url,
                                       REMOTE_STREAM_TIMEOUT_MS / 1000);
                int w = wait_for(s, POLLIN, (int) MIN((deadline_ns - now) / 1000000 + 1, (uint64_t) INT32_MAX));
                if (w < 0)
                        return w;
        }
}

/* HOST:PORT of an "http(s)://HOST:PORT[/...]" url, for the Host header. */
static int host_of(const char *url, char *buf, size_t size) {
        const char *h = strstr(url, "://");
        if (!h)
                return -EINVAL;
        h += 3;
        size_t n = strcspn(h, "/?#");
        if (n == 0 || n >= size || memchr(h, '@', n))
                return -EINVAL;
        memcpy(buf, h, n);
        buf[n] = 0;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) buf[i] <= ' ' || buf[i] == 0x7f)
                        return -EINVAL;
        return 0;
}

static bool header_safe(const char *v) {
        for (; *v; v++)
                if ((unsigned char) *v < ' ' || *v == 0x7f)
                        return false;
        return true;
}

static int error_answer(const char *url, const char *token, const char *buf, size_t have, size_t head_len,
                        int status, int64_t clen, RemoteStream *s, uint64_t deadline_ns, const char *path) {
        /* the body: Content-Length bytes (bounded), or up to the end */
        size_t want = clen >= 0 ? (size_t) MIN((uint64_t) clen, (uint64_t) REMOTE_STREAM_ERROR_BODY_MAX)
                                : REMOTE_STREAM_ERROR_BODY_MAX;
        _cleanup_free_ char *body = malloc(want + 1);
        if (!body)
                return -ENOMEM;
        size_t n = MIN(have - head_len, want);
        memcpy(body, buf + head_len, n);
        while (n < want) {
                int r = recv_some(s, body, want, &n, deadline_ns, url);
                if (r <= 0)
                        break; /* what came is what we have */
        }
        body[n] = 0;
        Remote *rem = NULL;
        int r = remote_new(url, token, NULL, &rem);
        if (r < 0)
                return r;
        RemoteResponse resp = { .status = status, .body = (uint8_t *) body, .len = n };
        r = remote_status_error(rem, &resp, path);
        if (r >= 0 || status / 100 == 2)
                r = err_set(-EPROTO, "%s answered HTTP %d to %s, not a switch to a byte stream (is it an older roam?)",
                            url, status, path);
        remote_free(rem);
        return r;
}

int remote_stream_open(const char *url, const char *token_in, const RemoteOptions *o, const char *path,
                       const char *protocol, RemoteStream **ret) {
        char host[512];
        if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) || host_of(url, host, sizeof host) < 0)
                return err_set(-EINVAL, "url '%s' is invalid (use http://HOST:PORT or https://HOST:PORT)",
                               url ? url : "");
        _cleanup_free_ char *token = NULL;
        RemoteTls tls;
        int r = remote_tls_config(token_in, o, &token, &tls);
        if (r < 0)
                return r;
        if ((token && (strlen(token) > 1024 || !header_safe(token))) || !header_safe(path) || !header_safe(protocol))
                return err_set(-EINVAL, "the token holds characters that cannot go into a request");
        curl_global_init(CURL_GLOBAL_DEFAULT);
        _cleanup_(remote_stream_freep) RemoteStream *s = calloc(1, sizeof *s);
        if (!s || !(s->curl = curl_easy_init()))
                return -ENOMEM;
        s->fd = -1;
        CURL *h = s->curl;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long) REMOTE_STREAM_TIMEOUT_MS);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
        r = remote_tls_setup(h, url, &tls, &s->tv);
        if (r < 0)
                return r;
        CURLcode cc = curl_easy_perform(h);
        if (cc != CURLE_OK && (r = remote_tls_error(url, &tls, &s->tv, cc)) < 0)
                return r;
        if (cc != CURLE_OK) {
                int e = cc == CURLE_COULDNT_CONNECT          ? -ECONNREFUSED
                        : cc == CURLE_OPERATION_TIMEDOUT     ? -ETIMEDOUT
                        : cc == CURLE_COULDNT_RESOLVE_HOST   ? -EHOSTUNREACH
                        : cc == CURLE_PEER_FAILED_VERIFICATION ? -EACCES
                                                             : -EIO;
                return err_set(e, "cannot reach %s: %s%s", url, curl_easy_strerror(cc),
                               e == -ECONNREFUSED ? " (is 'roam serve' running there?)" : "");
        }
        curl_socket_t sock;
        if (curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &sock) != CURLE_OK || sock == CURL_SOCKET_BAD)
                return err_set(-EIO, "cannot reach %s: no socket", url);
        s->fd = (int) sock;

        _cleanup_free_ char *req = NULL;
        if (asprintf(&req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\n%s%s%sConnection: Upgrade\r\nUpgrade: %s\r\n"
                     "User-Agent: roam\r\n\r\n",
                     path, host, token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "",
                     protocol) < 0)
                return -ENOMEM;
        r = send_all(s, req, strlen(req), url);
        if (r < 0)
                return r;

        _cleanup_free_ char *buf = malloc(REMOTE_STREAM_HEAD_MAX);
        if (!buf)
                return -ENOMEM;
        size_t have = 0, head_len = 0;
        uint64_t deadline = now_ns() + (uint64_t) REMOTE_STREAM_TIMEOUT_MS * 1000000;
        while (!(head_len = remote_stream_head_end(buf, have))) {
                if (have == REMOTE_STREAM_HEAD_MAX)
                        return err_set(-EBADMSG, "%s sent an answer head of more than %zu bytes", url,
                                       REMOTE_STREAM_HEAD_MAX);
                r = recv_some(s, buf, REMOTE_STREAM_HEAD_MAX, &have, deadline, url);
                if (r < 0)
                        return r;
                if (r == 0)
                        return err_set(-ECONNRESET, "%s closed the connection without an answer to %s", url, path);
        }
        int status;
        int64_t clen;
        bool upgrade;
        if (remote_stream_parse_head(buf, head_len, protocol, &status, &clen, &upgrade) < 0)
                return err_set(-EPROTO, "'%s' is not a roam server (a malformed HTTP answer to %s)", url, path);
        if (status != 101 || !upgrade)
                return error_answer(url, token, buf, have, head_len, status, clen, s, deadline, path);
        if (have > head_len) {
                if (!(s->extra = malloc(have - head_len)))
                        return -ENOMEM;
                memcpy(s->extra, buf + head_len, have - head_len);
                s->extra_len = have - head_len;
        }
        *ret = TAKE_PTR(s);
        return 0;
}
