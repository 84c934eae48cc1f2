/* SPDX-License-Identifier: MIT */
#pragma once

/* A client for the QEMU Machine Protocol (docs/interop/qmp-spec.rst in QEMU).
 *
 * One Qmp object is one connection to one QEMU's QMP unix socket. Messages are
 * JSON objects, one per line ("\r\n" from QEMU, "\n" from us):
 *
 *     QEMU                                      roam
 *       | {"QMP": {"version": ..., ...}}          |   greeting
 *       | <-------- {"execute": "qmp_capabilities", "id": 1}
 *       | {"return": {}, "id": 1}                 |   now in command mode
 *       |                                          |
 *       | <-------- {"execute": "stop", "id": 2}   |   qmp_execute()
 *       | {"event": "STOP", "timestamp": ...}      |   queued (qmp_next_event)
 *       | {"return": {}, "id": 2}                  |   reply matched by id
 *
 * Replies are matched by their numeric "id"; replies with an unknown id (say,
 * the late answer to a command that timed out) are ignored. An error reply
 * without an id (QEMU could not parse the request) counts as the answer to the
 * command in flight. Asynchronous events that arrive while waiting for a reply
 * are queued (at most QMP_EVENT_QUEUE_MAX; the oldest is dropped and counted).
 * Unknown keys are ignored everywhere.
 *
 * Bounds: a message line is at most QMP_LINE_MAX bytes (-EBADMSG "qmp message
 * too long"; the rest of that line is skipped, the connection stays usable),
 * JSON nesting at most QMP_DEPTH_MAX, a message that is not a JSON object is
 * -EBADMSG. EOF is -ECONNRESET ("qemu closed the qmp connection"), and every
 * later call fails the same way.
 *
 * Timeouts are in milliseconds; a negative timeout waits forever, 0 only looks
 * at what is already there. Expiry is -ETIMEDOUT.
 *
 * Errors: negative errno; the details the user will see are recorded with
 * err_set() (src/basic/error.h). A Qmp is not thread-safe: use it from one
 * thread at a time. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QMP_LINE_MAX (1024u * 1024)      /* bytes in one message, without the line end */
#define QMP_DEPTH_MAX 64                 /* JSON nesting of one message */
#define QMP_EVENT_QUEUE_MAX 1024         /* queued events; the oldest is dropped */
#define QMP_TIMEOUT_DEFAULT_MS 10000     /* used by the convenience helpers */

typedef struct Qmp Qmp;

/* Pure message parser, applying the bounds above: len bytes of one line
 * (without its "\n"; a trailing "\r" is allowed). On success *ret is a JSON
 * object that the caller owns (json_decref). -EBADMSG with an error detail for
 * an overlong, too deeply nested, malformed or non-object message; -ENOMEM. */
int qmp_parse_message(const char *line, size_t len, json_t **ret);

/* Connects to QEMU's QMP unix socket at path and does the handshake (greeting,
 * qmp_capabilities). A socket that does not exist yet or refuses connections
 * is retried until timeout_ms has passed (QEMU may still be starting), then
 * the last error is returned (-ENOENT, -ECONNREFUSED, ...). The handshake
 * must complete within the same timeout. Caller frees *ret with qmp_free(). */
int qmp_connect(const char *path, int timeout_ms, Qmp **ret);

/* Like qmp_connect() on an already connected stream socket (tests use a
 * socketpair). On success the Qmp owns fd (it is set non-blocking and closed
 * by qmp_free()); on failure the caller still owns fd (now non-blocking). It
 * must be a stream socket (writes use send(MSG_NOSIGNAL)). Caller frees *ret with
 * qmp_free(). */
int qmp_new_from_fd(int fd, int timeout_ms, Qmp **ret);

/* The same client for QEMU's guest agent (qemu-guest-agent in the guest, on
 * a virtio-serial port whose host side is a unix socket): there is no
 * greeting; the connection starts with the agent's sync handshake (a 0xff
 * byte, then guest-sync-delimited with a random id, answered by 0xff and the
 * id), so an answer left over from an earlier client is never taken for
 * ours. An agent that does not answer within timeout_ms is -ETIMEDOUT ("is
 * qemu-guest-agent running in the guest?"). Commands then go through
 * qmp_execute(). */
int qmp_agent_new_from_fd(int fd, int timeout_ms, Qmp **ret);
int qmp_agent_connect(const char *path, int timeout_ms, Qmp **ret);

/* Closes the connection and frees queued events. Accepts NULL. */
void qmp_free(Qmp *q);
/* fd (a lock, say) is closed with q: held as long as the connection. */
void qmp_hold_fd(Qmp *q, int fd);
static inline void qmp_freep(Qmp **q) {
        if (*q)
                qmp_free(*q);
}

/* The "QMP" object of QEMU's greeting ({"version": {"qemu": {"major": 7, ...}},
 * "capabilities": [...]}). Borrowed: valid until qmp_free(). */
json_t *qmp_greeting(const Qmp *q);

/* Timeout for the convenience helpers below (default QMP_TIMEOUT_DEFAULT_MS). */
void qmp_set_timeout(Qmp *q, int timeout_ms);

/* Events dropped because the queue was full, since the connection was made. */
uint64_t qmp_events_dropped(const Qmp *q);

/* Runs command with args (a JSON object or NULL; the reference is stolen, also
 * on failure) and waits up to timeout_ms for its reply. On success, if
 * ret_return is not NULL, *ret_return is the reply's "return" value and the
 * caller owns it (json_decref). An error reply is -EIO with the detail
 * "qemu refused 'CMD': <desc>". */
int qmp_execute(Qmp *q, const char *command, json_t *args, int timeout_ms, json_t **ret_return);

/* The oldest queued event, or the next one to arrive within timeout_ms. The
 * caller owns *ret_event (json_decref): {"event": "NAME", "data": {...},
 * "timestamp": {...}}. -ETIMEDOUT when there is none. */
int qmp_next_event(Qmp *q, int timeout_ms, json_t **ret_event);

/* The oldest queued event called name, or the next one to arrive within
 * timeout_ms; other events stay queued in order. The caller owns *ret
 * (json_decref); ret may be NULL to discard it. */
int qmp_wait_event(Qmp *q, const char *name, int timeout_ms, json_t **ret);

/* Convenience helpers, each bounded by qmp_set_timeout(). */

/* query-status: "running", "paused", "prelaunch", "inmigrate", "postmigrate",
 * "shutdown", ... The caller frees *ret_status. */
int qmp_query_status(Qmp *q, char **ret_status);
/* migrate-set-capabilities with one capability ("x-ignore-shared", ...). */
int qmp_set_migrate_capability(Qmp *q, const char *cap, bool on);
/* migrate-set-parameters with one integer parameter ("max-bandwidth", ...). */
int qmp_set_migrate_parameter(Qmp *q, const char *name, int64_t value);
/* getfd {"fdname": name} with fd passed along (SCM_RIGHTS): QEMU keeps a copy
 * of fd under name, for "fd:NAME" URIs (a migration takes it and closes it
 * when done). The caller still owns fd. */
int qmp_send_fd(Qmp *q, int fd, const char *name);
/* migrate {"uri": uri} ("fd:NAME", "exec:cat > FILE", "tcp:H:P"); returns once started. */
int qmp_migrate(Qmp *q, const char *uri);
/* migrate-incoming {"uri": uri} on a QEMU started with -incoming defer. */
int qmp_migrate_incoming(Qmp *q, const char *uri);
/* Polls query-migrate until its status is "completed" (0), "failed" (-EIO,
 * detail "migration failed: <error-desc>") or "cancelled" (-ECANCELED), or
 * timeout_ms passes (-ETIMEDOUT; each query-migrate itself is bounded by
 * qmp_set_timeout(), so 0 means one look). Events that arrive meanwhile are queued. On
 * success, if ret_info is not NULL, *ret_info is the last query-migrate
 * answer (with "total-time", "ram": {...}, ...) and the caller owns it. */
int qmp_wait_migration(Qmp *q, int timeout_ms, json_t **ret_info);
int qmp_stop(Qmp *q);
int qmp_cont(Qmp *q);
int qmp_system_powerdown(Qmp *q);
/* quit: QEMU exits. A connection closed before the reply counts as success. */
int qmp_quit(Qmp *q);
