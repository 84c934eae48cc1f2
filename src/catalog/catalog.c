/* SPDX-License-Identifier: MIT */
#include "catalog.h"

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../basic/error.h"
#include "../basic/base64.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "catalog-sql.h"

#define BUSY_TIMEOUT_MS 5000

/* Schema migrations: step i brings user_version from i to i+1. Append only. */
static const char *const migrations[] = {
        /* 1: API tokens */
        "CREATE TABLE tokens (\n"
        "        id TEXT PRIMARY KEY NOT NULL,       -- hex SHA-256 of the token\n"
        "        role TEXT NOT NULL CHECK (role IN ('admin', 'user', 'host')),\n"
        "        user TEXT CHECK ((role = 'user') = (user IS NOT NULL)),\n"
        "        created INTEGER NOT NULL            -- unix time\n"
        ");\n",
        /* 2: sessions (src/session/session-db.c) */
        "CREATE TABLE sessions (\n"
        "        name TEXT PRIMARY KEY NOT NULL,\n"
        "        user TEXT NOT NULL,\n"
        "        image TEXT NOT NULL,                -- image name at creation\n"
        "        image_id TEXT NOT NULL,             -- hex index id of the master image\n"
        "        config TEXT NOT NULL,               -- VM config JSON (src/session/vm.h)\n"
        "        state TEXT NOT NULL CHECK (state IN ('created', 'running', 'paused', 'stopped', 'crashed', "
        "'away')),\n"
        "        owner TEXT NOT NULL DEFAULT 'local', -- 'local' or the URL of the roam host that owns it\n"
        "        epoch INTEGER NOT NULL DEFAULT 0,   -- bumped on every change of owner\n"
        "        last_checkpoint TEXT,               -- hex manifest id, or NULL\n"
        "        checkpoints INTEGER NOT NULL DEFAULT 0, -- sequence number of the last checkpoint\n"
        "        created INTEGER NOT NULL,           -- unix time\n"
        "        updated INTEGER NOT NULL\n"
        ");\n",
        /* 3: background pulls of a laptop (src/daemon/hoard.c) */
        "CREATE TABLE hoards (\n"
        "        id INTEGER PRIMARY KEY,\n"
        "        url TEXT NOT NULL,                  -- the roam daemon to pull from\n"
        "        ref TEXT NOT NULL,                  -- remote ref, also the local name\n"
        "        token TEXT NOT NULL,                -- token for that daemon (the file is 0600)\n"
        "        limit_rate INTEGER NOT NULL DEFAULT 0, -- bytes/s per connection, 0 = none\n"
        "        state TEXT NOT NULL CHECK (state IN ('active', 'done', 'failed')),\n"
        "        chunks_done INTEGER NOT NULL DEFAULT 0,\n"
        "        chunks_total INTEGER NOT NULL DEFAULT 0,\n"
        "        wire_bytes INTEGER NOT NULL DEFAULT 0,\n"
        "        attempts INTEGER NOT NULL DEFAULT 0,\n"
        "        last_error TEXT,\n"
        "        created INTEGER NOT NULL,\n"
        "        updated INTEGER NOT NULL,\n"
        "        UNIQUE (url, ref)\n"
        ");\n",
        /* 4: paired laptops and the sessions they hold offline (laptop-registry.c) */
        "CREATE TABLE laptops (\n"
        "        id TEXT PRIMARY KEY NOT NULL,       -- hex of SHA-256(public_key), first 16 bytes\n"
        "        public_key TEXT NOT NULL UNIQUE,    -- base64url Ed25519 public key\n"
        "        name TEXT NOT NULL,                 -- display name (the laptop's --name or host name)\n"
        "        user TEXT NOT NULL,                 -- the user it was paired for\n"
        "        paired INTEGER NOT NULL,            -- unix time\n"
        "        last_seen INTEGER NOT NULL,         -- unix time of its last signed request\n"
        "        revoked INTEGER NOT NULL DEFAULT 0  -- unix time of the revocation, 0 = valid\n"
        ");\n"
        "CREATE TABLE offline_grants (\n"
        "        session TEXT PRIMARY KEY NOT NULL,\n"
        "        laptop TEXT NOT NULL,               -- laptops.id\n"
        "        epoch INTEGER NOT NULL,             -- the laptop's epoch\n"
        "        granted INTEGER NOT NULL,           -- unix time of the take offline\n"
        "        lease_until INTEGER NOT NULL        -- unix time, 0 = no limit\n"
        ");\n",
        /* 5: a label on each token, what it is for (NULL: none) */
        "ALTER TABLE tokens ADD COLUMN label TEXT;\n",
        /* 6: tokens that expire (unix time; 0: never) */
        "ALTER TABLE tokens ADD COLUMN expires INTEGER NOT NULL DEFAULT 0;\n",
};

struct Catalog {
        sqlite3 *db;
        char *path;
        pthread_mutex_t mutex;
        int version;
};

static const char *const role_names[_CATALOG_ROLE_MAX] = {
        [CATALOG_ROLE_ADMIN] = "admin",
        [CATALOG_ROLE_USER] = "user",
        [CATALOG_ROLE_HOST] = "host",
};

const char *catalog_role_to_string(CatalogRole role) {
        if ((unsigned) role >= _CATALOG_ROLE_MAX)
                return NULL;
        return role_names[role];
}

int catalog_role_from_string(const char *s) {
        for (int i = 0; s && i < _CATALOG_ROLE_MAX; i++)
                if (!strcmp(s, role_names[i]))
                        return i;
        return -EINVAL;
}

int catalog_error(Catalog *c, int rc, const char *what) {
        int r;
        switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                r = -EBUSY;
                break;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_READONLY:
        case SQLITE_PERM:
        case SQLITE_AUTH:
                r = -EACCES;
                break;
        case SQLITE_FULL:
                r = -ENOSPC;
                break;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                r = -EBADMSG;
                break;
        case SQLITE_CANTOPEN:
                r = -ENOENT;
                break;
        case SQLITE_CONSTRAINT:
                r = -EEXIST;
                break;
        default:
                r = -EIO;
        }
        return err_set(r, "catalog '%s': %s failed: %s", c->path, what,
                       c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
}

static int exec(Catalog *c, const char *sql, const char *what) {
        int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return catalog_error(c, rc, what);
        return 0;
}

static int read_user_version(Catalog *c, int *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return catalog_error(c, rc, "reading the schema version");
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return catalog_error(c, rc, "reading the schema version");
        *ret = sqlite3_column_int(st, 0);
        return 0;
}

static int migrate(Catalog *c) {
        int v, r;
        r = read_user_version(c, &v);
        if (r < 0)
                return r;
        const int n = (int) ELEMENTSOF(migrations);
        if (v > n)
                return err_set(-EPROTONOSUPPORT,
                               "catalog '%s' has schema version %d, newer than this roam knows (%d); upgrade roam",
                               c->path, v, n);
        if (v == n) {
                c->version = v;
                return 0;
        }
        /* IMMEDIATE: two processes opening a new catalog at once migrate one after the other */
        r = exec(c, "BEGIN IMMEDIATE", "starting a transaction");
        if (r < 0)
                return r;
        r = read_user_version(c, &v); /* another process may have migrated meanwhile */
        for (int i = v; r >= 0 && i < n; i++) {
                char pragma[64];
                r = exec(c, migrations[i], "a schema migration");
                if (r >= 0) {
                        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", i + 1);
                        r = exec(c, pragma, "setting the schema version");
                }
        }
        if (r < 0) {
                sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
                return r;
        }
        r = exec(c, "COMMIT", "committing");
        if (r < 0) {
                sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
                return r;
        }
        c->version = n;
        return 0;
}

int catalog_open(const char *path, Catalog **ret) {
        Catalog *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        pthread_mutex_init(&c->mutex, NULL);
        c->path = strdup(path);
        if (!c->path) {
                catalog_free(c);
                return -ENOMEM;
        }
        int rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                                 NULL);
        if (rc != SQLITE_OK) {
                int r = catalog_error(c, rc, "opening");
                catalog_free(c);
                return r;
        }
        /* token hashes are not secrets, but nothing in the catalog is anyone else's business */
        (void) chmod(path, 0600);
        sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
        int r = exec(c, "PRAGMA journal_mode = WAL", "enabling WAL");
        if (r >= 0)
                r = exec(c, "PRAGMA synchronous = FULL", "setting synchronous");
        if (r >= 0)
                r = exec(c, "PRAGMA foreign_keys = ON", "enabling foreign keys");
        if (r >= 0)
                r = migrate(c);
        if (r < 0) {
                catalog_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void catalog_free(Catalog *c) {
        if (!c)
                return;
        if (c->db)
                sqlite3_close_v2(c->db);
        pthread_mutex_destroy(&c->mutex);
        free(c->path);
        free(c);
}

int catalog_schema_version(Catalog *c) {
        return c->version;
}

sqlite3 *catalog_sqlite(Catalog *c) {
        return c->db;
}

void catalog_lock(Catalog *c) {
        pthread_mutex_lock(&c->mutex);
}

void catalog_unlock(Catalog *c) {
        pthread_mutex_unlock(&c->mutex);
}

const char *catalog_path(Catalog *c) {
        return c->path;
}

static bool token_is_wellformed(const char *t) {
        const size_t pl = sizeof(CATALOG_TOKEN_PREFIX) - 1;
        if (!t || strncmp(t, CATALOG_TOKEN_PREFIX, pl))
                return false;
        size_t i;
        for (i = pl; t[i]; i++) {
                char ch = t[i];
                if (i >= CATALOG_TOKEN_LEN)
                        return false;
                if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                      ch == '_'))
                        return false;
        }
        return i == CATALOG_TOKEN_LEN;
}

static void token_id(const char *token, char id[static ID_HEX_SIZE]) {
        RoamId h;
        sha256(token, strlen(token), &h);
        id_to_hex(&h, id);
}

bool catalog_token_label_is_valid(const char *label) {
        size_t n = strlen(label);
        if (n < 1 || n > CATALOG_TOKEN_LABEL_MAX)
                return false;
        for (const unsigned char *p = (const unsigned char *) label; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return false;
        return true;
}

int catalog_token_create(Catalog *c, CatalogRole role, const char *user, char **ret_token) {
        return catalog_token_create_labeled(c, role, user, NULL, 0, ret_token);
}

int catalog_token_create_labeled(Catalog *c, CatalogRole role, const char *user, const char *label, int64_t expires,
                                 char **ret_token) {
        if (expires < 0)
                return err_set(-EINVAL, "a token cannot expire before 1970");
        if (label && !catalog_token_label_is_valid(label))
                return err_set(-EINVAL, "token label '%s' is invalid (use " CATALOG_TOKEN_LABEL_RULE ")", label);
        if (!catalog_role_to_string(role))
                return err_set(-EINVAL, "invalid token role (use admin, user or host)");
        if (role == CATALOG_ROLE_USER && !user)
                return err_set(-EINVAL, "a user token needs a user name (--user NAME)");
        if (role != CATALOG_ROLE_USER && user)
                return err_set(-EINVAL, "only user tokens take a user name (drop --user or use --role user)");
        if (user && !name_is_valid(user))
                return err_set(-EINVAL, "user name '%s' is invalid (use " NAME_RULE ")", user);

        uint8_t raw[32];
        int r = random_bytes(raw, sizeof raw);
        if (r < 0)
                return err_set(r, "cannot get random bytes for a token: %s", strerror(-r));
        _cleanup_free_ char *token = malloc(CATALOG_TOKEN_LEN + 1);
        if (!token)
                return -ENOMEM;
        strcpy(token, CATALOG_TOKEN_PREFIX);
        base64url_encode(raw, sizeof raw, token + sizeof(CATALOG_TOKEN_PREFIX) - 1);
        explicit_bzero(raw, sizeof raw);
        char id[ID_HEX_SIZE];
        token_id(token, id);

        pthread_mutex_lock(&c->mutex);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(c->db,
                                    "INSERT INTO tokens (id, role, user, created, label, expires) VALUES (?, ?, ?, ?, ?, ?)",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, role_names[role], -1, SQLITE_STATIC);
                if (user)
                        sqlite3_bind_text(st, 3, user, -1, SQLITE_STATIC);
                else
                        sqlite3_bind_null(st, 3);
                sqlite3_bind_int64(st, 4, (sqlite3_int64) time(NULL));
                if (label)
                        sqlite3_bind_text(st, 5, label, -1, SQLITE_STATIC);
                else
                        sqlite3_bind_null(st, 5);
                sqlite3_bind_int64(st, 6, (sqlite3_int64) expires);
                rc = sqlite3_step(st);
        }
        r = rc == SQLITE_DONE ? 0 : catalog_error(c, rc, "storing a token");
        sqlite3_finalize(TAKE_PTR(st)); /* under the mutex: the connection is shared */
        pthread_mutex_unlock(&c->mutex);
        if (r < 0)
                return r;
        *ret_token = TAKE_PTR(token);
        return 0;
}

int catalog_token_check(Catalog *c, const char *presented, CatalogRole *ret_role, char **ret_user) {
        /* a pairing token: the fingerprint after '@' is the client's business */
        char token[CATALOG_TOKEN_LEN + 1];
        size_t n = presented ? strcspn(presented, "@") : 0;
        if (n > CATALOG_TOKEN_LEN)
                return -EACCES;
        if (n)
                memcpy(token, presented, n);
        token[n] = 0;
        if (!token_is_wellformed(token))
                return -EACCES;
        char id[ID_HEX_SIZE];
        token_id(token, id);
        explicit_bzero(token, sizeof token);

        int r;
        int role = -1;
        _cleanup_free_ char *user = NULL;
        pthread_mutex_lock(&c->mutex);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(c->db, "SELECT role, user, expires FROM tokens WHERE id = ?", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
                rc = sqlite3_step(st);
        }
        if (rc == SQLITE_ROW) {
                role = catalog_role_from_string((const char *) sqlite3_column_text(st, 0));
                const char *u = (const char *) sqlite3_column_text(st, 1);
                r = 0;
                if (u && !(user = strdup(u)))
                        r = -ENOMEM;
                else if (role < 0 || (role == CATALOG_ROLE_USER) != !!u)
                        r = err_set(-EBADMSG, "catalog '%s': token %.12s is malformed (revoke it)", c->path, id);
                int64_t expires = sqlite3_column_int64(st, 2);
                if (r >= 0 && expires > 0 && (int64_t) time(NULL) >= expires)
                        r = err_set(-EACCES, "token %.12s expired", id);
        } else if (rc == SQLITE_DONE)
                r = -EACCES;
        else
                r = catalog_error(c, rc, "looking up a token");
        sqlite3_finalize(TAKE_PTR(st));
        pthread_mutex_unlock(&c->mutex);
        if (r < 0)
                return r;
        if (ret_role)
                *ret_role = (CatalogRole) role;
        if (ret_user)
                *ret_user = TAKE_PTR(user);
        return 0;
}

void catalog_token_list_free(CatalogToken *list, size_t n) {
        for (size_t i = 0; list && i < n; i++) {
                free(list[i].user);
                free(list[i].label);
        }
        free(list);
}

int catalog_token_list(Catalog *c, CatalogToken **ret, size_t *ret_n) {
        CatalogToken *list = NULL;
        size_t n = 0, cap = 0;
        int r = 0;
        pthread_mutex_lock(&c->mutex);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(c->db, "SELECT id, role, user, created, label, expires FROM tokens ORDER BY created, id", -1,
                                    &st, NULL);
        while (rc == SQLITE_OK || rc == SQLITE_ROW) {
                rc = sqlite3_step(st);
                if (rc != SQLITE_ROW)
                        break;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        CatalogToken *nl = realloc(list, ncap * sizeof *nl);
                        if (!nl) {
                                r = -ENOMEM;
                                break;
                        }
                        list = nl;
                        cap = ncap;
                }
                CatalogToken *t = &list[n];
                *t = (CatalogToken){ .created = sqlite3_column_int64(st, 3), .expires = sqlite3_column_int64(st, 5) };
                const char *id = (const char *) sqlite3_column_text(st, 0);
                const char *u = (const char *) sqlite3_column_text(st, 2);
                const char *label = (const char *) sqlite3_column_text(st, 4);
                int role = catalog_role_from_string((const char *) sqlite3_column_text(st, 1));
                snprintf(t->id, sizeof t->id, "%s", id ? id : "");
                t->role = role < 0 ? CATALOG_ROLE_USER : (CatalogRole) role;
                n++; /* from here on the list frees what it holds */
                if ((u && !(t->user = strdup(u))) || (label && !(t->label = strdup(label)))) {
                        r = -ENOMEM;
                        break;
                }
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = catalog_error(c, rc, "listing tokens");
        sqlite3_finalize(TAKE_PTR(st));
        pthread_mutex_unlock(&c->mutex);
        if (r < 0) {
                catalog_token_list_free(list, n);
                return r;
        }
        *ret = list;
        *ret_n = n;
        return 0;
}

int catalog_find_prefix(Catalog *c, const char *table, const char *noun, const char *list_cmd, const char *prefix,
                        char *ret_id, size_t size) {
        size_t len = strlen(prefix);
        if (len < CATALOG_TOKEN_ID_MIN_PREFIX || len >= size)
                return err_set(-EINVAL, "%s id '%s' is too short (give at least %d hex digits from '%s')", noun,
                               prefix, CATALOG_TOKEN_ID_MIN_PREFIX, list_cmd);
        char lower[ID_HEX_SIZE];
        if (len >= sizeof lower)
                return err_set(-EINVAL, "%s id '%s' is too long (copy it from '%s')", noun, prefix, list_cmd);
        for (size_t i = 0; i <= len; i++) {
                char ch = prefix[i];
                if (ch >= 'A' && ch <= 'F')
                        ch = (char) (ch - 'A' + 'a');
                if (i < len && !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
                        return err_set(-EINVAL, "%s id '%s' is not hex (copy it from '%s')", noun, prefix, list_cmd);
                lower[i] = ch;
        }
        char sql[128], found[ID_HEX_SIZE] = "";
        /* table is one of ours, never input; hex ids have no LIKE wildcards, substr() keeps it exact */
        snprintf(sql, sizeof sql, "SELECT id FROM %s WHERE substr(id, 1, ?) = ? LIMIT 2", table);
        int r = 0, matches = 0;
        pthread_mutex_lock(&c->mutex);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_int(st, 1, (int) len);
                sqlite3_bind_text(st, 2, lower, -1, SQLITE_STATIC);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                        if (matches++ == 0)
                                snprintf(found, sizeof found, "%s", (const char *) sqlite3_column_text(st, 0));
        }
        if (rc != SQLITE_DONE)
                r = catalog_error(c, rc, "looking up an id");
        else if (matches == 0)
                r = err_set(-ENOENT, "no %s with id '%s' (see '%s')", noun, prefix, list_cmd);
        else if (matches > 1)
                r = err_set(-ENOTUNIQ, "%s id '%s' matches several (give more digits)", noun, prefix);
        sqlite3_finalize(TAKE_PTR(st));
        pthread_mutex_unlock(&c->mutex);
        if (r < 0)
                return r;
        snprintf(ret_id, size, "%s", found);
        return 0;
}

int catalog_token_revoke(Catalog *c, const char *id_prefix, char *ret_id) {
        char id[ID_HEX_SIZE];
        int r = catalog_find_prefix(c, "tokens", "token", "roam token list", id_prefix, id, sizeof id);
        if (r < 0)
                return r;
        r = catalog_exec(c, "revoking a token", "DELETE FROM tokens WHERE id = ?", "t", id);
        if (r == 0)
                return err_set(-ENOENT, "no token with id '%s' (see 'roam token list')", id_prefix);
        if (r < 0)
                return r;
        if (ret_id)
                memcpy(ret_id, id, ID_HEX_SIZE);
        return 0;
}

int catalog_exec(Catalog *c, const char *what, const char *sql, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = catalog_vexec(c, what, sql, fmt, ap);
        va_end(ap);
        return r;
}

int catalog_vexec(Catalog *c, const char *what, const char *sql, const char *fmt, va_list ap) {
        catalog_lock(c);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK) {
                for (int i = 0; fmt[i]; i++) {
                        if (fmt[i] == 't') {
                                const char *v = va_arg(ap, const char *);
                                if (v)
                                        sqlite3_bind_text(st, i + 1, v, -1, SQLITE_TRANSIENT);
                                else
                                        sqlite3_bind_null(st, i + 1);
                        } else
                                sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
                }
                rc = sqlite3_step(st);
        }
        int r = rc == SQLITE_DONE ? sqlite3_changes(c->db) : catalog_error(c, rc, what);
        sqlite3_finalize(TAKE_PTR(st));
        catalog_unlock(c);
        return r;
}
