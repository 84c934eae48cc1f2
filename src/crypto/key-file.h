/* SPDX-License-Identifier: MIT */
#pragma once

/* The two key files of an encrypted laptop home (docs/store-format.md,
 * "Keys"), their formats and their crypto (OpenSSL: scrypt, X25519,
 * AES-256-GCM). Pure: the parsers are bounded and fuzzed; no I/O.
 *
 * The home key (HOME/keys/home.key, made by 'roam laptop init'): an X25519
 * key pair whose private half is sealed under a key derived from the user's
 * passphrase with scrypt; the public half is plain, so that the server can
 * wrap the data key to it while the laptop is locked.
 *
 *   offset size
 *   0      8    magic "ROAMHK1\0"
 *   8      1    KDF: 1 = scrypt
 *   9      1    log2 N (10..20)
 *   10     1    r (1..16)
 *   11     1    p (1..4)       (and 128·r·N ≤ 256 MiB)
 *   12     4    zero
 *   16     16   salt
 *   32     32   X25519 public key
 *   64     12   nonce
 *   76     32   AES-256-GCM ciphertext of the X25519 private key
 *   108    16   tag (additional data: bytes 0..63)          = 124 bytes
 *
 * The wrapped data key (HOME/keys/data.key): the user's data key sealed to
 * the home's X25519 public key by the server at pairing (or by the laptop
 * itself for a key of its own): an ephemeral X25519 key, the shared secret
 * through HKDF-SHA256 (salt: ephemeral public key || home public key, info
 * "roam data key wrap v1"), AES-256-GCM.
 *
 *   offset size
 *   0      8    magic "ROAMDK1\0"
 *   8      1    origin: 1 the server (pairing), 2 this laptop
 *   9      7    zero
 *   16     32   ephemeral X25519 public key
 *   48     12   nonce
 *   60     32   ciphertext of the 32-byte data key
 *   92     16   tag (additional data: bytes 0..47)          = 108 bytes
 *
 * Functions return 0 or a negative errno and set no error detail (the
 * caller names the file): -EBADMSG malformed, -EACCES a wrong passphrase or
 * a key that does not open the file. Secrets are wiped after use. */

#include <stddef.h>
#include <stdint.h>

#include "data-key.h"

#define HOME_KEY_SIZE 124
#define WRAPPED_KEY_SIZE 108
#define X25519_KEY_SIZE 32
#define PASSPHRASE_MIN 8
#define PASSPHRASE_MAX 1024

typedef enum KeyOrigin {
        KEY_ORIGIN_SERVER = 1,
        KEY_ORIGIN_LOCAL = 2,
} KeyOrigin;

typedef struct KdfParams {
        uint8_t log2_n, r, p;
} KdfParams;
/* scrypt N = 2^15, r = 8, p = 1: 32 MiB, about 0.1 s here */
#define KDF_PARAMS_DEFAULT ((KdfParams){ 15, 8, 1 })

typedef struct HomeKey {
        KdfParams kdf;
        uint8_t salt[16];
        uint8_t public_key[X25519_KEY_SIZE];
        uint8_t nonce[12];
        uint8_t ciphertext[X25519_KEY_SIZE];
        uint8_t tag[16];
        uint8_t header[64]; /* the authenticated bytes */
} HomeKey;

typedef struct WrappedKey {
        KeyOrigin origin;
        uint8_t ephemeral[X25519_KEY_SIZE];
        uint8_t nonce[12];
        uint8_t ciphertext[DATA_KEY_SIZE];
        uint8_t tag[16];
        uint8_t header[48];
} WrappedKey;

int home_key_parse(const void *buf, size_t len, HomeKey *ret);
/* A new key pair sealed under passphrase: the file's bytes into out. */
int home_key_make(const char *passphrase, size_t len, KdfParams kdf, uint8_t out[static HOME_KEY_SIZE]);
/* The private key: -EACCES for a wrong passphrase. */
int home_key_open(const HomeKey *k, const char *passphrase, size_t len, uint8_t ret[static X25519_KEY_SIZE]);
/* The same key pair sealed under a new passphrase (new salt and nonce). */
int home_key_reseal(const HomeKey *k, const uint8_t private_key[static X25519_KEY_SIZE], const char *passphrase,
                    size_t len, KdfParams kdf, uint8_t out[static HOME_KEY_SIZE]);

int wrapped_key_parse(const void *buf, size_t len, WrappedKey *ret);
/* dk sealed to the X25519 public key recipient: the file's bytes into out.
 * -EINVAL when recipient is not a usable X25519 public key. */
int wrapped_key_make(const uint8_t recipient[static X25519_KEY_SIZE], const uint8_t dk[static DATA_KEY_SIZE],
                     KeyOrigin origin, uint8_t out[static WRAPPED_KEY_SIZE]);
/* The data key, with the recipient's private key: -EACCES when it does not
 * open w. */
int wrapped_key_open(const WrappedKey *w, const uint8_t private_key[static X25519_KEY_SIZE],
                     uint8_t ret[static DATA_KEY_SIZE]);
