/* SPDX-License-Identifier: MIT */
#include "laptop-registry.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../basic/base64.h"
#include "../basic/error.h"
#include "../basic/util.h"
#include "../catalog/catalog-sql.h"
#include "../crypto/request-sig.h"

#define COLUMNS "id, public_key, name, user, paired, last_seen, revoked"

static struct {
        Catalog *c;
        const LaptopBackend *b;
        void *userdata;
} backend;

void laptop_registry_set_backend(Catalog *c, const LaptopBackend *b, void *userdata) {
        backend.c = b ? c : NULL;
        backend.b = b;
        backend.userdata = userdata;
}

bool laptop_registry_in_fleet(Catalog *c) {
        return c && backend.c == c;
}

/* The backend for c, or NULL: the catalog's own tables. */
static const LaptopBackend *backend_of(Catalog *c) {
        return c && backend.c == c ? backend.b : NULL;
}

const char *laptop_holder_id(const char *owner) {
        const size_t n = sizeof(LAPTOP_HOLDER_PREFIX) - 1;
        if (!owner || strncmp(owner, LAPTOP_HOLDER_PREFIX, n) || !hex_is_exact(owner + n, SIGN_KEY_ID_LEN))
                return NULL;
        return owner + n;
}

static int read_record(sqlite3_stmt *st, LaptopRecord *ret) {
        const char *id = (const char *) sqlite3_column_text(st, 0);
        const char *pub = (const char *) sqlite3_column_text(st, 1);
        const char *name = (const char *) sqlite3_column_text(st, 2);
        const char *user = (const char *) sqlite3_column_text(st, 3);
        LaptopRecord r = {
                .paired = sqlite3_column_int64(st, 4),
                .last_seen = sqlite3_column_int64(st, 5),
                .revoked = sqlite3_column_int64(st, 6),
        };
        if (!id || !name || !user || strlen(id) != SIGN_KEY_ID_LEN ||
            base64url_decode_exact(pub, r.public_key, sizeof r.public_key) < 0)
                return -EBADMSG;
        memcpy(r.id, id, SIGN_KEY_ID_LEN + 1);
        snprintf(r.name, sizeof r.name, "%s", name);
        snprintf(r.user, sizeof r.user, "%s", user);
        *ret = r;
        return 0;
}

/* Runs a SELECT of COLUMNS with one text parameter (NULL: none) and collects
 * up to max rows. */
static int select_records(Catalog *c, const char *sql, const char *arg, size_t max, LaptopRecord **ret,
                          size_t *ret_n) {
        LaptopRecord *rows = NULL;
        size_t n = 0, cap = 0;
        int r = 0;
        catalog_lock(c);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(catalog_sqlite(c), sql, -1, &st, NULL);
        if (rc == SQLITE_OK && arg)
                sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
        while (rc == SQLITE_OK || rc == SQLITE_ROW) {
                rc = sqlite3_step(st);
                if (rc != SQLITE_ROW || n == max)
                        break;
                if (n == cap) {
                        size_t nc = cap ? cap * 2 : 8;
                        LaptopRecord *nr = realloc(rows, nc * sizeof *nr);
                        if (!nr) {
                                r = -ENOMEM;
                                break;
                        }
                        rows = nr;
                        cap = nc;
                }
                r = read_record(st, &rows[n]);
                if (r < 0) {
                        r = err_set(r, "catalog '%s': laptop row %zu is malformed", catalog_path(c), n);
                        break;
                }
                n++;
        }
        if (r >= 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
                r = catalog_error(c, rc, "reading laptops");
        sqlite3_finalize(TAKE_PTR(st));
        catalog_unlock(c);
        if (r < 0) {
                free(rows);
                return r;
        }
        *ret = rows;
        *ret_n = n;
        return 0;
}

static int select_one(Catalog *c, const char *where, const char *arg, LaptopRecord *ret) {
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT " COLUMNS " FROM laptops WHERE %s", where);
        LaptopRecord *rows = NULL;
        size_t n = 0;
        int r = select_records(c, sql, arg, 1, &rows, &n);
        if (r < 0)
                return r;
        if (n == 1)
                *ret = rows[0];
        free(rows);
        return n == 1 ? 0 : -ENOENT;
}

int laptop_get(Catalog *c, const char *id, LaptopRecord *ret) {
        if (backend_of(c))
                return backend.b->get(backend.userdata, id, ret);
        int r = select_one(c, "id = ?", id, ret);
        if (r == -ENOENT)
                return err_set(r, "unknown laptop '%s' (pair it again: restart its daemon)", id);
        return r;
}

int laptop_list(Catalog *c, const char *user, LaptopRecord **ret, size_t *ret_n) {
        if (backend_of(c))
                return backend.b->list(backend.userdata, user, ret, ret_n);
        return select_records(c,
                              user ? "SELECT " COLUMNS " FROM laptops WHERE user = ? ORDER BY paired, id"
                                   : "SELECT " COLUMNS " FROM laptops ORDER BY paired, id",
                              user, SIZE_MAX, ret, ret_n);
}

int laptop_pair(Catalog *c, const uint8_t pub[static SIGN_PUBLIC_SIZE], const char *name, const char *user,
                LaptopRecord *ret, bool *ret_again) {
        if (backend_of(c))
                return backend.b->pair(backend.userdata, pub, name, user, ret, ret_again);
        char pub64[BASE64URL_LEN(SIGN_PUBLIC_SIZE) + 1], id[SIGN_KEY_ID_LEN + 1];
        base64url_encode(pub, SIGN_PUBLIC_SIZE, pub64);
        sign_key_id(pub, id);
        int64_t now = (int64_t) time(NULL);
        LaptopRecord old;
        int r = select_one(c, "public_key = ?", pub64, &old);
        if (r < 0 && r != -ENOENT)
                return r;
        bool again = r >= 0;
        if (again && old.revoked)
                return err_set(-EKEYREVOKED,
                               "this key belongs to laptop '%s' (id %s), revoked: a revoked laptop pairs again with a "
                               "new key (move its laptop.key away)",
                               old.name, old.id);
        if (again && strcmp(old.user, user))
                return err_set(-EEXIST, "this key is paired already, as laptop '%s' (id %s) of another user", old.name,
                               old.id);
        r = again ? catalog_exec(c, "renaming a laptop", "UPDATE laptops SET name = ?, last_seen = ? WHERE id = ?",
                                 "tit", name, now, id)
                  : catalog_exec(c, "pairing a laptop",
                                 "INSERT INTO laptops (" COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, 0)", "ttttii", id, pub64,
                                 name, user, now, now);
        if (r == -EEXIST)
                return err_set(r, "a laptop with id %s is paired already (pair again)", id);
        if (r < 0)
                return r;
        if (ret_again)
                *ret_again = again;
        return ret ? laptop_get(c, id, ret) : 0;
}

int laptop_revoke(Catalog *c, const char *id_prefix, LaptopRecord *ret) {
        if (backend_of(c))
                return backend.b->revoke(backend.userdata, id_prefix, ret);
        char id[ID_HEX_SIZE];
        int r = catalog_find_prefix(c, "laptops", "laptop", "roam laptop list", id_prefix, id, sizeof id);
        if (r >= 0)
                r = catalog_exec(c, "revoking a laptop",
                                 "UPDATE laptops SET revoked = ? WHERE id = ? AND revoked = 0", "it",
                                 (int64_t) time(NULL), id);
        if (r < 0)
                return r;
        LaptopRecord rec;
        r = laptop_get(c, id, &rec);
        if (r >= 0 && ret)
                *ret = rec;
        return r;
}

int laptop_seen(Catalog *c, const char *id) {
        if (backend_of(c))
                return backend.b->seen(backend.userdata, id);
        /* to the minute: a hand-over's signed request should not wait for a write */
        int64_t now = (int64_t) time(NULL);
        int r = catalog_exec(c, "noting a laptop's request",
                             "UPDATE laptops SET last_seen = ? WHERE id = ? AND last_seen < ?", "iti", now, id,
                             now - LAPTOP_SEEN_RESOLUTION_S);
        return r < 0 ? r : 0;
}

int laptop_grant_set(Catalog *c, const char *session, const char *laptop, int64_t epoch, int64_t lease_until) {
        if (backend_of(c))
                return 0; /* written with the owner (fleet_give_laptop()) */
        /* a repeated grant (same laptop, same epoch) keeps its time */
        int r = catalog_exec(c, "recording an offline grant",
                             "INSERT INTO offline_grants (session, laptop, epoch, granted, lease_until) "
                             "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (session) DO UPDATE SET "
                             "granted = CASE WHEN laptop = ?2 AND epoch = ?3 THEN granted ELSE ?4 END, "
                             "laptop = ?2, epoch = ?3, lease_until = ?5",
                             "ttiii", session, laptop, epoch, (int64_t) time(NULL), lease_until);
        return r < 0 ? r : 0;
}

int laptop_grant_get(Catalog *c, const char *session, LaptopGrant *ret) {
        if (backend_of(c))
                return backend.b->grant_get(backend.userdata, session, ret);
        catalog_lock(c);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;
        int rc = sqlite3_prepare_v2(catalog_sqlite(c),
                                    "SELECT laptop, epoch, granted, lease_until FROM offline_grants WHERE session = ?",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_text(st, 1, session, -1, SQLITE_STATIC);
                rc = sqlite3_step(st);
        }
        if (rc == SQLITE_ROW) {
                const char *id = (const char *) sqlite3_column_text(st, 0);
                LaptopGrant g = {
                        .epoch = sqlite3_column_int64(st, 1),
                        .granted = sqlite3_column_int64(st, 2),
                        .lease_until = sqlite3_column_int64(st, 3),
                };
                snprintf(g.laptop, sizeof g.laptop, "%s", id ? id : "");
                *ret = g;
                r = 0;
        } else
                r = rc == SQLITE_DONE ? -ENOENT : catalog_error(c, rc, "reading an offline grant");
        sqlite3_finalize(TAKE_PTR(st));
        catalog_unlock(c);
        return r;
}

int laptop_grant_renew(Catalog *c, const char *session, const char *laptop, int64_t epoch, int64_t lease_until) {
        if (backend_of(c))
                return backend.b->grant_renew(backend.userdata, session, laptop, epoch, lease_until);
        int r = catalog_exec(c, "renewing a lease",
                             "UPDATE offline_grants SET lease_until = ? WHERE session = ? AND laptop = ? AND epoch = ?",
                             "itti", lease_until, session, laptop, epoch);
        if (r == 0)
                return err_set(-ESTALE, "session '%s' is not offline on laptop %s at epoch %lld", session, laptop,
                               (long long) epoch);
        return r < 0 ? r : 0;
}

int laptop_grant_drop(Catalog *c, const char *session) {
        if (backend_of(c))
                return 0; /* removed with the owner (fleet_take_from_laptop()) */
        int r = catalog_exec(c, "dropping an offline grant", "DELETE FROM offline_grants WHERE session = ?", "t",
                             session);
        return r < 0 ? r : 0;
}

void laptop_owner_describe(Catalog *c, const char *session, const char *owner, bool with_lease, char *buf,
                           size_t size) {
        const char *id = laptop_holder_id(owner);
        LaptopRecord l;
        LaptopGrant g;
        if (!id) {
                snprintf(buf, size, "%s", owner);
                return;
        }
        bool known = laptop_get(c, id, &l) >= 0;
        bool granted = laptop_grant_get(c, session, &g) >= 0 && !strcmp(g.laptop, id);
        err_clear();
        char since[UTC_BUF_SIZE] = "", until[UTC_BUF_SIZE] = "";
        if (granted)
                format_utc(g.granted, false, since, sizeof since);
        if (granted && with_lease && g.lease_until > 0)
                format_utc(g.lease_until, false, until, sizeof until);
        snprintf(buf, size, "laptop '%s' (id %s)%s%s%s%s%s", known ? l.name : "?", id, since[0] ? " since " : "",
                 since, until[0] ? ", lease until " : "", until, known && l.revoked ? ", revoked" : "");
}

void laptop_owner_describer(void *catalog, const char *session, const char *owner, char *buf, size_t size) {
        const char *id = laptop_holder_id(owner);
        LaptopRecord l;
        if (id && laptop_get(catalog, id, &l) >= 0)
                snprintf(buf, size, "laptop '%s' (id %s)", l.name, l.id);
        else
                snprintf(buf, size, "%s", owner);
        err_clear();
}

int laptop_reclaim(Catalog *c, SessionHost *h, const char *name, ReclaimResult *ret) {
        ReclaimResult res;
        int r = handoff_reclaim(h, name, &res);
        if (r < 0)
                return r;
        char who[384];
        laptop_owner_describe(c, name, res.lost_owner, false, who, sizeof who);
        char *d = strdup(who);
        if (d) {
                free(res.lost_owner);
                res.lost_owner = d;
        }
        (void) laptop_grant_drop(c, name);
        err_clear();
        *ret = res;
        return 0;
}

json_t *laptop_holder_json(Catalog *c, const char *session, const char *owner) {
        const char *id = laptop_holder_id(owner);
        if (!id)
                return json_null();
        LaptopRecord l = { 0 };
        LaptopGrant g = { 0 };
        bool known = laptop_get(c, id, &l) >= 0;
        bool granted = laptop_grant_get(c, session, &g) >= 0 && !strcmp(g.laptop, id);
        err_clear();
        return json_pack("{s:s, s:s, s:o, s:o, s:b}", "id", id, "name", known ? l.name : "?", "since",
                         granted ? json_integer(g.granted) : json_null(), "lease_until",
                         granted ? json_integer(g.lease_until) : json_null(), "revoked", known && l.revoked);
}
