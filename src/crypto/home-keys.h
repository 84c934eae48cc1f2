/* SPDX-License-Identifier: MIT */
#pragma once

/* The keys of an encrypted laptop home (docs/store-format.md, "Keys"):
 *
 *   HOME/keys/home.key     the home key: X25519, its private half sealed
 *                          under the passphrase (key-file.h); made by 'roam
 *                          laptop init' (or the laptop daemon's first start
 *                          with --passphrase-file); its presence makes the
 *                          home encrypted
 *   HOME/keys/data.key     the user's data key wrapped to the home key: by
 *                          the server at pairing, or made here when the
 *                          laptop has no server ('roam unlock' of a home
 *                          without one)
 *   RUNDIR/data.key        the data key while unlocked: 32 bytes, mode 0600,
 *                          in the home's RAM directory (tmpfs, 0700), so that
 *                          every roam process of the home (daemon and
 *                          commands) reads it and none of it is on the disk;
 *                          gone at 'roam lock' and at power-off
 *
 * and on a server, its users' data keys:
 *
 *   HOME/keys/users/USER.key   32 random bytes (0600), made on first need
 *
 * RUNDIR is the home's RAM directory: $ROAM_RAM_DIR, else /dev/shm/roam-<the
 * first 12 hex digits of SHA-256 of the absolute home> (session.h).
 *
 * Errors: negative errno with a one-line detail that says what to run. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data-key.h"
#include "key-file.h"

#define HOME_KEYS_DIR "keys"
#define HOME_KEY_FILE "keys/home.key"
#define HOME_DATA_KEY_FILE "keys/data.key"
#define RUNTIME_KEY_NAME "data.key"

/* The home's RAM directory (see above). Caller frees. */
int home_runtime_dir(const char *home, char **ret);
/* 0 when dir (or its nearest existing parent) is on tmpfs or ramfs, else
 * -EXDEV with a detail. */
int check_on_tmpfs(const char *dir, const char *what);

/* True when the home has a home key (is encrypted). */
bool home_keys_encrypted(const char *home);
/* Makes the home key under passphrase: -EEXIST when there is one. */
int home_keys_init(const char *home, const char *passphrase, size_t len);
/* The home key's public half (what the server wraps the data key to). */
int home_keys_public(const char *home, uint8_t ret[static X25519_KEY_SIZE]);
/* True when the home holds a wrapped data key. */
bool home_keys_have_data_key(const char *home);
/* Keeps a wrapped data key that the server sent (checked against the home
 * key's public half only by opening it later): -EEXIST when there is one. */
int home_keys_save_wrapped(const char *home, const uint8_t wrapped[static WRAPPED_KEY_SIZE]);

/* Opens the home key with passphrase (-EACCES: wrong) and the data key with
 * it; a home without a data key gets one of its own first (origin local).
 * Writes the unlocked key to the RAM directory and returns it. */
int home_keys_unlock(const char *home, const char *passphrase, size_t len, uint8_t ret[static DATA_KEY_SIZE]);
/* A new passphrase for the home key (the old one opens it first). */
int home_keys_change_passphrase(const char *home, const char *old_pass, size_t old_len, const char *new_pass,
                                size_t new_len);
/* The unlocked data key: -ENOKEY (with detail: run 'roam unlock') when the
 * home is locked. */
int home_keys_unlocked(const char *home, uint8_t ret[static DATA_KEY_SIZE]);
/* Forgets the unlocked key (overwritten, then removed); 0 when there was none. */
int home_keys_lock(const char *home);

/* A passphrase from a file (the first line, without its newline), or asked
 * twice on the terminal when confirm. Caller wipes and frees *ret. */
int passphrase_from_file(const char *path, char **ret, size_t *ret_len);
int passphrase_ask(const char *prompt, bool confirm, char **ret, size_t *ret_len);
/* --passphrase-file, else $ROAM_PASSPHRASE_FILE, else NULL. */
const char *passphrase_file_default(const char *arg);

/* The server's data key of user (made on first need). */
int user_data_key(const char *home, const char *user, uint8_t ret[static DATA_KEY_SIZE]);
