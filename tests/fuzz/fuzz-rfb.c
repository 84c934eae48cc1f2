/* SPDX-License-Identifier: MIT */
/* The protocol bytes `roam session connect` reads from others: the RFB
 * opening as a viewer speaks it to rfb_serve_auth() and as a VNC server
 * speaks it to rfb_client_none() (src/vnc/rfb.h), and the head of the
 * daemon's answer to the upgrade (src/sync/remote-stream.h). The first byte
 * picks the reader; the rest is what the peer sends. Writes must stay within
 * what the opening can produce, and a right answer to the fixed challenge is
 * accepted only with the right password. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sync/remote-stream.h"
#include "vnc/rfb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct Peer {
        const uint8_t *in;
        size_t len, off;
        size_t written;
} Peer;

static int p_read(void *u, void *buf, size_t n) {
        Peer *p = u;
        if (p->len - p->off < n)
                return -ECONNRESET;
        memcpy(buf, p->in + p->off, n);
        p->off += n;
        return 0;
}

static int p_write(void *u, const void *buf, size_t n) {
        Peer *p = u;
        (void) buf;
        p->written += n;
        if (p->written > 12 + 4 + 16 + 8 + RFB_REASON_MAX)
                abort(); /* more than any opening writes */
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        static const uint8_t challenge[RFB_CHALLENGE_SIZE] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
        Peer p = { .in = data + 1, .len = size - 1 };
        RfbIo io = { p_read, p_write, &p };
        switch (data[0] % 3) {
        case 0: {
                int minor = -1;
                int r = rfb_serve_auth(&io, "password", challenge, &minor);
                if (r == 0) {
                        if (minor != 3 && minor != 7 && minor != 8)
                                abort();
                        /* the last 16 bytes read were the right answer */
                        uint8_t want[RFB_CHALLENGE_SIZE];
                        rfb_auth_response("password", challenge, want);
                        if (p.off < RFB_CHALLENGE_SIZE || memcmp(p.in + p.off - RFB_CHALLENGE_SIZE, want, sizeof want))
                                abort();
                        (void) rfb_serve_result(&io, minor, "x");
                }
                break;
        }
        case 1:
                (void) rfb_client_none(&io);
                if (p.off > p.len)
                        abort();
                break;
        default: {
                const char *buf = (const char *) p.in;
                size_t end = remote_stream_head_end(buf, p.len);
                if (end > p.len)
                        abort();
                int status;
                int64_t clen;
                bool up;
                if (remote_stream_parse_head(buf, end ? end : p.len, "roam-vnc", &status, &clen, &up) == 0 &&
                    (status < 100 || status > 999 || clen < -1))
                        abort();
                break;
        }
        }
        return 0;
}
