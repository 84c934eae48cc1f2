/* SPDX-License-Identifier: MIT */
#include "websocket.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../basic/macro.h"
#include "../basic/util.h"

#define POLL_MS 250
#define WRITE_TIMEOUT_NS (30ull * 1000000000ull) /* a client that reads nothing for this long is dropped */
#define PEER_READ_MAX ((size_t) 64 * 1024)

int ws_accept_key(const char *key, char ret[WS_ACCEPT_SIZE]) {
        if (!key || strlen(key) != 24 || strcmp(key + 22, "=="))
                return -EINVAL;
        for (size_t i = 0; i < 22; i++) {
                char c = key[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                      c == '/'))
                        return -EINVAL;
        }
        char buf[24 + sizeof WS_GUID];
        memcpy(buf, key, 24);
        memcpy(buf + 24, WS_GUID, sizeof WS_GUID); /* with the NUL */
        unsigned char digest[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *) buf, strlen(buf), digest);
        char out[WS_ACCEPT_SIZE + 4];
        int n = EVP_EncodeBlock((unsigned char *) out, digest, SHA_DIGEST_LENGTH);
        if (n != WS_ACCEPT_SIZE - 1)
                return -EIO;
        memcpy(ret, out, WS_ACCEPT_SIZE);
        return 0;
}

static bool opcode_known(unsigned op) {
        return op == WS_OP_CONTINUATION || op == WS_OP_TEXT || op == WS_OP_BINARY || op == WS_OP_CLOSE ||
               op == WS_OP_PING || op == WS_OP_PONG;
}

ssize_t ws_frame_parse(const uint8_t *buf, size_t len, size_t max_payload, bool require_mask, WsFrame *ret) {
        if (len < 2)
                return 0;
        uint8_t b0 = buf[0], b1 = buf[1];
        if (b0 & 0x70) /* RSV1-3: no extension was negotiated */
                return -EBADMSG;
        unsigned op = b0 & 0x0f;
        if (!opcode_known(op))
                return -EBADMSG;
        bool fin = b0 & 0x80, masked = b1 & 0x80;
        if (require_mask && !masked)
                return -EBADMSG;
        bool control = op & 0x8;
        uint64_t plen = b1 & 0x7f;
        size_t h = 2;
        if (control && (!fin || plen > WS_CONTROL_MAX))
                return -EBADMSG;
        if (plen == 126) {
                if (len < 4)
                        return 0;
                plen = (uint64_t) buf[2] << 8 | buf[3];
                if (plen < 126)
                        return -EBADMSG; /* not the shortest form */
                h = 4;
        } else if (plen == 127) {
                if (len < 10)
                        return 0;
                plen = 0;
                for (size_t i = 0; i < 8; i++)
                        plen = plen << 8 | buf[2 + i];
                if (plen >> 63 || plen <= 0xffff)
                        return -EBADMSG;
                h = 10;
        }
        if (plen > max_payload)
                return -EMSGSIZE;
        size_t mh = masked ? 4 : 0;
        if (len < h + mh || len - h - mh < plen)
                return 0;
        WsFrame f = { .fin = fin, .opcode = (WsOpcode) op, .masked = masked, .header_len = h + mh };
        if (masked)
                memcpy(f.mask, buf + h, 4);
        f.payload = buf + h + mh;
        f.len = (size_t) plen;
        *ret = f;
        return (ssize_t) (h + mh + plen);
}

void ws_unmask(uint8_t *payload, size_t len, const uint8_t mask[4]) {
        for (size_t i = 0; i < len; i++)
                payload[i] ^= mask[i & 3];
}

int ws_frame_sequence(bool *in_message, const WsFrame *f) {
        if (f->opcode & 0x8)
                return 0;
        if (f->opcode == WS_OP_CONTINUATION) {
                if (!*in_message)
                        return -EBADMSG;
        } else if (*in_message)
                return -EBADMSG;
        *in_message = !f->fin;
        return 0;
}

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
static bool utf8_valid(const uint8_t *s, size_t n) {
        size_t i = 0;
        while (i < n) {
                uint8_t c = s[i];
                size_t k;
                uint32_t cp, min;
                if (c < 0x80) {
                        i++;
                        continue;
                } else if ((c & 0xe0) == 0xc0) {
                        k = 1, cp = c & 0x1f, min = 0x80;
                } else if ((c & 0xf0) == 0xe0) {
                        k = 2, cp = c & 0x0f, min = 0x800;
                } else if ((c & 0xf8) == 0xf0) {
                        k = 3, cp = c & 0x07, min = 0x10000;
                } else
                        return false;
                if (n - i - 1 < k)
                        return false;
                for (size_t j = 1; j <= k; j++) {
                        if ((s[i + j] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (s[i + j] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += k + 1;
        }
        return true;
}

int ws_close_parse(const uint8_t *payload, size_t len, uint16_t *ret_code) {
        if (len == 0) {
                *ret_code = 1005;
                return 0;
        }
        if (len == 1)
                return -EBADMSG;
        uint16_t code = (uint16_t) (payload[0] << 8 | payload[1]);
        bool ok = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
        if (!ok || !utf8_valid(payload + 2, len - 2))
                return -EBADMSG;
        *ret_code = code;
        return 0;
}

size_t ws_frame_header(uint8_t out[WS_HEADER_MAX], WsOpcode op, bool fin, uint64_t len) {
        out[0] = (uint8_t) ((fin ? 0x80 : 0) | (op & 0x0f));
        if (len < 126) {
                out[1] = (uint8_t) len;
                return 2;
        }
        if (len <= 0xffff) {
                out[1] = 126;
                out[2] = (uint8_t) (len >> 8);
                out[3] = (uint8_t) len;
                return 4;
        }
        out[1] = 127;
        for (size_t i = 0; i < 8; i++)
                out[2 + i] = (uint8_t) (len >> (56 - 8 * i));
        return 10;
}

/* ---- the bridge ---- */

typedef struct Bridge {
        int ws, peer;
        WsStopFn stop;
        void *stop_userdata;
} Bridge;

/* Writes all of buf to a (possibly non-blocking) fd; gives up when nothing
 * moves for WRITE_TIMEOUT_NS or the bridge is told to stop. */
static int write_all(Bridge *b, int fd, const void *buf, size_t n) {
        const uint8_t *p = buf;
        uint64_t idle_since = now_ns();
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0 && errno == ENOTSOCK)
                        k = write(fd, p, n);
                if (k > 0) {
                        p += k;
                        n -= (size_t) k;
                        idle_since = now_ns();
                        continue;
                }
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                        return -errno;
                if (now_ns() - idle_since > WRITE_TIMEOUT_NS || (b->stop && b->stop(b->stop_userdata)))
                        return -ETIMEDOUT;
                struct pollfd pfd = { .fd = fd, .events = POLLOUT };
                (void) poll(&pfd, 1, POLL_MS);
        }
        return 0;
}

static int send_frame(Bridge *b, WsOpcode op, const void *payload, size_t len) {
        uint8_t h[WS_HEADER_MAX];
        size_t hl = ws_frame_header(h, op, true, len);
        int r = write_all(b, b->ws, h, hl);
        if (r >= 0 && len)
                r = write_all(b, b->ws, payload, len);
        return r;
}

static void send_close(Bridge *b, uint16_t code) {
        uint8_t p[2] = { (uint8_t) (code >> 8), (uint8_t) code };
        (void) send_frame(b, WS_OP_CLOSE, p, sizeof p);
}

/* Handles the whole frames at the front of in. Returns bytes consumed (>= 0),
 * or a negative close code to send (the bridge ends), or -1 for an orderly
 * end after the client's close. */
static ssize_t client_frames(Bridge *b, uint8_t *in, size_t len, bool *in_message, int *ret_close,
                             bool *client_closed) {
        size_t used = 0;
        for (;;) {
                WsFrame f;
                ssize_t n = ws_frame_parse(in + used, len - used, WS_FRAME_MAX, true, &f);
                if (n == 0)
                        return (ssize_t) used;
                if (n < 0) {
                        *ret_close = n == -EMSGSIZE ? WS_CLOSE_TOO_BIG : WS_CLOSE_PROTOCOL_ERROR;
                        return -1;
                }
                if (ws_frame_sequence(in_message, &f) < 0) {
                        *ret_close = WS_CLOSE_PROTOCOL_ERROR;
                        return -1;
                }
                uint8_t *payload = in + used + f.header_len;
                ws_unmask(payload, f.len, f.mask);
                used += (size_t) n;
                switch (f.opcode) {
                case WS_OP_TEXT:
                        *ret_close = WS_CLOSE_UNSUPPORTED; /* VNC is bytes: binary frames only */
                        return -1;
                case WS_OP_BINARY:
                case WS_OP_CONTINUATION:
                        if (f.len && write_all(b, b->peer, payload, f.len) < 0) {
                                *ret_close = WS_CLOSE_GOING_AWAY;
                                return -1;
                        }
                        break;
                case WS_OP_PING:
                        if (send_frame(b, WS_OP_PONG, payload, f.len) < 0) {
                                *ret_close = 0;
                                return -1;
                        }
                        break;
                case WS_OP_PONG:
                        break;
                case WS_OP_CLOSE: {
                        uint16_t code;
                        if (ws_close_parse(payload, f.len, &code) < 0) {
                                *ret_close = WS_CLOSE_PROTOCOL_ERROR;
                                return -1;
                        }
                        /* echo the client's code: an orderly end */
                        *ret_close = code == 1005 ? WS_CLOSE_NORMAL : code;
                        *client_closed = true;
                        return -1;
                }
                }
        }
}

int ws_bridge(int ws_fd, const void *extra, size_t extra_len, int peer_fd, WsStopFn stop, void *stop_userdata) {
        Bridge b = { .ws = ws_fd, .peer = peer_fd, .stop = stop, .stop_userdata = stop_userdata };
        size_t cap = WS_FRAME_MAX + WS_HEADER_MAX;
        _cleanup_free_ uint8_t *in = malloc(cap);
        _cleanup_free_ uint8_t *out = malloc(PEER_READ_MAX);
        if (!in || !out)
                return -ENOMEM;
        size_t have = 0;
        bool in_message = false, client_closed = false;
        int close_code = 0, r = 0;
        if (extra_len > cap) {
                send_close(&b, WS_CLOSE_TOO_BIG);
                return -EMSGSIZE;
        }
        if (extra_len)
                memcpy(in, extra, extra_len);
        have = extra_len;
        for (bool first = true;; first = false) {
                if (have > 0 || first) {
                        ssize_t used = client_frames(&b, in, have, &in_message, &close_code, &client_closed);
                        if (used < 0)
                                break;
                        memmove(in, in + used, have - (size_t) used);
                        have -= (size_t) used;
                }
                if (stop && stop(stop_userdata)) {
                        close_code = WS_CLOSE_GOING_AWAY;
                        break;
                }
                struct pollfd p[2] = { { .fd = ws_fd, .events = POLLIN }, { .fd = peer_fd, .events = POLLIN } };
                int k = poll(p, 2, POLL_MS);
                if (k < 0 && errno != EINTR) {
                        r = -errno;
                        break;
                }
                if (k <= 0)
                        continue;
                if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
                        ssize_t n = read(peer_fd, out, PEER_READ_MAX);
                        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                                continue;
                        if (n <= 0) {
                                close_code = WS_CLOSE_NORMAL; /* the VNC server went away */
                                break;
                        }
                        if ((r = send_frame(&b, WS_OP_BINARY, out, (size_t) n)) < 0)
                                break;
                }
                if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                        if (have == cap) { /* cannot happen: a whole frame fits */
                                close_code = WS_CLOSE_TOO_BIG;
                                break;
                        }
                        ssize_t n = recv(ws_fd, in + have, cap - have, 0);
                        if (n < 0 && errno == ENOTSOCK)
                                n = read(ws_fd, in + have, cap - have);
                        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
                                continue;
                        if (n <= 0) {
                                r = n < 0 ? -errno : 0; /* the client went away */
                                close_code = 0;
                                break;
                        }
                        have += (size_t) n;
                }
        }
        if (close_code > 0)
                send_close(&b, (uint16_t) close_code);
        if (!client_closed && (close_code == WS_CLOSE_PROTOCOL_ERROR || close_code == WS_CLOSE_TOO_BIG ||
                               close_code == WS_CLOSE_UNSUPPORTED))
                return -EBADMSG;
        return r;
}
