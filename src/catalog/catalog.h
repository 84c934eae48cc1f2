/* SPDX-License-Identifier: MIT */
#pragma once

/* The catalog: roam's small relational state in SQLite
 * ($ROAM_HOME/catalog.db): API tokens; the tables of sessions
 * (src/session/session-db.c), hoards (src/daemon/hoard.c) and laptops
 * (src/daemon/laptop-registry.c) ride on the same connection. It sits below
 * the session layer and the daemon, which both keep tables in it, and
 * depends on src/basic/ alone.
 *
 * Schema changes are migration steps (catalog.c: migrations[]), applied in
 * order inside a transaction and counted in PRAGMA user_version. A later
 * feature adds its tables by appending a step; never edit a released step.
 * A catalog written by a newer roam (user_version beyond the table) is
 * refused with -EPROTONOSUPPORT.
 *
 * The database runs in WAL mode with a busy timeout, so the daemon and CLI
 * commands (roam token ...) use it at the same time.
 *
 * Tokens: "roam_" + 43 base64url characters (32 random bytes from
 * getrandom). Only the SHA-256 of a token is stored; its lowercase hex is
 * the token's id (shown by list, taken by revoke as a unique prefix).
 *
 * Thread safety: every function may be called from any thread (one
 * connection behind a mutex). */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../basic/hash.h"

typedef enum CatalogRole {
        CATALOG_ROLE_ADMIN,
        CATALOG_ROLE_USER, /* bound to one user name */
        CATALOG_ROLE_HOST, /* another roam host (server or laptop daemon) */
        _CATALOG_ROLE_MAX,
} CatalogRole;

#define CATALOG_TOKEN_PREFIX "roam_"
#define CATALOG_TOKEN_B64_LEN 43 /* base64url of 32 bytes, no padding */
#define CATALOG_TOKEN_LEN (sizeof(CATALOG_TOKEN_PREFIX) - 1 + CATALOG_TOKEN_B64_LEN)
#define CATALOG_TOKEN_ID_MIN_PREFIX 4 /* shortest id prefix revoke accepts */

/* "admin", "user", "host"; NULL for an invalid value. */
const char *catalog_role_to_string(CatalogRole role);
/* The role, or -EINVAL. */
int catalog_role_from_string(const char *s);

typedef struct Catalog Catalog;

/* Opens (creating it if missing, mode 0600) the catalog at path and brings
 * its schema up to date. The directory must exist. Caller frees with
 * catalog_free(). */
int catalog_open(const char *path, Catalog **ret);
void catalog_free(Catalog *c);
static inline void catalog_freep(Catalog **c) {
        if (*c)
                catalog_free(*c);
}

/* Schema version after catalog_open() (= number of migration steps). */
int catalog_schema_version(Catalog *c);

/* The SQLite connection, for the tables of other subsystems (sessions:
 * src/session/session-db.c). Borrowed. Hold catalog_lock() around every use:
 * the connection is shared by all threads. */
struct sqlite3;
struct sqlite3 *catalog_sqlite(Catalog *c);
void catalog_lock(Catalog *c);
void catalog_unlock(Catalog *c);

/* Maps an SQLite result code to a negative errno (SQLITE_CONSTRAINT ->
 * -EEXIST, BUSY -> -EBUSY, FULL -> -ENOSPC, ...) and records a detail naming
 * the catalog and what failed. */
int catalog_error(Catalog *c, int rc, const char *what);

/* Runs one statement that returns no rows, binding parameters described by
 * fmt: 't' text (NULL = SQL NULL), 'i' int64. Takes the catalog lock itself.
 * Returns the number of rows changed, or a negative errno (catalog_error). */
int catalog_exec(Catalog *c, const char *what, const char *sql, const char *fmt, ...);
int catalog_vexec(Catalog *c, const char *what, const char *sql, const char *fmt, va_list ap);
/* The database file. Borrowed. */
const char *catalog_path(Catalog *c);

/* Creates a token. user is required for CATALOG_ROLE_USER (a valid name per
 * name_is_valid()) and must be NULL for the other roles (-EINVAL with detail).
 * *ret_token is the only copy of the secret; the caller frees it. */
int catalog_token_create(Catalog *c, CatalogRole role, const char *user, char **ret_token);
/* The same with a label that says what the token is for (NULL: none; else
 * CATALOG_TOKEN_LABEL_RULE, -EINVAL with detail otherwise), shown by
 * catalog_token_list() and never part of the secret; and the unix time from
 * which on it is refused like a revoked one (expires; 0 = never). */
#define CATALOG_TOKEN_LABEL_MAX 128
#define CATALOG_TOKEN_LABEL_RULE "1-128 bytes without control characters"
int catalog_token_create_labeled(Catalog *c, CatalogRole role, const char *user, const char *label, int64_t expires,
                                 char **ret_token);
bool catalog_token_label_is_valid(const char *label);

/* Looks a presented token up; a pairing token "TOKEN@sha256:HEX"
 * (crypto/fingerprint.h) is looked up by its TOKEN. -EACCES if it is
 * malformed, unknown, revoked or expired.
 * *ret_user (may be NULL to skip) is the user name for CATALOG_ROLE_USER and
 * NULL otherwise; the caller frees it. */
int catalog_token_check(Catalog *c, const char *token, CatalogRole *ret_role, char **ret_user);

typedef struct CatalogToken {
        char id[ID_HEX_SIZE]; /* hex SHA-256 of the token */
        CatalogRole role;
        char *user;      /* NULL unless role is user */
        char *label;     /* NULL when it has none */
        int64_t created; /* unix time */
        int64_t expires; /* unix time; 0 = never */
} CatalogToken;

/* All tokens, oldest first. Caller frees with catalog_token_list_free(). */
int catalog_token_list(Catalog *c, CatalogToken **ret, size_t *ret_n);
void catalog_token_list_free(CatalogToken *list, size_t n);

/* Revokes the one token whose id starts with id_prefix (at least
 * CATALOG_TOKEN_ID_MIN_PREFIX hex digits). -EINVAL for a malformed prefix,
 * -ENOENT if none matches, -ENOTUNIQ if several do (all with detail). If
 * ret_id is non-NULL (ID_HEX_SIZE bytes) it receives the full id. */
int catalog_token_revoke(Catalog *c, const char *id_prefix, char *ret_id);

/* The one id in table (a table of ours with a hex "id" column) that starts
 * with prefix (at least CATALOG_TOKEN_ID_MIN_PREFIX hex digits, any case),
 * into ret_id (size bytes). -EINVAL, -ENOENT, -ENOTUNIQ with a detail that
 * names noun ("token", "laptop") and list_cmd ("roam token list"). */
int catalog_find_prefix(Catalog *c, const char *table, const char *noun, const char *list_cmd, const char *prefix,
                        char *ret_id, size_t size);
