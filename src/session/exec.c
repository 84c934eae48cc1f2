/* SPDX-License-Identifier: MIT */
/* roam session exec: a command in the guest through qemu-guest-agent
 * (guest-exec, then guest-exec-status until it exits). */
#include "session-internal.h"

#include <errno.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"

#define AGENT_CONNECT_MS 5000
#define AGENT_COMMAND_MS 5000
#define EXEC_POLL_MIN_MS 20
#define EXEC_POLL_MAX_MS 250

void session_exec_result_done(SessionExecResult *r) {
        free(r->out);
        free(r->err);
        *r = (SessionExecResult) {};
}

/* Standard base64 (the agent's out-data, err-data) into a NUL-terminated buffer. */
static int decode_b64(json_t *v, char **ret, size_t *ret_len) {
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

/* The program and arguments guest-exec runs: argv as is, or, for a user,
 * through runuser with that user's desktop environment (DISPLAY=:0). */
static json_t *exec_args(const SessionExec *e) {
        json_t *args = json_array();
        if (!args)
                return NULL;
        const char *path = e->argv[0];
        if (e->user) {
                path = "/usr/sbin/runuser";
                char home[128], env_user[128];
                snprintf(home, sizeof home, "HOME=/home/%s", e->user);
                snprintf(env_user, sizeof env_user, "USER=%s", e->user);
                const char *pre[] = { "-u", e->user, "--", "env", "DISPLAY=:0", home, env_user,
                                      "XDG_RUNTIME_DIR=/run/user/1000" };
                for (size_t i = 0; i < ELEMENTSOF(pre); i++)
                        json_array_append_new(args, json_string(pre[i]));
                json_array_append_new(args, json_string(e->argv[0]));
        }
        for (size_t i = 1; e->argv[i]; i++)
                json_array_append_new(args, json_string(e->argv[i]));
        json_t *j = json_pack("{s:s, s:o, s:b}", "path", path, "arg", args, "capture-output", 1);
        return j;
}

int session_exec(SessionHost *h, const char *name, const SessionExec *e, SessionExecResult *ret) {
        *ret = (SessionExecResult) {};
        if (!e->argv || !e->argv[0] || !*e->argv[0])
                return err_set(-EINVAL, "no command to run in session '%s'", name);
        if (e->user && !name_is_valid(e->user))
                return err_set(-EINVAL, "user name '%s' is invalid (use " NAME_RULE ")", e->user);
        _cleanup_free_ char *agent = NULL;
        {
                /* the session's lock only to look: a long command must not hold off checkpoints */
                _cleanup_(op_done) Op o = {};
                int r = op_begin(h, name, false, &o);
                if (r < 0)
                        return r;
                if (o.pid <= 0)
                        return err_set(-ESRCH, "session '%s' is not running (state %s; start it with 'roam "
                                       "session start %s')",
                                       name, session_state_to_string(o.row.state), name);
                if (!o.config.agent)
                        return err_set(-EOPNOTSUPP, "session '%s' has no guest agent (create the session with "
                                       "--agent, of an image that runs qemu-guest-agent)",
                                       name);
                agent = strdup(o.paths.agent);
                if (!agent)
                        return -ENOMEM;
        }
        _cleanup_(qmp_freep) Qmp *q = NULL;
        int r = qmp_agent_connect(agent, AGENT_CONNECT_MS, &q);
        if (r < 0)
                return err_set_if_none(r, "session '%s': no guest agent: %s", name, strerror(-r));
        json_t *args = exec_args(e);
        if (!args)
                return -ENOMEM;
        _cleanup_(json_decrefp) json_t *started = NULL;
        r = qmp_execute(q, "guest-exec", args, AGENT_COMMAND_MS, &started);
        if (r < 0)
                return err_set_if_none(r, "session '%s': guest-exec failed", name);
        json_t *pid = json_object_get(started, "pid");
        if (!json_is_integer(pid))
                return err_set(-EPROTO, "session '%s': the guest agent's guest-exec answer has no pid", name);
        uint64_t deadline = now_ns() + (uint64_t) (e->timeout_s > 0 ? e->timeout_s : SESSION_EXEC_TIMEOUT_S_DEFAULT) *
                                               1000000000ull;
        int wait_ms = EXEC_POLL_MIN_MS;
        for (;;) {
                _cleanup_(json_decrefp) json_t *st = NULL;
                r = qmp_execute(q, "guest-exec-status", json_pack("{s:O}", "pid", pid), AGENT_COMMAND_MS, &st);
                if (r < 0)
                        return err_set_if_none(r, "session '%s': guest-exec-status failed", name);
                if (json_is_true(json_object_get(st, "exited"))) {
                        json_t *code = json_object_get(st, "exitcode"), *sig = json_object_get(st, "signal");
                        ret->exit_code = json_is_integer(code)  ? (int) json_integer_value(code)
                                         : json_is_integer(sig) ? 128 + (int) json_integer_value(sig)
                                                                : 255;
                        ret->signaled = !json_is_integer(code) && json_is_integer(sig);
                        r = decode_b64(json_object_get(st, "out-data"), &ret->out, &ret->out_len);
                        if (r >= 0)
                                r = decode_b64(json_object_get(st, "err-data"), &ret->err, &ret->err_len);
                        if (r < 0) {
                                session_exec_result_done(ret);
                                return r;
                        }
                        ret->truncated = json_is_true(json_object_get(st, "out-truncated")) ||
                                         json_is_true(json_object_get(st, "err-truncated"));
                        return 0;
                }
                if (now_ns() >= deadline)
                        return err_set(-ETIMEDOUT, "session '%s': the command did not finish within %u s (it "
                                       "still runs in the guest as pid %lld)",
                                       name, e->timeout_s > 0 ? e->timeout_s : SESSION_EXEC_TIMEOUT_S_DEFAULT,
                                       (long long) json_integer_value(pid));
                poll(NULL, 0, wait_ms);
                wait_ms = MIN(wait_ms * 2, EXEC_POLL_MAX_MS);
        }
}
