/* SPDX-License-Identifier: MIT */
#include "laptop-identity.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/base64.h"
#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../crypto/fingerprint.h"
#include "../crypto/request-sig.h"

#define POOL_MAX 8
#define POOL_LOW 2
#define NONCE_BATCH 4
#define PIN_FILE_MAX 8192

typedef struct PooledNonce {
        char text[REQSIG_NONCE_HEX_LEN + 1];
        double received; /* monotonic s */
} PooledNonce;

struct LaptopIdentity {
        char *home;
        char *server_url;
        SignKey *key;
        char id[SIGN_KEY_ID_LEN + 1];
        char name[NAME_MAX_LEN + 1];
        Remote *server; /* unsigned: nonces and reads */
        RemoteSigner signer;
        pthread_mutex_t lock;
        PooledNonce pool[POOL_MAX];
        size_t n_pool;
        double ttl; /* as the server said; 0 = not known yet */
        bool paired;
};

bool laptop_request_is_signed(const char *method, const char *path) {
        static const char *const actions[] = { "offline", "renew", "move-in", "finalize-in", "stage" };
        static const char prefix[] = "/v1/sessions/";
        if (strcmp(method, "POST"))
                return false;
        if (!strcmp(path, "/v1/laptops") || !strcmp(path, "/v1/data-key"))
                return true;
        if (strncmp(path, prefix, sizeof prefix - 1))
                return false;
        const char *action = strchr(path + sizeof prefix - 1, '/');
        for (size_t i = 0; action && i < ELEMENTSOF(actions); i++)
                if (!strcmp(action + 1, actions[i]))
                        return true;
        return false;
}

/* Drops nonces too old to trust (half their ttl). Under the lock. */
static void pool_prune(LaptopIdentity *li, double now) {
        size_t k = 0;
        for (size_t i = 0; i < li->n_pool; i++)
                if (li->ttl > 0 && now - li->pool[i].received < li->ttl / 2)
                        li->pool[k++] = li->pool[i];
        li->n_pool = k;
}

static int fetch_nonces(LaptopIdentity *li) {
        _cleanup_(remote_conn_freep) RemoteConn *c = remote_conn_new(li->server);
        if (!c)
                return -ENOMEM;
        RemoteResponse resp;
        char path[64];
        snprintf(path, sizeof path, "/v1/laptops/nonces?n=%d", NONCE_BATCH);
        int r = remote_request(c, "POST", path, NULL, 0, "application/json", 64 * 1024, &resp);
        if (r < 0)
                return r;
        if (resp.status != 200) {
                r = remote_status_error(li->server, &resp, "nonces");
                remote_response_done(&resp);
                return r;
        }
        json_t *j = json_loadb((const char *) resp.body, resp.len, 0, NULL);
        remote_response_done(&resp);
        json_t *arr = json_object_get(j, "nonces");
        json_int_t ttl = json_integer_value(json_object_get(j, "ttl"));
        double now = now_s();
        size_t i;
        json_t *v;
        r = json_is_array(arr) && ttl > 0 ? 0 : err_set(-EBADMSG, "%s sent malformed nonces", remote_url(li->server));
        pthread_mutex_lock(&li->lock);
        if (r >= 0) {
                li->ttl = (double) ttl;
                json_array_foreach(arr, i, v) {
                        const char *n = json_string_value(v);
                        if (!n || !hex_is_exact(n, REQSIG_NONCE_HEX_LEN) || li->n_pool == POOL_MAX)
                                continue;
                        PooledNonce *p = &li->pool[li->n_pool++];
                        memcpy(p->text, n, REQSIG_NONCE_HEX_LEN + 1);
                        p->received = now;
                }
        }
        pthread_mutex_unlock(&li->lock);
        json_decref(j);
        return r;
}

/* A fresh nonce from the pool, fetching a batch when it is empty. */
static int take_nonce(LaptopIdentity *li, char ret[static REQSIG_NONCE_HEX_LEN + 1]) {
        for (int attempt = 0; attempt < 2; attempt++) {
                pthread_mutex_lock(&li->lock);
                pool_prune(li, now_s());
                bool have = li->n_pool > 0;
                if (have)
                        memcpy(ret, li->pool[--li->n_pool].text, REQSIG_NONCE_HEX_LEN + 1);
                pthread_mutex_unlock(&li->lock);
                if (have)
                        return 0;
                int r = fetch_nonces(li);
                if (r < 0)
                        return err_set_if_none(r, "cannot get a nonce from %s", remote_url(li->server));
        }
        return err_set(-EPROTO, "%s gave no usable nonce", remote_url(li->server));
}

static int sign_digest_cb(void *userdata, const char *method, const char *path, const RoamId *body_sha,
                          char **ret);

static int sign_cb(void *userdata, const char *method, const char *path, const void *body, size_t len, char **ret) {
        RoamId h;
        sha256(body ? body : "", body ? len : 0, &h);
        return sign_digest_cb(userdata, method, path, &h, ret);
}

static int sign_digest_cb(void *userdata, const char *method, const char *path, const RoamId *body_sha,
                          char **ret) {
        LaptopIdentity *li = userdata;
        *ret = NULL;
        if (!laptop_request_is_signed(method, path))
                return 0;
        char nonce[REQSIG_NONCE_HEX_LEN + 1];
        int r = take_nonce(li, nonce);
        if (r < 0)
                return r;
        return request_sig_headers_digest(li->key, method, path, nonce, body_sha, ret);
}

static void nonce_refused_cb(void *userdata) {
        LaptopIdentity *li = userdata;
        pthread_mutex_lock(&li->lock);
        li->n_pool = 0;
        pthread_mutex_unlock(&li->lock);
}

/* ---- the server's pinned certificate ---- */

/* The fingerprint pinned for url in HOME/server-pin.json: 1 with it, 0 when
 * there is none for url. */
static int pin_load(const char *home, const char *url, Fingerprint *ret) {
        _cleanup_free_ char *path = path_join(home, LAPTOP_PIN_FILE), *text = NULL;
        if (!path)
                return -ENOMEM;
        size_t len;
        int r = read_full_file(path, PIN_FILE_MAX, &text, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return err_set(r, "cannot read '%s': %s", path, strerror(-r));
        json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
        const char *u = json_string_value(json_object_get(j, "url"));
        const char *f = json_string_value(json_object_get(j, "fingerprint"));
        Fingerprint fp;
        r = u && f && fingerprint_parse(f, &fp) >= 0 ? 0 : -EBADMSG;
        if (r >= 0 && !strcmp(u, url)) {
                *ret = fp;
                r = 1;
        }
        json_decref(j);
        if (r == -EBADMSG)
                return err_set(r, "'%s' is malformed (remove it and pair with a token from 'roam token create')",
                               path);
        return r;
}

static int pin_save(const char *home, const char *url, const Fingerprint *fp) {
        Fingerprint old;
        int r = pin_load(home, url, &old);
        if (r > 0 && fingerprint_equal(&old, fp))
                return 0;
        _cleanup_free_ char *path = path_join(home, LAPTOP_PIN_FILE);
        char text[FINGERPRINT_TEXT_SIZE];
        json_t *j = json_pack("{s:s, s:s}", "url", url, "fingerprint", fingerprint_format(fp, text));
        _cleanup_free_ char *dump = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
        json_decref(j);
        if (!path || !dump)
                return -ENOMEM;
        return write_file_atomic(path, dump, strlen(dump), 0644);
}

int laptop_pin_resolve(const char *home, const char *server_url, const char *token, const char *fingerprint,
                       char **ret_token) {
        _cleanup_free_ char *bare = NULL;
        Fingerprint fp;
        bool have;
        int r = pairing_token_split(token, &bare, &fp, &have);
        if (r < 0)
                return r;
        if (fingerprint) {
                if (fingerprint_parse(fingerprint, &fp) < 0)
                        return err_set(-EINVAL, "fingerprint '%.100s' is malformed (expected sha256: and 64 hex "
                                       "digits, as 'roam serve' prints it)", fingerprint);
                have = true;
        }
        if (strncmp(server_url, "https://", 8)) {
                *ret_token = strdup(token);
                return *ret_token ? 0 : -ENOMEM;
        }
        if (!have) {
                r = pin_load(home, server_url, &fp);
                if (r < 0)
                        return r;
                if (r == 0)
                        return err_set(-EINVAL, "no fingerprint of %s's certificate to pin: use the pairing "
                                       "token 'roam token create' prints there (TOKEN@sha256:...), or "
                                       "--fingerprint with the one 'roam serve' printed there", server_url);
        }
        return pairing_token_join(bare, &fp, ret_token);
}

int laptop_identity_open(const LaptopIdentityOptions *o, LaptopIdentity **ret) {
        _cleanup_free_ char *path = path_join(o->home, LAPTOP_KEY_FILE);
        if (!path)
                return -ENOMEM;
        _cleanup_(laptop_identity_freep) LaptopIdentity *li = calloc(1, sizeof *li);
        if (!li)
                return -ENOMEM;
        pthread_mutex_init(&li->lock, NULL);
        if (!(li->home = strdup(o->home)) || !(li->server_url = strdup(o->server_url)))
                return -ENOMEM;
        int r = sign_key_load(path, &li->key);
        if (r == -ENOENT) {
                r = sign_key_generate(&li->key);
                if (r >= 0)
                        r = sign_key_save(li->key, path);
        }
        if (r < 0)
                return r;
        uint8_t pub[SIGN_PUBLIC_SIZE];
        sign_key_public(li->key, pub);
        sign_key_id(pub, li->id);
        snprintf(li->name, sizeof li->name, "%s", o->name);
        RemoteOptions ro = { .cacert = o->cacert };
        r = remote_new(o->server_url, o->token, &ro, &li->server);
        if (r < 0)
                return r;
        li->signer = (RemoteSigner){ .sign = sign_cb, .sign_digest = sign_digest_cb,
                                     .trailer_fields = REQSIG_FIELDS, .nonce_refused = nonce_refused_cb, .userdata = li };
        *ret = TAKE_PTR(li);
        return 0;
}

void laptop_identity_free(LaptopIdentity *li) {
        if (!li)
                return;
        sign_key_free(li->key);
        remote_free(li->server);
        free(li->home);
        free(li->server_url);
        pthread_mutex_destroy(&li->lock);
        free(li);
}

const char *laptop_identity_id(const LaptopIdentity *li) {
        return li->id;
}

const char *laptop_identity_name(const LaptopIdentity *li) {
        return li->name;
}

const RemoteSigner *laptop_identity_signer(LaptopIdentity *li) {
        return &li->signer;
}

int laptop_identity_refill(LaptopIdentity *li) {
        pthread_mutex_lock(&li->lock);
        pool_prune(li, now_s());
        bool low = li->n_pool < POOL_LOW;
        pthread_mutex_unlock(&li->lock);
        return low ? fetch_nonces(li) : 0;
}

int laptop_identity_pair(LaptopIdentity *li, Remote *server) {
        uint8_t pub[SIGN_PUBLIC_SIZE];
        char pub64[BASE64URL_LEN(SIGN_PUBLIC_SIZE) + 1];
        sign_key_public(li->key, pub);
        base64url_encode(pub, sizeof pub, pub64);
        json_t *body = json_pack("{s:s, s:s}", "public_key", pub64, "name", li->name);
        _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        if (!text)
                return -ENOMEM;
        _cleanup_(remote_conn_freep) RemoteConn *c = remote_conn_new(server);
        if (!c)
                return -ENOMEM;
        RemoteResponse resp;
        int r = remote_request(c, "POST", "/v1/laptops", text, strlen(text), "application/json", 64 * 1024, &resp);
        if (r < 0)
                return r;
        if (resp.status != 200)
                r = remote_status_error(server, &resp, "pairing");
        remote_response_done(&resp);
        if (r < 0)
                return err_set_if_none(r, "pairing with %s failed", remote_url(server));
        Fingerprint fp;
        if (!strncmp(li->server_url, "https://", 8) && remote_pinned(server, &fp)) {
                r = pin_save(li->home, li->server_url, &fp);
                if (r < 0)
                        return err_set_if_none(r, "cannot keep the server's fingerprint in '%s/%s'", li->home,
                                               LAPTOP_PIN_FILE);
        }
        pthread_mutex_lock(&li->lock);
        li->paired = true;
        pthread_mutex_unlock(&li->lock);
        return 0;
}

bool laptop_identity_paired(LaptopIdentity *li) {
        pthread_mutex_lock(&li->lock);
        bool p = li->paired;
        pthread_mutex_unlock(&li->lock);
        return p;
}
