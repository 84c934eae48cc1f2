/* SPDX-License-Identifier: MIT */
/* Unit tests for the desks' parsers (src/desk/proto.h) and a layer's qcow2
 * header (src/guest/image.h): the helper's answers, tar headers as GNU tar
 * and roam write them, a qcow2 header's backing file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/error.h"
#include "desk/desk.h"
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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_answer),
                cmocka_unit_test(test_tar),
                cmocka_unit_test(test_qcow2),
                cmocka_unit_test(test_ids),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
