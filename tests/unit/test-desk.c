/* SPDX-License-Identifier: MIT */
/* Unit tests for the desks' parsers (src/desk/proto.h) and a layer's qcow2
 * header (src/guest/image.h): the helper's answers, tar headers as GNU tar
 * and roam write them, a qcow2 header's backing file; and a desk's states
 * between two hosts (lend, unlend, receive: src/desk/desk.h) on two stores. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "basic/error.h"
#include "basic/fileio.h"
#include "basic/util.h"
#include "catalog/catalog.h"
#include "desk/desk.h"
#include "store/manifest.h"
#include "desk/proto.h"
#include "guest/image.h"

static void test_answer(void **state) {
        (void) state;
        DeskAnswer a = { 0 };
        const char ok[] = "pid=341\ndisplay=1\nvnc_port=5901\nok\n";
        assert_int_equal(desk_answer_parse(ok, strlen(ok), &a), 0);
        assert_true(a.ok);
        assert_null(a.error);
        assert_string_equal(desk_answer_get(&a, "display"), "1");
        uint64_t v;
        assert_int_equal(desk_answer_u64(&a, "pid", &v), 0);
        assert_int_equal(v, 341);
        assert_int_equal(desk_answer_u64(&a, "nope", &v), -ENOENT);
        desk_answer_done(&a);

        const char err[] = "error=criu dump: inet: Connected TCP socket\n";
        assert_int_equal(desk_answer_parse(err, strlen(err), &a), 0);
        assert_false(a.ok);
        assert_string_equal(a.error, "criu dump: inet: Connected TCP socket");
        desk_answer_done(&a);

        /* cut short, a line after the last, a bad key, a control character, a long value */
        static const char *const bad[] = { "pid=1\n", "ok\npid=1\n", "Pid=1\nok\n", "=1\nok\n", "pid=1\x01\nok\n",
                                           "justtext\nok\n" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                assert_int_equal(desk_answer_parse(bad[i], strlen(bad[i]), &a), -EBADMSG);
                err_clear();
        }
        /* "k=" and a value one byte over the bound */
        char *longv = malloc(DESK_VALUE_MAX + 16);
        memcpy(longv, "k=", 2);
        memset(longv + 2, 'x', DESK_VALUE_MAX + 1);
        strcpy(longv + 2 + DESK_VALUE_MAX + 1, "\nok\n");
        assert_int_equal(desk_answer_parse(longv, strlen(longv), &a), -EBADMSG);
        free(longv);
        err_clear();

        char buf[16];
        assert_int_equal(desk_word_get("alice pid=12 display=3", "display", buf, sizeof buf), 0);
        assert_string_equal(buf, "3");
        assert_int_equal(desk_word_get("alice pid=12", "uid", buf, sizeof buf), -ENOENT);
        assert_int_equal(desk_word_get("pid=123456789012345678", "pid", buf, 4), -ENAMETOOLONG);
}

static void test_tar(void **state) {
        (void) state;
        uint8_t b[DESK_TAR_BLOCK];
        assert_int_equal(desk_tar_header_build("img/pages-1.img", 123456, 0600, b), 0);
        DeskTarEntry e;
        char why[256];
        assert_int_equal(desk_tar_header_parse(b, &e, why, sizeof why), 0);
        assert_string_equal(e.name, "img/pages-1.img");
        assert_int_equal(e.size, 123456);
        assert_false(e.dir);
        b[130] ^= 1; /* the checksum catches it */
        assert_int_equal(desk_tar_header_parse(b, &e, why, sizeof why), -EBADMSG);
        assert_non_null(strstr(why, "checksum"));
        uint8_t zero[DESK_TAR_BLOCK] = { 0 };
        assert_int_equal(desk_tar_header_parse(zero, &e, why, sizeof why), 1);
        /* a symlink is refused */
        assert_int_equal(desk_tar_header_build("img/x", 0, 0777, b), 0);
        b[156] = '2';
        memset(b + 148, ' ', 8);
        unsigned sum = 0;
        for (size_t i = 0; i < sizeof b; i++)
                sum += b[i];
        snprintf((char *) b + 148, 8, "%06o", sum);
        assert_int_equal(desk_tar_header_parse(b, &e, why, sizeof why), -EBADMSG);
        assert_int_equal(desk_tar_header_build("", 1, 0600, b), -EINVAL);
        assert_int_equal(desk_tar_header_build("x", 1ull << 34, 0600, b), -EINVAL);
        assert_int_equal(desk_tar_padded(0), 0);
        assert_int_equal(desk_tar_padded(1), 512);
        assert_int_equal(desk_tar_padded(512), 512);
}

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24), p[1] = (uint8_t) (v >> 16), p[2] = (uint8_t) (v >> 8), p[3] = (uint8_t) v;
}

static void test_qcow2(void **state) {
        (void) state;
        uint8_t h[256] = { 'Q', 'F', 'I', 0xfb };
        put_be32(h + 4, 3);
        char name[IMAGE_BACKING_MAX + 1], why[256];
        assert_int_equal(image_qcow2_backing(h, sizeof h, name, sizeof name, why, sizeof why), 1);
        assert_string_equal(name, "");
        const char *base = "2ec4dd7996c6239c7c6ef12e856d71263d17893c210d2a6786543581f593abfa.raw";
        put_be32(h + 12, 120); /* offset (low half) */
        put_be32(h + 16, (uint32_t) strlen(base));
        memcpy(h + 120, base, strlen(base));
        assert_int_equal(image_qcow2_backing(h, sizeof h, name, sizeof name, why, sizeof why), 1);
        assert_string_equal(name, base);
        RoamId id;
        assert_int_equal(image_layer_backing_id(name, &id), 0);
        assert_int_equal(image_layer_backing_id("/abs/path.raw", &id), -EBADMSG);
        /* the name past the header read */
        put_be32(h + 12, 250);
        assert_int_equal(image_qcow2_backing(h, sizeof h, name, sizeof name, why, sizeof why), -EBADMSG);
        uint8_t raw[512] = { 0 };
        assert_int_equal(image_qcow2_backing(raw, sizeof raw, name, sizeof name, why, sizeof why), 0);
}

static void test_ids(void **state) {
        (void) state;
        uint64_t u1, d1, u2, d2;
        desk_ids("alice", &u1, &d1);
        desk_ids("alice", &u2, &d2);
        assert_int_equal(u1, u2);
        assert_int_equal(d1, d2);
        assert_true(u1 >= 2000 && u1 <= 60000 && d1 >= 1 && d1 <= 800);
        desk_ids("bob", &u2, &d2);
        assert_true(u1 != u2);
}

/* ---- between hosts: two homes, each a store, a catalog and a host ---- */

typedef struct Home {
        char dir[64];
        Store *store;
        Catalog *catalog;
        SessionHost *host;
} Home;

static void home_open(Home *h) {
        snprintf(h->dir, sizeof h->dir, "/tmp/roam-test-desk.XXXXXX");
        assert_non_null(mkdtemp(h->dir));
        char path[128];
        snprintf(path, sizeof path, "%s/catalog.db", h->dir);
        assert_int_equal(catalog_open(path, &h->catalog), 0);
        snprintf(path, sizeof path, "%s/store", h->dir);
        StoreOptions so = { .create = true };
        assert_int_equal(store_open(path, &so, &h->store), 0);
        setenv("ROAM_RAM_DIR", h->dir, 1);
        assert_int_equal(session_host_new(h->dir, h->store, h->catalog, &h->host), 0);
        unsetenv("ROAM_RAM_DIR");
}

static void home_close(Home *h) {
        session_host_free(h->host);
        store_free(h->store);
        catalog_free(h->catalog);
        rm_rf(h->dir);
}

/* A suspended desk manifest of alice (its files' ids made up: nothing here
 * reads them), put in both stores as the same object. */
static void put_checkpoint(Home *a, Home *b, const char *ts, char c, RoamId *ret) {
        char img[ID_HEX_SIZE], home[ID_HEX_SIZE];
        memset(img, c, ID_HEX_SIZE - 1);
        img[ID_HEX_SIZE - 1] = 0;
        memset(home, c + 1, ID_HEX_SIZE - 1);
        home[ID_HEX_SIZE - 1] = 0;
        uint64_t uid, display;
        desk_ids("alice", &uid, &display);
        json_t *m = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:[s], s:i, s:{s:s, s:s}}", "kind", "desk", "user",
                              "alice", "uid", (json_int_t) uid, "display", (json_int_t) display, "state", "suspended", "ts", ts, "layers",
                              "1111111111111111111111111111111111111111111111111111111111111111", "bytes", 1 << 20,
                              "objects", "img/core-1.img", img, "home.tar", home);
        void *data;
        size_t len;
        assert_int_equal(manifest_serialize(m, &data, &len), 0);
        json_decref(m);
        assert_int_equal(store_object_put(a->store, data, len, ret), 0);
        if (b) {
                RoamId id2;
                assert_int_equal(store_object_put(b->store, data, len, &id2), 0);
                assert_true(id_equal(ret, &id2));
        }
        free(data);
}

static void expect_state(Home *h, const char *state, const char *at) {
        DeskInfo i;
        assert_int_equal(desk_get(h->host, "alice", &i), 0);
        assert_string_equal(desk_info_state(&i), state);
        if (at)
                assert_string_equal(i.at, at);
}

static void test_between_hosts(void **state) {
        Home a, b;
        home_open(&a);
        home_open(&b);
        RoamId ck, got, none = ID_NULL;
        put_checkpoint(&a, &b, "ts1", 'a', &ck);
        assert_int_equal(store_ref_set(a.store, "desks/alice", &ck, &none), 0);
        expect_state(&a, "suspended", NULL);

        /* lend: away, and nothing here touches it any more */
        DeskMoveStats st;
        bool suspended = true;
        assert_int_equal(desk_lend(a.host, "alice", "http://b:1", &got, &st, &suspended), 0);
        assert_false(suspended);
        assert_true(id_equal(&got, &ck));
        expect_state(&a, "away", "http://b:1");
        RoamId base;
        assert_int_equal(desk_base_checkpoint(a.host, "alice", NULL, &base), 0); /* a sync's hint */
        assert_true(id_equal(&base, &ck));
        assert_int_equal(desk_base_checkpoint(a.host, "alice", &ck, &base), -ENOENT); /* never ran */
        err_clear();
        assert_int_equal(desk_resume(a.host, "alice", NULL, &st), -EREMOTE);
        assert_non_null(strstr(err_message(-EREMOTE), "moved to http://b:1"));
        assert_int_equal(desk_suspend(a.host, "alice", &st), -EREMOTE);
        assert_int_equal(desk_logoff(a.host, "alice"), -EREMOTE);
        assert_int_equal(desk_start(a.host, "ts1", "alice", NULL), -EREMOTE);
        /* lent again to the same place: a retry; elsewhere: refused */
        assert_int_equal(desk_lend(a.host, "alice", "http://b:1", &got, &st, &suspended), 0);
        assert_true(id_equal(&got, &ck));
        assert_int_equal(desk_lend(a.host, "alice", "http://c:1", &got, &st, &suspended), -EREMOTE);
        assert_int_equal(desk_lend(a.host, "alice", "bad\"at", &got, &st, &suspended), -EINVAL);
        /* given back: suspended here again, the same checkpoint */
        RoamId other;
        put_checkpoint(&a, NULL, "ts1", 'c', &other);
        assert_int_equal(desk_unlend(a.host, "alice", &other), -ESTALE);
        assert_int_equal(desk_unlend(a.host, "alice", &ck), 0);
        expect_state(&a, "suspended", NULL);
        assert_int_equal(store_ref_get(a.store, "desks/alice", &got), 0);
        assert_true(id_equal(&got, &ck));
        assert_int_equal(desk_unlend(a.host, "alice", &ck), -ESTALE);

        /* received on b: only what arrived as desk-in/alice */
        assert_int_equal(desk_lend(a.host, "alice", "http://b:1", &got, &st, &suspended), 0);
        char ts[NAME_MAX_LEN + 1] = "";
        assert_int_equal(desk_receive(b.host, "alice", &ck, NULL, &st, ts), -ENOENT);
        assert_int_equal(store_ref_set(b.store, "desk-in/alice", &other, NULL), 0);
        assert_int_equal(desk_receive(b.host, "alice", &ck, NULL, &st, ts), -ESTALE);
        assert_int_equal(store_ref_set(b.store, "desk-in/alice", &ck, NULL), 0);
        /* onto a terminal server b does not have: refused, nothing changed */
        assert_int_equal(desk_receive(b.host, "alice", &ck, "nosuch", &st, ts), -ENOENT);
        assert_int_equal(store_ref_get(b.store, "desks/alice", &got), -ENOENT);
        err_clear();
        assert_int_equal(store_ref_set(b.store, "desk-in/alice", &ck, NULL), 0);
        /* no terminal server named: received, suspended (2) */
        assert_int_equal(desk_receive(b.host, "alice", &ck, NULL, &st, ts), 2);
        expect_state(&b, "suspended", NULL);
        assert_int_equal(store_ref_get(b.store, "desk-in/alice", &got), -ENOENT);
        err_clear();
        /* again (a retry whose answer was lost): the same */
        assert_int_equal(store_ref_set(b.store, "desk-in/alice", &ck, NULL), 0);
        assert_int_equal(desk_receive(b.host, "alice", &ck, NULL, &st, ts), 2);
        /* another checkpoint while it is here: refused */
        RoamId ck2;
        put_checkpoint(&b, &a, "ts2", 'e', &ck2);
        assert_int_equal(store_ref_set(b.store, "desk-in/alice", &ck2, NULL), 0);
        assert_int_equal(desk_receive(b.host, "alice", &ck2, NULL, &st, ts), -EEXIST);
        assert_int_equal(store_ref_get(b.store, "desks/alice", &got), 0);
        assert_true(id_equal(&got, &ck));
        /* a desk of alice with another uid (made elsewhere): refused */
        json_t *odd = json_pack("{s:s, s:s, s:i, s:i, s:s, s:s, s:{s:s}}", "kind", "desk", "user", "alice", "uid", 0,
                                "display", 1, "state", "suspended", "ts", "ts1", "objects", "home.tar",
                                "1111111111111111111111111111111111111111111111111111111111111111");
        void *odd_data;
        size_t odd_len;
        RoamId odd_id;
        assert_int_equal(manifest_serialize(odd, &odd_data, &odd_len), 0);
        json_decref(odd);
        assert_int_equal(store_object_put(b.store, odd_data, odd_len, &odd_id), 0);
        free(odd_data);
        assert_int_equal(store_ref_set(b.store, "desk-in/alice", &odd_id, NULL), 0);
        assert_int_equal(desk_receive(b.host, "alice", &odd_id, NULL, &st, ts), -EBADMSG);
        /* a manifest that is not a suspended desk of alice: refused */
        json_t *bad = json_pack("{s:s, s:s}", "kind", "desk", "user", "bob");
        void *data;
        size_t len;
        RoamId bad_id;
        assert_int_equal(manifest_serialize(bad, &data, &len), 0);
        json_decref(bad);
        assert_int_equal(store_object_put(a.store, data, len, &bad_id), 0);
        free(data);

        /* and back to a (away there: it may come back) */
        assert_int_equal(store_ref_set(a.store, "desk-in/alice", &bad_id, NULL), 0);
        assert_int_equal(desk_receive(a.host, "alice", &bad_id, NULL, &st, ts), -EBADMSG);
        expect_state(&a, "away", "http://b:1");
        assert_int_equal(desk_lend(b.host, "alice", "http://a:1", &got, &st, &suspended), 0);
        assert_int_equal(store_ref_set(a.store, "desk-in/alice", &ck, NULL), 0);
        /* coming back without a server named: the one it left from (ts1, not
         * here: received, suspended) */
        assert_int_equal(desk_receive(a.host, "alice", &ck, NULL, &st, ts), 2);
        expect_state(&a, "suspended", NULL);
        expect_state(&b, "away", "http://a:1");
        home_close(&a);
        home_close(&b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_answer),
                cmocka_unit_test(test_tar),
                cmocka_unit_test(test_qcow2),
                cmocka_unit_test(test_ids),
                cmocka_unit_test(test_between_hosts),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
