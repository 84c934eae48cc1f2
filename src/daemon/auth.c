/* SPDX-License-Identifier: MIT */
#include "auth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"

void auth_free(Auth *a) {
        if (!a)
                return;
        free(a->user);
        free(a);
}

static void auth_free_void(void *p) {
        auth_free(p);
}

int auth_http_hook(HttpRequest *req, void *catalog) {
        const char *token = http_request_bearer(req);
        if (!token)
                return -EACCES;
        Auth *a = calloc(1, sizeof *a);
        if (!a)
                return -EACCES;
        int r = catalog_token_check(catalog, token, &a->role, &a->user);
        if (r < 0) {
                free(a);
                return r;
        }
        http_request_set_auth(req, a, auth_free_void);
        return 0;
}

/* True if ref is below dir ("images" matches "images/x", not "imagesx"). */
static bool below(const char *ref, const char *dir, const char *sub) {
        size_t n = strlen(dir);
        if (strncmp(ref, dir, n) || ref[n] != '/')
                return false;
        if (!sub)
                return true;
        ref += n + 1;
        n = strlen(sub);
        return !strncmp(ref, sub, n) && ref[n] == '/';
}

AuthAccess auth_ref_access(const Auth *a, const char *ref) {
        if (!a)
                return AUTH_ACCESS_WRITE;
        switch (a->role) {
        case CATALOG_ROLE_ADMIN:
        case CATALOG_ROLE_HOST:
                return AUTH_ACCESS_WRITE;
        case CATALOG_ROLE_USER:
                if (a->user && below(ref, "sessions", a->user))
                        return AUTH_ACCESS_WRITE;
                if (below(ref, "images", NULL))
                        return AUTH_ACCESS_READ;
                return AUTH_ACCESS_NONE;
        default:
                return AUTH_ACCESS_NONE;
        }
}
