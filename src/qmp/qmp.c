/* SPDX-License-Identifier: MIT */
#include "qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"

#define READ_CHUNK (64u * 1024)
#define CONNECT_RETRY_MS 10
#define MIGRATION_POLL_MIN_MS 1
#define MIGRATION_POLL_MAX_MS 100
#define MIGRATION_POLL_FINE_MS 250
#define NO_DEADLINE UINT64_MAX

/* What pump() consumed. */
enum {
        MSG_OTHER,
        MSG_EVENT,
        MSG_REPLY,
};

struct Qmp {
        int fd;
        int timeout_ms;
        int64_t last_id;
        json_t *greeting;

        /* Input buffer: buf[start, len) is unconsumed; buf[start, scan) is
         * known to hold no '\n'. */
        char *buf;
        size_t start, scan, len, cap;
        bool skipping; /* dropping the rest of an overlong line */
        bool to_delim; /* guest agent: dropping everything up to the next 0xff */
        bool agent;    /* a guest agent: its id-less errors answer stray bytes, not us */
        int hold_fd;   /* > 0: closed with the connection (qmp_hold_fd()) */

        /* Why the connection is unusable; NULL while it is fine. */
        const char *dead;

        /* Event ring: count events from head. */
        json_t *events[QMP_EVENT_QUEUE_MAX];
        size_t head, count;
        uint64_t dropped;
};

/* jansson's own json_decrefp() (NULL-safe) */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* ---- time ---- */

static uint64_t deadline_from(int timeout_ms) {
        if (timeout_ms < 0)
                return NO_DEADLINE;
        return now_ns() + (uint64_t) timeout_ms * 1000000u;
}

static uint64_t deadline_min(uint64_t a, uint64_t b) {
        return a < b ? a : b;
}

/* Milliseconds to deadline for poll(): -1 for none, 0 once it has passed. */
static int remaining_ms(uint64_t deadline) {
        if (deadline == NO_DEADLINE)
                return -1;
        uint64_t now = now_ns();
        if (now >= deadline)
                return 0;
        uint64_t ms = DIV_ROUND_UP(deadline - now, 1000000u);
        return ms > INT_MAX ? INT_MAX : (int) ms;
}

/* Waits for events on fd; 0 when ready, -ETIMEDOUT, or a negative errno. */
static int wait_fd(int fd, short events, uint64_t deadline) {
        for (;;) {
                struct pollfd p = { .fd = fd, .events = events };
                int r = poll(&p, 1, remaining_ms(deadline));
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        return -ETIMEDOUT;
                return 0;
        }
}

/* ---- parsing ---- */

/* Counts bracket nesting outside of strings; does not validate anything else
 * (jansson does), so malformed input only has to be bounded here. */
static bool depth_ok(const char *s, size_t n, unsigned max) {
        unsigned depth = 0;
        bool in_string = false, escaped = false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (in_string) {
                        if (escaped)
                                escaped = false;
                        else if (c == '\\')
                                escaped = true;
                        else if (c == '"')
                                in_string = false;
                        continue;
                }
                if (c == '"')
                        in_string = true;
                else if (c == '{' || c == '[') {
                        if (++depth > max)
                                return false;
                } else if ((c == '}' || c == ']') && depth > 0)
                        depth--;
        }
        return true;
}

int qmp_parse_message(const char *line, size_t len, json_t **ret) {
        if ((!line && len > 0) || !ret)
                return -EINVAL;
        if (len > 0 && line[len - 1] == '\r')
                len--;
        if (len > QMP_LINE_MAX)
                return err_set(-EBADMSG, "qmp message too long (more than %u bytes)", QMP_LINE_MAX);
        if (!depth_ok(line, len, QMP_DEPTH_MAX))
                return err_set(-EBADMSG, "qmp message nested too deeply (more than %d levels)",
                               QMP_DEPTH_MAX);

        json_error_t e;
        json_t *j = json_loadb(line ? line : "", len, 0, &e);
        if (!j) {
                if (json_error_code(&e) == json_error_out_of_memory)
                        return -ENOMEM;
                return err_set(-EBADMSG, "malformed qmp message: %s", e.text);
        }
        if (!json_is_object(j)) {
                json_decref(j);
                return err_set(-EBADMSG, "qmp message is not a json object");
        }
        *ret = j;
        return 0;
}

/* ---- connection I/O ---- */

static int mark_dead(Qmp *q, const char *why) {
        q->dead = why;
        return err_set(-ECONNRESET, "%s", why);
}

static int check_alive(Qmp *q) {
        if (q->dead)
                return err_set(-ECONNRESET, "%s", q->dead);
        return 0;
}

/* Makes room for READ_CHUNK more bytes after buf[len). */
static int make_room(Qmp *q) {
        if (q->start > 0) {
                memmove(q->buf, q->buf + q->start, q->len - q->start);
                q->len -= q->start;
                q->scan -= q->start;
                q->start = 0;
        }
        if (q->cap - q->len >= READ_CHUNK)
                return 0;
        size_t cap = MAX(q->cap * 2, (size_t) 4096);
        while (cap - q->len < READ_CHUNK)
                cap *= 2;
        char *b = realloc(q->buf, cap);
        if (!b)
                return -ENOMEM;
        q->buf = b;
        q->cap = cap;
        return 0;
}

/* Reads the next message line and parses it. *ret is owned by the caller. */
static int read_message(Qmp *q, uint64_t deadline, json_t **ret) {
        int r = check_alive(q);
        if (r < 0)
                return r;
        for (;;) {
                if (q->to_delim && q->buf) {
                        /* a stale answer before the agent's sync delimiter is dropped */
                        char *d = memchr(q->buf + q->start, 0xff, q->len - q->start);
                        if (d) {
                                q->to_delim = false;
                                q->start = q->scan = (size_t) (d - q->buf) + 1;
                        } else
                                q->start = q->scan = q->len;
                }
                /* no buffer yet: nothing to scan (memchr on NULL is undefined) */
                char *nl = q->buf && !q->to_delim ? memchr(q->buf + q->scan, '\n', q->len - q->scan) : NULL;
                if (nl) {
                        const char *line = q->buf + q->start;
                        size_t n = (size_t) (nl - line);
                        q->start = q->scan = (size_t) (nl - q->buf) + 1;
                        if (q->skipping) {
                                q->skipping = false;
                                continue;
                        }
                        if (q->agent) {
                                /* a 0xff only ever starts a fresh answer of the agent's:
                                 * what comes before it on the line is a former client's */
                                const char *ff = memrchr(line, 0xff, n);
                                if (ff) {
                                        n -= (size_t) (ff + 1 - line);
                                        line = ff + 1;
                                }
                        }
                        if (n == 0 || (n == 1 && line[0] == '\r'))
                                continue;
                        r = qmp_parse_message(line, n, ret);
                        if (r == -EBADMSG && q->agent) {
                                err_clear(); /* the rest of a line a former client left: not ours */
                                continue;
                        }
                        return r;
                }
                q->scan = q->len;

                if (q->skipping)
                        q->start = q->scan = q->len = 0;
                else if (q->len - q->start > QMP_LINE_MAX + 1) { /* line + "\r" */
                        q->skipping = true;
                        q->start = q->scan = q->len = 0;
                        return err_set(-EBADMSG, "qmp message too long (more than %u bytes)",
                                       QMP_LINE_MAX);
                }

                r = make_room(q);
                if (r < 0)
                        return r;
                /* at most one chunk: the buffer stays below QMP_LINE_MAX + 2 + READ_CHUNK */
                ssize_t k = read(q->fd, q->buf + q->len, MIN(q->cap - q->len, (size_t) READ_CHUNK));
                if (k > 0) {
                        q->len += (size_t) k;
                        continue;
                }
                if (k == 0)
                        return mark_dead(q, "qemu closed the qmp connection");
                if (errno == EINTR)
                        continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                        r = wait_fd(q->fd, POLLIN, deadline);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (errno == ECONNRESET)
                        return mark_dead(q, "qemu closed the qmp connection");
                r = -errno;
                q->dead = "the qmp connection failed";
                return err_set(r, "reading from the qmp socket failed: %s", strerror(-r));
        }
}

/* Sends msg; fd >= 0 goes along with its first bytes (SCM_RIGHTS), where QEMU
 * takes it for the command they start ("getfd"). */
static int send_message_fd(Qmp *q, const json_t *msg, int fd, uint64_t deadline) {
        int r = check_alive(q);
        if (r < 0)
                return r;
        _cleanup_free_ char *s = json_dumps(msg, JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        size_t n = strlen(s);
        char *t = realloc(s, n + 2);
        if (!t)
                return -ENOMEM;
        s = t;
        s[n++] = '\n';
        s[n] = 0;

        size_t done = 0;
        while (done < n) {
                ssize_t k;
                if (fd >= 0 && done == 0) {
                        union {
                                struct cmsghdr h;
                                char buf[CMSG_SPACE(sizeof(int))];
                        } c = {};
                        struct iovec iov = { .iov_base = s, .iov_len = n };
                        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
                                             .msg_controllen = sizeof c.buf };
                        struct cmsghdr *ch = CMSG_FIRSTHDR(&mh);
                        ch->cmsg_level = SOL_SOCKET;
                        ch->cmsg_type = SCM_RIGHTS;
                        ch->cmsg_len = CMSG_LEN(sizeof(int));
                        memcpy(CMSG_DATA(ch), &fd, sizeof(int));
                        k = sendmsg(q->fd, &mh, MSG_NOSIGNAL);
                } else
                        k = send(q->fd, s + done, n - done, MSG_NOSIGNAL);
                if (k >= 0) {
                        done += (size_t) k;
                        continue;
                }
                if (errno == EINTR)
                        continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                        r = wait_fd(q->fd, POLLOUT, deadline);
                        if (r == -ETIMEDOUT && done > 0) {
                                /* QEMU would read the rest as the next message */
                                q->dead = "the qmp connection broke off in the middle of a command";
                                return err_set(r, "%s", q->dead);
                        }
                        if (r == -ETIMEDOUT)
                                return err_set(r, "qemu does not read its qmp socket");
                        if (r < 0)
                                return r;
                        continue;
                }
                if (errno == EPIPE || errno == ECONNRESET)
                        return mark_dead(q, "qemu closed the qmp connection");
                r = -errno;
                q->dead = "the qmp connection failed";
                return err_set(r, "writing to the qmp socket failed: %s", strerror(-r));
        }
        return 0;
}

/* ---- event queue ---- */

static const char *event_name(const json_t *msg) {
        return json_string_value(json_object_get(msg, "event"));
}

static json_t **event_slot(Qmp *q, size_t i) {
        return &q->events[(q->head + i) % QMP_EVENT_QUEUE_MAX];
}

static void event_push(Qmp *q, json_t *ev) {
        if (q->count == QMP_EVENT_QUEUE_MAX) {
                json_decref(q->events[q->head]);
                q->head = (q->head + 1) % QMP_EVENT_QUEUE_MAX;
                q->count--;
                q->dropped++;
        }
        *event_slot(q, q->count) = ev;
        q->count++;
}

/* Removes the i-th queued event (0 = oldest) and returns it. */
static json_t *event_take(Qmp *q, size_t i) {
        json_t *ev = *event_slot(q, i);
        for (size_t j = i; j + 1 < q->count; j++)
                *event_slot(q, j) = *event_slot(q, j + 1);
        q->count--;
        if (q->count == 0)
                q->head = 0;
        return ev;
}

/* Reads and dispatches one message: events are queued; the reply to want_id
 * (0 = none expected) goes to *ret_reply; anything else is dropped. Returns
 * MSG_* or a negative errno. */
static int pump(Qmp *q, uint64_t deadline, int64_t want_id, json_t **ret_reply) {
        json_t *msg;
        int r = read_message(q, deadline, &msg);
        if (r < 0)
                return r;
        if (event_name(msg)) {
                event_push(q, msg);
                return MSG_EVENT;
        }
        bool is_error = json_object_get(msg, "error");
        if (want_id > 0 && (is_error || json_object_get(msg, "return"))) {
                json_t *id = json_object_get(msg, "id");
                /* an error without id: QEMU could not parse our request. Not so
                 * for the guest agent: the 0xff that resets its parser (ours, or
                 * a former client's) is answered with such an error ("JSON
                 * parse error, stray '\xff'"), which is nobody's answer */
                if ((json_is_integer(id) && json_integer_value(id) == want_id) || (!id && is_error && !q->agent)) {
                        *ret_reply = msg;
                        return MSG_REPLY;
                }
        }
        json_decref(msg); /* unknown id, late reply, greeting, unknown kind */
        return MSG_OTHER;
}

/* ---- commands ---- */

static int execute_until_fd(Qmp *q, const char *command, json_t *args, int fd, uint64_t deadline,
                            json_t **ret_return) {
        _cleanup_json_ json_t *a = args;
        if (!q || !command)
                return -EINVAL;
        if (a && !json_is_object(a))
                return err_set(-EINVAL, "arguments of qmp command '%s' are not a json object", command);
        int r = check_alive(q);
        if (r < 0)
                return r;

        int64_t id = ++q->last_id;
        _cleanup_json_ json_t *msg = json_pack("{s:s, s:I}", "execute", command, "id", (json_int_t) id);
        if (!msg)
                return -ENOMEM;
        if (a && json_object_set_new(msg, "arguments", TAKE_PTR(a)) < 0)
                return -ENOMEM;
        uint64_t start = now_ns();
        r = send_message_fd(q, msg, fd, deadline);
        if (r < 0)
                return r;

        _cleanup_json_ json_t *reply = NULL;
        for (;;) {
                r = pump(q, deadline, id, &reply);
                if (r == -ETIMEDOUT)
                        return err_set(r, "qemu did not answer '%s' within %llu ms", command,
                                       (unsigned long long) ((now_ns() - start) / 1000000u));
                if (r < 0)
                        return r;
                if (r == MSG_REPLY)
                        break;
        }

        json_t *err = json_object_get(reply, "error");
        if (err) {
                const char *desc = json_string_value(json_object_get(err, "desc"));
                return err_set(-EIO, "qemu refused '%s': %s", command, desc ? desc : "no reason given");
        }
        if (ret_return)
                *ret_return = json_incref(json_object_get(reply, "return"));
        return 0;
}

static int execute_until(Qmp *q, const char *command, json_t *args, uint64_t deadline,
                         json_t **ret_return) {
        return execute_until_fd(q, command, args, -1, deadline, ret_return);
}

int qmp_execute(Qmp *q, const char *command, json_t *args, int timeout_ms, json_t **ret_return) {
        return execute_until(q, command, args, deadline_from(timeout_ms), ret_return);
}

int qmp_send_fd(Qmp *q, int fd, const char *name) {
        if (!q || fd < 0 || !name)
                return -EINVAL;
        json_t *args = json_pack("{s:s}", "fdname", name);
        if (!args)
                return -ENOMEM;
        return execute_until_fd(q, "getfd", args, fd, deadline_from(q->timeout_ms), NULL);
}

static int execute_simple(Qmp *q, const char *command, json_t *args) {
        return qmp_execute(q, command, args, q->timeout_ms, NULL);
}

/* ---- connection setup ---- */

static int handshake(Qmp *q, int timeout_ms) {
        uint64_t deadline = deadline_from(timeout_ms);
        _cleanup_json_ json_t *msg = NULL;
        int r = read_message(q, deadline, &msg);
        if (r == -ETIMEDOUT)
                return err_set(r, "qemu sent no qmp greeting within %d ms (is another client connected?)",
                               timeout_ms);
        if (r < 0)
                return r;
        json_t *g = json_object_get(msg, "QMP");
        if (!json_is_object(g))
                return err_set(-EPROTO, "qemu did not start with a qmp greeting");
        q->greeting = json_incref(g);
        return execute_until(q, "qmp_capabilities", NULL, deadline, NULL);
}

int qmp_new_from_fd(int fd, int timeout_ms, Qmp **ret) {
        if (fd < 0 || !ret)
                return -EINVAL;
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;

        _cleanup_(qmp_freep) Qmp *q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        q->fd = fd;
        q->timeout_ms = QMP_TIMEOUT_DEFAULT_MS;
        int r = handshake(q, timeout_ms);
        if (r < 0) {
                q->fd = -1; /* still the caller's */
                return r;
        }
        *ret = TAKE_PTR(q);
        return 0;
}

/* The guest agent's handshake (QEMU's docs/interop/qemu-ga.rst): a 0xff byte
 * resets the agent's JSON parser; guest-sync-delimited {id: N} is answered
 * with 0xff and {"return": N}, so whatever a former client left unread is
 * told apart from the answer. */
#define AGENT_SYNC_TRIES 3

static int agent_sync(Qmp *q, int timeout_ms) {
        uint64_t deadline = deadline_from(timeout_ms);
        /* a client that gave up in the middle of its sync (a timeout) leaves
         * its delimited answer behind, with an id that may equal ours: an
         * answer with another value is that one, and we ask again */
        for (int attempt = 0; attempt < AGENT_SYNC_TRIES; attempt++) {
                uint32_t nonce;
                if (getrandom(&nonce, sizeof nonce, 0) != (ssize_t) sizeof nonce)
                        return -EIO;
                nonce &= 0x3fffffff;
                if (send(q->fd, "\xff", 1, MSG_NOSIGNAL) != 1)
                        return err_set(-errno, "cannot write to the guest agent's socket: %s", strerror(errno));
                q->to_delim = true;
                _cleanup_json_ json_t *ret = NULL;
                int r = execute_until(q, "guest-sync-delimited", json_pack("{s:I}", "id", (json_int_t) nonce),
                                      deadline, &ret);
                if (r == -ETIMEDOUT)
                        return err_set(r, "the guest agent did not answer within %d ms (is qemu-guest-agent running "
                                       "in the guest?)",
                                       timeout_ms);
                if (r < 0)
                        return r;
                if (json_is_integer(ret) && json_integer_value(ret) == (json_int_t) nonce)
                        return 0;
        }
        return err_set(-EPROTO, "the guest agent answered its sync with a wrong value %d times", AGENT_SYNC_TRIES);
}

int qmp_agent_new_from_fd(int fd, int timeout_ms, Qmp **ret) {
        if (fd < 0 || !ret)
                return -EINVAL;
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        _cleanup_(qmp_freep) Qmp *q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        q->fd = fd;
        q->timeout_ms = QMP_TIMEOUT_DEFAULT_MS;
        q->agent = true;
        int r = agent_sync(q, timeout_ms);
        if (r < 0) {
                q->fd = -1; /* still the caller's */
                return r;
        }
        *ret = TAKE_PTR(q);
        return 0;
}

/* Connects to a unix socket, retrying while it does not exist yet or
 * refuses (QEMU may still be starting) until deadline. */
static int connect_unix(const char *path, const char *what, uint64_t deadline, int timeout_ms, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof sa.sun_path)
                return err_set(-ENAMETOOLONG, "%s socket path '%s' is too long (at most %zu bytes)", what, path,
                               sizeof sa.sun_path - 1);
        strcpy(sa.sun_path, path);
        for (;;) {
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd < 0)
                        return -errno;
                if (connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0) {
                        *ret_fd = fd;
                        return 0;
                }
                int r = -errno;
                close(fd);
                if (r != -ENOENT && r != -ECONNREFUSED && r != -EAGAIN && r != -EINTR)
                        return err_set(r, "cannot connect to %s socket '%s': %s", what, path, strerror(-r));
                int left = remaining_ms(deadline);
                if (left == 0)
                        return err_set(r, "cannot connect to %s socket '%s' within %d ms: %s", what, path,
                                       timeout_ms, strerror(-r));
                poll(NULL, 0, left < 0 ? CONNECT_RETRY_MS : MIN(left, CONNECT_RETRY_MS));
        }
}

static int connect_with(const char *path, const char *what, int timeout_ms, int (*setup)(int, int, Qmp **),
                        Qmp **ret) {
        if (!path || !ret)
                return -EINVAL;
        uint64_t deadline = deadline_from(timeout_ms);
        _cleanup_close_ int fd = -1;
        int r = connect_unix(path, what, deadline, timeout_ms, &fd);
        if (r < 0)
                return r;
        Qmp *q;
        r = setup(fd, remaining_ms(deadline), &q);
        if (r < 0)
                return r;
        TAKE_FD(fd);
        *ret = q;
        return 0;
}

int qmp_connect(const char *path, int timeout_ms, Qmp **ret) {
        return connect_with(path, "qmp", timeout_ms, qmp_new_from_fd, ret);
}

int qmp_agent_connect(const char *path, int timeout_ms, Qmp **ret) {
        return connect_with(path, "guest agent", timeout_ms, qmp_agent_new_from_fd, ret);
}

void qmp_free(Qmp *q) {
        if (!q)
                return;
        while (q->count > 0)
                json_decref(event_take(q, 0));
        json_decref(q->greeting);
        free(q->buf);
        if (q->fd >= 0)
                close(q->fd);
        if (q->hold_fd > 0)
                close(q->hold_fd);
        free(q);
}

void qmp_hold_fd(Qmp *q, int fd) {
        if (q->hold_fd > 0)
                close(q->hold_fd);
        q->hold_fd = fd;
}

json_t *qmp_greeting(const Qmp *q) {
        return q->greeting;
}

void qmp_set_timeout(Qmp *q, int timeout_ms) {
        q->timeout_ms = timeout_ms;
}

uint64_t qmp_events_dropped(const Qmp *q) {
        return q->dropped;
}

/* ---- events ---- */

int qmp_next_event(Qmp *q, int timeout_ms, json_t **ret_event) {
        if (!q || !ret_event)
                return -EINVAL;
        uint64_t deadline = deadline_from(timeout_ms);
        while (q->count == 0) {
                int r = pump(q, deadline, 0, NULL);
                if (r == -ETIMEDOUT)
                        return err_set(r, "no qmp event within %d ms", timeout_ms);
                if (r < 0)
                        return r;
        }
        *ret_event = event_take(q, 0);
        return 0;
}

int qmp_wait_event(Qmp *q, const char *name, int timeout_ms, json_t **ret) {
        if (!q || !name)
                return -EINVAL;
        json_t *ev = NULL;
        for (size_t i = 0; i < q->count; i++)
                if (!strcmp(event_name(*event_slot(q, i)), name)) {
                        ev = event_take(q, i);
                        break;
                }
        uint64_t deadline = deadline_from(timeout_ms);
        while (!ev) {
                int r = pump(q, deadline, 0, NULL);
                if (r == -ETIMEDOUT)
                        return err_set(r, "qemu sent no '%s' event within %d ms", name, timeout_ms);
                if (r < 0)
                        return r;
                if (r == MSG_EVENT && !strcmp(event_name(*event_slot(q, q->count - 1)), name))
                        ev = event_take(q, q->count - 1);
        }
        if (ret)
                *ret = ev;
        else
                json_decref(ev);
        return 0;
}

/* ---- convenience helpers ---- */

int qmp_query_status(Qmp *q, char **ret_status) {
        if (!q || !ret_status)
                return -EINVAL;
        _cleanup_json_ json_t *v = NULL;
        int r = qmp_execute(q, "query-status", NULL, q->timeout_ms, &v);
        if (r < 0)
                return r;
        const char *s = json_string_value(json_object_get(v, "status"));
        if (!s)
                return err_set(-EBADMSG, "qemu's answer to 'query-status' has no status");
        char *c = strdup(s);
        if (!c)
                return -ENOMEM;
        *ret_status = c;
        return 0;
}

int qmp_set_migrate_capability(Qmp *q, const char *cap, bool on) {
        if (!q || !cap)
                return -EINVAL;
        json_t *args = json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability", cap, "state", on);
        if (!args)
                return -ENOMEM;
        return execute_simple(q, "migrate-set-capabilities", args);
}

int qmp_set_migrate_parameter(Qmp *q, const char *name, int64_t value) {
        if (!q || !name)
                return -EINVAL;
        json_t *args = json_pack("{s:I}", name, (json_int_t) value);
        if (!args)
                return -ENOMEM;
        return execute_simple(q, "migrate-set-parameters", args);
}

static int execute_with_uri(Qmp *q, const char *command, const char *uri) {
        if (!q || !uri)
                return -EINVAL;
        json_t *args = json_pack("{s:s}", "uri", uri);
        if (!args)
                return -ENOMEM;
        return execute_simple(q, command, args);
}

int qmp_migrate(Qmp *q, const char *uri) {
        return execute_with_uri(q, "migrate", uri);
}

int qmp_migrate_incoming(Qmp *q, const char *uri) {
        return execute_with_uri(q, "migrate-incoming", uri);
}

/* Reads (and queues) whatever arrives until deadline. */
static int pump_until(Qmp *q, uint64_t deadline) {
        for (;;) {
                int r = pump(q, deadline, 0, NULL);
                if (r == -ETIMEDOUT)
                        return 0;
                if (r < 0)
                        return r;
        }
}

int qmp_wait_migration(Qmp *q, int timeout_ms, json_t **ret_info) {
        if (!q)
                return -EINVAL;
        uint64_t deadline = deadline_from(timeout_ms), start = now_ns();
        unsigned interval = MIGRATION_POLL_MIN_MS;
        for (;;) {
                _cleanup_json_ json_t *info = NULL;
                /* each query gets the full command timeout, even past the deadline */
                int r = qmp_execute(q, "query-migrate", NULL, q->timeout_ms, &info);
                if (r < 0)
                        return r;
                const char *status = json_string_value(json_object_get(info, "status"));
                if (!status)
                        status = "none";
                if (!strcmp(status, "completed")) {
                        if (ret_info)
                                *ret_info = TAKE_PTR(info);
                        return 0;
                }
                if (!strcmp(status, "failed")) {
                        const char *desc = json_string_value(json_object_get(info, "error-desc"));
                        return err_set(-EIO, "migration failed: %s", desc ? desc : "no reason given");
                }
                if (!strcmp(status, "cancelled"))
                        return err_set(-ECANCELED, "migration was cancelled");
                if (remaining_ms(deadline) == 0)
                        return err_set(-ETIMEDOUT, "migration did not complete within %d ms (status '%s')",
                                       timeout_ms, status);

                r = pump_until(q, deadline_min(deadline, deadline_from((int) interval)));
                if (r < 0)
                        return r;
                /* a device state is saved in tens of ms: looked at every ms until
                 * MIGRATION_POLL_FINE_MS, so that its end is seen at once */
                if (now_ns() - start > MIGRATION_POLL_FINE_MS * 1000000ULL)
                        interval = MIN(interval * 2, (unsigned) MIGRATION_POLL_MAX_MS);
        }
}

int qmp_stop(Qmp *q) {
        return q ? execute_simple(q, "stop", NULL) : -EINVAL;
}

int qmp_cont(Qmp *q) {
        return q ? execute_simple(q, "cont", NULL) : -EINVAL;
}

int qmp_system_powerdown(Qmp *q) {
        return q ? execute_simple(q, "system_powerdown", NULL) : -EINVAL;
}

int qmp_quit(Qmp *q) {
        if (!q)
                return -EINVAL;
        int r = check_alive(q);
        if (r < 0)
                return r;
        r = execute_simple(q, "quit", NULL);
        if (r == -ECONNRESET) /* QEMU may be gone before its reply reaches us */
                return 0;
        return r;
}
