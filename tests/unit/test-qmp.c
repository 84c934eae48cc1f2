/* SPDX-License-Identifier: MIT */
/* Tests of the QMP client against a scripted fake QMP peer (a thread on the
 * other end of a socketpair or unix socket), and one test against the real
 * qemu-system-x86_64 when it is installed. */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "basic/error.h"
#include "basic/fileio.h"
#include "basic/macro.h"
#include "qmp/qmp.h"

extern char **environ;

/* ---- the scripted fake peer ---- */

typedef enum StepKind {
        STEP_END,
        STEP_SEND,        /* text + "\r\n"; "$ID" becomes the id of the last command */
        STEP_SEND_RAW,    /* text as is (no line end) */
        STEP_EXPECT,      /* read one command: execute == text, arguments == args */
        STEP_SEND_LONG,   /* a line of n bytes (a valid-looking object) + "\r\n" */
        STEP_SEND_LONG_START, /* the first n bytes of such a line, no line end */
        STEP_SEND_EVENTS, /* n events "EV" with data {"i": 0..n-1} */
        STEP_SLEEP,       /* n ms */
        STEP_CLOSE,       /* shutdown both directions; the script must end here */
} StepKind;

typedef struct Step {
        StepKind kind;
        const char *text;
        const char *args;
        size_t n;
} Step;

#define SEND(t) { STEP_SEND, (t), NULL, 0 }
#define SEND_RAW(t) { STEP_SEND_RAW, (t), NULL, 0 }
#define EXPECT(c) { STEP_EXPECT, (c), NULL, 0 }
#define EXPECT_ARGS(c, a) { STEP_EXPECT, (c), (a), 0 }
#define REPLY(v) SEND("{\"return\": " v ", \"id\": $ID}")
#define EVENT(name) SEND("{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"" name "\"}")
#define SEND_LONG(n) { STEP_SEND_LONG, NULL, NULL, (n) }
#define SEND_LONG_START(n) { STEP_SEND_LONG_START, NULL, NULL, (n) }
#define SEND_EVENTS(n) { STEP_SEND_EVENTS, NULL, NULL, (n) }
#define SLEEP(ms) { STEP_SLEEP, NULL, NULL, (ms) }
#define CLOSE { STEP_CLOSE, NULL, NULL, 0 }
#define END { STEP_END, NULL, NULL, 0 }

/* What QEMU 7.2 sends, on one line. */
#define GREETING_TEXT                                                                          \
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "      \
        "\"package\": \"fake\"}, \"capabilities\": [\"oob\"]}}"
#define HANDSHAKE SEND(GREETING_TEXT), EXPECT("qmp_capabilities"), REPLY("{}")

typedef struct Peer {
        int fd;          /* the peer's end */
        const Step *script;
        const char *listen_path; /* if set: bind+listen here after listen_delay_ms, accept one */
        int listen_delay_ms;
        pthread_t thread;
        char error[1024]; /* first script violation, "" if none */
} Peer;

static void peer_fail(Peer *p, const char *fmt, ...) _printf_(2, 3);
static void peer_fail(Peer *p, const char *fmt, ...) {
        if (p->error[0])
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->error, sizeof p->error, fmt, ap);
        va_end(ap);
}

static void msleep(unsigned ms) {
        struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int send_all(int fd, const char *s, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                s += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Replaces every "$ID" in t by id. Caller frees. */
static char *substitute_id(const char *t, long long id) {
        char num[32];
        snprintf(num, sizeof num, "%lld", id);
        size_t cap = strlen(t) * 2 + 64, len = 0;
        char *out = malloc(cap);
        assert_non_null(out);
        for (const char *s = t; *s;) {
                if (len + sizeof num + 1 >= cap) {
                        cap *= 2;
                        out = realloc(out, cap);
                        assert_non_null(out);
                }
                if (!strncmp(s, "$ID", 3)) {
                        len += (size_t) sprintf(out + len, "%s", num);
                        s += 3;
                } else
                        out[len++] = *s++;
        }
        out[len] = 0;
        return out;
}

static void peer_expect(Peer *p, FILE *f, const Step *s, long long *id) {
        _cleanup_free_ char *line = NULL;
        size_t n = 0;
        ssize_t k = getline(&line, &n, f);
        if (k <= 0) {
                peer_fail(p, "expected '%s', got EOF", s->text);
                return;
        }
        json_error_t e;
        json_auto_t *j = json_loads(line, 0, &e);
        if (!json_is_object(j)) {
                peer_fail(p, "expected '%s', got unparsable '%s'", s->text, line);
                return;
        }
        const char *cmd = json_string_value(json_object_get(j, "execute"));
        if (!cmd || strcmp(cmd, s->text)) {
                peer_fail(p, "expected '%s', got '%s'", s->text, line);
                return;
        }
        json_t *jid = json_object_get(j, "id");
        if (!json_is_integer(jid) || json_integer_value(jid) <= *id) {
                peer_fail(p, "command '%s' has no increasing numeric id: '%s'", cmd, line);
                return;
        }
        *id = json_integer_value(jid);
        json_t *args = json_object_get(j, "arguments");
        if (s->args) {
                json_auto_t *want = json_loads(s->args, 0, &e);
                if (!want || !json_equal(want, args))
                        peer_fail(p, "command '%s' has arguments '%s'", cmd, line);
        } else if (args)
                peer_fail(p, "command '%s' has unexpected arguments: '%s'", cmd, line);
}

static void *peer_main(void *arg) {
        Peer *p = arg;
        if (p->listen_path) {
                msleep((unsigned) p->listen_delay_ms);
                int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                strcpy(sa.sun_path, p->listen_path);
                if (l < 0 || bind(l, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(l, 1) < 0) {
                        peer_fail(p, "cannot listen on '%s': %m", p->listen_path);
                        if (l >= 0)
                                close(l);
                        return NULL;
                }
                p->fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
                close(l);
                if (p->fd < 0) {
                        peer_fail(p, "accept failed: %m");
                        return NULL;
                }
        }

        FILE *f = fdopen(dup(p->fd), "r");
        if (!f) {
                peer_fail(p, "fdopen: %m");
                close(p->fd);
                return NULL;
        }
        long long id = 0;
        bool closed = false;
        for (const Step *s = p->script; s->kind != STEP_END && !p->error[0]; s++) {
                switch (s->kind) {
                case STEP_SEND:
                case STEP_SEND_RAW: {
                        _cleanup_free_ char *t = substitute_id(s->text, id);
                        size_t n = strlen(t);
                        if (s->kind == STEP_SEND) {
                                t = realloc(t, n + 3);
                                memcpy(t + n, "\r\n", 3);
                                n += 2;
                        }
                        if (send_all(p->fd, t, n) < 0)
                                peer_fail(p, "send of '%s' failed", s->text);
                        break;
                }
                case STEP_EXPECT:
                        peer_expect(p, f, s, &id);
                        break;
                case STEP_SEND_LONG:
                case STEP_SEND_LONG_START: {
                        bool whole = s->kind == STEP_SEND_LONG;
                        char *t = malloc(s->n + 2);
                        memset(t, 'x', s->n);
                        memcpy(t, "{\"a\": \"", 7);
                        if (whole) {
                                memcpy(t + s->n - 2, "\"}", 2);
                                memcpy(t + s->n, "\r\n", 2);
                        }
                        if (send_all(p->fd, t, s->n + (whole ? 2 : 0)) < 0)
                                peer_fail(p, "send of a long line failed");
                        free(t);
                        break;
                }
                case STEP_SEND_EVENTS:
                        for (size_t i = 0; i < s->n; i++) {
                                char t[128];
                                int n = snprintf(t, sizeof t, "{\"event\": \"EV\", \"data\": {\"i\": %zu}}\r\n", i);
                                if (send_all(p->fd, t, (size_t) n) < 0) {
                                        peer_fail(p, "send of event %zu failed", i);
                                        break;
                                }
                        }
                        break;
                case STEP_SLEEP:
                        msleep((unsigned) s->n);
                        break;
                case STEP_CLOSE:
                        shutdown(p->fd, SHUT_RDWR);
                        closed = true;
                        break;
                case STEP_END:
                        break;
                }
        }
        /* Anything the client sends after the script is a violation. */
        if (!closed) {
                _cleanup_free_ char *line = NULL;
                size_t n = 0;
                if (getline(&line, &n, f) > 0)
                        peer_fail(p, "unexpected message after the script: '%s'", line);
        }
        fclose(f);
        close(p->fd);
        return NULL;
}

/* Starts the peer on a socketpair; returns the client's end. */
static int peer_start(Peer *p, const Step *script) {
        int sv[2];
        memset(p, 0, sizeof *p);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        p->fd = sv[1];
        p->script = script;
        assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
        return sv[0];
}

/* Joins the peer (the client must have closed its end) and checks that the
 * script was followed. */
static void peer_finish(Peer *p) {
        assert_int_equal(pthread_join(p->thread, NULL), 0);
        assert_string_equal(p->error, "");
}

static Qmp *connect_fake(Peer *p, const Step *script) {
        int fd = peer_start(p, script);
        Qmp *q = NULL;
        err_clear();
        int r = qmp_new_from_fd(fd, 5000, &q);
        if (r < 0)
                fail_msg("handshake failed: %s", err_message(r));
        return q;
}

static void assert_err(int r, int want, const char *detail) {
        if (r != want)
                fail_msg("expected %d, got %d (%s)", want, r, err_message(r));
        if (detail && !strstr(err_message(r), detail))
                fail_msg("detail '%s' does not contain '%s'", err_message(r), detail);
}

/* ---- parser ---- */

static char *nested(unsigned depth) {
        char *s = malloc(2 * depth + 16);
        size_t n = 0;
        s[n++] = '{';
        memcpy(s + n, "\"a\":", 4);
        n += 4;
        for (unsigned i = 1; i < depth; i++)
                s[n++] = '[';
        for (unsigned i = 1; i < depth; i++)
                s[n++] = ']';
        if (depth == 1)
                s[n++] = '1';
        s[n++] = '}';
        s[n] = 0;
        return s;
}

static void test_parse(void **state) {
        json_t *j = NULL;
        const char *ok = "{\"return\": {\"status\": \"running\"}, \"id\": 3, \"unknown\": [1]}\r";
        assert_int_equal(qmp_parse_message(ok, strlen(ok), &j), 0);
        assert_int_equal(json_integer_value(json_object_get(j, "id")), 3);
        json_decref(j);

        j = NULL;
        assert_err(qmp_parse_message("[1, 2]", 6, &j), -EBADMSG, "not a json object");
        assert_err(qmp_parse_message("\"x\"", 3, &j), -EBADMSG, "malformed");
        assert_err(qmp_parse_message("{\"a\": ", 6, &j), -EBADMSG, "malformed");
        assert_err(qmp_parse_message("garbage", 7, &j), -EBADMSG, "malformed");
        assert_err(qmp_parse_message("", 0, &j), -EBADMSG, "malformed");
        assert_err(qmp_parse_message("{} {}", 5, &j), -EBADMSG, "malformed");
        assert_err(qmp_parse_message("{\"a\": \"\0\"}", 10, &j), -EBADMSG, "malformed");
        assert_null(j); /* not written on failure */

        /* nesting: QMP_DEPTH_MAX is fine, one more is not */
        _cleanup_free_ char *d64 = nested(QMP_DEPTH_MAX);
        assert_int_equal(qmp_parse_message(d64, strlen(d64), &j), 0);
        json_decref(j);
        j = NULL;
        _cleanup_free_ char *d65 = nested(QMP_DEPTH_MAX + 1);
        assert_err(qmp_parse_message(d65, strlen(d65), &j), -EBADMSG, "nested too deeply");
        assert_null(j);
        /* brackets inside strings do not count */
        char br[400];
        int n = snprintf(br, sizeof br, "{\"s\": \"%s\\\"[[[\"}", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[");
        assert_int_equal(qmp_parse_message(br, (size_t) n, &j), 0);
        json_decref(j);

        /* length: exactly QMP_LINE_MAX (plus "\r") is fine, one more is not */
        char *big = malloc(QMP_LINE_MAX + 2);
        memset(big, ' ', QMP_LINE_MAX + 1);
        big[0] = '{';
        big[QMP_LINE_MAX - 1] = '}';
        big[QMP_LINE_MAX] = '\r';
        j = NULL;
        assert_int_equal(qmp_parse_message(big, QMP_LINE_MAX + 1, &j), 0);
        json_decref(j);
        j = NULL;
        big[QMP_LINE_MAX] = ' ';
        assert_err(qmp_parse_message(big, QMP_LINE_MAX + 1, &j), -EBADMSG, "qmp message too long");
        assert_null(j);
        free(big);
}

/* ---- handshake ---- */

static void test_handshake(void **state) {
        static const Step script[] = { HANDSHAKE, END };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        json_t *v = json_object_get(json_object_get(qmp_greeting(q), "version"), "qemu");
        assert_int_equal(json_integer_value(json_object_get(v, "major")), 7);
        assert_int_equal(json_integer_value(json_object_get(v, "minor")), 2);
        qmp_free(q);
        peer_finish(&p);
}

static void test_handshake_no_greeting(void **state) {
        static const Step script[] = { SEND("{\"return\": {}}"), END };
        Peer p;
        int fd = peer_start(&p, script);
        Qmp *q = NULL;
        assert_err(qmp_new_from_fd(fd, 5000, &q), -EPROTO, "qmp greeting");
        assert_null(q);
        /* the fd is still ours */
        assert_int_equal(close(fd), 0);
        peer_finish(&p);
}

static void test_handshake_refused(void **state) {
        static const Step script[] = {
                SEND(GREETING_TEXT),
                EXPECT("qmp_capabilities"),
                SEND("{\"id\": $ID, \"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}}"),
                END,
        };
        Peer p;
        int fd = peer_start(&p, script);
        Qmp *q = NULL;
        assert_err(qmp_new_from_fd(fd, 5000, &q), -EIO, "qemu refused 'qmp_capabilities': nope");
        close(fd);
        peer_finish(&p);
}

static void test_handshake_timeout(void **state) {
        static const Step script[] = { SLEEP(300), END };
        Peer p;
        int fd = peer_start(&p, script);
        Qmp *q = NULL;
        assert_err(qmp_new_from_fd(fd, 50, &q), -ETIMEDOUT, "no qmp greeting within 50 ms");
        close(fd);
        peer_finish(&p);
}

static void test_handshake_eof(void **state) {
        static const Step script[] = { SEND_RAW("{\"QMP\": "), CLOSE, END };
        Peer p;
        int fd = peer_start(&p, script);
        Qmp *q = NULL;
        assert_err(qmp_new_from_fd(fd, 5000, &q), -ECONNRESET, "qemu closed the qmp connection");
        close(fd);
        peer_finish(&p);
}

/* ---- commands and events ---- */

static void test_events_between_replies(void **state) {
        static const Step script[] = {
                HANDSHAKE,
                EXPECT("query-status"),
                EVENT("STOP"),
                SEND("{\"event\": \"RESUME\", \"data\": {\"x\": 1}, \"timestamp\": {}}"),
                SEND("{\"return\": {\"status\": \"wrong\"}, \"id\": 999}"),  /* unknown id */
                SEND("{\"return\": {\"status\": \"wrong\"}, \"id\": \"$ID\"}"), /* not a number */
                SEND("{\"something-new\": true}"),                            /* unknown kind */
                SEND(""),                                                   /* empty line */
                SEND("{\"id\": $ID, \"return\": {\"status\": \"paused\", \"singlestep\": false, "
                     "\"running\": false, \"new-key\": 1}, \"new-key\": 2}"),
                END,
        };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        _cleanup_free_ char *status = NULL;
        assert_int_equal(qmp_query_status(q, &status), 0);
        assert_string_equal(status, "paused");

        json_t *ev = NULL;
        assert_int_equal(qmp_next_event(q, 0, &ev), 0);
        assert_string_equal(json_string_value(json_object_get(ev, "event")), "STOP");
        json_decref(ev);
        assert_int_equal(qmp_next_event(q, 0, &ev), 0);
        assert_string_equal(json_string_value(json_object_get(ev, "event")), "RESUME");
        assert_int_equal(json_integer_value(json_object_get(json_object_get(ev, "data"), "x")), 1);
        json_decref(ev);
        ev = NULL;
        assert_err(qmp_next_event(q, 0, &ev), -ETIMEDOUT, NULL);
        assert_null(ev);
        assert_int_equal(qmp_events_dropped(q), 0);
        qmp_free(q);
        peer_finish(&p);
}

static void test_execute_args_and_return(void **state) {
        static const Step script[] = {
                HANDSHAKE,
                EXPECT_ARGS("human-monitor-command", "{\"command-line\": \"info version\"}"),
                REPLY("\"7.2.0\\r\\n\""),
                EXPECT("query-version"),
                REPLY("{\"qemu\": {\"major\": 7, \"minor\": 2, \"micro\": 0}, \"package\": \"\"}"),
                END,
        };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        json_t *ret = NULL;
        assert_int_equal(qmp_execute(q, "human-monitor-command",
                                     json_pack("{s:s}", "command-line", "info version"), 1000, &ret),
                         0);
        assert_string_equal(json_string_value(ret), "7.2.0\r\n");
        json_decref(ret);
        /* args that are not an object are refused (and still consumed) */
        assert_int_equal(qmp_execute(q, "query-version", json_integer(1), 1000, NULL), -EINVAL);
        assert_int_equal(qmp_execute(q, "query-version", NULL, 1000, &ret), 0);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(ret, "qemu"), "major")), 7);
        json_decref(ret);
        qmp_free(q);
        peer_finish(&p);
}

static void test_error_reply(void **state) {
        static const Step script[] = {
                HANDSHAKE,
                EXPECT("no-such-command"),
                SEND("{\"id\": $ID, \"error\": {\"class\": \"CommandNotFound\", "
                     "\"desc\": \"The command no-such-command has not been found\"}}"),
                EXPECT("stop"),
                /* QEMU could not parse a request: an error without id */
                SEND("{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, too many tokens\"}}"),
                EXPECT("cont"),
                REPLY("{}"),
                END,
        };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        json_t *ret = NULL;
        err_clear();
        int r = qmp_execute(q, "no-such-command", NULL, 1000, &ret);
        assert_int_equal(r, -EIO);
        assert_string_equal(err_message(r), "qemu refused 'no-such-command': The command no-such-command has not been found");
        assert_null(ret);
        assert_err(qmp_stop(q), -EIO, "qemu refused 'stop': JSON parse error, too many tokens");
        assert_int_equal(qmp_cont(q), 0); /* still usable */
        qmp_free(q);
        peer_finish(&p);
}

static void test_overlong_line(void **state) {
        static const Step script[] = {
                HANDSHAKE,
                EXPECT("a"),
                /* refused before the line ends: the client does not wait */
                SEND_LONG_START(QMP_LINE_MAX + 1000),
                SLEEP(1500),
                SEND_RAW("xxxx\"}\r\n"),
                REPLY("\"late a\""),
                EXPECT("b"),
                REPLY("\"b\""),
                END,
        };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        json_t *ret = NULL;
        assert_err(qmp_execute(q, "a", NULL, 1000, &ret), -EBADMSG, "qmp message too long");
        /* the rest of the long line is skipped, the late reply to a ignored */
        assert_int_equal(qmp_execute(q, "b", NULL, 5000, &ret), 0);
        assert_string_equal(json_string_value(ret), "b");
        json_decref(ret);
        qmp_free(q);
        peer_finish(&p);
}

static void test_overlong_line_complete(void **state) {
        /* an overlong line that arrives whole is refused too */
        static const Step script[] = {
                HANDSHAKE,
                EXPECT("a"),
                SEND_LONG(QMP_LINE_MAX + 2),
                REPLY("\"a\""),
                EXPECT("b"),
                REPLY("\"b\""),
                END,
        };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        json_t *ret = NULL;
        assert_err(qmp_execute(q, "a", NULL, 5000, &ret), -EBADMSG, "qmp message too long");
        assert_int_equal(qmp_execute(q, "b", NULL, 5000, &ret), 0);
        assert_string_equal(json_string_value(ret), "b");
        json_decref(ret);
        qmp_free(q);
        peer_finish(&p);
}

static void test_long_line_within_bound(void **state) {
        static const Step script[] = {
                HANDSHAKE,
                EXPECT("a"),
                SEND_LONG(QMP_LINE_MAX - 10), /* an unknown message, ignored */
                REPLY("1"),
                END,
        };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        json_t *ret = NULL;
        assert_int_equal(qmp_execute(q, "a", NULL, 5000, &ret), 0);
        assert_int_equal(json_integer_value(ret), 1);
        json_decref(ret);
        qmp_free(q);
        peer_finish(&p);
}

static void test_bad_messages(void **state) {
        static const Step script[] = {
                HANDSHAKE,
                EXPECT("a"),
                SEND("[1, 2]"),
                EXPECT("b"),
                SEND("this is not json"),
                EXPECT("c"),
                SEND("{\"return\": 1, \"id\": 1, \"x\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                     "[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"),
                EXPECT("d"),
                REPLY("{}"),
                END,
        };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        assert_err(qmp_execute(q, "a", NULL, 5000, NULL), -EBADMSG, "not a json object");
        assert_err(qmp_execute(q, "b", NULL, 5000, NULL), -EBADMSG, "malformed qmp message");
        assert_err(qmp_execute(q, "c", NULL, 5000, NULL), -EBADMSG, "nested too deeply");
        assert_int_equal(qmp_execute(q, "d", NULL, 5000, NULL), 0);
        qmp_free(q);
        peer_finish(&p);
}

static void test_close_mid_reply(void **state) {
        static const Step script[] = {
                HANDSHAKE,
                EXPECT("query-status"),
                EVENT("SHUTDOWN"),
                SEND_RAW("{\"return\": {\"status\": \"runn"),
                CLOSE,
                END,
        };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        char *status = NULL;
        err_clear();
        int r = qmp_query_status(q, &status);
        assert_int_equal(r, -ECONNRESET);
        assert_string_equal(err_message(r), "qemu closed the qmp connection");
        assert_null(status);
        /* every later call fails the same way, at once */
        err_clear();
        assert_err(qmp_stop(q), -ECONNRESET, "qemu closed the qmp connection");
        assert_err(qmp_wait_event(q, "RESET", -1, NULL), -ECONNRESET, NULL);
        /* events that arrived before the end can still be fetched */
        json_t *ev = NULL;
        assert_int_equal(qmp_next_event(q, -1, &ev), 0);
        assert_string_equal(json_string_value(json_object_get(ev, "event")), "SHUTDOWN");
        json_decref(ev);
        assert_err(qmp_next_event(q, -1, &ev), -ECONNRESET, NULL);
        qmp_free(q);
        peer_finish(&p);
}

static void test_timeout_then_late_reply(void **state) {
        static const Step script[] = {
                HANDSHAKE,
                EXPECT("slow"),
                SLEEP(300),
                REPLY("\"late\""),
                EXPECT("fast"),
                REPLY("\"fast\""),
                END,
        };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        json_t *ret = NULL;
        assert_err(qmp_execute(q, "slow", NULL, 50, &ret), -ETIMEDOUT, "qemu did not answer 'slow'");
        assert_null(ret);
        assert_int_equal(qmp_execute(q, "fast", NULL, 5000, &ret), 0);
        assert_string_equal(json_string_value(ret), "fast");
        json_decref(ret);
        qmp_free(q);
        peer_finish(&p);
}

static void test_event_queue_bound(void **state) {
        static const Step script[] = {
                HANDSHAKE,
                EXPECT("x"),
                SEND_EVENTS(QMP_EVENT_QUEUE_MAX + 6),
                REPLY("{}"),
                END,
        };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        assert_int_equal(qmp_execute(q, "x", NULL, 5000, NULL), 0);
        assert_int_equal(qmp_events_dropped(q), 6);
        for (size_t i = 0; i < QMP_EVENT_QUEUE_MAX; i++) {
                json_t *ev = NULL;
                assert_int_equal(qmp_next_event(q, 0, &ev), 0);
                json_int_t k = json_integer_value(json_object_get(json_object_get(ev, "data"), "i"));
                assert_int_equal(k, (json_int_t) (i + 6)); /* the oldest were dropped */
                json_decref(ev);
        }
        json_t *ev = NULL;
        assert_int_equal(qmp_next_event(q, 0, &ev), -ETIMEDOUT);
        qmp_free(q); /* frees nothing queued: queue is empty now */
        peer_finish(&p);
}

static void test_free_with_queued_events(void **state) {
        static const Step script[] = { HANDSHAKE, EXPECT("x"), SEND_EVENTS(50), REPLY("{}"), END };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        assert_int_equal(qmp_execute(q, "x", NULL, 5000, NULL), 0);
        qmp_free(q); /* valgrind checks the 50 queued events are freed */
        peer_finish(&p);
}

static void test_wait_event(void **state) {
        static const Step script[] = {
                HANDSHAKE,
                EVENT("A"),
                EVENT("B"),
                EVENT("C"),
                SLEEP(300),
                EVENT("E"),
                EVENT("D"),
                END,
        };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        json_t *ev = NULL;
        assert_int_equal(qmp_wait_event(q, "C", 5000, &ev), 0);
        assert_string_equal(json_string_value(json_object_get(ev, "event")), "C");
        json_decref(ev);
        assert_err(qmp_wait_event(q, "D", 20, &ev), -ETIMEDOUT, "no 'D' event");
        assert_int_equal(qmp_wait_event(q, "D", 5000, NULL), 0);
        /* a queued match is found without reading */
        assert_int_equal(qmp_wait_event(q, "B", 0, NULL), 0);
        /* the others stay queued, in order */
        const char *want[] = { "A", "E" };
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                assert_int_equal(qmp_next_event(q, 0, &ev), 0);
                assert_string_equal(json_string_value(json_object_get(ev, "event")), want[i]);
                json_decref(ev);
        }
        assert_int_equal(qmp_next_event(q, 0, &ev), -ETIMEDOUT);
        qmp_free(q);
        peer_finish(&p);
}

static void test_helpers(void **state) {
        static const Step script[] = {
                HANDSHAKE,
                EXPECT_ARGS("migrate-set-capabilities",
                            "{\"capabilities\": [{\"capability\": \"x-ignore-shared\", \"state\": true}]}"),
                REPLY("{}"),
                EXPECT_ARGS("migrate-set-capabilities",
                            "{\"capabilities\": [{\"capability\": \"events\", \"state\": false}]}"),
                REPLY("{}"),
                EXPECT_ARGS("migrate-set-parameters", "{\"max-bandwidth\": 68719476736}"),
                REPLY("{}"),
                EXPECT_ARGS("migrate", "{\"uri\": \"exec:cat > dev.state\"}"),
                REPLY("{}"),
                EXPECT("query-migrate"),
                REPLY("{}"),
                EXPECT("query-migrate"),
                REPLY("{\"status\": \"setup\"}"),
                EVENT("MIGRATION"),
                EXPECT("query-migrate"),
                REPLY("{\"status\": \"active\", \"ram\": {}}"),
                EXPECT("query-migrate"),
                REPLY("{\"status\": \"completed\", \"total-time\": 42}"),
                EXPECT_ARGS("migrate-incoming", "{\"uri\": \"exec:cat dev.state\"}"),
                REPLY("{}"),
                EXPECT("stop"),
                REPLY("{}"),
                EXPECT("cont"),
                REPLY("{}"),
                EXPECT("system_powerdown"),
                REPLY("{}"),
                EXPECT("quit"),
                REPLY("{}"),
                EVENT("SHUTDOWN"),
                CLOSE,
                END,
        };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        assert_int_equal(qmp_set_migrate_capability(q, "x-ignore-shared", true), 0);
        assert_int_equal(qmp_set_migrate_capability(q, "events", false), 0);
        assert_int_equal(qmp_set_migrate_parameter(q, "max-bandwidth", INT64_C(64) << 30), 0);
        assert_int_equal(qmp_migrate(q, "exec:cat > dev.state"), 0);
        json_t *info = NULL;
        assert_int_equal(qmp_wait_migration(q, 5000, &info), 0);
        assert_int_equal(json_integer_value(json_object_get(info, "total-time")), 42);
        json_decref(info);
        assert_int_equal(qmp_migrate_incoming(q, "exec:cat dev.state"), 0);
        assert_int_equal(qmp_stop(q), 0);
        assert_int_equal(qmp_cont(q), 0);
        assert_int_equal(qmp_system_powerdown(q), 0);
        assert_int_equal(qmp_quit(q), 0);
        assert_int_equal(qmp_wait_event(q, "MIGRATION", 0, NULL), 0);
        assert_int_equal(qmp_wait_event(q, "SHUTDOWN", 5000, NULL), 0);
        qmp_free(q);
        peer_finish(&p);
}

/* getfd: the command's first bytes carry the file descriptor (SCM_RIGHTS),
 * which the peer receives as a descriptor of the same open file. */
typedef struct FdPeer {
        int fd;
        struct stat want;
        char error[256];
} FdPeer;

static void *fd_peer_main(void *arg) {
        FdPeer *p = arg;
        if (send_all(p->fd, GREETING_TEXT "\r\n", strlen(GREETING_TEXT) + 2) < 0)
                return snprintf(p->error, sizeof p->error, "greeting not sent"), NULL;
        char buf[4096];
        size_t len = 0;
        int got = -1, cmds = 0;
        while (cmds < 2) {
                union {
                        struct cmsghdr h;
                        char b[CMSG_SPACE(sizeof(int))];
                } c;
                struct iovec iov = { buf + len, sizeof buf - len - 1 };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.b,
                                     .msg_controllen = sizeof c.b };
                ssize_t k = recvmsg(p->fd, &mh, MSG_CMSG_CLOEXEC);
                if (k <= 0)
                        return snprintf(p->error, sizeof p->error, "recvmsg: %zd", k), NULL;
                for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h))
                        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
                                if (got >= 0 || cmds != 1)
                                        return snprintf(p->error, sizeof p->error, "fd with command %d", cmds), NULL;
                                memcpy(&got, CMSG_DATA(h), sizeof got);
                        }
                len += (size_t) k;
                buf[len] = 0;
                char *nl;
                while ((nl = strchr(buf, '\n'))) {
                        *nl = 0;
                        json_auto_t *j = json_loads(buf, 0, NULL);
                        const char *want = cmds == 0 ? "qmp_capabilities" : "getfd";
                        const char *ex = json_string_value(json_object_get(j, "execute"));
                        if (!ex || strcmp(ex, want))
                                return snprintf(p->error, sizeof p->error, "expected %s: %.200s", want, buf), NULL;
                        json_auto_t *args = json_pack("{s:s}", "fdname", "dev");
                        if (cmds == 1 && !json_equal(json_object_get(j, "arguments"), args))
                                return snprintf(p->error, sizeof p->error, "getfd arguments: %.200s", buf), NULL;
                        char reply[128];
                        int n = snprintf(reply, sizeof reply, "{\"return\": {}, \"id\": %lld}\r\n",
                                         json_integer_value(json_object_get(j, "id")));
                        send_all(p->fd, reply, (size_t) n);
                        cmds++;
                        len -= (size_t) (nl + 1 - buf);
                        memmove(buf, nl + 1, len + 1);
                }
        }
        struct stat st;
        if (got < 0 || fstat(got, &st) < 0 || st.st_ino != p->want.st_ino || st.st_dev != p->want.st_dev)
                snprintf(p->error, sizeof p->error, "no descriptor of the file came with getfd (%d)", got);
        if (got >= 0)
                close(got);
        return NULL;
}

static void test_send_fd(void **state) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        FdPeer p = { .fd = sv[1] };
        char path[] = "/tmp/roam-test-fd-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        unlink(path);
        assert_int_equal(fstat(fd, &p.want), 0);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, fd_peer_main, &p), 0);
        Qmp *q = NULL;
        assert_int_equal(qmp_new_from_fd(sv[0], 5000, &q), 0);
        assert_int_equal(qmp_send_fd(q, fd, "dev"), 0);
        assert_int_equal(qmp_send_fd(q, -1, "dev"), -EINVAL);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_string_equal(p.error, "");
        qmp_free(q);
        close(sv[1]);
        close(fd);
}

static void test_migration_failed(void **state) {
        static const Step script[] = {
                HANDSHAKE,
                EXPECT("query-migrate"),
                REPLY("{\"status\": \"active\"}"),
                EXPECT("query-migrate"),
                REPLY("{\"status\": \"failed\", \"error-desc\": \"Size mismatch: pc.ram\"}"),
                EXPECT("query-migrate"),
                REPLY("{\"status\": \"cancelled\"}"),
                EXPECT("query-migrate"),
                REPLY("{\"status\": \"active\"}"),
                END,
        };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        json_t *info = NULL;
        assert_err(qmp_wait_migration(q, 5000, &info), -EIO, "migration failed: Size mismatch: pc.ram");
        assert_err(qmp_wait_migration(q, 5000, &info), -ECANCELED, "cancelled");
        /* timeout 0: one look, then give up */
        assert_err(qmp_wait_migration(q, 0, &info), -ETIMEDOUT, "status 'active'");
        assert_null(info);
        qmp_free(q);
        peer_finish(&p);
}

static void test_quit_without_reply(void **state) {
        static const Step script[] = { HANDSHAKE, EXPECT("quit"), CLOSE, END };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        assert_int_equal(qmp_quit(q), 0);
        assert_err(qmp_quit(q), -ECONNRESET, NULL); /* a second time: gone */
        qmp_free(q);
        peer_finish(&p);
}

static void test_send_to_closed_peer(void **state) {
        static const Step script[] = { HANDSHAKE, CLOSE, END };
        Peer p;
        Qmp *q = connect_fake(&p, script);
        assert_int_equal(pthread_join(p.thread, NULL), 0);
        assert_string_equal(p.error, "");
        /* no SIGPIPE: -ECONNRESET (from send or from the read of the reply) */
        assert_err(qmp_stop(q), -ECONNRESET, "qemu closed the qmp connection");
        qmp_free(q);
}

/* ---- unix socket ---- */

static void test_connect_unix(void **state) {
        char dir[] = "/tmp/roam-test-qmp-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *path = path_join(dir, "qmp.sock");

        /* nothing there: retried until the timeout, then the last error */
        Qmp *q = NULL;
        assert_err(qmp_connect(path, 30, &q), -ENOENT, "cannot connect to qmp socket");
        assert_null(q);

        /* the socket appears only after 100 ms (QEMU still starting) */
        static const Step script[] = { HANDSHAKE, EXPECT("stop"), REPLY("{}"), END };
        Peer p;
        memset(&p, 0, sizeof p);
        p.fd = -1;
        p.script = script;
        p.listen_path = path;
        p.listen_delay_ms = 100;
        assert_int_equal(pthread_create(&p.thread, NULL, peer_main, &p), 0);
        int r = qmp_connect(path, 5000, &q);
        if (r < 0)
                fail_msg("connect failed: %s", err_message(r));
        assert_int_equal(qmp_stop(q), 0);
        qmp_free(q);
        peer_finish(&p);

        char longpath[200];
        memset(longpath, 'a', sizeof longpath - 1);
        longpath[sizeof longpath - 1] = 0;
        assert_err(qmp_connect(longpath, 0, &q), -ENAMETOOLONG, "too long");
        assert_int_equal(rm_rf(dir), 0);
}

/* ---- the guest agent ---- */

typedef enum AgentMode {
        AGENT_GOOD,    /* stale bytes, then 0xff and the right sync answer */
        AGENT_WRONG,   /* 0xff and a wrong sync value, to every sync */
        AGENT_SILENT,  /* reads, never answers */
        AGENT_STALE,   /* first the delimited answer an earlier client left (its value), then as GOOD */
} AgentMode;

typedef struct Agent {
        int fd;
        AgentMode mode;
        pthread_t thread;
        char failure[256];
} Agent;

/* Reads one line (after an optional leading 0xff); NULL at EOF. */
static char *agent_read_line(FILE *f, bool *saw_ff) {
        char *line = NULL;
        size_t cap = 0;
        if (getline(&line, &cap, f) < 0) {
                free(line);
                return NULL;
        }
        if ((unsigned char) line[0] == 0xff) {
                *saw_ff = true;
                memmove(line, line + 1, strlen(line));
        }
        return line;
}

static void *agent_main(void *arg) {
        Agent *a = arg;
        FILE *f = fdopen(dup(a->fd), "r");
        bool saw_ff = false;
        _cleanup_free_ char *cmd = NULL, *sync = agent_read_line(f, &saw_ff);
        json_t *j = sync ? json_loads(sync, 0, NULL) : NULL;
        json_t *id = json_object_get(json_object_get(j, "arguments"), "id");
        if (!saw_ff || !j || strcmp(json_string_value(json_object_get(j, "execute")) ?: "", "guest-sync-delimited") ||
            !json_is_integer(id)) {
                snprintf(a->failure, sizeof a->failure, "bad sync: ff=%d '%s'", saw_ff, sync ?: "(eof)");
                goto out;
        }
        if (a->mode == AGENT_SILENT) {
                char c;
                while (read(a->fd, &c, 1) > 0)
                        ;
                goto out;
        }
        char buf[512];
        int n;
        for (int round = 0; a->mode == AGENT_WRONG || (a->mode == AGENT_STALE && round == 0); round++) {
                /* an answer with another value (and the same id): a former client's */
                n = snprintf(buf, sizeof buf, "\xff{\"return\": %lld, \"id\": %lld}\n",
                             (long long) json_integer_value(id) + 1,
                             (long long) json_integer_value(json_object_get(j, "id")));
                if (send_all(a->fd, buf, (size_t) n) < 0)
                        goto out;
                json_decref(j);
                free(sync);
                sync = agent_read_line(f, &saw_ff);
                j = sync ? json_loads(sync, 0, NULL) : NULL;
                id = json_object_get(json_object_get(j, "arguments"), "id");
                if (!j || !json_is_integer(id))
                        goto out; /* the client gave up */
        }
        /* STALE: also the id-less error a stray 0xff earns (the agent's parser reset), which answers nobody,
         * a line that is no JSON, and the start of a former client's answer before a 0xff on our line */
        n = snprintf(buf, sizeof buf, "{\"return\": {\"pid\": 9}}\n{\"ret\xff%s{\"return\": %lld, \"id\": %lld}\n",
                     a->mode == AGENT_STALE ? "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, "
                                              "stray '\\u00ff'\"}}\nnot json\n{\"retu\xff"
                                            : "",
                     (long long) json_integer_value(id), (long long) json_integer_value(json_object_get(j, "id")));
        /* a stale answer and half a line of a former client first, then the delimiter */
        if (send_all(a->fd, buf, (size_t) n) < 0)
                goto out;
        json_decref(j);
        j = NULL;
        cmd = agent_read_line(f, &saw_ff);
        j = cmd ? json_loads(cmd, 0, NULL) : NULL;
        if (!j || strcmp(json_string_value(json_object_get(j, "execute")) ?: "", "guest-exec")) {
                snprintf(a->failure, sizeof a->failure, "expected guest-exec, got '%s'", cmd ?: "(eof)");
                goto out;
        }
        n = snprintf(buf, sizeof buf, "{\"return\": {\"pid\": 42}, \"id\": %lld}\n",
                     (long long) json_integer_value(json_object_get(j, "id")));
        (void) send_all(a->fd, buf, (size_t) n);
out:
        json_decref(j);
        fclose(f);
        return NULL;
}

static int agent_start(Agent *a, AgentMode mode) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        *a = (Agent) { .fd = sv[1], .mode = mode };
        assert_int_equal(pthread_create(&a->thread, NULL, agent_main, a), 0);
        return sv[0];
}

static void agent_finish(Agent *a, int client_fd) {
        if (client_fd >= 0)
                close(client_fd);
        shutdown(a->fd, SHUT_RDWR);
        pthread_join(a->thread, NULL);
        close(a->fd);
        if (a->failure[0])
                fail_msg("agent: %s", a->failure);
}

static void test_agent_sync(void **state) {
        Agent a;
        int fd = agent_start(&a, AGENT_GOOD);
        Qmp *q = NULL;
        /* the stale {"return": {"pid": 9}} and the half line before 0xff are skipped */
        assert_int_equal(qmp_agent_new_from_fd(fd, 2000, &q), 0);
        json_t *ret = NULL;
        assert_int_equal(qmp_execute(q, "guest-exec", json_pack("{s:s}", "path", "/bin/true"), 2000, &ret), 0);
        assert_int_equal(json_integer_value(json_object_get(ret, "pid")), 42);
        json_decref(ret);
        qmp_free(q); /* closes fd */
        agent_finish(&a, -1);
}

static void test_agent_wrong_sync(void **state) {
        Agent a;
        int fd = agent_start(&a, AGENT_WRONG);
        Qmp *q = NULL;
        assert_err(qmp_agent_new_from_fd(fd, 2000, &q), -EPROTO, "wrong value");
        assert_null(q);
        agent_finish(&a, fd);
}

static void test_agent_stale_sync(void **state) {
        Agent a;
        int fd = agent_start(&a, AGENT_STALE);
        Qmp *q = NULL;
        /* the first delimited answer is an earlier client's: asked again, then ours */
        assert_int_equal(qmp_agent_new_from_fd(fd, 2000, &q), 0);
        json_t *ret = NULL;
        assert_int_equal(qmp_execute(q, "guest-exec", json_pack("{s:s}", "path", "/bin/true"), 2000, &ret), 0);
        assert_int_equal(json_integer_value(json_object_get(ret, "pid")), 42);
        json_decref(ret);
        qmp_free(q);
        agent_finish(&a, -1);
}

static void test_agent_silent(void **state) {
        Agent a;
        int fd = agent_start(&a, AGENT_SILENT);
        Qmp *q = NULL;
        assert_err(qmp_agent_new_from_fd(fd, 200, &q), -ETIMEDOUT, "qemu-guest-agent running");
        assert_null(q);
        agent_finish(&a, fd);
}

/* ---- real QEMU ---- */

static pid_t qemu_pid = -1;
static char qemu_dir[64];

static bool find_in_path(const char *name) {
        const char *path = getenv("PATH");
        if (!path)
                return false;
        _cleanup_free_ char *copy = strdup(path);
        char *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                _cleanup_free_ char *p = path_join(d, name);
                if (p && access(p, X_OK) == 0)
                        return true;
        }
        return false;
}

static int qemu_teardown(void **state) {
        if (qemu_pid > 0) {
                kill(qemu_pid, SIGKILL);
                waitpid(qemu_pid, NULL, 0);
                qemu_pid = -1;
        }
        if (qemu_dir[0]) {
                rm_rf(qemu_dir);
                qemu_dir[0] = 0;
        }
        return 0;
}

static void test_real_qemu(void **state) {
        if (!find_in_path("qemu-system-x86_64")) {
                printf("SKIP qemu-system-x86_64 is not installed\n");
                skip();
        }
        strcpy(qemu_dir, "/tmp/roam-test-qemu-XXXXXX");
        assert_non_null(mkdtemp(qemu_dir));
        _cleanup_free_ char *sock = path_join(qemu_dir, "qmp.sock");
        _cleanup_free_ char *log = path_join(qemu_dir, "qemu.log");
        _cleanup_free_ char *qmp_arg = NULL;
        assert_true(asprintf(&qmp_arg, "unix:%s,server=on,wait=off", sock) > 0);
        char *argv[] = {
                "qemu-system-x86_64", "-M", "pc-q35-7.2", "-accel", "tcg", "-cpu", "qemu64",
                "-m", "64", "-nodefaults", "-nographic", "-S", "-qmp", qmp_arg, NULL,
        };
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        assert_int_equal(posix_spawnp(&qemu_pid, argv[0], &fa, NULL, argv, environ), 0);
        posix_spawn_file_actions_destroy(&fa);

        Qmp *q = NULL;
        int r = qmp_connect(sock, 20000, &q);
        if (r < 0)
                fail_msg("connect to qemu failed: %s", err_message(r));
        qmp_set_timeout(q, 20000);
        json_t *ver = json_object_get(json_object_get(qmp_greeting(q), "version"), "qemu");
        assert_true(json_integer_value(json_object_get(ver, "major")) >= 7);

        char *status = NULL;
        assert_int_equal(qmp_query_status(q, &status), 0);
        assert_true(!strcmp(status, "prelaunch") || !strcmp(status, "paused"));
        free(status);

        json_t *ret = NULL;
        assert_int_equal(qmp_execute(q, "query-version", NULL, 20000, &ret), 0);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(ret, "qemu"), "major")),
                         json_integer_value(json_object_get(ver, "major")));
        json_decref(ret);

        err_clear();
        assert_err(qmp_execute(q, "no-such-command", NULL, 20000, NULL), -EIO,
                   "qemu refused 'no-such-command': The command no-such-command has not been found");

        assert_int_equal(qmp_cont(q), 0);
        assert_int_equal(qmp_wait_event(q, "RESUME", 20000, NULL), 0);
        assert_int_equal(qmp_query_status(q, &status), 0);
        assert_string_equal(status, "running");
        free(status);

        assert_int_equal(qmp_stop(q), 0);
        assert_int_equal(qmp_wait_event(q, "STOP", 20000, NULL), 0);
        assert_int_equal(qmp_query_status(q, &status), 0);
        assert_string_equal(status, "paused");
        free(status);

        /* checkpoint to a file handed to QEMU, as the session code does */
        _cleanup_free_ char *state_file = path_join(qemu_dir, "dev.state");
        assert_int_equal(qmp_set_migrate_capability(q, "x-ignore-shared", true), 0);
        assert_err(qmp_set_migrate_capability(q, "no-such-capability", true), -EIO,
                   "qemu refused 'migrate-set-capabilities'");
        assert_int_equal(qmp_set_migrate_parameter(q, "max-bandwidth", INT64_C(64) << 30), 0);
        assert_err(qmp_set_migrate_parameter(q, "no-such-parameter", 1), -EIO, "qemu refused 'migrate-set-parameters'");
        int sfd = open(state_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(sfd >= 0);
        assert_int_equal(qmp_send_fd(q, sfd, "dev"), 0);
        close(sfd);
        assert_err(qmp_migrate(q, "fd:no-such-fd"), -EIO, "qemu refused 'migrate'");
        assert_int_equal(qmp_migrate(q, "fd:dev"), 0);
        json_t *info = NULL;
        r = qmp_wait_migration(q, 20000, &info);
        if (r < 0)
                fail_msg("migration failed: %s", err_message(r));
        assert_string_equal(json_string_value(json_object_get(info, "status")), "completed");
        json_decref(info);
        struct stat st;
        assert_int_equal(stat(state_file, &st), 0);
        assert_true(st.st_size > 0);
        assert_int_equal(qmp_query_status(q, &status), 0);
        assert_string_equal(status, "postmigrate");
        free(status);

        assert_int_equal(qmp_quit(q), 0);
        qmp_free(q);

        int wstatus = 0;
        for (int i = 0; i < 2000; i++) {
                pid_t w = waitpid(qemu_pid, &wstatus, WNOHANG);
                assert_true(w >= 0);
                if (w == qemu_pid) {
                        qemu_pid = -1;
                        break;
                }
                msleep(10);
        }
        if (qemu_pid > 0)
                fail_msg("qemu did not exit after quit");
        assert_true(WIFEXITED(wstatus));
        assert_int_equal(WEXITSTATUS(wstatus), 0);
}

int main(void) {
        /* SIGPIPE is left at its default on purpose: the library must not raise it */
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_handshake),
                cmocka_unit_test(test_handshake_no_greeting),
                cmocka_unit_test(test_handshake_refused),
                cmocka_unit_test(test_handshake_timeout),
                cmocka_unit_test(test_handshake_eof),
                cmocka_unit_test(test_events_between_replies),
                cmocka_unit_test(test_execute_args_and_return),
                cmocka_unit_test(test_error_reply),
                cmocka_unit_test(test_overlong_line),
                cmocka_unit_test(test_overlong_line_complete),
                cmocka_unit_test(test_long_line_within_bound),
                cmocka_unit_test(test_bad_messages),
                cmocka_unit_test(test_close_mid_reply),
                cmocka_unit_test(test_timeout_then_late_reply),
                cmocka_unit_test(test_event_queue_bound),
                cmocka_unit_test(test_free_with_queued_events),
                cmocka_unit_test(test_wait_event),
                cmocka_unit_test(test_helpers),
                cmocka_unit_test(test_send_fd),
                cmocka_unit_test(test_migration_failed),
                cmocka_unit_test(test_quit_without_reply),
                cmocka_unit_test(test_send_to_closed_peer),
                cmocka_unit_test(test_connect_unix),
                cmocka_unit_test(test_agent_sync),
                cmocka_unit_test(test_agent_wrong_sync),
                cmocka_unit_test(test_agent_stale_sync),
                cmocka_unit_test(test_agent_silent),
                cmocka_unit_test_teardown(test_real_qemu, qemu_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
