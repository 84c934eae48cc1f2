/* SPDX-License-Identifier: MIT */
/* Unit tests for laptop identity: base64url, Ed25519 keys (crypto/sign-key),
 * signed requests (crypto/request-sig), the nonce table (daemon/nonce), the
 * laptop registry (daemon/laptop-registry) and which requests a laptop
 * signs (daemon/laptop-identity). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "basic/base64.h"
#include "basic/fileio.h"
#include "basic/macro.h"
#include "crypto/request-sig.h"
#include "crypto/sign-key.h"
#include "daemon/api-laptop.h"
#include "daemon/laptop-identity.h"
#include "daemon/laptop-registry.h"
#include "daemon/nonce.h"

static void test_base64url(void **state) {
        /* RFC 4648 test vectors, url alphabet, no padding */
        static const struct { const char *in, *out; } v[] = {
                { "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" }, { "foob", "Zm9vYg" },
                { "fooba", "Zm9vYmE" }, { "foobar", "Zm9vYmFy" }, { "\xfb\xff", "-_8" },
        };
        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                char out[16], back[16] = { 0 };
                size_t n = strlen(v[i].in);
                base64url_encode(v[i].in, n, out);
                assert_string_equal(out, v[i].out);
                assert_int_equal(BASE64URL_LEN(n), strlen(out));
                assert_int_equal(base64url_decode_exact(out, back, n), 0);
                assert_memory_equal(back, v[i].in, n);
        }
        uint8_t b[4];
        assert_int_equal(base64url_decode_exact("Zm9v", b, 2), -EINVAL);  /* wrong length */
        assert_int_equal(base64url_decode_exact("Zm9", b, 3), -EINVAL);
        assert_int_equal(base64url_decode_exact("Zm+v", b, 3), -EINVAL);  /* standard alphabet */
        assert_int_equal(base64url_decode_exact("Zm9=", b, 2), -EINVAL);  /* padding */
        assert_int_equal(base64url_decode_exact("Zm8", b, 2), 0);
        assert_int_equal(base64url_decode_exact("Zm9", b, 2), -EINVAL);  /* unused bits set */
        assert_int_equal(base64url_decode_exact("Zm-", b, 2), -EINVAL);   /* unused bits set */
        assert_int_equal(base64url_decode_exact(NULL, b, 2), -EINVAL);
}

static void test_keys(void **state) {
        char dir[] = "/tmp/roam-unit-laptop-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *path = path_join(dir, "laptop.key");
        SignKey *k = NULL, *k2 = NULL, *other = NULL;
        assert_int_equal(sign_key_load(path, &k), -ENOENT);
        assert_int_equal(sign_key_generate(&k), 0);
        assert_int_equal(sign_key_save(k, path), 0);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(sign_key_load(path, &k2), 0);
        uint8_t p1[SIGN_PUBLIC_SIZE], p2[SIGN_PUBLIC_SIZE], p3[SIGN_PUBLIC_SIZE];
        sign_key_public(k, p1);
        sign_key_public(k2, p2);
        assert_memory_equal(p1, p2, SIGN_PUBLIC_SIZE);
        char id1[SIGN_KEY_ID_LEN + 1], id3[SIGN_KEY_ID_LEN + 1];
        sign_key_id(p1, id1);
        assert_int_equal(strlen(id1), SIGN_KEY_ID_LEN);
        assert_true(hex_is_exact(id1, SIGN_KEY_ID_LEN));
        assert_int_equal(sign_key_generate(&other), 0);
        sign_key_public(other, p3);
        sign_key_id(p3, id3);
        assert_string_not_equal(id1, id3);
        /* a signature verifies with its key only, over its message only */
        uint8_t sig[SIGN_SIGNATURE_SIZE];
        assert_int_equal(sign_key_sign(k2, "hello", 5, sig), 0);
        assert_int_equal(sign_verify(p1, "hello", 5, sig), 0);
        assert_int_equal(sign_verify(p1, "hellO", 5, sig), -EBADMSG);
        assert_int_equal(sign_verify(p3, "hello", 5, sig), -EBADMSG);
        sig[7] ^= 1;
        assert_int_equal(sign_verify(p1, "hello", 5, sig), -EBADMSG);
        /* a file that is not a key is refused, not taken for one */
        assert_int_equal(write_file_atomic(path, "not a key\n", 10, 0600), 0);
        SignKey *bad = NULL;
        assert_int_equal(sign_key_load(path, &bad), -EBADMSG);
        assert_null(bad);
        sign_key_free(k);
        sign_key_free(k2);
        sign_key_free(other);
        rm_rf(dir);
}

static void test_request_sig(void **state) {
        SignKey *k = NULL;
        assert_int_equal(sign_key_generate(&k), 0);
        uint8_t pub[SIGN_PUBLIC_SIZE];
        sign_key_public(k, pub);
        const char *nonce = "00112233445566778899aabbccddeeff";
        char *h = NULL;
        assert_int_equal(request_sig_headers(k, "POST", "/v1/sessions/s1/offline", nonce, "{}", 2, &h), 0);
        /* three lines: Roam-Laptop, Roam-Nonce, Roam-Signature */
        char id[64], n[64], s[128];
        assert_int_equal(sscanf(h, "Roam-Laptop: %63s\nRoam-Nonce: %63s\nRoam-Signature: %127s", id, n, s), 3);
        RequestSig rs;
        assert_int_equal(request_sig_parse(id, n, s, &rs), 0);
        assert_string_equal(rs.nonce, nonce);
        assert_int_equal(request_sig_verify(pub, &rs, "POST", "/v1/sessions/s1/offline", "{}", 2), 0);
        /* any other method, path, body or nonce: refused */
        assert_int_equal(request_sig_verify(pub, &rs, "PUT", "/v1/sessions/s1/offline", "{}", 2), -EBADMSG);
        assert_int_equal(request_sig_verify(pub, &rs, "POST", "/v1/sessions/s2/offline", "{}", 2), -EBADMSG);
        assert_int_equal(request_sig_verify(pub, &rs, "POST", "/v1/sessions/s1/offline", "{ }", 3), -EBADMSG);
        assert_int_equal(request_sig_verify(pub, &rs, "POST", "/v1/sessions/s1/offline", NULL, 0), -EBADMSG);
        rs.nonce[0] = '1';
        assert_int_equal(request_sig_verify(pub, &rs, "POST", "/v1/sessions/s1/offline", "{}", 2), -EBADMSG);
        /* a streamed body is signed over its hash as it went: the server
         * verifies the body it got the same way */
        const char body[] = "{\"checkpoint\": \"00\"}\nPACK";
        Sha256Ctx *c = sha256_ctx_new();
        assert_non_null(c);
        sha256_ctx_update(c, body, 10);
        sha256_ctx_update(c, body + 10, sizeof body - 1 - 10);
        RoamId sum;
        sha256_ctx_final(c, &sum);
        sha256_ctx_free(c);
        char *hd = NULL, *hb = NULL;
        assert_int_equal(request_sig_headers_digest(k, "POST", "/v1/sessions/s1/move-in", nonce, &sum, &hd), 0);
        assert_int_equal(request_sig_headers(k, "POST", "/v1/sessions/s1/move-in", nonce, body, sizeof body - 1, &hb),
                         0);
        assert_string_equal(hd, hb); /* Ed25519 is deterministic: the same message, the same lines */
        assert_int_equal(sscanf(hd, "Roam-Laptop: %63s\nRoam-Nonce: %63s\nRoam-Signature: %127s", id, n, s), 3);
        assert_int_equal(request_sig_parse(id, n, s, &rs), 0);
        assert_int_equal(request_sig_verify(pub, &rs, "POST", "/v1/sessions/s1/move-in", body, sizeof body - 1), 0);
        assert_int_equal(request_sig_verify(pub, &rs, "POST", "/v1/sessions/s1/move-in", body, sizeof body - 2),
                         -EBADMSG);
        free(hd);
        free(hb);
        /* malformed headers */
        assert_int_equal(request_sig_parse(NULL, NULL, NULL, &rs), -ENOENT);
        assert_int_equal(request_sig_parse(id, NULL, s, &rs), -EBADMSG);
        assert_int_equal(request_sig_parse("xyz", n, s, &rs), -EBADMSG);
        assert_int_equal(request_sig_parse(id, "0011", s, &rs), -EBADMSG);
        assert_int_equal(request_sig_parse(id, n, "AAAA", &rs), -EBADMSG);
        char upper[64];
        snprintf(upper, sizeof upper, "%s", id);
        for (char *p = upper; *p; p++)
                if (*p >= 'a' && *p <= 'f')
                        *p = (char) (*p - 'a' + 'A');
        if (strcmp(upper, id))
                assert_int_equal(request_sig_parse(upper, n, s, &rs), -EBADMSG);
        /* no newline may hide in a signed field */
        char *m = NULL;
        size_t len;
        assert_int_equal(request_sig_message("POST", "/a\nb", nonce, NULL, 0, &m, &len), -EINVAL);
        assert_int_equal(request_sig_message("", "/a", nonce, NULL, 0, &m, &len), -EINVAL);
        free(h);
        sign_key_free(k);
}

static void test_nonces(void **state) {
        NonceTable *t = NULL;
        assert_int_equal(nonce_table_new(4, 10, &t), 0);
        char a[REQSIG_NONCE_HEX_LEN + 1], b[REQSIG_NONCE_HEX_LEN + 1];
        assert_int_equal(nonce_issue(t, "alice", 100, a), 0);
        assert_int_equal(nonce_issue(t, "alice", 100, b), 0);
        assert_true(hex_is_exact(a, REQSIG_NONCE_HEX_LEN));
        assert_string_not_equal(a, b);
        /* single use, bound to its user */
        assert_int_equal(nonce_consume(t, a, "bob", 101), -ESTALE);
        assert_int_equal(nonce_consume(t, a, "alice", 101), 0);
        assert_int_equal(nonce_consume(t, a, "alice", 101), -ESTALE);
        /* expired */
        assert_int_equal(nonce_consume(t, b, "alice", 111), -ETIME);
        assert_int_equal(nonce_consume(t, b, "alice", 111), -ESTALE);
        assert_int_equal(nonce_consume(t, "", "alice", 111), -ESTALE);
        assert_int_equal(nonce_consume(t, NULL, "alice", 111), -ESTALE);
        /* a full table drops the oldest first */
        char n[6][REQSIG_NONCE_HEX_LEN + 1];
        for (int i = 0; i < 6; i++)
                assert_int_equal(nonce_issue(t, "", 200 + i, n[i]), 0);
        assert_int_equal(nonce_consume(t, n[0], "", 206), -ESTALE);
        assert_int_equal(nonce_consume(t, n[1], "", 206), -ESTALE);
        for (int i = 2; i < 6; i++)
                assert_int_equal(nonce_consume(t, n[i], "", 206), 0);
        nonce_table_free(t);
}

static void test_registry(void **state) {
        char dir[] = "/tmp/roam-unit-laptop-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *path = path_join(dir, "catalog.db");
        Catalog *c = NULL;
        assert_int_equal(catalog_open(path, &c), 0);
        SignKey *ka = NULL, *kb = NULL;
        assert_int_equal(sign_key_generate(&ka), 0);
        assert_int_equal(sign_key_generate(&kb), 0);
        uint8_t pa[SIGN_PUBLIC_SIZE], pb[SIGN_PUBLIC_SIZE];
        sign_key_public(ka, pa);
        sign_key_public(kb, pb);
        LaptopRecord la, lb, got;
        bool again = true;
        /* two laptops with one name are two laptops */
        assert_int_equal(laptop_pair(c, pa, "t14", "alice", &la, &again), 0);
        assert_false(again);
        assert_int_equal(laptop_pair(c, pb, "t14", "alice", &lb, &again), 0);
        assert_string_not_equal(la.id, lb.id);
        /* the same key again: fine for its user (renamed), refused for another */
        assert_int_equal(laptop_pair(c, pa, "t14-new", "alice", &got, &again), 0);
        assert_true(again);
        assert_string_equal(got.id, la.id);
        assert_string_equal(got.name, "t14-new");
        assert_int_equal(laptop_pair(c, pa, "mine", "bob", &got, &again), -EEXIST);
        assert_int_equal(laptop_get(c, la.id, &got), 0);
        assert_string_equal(got.user, "alice");
        assert_memory_equal(got.public_key, pa, SIGN_PUBLIC_SIZE);
        assert_int_equal(laptop_get(c, "00000000000000000000000000000000", &got), -ENOENT);
        LaptopRecord *list = NULL;
        size_t n = 0;
        assert_int_equal(laptop_list(c, "alice", &list, &n), 0);
        assert_int_equal(n, 2);
        free(list);
        assert_int_equal(laptop_list(c, "bob", &list, &n), 0);
        assert_int_equal(n, 0);
        free(list);
        /* revoke by prefix; a revoked key does not pair again */
        char prefix[9];
        snprintf(prefix, sizeof prefix, "%.8s", la.id);
        assert_int_equal(laptop_revoke(c, "zz", &got), -EINVAL);
        assert_int_equal(laptop_revoke(c, prefix, &got), 0);
        assert_true(got.revoked > 0);
        assert_int_equal(laptop_revoke(c, prefix, &got), 0);
        assert_int_equal(laptop_pair(c, pa, "t14", "alice", &got, &again), -EKEYREVOKED);
        assert_int_equal(laptop_get(c, lb.id, &got), 0);
        assert_int_equal(got.revoked, 0);
        /* grants: a repeated grant keeps its time; renew only by the holder at its epoch */
        LaptopGrant g;
        assert_int_equal(laptop_grant_get(c, "s1", &g), -ENOENT);
        assert_int_equal(laptop_grant_set(c, "s1", lb.id, 3, 1000), 0);
        assert_int_equal(laptop_grant_get(c, "s1", &g), 0);
        assert_string_equal(g.laptop, lb.id);
        assert_int_equal(g.epoch, 3);
        assert_int_equal(g.lease_until, 1000);
        int64_t granted = g.granted;
        assert_int_equal(laptop_grant_renew(c, "s1", la.id, 3, 2000), -ESTALE);
        assert_int_equal(laptop_grant_renew(c, "s1", lb.id, 2, 2000), -ESTALE);
        assert_int_equal(laptop_grant_renew(c, "s1", lb.id, 3, 2000), 0);
        assert_int_equal(laptop_grant_set(c, "s1", lb.id, 3, 2000), 0);
        assert_int_equal(laptop_grant_get(c, "s1", &g), 0);
        assert_int_equal(g.granted, granted);
        assert_int_equal(g.lease_until, 2000);
        /* holders as people read them */
        char buf[512], owner[64];
        snprintf(owner, sizeof owner, LAPTOP_HOLDER_PREFIX "%s", lb.id);
        assert_string_equal(laptop_holder_id(owner), lb.id);
        assert_null(laptop_holder_id("local"));
        assert_null(laptop_holder_id("laptop:t14"));
        laptop_owner_describe(c, "s1", owner, true, buf, sizeof buf);
        assert_non_null(strstr(buf, "laptop 't14' (id "));
        assert_non_null(strstr(buf, lb.id));
        assert_non_null(strstr(buf, " since "));
        assert_non_null(strstr(buf, "lease until"));
        laptop_owner_describe(c, "s1", "https://server:7450", true, buf, sizeof buf);
        assert_string_equal(buf, "https://server:7450");
        assert_int_equal(laptop_grant_drop(c, "s1"), 0);
        assert_int_equal(laptop_grant_get(c, "s1", &g), -ENOENT);
        sign_key_free(ka);
        sign_key_free(kb);
        catalog_free(c);
        rm_rf(dir);
}

static void test_signed_requests(void **state) {
        assert_true(laptop_request_is_signed("POST", "/v1/laptops"));
        assert_true(laptop_request_is_signed("POST", "/v1/sessions/s1/offline"));
        assert_true(laptop_request_is_signed("POST", "/v1/sessions/s1/renew"));
        assert_true(laptop_request_is_signed("POST", "/v1/sessions/s1/move-in"));
        assert_true(laptop_request_is_signed("POST", "/v1/sessions/s1/finalize-in"));
        assert_true(laptop_request_is_signed("POST", "/v1/sessions/s1/stage"));
        assert_false(laptop_request_is_signed("POST", "/v1/sessions/s1/precopy?rate=5"));
        assert_false(laptop_request_is_signed("GET", "/v1/sessions/s1"));
        assert_false(laptop_request_is_signed("POST", "/v1/laptops/nonces?n=4"));
        assert_false(laptop_request_is_signed("POST", "/v1/sessions/offline"));
        assert_false(laptop_request_is_signed("PUT", "/v1/refs/sessions/alice/s1/latest"));
}

static void test_pairing_parse(void **state) {
        uint8_t pub[SIGN_PUBLIC_SIZE];
        const char *name, *user;
        char body[256];
        char key[BASE64URL_LEN(SIGN_PUBLIC_SIZE) + 1];
        memset(pub, 7, sizeof pub);
        base64url_encode(pub, sizeof pub, key);
        snprintf(body, sizeof body, "{\"public_key\": \"%s\", \"name\": \"t14\"}", key);
        json_t *j = json_loads(body, 0, NULL);
        memset(pub, 0, sizeof pub);
        assert_int_equal(api_laptop_parse_pairing(j, pub, &name, &user), 0);
        assert_string_equal(name, "t14");
        assert_null(user);
        assert_int_equal(pub[0], 7);
        json_decref(j);
        static const char *const bad[] = {
                "[]", "{}", "{\"public_key\": 5, \"name\": \"x\"}", "{\"public_key\": \"AAAA\", \"name\": \"x\"}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                j = json_loads(bad[i], 0, NULL);
                assert_int_equal(api_laptop_parse_pairing(j, pub, &name, &user), -EBADMSG);
                json_decref(j);
        }
        snprintf(body, sizeof body, "{\"public_key\": \"%s\", \"name\": \"../x\"}", key);
        j = json_loads(body, 0, NULL);
        assert_int_equal(api_laptop_parse_pairing(j, pub, &name, &user), -EBADMSG);
        json_decref(j);
        snprintf(body, sizeof body, "{\"public_key\": \"%s\", \"name\": \"x\", \"user\": 3}", key);
        j = json_loads(body, 0, NULL);
        assert_int_equal(api_laptop_parse_pairing(j, pub, &name, &user), -EBADMSG);
        json_decref(j);
        assert_int_equal(api_laptop_parse_pairing(NULL, pub, &name, &user), -EBADMSG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_base64url),       cmocka_unit_test(test_keys),
                cmocka_unit_test(test_request_sig),     cmocka_unit_test(test_nonces),
                cmocka_unit_test(test_registry),        cmocka_unit_test(test_signed_requests),
                cmocka_unit_test(test_pairing_parse),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
