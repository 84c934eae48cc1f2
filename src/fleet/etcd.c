/* SPDX-License-Identifier: MIT */
#include "etcd.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"
#include "../basic/macro.h"

struct EtcdClient {
        char *urls;
        char *ep[ETCD_ENDPOINTS_MAX];
        size_t n_ep, cur;
        CURL *h;
        unsigned connect_ms, request_ms;
        pthread_mutex_t mutex;
};

void etcd_client_set_timeouts(EtcdClient *c, unsigned connect_ms, unsigned request_ms) {
        c->connect_ms = connect_ms;
        c->request_ms = request_ms;
}

int etcd_client_new(const char *urls, EtcdClient **ret) {
        if (!urls || !*urls || strlen(urls) > ETCD_ENDPOINTS_MAX * (ETCD_URL_MAX + 1))
                return err_set(-EINVAL, "--etcd takes http://HOST:PORT[,http://HOST:PORT...] (up to %d members)",
                               ETCD_ENDPOINTS_MAX);
        EtcdClient *c = calloc(1, sizeof *c);
        if (!c || !(c->urls = strdup(urls))) {
                free(c);
                return -ENOMEM;
        }
        pthread_mutex_init(&c->mutex, NULL);
        c->connect_ms = ETCD_CONNECT_MS;
        c->request_ms = ETCD_REQUEST_MS;
        int r = 0;
        for (const char *p = urls; *p && r >= 0;) {
                const char *comma = strchr(p, ',');
                size_t len = comma ? (size_t) (comma - p) : strlen(p);
                while (len > 0 && p[len - 1] == '/')
                        len--; /* "http://h:2379/" */
                bool scheme = (len > 7 && !strncmp(p, "http://", 7)) || (len > 8 && !strncmp(p, "https://", 8));
                if (!scheme || len > ETCD_URL_MAX || c->n_ep == ETCD_ENDPOINTS_MAX || memchr(p, ' ', len) ||
                    memchr(p, '?', len))
                        r = err_set(-EINVAL, "etcd endpoint '%.*s' is not http(s)://HOST:PORT (at most %d, "
                                    "comma-separated)",
                                    (int) MIN(len, (size_t) ETCD_URL_MAX), p, ETCD_ENDPOINTS_MAX);
                else if (!(c->ep[c->n_ep++] = strndup(p, len)))
                        r = -ENOMEM;
                p = comma ? comma + 1 : p + len + strlen(p + len);
        }
        if (r >= 0 && c->n_ep == 0)
                r = err_set(-EINVAL, "no etcd endpoint in '%s'", urls);
        if (r >= 0 && !(c->h = curl_easy_init()))
                r = -ENOMEM;
        if (r < 0) {
                etcd_client_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void etcd_client_free(EtcdClient *c) {
        if (!c)
                return;
        for (size_t i = 0; i < c->n_ep; i++)
                free(c->ep[i]);
        if (c->h)
                curl_easy_cleanup(c->h);
        pthread_mutex_destroy(&c->mutex);
        free(c->urls);
        free(c);
}

const char *etcd_client_urls(const EtcdClient *c) {
        return c->urls;
}

typedef struct Sink {
        char *buf;
        size_t len, cap;
        bool over;
} Sink;

static size_t sink_cb(char *p, size_t sz, size_t n, void *userdata) {
        Sink *s = userdata;
        size_t add = sz * n;
        if (s->len + add > ETCD_BODY_MAX) {
                s->over = true;
                return 0;
        }
        if (s->len + add + 1 > s->cap) {
                size_t nc = MAX(s->cap * 2, s->len + add + 1);
                nc = MAX(nc, (size_t) 4096);
                char *nb = realloc(s->buf, nc);
                if (!nb)
                        return 0;
                s->buf = nb;
                s->cap = nc;
        }
        memcpy(s->buf + s->len, p, add);
        s->len += add;
        s->buf[s->len] = 0;
        return add;
}

/* POSTs body to path on a member that answers; the answer in *ret (caller
 * frees), NUL-terminated. Mutex held. */
static int post(EtcdClient *c, const char *path, const char *body, char **ret, size_t *ret_len) {
        char last[160] = "";
        for (size_t k = 0; k < c->n_ep; k++) {
                size_t i = (c->cur + k) % c->n_ep;
                char url[ETCD_URL_MAX + 64];
                snprintf(url, sizeof url, "%s%s", c->ep[i], path);
                Sink s = { 0 };
                CURL *h = c->h;
                curl_easy_reset(h);
                curl_easy_setopt(h, CURLOPT_URL, url);
                curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
                curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
                curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long) c->connect_ms);
                curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) c->request_ms);
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(body));
                curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_cb);
                curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
                CURLcode cc = curl_easy_perform(h);
                long code = 0;
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
                if (cc == CURLE_OK && code > 0 && code < 500) {
                        c->cur = i;
                        if (s.over) {
                                free(s.buf);
                                return err_set(-EBADMSG, "etcd at %s answered more than %u MiB", c->ep[i],
                                               ETCD_BODY_MAX >> 20);
                        }
                        if (!s.buf && !(s.buf = strdup("")))
                                return -ENOMEM;
                        *ret = s.buf;
                        *ret_len = s.len;
                        return 0;
                }
                free(s.buf);
                if (cc == CURLE_WRITE_ERROR && s.over)
                        return err_set(-EBADMSG, "etcd at %s answered more than %u MiB", c->ep[i],
                                       ETCD_BODY_MAX >> 20);
                snprintf(last, sizeof last, "%s: %s", c->ep[i],
                         cc != CURLE_OK ? curl_easy_strerror(cc) : code >= 500 ? "server error" : "no answer");
        }
        return err_set(-EHOSTUNREACH, "no etcd member answers (%s; last %s): is the cluster up?", c->urls, last);
}

typedef int (*ParseFn)(const char *body, size_t len, void *userdata);

static int call(EtcdClient *c, const char *path, char *body, ParseFn parse, void *userdata) {
        if (!body)
                return -ENOMEM;
        pthread_mutex_lock(&c->mutex);
        _cleanup_free_ char *answer = NULL;
        size_t len;
        int r = post(c, path, body, &answer, &len);
        pthread_mutex_unlock(&c->mutex);
        free(body);
        if (r < 0)
                return r;
        return parse(answer, len, userdata);
}

static int parse_range_cb(const char *b, size_t l, void *u) {
        return etcd_parse_range(b, l, u);
}

static int parse_header_cb(const char *b, size_t l, void *u) {
        int64_t rev;
        return etcd_parse_header(b, l, &rev);
}

static int range(EtcdClient *c, const char *key, bool prefix, EtcdRange *ret) {
        char *body = NULL;
        int r = etcd_body_range(key, prefix, &body);
        if (r < 0)
                return err_set(r, "etcd key '%.80s' is too long or empty", key);
        return call(c, "/v3/kv/range", body, parse_range_cb, ret);
}

int etcd_get(EtcdClient *c, const char *key, EtcdRange *ret) {
        return range(c, key, false, ret);
}

int etcd_get_prefix(EtcdClient *c, const char *prefix, EtcdRange *ret) {
        return range(c, prefix, true, ret);
}

int etcd_put(EtcdClient *c, const char *key, const char *value, int64_t lease) {
        char *body = NULL;
        int r = etcd_body_put(key, value, lease, &body);
        if (r < 0)
                return err_set(r, "etcd key '%.80s' or its value is too long", key);
        return call(c, "/v3/kv/put", body, parse_header_cb, NULL);
}

int etcd_delete(EtcdClient *c, const char *key) {
        char *body = NULL;
        int r = etcd_body_delete(key, &body);
        if (r < 0)
                return err_set(r, "etcd key '%.80s' is too long or empty", key);
        return call(c, "/v3/kv/deleterange", body, parse_header_cb, NULL);
}

typedef struct TxnOut {
        bool succeeded;
        EtcdRange *range;
} TxnOut;

static int parse_txn_cb(const char *b, size_t l, void *u) {
        TxnOut *t = u;
        return etcd_parse_txn(b, l, &t->succeeded, t->range);
}

int etcd_txn(EtcdClient *c, const EtcdCmp *cmp, size_t ncmp, const EtcdOp *ok, size_t nok, const EtcdOp *fail,
             size_t nfail, bool *ret_succeeded, EtcdRange *ret_range) {
        char *body = NULL;
        int r = etcd_body_txn(cmp, ncmp, ok, nok, fail, nfail, &body);
        if (r < 0)
                return err_set(r, "an etcd transaction with a key or value over the bounds");
        TxnOut t = { .range = ret_range };
        r = call(c, "/v3/kv/txn", body, parse_txn_cb, &t);
        if (r < 0)
                return r;
        *ret_succeeded = t.succeeded;
        return 0;
}

typedef struct LeaseOut {
        int64_t id, ttl;
} LeaseOut;

static int parse_lease_cb(const char *b, size_t l, void *u) {
        LeaseOut *o = u;
        return etcd_parse_lease(b, l, &o->id, &o->ttl);
}

int etcd_lease_grant(EtcdClient *c, int64_t ttl_s, int64_t *ret_id) {
        char *body = NULL;
        int r = etcd_body_lease("TTL", ttl_s, &body);
        if (r < 0)
                return r;
        LeaseOut o;
        r = call(c, "/v3/lease/grant", body, parse_lease_cb, &o);
        if (r < 0)
                return r;
        if (o.id == 0 || o.ttl <= 0)
                return err_set(-EBADMSG, "etcd granted no lease");
        *ret_id = o.id;
        return 0;
}

int etcd_lease_keepalive(EtcdClient *c, int64_t id, int64_t *ret_ttl) {
        char *body = NULL;
        int r = etcd_body_lease("ID", id, &body);
        if (r < 0)
                return r;
        LeaseOut o;
        r = call(c, "/v3/lease/keepalive", body, parse_lease_cb, &o);
        if (r < 0)
                return r;
        *ret_ttl = o.id == id ? o.ttl : 0;
        return 0;
}

int etcd_lease_revoke(EtcdClient *c, int64_t id) {
        char *body = NULL;
        int r = etcd_body_lease("ID", id, &body);
        if (r < 0)
                return r;
        return call(c, "/v3/lease/revoke", body, parse_header_cb, NULL);
}
