/* SPDX-License-Identifier: MIT */
/* Unit tests for TLS with pinning: fingerprints and pairing tokens
 * (crypto/fingerprint), the home's own key and certificate and the checks
 * of a given pair (crypto/tls-cert), and the client's pin against the real
 * HTTPS server on loopback (http/server + sync/remote + crypto/tls-verify):
 * the right pin passes, another is refused before the request goes out
 * with both fingerprints, no pin falls back to the CA chain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/error.h"
#include "basic/fileio.h"
#include "basic/hash.h"
#include "basic/macro.h"
#include "crypto/fingerprint.h"
#include "crypto/tls-cert.h"
#include "http/server.h"
#include "sync/remote.h"

#define HEX64 "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

static void test_fingerprint_text(void **state) {
        Fingerprint a, b;
        char buf[FINGERPRINT_TEXT_SIZE];
        assert_int_equal(fingerprint_parse("sha256:" HEX64, &a), 0);
        assert_string_equal(fingerprint_format(&a, buf), "sha256:" HEX64);
        /* as openssl x509 -fingerprint and browsers show it */
        assert_int_equal(fingerprint_parse("9F:86:D0:81:88:4C:7D:65:9A:2F:EA:A0:C5:5A:D0:15:A3:BF:4F:1B:2B:0B:82:2C:D1:5D:"
                                           "6C:15:B0:F0:0A:08", &b), 0);
        assert_true(fingerprint_equal(&a, &b));
        assert_int_equal(fingerprint_parse("SHA256:" HEX64, &b), 0);
        assert_int_equal(fingerprint_parse(HEX64, &b), 0);
        assert_true(fingerprint_equal(&a, &b));
        static const char *const bad[] = {
                "", "sha256:", "sha256:" HEX64 "00", "sha256:9f86", "md5:" HEX64, "sha256: " HEX64,
                "9f:86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", /* colons here and there */
                "sha256:" HEX64 ":", "sha256:zz86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(fingerprint_parse(bad[i], &b), -EINVAL);
        assert_int_equal(fingerprint_parse(NULL, &b), -EINVAL);
}

static void test_pairing_token(void **state) {
        char *t = NULL, *joined = NULL;
        Fingerprint fp, want;
        bool has;
        assert_int_equal(fingerprint_parse(HEX64, &want), 0);
        assert_int_equal(pairing_token_split("roam_abc", &t, &fp, &has), 0);
        assert_string_equal(t, "roam_abc");
        assert_false(has);
        free(t);
        assert_int_equal(pairing_token_split("roam_abc@sha256:" HEX64, &t, &fp, &has), 0);
        assert_string_equal(t, "roam_abc");
        assert_true(has);
        assert_true(fingerprint_equal(&fp, &want));
        assert_int_equal(pairing_token_join(t, &fp, &joined), 0);
        assert_string_equal(joined, "roam_abc@sha256:" HEX64);
        assert_int_equal(pairing_token_join(joined, &fp, &t), -EINVAL); /* one fingerprint only */
        free(joined);
        free(t);
        err_clear();
        assert_int_equal(pairing_token_split("roam_abc@sha256:12", &t, &fp, &has), -EINVAL);
        assert_non_null(strstr(err_message(-EINVAL), "after '@'"));
        assert_null(strstr(err_message(-EINVAL), "roam_abc")); /* never the secret */
        assert_int_equal(pairing_token_split("@sha256:" HEX64, &t, &fp, &has), -EINVAL);
        assert_int_equal(pairing_token_split("", &t, &fp, &has), -EINVAL);
        char big[PAIRING_TOKEN_MAX + 2];
        memset(big, 'a', sizeof big - 1);
        big[sizeof big - 1] = 0;
        assert_int_equal(pairing_token_split(big, &t, &fp, &has), -EINVAL);
}

static char *tmpdir(void) {
        char *d = strdup("/tmp/roam-unit-tls-XXXXXX");
        assert_non_null(mkdtemp(d));
        return d;
}

static void test_home_pair(void **state) {
        _cleanup_free_ char *home = tmpdir();
        Fingerprint fp, again, direct;
        char *cert = NULL, *key = NULL;
        bool created = false;
        assert_int_equal(tls_home_cert_fingerprint(home, &fp), -ENOENT); /* nothing made by looking */
        assert_int_equal(tls_home_cert_ensure(home, &cert, &key, &fp, &created), 0);
        assert_true(created);
        struct stat st;
        assert_int_equal(stat(key, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(tls_cert_file_fingerprint(cert, &direct), 0);
        assert_true(fingerprint_equal(&fp, &direct));
        /* the same pair the next time, and for a reader */
        assert_int_equal(tls_home_cert_ensure(home, NULL, NULL, &again, &created), 0);
        assert_false(created);
        assert_true(fingerprint_equal(&fp, &again));
        assert_int_equal(tls_home_cert_fingerprint(home, &again), 0);
        assert_true(fingerprint_equal(&fp, &again));
        /* a crash after the key: the certificate is made again, for that key */
        _cleanup_free_ char *key_text = NULL, *key_after = NULL;
        size_t n, n2;
        assert_int_equal(read_full_file(key, 4096, &key_text, &n), 0);
        assert_int_equal(unlink(cert), 0);
        assert_int_equal(tls_home_cert_ensure(home, NULL, NULL, &again, &created), 0);
        assert_true(created);
        assert_int_equal(read_full_file(key, 4096, &key_after, &n2), 0);
        assert_true(n == n2 && !memcmp(key_text, key_after, n));
        assert_int_equal(tls_cert_check_pair(cert, key, &direct), 0);
        /* a certificate without its key: named, nothing made */
        assert_int_equal(unlink(key), 0);
        err_clear();
        assert_int_equal(tls_home_cert_ensure(home, NULL, NULL, &again, NULL), -ENOENT);
        assert_non_null(strstr(err_message(-ENOENT), "has no key"));
        assert_int_equal(access(key, F_OK), -1);
        free(cert);
        free(key);
        assert_int_equal(rm_rf(home), 0);
}

static void test_check_pair(void **state) {
        _cleanup_free_ char *a = tmpdir(), *b = tmpdir();
        char *ca, *ka, *cb, *kb;
        Fingerprint fa, fb, f;
        assert_int_equal(tls_home_cert_ensure(a, &ca, &ka, &fa, NULL), 0);
        assert_int_equal(tls_home_cert_ensure(b, &cb, &kb, &fb, NULL), 0);
        assert_false(fingerprint_equal(&fa, &fb));
        assert_int_equal(tls_cert_check_pair(ca, ka, &f), 0);
        assert_true(fingerprint_equal(&f, &fa));
        err_clear();
        assert_int_equal(tls_cert_check_pair(ca, kb, &f), -EINVAL);
        assert_non_null(strstr(err_message(-EINVAL), "does not belong to certificate"));
        assert_int_equal(tls_cert_check_pair(ka, ka, &f), -EINVAL); /* a key as the certificate */
        assert_non_null(strstr(err_message(-EINVAL), "is not a PEM certificate"));
        assert_int_equal(tls_cert_check_pair(ca, ca, &f), -EINVAL);
        assert_non_null(strstr(err_message(-EINVAL), "is not an unencrypted PEM private key"));
        _cleanup_free_ char *none = path_join(a, "none.pem");
        assert_int_equal(tls_cert_check_pair(none, ka, &f), -ENOENT);
        free(ca), free(ka), free(cb), free(kb);
        assert_int_equal(rm_rf(a), 0);
        assert_int_equal(rm_rf(b), 0);
}

static int h_hello(HttpRequest *req, void *userdata) {
        (*(int *) userdata)++;
        return http_reply_json(req, 200, json_pack("{s:s}", "hello", "pinned"));
}

/* One GET /hello through a Remote with token; the HTTP status or -errno. */
static int get_hello(const char *url, const char *token, const char *fingerprint) {
        RemoteOptions ro = { .fingerprint = fingerprint, .connect_timeout_s = 5 };
        _cleanup_(remote_freep) Remote *r = NULL;
        int k = remote_new(url, token, &ro, &r);
        if (k < 0)
                return k;
        _cleanup_(remote_conn_freep) RemoteConn *c = remote_conn_new(r);
        RemoteResponse resp;
        k = remote_request(c, "GET", "/hello", NULL, 0, NULL, 4096, &resp);
        if (k < 0)
                return k;
        remote_response_done(&resp);
        return (int) resp.status;
}

static void test_pinned_client(void **state) {
        _cleanup_free_ char *home = tmpdir(), *other = tmpdir();
        char *cert, *key;
        Fingerprint fp, ofp;
        assert_int_equal(tls_home_cert_ensure(home, &cert, &key, &fp, NULL), 0);
        assert_int_equal(tls_home_cert_ensure(other, NULL, NULL, &ofp, NULL), 0);
        int hits = 0;
        static const HttpRoute routes[] = { { "GET", "/hello", 0, h_hello } };
        HttpServerOptions o = { .listen = "127.0.0.1:0", .tls_cert = cert, .tls_key = key };
        HttpServer *s = NULL;
        assert_int_equal(http_server_new(&o, &s), 0);
        assert_int_equal(http_server_add_routes(s, routes, 1, &hits), 0);
        assert_int_equal(http_server_start(s), 0);
        const char *url = http_server_url(s);
        assert_int_equal(strncmp(url, "https://", 8), 0);
        char good[FINGERPRINT_TEXT_SIZE], bad[FINGERPRINT_TEXT_SIZE], *pinned = NULL, *wrong = NULL;
        fingerprint_format(&fp, good);
        fingerprint_format(&ofp, bad);
        assert_int_equal(pairing_token_join("roam_t", &fp, &pinned), 0);
        assert_int_equal(pairing_token_join("roam_t", &ofp, &wrong), 0);

        assert_int_equal(get_hello(url, pinned, NULL), 200);
        assert_int_equal(get_hello(url, "roam_t", good), 200);
        assert_int_equal(get_hello(url, wrong, good), 200); /* the option wins over the token */
        assert_int_equal(hits, 3);
        err_clear();
        assert_int_equal(get_hello(url, wrong, NULL), -EKEYREJECTED);
        const char *msg = err_message(-EKEYREJECTED);
        assert_non_null(strstr(msg, good));
        assert_non_null(strstr(msg, bad));
        assert_null(strchr(msg, '\n'));
        err_clear();
        assert_int_equal(get_hello(url, "roam_t", NULL), -EKEYREJECTED); /* no pin: a CA chain, and there is none */
        assert_non_null(strstr(err_message(-EKEYREJECTED), good));
        assert_int_equal(hits, 3); /* nothing refused reached a handler */
        /* a pin means nothing over plain HTTP */
        http_server_free(s);
        HttpServerOptions plain = { .listen = "127.0.0.1:0" };
        assert_int_equal(http_server_new(&plain, &s), 0);
        assert_int_equal(http_server_add_routes(s, routes, 1, &hits), 0);
        assert_int_equal(http_server_start(s), 0);
        assert_int_equal(get_hello(http_server_url(s), pinned, NULL), 200);
        http_server_free(s);
        free(pinned), free(wrong), free(cert), free(key);
        assert_int_equal(rm_rf(home), 0);
        assert_int_equal(rm_rf(other), 0);
}

/* ---- a route that watches its body while it comes (HttpBodyObserver) ---- */

typedef struct Watch {
        const uint8_t *first; /* the buffer of the first piece */
        size_t feeds, last_len;
        bool moved, shrank;
} Watch;
static unsigned watches_done;

static void watch_feed(HttpRequest *req, const uint8_t *body, size_t len, void **state, void *userdata) {
        Watch *w = *state;
        if (!w) {
                if (len < 1000)
                        return; /* it may wait for more before it starts */
                w = *state = calloc(1, sizeof *w);
                assert_non_null(w);
                w->first = body;
        }
        w->moved |= body != w->first;
        w->shrank |= len < w->last_len;
        w->last_len = len;
        w->feeds++;
}

static void watch_done(void *state) {
        watches_done++;
        free(state);
}

static const HttpBodyObserver watcher = { .feed = watch_feed, .done = watch_done };

static int h_watched(HttpRequest *req, void *userdata) {
        const Watch *w = http_request_observed(req);
        size_t len;
        const void *body = http_request_body(req, &len);
        return http_reply_json(req, 200,
                               json_pack("{s:I, s:b, s:b, s:b}", "feeds", (json_int_t) (w ? w->feeds : 0), "whole",
                                         w && w->last_len == len, "same", w && w->first == body && !w->moved,
                                         "grew", w && !w->shrank));
}

static json_t *post_watched(const char *url, const char *path, const void *body, size_t len) {
        _cleanup_(remote_freep) Remote *r = NULL;
        assert_int_equal(remote_new(url, "t", &(RemoteOptions){ .connect_timeout_s = 5 }, &r), 0);
        _cleanup_(remote_conn_freep) RemoteConn *c = remote_conn_new(r);
        RemoteResponse resp;
        assert_int_equal(remote_request(c, "POST", path, body, len, NULL, 4096, &resp), 0);
        assert_int_equal(resp.status, 200);
        json_t *j = json_loadb((const char *) resp.body, resp.len, 0, NULL);
        remote_response_done(&resp);
        assert_non_null(j);
        return j;
}

static void test_body_observer(void **state) {
        static const HttpRoute routes[] = {
                { "POST", "/watched", 8u << 20, h_watched, .observe = &watcher },
        };
        HttpServerOptions o = { .listen = "127.0.0.1:0" };
        HttpServer *s = NULL;
        assert_int_equal(http_server_new(&o, &s), 0);
        assert_int_equal(http_server_add_routes(s, routes, 1, NULL), 0);
        assert_int_equal(http_server_start(s), 0);
        size_t big = 4u << 20;
        uint8_t *body = malloc(big);
        assert_non_null(body);
        for (size_t i = 0; i < big; i++)
                body[i] = (uint8_t) (i * 7);
        /* 4 MiB come in many pieces: each one fed, in one buffer that only grows */
        json_t *j = post_watched(http_server_url(s), "/watched", body, big);
        assert_true(json_integer_value(json_object_get(j, "feeds")) > 1);
        assert_true(json_is_true(json_object_get(j, "whole")));
        assert_true(json_is_true(json_object_get(j, "same")));
        assert_true(json_is_true(json_object_get(j, "grew")));
        json_decref(j);
        /* a small body: the observer never started, and nothing is done */
        j = post_watched(http_server_url(s), "/watched", body, 10);
        assert_int_equal(json_integer_value(json_object_get(j, "feeds")), 0);
        json_decref(j);
        http_server_free(s); /* the requests ended */
        assert_int_equal(watches_done, 1);
        free(body);
}

/* ---- a body streamed while it is made, signed in its trailer ---- */

static int h_streamed(HttpRequest *req, void *userdata) {
        const Watch *w = http_request_observed(req);
        size_t len;
        const void *body = http_request_body(req, &len);
        RoamId sum;
        char hex[ID_HEX_SIZE];
        sha256(body, len, &sum);
        const char *sig = http_request_trailer(req, "Roam-Signature");
        return http_reply_json(req, 200,
                               json_pack("{s:I, s:I, s:b, s:s, s:s, s:b}", "len", (json_int_t) len, "feeds",
                                         (json_int_t) (w ? w->feeds : 0), "same", w && w->first == body && !w->moved,
                                         "sha", id_to_hex(&sum, hex), "trailer", sig ? sig : "", "in_header",
                                         http_request_header(req, "Roam-Signature") != NULL));
}

typedef struct Source {
        size_t len, at, fail_at; /* fail_at: a read there fails (0: never) */
} Source;

static ssize_t source_read(void *userdata, void *buf, size_t max) {
        Source *src = userdata;
        if (src->fail_at && src->at >= src->fail_at)
                return -EIO;
        size_t n = MIN(MIN(max, src->len - src->at), (size_t) 10000); /* pieces of a pack's records */
        for (size_t i = 0; i < n; i++)
                ((uint8_t *) buf)[i] = (uint8_t) ((src->at + i) * 13);
        src->at += n;
        return (ssize_t) n;
}

/* A signer whose "signature" is the hex of the body's hash: what the
 * server got is compared with what went. */
static int fake_sign(void *userdata, const char *method, const char *path, const void *body, size_t len,
                     char **ret) {
        *ret = NULL;
        return 0;
}
static int fake_sign_digest(void *userdata, const char *method, const char *path, const RoamId *sha, char **ret) {
        char hex[ID_HEX_SIZE];
        return asprintf(ret, "Roam-Laptop: L\nRoam-Nonce: N\nRoam-Signature: %s", id_to_hex(sha, hex)) < 0 ? -ENOMEM
                                                                                                          : 0;
}
static void fake_refused(void *userdata) {
}

static const RemoteSigner fake_signer = { .sign = fake_sign, .sign_digest = fake_sign_digest,
                                          .nonce_refused = fake_refused };

static int post_streamed_on(Remote *r, Source *src, uint64_t bound, json_t **ret) {
        RemoteResponse resp;
        int k = remote_request_stream(r, "POST", "/streamed", source_read, src, bound, NULL, 4096, &resp);
        if (k < 0)
                return k;
        int status = (int) resp.status;
        *ret = json_loadb((const char *) resp.body, resp.len, 0, NULL);
        remote_response_done(&resp);
        return status;
}

static int post_streamed(const char *url, Source *src, uint64_t bound, json_t **ret) {
        _cleanup_(remote_freep) Remote *r = NULL;
        assert_int_equal(
                remote_new(url, "t", &(RemoteOptions){ .connect_timeout_s = 5, .signer = &fake_signer }, &r), 0);
        return post_streamed_on(r, src, bound, ret);
}

static void test_stream_trailer(void **state) {
        static const HttpRoute routes[] = {
                { "POST", "/streamed", 8u << 20, h_streamed, .observe = &watcher },
        };
        HttpServerOptions o = { .listen = "127.0.0.1:0" };
        HttpServer *s = NULL;
        assert_int_equal(http_server_new(&o, &s), 0);
        assert_int_equal(http_server_add_routes(s, routes, 1, NULL), 0);
        assert_int_equal(http_server_start(s), 0);
        const char *url = http_server_url(s);
        /* 3 MiB, chunked, within a bound of 4 MiB: watched as it came in one
         * buffer, and the trailer is the hash of exactly what the server got */
        Source src = { .len = 3u << 20 };
        json_t *j = NULL;
        assert_int_equal(post_streamed(url, &src, 4u << 20, &j), 200);
        assert_int_equal(json_integer_value(json_object_get(j, "len")), 3u << 20);
        assert_true(json_integer_value(json_object_get(j, "feeds")) > 1);
        assert_true(json_is_true(json_object_get(j, "same")));
        assert_false(json_is_true(json_object_get(j, "in_header")));
        assert_string_equal(json_string_value(json_object_get(j, "trailer")),
                            json_string_value(json_object_get(j, "sha")));
        json_decref(j);
        /* again and again through one Remote, with buffered requests on its
         * pooled handles in between: each has its trailer (libcurl 7.88 sent
         * none on a handle that had sent one, and crashed after) */
        _cleanup_(remote_freep) Remote *r = NULL;
        assert_int_equal(
                remote_new(url, "t", &(RemoteOptions){ .connect_timeout_s = 5, .signer = &fake_signer }, &r), 0);
        for (int i = 0; i < 3; i++) {
                src = (Source){ .len = 100000 + (size_t) i };
                assert_int_equal(post_streamed_on(r, &src, 1u << 20, &j), 200);
                assert_string_equal(json_string_value(json_object_get(j, "trailer")),
                                    json_string_value(json_object_get(j, "sha")));
                json_decref(j);
                _cleanup_(remote_conn_freep) RemoteConn *c = remote_conn_new(r);
                RemoteResponse resp;
                assert_int_equal(remote_request(c, "POST", "/streamed", "{}", 2, NULL, 4096, &resp), 0);
                assert_int_equal(resp.status, 200);
                remote_response_done(&resp);
        }
        /* more than its bound: the server ends the connection, nothing acted */
        src = (Source){ .len = 3u << 20 };
        err_clear();
        int k = post_streamed(url, &src, 1u << 20, &j);
        assert_true(k < 0);
        /* a bound beyond the route's limit: 413 before any byte is read */
        src = (Source){ .len = 1000 };
        assert_int_equal(post_streamed(url, &src, 9u << 20, &j), 413);
        json_decref(j);
        /* a body that cannot be made: -ECANCELED, with the reason */
        src = (Source){ .len = 3u << 20, .fail_at = 1u << 20 };
        err_clear();
        assert_int_equal(post_streamed(url, &src, 4u << 20, &j), -ECANCELED);
        assert_non_null(strstr(err_message(-ECANCELED), "could not be made"));
        http_server_free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fingerprint_text), cmocka_unit_test(test_pairing_token),
                cmocka_unit_test(test_home_pair),        cmocka_unit_test(test_check_pair),
                cmocka_unit_test(test_pinned_client),    cmocka_unit_test(test_body_observer),
                cmocka_unit_test(test_stream_trailer),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
