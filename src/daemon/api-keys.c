/* SPDX-License-Identifier: MIT */
#include "api-keys.h"

#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/base64.h"
#include "../basic/error.h"
#include "../basic/macro.h"
#include "../crypto/home-keys.h"
#include "../store/home-store.h"
#include "auth.h"

static bool is_admin(const HttpRequest *req) {
        const Auth *a = auth_of(req);
        return !a || a->role == CATALOG_ROLE_ADMIN;
}

typedef struct KeysCtx {
        Daemon *d;
        ApiLaptop *laptops;
} KeysCtx;

static int route_wrap(HttpRequest *req, void *userdata) {
        KeysCtx *k = userdata;
        if (!k->laptops)
                return http_reply_error(req, 404, "this daemon pairs no laptops");
        LaptopRecord l;
        int r = api_laptop_verify(k->laptops, req, &l);
        if (r == -ENOENT)
                return http_reply_error(req, 400, "a data key request must be signed by a paired laptop's key");
        if (r != 0)
                return r < 0 ? r : 0;
        size_t len;
        const void *body = http_request_body(req, &len);
        _cleanup_(json_decrefp) json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        const char *to = json_string_value(json_object_get(j, "wrap_to"));
        uint8_t pub[X25519_KEY_SIZE], dk[DATA_KEY_SIZE], wrapped[WRAPPED_KEY_SIZE];
        if (!to || base64url_decode_exact(to, pub, sizeof pub) < 0)
                return http_reply_error(req, 400, "expected {\"wrap_to\": an X25519 public key (%d base64url "
                                                  "characters)}",
                                        (int) BASE64URL_LEN(X25519_KEY_SIZE));
        err_clear();
        r = user_data_key(daemon_home(k->d), l.user, dk);
        if (r < 0)
                return http_reply_error(req, 500, "%s", err_message(r));
        r = wrapped_key_make(pub, dk, KEY_ORIGIN_SERVER, wrapped);
        explicit_bzero(dk, sizeof dk);
        if (r == -EINVAL)
                return http_reply_error(req, 400, "wrap_to is not a usable X25519 public key");
        if (r < 0)
                return r;
        char text[BASE64URL_LEN(WRAPPED_KEY_SIZE) + 1];
        base64url_encode(wrapped, sizeof wrapped, text);
        daemon_log(k->d, DAEMON_LOG_INFO, "data key of user '%s' wrapped for laptop '%s' (id %s)", l.user, l.name,
                   l.id);
        return http_reply_json(req, 200, json_pack("{s:s, s:s}", "wrapped", text, "user", l.user));
}

static int route_unlock(HttpRequest *req, void *userdata) {
        KeysCtx *k = userdata;
        if (!is_admin(req))
                return http_reply_error(req, 403, "only an admin token unlocks this daemon's store");
        Store *s = daemon_store(k->d);
        if (!store_is_encrypted(s))
                return http_reply_error(req, 409, "store '%s' is not encrypted", store_path(s));
        err_clear();
        /* the key 'roam unlock' left in the RAM directory (or the daemon's own $ROAM_PASSPHRASE_FILE) */
        int r = home_store_unlock(daemon_home(k->d), s, HOME_STORE_SERVER_KEY);
        if (r == -ENOKEY || r == -EKEYREJECTED)
                return http_reply_error(req, 409, "%s", err_message(r));
        if (r < 0)
                return r;
        daemon_log(k->d, DAEMON_LOG_INFO, "unlocked");
        (void) laptop_key_usable(k->d);
        return http_reply_json(req, 200, json_pack("{s:b}", "unlocked", 1));
}

static int route_lock(HttpRequest *req, void *userdata) {
        KeysCtx *k = userdata;
        if (!is_admin(req))
                return http_reply_error(req, 403, "only an admin token locks this daemon's store");
        store_forget_key(daemon_store(k->d));
        daemon_log(k->d, DAEMON_LOG_INFO, "locked: the data key is forgotten");
        return http_reply_json(req, 200, json_pack("{s:b}", "locked", 1));
}

static const HttpRoute routes[] = {
        { "POST", "/v1/data-key", 4096, route_wrap },
        { "POST", "/v1/unlock", 0, route_unlock },
        { "POST", "/v1/lock", 0, route_lock },
};

int api_keys_register(Daemon *d, ApiLaptop *laptops) {
        static KeysCtx k; /* lives as long as the daemon process */
        k = (KeysCtx){ .d = d, .laptops = laptops };
        return daemon_add_routes(d, routes, ELEMENTSOF(routes), &k);
}

/* ---- the laptop's side ---- */

int laptop_key_ensure(Daemon *d, Remote *server) {
        const char *home = daemon_home(d);
        if (!home_keys_encrypted(home) || home_keys_have_data_key(home))
                return 0;
        uint8_t pub[X25519_KEY_SIZE];
        int r = home_keys_public(home, pub);
        if (r < 0)
                return r;
        char pub64[BASE64URL_LEN(X25519_KEY_SIZE) + 1];
        base64url_encode(pub, sizeof pub, pub64);
        json_t *body = json_pack("{s:s}", "wrap_to", pub64);
        _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        if (!text)
                return -ENOMEM;
        _cleanup_(remote_conn_freep) RemoteConn *c = remote_conn_new(server);
        if (!c)
                return -ENOMEM;
        RemoteResponse resp = {};
        err_clear();
        r = remote_request(c, "POST", "/v1/data-key", text, strlen(text), "application/json", 64 * 1024, &resp);
        json_t *j = NULL;
        if (r >= 0) {
                if (resp.status != 200)
                        r = remote_status_error(server, &resp, "the data key");
                else
                        j = json_loadb((const char *) resp.body, resp.len, 0, NULL);
                remote_response_done(&resp);
        }
        const char *w = json_string_value(json_object_get(j, "wrapped"));
        uint8_t wrapped[WRAPPED_KEY_SIZE];
        if (r >= 0 && (!w || base64url_decode_exact(w, wrapped, sizeof wrapped) < 0))
                r = err_set(-EBADMSG, "%s sent a malformed data key", remote_url(server));
        json_decref(j);
        if (r >= 0)
                r = home_keys_save_wrapped(home, wrapped);
        if (r == -EEXIST)
                return 0;
        if (r < 0) {
                daemon_log(d, DAEMON_LOG_WARNING, "getting the data key from %s: %s", remote_url(server),
                           err_message(r));
                return r;
        }
        daemon_log(d, DAEMON_LOG_INFO, "got the user's data key from %s (wrapped to this laptop's home key)",
                   remote_url(server));
        Store *s = daemon_store(d);
        err_clear();
        r = home_store_unlock(home, s, HOME_STORE_SERVER_KEY);
        if (r >= 0)
                daemon_log(d, DAEMON_LOG_INFO, "unlocked with $ROAM_PASSPHRASE_FILE");
        return 0;
}

bool laptop_key_usable(Daemon *d) {
        static atomic_int said = -1; /* 1 said locked, 0 said unlocked */
        bool u = store_is_unlocked(daemon_store(d));
        int was = atomic_exchange(&said, u ? 0 : 1);
        if (!u && was != 1)
                daemon_log(d, DAEMON_LOG_WARNING, "this laptop is locked: no hoard, pre-copy or checkpoint until "
                                                  "'roam unlock'");
        return u;
}
