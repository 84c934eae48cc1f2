/* SPDX-License-Identifier: MIT */
#include "relay.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include "macro.h"

ssize_t relay_end_read(const RelayEnd *e, void *buf, size_t n) {
        if (e->read)
                return e->read(e->userdata, buf, n);
        ssize_t k = read(e->fd, buf, n);
        if (k < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
        return k;
}

ssize_t relay_end_write(const RelayEnd *e, const void *buf, size_t n) {
        if (e->write)
                return e->write(e->userdata, buf, n);
        ssize_t k = write(e->fd, buf, n);
        if (k < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
        return k;
}

/* Waits for events on fd for one poll period: 1 ready, 0 not yet, or -errno. */
static int wait_fd(int fd, short events) {
        struct pollfd p = { .fd = fd, .events = events };
        int k = poll(&p, 1, RELAY_POLL_MS);
        if (k < 0)
                return errno == EINTR ? 0 : -errno;
        return k > 0;
}

/* All of n bytes one way: written from or read into buf, waiting for the fd
 * while nothing moves. */
static int transfer_all(const RelayEnd *e, bool out, uint8_t *buf, size_t n, int timeout_ms, RelayStopFn stop,
                        void *stop_userdata) {
        int idle_ms = 0;
        while (n > 0) {
                ssize_t k = out ? relay_end_write(e, buf, n) : relay_end_read(e, buf, n);
                if (k > 0) {
                        buf += k;
                        n -= (size_t) k;
                        idle_ms = 0;
                        continue;
                }
                if (k == 0)
                        return out ? -EPIPE : -ECONNRESET;
                if (k != -EAGAIN)
                        return (int) k;
                if (stop && stop(stop_userdata))
                        return -ECANCELED;
                if (timeout_ms > 0 && idle_ms >= timeout_ms)
                        return -ETIMEDOUT;
                int w = wait_fd(e->fd, out ? POLLOUT : POLLIN);
                if (w < 0)
                        return w;
                if (w == 0)
                        idle_ms += RELAY_POLL_MS;
        }
        return 0;
}

int relay_end_write_all(const RelayEnd *e, const void *buf, size_t n, int timeout_ms, RelayStopFn stop,
                        void *stop_userdata) {
        /* written from, never into: the cast only shares the loop */
        return transfer_all(e, true, (uint8_t *) buf, n, timeout_ms, stop, stop_userdata);
}

int relay_end_read_exact(const RelayEnd *e, void *buf, size_t n, int timeout_ms, RelayStopFn stop,
                         void *stop_userdata) {
        return transfer_all(e, false, buf, n, timeout_ms, stop, stop_userdata);
}

/* Moves what from can give now to to: 1 moved or nothing ready, 0 at from's
 * end, or a negative errno. */
static int pump(const RelayEnd *from, const RelayEnd *to, uint8_t *buf, RelayStopFn stop, void *stop_userdata) {
        for (;;) {
                ssize_t k = relay_end_read(from, buf, RELAY_BUFFER_SIZE);
                if (k == -EAGAIN)
                        return 1;
                if (k <= 0)
                        return (int) k;
                int r = relay_end_write_all(to, buf, (size_t) k, 0, stop, stop_userdata);
                if (r < 0)
                        return r == -ECANCELED ? 0 : r;
                if (!from->read)
                        return 1; /* a plain fd: poll tells when there is more */
        }
}

int relay_run(const RelayEnd *a, const RelayEnd *b, const void *extra, size_t extra_len, RelayStopFn stop,
              void *stop_userdata) {
        _cleanup_free_ uint8_t *buf = malloc(RELAY_BUFFER_SIZE);
        if (!buf)
                return -ENOMEM;
        int r = extra_len ? relay_end_write_all(b, extra, extra_len, 0, stop, stop_userdata) : 0;
        if (r < 0)
                return r == -ECANCELED ? 0 : r;
        /* a transport with its own buffer may hold bytes already */
        bool first = true;
        for (;;) {
                if (stop && stop(stop_userdata))
                        return 0;
                struct pollfd p[2] = { { .fd = a->fd, .events = POLLIN }, { .fd = b->fd, .events = POLLIN } };
                int k = poll(p, 2, RELAY_POLL_MS);
                if (k < 0 && errno != EINTR)
                        return -errno;
                if (k < 0)
                        continue;
                for (int i = 0; i < 2; i++) {
                        const RelayEnd *from = i ? b : a, *to = i ? a : b;
                        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)) && !(first && from->read))
                                continue;
                        r = pump(from, to, buf, stop, stop_userdata);
                        if (r <= 0)
                                return r;
                }
                first = false;
        }
}
