/* SPDX-License-Identifier: MIT */
#include "laptop-fleet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../basic/base64.h"
#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"

#define KIND "laptops"
#define RECORD_MAX 4096
#define CAS_TRIES 5
#define PREFIX_MIN 4

_Static_assert(SIGN_KEY_ID_LEN == FLEET_LAPTOP_ID_LEN, "a laptop's id is its owner name in the fleet");

int laptop_fleet_record_parse(const char *text, size_t len, LaptopRecord *ret) {
        if (!text || len == 0 || len > RECORD_MAX)
                return -EBADMSG;
        _cleanup_(json_decrefp) json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
        const char *id = json_string_value(json_object_get(j, "id"));
        const char *pub = json_string_value(json_object_get(j, "public_key"));
        const char *name = json_string_value(json_object_get(j, "name"));
        const char *user = json_string_value(json_object_get(j, "user"));
        json_t *paired = json_object_get(j, "paired"), *seen = json_object_get(j, "last_seen"),
               *revoked = json_object_get(j, "revoked");
        LaptopRecord l = { 0 };
        if (!id || !pub || !name || !user || !name_is_valid(name) || strlen(name) > LAPTOP_NAME_MAX ||
            !name_is_valid(user) || strlen(user) > LAPTOP_NAME_MAX || !json_is_integer(paired) ||
            !json_is_integer(seen) || !json_is_integer(revoked) || json_integer_value(paired) < 0 ||
            json_integer_value(seen) < 0 || json_integer_value(revoked) < 0 ||
            base64url_decode_exact(pub, l.public_key, sizeof l.public_key) < 0)
                return -EBADMSG;
        char want[SIGN_KEY_ID_LEN + 1];
        sign_key_id(l.public_key, want);
        if (strcmp(id, want))
                return -EBADMSG; /* a record is its key: an id that is not its fingerprint is forged */
        memcpy(l.id, want, sizeof l.id);
        snprintf(l.name, sizeof l.name, "%s", name);
        snprintf(l.user, sizeof l.user, "%s", user);
        l.paired = json_integer_value(paired);
        l.last_seen = json_integer_value(seen);
        l.revoked = json_integer_value(revoked);
        *ret = l;
        return 0;
}

char *laptop_fleet_record_format(const LaptopRecord *l) {
        char pub[BASE64URL_LEN(SIGN_PUBLIC_SIZE) + 1];
        base64url_encode(l->public_key, sizeof l->public_key, pub);
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "id", l->id, "public_key", pub, "name", l->name,
                              "user", l->user, "paired", (json_int_t) l->paired, "last_seen",
                              (json_int_t) l->last_seen, "revoked", (json_int_t) l->revoked);
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(j);
        return s;
}

/* The record of id and its value as read (for a compare-and-swap). */
static int get_raw(Fleet *f, const char *id, LaptopRecord *ret, char **ret_raw) {
        _cleanup_free_ char *raw = NULL;
        int r = fleet_record_get(f, KIND, id, &raw);
        if (r == -ENOENT)
                return err_set(r, "unknown laptop '%s' (pair it again: restart its daemon)", id);
        if (r < 0)
                return r;
        r = laptop_fleet_record_parse(raw, strlen(raw), ret);
        if (r < 0)
                return err_set(r, "etcd record of laptop '%s' is malformed (delete /roam/" KIND "/%s; the laptop "
                               "pairs again)",
                               id, id);
        if (ret_raw)
                *ret_raw = TAKE_PTR(raw);
        return 0;
}

static int put(Fleet *f, const LaptopRecord *l, const char *old) {
        _cleanup_free_ char *v = laptop_fleet_record_format(l);
        if (!v)
                return -ENOMEM;
        return fleet_record_put(f, KIND, l->id, old, v);
}

static int b_get(void *u, const char *id, LaptopRecord *ret) {
        if (!id || strlen(id) != SIGN_KEY_ID_LEN)
                return err_set(-ENOENT, "unknown laptop '%s'", id ? id : "");
        return get_raw(u, id, ret, NULL);
}

static int b_pair(void *u, const uint8_t pub[static SIGN_PUBLIC_SIZE], const char *name, const char *user,
                  LaptopRecord *ret, bool *ret_again) {
        Fleet *f = u;
        char id[SIGN_KEY_ID_LEN + 1];
        sign_key_id(pub, id);
        for (int attempt = 0; attempt < CAS_TRIES; attempt++) {
                LaptopRecord l;
                _cleanup_free_ char *raw = NULL;
                int64_t now = (int64_t) time(NULL);
                int r = get_raw(f, id, &l, &raw);
                if (r == -ENOENT) {
                        err_clear();
                        l = (LaptopRecord){ .paired = now, .last_seen = now };
                        memcpy(l.id, id, sizeof l.id);
                        memcpy(l.public_key, pub, SIGN_PUBLIC_SIZE);
                        snprintf(l.name, sizeof l.name, "%s", name);
                        snprintf(l.user, sizeof l.user, "%s", user);
                        r = put(f, &l, NULL);
                        if (r == -EEXIST)
                                continue; /* paired meanwhile through another member */
                        if (r < 0)
                                return r;
                        if (ret)
                                *ret = l;
                        if (ret_again)
                                *ret_again = false;
                        return 0;
                }
                if (r < 0)
                        return r;
                if (l.revoked)
                        return err_set(-EKEYREVOKED,
                                       "this key belongs to laptop '%s' (id %s), revoked: a revoked laptop pairs "
                                       "again with a new key (move its laptop.key away)",
                                       l.name, l.id);
                if (strcmp(l.user, user))
                        return err_set(-EEXIST, "this key is paired already, as laptop '%s' (id %s) of another user",
                                       l.name, l.id);
                snprintf(l.name, sizeof l.name, "%s", name);
                l.last_seen = now;
                r = put(f, &l, raw);
                if (r == -ESTALE)
                        continue;
                if (r < 0)
                        return r;
                if (ret)
                        *ret = l;
                if (ret_again)
                        *ret_again = true;
                return 0;
        }
        return err_set(-EAGAIN, "laptop %s changed in the fleet while it paired (try again)", id);
}

static int cmp_paired(const void *a, const void *b) {
        const LaptopRecord *x = a, *y = b;
        return x->paired != y->paired ? (x->paired < y->paired ? -1 : 1) : strcmp(x->id, y->id);
}

static int b_list(void *u, const char *user, LaptopRecord **ret, size_t *ret_n) {
        char **v = NULL;
        size_t n = 0;
        int r = fleet_record_list(u, KIND, &v, &n);
        if (r < 0)
                return r;
        LaptopRecord *l = calloc(MAX(n, (size_t) 1), sizeof *l);
        if (!l) {
                fleet_record_list_free(v, n);
                return -ENOMEM;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
                if (laptop_fleet_record_parse(v[i], strlen(v[i]), &l[k]) >= 0 && (!user || !strcmp(l[k].user, user)))
                        k++; /* a malformed record is nobody's laptop */
        fleet_record_list_free(v, n);
        qsort(l, k, sizeof *l, cmp_paired);
        *ret = l;
        *ret_n = k;
        return 0;
}

static int b_revoke(void *u, const char *prefix, LaptopRecord *ret) {
        Fleet *f = u;
        size_t len = prefix ? strlen(prefix) : 0;
        bool hex = len > 0;
        for (size_t i = 0; i < len; i++)
                hex = hex && strchr("0123456789abcdefABCDEF", prefix[i]);
        if (len < PREFIX_MIN || len > SIGN_KEY_ID_LEN || !hex)
                return err_set(-EINVAL, "laptop id '%s' is not %d to %d hex digits (copy it from 'roam laptop list')",
                               prefix ? prefix : "", PREFIX_MIN, SIGN_KEY_ID_LEN);
        LaptopRecord *all = NULL;
        size_t n = 0;
        int r = b_list(f, NULL, &all, &n);
        if (r < 0)
                return r;
        char id[SIGN_KEY_ID_LEN + 1] = "";
        unsigned matches = 0;
        for (size_t i = 0; i < n; i++)
                if (!strncasecmp(all[i].id, prefix, len) && matches++ == 0)
                        memcpy(id, all[i].id, sizeof id);
        free(all);
        if (matches == 0)
                return err_set(-ENOENT, "no laptop with id '%s' (see 'roam laptop list')", prefix);
        if (matches > 1)
                return err_set(-ENOTUNIQ, "laptop id '%s' matches several (give more digits)", prefix);
        for (int attempt = 0; attempt < CAS_TRIES; attempt++) {
                LaptopRecord l;
                _cleanup_free_ char *raw = NULL;
                r = get_raw(f, id, &l, &raw);
                if (r < 0)
                        return r;
                if (!l.revoked) {
                        l.revoked = (int64_t) time(NULL);
                        r = put(f, &l, raw);
                        if (r == -ESTALE)
                                continue;
                        if (r < 0)
                                return r;
                }
                if (ret)
                        *ret = l;
                return 0;
        }
        return err_set(-EAGAIN, "laptop %s changed in the fleet while it was revoked (try again)", id);
}

static int b_seen(void *u, const char *id) {
        Fleet *f = u;
        LaptopRecord l;
        _cleanup_free_ char *raw = NULL;
        int64_t now = (int64_t) time(NULL);
        int r = get_raw(f, id, &l, &raw);
        if (r < 0 || l.last_seen >= now - LAPTOP_SEEN_RESOLUTION_S)
                return r < 0 ? r : 0;
        l.last_seen = now;
        r = put(f, &l, raw);
        return r == -ESTALE ? 0 : r; /* changed meanwhile: it was seen, or revoked (kept) */
}

static int b_grant_get(void *u, const char *session, LaptopGrant *ret) {
        FleetGrant g;
        int r = fleet_grant(u, session, &g);
        if (r < 0)
                return r;
        LaptopGrant x = { .epoch = g.epoch, .granted = g.granted, .lease_until = g.lease_until };
        memcpy(x.laptop, g.laptop, sizeof x.laptop);
        *ret = x;
        return 0;
}

static int b_grant_renew(void *u, const char *session, const char *laptop, int64_t epoch, int64_t lease_until) {
        return fleet_grant_renew(u, session, laptop, epoch, lease_until);
}

static const LaptopBackend backend = {
        .pair = b_pair,
        .get = b_get,
        .list = b_list,
        .revoke = b_revoke,
        .seen = b_seen,
        .grant_get = b_grant_get,
        .grant_renew = b_grant_renew,
};

void laptop_fleet_use(Catalog *c, Fleet *f) {
        laptop_registry_set_backend(c, f ? &backend : NULL, f);
}
