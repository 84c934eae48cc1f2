/* SPDX-License-Identifier: MIT */
#pragma once

/* SHA-256 ids and their hex form. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ID_SIZE 32
#define ID_HEX_SIZE (ID_SIZE * 2 + 1)

typedef struct RoamId {
        uint8_t b[ID_SIZE];
} RoamId;

/* The all-zero id stands for an all-zero chunk in an index (never stored). */
extern const RoamId ID_NULL;

static inline bool id_is_null(const RoamId *id) {
        for (size_t i = 0; i < ID_SIZE; i++)
                if (id->b[i])
                        return false;
        return true;
}
static inline bool id_equal(const RoamId *a, const RoamId *b) {
        for (size_t i = 0; i < ID_SIZE; i++)
                if (a->b[i] != b->b[i])
                        return false;
        return true;
}

void sha256(const void *data, size_t len, RoamId *ret);

/* Incremental hashing; sha256_ctx_free accepts NULL. */
typedef struct Sha256Ctx Sha256Ctx;
Sha256Ctx *sha256_ctx_new(void);
void sha256_ctx_update(Sha256Ctx *c, const void *data, size_t len);
void sha256_ctx_final(Sha256Ctx *c, RoamId *ret);
void sha256_ctx_free(Sha256Ctx *c);

/* buf must hold ID_HEX_SIZE bytes; returns buf. */
char *id_to_hex(const RoamId *id, char buf[static ID_HEX_SIZE]);
/* Parses exactly 64 lowercase or uppercase hex digits. -EINVAL otherwise. */
int id_from_hex(const char *s, RoamId *ret);
/* Generic hex encoding of n bytes into buf (2n+1 bytes). */
void hex_encode(const void *p, size_t n, char *buf);
