/* SPDX-License-Identifier: MIT */
#pragma once

/* A laptop's identity (the laptop daemon's side of api-laptop.h): its
 * Ed25519 key, made on first start and kept in HOME/laptop.key (mode 0600);
 * its pairing with the server; and a RemoteSigner that signs the requests
 * that take, renew or hand back a session with a server nonce.
 *
 * Nonces come in small batches (POST /v1/laptops/nonces) and are kept in a
 * pool, topped up in the background (laptop_identity_refill()), so that a
 * take offline costs no extra round trip; a nonce older than half its ttl
 * is not used. Thread-safe. */

#include <jansson.h>
#include <stdbool.h>

#include "../crypto/sign-key.h"
#include "../sync/remote.h"

#define LAPTOP_KEY_FILE "laptop.key"
/* {"url": URL, "fingerprint": "sha256:HEX"}: the server's certificate as
 * pinned at the last pairing over https (written atomically) */
#define LAPTOP_PIN_FILE "server-pin.json"

typedef struct LaptopIdentity LaptopIdentity;

typedef struct LaptopIdentityOptions {
        const char *home;       /* HOME/laptop.key */
        const char *name;       /* display name (valid per name_is_valid()) */
        const char *server_url; /* nonces and pairing */
        const char *token;      /* with the pinned fingerprint (laptop_pin_resolve()) */
        const char *cacert;
} LaptopIdentityOptions;

/* Loads the key, or makes and saves one when there is none. */
int laptop_identity_open(const LaptopIdentityOptions *o, LaptopIdentity **ret);
void laptop_identity_free(LaptopIdentity *li);
static inline void laptop_identity_freep(LaptopIdentity **li) {
        if (*li)
                laptop_identity_free(*li);
}

const char *laptop_identity_id(const LaptopIdentity *li);
const char *laptop_identity_name(const LaptopIdentity *li);
/* For RemoteOptions.signer: signs POST /v1/laptops and POST
 * /v1/sessions/NAME/{offline,renew,move-in,finalize-in,stage}. Borrowed. */
const RemoteSigner *laptop_identity_signer(LaptopIdentity *li);

/* Registers the key with the server (POST /v1/laptops, idempotent) through
 * server, a Remote with this identity's signer. Over a pinned https Remote,
 * the pin is then kept in HOME/server-pin.json. */
int laptop_identity_pair(LaptopIdentity *li, Remote *server);
bool laptop_identity_paired(LaptopIdentity *li);
/* Keeps a few fresh nonces in the pool (one request when it is low). */
int laptop_identity_refill(LaptopIdentity *li);

/* The token to use with the server, carrying the fingerprint of its
 * certificate to pin ("TOKEN@sha256:HEX"; caller frees): fingerprint (the
 * command line) wins over the one in token, which wins over
 * HOME/server-pin.json when that names the same server_url. An https server
 * with none of them is -EINVAL with what to do (no trust on first use); an
 * http one gets token as it is. */
int laptop_pin_resolve(const char *home, const char *server_url, const char *token, const char *fingerprint,
                       char **ret_token);

/* True for a request that a laptop signs (and a server checks). */
bool laptop_request_is_signed(const char *method, const char *path);
