/* SPDX-License-Identifier: MIT */
#include "api-laptop.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../basic/base64.h"
#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../crypto/request-sig.h"
#include "auth.h"
#include "nonce.h"

#define NONCES_PER_REQUEST_MAX 16

struct ApiLaptop {
        Daemon *d;
        NonceTable *nonces;
        bool (*is_member)(const HttpRequest *req, void *userdata);
        void *member_userdata;
};

void api_laptop_set_member_check(ApiLaptop *a, bool (*is_member)(const HttpRequest *req, void *userdata),
                                 void *userdata) {
        a->is_member = is_member;
        a->member_userdata = userdata;
}

bool api_laptop_from_member(ApiLaptop *a, const HttpRequest *req) {
        return a->is_member && http_request_header(req, API_LAPTOP_FLEET_HEADER) &&
               a->is_member(req, a->member_userdata);
}

/* Nonces and laptops belong to the token's user; admin and host tokens to "". */
static const char *token_user(const HttpRequest *req) {
        const Auth *a = auth_of(req);
        return a && a->role == CATALOG_ROLE_USER && a->user ? a->user : "";
}

static bool is_admin(const HttpRequest *req) {
        const Auth *a = auth_of(req);
        return !a || a->role == CATALOG_ROLE_ADMIN;
}

static json_t *record_json(const LaptopRecord *l) {
        char pub[BASE64URL_LEN(SIGN_PUBLIC_SIZE) + 1];
        base64url_encode(l->public_key, sizeof l->public_key, pub);
        return json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "id", l->id, "name", l->name, "user", l->user,
                         "public_key", pub, "paired", (json_int_t) l->paired, "last_seen", (json_int_t) l->last_seen,
                         "revoked", (json_int_t) l->revoked);
}

/* 401 with {"nonce_refused": true}: the client signs again with a new nonce. */
static int reply_nonce_refused(HttpRequest *req, int r) {
        json_t *j = json_pack("{s:s, s:b}", "error", err_message(r), "nonce_refused", 1);
        int k = http_reply_json(req, 401, j);
        return k < 0 ? k : 1;
}

static int reply_refused(HttpRequest *req, unsigned status, int r) {
        int k = http_reply_error(req, status, "%s", err_message(r));
        return k < 0 ? k : 1;
}

/* Checks headers, nonce and signature against the public key pub (whose id
 * is id): 0, or replied (1). */
static int check_signature(ApiLaptop *a, HttpRequest *req, const RequestSig *sig, const uint8_t *pub) {
        size_t len;
        const void *body = http_request_body(req, &len);
        int r = request_sig_verify(pub, sig, http_request_method(req), http_request_path(req), body, len);
        if (r < 0)
                return reply_refused(req, 403,
                                     err_set(-EPERM, "the signature of laptop %s does not match this request "
                                                     "(sign exactly the method, path, nonce and body sent)",
                                             sig->laptop));
        r = nonce_consume(a->nonces, sig->nonce, token_user(req), (int64_t) time(NULL));
        if (r < 0)
                return reply_nonce_refused(req, r);
        return 0;
}

/* A signature field: from the header, or, for a body streamed while it was
 * made, from the trailer after it (crypto/request-sig.h). */
static const char *sig_field(HttpRequest *req, const char *name) {
        const char *v = http_request_header(req, name);
        return v ? v : http_request_trailer(req, name);
}

static int parse_headers(HttpRequest *req, RequestSig *ret) {
        err_clear();
        int r = request_sig_parse(sig_field(req, REQSIG_HDR_LAPTOP), sig_field(req, REQSIG_HDR_NONCE),
                                  sig_field(req, REQSIG_HDR_SIGNATURE), ret);
        /* announced for the trailer ("Trailer: ... Roam-Signature"), but none
         * came: something on the way dropped trailer fields (HTTP lets an
         * intermediary that re-frames a body do that). 400, not "unsigned":
         * the laptop then sends it again signed in the header */
        const char *announced = http_request_header(req, "Trailer");
        if (r == -ENOENT && announced && strcasestr(announced, REQSIG_HDR_SIGNATURE))
                return reply_refused(req, 400,
                                     err_set(-EBADMSG, "the request announced its signature in the trailer, but "
                                                       "none came (something between laptop and server drops "
                                                       "trailer fields); send it signed in the header"));
        if (r == -ENOENT)
                return r;
        return r < 0 ? reply_refused(req, 400, r) : 0;
}

int api_laptop_verify(ApiLaptop *a, HttpRequest *req, LaptopRecord *ret) {
        RequestSig sig;
        int r = parse_headers(req, &sig);
        bool member = r == -ENOENT && api_laptop_from_member(a, req);
        if (member) {
                /* a fleet member checked signature and nonce, and passes it on */
                const char *id = http_request_header(req, API_LAPTOP_FLEET_HEADER);
                if (strlen(id) != SIGN_KEY_ID_LEN)
                        return reply_refused(req, 400, err_set(-EBADMSG, "header %s is not a laptop id",
                                                               API_LAPTOP_FLEET_HEADER));
                memcpy(sig.laptop, id, SIGN_KEY_ID_LEN + 1);
        } else if (r != 0)
                return r;
        Catalog *c = daemon_catalog(a->d);
        LaptopRecord l;
        err_clear();
        r = laptop_get(c, sig.laptop, &l);
        if (r < 0)
                return reply_refused(req, r == -ENOENT ? 403 : 500, r);
        const char *user = token_user(req);
        if (*user && strcmp(user, l.user))
                return reply_refused(req, 403, err_set(-EPERM, "laptop %s is not one of user '%s''s laptops", l.id,
                                                       user));
        if (l.revoked)
                return reply_refused(req, 403,
                                     err_set(-EKEYREVOKED, "laptop '%s' (id %s) was revoked; it can no longer take, "
                                                           "renew or hand back sessions",
                                             l.name, l.id));
        r = member ? 0 : check_signature(a, req, &sig, l.public_key);
        if (r != 0)
                return r;
        if (!member)
                (void) laptop_seen(c, l.id);
        *ret = l;
        return 0;
}

/* ---- routes ---- */

static int route_nonces(HttpRequest *req, void *userdata) {
        ApiLaptop *a = userdata;
        uint64_t n = 4;
        const char *q = http_request_query(req, "n");
        if (q && (parse_u64(q, &n) < 0 || n < 1 || n > NONCES_PER_REQUEST_MAX))
                return http_reply_error(req, 400, "n must be a number from 1 to %d", NONCES_PER_REQUEST_MAX);
        json_t *arr = json_array();
        for (uint64_t i = 0; i < n; i++) {
                char nonce[REQSIG_NONCE_HEX_LEN + 1];
                int r = nonce_issue(a->nonces, token_user(req), (int64_t) time(NULL), nonce);
                if (r < 0) {
                        json_decref(arr);
                        return r;
                }
                json_array_append_new(arr, json_string(nonce));
        }
        return http_reply_json(req, 200,
                               json_pack("{s:o, s:I}", "nonces", arr, "ttl", (json_int_t) nonce_table_ttl(a->nonces)));
}

int api_laptop_parse_pairing(json_t *j, uint8_t pub[static SIGN_PUBLIC_SIZE], const char **ret_name,
                             const char **ret_user) {
        if (!json_is_object(j))
                return err_set(-EBADMSG, "expected {\"public_key\": BASE64URL, \"name\": NAME}");
        const char *key = json_string_value(json_object_get(j, "public_key"));
        const char *name = json_string_value(json_object_get(j, "name"));
        json_t *u = json_object_get(j, "user");
        if (!key || base64url_decode_exact(key, pub, SIGN_PUBLIC_SIZE) < 0)
                return err_set(-EBADMSG, "public_key must be an Ed25519 public key (%d base64url characters)",
                               (int) BASE64URL_LEN(SIGN_PUBLIC_SIZE));
        if (!name || !name_is_valid(name))
                return err_set(-EBADMSG, "name must be a laptop name (" NAME_RULE ")");
        if (u && (!json_is_string(u) || !name_is_valid(json_string_value(u))))
                return err_set(-EBADMSG, "user must be a user name");
        *ret_name = name;
        *ret_user = u ? json_string_value(u) : NULL;
        return 0;
}

static int route_pair(HttpRequest *req, void *userdata) {
        ApiLaptop *a = userdata;
        size_t len;
        const void *body = http_request_body(req, &len);
        _cleanup_(json_decrefp) json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        uint8_t pub[SIGN_PUBLIC_SIZE];
        const char *name, *user;
        err_clear();
        int r = api_laptop_parse_pairing(j, pub, &name, &user);
        if (r < 0)
                return http_reply_error(req, 400, "%s", err_message(r));
        const Auth *au = auth_of(req);
        if (au && au->role == CATALOG_ROLE_USER) {
                if (user && strcmp(user, au->user))
                        return http_reply_error(req, 403, "a user token pairs laptops for its own user only");
                user = au->user;
        } else if (!is_admin(req))
                return http_reply_error(req, 403, "only a user's token or an admin token pairs a laptop");
        else if (!user)
                return http_reply_error(req, 400, "an admin pairing names the laptop's user (\"user\": NAME)");
        /* the request is signed by the key it registers: the caller holds it */
        RequestSig sig;
        r = parse_headers(req, &sig);
        if (r == -ENOENT)
                return http_reply_error(req, 400, "a pairing request must be signed by the laptop's key");
        if (r != 0)
                return 0;
        char id[SIGN_KEY_ID_LEN + 1];
        sign_key_id(pub, id);
        if (strcmp(id, sig.laptop))
                return http_reply_error(req, 400, "header %s names laptop %s, but the key is laptop %s's",
                                        REQSIG_HDR_LAPTOP, sig.laptop, id);
        r = check_signature(a, req, &sig, pub);
        if (r != 0)
                return 0;
        LaptopRecord l;
        bool again = false;
        err_clear();
        r = laptop_pair(daemon_catalog(a->d), pub, name, user, &l, &again);
        if (r == -EEXIST || r == -EKEYREVOKED)
                return http_reply_error(req, 409, "%s", err_message(r));
        if (r < 0)
                return r;
        daemon_log(a->d, DAEMON_LOG_INFO, "laptop '%s' (id %s) of user '%s' %s", l.name, l.id, l.user,
                   again ? "paired again" : "paired");
        json_t *res = record_json(&l);
        json_object_set_new(res, "again", json_boolean(again));
        return http_reply_json(req, 200, res);
}

static int route_list(HttpRequest *req, void *userdata) {
        ApiLaptop *a = userdata;
        const Auth *au = auth_of(req);
        LaptopRecord *list = NULL;
        size_t n = 0;
        int r = laptop_list(daemon_catalog(a->d), au && au->role == CATALOG_ROLE_USER ? au->user : NULL, &list, &n);
        if (r < 0)
                return r;
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, record_json(&list[i]));
        free(list);
        return http_reply_json(req, 200, json_pack("{s:o}", "laptops", arr));
}

static int route_post(HttpRequest *req, void *userdata) {
        ApiLaptop *a = userdata;
        const char *rest = http_request_rest(req);
        if (!strcmp(rest, "nonces"))
                return route_nonces(req, a);
        const char *slash = strchr(rest, '/');
        if (!slash || strcmp(slash, "/revoke"))
                return http_reply_error(req, 404, "unknown route");
        if (!is_admin(req))
                return http_reply_error(req, 403, "only an admin revokes a laptop");
        char prefix[SIGN_KEY_ID_LEN + 1];
        size_t n = (size_t) (slash - rest);
        if (n >= sizeof prefix)
                return http_reply_error(req, 404, "no laptop with id '%.*s'", (int) MIN(n, (size_t) 80), rest);
        memcpy(prefix, rest, n);
        prefix[n] = 0;
        LaptopRecord l;
        err_clear();
        int r = laptop_revoke(daemon_catalog(a->d), prefix, &l);
        if (r < 0)
                return r;
        daemon_log(a->d, DAEMON_LOG_INFO, "laptop '%s' (id %s) of user '%s' revoked", l.name, l.id, l.user);
        return http_reply_json(req, 200, record_json(&l));
}

static const HttpRoute routes[] = {
        { "POST", "/v1/laptops", 16 * 1024, route_pair },
        { "GET", "/v1/laptops", 0, route_list },
        { "POST", "/v1/laptops/*", 1024, route_post },
};

int api_laptop_register(Daemon *d, int64_t nonce_ttl_s, ApiLaptop **ret) {
        static ApiLaptop a; /* lives as long as the daemon process */
        a.d = d;
        int r = nonce_table_new(API_LAPTOP_NONCES_MAX, nonce_ttl_s > 0 ? nonce_ttl_s : API_LAPTOP_NONCE_TTL_DEFAULT_S,
                                &a.nonces);
        if (r < 0)
                return r;
        r = daemon_add_routes(d, routes, ELEMENTSOF(routes), &a);
        if (r < 0)
                return r;
        *ret = &a;
        return 0;
}
