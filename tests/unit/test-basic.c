/* SPDX-License-Identifier: MIT */
/* Unit tests for src/basic: names, sizes, hex ids, the id set, atomic files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/conf-file.h"
#include "basic/error.h"
#include "basic/failpoint.h"
#include "basic/fileio.h"
#include "basic/hash.h"
#include "basic/idset.h"
#include "basic/util.h"

static void test_names(void **state) {
        assert_true(name_is_valid("debian-12"));
        assert_true(name_is_valid("a.b_c"));
        assert_false(name_is_valid(""));
        assert_false(name_is_valid("a/b"));
        assert_false(name_is_valid(".."));
        assert_false(name_is_valid(".hidden"));
        assert_false(name_is_valid("-opt"));
        assert_false(name_is_valid("tab\there"));
        assert_false(name_is_valid("nl\n"));
        char longname[70];
        memset(longname, 'a', 65);
        longname[65] = 0;
        assert_false(name_is_valid(longname));
        longname[64] = 0;
        assert_true(name_is_valid(longname));
        assert_true(ref_name_is_valid("images/debian"));
        assert_true(ref_name_is_valid("sessions/alice/head"));
        assert_false(ref_name_is_valid("images/../x"));
        assert_false(ref_name_is_valid("/images/x"));
        assert_false(ref_name_is_valid("images//x"));
        assert_false(ref_name_is_valid("images/"));
        assert_false(ref_name_is_valid("a/b/c/d/e/f/g/h/i"));
}

static void test_sizes(void **state) {
        uint64_t v;
        assert_int_equal(parse_size("512M", &v), 0);
        assert_int_equal(v, 512ULL << 20);
        assert_int_equal(parse_size("4K", &v), 0);
        assert_int_equal(v, 4096);
        assert_int_equal(parse_size("1GiB", &v), 0);
        assert_int_equal(v, 1ULL << 30);
        assert_int_equal(parse_size("65536", &v), 0);
        assert_int_equal(v, 65536);
        assert_int_equal(parse_size("12X", &v), -EINVAL);
        assert_int_equal(parse_size("", &v), -EINVAL);
        assert_int_equal(parse_size("-1", &v), -EINVAL);
        assert_int_equal(parse_size("99999999999999999999", &v), -ERANGE);
        assert_int_equal(parse_size("17179869184T", &v), -ERANGE);
        assert_int_equal(parse_u64("18446744073709551615", &v), 0);
        assert_int_equal(parse_u64("18446744073709551616", &v), -ERANGE);
}

static void test_hex(void **state) {
        RoamId id, back;
        char hex[ID_HEX_SIZE];
        sha256("abc", 3, &id);
        id_to_hex(&id, hex);
        assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_int_equal(id_from_hex(hex, &back), 0);
        assert_true(id_equal(&id, &back));
        hex[10] = 'g';
        assert_int_equal(id_from_hex(hex, &back), -EINVAL);
        assert_int_equal(id_from_hex("abcd", &back), -EINVAL);
}

static void test_idset(void **state) {
        unsigned seed = 12345;
        print_message("seed %u\n", seed);
        srand(seed);
        IdSet *s = idset_new();
        assert_non_null(s);
        RoamId ids[5000];
        for (int i = 0; i < 5000; i++) {
                uint32_t x = (uint32_t) rand() ^ ((uint32_t) i << 16);
                sha256(&x, sizeof x, &ids[i]);
                assert_int_equal(idset_add(s, &ids[i]), 1);
        }
        for (int i = 0; i < 5000; i++) {
                assert_true(idset_contains(s, &ids[i]));
                assert_int_equal(idset_add(s, &ids[i]), 0);
        }
        assert_int_equal(idset_size(s), 5000);
        assert_int_equal(idset_add(s, &ID_NULL), -EINVAL);
        size_t pos = 0, n = 0;
        RoamId it;
        while (idset_next(s, &pos, &it))
                n++;
        assert_int_equal(n, 5000);
        RoamId other;
        sha256("not there", 9, &other);
        assert_false(idset_contains(s, &other));
        idset_free(s);
}

static void test_atomic_write(void **state) {
        char dir[] = "/tmp/roam-unit-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char *p = path_join(dir, "f");
        assert_int_equal(write_file_atomic(p, "one", 3, 0644), 0);
        assert_int_equal(write_file_atomic(p, "second", 6, 0644), 0);
        char *text;
        size_t len;
        assert_int_equal(read_full_file(p, 100, &text, &len), 0);
        assert_int_equal(len, 6);
        assert_string_equal(text, "second");
        free(text);
        assert_int_equal(read_full_file(p, 3, &text, &len), -EFBIG);
        assert_int_equal(read_full_file(dir, 100, &text, &len), -EISDIR);
        free(p);
        assert_int_equal(rm_rf(dir), 0);
        assert_int_equal(access(dir, F_OK), -1);
}

static void test_zero(void **state) {
        uint8_t buf[4096] = { 0 };
        assert_true(memory_is_zero(buf, sizeof buf));
        buf[4095] = 1;
        assert_false(memory_is_zero(buf, sizeof buf));
        buf[4095] = 0;
        buf[3] = 1;
        assert_false(memory_is_zero(buf, sizeof buf));
        assert_true(memory_is_zero(buf + 4, 10));
}

/* collects "key=value;" for each item */
static int conf_item(const char *key, const char *value, unsigned line, void *userdata) {
        char *out = userdata;
        size_t n = strlen(out);
        snprintf(out + n, 512 - n, "%s=%s@%u;", key, value, line);
        return !strcmp(key, "stop") ? -ECANCELED : 0;
}

static int conf(const char *text, char out[static 512]) {
        out[0] = 0;
        err_clear();
        return conf_parse("t.conf", text, strlen(text), conf_item, out);
}

static void test_conf(void **state) {
        char out[512];
        assert_int_equal(conf("# c\n\n  listen = 0.0.0.0:1  \nname=\" a \\\"b\\\\ \"\r\n\tx-1 =\n", out), 0);
        assert_string_equal(out, "listen=0.0.0.0:1@3;name= a \"b\\ @4;x-1=@5;");
        assert_int_equal(conf("a = b # not a comment\n", out), 0);
        assert_string_equal(out, "a=b # not a comment@1;");
        /* errors name the file and the line */
        assert_int_equal(conf("a = 1\nlisten 0.0.0.0\n", out), -EBADMSG);
        assert_non_null(strstr(err_message(-EBADMSG), "'t.conf' line 2"));
        assert_int_equal(conf("Key = 1\n", out), -EBADMSG);
        assert_int_equal(conf("= 1\n", out), -EBADMSG);
        assert_int_equal(conf("a = \"open\n", out), -EBADMSG);
        assert_int_equal(conf("a = \"x\" y\n", out), -EBADMSG);
        assert_int_equal(conf("a = \"\\n\"\n", out), -EBADMSG);
        assert_int_equal(conf("a = \x01\n", out), -EBADMSG);
        assert_int_equal(conf_parse("t.conf", "a = b\0c\n", 8, conf_item, out), -EBADMSG);
        /* the callback's error stops the parse */
        assert_int_equal(conf("a = 1\nstop = 1\nb = 2\n", out), -ECANCELED);
        assert_string_equal(out, "a=1@1;stop=1@2;");
        /* limits */
        char *big = malloc(CONF_FILE_MAX + 2);
        assert_non_null(big);
        memset(big, '#', CONF_FILE_MAX + 1);
        big[CONF_FILE_MAX + 1] = 0;
        assert_int_equal(conf(big, out), -EBADMSG);
        memset(big, 'v', CONF_LINE_MAX + 10);
        memcpy(big, "k = ", 4);
        big[CONF_LINE_MAX + 10] = 0;
        assert_int_equal(conf(big, out), -EBADMSG);
        big[CONF_LINE_MAX] = 0; /* exactly the limit */
        assert_int_equal(conf(big, out), 0);
        big[0] = 0; /* one setting too many, the comments between them do not count */
        for (int i = 0; i <= CONF_ITEMS_MAX; i++)
                strcat(big, "# comment\nq = 2\n");
        assert_int_equal(conf(big, out), -EBADMSG);
        assert_non_null(strstr(err_message(-EBADMSG), "more than 256 settings"));
        free(big);
}

/* ROAM_FAILPOINT: kinds, @N, names that only share a prefix, unknown kinds */
static void test_failpoint(void **state) {
        unsetenv("ROAM_FAILPOINT");
        assert_int_equal(failpoint_errno("t:a"), 0);
        setenv("ROAM_FAILPOINT", "t:a=eio,t:b=enospc@3,t:c=bogus,t:dd=eio", 1);
        assert_int_equal(failpoint_errno("t:a"), -EIO);
        assert_int_equal(failpoint_errno("t:a"), -EIO);
        assert_int_equal(failpoint_errno("t:b"), 0);
        assert_int_equal(failpoint_errno("t:b"), 0);
        assert_int_equal(failpoint_errno("t:b"), -ENOSPC);
        assert_int_equal(failpoint_errno("t:b"), -ENOSPC);
        assert_int_equal(failpoint_errno("t:c"), 0);
        assert_int_equal(failpoint_errno("t:d"), 0);
        assert_int_equal(failpoint_errno("t:"), 0);
        failpoint("t:a"); /* an errno kind at a crash-only point: nothing */
        unsetenv("ROAM_FAILPOINT");
        assert_int_equal(failpoint_errno("t:a"), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),  cmocka_unit_test(test_sizes),        cmocka_unit_test(test_hex),
                cmocka_unit_test(test_idset),  cmocka_unit_test(test_atomic_write), cmocka_unit_test(test_zero),
                cmocka_unit_test(test_conf),       cmocka_unit_test(test_failpoint),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
