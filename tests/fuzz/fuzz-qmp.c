/* SPDX-License-Identifier: MIT */
/* Fuzzes the QMP client's input side: the pure message parser on the whole
 * input, and, for small inputs, the framing and dispatch of a connection that
 * receives the input as its byte stream (handshake, replies, events, EOF). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qmp/qmp.h"

#define STREAM_MAX (64 * 1024) /* fits a socketpair's buffer: no reader thread */

static void check_parse(const uint8_t *data, size_t size) {
        json_t *j = (json_t *) 1; /* must stay untouched on failure */
        int r = qmp_parse_message((const char *) data, size, &j);
        if (r < 0) {
                if (j != (json_t *) 1 || (r != -EBADMSG && r != -ENOMEM))
                        abort();
                return;
        }
        if (!json_is_object(j))
                abort();
        json_decref(j);
}

static void check_stream(const uint8_t *data, size_t size) {
        int sv[2];
        if (size > STREAM_MAX || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return;
        size_t done = 0;
        while (done < size) {
                ssize_t k = send(sv[1], data + done, size - done, MSG_NOSIGNAL);
                if (k <= 0)
                        break;
                done += (size_t) k;
        }
        shutdown(sv[1], SHUT_WR); /* EOF after the input; our commands still fit */

        Qmp *q = NULL;
        if (qmp_new_from_fd(sv[0], 0, &q) < 0) {
                close(sv[0]);
                close(sv[1]);
                return;
        }
        json_t *ret = NULL;
        for (int i = 0; i < 8; i++) {
                int r = qmp_execute(q, "query-status", NULL, 0, &ret);
                if (r == 0)
                        json_decref(ret);
                else if (r == -ECONNRESET || r == -ETIMEDOUT)
                        break;
        }
        json_t *ev = NULL;
        while (qmp_next_event(q, 0, &ev) == 0) {
                if (!json_is_string(json_object_get(ev, "event")))
                        abort();
                json_decref(ev);
        }
        qmp_free(q);
        close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        check_parse(data, size);
        check_stream(data, size);
        return 0;
}
