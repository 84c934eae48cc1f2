/* SPDX-License-Identifier: MIT */
#pragma once

/* Who a request is and what it may touch: the bearer token, checked against
 * the catalog, becomes an Auth attached to the request; the ref policy of
 * docs/sync-protocol.md ("Tokens and roles") lives here, in one place.
 *
 *   role   read refs                       write refs
 *   admin  all                             all
 *   host   all                             all
 *   user   images/..., sessions/USER/...   sessions/USER/...
 *
 * Chunks and objects are content-addressed (knowing an id is knowing the
 * content's hash) and open to every role. */

#include "../catalog/catalog.h"
#include "../http/server.h"

typedef struct Auth {
        CatalogRole role;
        char *user; /* the user of a user token, else NULL */
} Auth;

void auth_free(Auth *a);

/* HttpAuthFn; userdata is the Catalog. Attaches an Auth to the request, or
 * returns -EACCES for a missing, malformed or unknown token (401),
 * HTTP_AUTH_THROTTLED for a client address that presented too many refused
 * tokens (429), or another errno when the catalog fails (503/500; never let
 * through). */
int auth_http_hook(HttpRequest *req, void *catalog);

/* Failed logins: a client address that presents more than max refused
 * tokens within AUTH_THROTTLE_WINDOW_S seconds is refused (429, without a
 * look at its token) until the window after the last of them has passed. 0 =
 * no limit. Process-wide; the table of addresses is bounded
 * (AUTH_THROTTLE_SLOTS, the oldest entry gives way). */
#define AUTH_FAILED_LOGINS_DEFAULT 20
#define AUTH_THROTTLE_WINDOW_S 60
#define AUTH_THROTTLE_SLOTS 1024
void auth_throttle_set(unsigned max);
/* For tests: the verdict for addr at time now; record a failure. */
int auth_throttle_check(const char *addr, int64_t now);
void auth_throttle_fail(const char *addr, int64_t now);

/* The Auth attached by auth_http_hook() (NULL when the server runs without
 * authentication). Owned by the request. */
static inline const Auth *auth_of(const HttpRequest *req) {
        return http_request_auth(req);
}

typedef enum AuthAccess {
        AUTH_ACCESS_NONE,  /* answer 404, as if the ref did not exist */
        AUTH_ACCESS_READ,  /* read; a write answers 403 */
        AUTH_ACCESS_WRITE, /* read and write */
} AuthAccess;

/* The access a (NULL = unrestricted) has to the ref name. */
AuthAccess auth_ref_access(const Auth *a, const char *ref);
