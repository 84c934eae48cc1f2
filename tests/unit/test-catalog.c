/* SPDX-License-Identifier: MIT */
/* Unit tests for src/catalog/catalog (tokens, schema migrations, concurrent
 * use), the ref policy of src/daemon/auth and the PUT /v1/refs body parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/hash.h"
#include "basic/macro.h"
#include "catalog/catalog.h"
#include "daemon/api-store.h"
#include "daemon/auth.h"

typedef struct Fixture {
        char dir[64];
        char *path;
        Catalog *c;
} Fixture;

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof *f);
        strcpy(f->dir, "/tmp/roam-unit-catalog-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        f->path = path_join(f->dir, "catalog.db");
        if (catalog_open(f->path, &f->c) < 0)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        catalog_free(f->c);
        rm_rf(f->dir);
        free(f->path);
        free(f);
        return 0;
}

static void sql(const char *path, const char *stmt) {
        sqlite3 *db;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        assert_int_equal(sqlite3_exec(db, stmt, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
}

static bool file_contains(const char *path, const char *needle) {
        char *data;
        size_t len;
        if (read_full_file(path, 64u << 20, &data, &len) < 0)
                return false;
        bool found = memmem(data, len, needle, strlen(needle)) != NULL;
        free(data);
        return found;
}

static void test_open_schema(void **state) {
        Fixture *f = *state;
        /* later features append migration steps; tokens are step 1 */
        int version = catalog_schema_version(f->c);
        assert_true(version >= 1);
        struct stat st;
        assert_int_equal(stat(f->path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        /* reopening keeps the version and the data */
        char *tok;
        assert_int_equal(catalog_token_create(f->c, CATALOG_ROLE_ADMIN, NULL, &tok), 0);
        catalog_free(f->c);
        assert_int_equal(catalog_open(f->path, &f->c), 0);
        assert_int_equal(catalog_schema_version(f->c), version);
        assert_int_equal(catalog_token_check(f->c, tok, NULL, NULL), 0);
        /* a catalog from a newer roam is refused, not damaged */
        catalog_free(f->c);
        f->c = NULL;
        sql(f->path, "PRAGMA user_version = 9999");
        Catalog *c = NULL;
        assert_int_equal(catalog_open(f->path, &c), -EPROTONOSUPPORT);
        assert_null(c);
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", version);
        sql(f->path, pragma);
        assert_int_equal(catalog_open(f->path, &f->c), 0);
        assert_int_equal(catalog_token_check(f->c, tok, NULL, NULL), 0);
        free(tok);
        /* a missing directory is an error with the path */
        char *bad = path_join(f->dir, "no/such/dir/catalog.db");
        assert_true(catalog_open(bad, &c) < 0);
        free(bad);
}

static void test_roles(void **state) {
        assert_string_equal(catalog_role_to_string(CATALOG_ROLE_ADMIN), "admin");
        assert_string_equal(catalog_role_to_string(CATALOG_ROLE_USER), "user");
        assert_string_equal(catalog_role_to_string(CATALOG_ROLE_HOST), "host");
        assert_null(catalog_role_to_string(_CATALOG_ROLE_MAX));
        assert_int_equal(catalog_role_from_string("host"), CATALOG_ROLE_HOST);
        assert_int_equal(catalog_role_from_string("root"), -EINVAL);
        assert_int_equal(catalog_role_from_string(""), -EINVAL);
        assert_int_equal(catalog_role_from_string(NULL), -EINVAL);
}

static void check_format(const char *t) {
        assert_int_equal(strlen(t), CATALOG_TOKEN_LEN);
        assert_int_equal(strncmp(t, "roam_", 5), 0);
        for (const char *p = t + 5; *p; p++)
                assert_true(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p));
}

static void test_create_check(void **state) {
        Fixture *f = *state;
        char *admin, *user, *host;
        assert_int_equal(catalog_token_create(f->c, CATALOG_ROLE_ADMIN, NULL, &admin), 0);
        assert_int_equal(catalog_token_create(f->c, CATALOG_ROLE_USER, "alice", &user), 0);
        assert_int_equal(catalog_token_create(f->c, CATALOG_ROLE_HOST, NULL, &host), 0);
        check_format(admin);
        check_format(user);
        check_format(host);
        assert_string_not_equal(admin, user);
        assert_string_not_equal(user, host);

        CatalogRole role = _CATALOG_ROLE_MAX;
        char *who = (char *) "unset";
        assert_int_equal(catalog_token_check(f->c, admin, &role, &who), 0);
        assert_int_equal(role, CATALOG_ROLE_ADMIN);
        assert_null(who);
        assert_int_equal(catalog_token_check(f->c, user, &role, &who), 0);
        assert_int_equal(role, CATALOG_ROLE_USER);
        assert_string_equal(who, "alice");
        free(who);
        assert_int_equal(catalog_token_check(f->c, host, &role, NULL), 0);
        assert_int_equal(role, CATALOG_ROLE_HOST);

        /* unknown, altered, truncated, extended and malformed tokens */
        char buf[128];
        role = _CATALOG_ROLE_MAX;
        strcpy(buf, admin);
        buf[10] = buf[10] == 'A' ? 'B' : 'A';
        assert_int_equal(catalog_token_check(f->c, buf, &role, NULL), -EACCES);
        assert_int_equal(role, _CATALOG_ROLE_MAX); /* untouched on failure */
        snprintf(buf, sizeof buf, "%.*s", (int) CATALOG_TOKEN_LEN - 1, admin);
        assert_int_equal(catalog_token_check(f->c, buf, NULL, NULL), -EACCES);
        snprintf(buf, sizeof buf, "%sA", admin);
        assert_int_equal(catalog_token_check(f->c, buf, NULL, NULL), -EACCES);
        snprintf(buf, sizeof buf, "xoam_%s", admin + 5);
        assert_int_equal(catalog_token_check(f->c, buf, NULL, NULL), -EACCES);
        assert_int_equal(catalog_token_check(f->c, "", NULL, NULL), -EACCES);
        assert_int_equal(catalog_token_check(f->c, NULL, NULL, NULL), -EACCES);
        assert_int_equal(catalog_token_check(f->c, "roam_' OR 1=1 --", NULL, NULL), -EACCES);
        /* a pairing token (crypto/fingerprint.h) is looked up by its token */
        snprintf(buf, sizeof buf, "%s@sha256:%064d", admin, 0);
        assert_int_equal(catalog_token_check(f->c, buf, &role, NULL), 0);
        assert_int_equal(role, CATALOG_ROLE_ADMIN);
        snprintf(buf, sizeof buf, "%sA@sha256:%064d", admin, 0);
        assert_int_equal(catalog_token_check(f->c, buf, NULL, NULL), -EACCES);
        assert_int_equal(catalog_token_check(f->c, "@sha256:", NULL, NULL), -EACCES);

        /* only the hash is stored: the secret is nowhere in the database files */
        catalog_free(f->c);
        f->c = NULL;
        char *wal = NULL;
        assert_true(asprintf(&wal, "%s-wal", f->path) > 0);
        assert_false(file_contains(f->path, admin + 5));
        assert_false(file_contains(wal, admin + 5));
        assert_false(file_contains(f->path, user + 5));
        free(wal);
        assert_int_equal(catalog_open(f->path, &f->c), 0);
        free(admin);
        free(user);
        free(host);
}

static void test_create_invalid(void **state) {
        Fixture *f = *state;
        char *t = NULL;
        assert_int_equal(catalog_token_create(f->c, CATALOG_ROLE_USER, NULL, &t), -EINVAL);
        assert_int_equal(catalog_token_create(f->c, CATALOG_ROLE_ADMIN, "alice", &t), -EINVAL);
        assert_int_equal(catalog_token_create(f->c, CATALOG_ROLE_HOST, "alice", &t), -EINVAL);
        assert_int_equal(catalog_token_create(f->c, CATALOG_ROLE_USER, "../bob", &t), -EINVAL);
        assert_int_equal(catalog_token_create(f->c, CATALOG_ROLE_USER, "a/b", &t), -EINVAL);
        assert_int_equal(catalog_token_create(f->c, CATALOG_ROLE_USER, "", &t), -EINVAL);
        assert_int_equal(catalog_token_create(f->c, (CatalogRole) 7, NULL, &t), -EINVAL);
        assert_null(t);
        CatalogToken *l;
        size_t n;
        assert_int_equal(catalog_token_list(f->c, &l, &n), 0);
        assert_int_equal(n, 0);
        catalog_token_list_free(l, n);
}

static void test_list_revoke(void **state) {
        Fixture *f = *state;
        char *a, *u;
        assert_int_equal(catalog_token_create(f->c, CATALOG_ROLE_ADMIN, NULL, &a), 0);
        assert_int_equal(catalog_token_create(f->c, CATALOG_ROLE_USER, "bob", &u), 0);
        CatalogToken *l;
        size_t n;
        assert_int_equal(catalog_token_list(f->c, &l, &n), 0);
        assert_int_equal(n, 2);
        /* the id is the hex SHA-256 of the token */
        RoamId h;
        char hex[ID_HEX_SIZE];
        sha256(u, strlen(u), &h);
        id_to_hex(&h, hex);
        int iu = !strcmp(l[0].id, hex) ? 0 : 1;
        assert_string_equal(l[iu].id, hex);
        assert_int_equal(l[iu].role, CATALOG_ROLE_USER);
        assert_string_equal(l[iu].user, "bob");
        assert_int_equal(l[1 - iu].role, CATALOG_ROLE_ADMIN);
        assert_null(l[1 - iu].user);
        assert_true(l[0].created > 1600000000);

        /* bad prefixes */
        char prefix[ID_HEX_SIZE];
        assert_int_equal(catalog_token_revoke(f->c, "abc", NULL), -EINVAL);
        assert_int_equal(catalog_token_revoke(f->c, "zzzzzz", NULL), -EINVAL);
        assert_int_equal(catalog_token_revoke(f->c, "abcd%", NULL), -EINVAL);
        /* a prefix that matches nothing: flip the first digit of both ids until none matches */
        snprintf(prefix, sizeof prefix, "%.8s", l[iu].id);
        prefix[0] = prefix[0] == '0' ? '1' : '0';
        if (!strncmp(prefix, l[1 - iu].id, 8))
                prefix[0] = prefix[0] == '2' ? '3' : '2';
        assert_int_equal(catalog_token_revoke(f->c, prefix, NULL), -ENOENT);

        /* revoke the user token by a prefix in upper case */
        char got[ID_HEX_SIZE];
        snprintf(prefix, sizeof prefix, "%.12s", l[iu].id);
        for (char *p = prefix; *p; p++)
                if (*p >= 'a' && *p <= 'f')
                        *p = (char) (*p - 'a' + 'A');
        assert_int_equal(catalog_token_revoke(f->c, prefix, got), 0);
        assert_string_equal(got, hex);
        assert_int_equal(catalog_token_check(f->c, u, NULL, NULL), -EACCES);
        assert_int_equal(catalog_token_check(f->c, a, NULL, NULL), 0);
        assert_int_equal(catalog_token_revoke(f->c, hex, NULL), -ENOENT);
        catalog_token_list_free(l, n);
        assert_int_equal(catalog_token_list(f->c, &l, &n), 0);
        assert_int_equal(n, 1);
        catalog_token_list_free(l, n);

        /* an ambiguous prefix revokes nothing: plant a row sharing the admin id's first 8 digits */
        sha256(a, strlen(a), &h);
        id_to_hex(&h, hex);
        char *stmt = NULL;
        assert_true(asprintf(&stmt,
                             "INSERT INTO tokens (id, role, user, created) VALUES ('%.8s%056d', 'host', NULL, 1)", hex,
                             0) > 0);
        sql(f->path, stmt);
        free(stmt);
        snprintf(prefix, sizeof prefix, "%.8s", hex);
        assert_int_equal(catalog_token_revoke(f->c, prefix, NULL), -ENOTUNIQ);
        assert_int_equal(catalog_token_check(f->c, a, NULL, NULL), 0);
        assert_int_equal(catalog_token_revoke(f->c, hex, NULL), 0);
        assert_int_equal(catalog_token_check(f->c, a, NULL, NULL), -EACCES);
        free(a);
        free(u);
}

/* ---- concurrency: threads on one handle, and a second handle (the CLI next to the daemon) ---- */

typedef struct Worker {
        Catalog *c;
        int ok;
} Worker;

static void *worker(void *p) {
        Worker *w = p;
        for (int i = 0; i < 25; i++) {
                char *t;
                CatalogRole role;
                if (catalog_token_create(w->c, CATALOG_ROLE_HOST, NULL, &t) < 0)
                        return NULL;
                if (catalog_token_check(w->c, t, &role, NULL) == 0 && role == CATALOG_ROLE_HOST)
                        w->ok++;
                free(t);
        }
        return NULL;
}

static void test_concurrent(void **state) {
        Fixture *f = *state;
        Catalog *second;
        assert_int_equal(catalog_open(f->path, &second), 0);
        pthread_t th[8];
        Worker w[8];
        for (int i = 0; i < 8; i++) {
                w[i] = (Worker){ .c = i % 2 ? second : f->c };
                assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
        }
        for (int i = 0; i < 8; i++) {
                pthread_join(th[i], NULL);
                assert_int_equal(w[i].ok, 25);
        }
        /* a token made through one handle is valid through the other at once */
        char *t;
        assert_int_equal(catalog_token_create(second, CATALOG_ROLE_USER, "carol", &t), 0);
        char *who;
        assert_int_equal(catalog_token_check(f->c, t, NULL, &who), 0);
        assert_string_equal(who, "carol");
        free(who);
        RoamId h;
        char hex[ID_HEX_SIZE];
        sha256(t, strlen(t), &h);
        assert_int_equal(catalog_token_revoke(second, id_to_hex(&h, hex), NULL), 0);
        assert_int_equal(catalog_token_check(f->c, t, NULL, NULL), -EACCES);
        free(t);
        CatalogToken *l;
        size_t n;
        assert_int_equal(catalog_token_list(f->c, &l, &n), 0);
        assert_int_equal(n, 200);
        catalog_token_list_free(l, n);
        catalog_free(second);
}

/* a token with an expiry works until then, and is refused like a revoked one after */
static void test_expiry(void **state) {
        Fixture *f = *state;
        char *live = NULL, *dead = NULL;
        int64_t now = (int64_t) time(NULL);
        assert_int_equal(catalog_token_create_labeled(f->c, CATALOG_ROLE_USER, "alice", NULL, now + 3600, &live), 0);
        assert_int_equal(catalog_token_create_labeled(f->c, CATALOG_ROLE_USER, "alice", NULL, now - 1, &dead), 0);
        assert_int_equal(catalog_token_create_labeled(f->c, CATALOG_ROLE_USER, "alice", NULL, -5, &dead), -EINVAL);
        CatalogRole role;
        assert_int_equal(catalog_token_check(f->c, live, &role, NULL), 0);
        assert_int_equal(catalog_token_check(f->c, dead, &role, NULL), -EACCES);
        CatalogToken *l;
        size_t n;
        assert_int_equal(catalog_token_list(f->c, &l, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(l[0].expires == now + 3600 || l[1].expires == now + 3600, 1);
        catalog_token_list_free(l, n);
        free(live);
        free(dead);
}

/* ---- ref policy ---- */

static void test_label(void **state) {
        Fixture *f = *state;
        char *t = NULL;
        assert_int_equal(catalog_token_create_labeled(f->c, CATALOG_ROLE_HOST, NULL, "laptop of alice, 2026", 0, &t), 0);
        free(t);
        char longer[CATALOG_TOKEN_LABEL_MAX + 2];
        memset(longer, 'x', sizeof longer - 1);
        longer[sizeof longer - 1] = 0;
        assert_int_equal(catalog_token_create_labeled(f->c, CATALOG_ROLE_HOST, NULL, longer, 0, &t), -EINVAL);
        assert_int_equal(catalog_token_create_labeled(f->c, CATALOG_ROLE_HOST, NULL, "a\nb", 0, &t), -EINVAL);
        assert_int_equal(catalog_token_create_labeled(f->c, CATALOG_ROLE_HOST, NULL, "", 0, &t), -EINVAL);
        longer[CATALOG_TOKEN_LABEL_MAX] = 0; /* exactly the limit */
        assert_int_equal(catalog_token_create_labeled(f->c, CATALOG_ROLE_USER, "bob", longer, 0, &t), 0);
        free(t);
        assert_int_equal(catalog_token_create(f->c, CATALOG_ROLE_ADMIN, NULL, &t), 0);
        free(t);
        CatalogToken *l;
        size_t n;
        assert_int_equal(catalog_token_list(f->c, &l, &n), 0);
        assert_int_equal(n, 3);
        size_t labeled = 0, unlabeled = 0;
        for (size_t i = 0; i < n; i++) {
                if (!l[i].label)
                        unlabeled++;
                else if (!strcmp(l[i].label, "laptop of alice, 2026") || !strcmp(l[i].label, longer))
                        labeled++;
        }
        assert_int_equal(labeled, 2);
        assert_int_equal(unlabeled, 1);
        catalog_token_list_free(l, n);

        /* a catalog from before labels and expiry (schema 4) gains the columns, its tokens none */
        int version = catalog_schema_version(f->c);
        catalog_free(f->c);
        f->c = NULL;
        sql(f->path, "ALTER TABLE tokens DROP COLUMN label; ALTER TABLE tokens DROP COLUMN expires; PRAGMA user_version = 4");
        assert_int_equal(catalog_open(f->path, &f->c), 0);
        assert_int_equal(catalog_schema_version(f->c), version);
        assert_int_equal(catalog_token_list(f->c, &l, &n), 0);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < n; i++)
                assert_null(l[i].label);
        catalog_token_list_free(l, n);
}

static void test_ref_access(void **state) {
        Auth admin = { .role = CATALOG_ROLE_ADMIN }, host = { .role = CATALOG_ROLE_HOST };
        Auth alice = { .role = CATALOG_ROLE_USER, .user = (char *) "alice" };
        assert_int_equal(auth_ref_access(&admin, "sessions/bob/head"), AUTH_ACCESS_WRITE);
        assert_int_equal(auth_ref_access(&host, "images/debian"), AUTH_ACCESS_WRITE);
        assert_int_equal(auth_ref_access(NULL, "anything"), AUTH_ACCESS_WRITE);
        assert_int_equal(auth_ref_access(&alice, "images/debian"), AUTH_ACCESS_READ);
        assert_int_equal(auth_ref_access(&alice, "sessions/alice/head"), AUTH_ACCESS_WRITE);
        assert_int_equal(auth_ref_access(&alice, "sessions/alice/a/b"), AUTH_ACCESS_WRITE);
        assert_int_equal(auth_ref_access(&alice, "sessions/bob/head"), AUTH_ACCESS_NONE);
        assert_int_equal(auth_ref_access(&alice, "sessions/alice2/head"), AUTH_ACCESS_NONE);
        assert_int_equal(auth_ref_access(&alice, "sessions/alice"), AUTH_ACCESS_NONE);
        assert_int_equal(auth_ref_access(&alice, "sessions/al/x"), AUTH_ACCESS_NONE);
        assert_int_equal(auth_ref_access(&alice, "imagesx/debian"), AUTH_ACCESS_NONE);
        assert_int_equal(auth_ref_access(&alice, "images"), AUTH_ACCESS_NONE);
        assert_int_equal(auth_ref_access(&alice, "other/x"), AUTH_ACCESS_NONE);
}

/* ---- PUT /v1/refs body ---- */

#define H1 "1111111111111111111111111111111111111111111111111111111111111111"
#define H2 "abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd"
#define H0 "0000000000000000000000000000000000000000000000000000000000000000"

static int parse(const char *s, RefUpdate *u) {
        return ref_update_parse(s, strlen(s), u);
}

static void test_ref_update_parse(void **state) {
        RefUpdate u;
        assert_int_equal(parse("{\"id\":\"" H1 "\"}", &u), 0);
        assert_false(u.conditional);
        assert_int_equal(u.id.b[0], 0x11);
        assert_int_equal(parse("{\"id\":\"" H1 "\",\"old\":null}", &u), 0);
        assert_true(u.conditional);
        assert_true(id_is_null(&u.old));
        assert_int_equal(parse(" {\"old\":\"" H2 "\", \"id\":\"" H1 "\", \"future\": [1, {\"x\": 2}]} ", &u), 0);
        assert_true(u.conditional);
        assert_int_equal(u.old.b[0], 0xab);

        static const char *const bad[] = {
                "",
                "{",
                "null",
                "[]",
                "\"" H1 "\"",
                "{}",
                "{\"id\":null}",
                "{\"id\":1}",
                "{\"id\":\"" H0 "\"}",
                "{\"id\":\"" H1 "0\"}",
                "{\"id\":\"" H1 "\",\"old\":\"" H0 "\"}",
                "{\"id\":\"" H1 "\",\"old\":17}",
                "{\"id\":\"" H1 "\",\"old\":\"xyz\"}",
                "{\"id\":\"" H1 "\",\"id\":\"" H2 "\"}",
                "{\"id\":\"" H1 "\",\"x\":[[[[[[[[[[1]]]]]]]]]]}",
                "{\"id\":\"" H1 "\"} trailing",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                u.id.b[0] = 0x77;
                assert_int_equal(parse(bad[i], &u), -EBADMSG);
                assert_int_equal(u.id.b[0], 0x77); /* untouched */
        }
        /* an embedded NUL and a body over the limit */
        const char nul[] = "{\"id\":\"" H1 "\"}\0";
        assert_int_equal(ref_update_parse(nul, sizeof nul, &u), -EBADMSG);
        char *big = malloc(API_REF_BODY_MAX + 2);
        memset(big, ' ', API_REF_BODY_MAX + 1);
        big[API_REF_BODY_MAX + 1] = 0;
        memcpy(big, "{\"id\":\"" H1 "\"}", 7 + 64 + 2);
        assert_int_equal(ref_update_parse(big, API_REF_BODY_MAX + 1, &u), -EBADMSG);
        assert_int_equal(ref_update_parse(big, API_REF_BODY_MAX, &u), 0);
        free(big);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_open_schema, setup, teardown),
                cmocka_unit_test(test_roles),
                cmocka_unit_test_setup_teardown(test_create_check, setup, teardown),
                cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
                cmocka_unit_test_setup_teardown(test_create_invalid, setup, teardown),
                cmocka_unit_test_setup_teardown(test_list_revoke, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_label, setup, teardown),
                cmocka_unit_test(test_ref_access),
                cmocka_unit_test(test_ref_update_parse),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
