/* SPDX-License-Identifier: MIT */
#include "nonce.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/base64.h"
#include "../basic/error.h"
#include "../basic/hash.h"
#include "../basic/util.h"

typedef struct Nonce {
        char text[REQSIG_NONCE_HEX_LEN + 1]; /* "" = free slot */
        char user[NAME_MAX_LEN + 1];
        int64_t issued;
} Nonce;

struct NonceTable {
        pthread_mutex_t lock;
        int64_t ttl;
        size_t max;
        Nonce *slots;
};

int nonce_table_new(size_t max, int64_t ttl_s, NonceTable **ret) {
        if (max == 0 || ttl_s <= 0)
                return -EINVAL;
        NonceTable *t = calloc(1, sizeof *t);
        if (t)
                t->slots = calloc(max, sizeof *t->slots);
        if (!t || !t->slots) {
                free(t);
                return -ENOMEM;
        }
        pthread_mutex_init(&t->lock, NULL);
        t->ttl = ttl_s;
        t->max = max;
        *ret = t;
        return 0;
}

void nonce_table_free(NonceTable *t) {
        if (!t)
                return;
        pthread_mutex_destroy(&t->lock);
        free(t->slots);
        free(t);
}

int64_t nonce_table_ttl(const NonceTable *t) {
        return t->ttl;
}

/* A free slot, else an expired one, else the oldest (expired nonces stay
 * while there is room, so that their use is told "expired"). Under the lock. */
static Nonce *slot_for_new(NonceTable *t, int64_t now) {
        Nonce *expired = NULL, *oldest = &t->slots[0];
        for (size_t i = 0; i < t->max; i++) {
                Nonce *n = &t->slots[i];
                if (!n->text[0])
                        return n;
                if (!expired && now - n->issued > t->ttl)
                        expired = n;
                if (n->issued < oldest->issued)
                        oldest = n;
        }
        return expired ? expired : oldest;
}

int nonce_issue(NonceTable *t, const char *user, int64_t now, char ret[static REQSIG_NONCE_HEX_LEN + 1]) {
        if (!user || strlen(user) > NAME_MAX_LEN)
                return -EINVAL;
        uint8_t raw[REQSIG_NONCE_SIZE];
        int r = random_bytes(raw, sizeof raw);
        if (r < 0)
                return err_set(r, "cannot get random bytes for a nonce: %s", strerror(-r));
        hex_encode(raw, sizeof raw, ret);
        pthread_mutex_lock(&t->lock);
        Nonce *n = slot_for_new(t, now);
        memcpy(n->text, ret, REQSIG_NONCE_HEX_LEN + 1);
        snprintf(n->user, sizeof n->user, "%s", user);
        n->issued = now;
        pthread_mutex_unlock(&t->lock);
        return 0;
}

int nonce_consume(NonceTable *t, const char *nonce, const char *user, int64_t now) {
        int r = err_set(-ESTALE, "nonce is unknown or used already (sign with a new one from POST /v1/laptops/nonces)");
        pthread_mutex_lock(&t->lock);
        for (size_t i = 0; nonce && nonce[0] && i < t->max; i++) {
                Nonce *n = &t->slots[i];
                if (strcmp(n->text, nonce))
                        continue;
                if (strcmp(n->user, user ? user : ""))
                        break; /* someone else's: leave it to its owner */
                if (now - n->issued > t->ttl)
                        r = err_set(-ETIME, "nonce expired %lld s ago (nonces live %lld s; sign with a new one)",
                                    (long long) (now - n->issued - t->ttl), (long long) t->ttl);
                else {
                        err_clear();
                        r = 0;
                }
                n->text[0] = 0;
                break;
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}
