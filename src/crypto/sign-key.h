/* SPDX-License-Identifier: MIT */
#pragma once

/* Ed25519 keys (OpenSSL): a laptop's identity. The laptop daemon makes its
 * key once and keeps it in a file (PKCS#8 PEM, mode 0600); the server keeps
 * only the 32-byte public key. The id of a key is the hex of the first 16
 * bytes of SHA-256(public key): short enough to show, long enough that no
 * one makes a second key with the same id. */

#include <stddef.h>
#include <stdint.h>

#define SIGN_PUBLIC_SIZE 32
#define SIGN_SIGNATURE_SIZE 64
#define SIGN_KEY_ID_LEN 32 /* hex digits */

typedef struct SignKey SignKey;

/* A new random key. Caller frees with sign_key_free(). */
int sign_key_generate(SignKey **ret);
/* Loads a key written by sign_key_save(): -ENOENT when the file is missing,
 * -EBADMSG (with detail) when it is not an Ed25519 private key. */
int sign_key_load(const char *path, SignKey **ret);
/* Writes the private key crash-safely (temp, fsync, rename), mode 0600. */
int sign_key_save(const SignKey *k, const char *path);
void sign_key_free(SignKey *k);
static inline void sign_key_freep(SignKey **k) {
        if (*k)
                sign_key_free(*k);
}

void sign_key_public(const SignKey *k, uint8_t ret[static SIGN_PUBLIC_SIZE]);
/* SIGN_KEY_ID_LEN hex digits and a NUL. */
void sign_key_id(const uint8_t pub[static SIGN_PUBLIC_SIZE], char ret[static SIGN_KEY_ID_LEN + 1]);

int sign_key_sign(const SignKey *k, const void *msg, size_t len, uint8_t ret[static SIGN_SIGNATURE_SIZE]);
/* 0 when sig is pub's signature of msg; -EBADMSG when it is not, or when pub
 * is not a usable Ed25519 public key. */
int sign_verify(const uint8_t pub[static SIGN_PUBLIC_SIZE], const void *msg, size_t len,
                const uint8_t sig[static SIGN_SIGNATURE_SIZE]);
