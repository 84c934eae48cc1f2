/* SPDX-License-Identifier: MIT */
#pragma once

/* The encryption layer of a store (private to src/store/; store.h has the
 * API): an encrypted store (a laptop's, docs/store-format.md "Encryption at
 * rest") keeps every chunk and object sealed (crypto/data-key.h) under a
 * keyed name, and refs pointing at those names. store.c maps ids to names
 * and seals and opens bytes through a StoreCrypt; the backend below sees
 * only names and sealed bytes.
 *
 * Locked (no key yet, or forgotten by 'roam lock'), every mapping fails with
 * -ENOKEY and a detail that says to run 'roam unlock'. The key is read under
 * a lock only for the computation itself, never across I/O or callbacks.
 * Thread-safe. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../basic/hash.h"
#include "../crypto/data-key.h"

/* the config line that marks an encrypted store */
#define STORE_CRYPT_CONFIG_LINE "encryption aes-256-gcm"
/* DIR/crypt-check: "roam-crypt-check 1 <32 hex>\n", the key's check value */
#define STORE_CRYPT_CHECK_FILE "crypt-check"

typedef struct StoreCrypt StoreCrypt;

/* 1 when config text marks an encrypted store, 0 when not, -EBADMSG for an
 * encryption this roam does not know. */
int store_crypt_config(const char *text);

int store_crypt_new(StoreCrypt **ret);
void store_crypt_free(StoreCrypt *sc);
/* Installs the keys of dk, after checking dir's check file (written when
 * missing): -EKEYREJECTED with detail for another key. */
int store_crypt_unlock(StoreCrypt *sc, int dir_fd, const char *path, const uint8_t dk[static DATA_KEY_SIZE]);
void store_crypt_forget(StoreCrypt *sc);
bool store_crypt_unlocked(StoreCrypt *sc);

int store_crypt_name(StoreCrypt *sc, const RoamId *id, RoamId *ret);
int store_crypt_id(StoreCrypt *sc, const RoamId *name, RoamId *ret);
int store_crypt_seal(StoreCrypt *sc, SealCtx *c, SealKind kind, const RoamId *id, const void *in, size_t len,
                     void *out, size_t cap, size_t *ret_len);
/* -EBADMSG with a detail that names the chunk or object. */
int store_crypt_open(StoreCrypt *sc, SealCtx *c, SealKind kind, const RoamId *id, const void *in, size_t len,
                     void *out, size_t cap, size_t *ret_len);
