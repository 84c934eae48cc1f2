/* SPDX-License-Identifier: MIT */
#include "hash.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

const RoamId ID_NULL = { { 0 } };

void sha256(const void *data, size_t len, RoamId *ret) {
        unsigned int n = ID_SIZE;
        /* EVP picks the SHA-NI code path where the CPU has it. */
        EVP_Digest(data, len, ret->b, &n, EVP_sha256(), NULL);
}

struct Sha256Ctx {
        EVP_MD_CTX *md;
};

Sha256Ctx *sha256_ctx_new(void) {
        Sha256Ctx *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->md = EVP_MD_CTX_new();
        if (!c->md || EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(c->md);
                free(c);
                return NULL;
        }
        return c;
}

void sha256_ctx_update(Sha256Ctx *c, const void *data, size_t len) {
        EVP_DigestUpdate(c->md, data, len);
}

void sha256_ctx_final(Sha256Ctx *c, RoamId *ret) {
        unsigned int n = ID_SIZE;
        EVP_DigestFinal_ex(c->md, ret->b, &n);
}

void sha256_ctx_free(Sha256Ctx *c) {
        if (!c)
                return;
        EVP_MD_CTX_free(c->md);
        free(c);
}

void hex_encode(const void *p, size_t n, char *buf) {
        static const char digits[] = "0123456789abcdef";
        const uint8_t *b = p;
        for (size_t i = 0; i < n; i++) {
                buf[2 * i] = digits[b[i] >> 4];
                buf[2 * i + 1] = digits[b[i] & 15];
        }
        buf[2 * n] = 0;
}

char *id_to_hex(const RoamId *id, char buf[static ID_HEX_SIZE]) {
        hex_encode(id->b, ID_SIZE, buf);
        return buf;
}

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int id_from_hex(const char *s, RoamId *ret) {
        RoamId id;
        for (size_t i = 0; i < ID_SIZE; i++) {
                int hi = unhex(s[2 * i]);
                if (hi < 0)
                        return -EINVAL;
                int lo = unhex(s[2 * i + 1]);
                if (lo < 0)
                        return -EINVAL;
                id.b[i] = (uint8_t) (hi << 4 | lo);
        }
        if (s[2 * ID_SIZE] != 0)
                return -EINVAL;
        *ret = id;
        return 0;
}
