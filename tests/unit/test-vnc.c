/* SPDX-License-Identifier: MIT */
/* Unit tests for roam session connect's pieces: the RFB opening on both
 * sides (src/vnc/rfb.h) against scripted peers, VNC's DES (vectors computed
 * with `openssl enc -des-ecb` and checked against vncpasswd's known output),
 * the head of an upgrade answer (src/sync/remote-stream.h), and the byte
 * relay (src/basic/relay.h) over socket pairs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "basic/relay.h"
#include "sync/remote-stream.h"
#include "vnc/rfb.h"

/* A peer: reads come from in, writes go to out. */
typedef struct Script {
        const uint8_t *in;
        size_t in_len, in_off;
        uint8_t out[4096];
        size_t out_len;
} Script;

static int s_read(void *u, void *buf, size_t n) {
        Script *s = u;
        if (s->in_len - s->in_off < n)
                return -ECONNRESET;
        memcpy(buf, s->in + s->in_off, n);
        s->in_off += n;
        return 0;
}
static int s_write(void *u, const void *buf, size_t n) {
        Script *s = u;
        if (sizeof s->out - s->out_len < n)
                return -ENOSPC;
        memcpy(s->out + s->out_len, buf, n);
        s->out_len += n;
        return 0;
}

static const uint8_t challenge[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
static const uint8_t answer_password[16] = { 0xb8, 0x66, 0x92, 0x41, 0x25, 0xc8, 0xee, 0xbb,
                                             0x9d, 0xeb, 0xc1, 0xdb, 0x61, 0xc5, 0x38, 0xe2 };

static void test_des(void **state) {
        uint8_t out[16], file[8];
        rfb_auth_response("password", challenge, out);
        assert_memory_equal(out, answer_password, 16);
        /* only 8 characters count */
        rfb_auth_response("password-and-more", challenge, out);
        assert_memory_equal(out, answer_password, 16);
        rfb_password_file_bytes("password", file);
        assert_memory_equal(file, "\xdb\xd8\x3c\xfd\x72\x7a\x14\x58", 8);
        char back[RFB_PASSWORD_LEN + 1];
        rfb_password_file_decode(file, back);
        assert_string_equal(back, "password");
        char p1[RFB_PASSWORD_LEN + 1], p2[RFB_PASSWORD_LEN + 1];
        assert_int_equal(rfb_password_new(p1), 0);
        assert_int_equal(rfb_password_new(p2), 0);
        assert_int_equal(strlen(p1), RFB_PASSWORD_LEN);
        assert_string_not_equal(p1, p2);
}

static void test_version(void **state) {
        int m;
        assert_int_equal(rfb_version_parse((const uint8_t *) "RFB 003.008\n", &m), 0);
        assert_int_equal(m, 8);
        assert_int_equal(rfb_version_parse((const uint8_t *) "RFB 003.007\n", &m), 0);
        assert_int_equal(m, 7);
        assert_int_equal(rfb_version_parse((const uint8_t *) "RFB 003.005\n", &m), 0);
        assert_int_equal(m, 3);
        assert_int_equal(rfb_version_parse((const uint8_t *) "RFB 003.889\n", &m), 0); /* Apple's */
        assert_int_equal(m, 8);
        assert_int_equal(rfb_version_parse((const uint8_t *) "RFB 004.001\n", &m), -EPROTO);
        assert_int_equal(rfb_version_parse((const uint8_t *) "RFB 003.0a8\n", &m), -EPROTO);
        assert_int_equal(rfb_version_parse((const uint8_t *) "RFB 003.008 ", &m), -EPROTO);
}

static void test_serve(void **state) {
        /* a 3.8 viewer with the right answer */
        uint8_t in[12 + 1 + 16];
        memcpy(in, "RFB 003.008\n", 12);
        in[12] = 2;
        memcpy(in + 13, answer_password, 16);
        Script s = { .in = in, .in_len = sizeof in };
        RfbIo io = { s_read, s_write, &s };
        int minor = 0;
        assert_int_equal(rfb_serve_auth(&io, "password", challenge, &minor), 0);
        assert_int_equal(minor, 8);
        assert_int_equal(s.out_len, 12 + 2 + 16);
        assert_memory_equal(s.out, "RFB 003.008\n\x01\x02", 14);
        assert_memory_equal(s.out + 14, challenge, 16);
        assert_int_equal(rfb_serve_result(&io, 8, NULL), 0);
        assert_memory_equal(s.out + 30, "\0\0\0\0", 4);

        /* a wrong answer: failure with a reason, -EACCES */
        in[13] ^= 1;
        s = (Script) { .in = in, .in_len = sizeof in };
        assert_int_equal(rfb_serve_auth(&io, "password", challenge, &minor), -EACCES);
        assert_memory_equal(s.out + 30, "\0\0\0\1\0\0\0\x0ewrong password", 22);

        /* a 3.3 viewer: the type is a u32, and no reason on failure */
        uint8_t in33[12 + 16];
        memcpy(in33, "RFB 003.003\n", 12);
        memcpy(in33 + 12, answer_password, 16);
        s = (Script) { .in = in33, .in_len = sizeof in33 };
        assert_int_equal(rfb_serve_auth(&io, "password", challenge, &minor), 0);
        assert_int_equal(minor, 3);
        assert_memory_equal(s.out + 12, "\0\0\0\2", 4);
        assert_int_equal(rfb_serve_result(&io, 3, "no"), 0);
        assert_int_equal(s.out_len, 12 + 4 + 16 + 4);

        /* a viewer that picks None, one that is not RFB, one that hangs up */
        in[12] = 1;
        s = (Script) { .in = in, .in_len = sizeof in };
        assert_int_equal(rfb_serve_auth(&io, "password", challenge, &minor), -EPROTO);
        s = (Script) { .in = (const uint8_t *) "GET / HTTP/1.1\r\n", .in_len = 16 };
        assert_int_equal(rfb_serve_auth(&io, "password", challenge, &minor), -EPROTO);
        in[12] = 2;
        s = (Script) { .in = in, .in_len = 20 };
        assert_int_equal(rfb_serve_auth(&io, "password", challenge, &minor), -ECONNRESET);
}

static void test_client(void **state) {
        /* QEMU 7.2 without a password */
        static const uint8_t qemu[] = "RFB 003.008\n\x01\x01\0\0\0\0";
        Script s = { .in = qemu, .in_len = sizeof qemu - 1 };
        RfbIo io = { s_read, s_write, &s };
        assert_int_equal(rfb_client_none(&io), 0);
        assert_int_equal(s.out_len, 13);
        assert_memory_equal(s.out, "RFB 003.008\n\x01", 13);
        assert_int_equal(s.in_off, s.in_len);

        /* 3.7: no SecurityResult for None */
        static const uint8_t v37[] = "RFB 003.007\n\x02\x02\x01";
        s = (Script) { .in = v37, .in_len = sizeof v37 - 1 };
        assert_int_equal(rfb_client_none(&io), 0);
        assert_memory_equal(s.out, "RFB 003.007\n\x01", 13);

        /* 3.3 with None, and with VNC Authentication only */
        s = (Script) { .in = (const uint8_t *) "RFB 003.003\n\0\0\0\1", .in_len = 16 };
        assert_int_equal(rfb_client_none(&io), 0);
        s = (Script) { .in = (const uint8_t *) "RFB 003.003\n\0\0\0\2", .in_len = 16 };
        assert_int_equal(rfb_client_none(&io), -EPROTO);

        /* a password wanted; a refusal with a reason; a reason too long */
        s = (Script) { .in = (const uint8_t *) "RFB 003.008\n\x01\x02", .in_len = 14 };
        assert_int_equal(rfb_client_none(&io), -EPROTO);
        static const uint8_t refused[] = "RFB 003.008\n\0\0\0\0\x05go\naw";
        s = (Script) { .in = refused, .in_len = sizeof refused - 1 };
        assert_int_equal(rfb_client_none(&io), -EPROTO);
        static const uint8_t huge[] = "RFB 003.008\n\0\x7f\xff\xff\xff";
        s = (Script) { .in = huge, .in_len = sizeof huge - 1 };
        assert_int_equal(rfb_client_none(&io), -EPROTO);
        /* a failed SecurityResult */
        static const uint8_t failed[] = "RFB 003.008\n\x01\x01\0\0\0\1\0\0\0\2no";
        s = (Script) { .in = failed, .in_len = sizeof failed - 1 };
        assert_int_equal(rfb_client_none(&io), -EPROTO);
}

static void test_head(void **state) {
        int status;
        int64_t clen;
        bool up;
        const char *ok = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade:  roam-vnc \r\n\r\n";
        assert_int_equal(remote_stream_head_end(ok, strlen(ok)), strlen(ok));
        assert_int_equal(remote_stream_head_end(ok, strlen(ok) - 1), 0);
        assert_int_equal(remote_stream_parse_head(ok, strlen(ok), "roam-vnc", &status, &clen, &up), 0);
        assert_int_equal(status, 101);
        assert_int_equal(clen, -1);
        assert_true(up);
        assert_int_equal(remote_stream_parse_head(ok, strlen(ok), "websocket", &status, &clen, &up), 0);
        assert_false(up);
        const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Length: 42\r\n\r\n";
        assert_int_equal(remote_stream_parse_head(nf, strlen(nf), "roam-vnc", &status, &clen, &up), 0);
        assert_int_equal(status, 404);
        assert_int_equal(clen, 42);
        const char *bad[] = {
                "HTTP/2 200 OK\r\n\r\n",
                "HTTP/1.1 2x0 OK\r\n\r\n",
                "HTTP/1.1 200 OK\nX: y\r\n\r\n",
                "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\n",
        };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                assert_int_equal(remote_stream_parse_head(bad[i], strlen(bad[i]), "roam-vnc", &status, &clen, &up),
                                 -EBADMSG);
}

typedef struct Echo {
        int fd;
} Echo;

/* The far end: echoes what it reads, reversed in case, until the end. */
static void *echo_run(void *p) {
        Echo *e = p;
        char buf[4096];
        ssize_t n;
        while ((n = read(e->fd, buf, sizeof buf)) > 0) {
                for (ssize_t i = 0; i < n; i++)
                        buf[i] = (char) (buf[i] ^ 0x20);
                if (write(e->fd, buf, (size_t) n) != n)
                        break;
        }
        close(e->fd);
        return NULL;
}

typedef struct RelayJob {
        RelayEnd a, b;
        int r;
} RelayJob;

static void *relay_thread(void *p) {
        RelayJob *j = p;
        j->r = relay_run(&j->a, &j->b, "hello", 5, NULL, NULL);
        return NULL;
}

static void test_relay(void **state) {
        int client[2], far[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, client), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, far), 0);
        Echo e = { far[1] };
        RelayJob j = { .a = { .fd = client[1] }, .b = { .fd = far[0] } };
        pthread_t te, tr;
        assert_int_equal(pthread_create(&te, NULL, echo_run, &e), 0);
        assert_int_equal(pthread_create(&tr, NULL, relay_thread, &j), 0);
        char buf[16];
        /* the extra bytes went first, then what the client writes */
        assert_int_equal(write(client[0], "World", 5), 5);
        size_t got = 0;
        while (got < 10) {
                ssize_t n = read(client[0], buf + got, sizeof buf - got);
                assert_true(n > 0);
                got += (size_t) n;
        }
        assert_memory_equal(buf, "HELLOwORLD", 10);
        close(client[0]); /* the client leaves: the relay ends in order */
        pthread_join(tr, NULL);
        assert_int_equal(j.r, 0);
        close(client[1]);
        close(far[0]);
        pthread_join(te, NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_des),    cmocka_unit_test(test_version), cmocka_unit_test(test_serve),
                cmocka_unit_test(test_client), cmocka_unit_test(test_head),    cmocka_unit_test(test_relay),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
