/* SPDX-License-Identifier: MIT */
#include "agent.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"

#define EXEC_POLL_MIN_MS 20
#define EXEC_POLL_MAX_MS 250

/* One client at a time across processes (a daemon's liveness check and a
 * command-line exec): the agent would hand one client's answer to the
 * other, or see their bytes interleaved. SOCKET.lock, held while
 * connected, waited for within the deadline. */
static int agent_lock(const char *socket, uint64_t deadline, int *ret_fd) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s.lock", socket) < 0)
                return -ENOMEM;
        _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
                return err_set(-errno, "no guest agent: cannot open '%s': %s", path, strerror(errno));
        while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK)
                        return err_set(-errno, "no guest agent: cannot lock '%s': %s", path, strerror(errno));
                if (now_ns() >= deadline)
                        return err_set(-ETIMEDOUT, "the guest agent is busy with another client (%s)", path);
                poll(NULL, 0, 10);
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int guest_agent_open(const char *socket, int timeout_ms, Qmp **ret) {
        uint64_t t0 = now_ns(), deadline = t0 + (uint64_t) timeout_ms * 1000000;
        int lock = -1;
        int r = agent_lock(socket, deadline, &lock);
        if (r < 0)
                return r;
        int left = timeout_ms - (int) ((now_ns() - t0) / 1000000);
        r = qmp_agent_connect(socket, left > 0 ? left : 1, ret);
        if (r < 0) {
                close(lock);
                if (r == -ETIMEDOUT) /* the whole wait, the lock's included */
                        return err_set(r, "the guest agent did not answer within %d ms (is qemu-guest-agent "
                                       "running in the guest?)", timeout_ms);
                return err_set_if_none(r, "no guest agent: %s", strerror(-r));
        }
        qmp_hold_fd(*ret, lock);
        return 0;
}

int guest_agent_ping(const char *socket, int timeout_ms, uint64_t *ret_ms) {
        uint64_t t0 = now_ns();
        _cleanup_(qmp_freep) Qmp *q = NULL;
        int r = guest_agent_open(socket, timeout_ms, &q);
        if (r < 0)
                return r;
        int left = timeout_ms - (int) ((now_ns() - t0) / 1000000);
        r = qmp_execute(q, "guest-ping", NULL, left > 0 ? left : 1, NULL);
        if (r == -ETIMEDOUT)
                return err_set(r, "the guest agent did not answer guest-ping within %d ms", timeout_ms);
        if (r < 0)
                return r;
        if (ret_ms)
                *ret_ms = (now_ns() - t0) / 1000000;
        return 0;
}

void guest_exec_result_done(GuestExecResult *r) {
        free(r->out);
        free(r->err);
        *r = (GuestExecResult) {};
}

/* Standard base64 (the agent's out-data, err-data) into a NUL-terminated
 * buffer; an absent member is empty output. */
static int decode_b64(json_t *v, char **ret, size_t *ret_len) {
        if (v && !json_is_string(v))
                return err_set(-EBADMSG, "the guest agent sent malformed output (not a string)");
        const char *s = json_string_value(v);
        size_t n = s ? strlen(s) : 0;
        if (n % 4 != 0 || n > INT32_MAX)
                return err_set(-EBADMSG, "the guest agent sent malformed base64 output");
        char *out = malloc(n / 4 * 3 + 1);
        if (!out)
                return -ENOMEM;
        int k = n ? EVP_DecodeBlock((unsigned char *) out, (const unsigned char *) s, (int) n) : 0;
        if (k < 0) {
                free(out);
                return err_set(-EBADMSG, "the guest agent sent malformed base64 output");
        }
        /* EVP_DecodeBlock counts the padding as zero bytes */
        for (size_t i = n; i > 0 && s[i - 1] == '=' && k > 0; i--)
                k--;
        out[k] = 0;
        *ret = out;
        *ret_len = (size_t) k;
        return 0;
}

json_t *guest_exec_args(const GuestExec *e) {
        if (!e || !e->argv || !e->argv[0] || !*e->argv[0] || (e->user && !name_is_valid(e->user)))
                return NULL;
        _cleanup_(json_decrefp) json_t *args = json_array();
        if (!args)
                return NULL;
        const char *path = e->argv[0];
        bool ok = true;
        if (e->user) {
                /* the user's desktop environment: runuser keeps the agent's
                 * environment, so the variables a desktop program wants are set */
                path = "/usr/sbin/runuser";
                char home[128], env_user[128];
                snprintf(home, sizeof home, "HOME=/home/%s", e->user);
                snprintf(env_user, sizeof env_user, "USER=%s", e->user);
                const char *pre[] = { "-u", e->user, "--", "env", "DISPLAY=:0", home, env_user,
                                      "XDG_RUNTIME_DIR=/run/user/1000" };
                for (size_t i = 0; i < ELEMENTSOF(pre); i++)
                        ok = ok && json_array_append_new(args, json_string(pre[i])) == 0;
                ok = ok && json_array_append_new(args, json_string(e->argv[0])) == 0;
        }
        size_t n = 1;
        for (; e->argv[n]; n++) {
                if (n >= GUEST_EXEC_ARGS_MAX)
                        return NULL;
                ok = ok && json_array_append_new(args, json_string(e->argv[n])) == 0;
        }
        if (!ok)
                return NULL;
        return json_pack("{s:s, s:O, s:b}", "path", path, "arg", args, "capture-output", 1);
}

/* The exit of a finished command from a guest-exec-status answer. */
static int exec_result(json_t *st, GuestExecResult *ret) {
        json_t *code = json_object_get(st, "exitcode"), *sig = json_object_get(st, "signal");
        GuestExecResult res = {
                .exit_code = json_is_integer(code) ? (int) json_integer_value(code)
                             : json_is_integer(sig) ? 128 + (int) json_integer_value(sig)
                                                    : 255,
                .signaled = !json_is_integer(code) && json_is_integer(sig),
                .truncated = json_is_true(json_object_get(st, "out-truncated")) ||
                             json_is_true(json_object_get(st, "err-truncated")),
        };
        int r = decode_b64(json_object_get(st, "out-data"), &res.out, &res.out_len);
        if (r >= 0)
                r = decode_b64(json_object_get(st, "err-data"), &res.err, &res.err_len);
        if (r < 0) {
                guest_exec_result_done(&res);
                return r;
        }
        *ret = res;
        return 0;
}

int guest_exec(Qmp *q, const GuestExec *e, GuestExecResult *ret) {
        *ret = (GuestExecResult) {};
        if (!e->argv || !e->argv[0] || !*e->argv[0])
                return err_set(-EINVAL, "no command to run in the guest");
        if (e->user && !name_is_valid(e->user))
                return err_set(-EINVAL, "user name '%s' is invalid (use " NAME_RULE ")", e->user);
        json_t *args = guest_exec_args(e);
        if (!args)
                return err_set(-EINVAL, "the command has more than %d arguments", GUEST_EXEC_ARGS_MAX);
        _cleanup_(json_decrefp) json_t *started = NULL;
        int r = qmp_execute(q, "guest-exec", args, GUEST_AGENT_COMMAND_MS, &started);
        if (r < 0)
                return err_set_if_none(r, "guest-exec failed: %s", strerror(-r));
        json_t *pid = json_object_get(started, "pid");
        if (!json_is_integer(pid))
                return err_set(-EPROTO, "the guest agent's guest-exec answer has no pid");
        unsigned timeout_s = e->timeout_s > 0 ? e->timeout_s : GUEST_EXEC_TIMEOUT_S_DEFAULT;
        uint64_t deadline = now_ns() + (uint64_t) timeout_s * 1000000000ull;
        int wait_ms = EXEC_POLL_MIN_MS;
        for (;;) {
                _cleanup_(json_decrefp) json_t *st = NULL;
                r = qmp_execute(q, "guest-exec-status", json_pack("{s:O}", "pid", pid), GUEST_AGENT_COMMAND_MS, &st);
                if (r < 0)
                        return err_set_if_none(r, "guest-exec-status failed: %s", strerror(-r));
                if (json_is_true(json_object_get(st, "exited")))
                        return exec_result(st, ret);
                if (now_ns() >= deadline)
                        return err_set(-ETIMEDOUT, "the command did not finish within %u s (it still runs in the "
                                                   "guest as pid %lld)",
                                       timeout_s, (long long) json_integer_value(pid));
                poll(NULL, 0, wait_ms);
                wait_ms = MIN(wait_ms * 2, EXEC_POLL_MAX_MS);
        }
}

int guest_shutdown(Qmp *q) {
        int r = qmp_execute(q, "guest-shutdown", json_pack("{s:s}", "mode", "powerdown"), GUEST_AGENT_COMMAND_MS,
                            NULL);
        /* no answer is the normal case: the agent is going down with the guest */
        if (r == -ETIMEDOUT || r == -ECONNRESET || r >= 0) {
                err_clear();
                return 0;
        }
        return err_set_if_none(r, "guest-shutdown failed: %s", strerror(-r));
}
