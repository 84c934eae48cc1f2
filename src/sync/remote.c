/* SPDX-License-Identifier: MIT */
#include "remote.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"
#include "../basic/hash.h"
#include "../basic/macro.h"
#include "remote-tls.h"

#define POOL_MAX 16

struct Remote {
        char *url;
        char *auth_header;
        RemoteOptions o;
        RemoteTls tls;
        /* idle handles with their keep-alive connections: a new RemoteConn
         * reuses one, so a sequence of requests pays the TCP (and TLS)
         * handshake once, not once per call (a WAN round trip or more) */
        pthread_mutex_t lock;
        CURL *pool[POOL_MAX];
        size_t n_pool;
};

struct RemoteConn {
        Remote *r;
        CURL *curl;
        TlsVerify tv; /* what the last handshake saw */
        RemoteObserveFn observe; /* remote_conn_observe() */
        void *observe_userdata;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
}

int remote_new(const char *url, const char *token, const RemoteOptions *o, Remote **ret) {
        if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)))
                return err_set(-EINVAL, "url '%s' is invalid (use http://HOST:PORT or https://HOST:PORT)",
                               url ? url : "");
        if (strlen(url) > 2048)
                return err_set(-EINVAL, "url is too long");
        pthread_once(&curl_once, curl_init_once);
        _cleanup_free_ char *bearer = NULL;
        RemoteTls tls;
        int k = remote_tls_config(token, o, &bearer, &tls);
        if (k < 0)
                return k;
        Remote *r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->tls = tls;
        r->url = strdup(url);
        if (r->url) {
                size_t n = strlen(r->url);
                while (n > 0 && r->url[n - 1] == '/')
                        r->url[--n] = 0;
        }
        if (bearer && asprintf(&r->auth_header, "Authorization: Bearer %s", bearer) < 0)
                r->auth_header = NULL;
        if (bearer)
                explicit_bzero(bearer, strlen(bearer));
        if (!r->url || (bearer && !r->auth_header)) {
                remote_free(r);
                return -ENOMEM;
        }
        if (o)
                r->o = *o;
        if (!r->o.connect_timeout_s)
                r->o.connect_timeout_s = 10;
        if (!r->o.stall_timeout_s)
                r->o.stall_timeout_s = 30;
        pthread_mutex_init(&r->lock, NULL);
        *ret = r;
        return 0;
}

void remote_free(Remote *r) {
        if (!r)
                return;
        for (size_t i = 0; i < r->n_pool; i++)
                curl_easy_cleanup(r->pool[i]);
        pthread_mutex_destroy(&r->lock);
        free(r->url);
        free(r->auth_header);
        free(r);
}

const char *remote_url(const Remote *r) {
        return r->url;
}

bool remote_pinned(const Remote *r, Fingerprint *ret) {
        if (r->tls.pinned && ret)
                *ret = r->tls.pin;
        return r->tls.pinned;
}

RemoteConn *remote_conn_new(Remote *r) {
        RemoteConn *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->r = r;
        pthread_mutex_lock(&r->lock);
        if (r->n_pool > 0)
                c->curl = r->pool[--r->n_pool];
        pthread_mutex_unlock(&r->lock);
        if (!c->curl)
                c->curl = curl_easy_init();
        if (!c->curl) {
                free(c);
                return NULL;
        }
        return c;
}

void remote_conn_free(RemoteConn *c) {
        if (!c)
                return;
        Remote *r = c->r;
        pthread_mutex_lock(&r->lock);
        if (r->n_pool < POOL_MAX) {
                r->pool[r->n_pool++] = c->curl;
                c->curl = NULL;
        }
        pthread_mutex_unlock(&r->lock);
        if (c->curl)
                curl_easy_cleanup(c->curl);
        free(c);
}

typedef struct Sink {
        uint8_t *p;
        size_t n, cap, max;
        bool overflow;
        RemoteObserveFn observe; /* the buffer never moves then: allocated whole */
        void *observe_userdata;
} Sink;

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata) {
        Sink *s = userdata;
        size_t n = size * nmemb;
        if (s->n + n > s->max) {
                s->overflow = true;
                return 0; /* aborts the transfer */
        }
        if (s->n + n + 1 > s->cap) {
                size_t nc = s->cap ? s->cap : 64 * 1024;
                while (nc < s->n + n + 1)
                        nc *= 2;
                uint8_t *np = realloc(s->p, nc);
                if (!np)
                        return 0;
                s->p = np;
                s->cap = nc;
        }
        memcpy(s->p + s->n, data, n);
        s->n += n;
        s->p[s->n] = 0;
        if (s->observe)
                s->observe(s->observe_userdata, s->p, s->n);
        return n;
}

static int curl_to_errno(CURLcode cc) {
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_RESOLVE_HOST:
                return -EHOSTUNREACH;
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CONNECT_ERROR:
                return -EKEYREJECTED;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
                return -ECONNRESET;
        default:
                return -EIO;
        }
}

/* Appends the lines of text ("Name: value", joined by '\n') to list. */
static struct curl_slist *append_lines(struct curl_slist *list, const char *text) {
        for (const char *p = text; p && *p;) {
                size_t n = strcspn(p, "\n");
                _cleanup_free_ char *line = strndup(p, n);
                if (line)
                        list = curl_slist_append(list, line);
                p += n + (p[n] == '\n');
        }
        return list;
}

/* A body sent while it is made (remote_request_stream()). */
typedef struct Upload {
        RemoteReadFn read;
        void *userdata;
        uint64_t bound;
        const RemoteSigner *signer; /* NULL: unsigned */
        Sha256Ctx *sha;             /* of what went, when signed */
        const char *method, *path;
        uint64_t sent;
        int error; /* of read or of signing: the transfer was aborted */
} Upload;

static size_t upload_read_cb(char *buf, size_t size, size_t nitems, void *userdata) {
        Upload *u = userdata;
        ssize_t n = u->read(u->userdata, buf, size * nitems);
        if (n < 0) {
                u->error = (int) n;
                return CURL_READFUNC_ABORT;
        }
        if (u->sha)
                sha256_ctx_update(u->sha, buf, (size_t) n);
        u->sent += (uint64_t) n;
        return (size_t) n;
}

/* After the last chunk: the signature of what went, as trailer fields. */
static int upload_trailer_cb(struct curl_slist **list, void *userdata) {
        Upload *u = userdata;
        if (!u->signer)
                return CURL_TRAILERFUNC_OK;
        RoamId h;
        sha256_ctx_final(u->sha, &h);
        _cleanup_free_ char *lines = NULL;
        int k = u->signer->sign_digest(u->signer->userdata, u->method, u->path, &h, &lines);
        if (k < 0) {
                u->error = k;
                return CURL_TRAILERFUNC_ABORT;
        }
        *list = append_lines(*list, lines);
        return CURL_TRAILERFUNC_OK;
}

/* One request: body (len bytes, may be NULL) or, with up, a body streamed. */
static int request_once(RemoteConn *c, const char *method, const char *path, const void *body, size_t len,
                        Upload *up, const char *content_type, const char *extra_headers, size_t max_response,
                        RemoteResponse *ret) {
        Remote *r = c->r;
        CURL *h = c->curl;
        _cleanup_free_ char *url = NULL;
        if (asprintf(&url, "%s%s", r->url, path) < 0)
                return -ENOMEM;
        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long) r->o.connect_timeout_s);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long) r->o.stall_timeout_s);
        curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        int k = remote_tls_setup(h, url, &r->tls, &c->tv);
        if (k < 0)
                return k;
        if (r->o.limit_rate) {
                curl_easy_setopt(h, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t) r->o.limit_rate);
                curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t) r->o.limit_rate);
        }
        struct curl_slist *hdrs = NULL;
        if (r->auth_header)
                hdrs = curl_slist_append(hdrs, r->auth_header);
        char ct[128];
        snprintf(ct, sizeof ct, "Content-Type: %s", content_type ? content_type : "application/octet-stream");
        if (body || up || strcmp(method, "GET"))
                hdrs = curl_slist_append(hdrs, ct);
        hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */
        hdrs = append_lines(hdrs, extra_headers);
        if (up) {
                char bh[64];
                snprintf(bh, sizeof bh, "%s: %llu", REMOTE_BODY_BOUND_HEADER, (unsigned long long) up->bound);
                hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
                hdrs = curl_slist_append(hdrs, bh);
                char th[256];
                if (up->signer && up->signer->trailer_fields) {
                        /* announced: a server that gets none can say so */
                        snprintf(th, sizeof th, "Trailer: %s", up->signer->trailer_fields);
                        hdrs = curl_slist_append(hdrs, th);
                }
        }
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        if (up) {
                curl_easy_setopt(h, CURLOPT_POST, 1L);
                if (strcmp(method, "POST"))
                        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
                curl_easy_setopt(h, CURLOPT_READFUNCTION, upload_read_cb);
                curl_easy_setopt(h, CURLOPT_READDATA, up);
                curl_easy_setopt(h, CURLOPT_TRAILERFUNCTION, upload_trailer_cb);
                curl_easy_setopt(h, CURLOPT_TRAILERDATA, up);
        } else if (!strcmp(method, "GET"))
                curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        else {
                curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) (body ? len : 0));
        }
        Sink sink = { .max = max_response, .observe = c->observe, .observe_userdata = c->observe_userdata };
        if (sink.observe) {
                /* the observer keeps pointers into the body: it must not move
                 * (pages are only touched as bytes come) */
                sink.p = malloc(max_response + 1);
                if (!sink.p) {
                        curl_slist_free_all(hdrs);
                        return -ENOMEM;
                }
                sink.cap = max_response + 1;
        }
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
        CURLcode cc = curl_easy_perform(h);
        curl_slist_free_all(hdrs);
        if (sink.observe && (sink.overflow || cc != CURLE_OK))
                sink.observe(sink.observe_userdata, NULL, 0); /* the body goes away */
        if (sink.overflow) {
                free(sink.p);
                return err_set(-EFBIG, "answer from %s is larger than %zu bytes", url, max_response);
        }
        if (cc != CURLE_OK) {
                free(sink.p);
                if (up && up->error < 0) /* the body's own failure: nothing was carried out */
                        return err_set(-ECANCELED, "the body of %s %s could not be made (%s); it was not sent whole",
                                       method, path, err_message(up->error));
                k = remote_tls_error(r->url, &r->tls, &c->tv, cc);
                if (k < 0)
                        return k;
                return err_set(curl_to_errno(cc), "cannot reach %s: %s", r->url, curl_easy_strerror(cc));
        }
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        *ret = (RemoteResponse){
                .status = status,
                .body = sink.p ? sink.p : (uint8_t *) strdup(""),
                .len = sink.n,
                .wire_bytes = sink.n + (up ? up->sent : body ? len : 0),
        };
        return 0;
}

/* A 401 whose body says {"nonce_refused": true}: sign again with a new nonce. */
static bool nonce_refused(const RemoteResponse *resp) {
        if (resp->status != 401 || resp->len == 0 || resp->len > 4096)
                return false;
        json_t *j = json_loadb((const char *) resp->body, resp->len, 0, NULL);
        bool refused = json_is_true(json_object_get(j, "nonce_refused"));
        json_decref(j);
        return refused;
}

int remote_request(RemoteConn *c, const char *method, const char *path, const void *body, size_t len,
                   const char *content_type, size_t max_response, RemoteResponse *ret) {
        const RemoteSigner *s = c->r->o.signer;
        for (int attempt = 0;; attempt++) {
                _cleanup_free_ char *sig = NULL;
                if (s) {
                        int k = s->sign(s->userdata, method, path, body, len, &sig);
                        if (k < 0)
                                return k;
                }
                int k = request_once(c, method, path, body, len, NULL, content_type, sig, max_response, ret);
                if (k < 0 || !sig || attempt > 0 || !nonce_refused(ret))
                        return k;
                if (c->observe)
                        c->observe(c->observe_userdata, NULL, 0); /* that body goes away: another comes */
                remote_response_done(ret);
                s->nonce_refused(s->userdata);
        }
}

int remote_request_stream(Remote *r, const char *method, const char *path, RemoteReadFn read, void *userdata,
                          uint64_t bound, const char *content_type, size_t max_response, RemoteResponse *ret) {
        const RemoteSigner *s = r->o.signer;
        if (s && !s->sign_digest)
                return -EOPNOTSUPP;
        /* a handle of its own, never pooled: libcurl 7.88 (Debian 12) keeps
         * a chunked upload's trailer state across curl_easy_reset(), and a
         * second such request on the same handle sent no trailer and then
         * crashed in free() under curl_multi_perform() (found by the crash
         * matrix); on a new handle, also no kept-alive connection that could
         * turn out closed, on which libcurl would send the request again (a
         * body made while it goes cannot be sent twice). Costs a connection
         * set-up. */
        RemoteConn own = { .r = r, .curl = curl_easy_init() };
        if (!own.curl)
                return -ENOMEM;
        Upload up = { .read = read, .userdata = userdata, .bound = bound, .signer = s, .method = method,
                      .path = path };
        int k = s && !(up.sha = sha256_ctx_new()) ? -ENOMEM
                : request_once(&own, method, path, NULL, 0, &up, content_type, NULL, max_response, ret);
        sha256_ctx_free(up.sha);
        curl_easy_cleanup(own.curl);
        if (k >= 0 && s && nonce_refused(ret)) {
                remote_response_done(ret);
                s->nonce_refused(s->userdata);
                return err_set(-EKEYEXPIRED, "%s refused the nonce of %s %s (send it again)", r->url, method,
                               path);
        }
        return k;
}

void remote_conn_observe(RemoteConn *c, RemoteObserveFn fn, void *userdata) {
        c->observe = fn;
        c->observe_userdata = userdata;
}

void remote_response_done(RemoteResponse *r) {
        free(r->body);
        r->body = NULL;
}

int remote_status_error(const Remote *r, const RemoteResponse *resp, const char *what) {
        const char *msg = NULL;
        json_t *j = NULL;
        if (resp->len > 0 && resp->len < 4096) {
                j = json_loadb((const char *) resp->body, resp->len, 0, NULL);
                if (json_is_object(j) && json_is_string(json_object_get(j, "error")))
                        msg = json_string_value(json_object_get(j, "error"));
        }
        int e;
        switch (resp->status) {
        case 401: e = -EACCES; break;
        case 403: e = -EPERM; break;
        case 404: e = -ENOENT; break;
        case 409: e = -ESTALE; break;
        case 412: e = -ENODATA; break;
        case 413: e = -EFBIG; break;
        case 400: e = -EBADMSG; break;
        default: e = resp->status >= 500 ? -EAGAIN : -EPROTO;
        }
        /* a roam daemon's 4xx always carries {"error": ...} */
        if (!msg && resp->status >= 400 && resp->status < 500 && resp->status != 401 && resp->status != 413)
                e = -EPROTO;
        if (resp->status == 401)
                err_set(e, "%s refused the token (check --token or ROAM_TOKEN)", r->url);
        else if (e == -EPROTO && !msg)
                err_set(e, "'%s' is not a roam server (it answered HTTP %ld without a roam error for %s; check the "
                        "URL and port)", r->url, resp->status, what);
        else if (msg)
                err_set(e, "%s: %s (HTTP %ld)", r->url, msg, resp->status);
        else
                err_set(e, "%s: %s: request failed (HTTP %ld)", r->url, what, resp->status);
        json_decref(j);
        return e;
}

bool remote_error_is_transient(int r) {
        return r == -ECONNREFUSED || r == -ETIMEDOUT || r == -EHOSTUNREACH || r == -ECONNRESET || r == -EIO ||
               r == -EAGAIN;
}

const char *remote_token_from_env(const char *arg) {
        if (arg && *arg)
                return arg;
        const char *e = getenv("ROAM_TOKEN");
        return e && *e ? e : NULL;
}

int remote_request_json(Remote *r, const char *method, const char *path, json_t *body, const char *what,
                        json_t **ret, uint64_t *wire, bool *ret_answered) {
        bool get = !strcmp(method, "GET");
        _cleanup_(remote_conn_freep) RemoteConn *c = remote_conn_new(r);
        _cleanup_free_ char *text = get ? NULL : body ? json_dumps(body, JSON_COMPACT) : strdup("{}");
        json_decref(body);
        if (!c || (!get && !text))
                return -ENOMEM;
        RemoteResponse resp;
        int k = remote_request(c, method, path, text, text ? strlen(text) : 0, text ? "application/json" : NULL,
                               64 * 1024, &resp);
        if (k < 0)
                return k;
        if (ret_answered)
                *ret_answered = true;
        if (wire)
                *wire += resp.wire_bytes;
        if (resp.status != 200) {
                k = remote_status_error(r, &resp, what);
                remote_response_done(&resp);
                return k;
        }
        json_t *j = json_loadb((const char *) resp.body, resp.len, 0, NULL);
        remote_response_done(&resp);
        if (ret)
                *ret = j;
        else
                json_decref(j);
        return 0;
}

int remote_post_json(Remote *r, const char *path, json_t *body, const char *what, json_t **ret, uint64_t *wire) {
        return remote_request_json(r, "POST", path, body, what, ret, wire, NULL);
}
