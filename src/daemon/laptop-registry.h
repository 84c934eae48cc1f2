/* SPDX-License-Identifier: MIT */
#pragma once

/* The server's record of paired laptops and of the sessions they hold
 * offline (catalog tables "laptops" and "offline_grants", migration step 4).
 *
 * A laptop is its Ed25519 public key (crypto/sign-key.h): its id is the
 * key's fingerprint, its display name only a label. A session offline on a
 * laptop has the owner "laptop:ID" in the sessions table, and a grant row
 * here (when it was taken, the epoch, the lease). Nothing a request body
 * names is believed: the id comes from a verified signature (api-laptop.c).
 *
 * Every function is thread-safe (the catalog's lock) and returns 0 or a
 * negative errno with a detail. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../catalog/catalog.h"
#include "../crypto/sign-key.h"
#include "../session/handoff.h"

#define LAPTOP_HOLDER_PREFIX "laptop:"
#define LAPTOP_NAME_MAX 64

typedef struct LaptopRecord {
        char id[SIGN_KEY_ID_LEN + 1];
        uint8_t public_key[SIGN_PUBLIC_SIZE];
        char name[LAPTOP_NAME_MAX + 1];
        char user[LAPTOP_NAME_MAX + 1];
        int64_t paired, last_seen;
        int64_t revoked; /* unix time, 0 = valid */
} LaptopRecord;

/* In a fleet the laptops and the offline grants live in etcd, not in the
 * catalog (laptop-fleet.h): once a backend is set for catalog c, every
 * function below given c goes to it (grant_set and grant_drop are then no-ops:
 * the fleet's ownership transactions write and remove the grant with the
 * owner). The backend must outlive every use; NULL unsets it. */
struct LaptopGrant;
typedef struct LaptopBackend {
        int (*pair)(void *userdata, const uint8_t pub[static SIGN_PUBLIC_SIZE], const char *name, const char *user,
                    LaptopRecord *ret, bool *ret_again);
        int (*get)(void *userdata, const char *id, LaptopRecord *ret);
        int (*list)(void *userdata, const char *user, LaptopRecord **ret, size_t *ret_n);
        int (*revoke)(void *userdata, const char *id_prefix, LaptopRecord *ret);
        int (*seen)(void *userdata, const char *id);
        int (*grant_get)(void *userdata, const char *session, struct LaptopGrant *ret);
        int (*grant_renew)(void *userdata, const char *session, const char *laptop, int64_t epoch,
                           int64_t lease_until);
} LaptopBackend;
void laptop_registry_set_backend(Catalog *c, const LaptopBackend *b, void *userdata);
/* True when c's laptops live in a fleet (a backend is set). */
bool laptop_registry_in_fleet(Catalog *c);

/* The laptop id in an owner string "laptop:ID", or NULL for any other owner. */
const char *laptop_holder_id(const char *owner);

/* Records a laptop for user. The same key again for the same user is fine
 * (*ret_again; the name is updated). -EEXIST when the key belongs to another
 * user's laptop, -EKEYREVOKED when it was revoked (a revoked laptop pairs
 * with a new key), both with a detail. */
int laptop_pair(Catalog *c, const uint8_t pub[static SIGN_PUBLIC_SIZE], const char *name, const char *user,
                LaptopRecord *ret, bool *ret_again);
/* -ENOENT (with detail) for an unknown id. */
int laptop_get(Catalog *c, const char *id, LaptopRecord *ret);
/* All laptops, or only user's (user non-NULL), oldest first. Caller frees *ret. */
int laptop_list(Catalog *c, const char *user, LaptopRecord **ret, size_t *ret_n);
/* Revokes the laptop whose id starts with id_prefix (catalog_find_prefix()).
 * Revoking twice is fine; ret gets the record. */
int laptop_revoke(Catalog *c, const char *id_prefix, LaptopRecord *ret);
/* Notes a verified request of the laptop (last_seen, to the minute). */
#define LAPTOP_SEEN_RESOLUTION_S 60
int laptop_seen(Catalog *c, const char *id);

typedef struct LaptopGrant {
        char laptop[SIGN_KEY_ID_LEN + 1];
        int64_t epoch;
        int64_t granted;     /* unix time */
        int64_t lease_until; /* unix time, 0 = no limit */
} LaptopGrant;

/* Records that session is offline on laptop at epoch. The same laptop and
 * epoch again (a repeated take offline) keeps the first grant's time. */
int laptop_grant_set(Catalog *c, const char *session, const char *laptop, int64_t epoch, int64_t lease_until);
/* -ENOENT when the session is not offline on a laptop here. */
int laptop_grant_get(Catalog *c, const char *session, LaptopGrant *ret);
/* A new lease end for the grant of laptop at epoch; -ESTALE when that is not
 * the session's grant (any more). */
int laptop_grant_renew(Catalog *c, const char *session, const char *laptop, int64_t epoch, int64_t lease_until);
int laptop_grant_drop(Catalog *c, const char *session);

/* For people: owner as is, or for "laptop:ID" "laptop 'alice-t14' (id
 * 3f2a...) since 2026-12-02 14:00:00 UTC" (with the lease's end when
 * with_lease, and "revoked" when it is). */
void laptop_owner_describe(Catalog *c, const char *session, const char *owner, bool with_lease, char *buf,
                           size_t size);

/* {"id", "name", "since", "lease_until", "revoked"} of the laptop that holds
 * session (owner "laptop:ID"), else JSON null. */
json_t *laptop_holder_json(Catalog *c, const char *session, const char *owner);

/* A SessionOwnerDescribeFn (session.h) over catalog (the userdata):
 * "laptop 'alice-t14' (id 3f2a...)" for "laptop:ID", else owner. */
void laptop_owner_describer(void *catalog, const char *session, const char *owner, char *buf, size_t size);

/* handoff_reclaim() (admin: the server takes a session back from a lost or
 * revoked laptop) and the end of its grant; ret->lost_owner is described for
 * people (laptop_owner_describe()). */
int laptop_reclaim(Catalog *c, SessionHost *h, const char *name, ReclaimResult *ret);
