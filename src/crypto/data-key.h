/* SPDX-License-Identifier: MIT */
#pragma once

/* A user's data key and what a laptop's encrypted store does with it
 * (docs/store-format.md, "Encryption at rest"). Pure crypto (OpenSSL), no I/O.
 *
 * From the 32-byte data key DK, HKDF-SHA256 (salt "roam data key v1")
 * derives three keys:
 *
 *   name key      AES-256: the name a chunk or object is stored under is a
 *                 keyed permutation of its id (data_keys_name()): the same
 *                 id always gets the same name, so a lookup finds it and
 *                 dedup works, and the name says nothing about the id
 *                 without the key; the permutation is invertible, so gc and
 *                 fsck list ids without reading files
 *   content key   HMAC-SHA256: the key of one chunk or object is
 *                 HMAC(content key, kind || id), convergent within one
 *                 user (the same plain bytes, the same key) and unrelated
 *                 across users
 *   check value   16 bytes kept beside the store to tell a wrong key from
 *                 damage
 *
 * A sealed chunk or object (seal()/unseal(); the bytes a plain store keeps,
 * i.e. the codec's output for a chunk, inside):
 *
 *   offset size
 *   0      4    magic "RMS1"
 *   4      1    kind: 1 chunk, 2 object
 *   5      3    zero
 *   8      12   nonce (random)
 *   20     n    AES-256-GCM ciphertext of the n stored bytes
 *   20+n   16   GCM tag over the header, the id and the ciphertext
 *
 * Thread safety: a DataKeys is read-only after data_keys_new() and may be
 * used from any number of threads; a SealCtx belongs to one thread. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../basic/hash.h"

#define DATA_KEY_SIZE 32
#define DATA_KEY_CHECK_SIZE 16
#define SEAL_MAGIC "RMS1"
#define SEAL_HEADER_SIZE 20
#define SEAL_NONCE_SIZE 12
#define SEAL_TAG_SIZE 16
#define SEAL_OVERHEAD (SEAL_HEADER_SIZE + SEAL_TAG_SIZE)

typedef enum SealKind {
        SEAL_CHUNK = 1,
        SEAL_OBJECT = 2,
} SealKind;

typedef struct DataKeys DataKeys;
typedef struct SealCtx SealCtx;

/* Derives the keys of dk. Caller frees with data_keys_free(), which wipes them. */
int data_keys_new(const uint8_t dk[static DATA_KEY_SIZE], DataKeys **ret);
void data_keys_free(DataKeys *k);
static inline void data_keys_freep(DataKeys **k) {
        if (*k)
                data_keys_free(*k);
}

void data_keys_check(const DataKeys *k, uint8_t ret[static DATA_KEY_CHECK_SIZE]);

/* The stored name of id, and back. -EIO only if OpenSSL fails. */
int data_keys_name(const DataKeys *k, const RoamId *id, RoamId *ret);
int data_keys_unname(const DataKeys *k, const RoamId *name, RoamId *ret);

/* A cipher context for one thread; seal()/unseal() make a temporary one when
 * given NULL. Caller frees with seal_ctx_free() (accepts NULL). */
SealCtx *seal_ctx_new(void);
void seal_ctx_free(SealCtx *c);
static inline void seal_ctx_freep(SealCtx **c) {
        if (*c)
                seal_ctx_free(*c);
}

/* The parsed header of sealed bytes: -EBADMSG unless len holds at least a
 * header and a tag, with the magic, a known kind and zero reserved bytes.
 * Pure and bounded (fuzzed). */
typedef struct SealHeader {
        SealKind kind;
        const uint8_t *nonce;      /* SEAL_NONCE_SIZE bytes, into buf */
        const uint8_t *ciphertext; /* into buf */
        size_t ciphertext_len;
        const uint8_t *tag; /* into buf */
} SealHeader;
int seal_header_parse(const void *buf, size_t len, SealHeader *ret);

/* Seals len bytes of kind stored under id into out (cap >= len +
 * SEAL_OVERHEAD): *ret_len = len + SEAL_OVERHEAD. */
int seal(const DataKeys *k, SealCtx *c, SealKind kind, const RoamId *id, const void *in, size_t len, void *out,
         size_t cap, size_t *ret_len);
/* Opens sealed bytes of kind id into out (cap >= len - SEAL_OVERHEAD):
 * -EBADMSG when the header is malformed, the kind differs, or the tag does
 * not authenticate them under id's key (a wrong key, damage, another id's
 * file); out's contents are then undefined. No detail is set: the caller
 * names the chunk. */
int unseal(const DataKeys *k, SealCtx *c, SealKind kind, const RoamId *id, const void *in, size_t len, void *out,
           size_t cap, size_t *ret_len);

/* HKDF-SHA256 (RFC 5869) of ikm with salt and info into out (<= 255*32
 * bytes); also the wrapping of key-file.h. */
int hkdf_sha256(const void *ikm, size_t ikm_len, const void *salt, size_t salt_len, const char *info, void *out,
                size_t out_len);
