/* SPDX-License-Identifier: MIT */
#include "auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
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

/* ---- failed logins ---- */

typedef struct Failures {
        char addr[64]; /* "" = free */
        unsigned count;
        int64_t first, last;
} Failures;

static pthread_mutex_t throttle_lock = PTHREAD_MUTEX_INITIALIZER;
static Failures throttle[AUTH_THROTTLE_SLOTS];
static unsigned throttle_max = AUTH_FAILED_LOGINS_DEFAULT;

void auth_throttle_set(unsigned max) {
        pthread_mutex_lock(&throttle_lock);
        throttle_max = max;
        memset(throttle, 0, sizeof throttle);
        pthread_mutex_unlock(&throttle_lock);
}

/* The entry of addr, or (make) a free or else the stalest one. Under the lock. */
static Failures *entry_of(const char *addr, bool make) {
        Failures *victim = NULL;
        for (size_t i = 0; i < AUTH_THROTTLE_SLOTS; i++) {
                Failures *f = &throttle[i];
                if (f->addr[0] && !strcmp(f->addr, addr))
                        return f;
                bool better = !victim || (!f->addr[0] && victim->addr[0]) ||
                              (f->addr[0] && victim->addr[0] && f->last < victim->last);
                if (make && better)
                        victim = f;
        }
        if (!make)
                return NULL;
        *victim = (Failures) { 0 };
        snprintf(victim->addr, sizeof victim->addr, "%s", addr);
        return victim;
}

int auth_throttle_check(const char *addr, int64_t now) {
        int r = 0;
        pthread_mutex_lock(&throttle_lock);
        Failures *f = throttle_max ? entry_of(addr, false) : NULL;
        if (f && now - f->last >= AUTH_THROTTLE_WINDOW_S)
                *f = (Failures) { 0 }; /* quiet for a window: forgiven */
        else if (f && f->count > throttle_max)
                r = err_set(HTTP_AUTH_THROTTLED,
                            "too many refused tokens from %s (%u within %d s): try again in %lld s", addr, f->count,
                            AUTH_THROTTLE_WINDOW_S, (long long) (AUTH_THROTTLE_WINDOW_S - (now - f->last)));
        pthread_mutex_unlock(&throttle_lock);
        return r;
}

void auth_throttle_fail(const char *addr, int64_t now) {
        pthread_mutex_lock(&throttle_lock);
        Failures *f = throttle_max ? entry_of(addr, true) : NULL;
        if (f) {
                if (!f->count || now - f->first >= AUTH_THROTTLE_WINDOW_S) {
                        f->count = 0;
                        f->first = now;
                }
                f->count++;
                f->last = now;
        }
        pthread_mutex_unlock(&throttle_lock);
}

int auth_http_hook(HttpRequest *req, void *catalog) {
        const char *peer = http_request_peer(req);
        int64_t now = (int64_t) time(NULL);
        int r = auth_throttle_check(peer, now);
        if (r < 0)
                return r;
        const char *token = http_request_bearer(req);
        if (!token) /* no token at all is no guess: not counted */
                return -EACCES;
        Auth *a = calloc(1, sizeof *a);
        if (!a)
                return -EACCES;
        r = catalog_token_check(catalog, token, &a->role, &a->user);
        if (r == -EACCES)
                auth_throttle_fail(peer, now);
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
