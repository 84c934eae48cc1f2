/* SPDX-License-Identifier: MIT */
#pragma once

/* The store of a home as the commands and the daemon open it: where it is
 * (location.h), whether it is encrypted and with which key
 * (crypto/home-keys.h, docs/store-format.md "Encryption at rest").
 *
 * A home with a home key (HOME/keys/home.key: 'roam laptop init', or a
 * laptop daemon's first start) makes its store encrypted when it creates
 * it. An encrypted store is unlocked with the key in the home's RAM
 * directory ('roam unlock' put it there), else with the passphrase in
 * $ROAM_PASSPHRASE_FILE when that is set (tests, unattended laptops). */

#include <stdbool.h>

#include "store.h"

typedef enum HomeStoreFlags {
        /* the laptop daemon: a home without a store and without a home key
         * is made encrypted (its passphrase from $ROAM_PASSPHRASE_FILE; with
         * none: refused, saying to run 'roam laptop init'); a home that has
         * a plain store stays plain */
        HOME_STORE_LAPTOP = 1 << 0,
        /* open it locked rather than fail (the daemon waits for 'roam unlock') */
        HOME_STORE_ALLOW_LOCKED = 1 << 1,
        /* never make a data key of this laptop's own when unlocking: the
         * server's comes at pairing (a laptop daemon with --server) */
        HOME_STORE_SERVER_KEY = 1 << 2,
} HomeStoreFlags;

/* Opens home's store with o (o->encrypted is set from the home). A locked
 * encrypted store: -ENOKEY with "this laptop is locked (run 'roam unlock')"
 * unless HOME_STORE_ALLOW_LOCKED. Caller frees with store_free(). */
int home_store_open(const char *home, const StoreOptions *o, unsigned flags, Store **ret);

/* Unlocks an encrypted s: with the home's unlocked key, else (passphrase
 * true) with $ROAM_PASSPHRASE_FILE. 0 when unlocked (or plain), -ENOKEY with
 * detail when it stays locked. */
int home_store_unlock(const char *home, Store *s, unsigned flags);
