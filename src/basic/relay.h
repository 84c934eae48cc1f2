/* SPDX-License-Identifier: MIT */
#pragma once

/* Copying a byte stream both ways between two endpoints until one of them
 * ends: the desktop's raw route (daemon side: upgraded HTTP connection <->
 * QEMU's VNC socket) and `roam session connect` (viewer's TCP connection <->
 * that route over libcurl, where TLS means the transport's own read and
 * write). Bytes are passed on as they come: nothing is parsed. */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct RelayEnd {
        int fd; /* polled for input and output */
        /* NULL: read(2)/write(2) on fd. Else the transport's own, returning
         * the count, 0 at the end (read), or a negative errno; -EAGAIN when
         * nothing can move now. A transport that buffers (TLS) is read until
         * -EAGAIN after each wake-up, so nothing stays in its buffer. */
        ssize_t (*read)(void *userdata, void *buf, size_t n);
        ssize_t (*write)(void *userdata, const void *buf, size_t n);
        void *userdata;
} RelayEnd;

typedef bool (*RelayStopFn)(void *userdata);

#define RELAY_BUFFER_SIZE ((size_t) 64 << 10)
#define RELAY_POLL_MS 200

/* Relays until either end reaches its end (0) or fails, or stop(stop_userdata)
 * turns true (checked every RELAY_POLL_MS; stop may be NULL). extra: bytes
 * already read from a that belong to b (sent first). Returns 0 for an orderly
 * end or a stop, else a negative errno. Closes nothing. */
int relay_run(const RelayEnd *a, const RelayEnd *b, const void *extra, size_t extra_len, RelayStopFn stop,
              void *stop_userdata);

/* One read or write on an end, with the contract above (plain fds map
 * EAGAIN/EINTR to -EAGAIN). */
ssize_t relay_end_read(const RelayEnd *e, void *buf, size_t n);
ssize_t relay_end_write(const RelayEnd *e, const void *buf, size_t n);
/* Writes all of buf, waiting for the fd while it cannot take more; gives up
 * when stop turns true (-ECANCELED) or after timeout_ms without progress
 * (-ETIMEDOUT; 0 = no limit). */
int relay_end_write_all(const RelayEnd *e, const void *buf, size_t n, int timeout_ms, RelayStopFn stop,
                        void *stop_userdata);
/* Reads exactly n bytes (-ECONNRESET at an early end), waiting up to
 * timeout_ms without progress (-ETIMEDOUT; 0 = no limit). */
int relay_end_read_exact(const RelayEnd *e, void *buf, size_t n, int timeout_ms, RelayStopFn stop,
                         void *stop_userdata);
