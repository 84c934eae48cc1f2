/* SPDX-License-Identifier: MIT */
#pragma once

/* Keys of encrypted laptops (docs/store-format.md "Keys", docs/sync-protocol.md):
 *
 * on a server:
 *   POST /v1/data-key      {"wrap_to": B64URL}, signed by a paired laptop
 *                          (api-laptop.h): the laptop's user's data key
 *                          (crypto/home-keys.h, made on first need) wrapped
 *                          to that X25519 public key, the laptop's home key;
 *                          200 {"wrapped": B64URL (108 bytes), "user": U}
 * on any daemon, admin (the local token):
 *   POST /v1/unlock        the daemon takes the key 'roam unlock' left in the
 *                          home's RAM directory; 409 while there is none
 *   POST /v1/lock          the daemon forgets its key: its store is locked
 *
 * and the laptop daemon's side: fetching the wrapped key after pairing. */

#include <stdbool.h>

#include "../sync/remote.h"
#include "api-laptop.h"
#include "daemon.h"

/* laptops: NULL on a daemon that pairs none. */
int api_keys_register(Daemon *d, ApiLaptop *laptops);

/* A paired laptop whose encrypted home has no data key yet: asks the server
 * for it (server: a Remote that signs as this laptop), keeps it, then
 * unlocks the store when $ROAM_PASSPHRASE_FILE is set. 0 when there is
 * nothing to do or it is done; logs what it did. */
int laptop_key_ensure(Daemon *d, Remote *server);
/* True when the daemon's store can be used (plain or unlocked); the log says
 * once when it is locked and what to run. */
bool laptop_key_usable(Daemon *d);
