/* SPDX-License-Identifier: MIT */
#include "base64.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void base64url_encode(const void *in, size_t n, char *out) {
        const uint8_t *p = in;
        size_t o = 0;
        uint32_t acc = 0;
        int bits = 0;
        for (size_t i = 0; i < n; i++) {
                acc = acc << 8 | p[i];
                bits += 8;
                while (bits >= 6) {
                        bits -= 6;
                        out[o++] = alphabet[(acc >> bits) & 63];
                }
        }
        if (bits > 0)
                out[o++] = alphabet[(acc << (6 - bits)) & 63];
        out[o] = 0;
}

static int value_of(char ch) {
        if (ch >= 'A' && ch <= 'Z')
                return ch - 'A';
        if (ch >= 'a' && ch <= 'z')
                return ch - 'a' + 26;
        if (ch >= '0' && ch <= '9')
                return ch - '0' + 52;
        if (ch == '-')
                return 62;
        if (ch == '_')
                return 63;
        return -1;
}

int base64url_decode_exact(const char *s, void *out, size_t n) {
        if (!s || strnlen(s, BASE64URL_LEN(n) + 1) != BASE64URL_LEN(n))
                return -EINVAL;
        uint8_t *p = out;
        size_t o = 0;
        uint32_t acc = 0;
        int bits = 0;
        for (size_t i = 0; s[i]; i++) {
                int v = value_of(s[i]);
                if (v < 0)
                        return -EINVAL;
                acc = (acc << 6 | (uint32_t) v) & 0xffffff;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        p[o++] = (uint8_t) (acc >> bits);
                }
        }
        /* the unused low bits of the last character must be zero (one encoding per value) */
        if (o != n || (acc & ((1u << bits) - 1)))
                return -EINVAL;
        return 0;
}

int random_bytes(void *p, size_t n) {
        uint8_t *b = p;
        while (n > 0) {
                ssize_t k = getrandom(b, n, 0);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                b += k;
                n -= (size_t) k;
        }
        return 0;
}
