/* SPDX-License-Identifier: MIT */
/* Unit tests for src/fleet: placement's pick (pure), the etcd gateway's
 * bodies and answers (etcd-json.c), base64, host names; laptops in the fleet:
 * owner names, grant records, the laptop registry's records
 * (src/daemon/laptop-fleet.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "basic/error.h"
#include "fleet/etcd-json.h"
#include "fleet/fleet.h"
#include "daemon/laptop-fleet.h"

static FleetHost host(const char *name, unsigned cores, uint64_t ram, uint64_t avail, uint64_t committed) {
        return (FleetHost){ .name = (char *) name, .url = (char *) "http://x", .cores = cores, .ram_mib = ram,
                            .ram_free_mib = avail, .session_ram_mib = committed };
}

static void test_pick_spreads(void **state) {
        FleetHost hs[3] = { host("a", 2, 8192, 6000, 0), host("b", 2, 8192, 6000, 0), host("c", 2, 8192, 6000, 0) };
        unsigned owned[3] = { 0 };
        unsigned count[3] = { 0 };
        for (int i = 0; i < 30; i++) {
                int k = fleet_place_pick(hs, owned, 3, 128);
                assert_true(k >= 0 && k < 3);
                owned[k]++;
                count[k]++;
        }
        assert_int_equal(count[0], 10);
        assert_int_equal(count[1], 10);
        assert_int_equal(count[2], 10);
}

static void test_pick_cores_and_ram(void **state) {
        /* 8 cores with 3 sessions is less loaded than 2 cores with 1 */
        FleetHost hs[2] = { host("small", 2, 8192, 6000, 0), host("big", 8, 8192, 6000, 0) };
        unsigned owned[2] = { 1, 3 };
        assert_int_equal(fleet_place_pick(hs, owned, 2, 128), 1);
        /* same load: the most free RAM */
        unsigned same[2] = { 1, 4 };
        hs[1].ram_free_mib = 7000;
        assert_int_equal(fleet_place_pick(hs, same, 2, 128), 1);
        /* a member whose RAM is given to its sessions does not fit */
        hs[1].session_ram_mib = 8000;
        assert_int_equal(fleet_place_pick(hs, owned, 2, 128), 0);
        /* nor one whose MemAvailable is short */
        hs[0].ram_free_mib = 100;
        err_clear();
        assert_int_equal(fleet_place_pick(hs, owned, 2, 128), -ENOSPC);
        assert_non_null(strstr(err_message(-ENOSPC), "128 MiB"));
}

static void test_names(void **state) {
        assert_true(fleet_name_is_valid("h1"));
        assert_true(fleet_name_is_valid("rack-3.host_7"));
        assert_false(fleet_name_is_valid(""));
        assert_false(fleet_name_is_valid("-x"));
        assert_false(fleet_name_is_valid("a/b"));
        assert_false(fleet_name_is_valid("a b"));
        char long_name[80];
        memset(long_name, 'a', sizeof long_name - 1);
        long_name[sizeof long_name - 1] = 0;
        assert_false(fleet_name_is_valid(long_name));
}

static void test_b64(void **state) {
        const char *in[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
        const char *out[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
        for (size_t i = 0; i < 7; i++) {
                char *e = etcd_b64_encode(in[i], strlen(in[i]));
                assert_string_equal(e, out[i]);
                char *d;
                size_t len;
                assert_int_equal(etcd_b64_decode(e, 100, &d, &len), 0);
                assert_int_equal(len, strlen(in[i]));
                assert_memory_equal(d, in[i], len);
                free(d);
                free(e);
        }
        char *d;
        size_t len;
        assert_int_equal(etcd_b64_decode("Zg=", 100, &d, &len), -EINVAL);  /* length */
        assert_int_equal(etcd_b64_decode("Zh==", 100, &d, &len), -EINVAL); /* bits past the end */
        assert_int_equal(etcd_b64_decode("Z!==", 100, &d, &len), -EINVAL); /* alphabet */
        assert_int_equal(etcd_b64_decode("Zm9vYmFy", 5, &d, &len), -EFBIG); /* bound */
}

static void test_bodies(void **state) {
        char *b;
        assert_int_equal(etcd_body_range("/roam/hosts/", true, &b), 0);
        /* range_end: the prefix with its last byte + 1 ("/roam/hosts0") */
        assert_string_equal(b, "{\"key\":\"L3JvYW0vaG9zdHMv\",\"range_end\":\"L3JvYW0vaG9zdHMw\"}");
        free(b);
        assert_int_equal(etcd_body_put("/k", "v", 42, &b), 0);
        assert_string_equal(b, "{\"key\":\"L2s=\",\"value\":\"dg==\",\"lease\":\"42\"}");
        free(b);
        EtcdCmp c = { .key = "/e", .target = ETCD_CMP_VALUE, .value = "3" };
        EtcdOp ok = { .kind = ETCD_OP_PUT, .key = "/e", .value = "4" };
        assert_int_equal(etcd_body_txn(&c, 1, &ok, 1, NULL, 0, &b), 0);
        assert_non_null(strstr(b, "\"target\":\"VALUE\""));
        assert_non_null(strstr(b, "\"requestPut\""));
        free(b);
        char big[ETCD_KEY_MAX + 2];
        memset(big, 'k', sizeof big - 1);
        big[sizeof big - 1] = 0;
        assert_int_equal(etcd_body_range(big, false, &b), -EINVAL);
}

static void test_answers(void **state) {
        const char *range = "{\"header\":{\"revision\":\"7\"},\"kvs\":[{\"key\":\"L2E=\",\"value\":\"MQ==\","
                            "\"create_revision\":\"2\",\"mod_revision\":\"5\",\"version\":\"3\",\"lease\":\"9\"}],"
                            "\"count\":\"1\"}";
        EtcdRange r;
        assert_int_equal(etcd_parse_range(range, strlen(range), &r), 0);
        assert_int_equal(r.n, 1);
        assert_int_equal(r.revision, 7);
        assert_string_equal(r.kvs[0].key, "/a");
        assert_string_equal(r.kvs[0].value, "1");
        assert_int_equal(r.kvs[0].lease, 9);
        assert_int_equal(r.kvs[0].version, 3);
        etcd_range_done(&r);
        /* an empty answer leaves out kvs */
        const char *none = "{\"header\":{\"revision\":\"7\"}}";
        assert_int_equal(etcd_parse_range(none, strlen(none), &r), 0);
        assert_int_equal(r.n, 0);
        etcd_range_done(&r);
        bool ok = true;
        const char *txn = "{\"header\":{\"revision\":\"3\"}}";
        assert_int_equal(etcd_parse_txn(txn, strlen(txn), &ok, NULL), 0);
        assert_false(ok); /* "succeeded" left out: false */
        int64_t id, ttl;
        const char *ka = "{\"result\":{\"ID\":\"12\",\"TTL\":\"5\"}}";
        assert_int_equal(etcd_parse_lease(ka, strlen(ka), &id, &ttl), 0);
        assert_int_equal(id, 12);
        assert_int_equal(ttl, 5);
        const char *gone = "{\"result\":{\"ID\":\"12\"}}";
        assert_int_equal(etcd_parse_lease(gone, strlen(gone), &id, &ttl), 0);
        assert_int_equal(ttl, 0);
        err_clear();
        const char *e = "{\"error\":\"x\",\"code\":5,\"message\":\"lease not found\"}";
        assert_int_equal(etcd_parse_lease(e, strlen(e), &id, &ttl), -EIO);
        assert_non_null(strstr(err_message(-EIO), "lease not found"));
        assert_int_equal(etcd_parse_range("[1]", 3, &r), -EBADMSG);
        const char *badnum = "{\"kvs\":[{\"key\":\"L2E=\",\"version\":\"x1\"}]}";
        assert_int_equal(etcd_parse_range(badnum, strlen(badnum), &r), -EBADMSG);
}

static void test_laptop_owner(void **state) {
        const char *ok = "laptop:0123456789abcdef0123456789abcdef";
        assert_string_equal(fleet_owner_laptop(ok), ok + 7);
        assert_null(fleet_owner_laptop("laptop:0123456789ABCDEF0123456789abcdef")); /* lowercase only */
        assert_null(fleet_owner_laptop("laptop:0123456789abcdef0123456789abcde"));  /* 31 digits */
        assert_null(fleet_owner_laptop("laptop:0123456789abcdef0123456789abcdef0"));
        assert_null(fleet_owner_laptop("h1"));
        assert_null(fleet_owner_laptop("local"));
        assert_null(fleet_owner_laptop(NULL));
        /* a laptop is never a member's name, so an owner record names one or the other */
        assert_false(fleet_name_is_valid(ok));
}

static void test_grant_parse(void **state) {
        const char *good = "{\"epoch\":3,\"from\":\"h2\",\"granted\":100,\"laptop\":"
                           "\"0123456789abcdef0123456789abcdef\",\"lease_until\":0}";
        FleetGrant g;
        assert_int_equal(fleet_grant_parse(good, strlen(good), &g), 0);
        assert_string_equal(g.laptop, "0123456789abcdef0123456789abcdef");
        assert_string_equal(g.from, "h2");
        assert_int_equal(g.epoch, 3);
        assert_int_equal(g.granted, 100);
        assert_int_equal(g.lease_until, 0);
        static const char *const bad[] = {
                "",
                "[]",
                "{\"epoch\":0,\"from\":\"h2\",\"granted\":1,\"laptop\":\"0123456789abcdef0123456789abcdef\","
                "\"lease_until\":0}",
                "{\"epoch\":1,\"from\":\"h/2\",\"granted\":1,\"laptop\":\"0123456789abcdef0123456789abcdef\","
                "\"lease_until\":0}",
                "{\"epoch\":1,\"from\":\"h2\",\"granted\":1,\"laptop\":\"0123456789ABCDEF0123456789abcdef\","
                "\"lease_until\":0}",
                "{\"epoch\":1,\"from\":\"h2\",\"granted\":-1,\"laptop\":\"0123456789abcdef0123456789abcdef\","
                "\"lease_until\":0}",
                "{\"epoch\":1,\"from\":\"h2\",\"granted\":1,\"laptop\":\"0123456789abcdef0123456789abcdef\"}",
                "{\"epoch\":1,\"epoch\":2,\"from\":\"h2\",\"granted\":1,\"laptop\":"
                "\"0123456789abcdef0123456789abcdef\",\"lease_until\":0}",
        };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                assert_int_equal(fleet_grant_parse(bad[i], strlen(bad[i]), &g), -EBADMSG);
        assert_int_equal(fleet_grant_parse(NULL, 0, &g), -EBADMSG);
}

static void test_laptop_record(void **state) {
        LaptopRecord l = { .paired = 10, .last_seen = 20, .revoked = 0 };
        for (size_t i = 0; i < SIGN_PUBLIC_SIZE; i++)
                l.public_key[i] = (uint8_t) (i * 7 + 1);
        sign_key_id(l.public_key, l.id);
        strcpy(l.name, "lt");
        strcpy(l.user, "alice");
        char *v = laptop_fleet_record_format(&l);
        assert_non_null(v);
        LaptopRecord back;
        assert_int_equal(laptop_fleet_record_parse(v, strlen(v), &back), 0);
        assert_string_equal(back.id, l.id);
        assert_memory_equal(back.public_key, l.public_key, SIGN_PUBLIC_SIZE);
        assert_string_equal(back.name, "lt");
        assert_string_equal(back.user, "alice");
        assert_int_equal(back.paired, 10);
        assert_int_equal(back.last_seen, 20);
        /* an id that is not the key's fingerprint is a forged record */
        char *forged = strdup(v);
        char *id = strstr(forged, l.id);
        assert_non_null(id);
        id[0] = id[0] == '0' ? '1' : '0';
        assert_int_equal(laptop_fleet_record_parse(forged, strlen(forged), &back), -EBADMSG);
        free(forged);
        /* a name that is not a name */
        LaptopRecord odd = l;
        strcpy(odd.name, "a b");
        char *w = laptop_fleet_record_format(&odd);
        assert_int_equal(laptop_fleet_record_parse(w, strlen(w), &back), -EBADMSG);
        free(w);
        free(v);
        assert_int_equal(laptop_fleet_record_parse("{}", 2, &back), -EBADMSG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pick_spreads), cmocka_unit_test(test_pick_cores_and_ram),
                cmocka_unit_test(test_names),        cmocka_unit_test(test_b64),
                cmocka_unit_test(test_bodies),       cmocka_unit_test(test_answers),
                cmocka_unit_test(test_laptop_owner), cmocka_unit_test(test_grant_parse),
                cmocka_unit_test(test_laptop_record),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
