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
 * returns -EACCES for a missing, malformed or unknown token (401), or
 * another errno when the catalog fails (503/500; never let through). */
int auth_http_hook(HttpRequest *req, void *catalog);

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
