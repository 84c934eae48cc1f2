/* SPDX-License-Identifier: MIT */
#pragma once

/* What roam asks of qemu-guest-agent in a guest (QEMU's docs/interop/
 * qemu-ga.rst), over the virtio-serial port whose host side is a unix socket
 * (sessions/NAME/agent.sock). The connection is the QMP client's agent mode
 * (src/qmp/qmp.h: no greeting, the sync handshake, the same bounded parser).
 *
 * Every call is bounded: connecting and the sync handshake by the caller's
 * timeout (a silent agent is -ETIMEDOUT "did not answer within N ms"), every
 * command by GUEST_AGENT_COMMAND_MS, a command run in the guest by its own
 * timeout. Nothing here waits without a limit, so a daemon thread that asks
 * a guest never hangs on it.
 *
 * QEMU's socket chardev serves one client at a time: a second client waits
 * (inside its timeout) until the first is done. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../qmp/qmp.h"

#define GUEST_AGENT_CONNECT_MS 5000 /* connect + sync: an agent that says nothing in this is "silent" */
#define GUEST_AGENT_COMMAND_MS 5000 /* one command's answer */
#define GUEST_AGENT_PING_MS 1500    /* liveness (session show, the console) */
#define GUEST_EXEC_TIMEOUT_S_DEFAULT 60u
#define GUEST_EXEC_ARGS_MAX 256

/* Connects and syncs. Caller frees *ret with qmp_free(). */
int guest_agent_open(const char *socket, int timeout_ms, Qmp **ret);

/* Liveness: connect, sync, guest-ping, all within timeout_ms. 0 and
 * *ret_ms (may be NULL: the round trip of the whole) when it answers. */
int guest_agent_ping(const char *socket, int timeout_ms, uint64_t *ret_ms);

typedef struct GuestExec {
        char **argv;        /* the program (a path in the guest, or a name for runuser) and its arguments */
        const char *user;   /* NULL: as the agent (root); else that user, DISPLAY=:0, via runuser */
        unsigned timeout_s; /* 0: GUEST_EXEC_TIMEOUT_S_DEFAULT */
} GuestExec;

typedef struct GuestExecResult {
        int exit_code; /* 128 + N for a command ended by signal N */
        bool signaled, truncated;
        char *out, *err; /* NUL-terminated; out_len/err_len bytes (may hold NULs) */
        size_t out_len, err_len;
} GuestExecResult;

void guest_exec_result_done(GuestExecResult *r);

/* Runs e in the guest (guest-exec with captured output, guest-exec-status
 * polled) and waits for it within its timeout. -EINVAL (no command, a bad
 * user name, too many arguments), -ETIMEDOUT (the command still runs in the
 * guest; the detail names its pid), -EBADMSG (malformed output), -EIO (the
 * agent refused). */
int guest_exec(Qmp *q, const GuestExec *e, GuestExecResult *ret);

/* guest-shutdown {"mode": "powerdown"}: the guest shuts down cleanly. The
 * agent does not answer a shutdown that it starts; an error answer within
 * GUEST_AGENT_COMMAND_MS is -EIO. The caller watches QEMU for the power-off. */
int guest_shutdown(Qmp *q);

/* Pure (exposed for the tests): the guest-exec arguments of e as JSON
 * ({"path", "arg", "capture-output"}), or NULL (out of memory, bad input). */
json_t *guest_exec_args(const GuestExec *e);
