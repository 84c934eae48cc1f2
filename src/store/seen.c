/* SPDX-License-Identifier: MIT */
#include "seen.h"

#include <time.h>

#include "../basic/macro.h"

static uint64_t seen_clock(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

void seen_init(Seen *v) {
        *v = (Seen) { 0 };
        pthread_mutex_init(&v->lock, NULL);
}

void seen_done(Seen *v) {
        idset_free(v->cur);
        idset_free(v->prev);
        pthread_mutex_destroy(&v->lock);
}

/* Under the lock: drops what is older than two generations. */
static void seen_age(Seen *v, uint64_t now) {
        const uint64_t gen = (uint64_t) STORE_SEEN_S * 1000000000ULL;
        if (v->started && now - v->cur_start < gen)
                return; /* (a generation with nothing added yet is still one: its predecessor stays) */
        idset_free(v->prev);
        v->prev = now - v->cur_start < 2 * gen ? v->cur : (idset_free(v->cur), NULL);
        v->cur = NULL;
        v->cur_start = now;
        v->started = true;
}

bool seen_has_at(Seen *v, const RoamId *id, uint64_t now) {
        pthread_mutex_lock(&v->lock);
        seen_age(v, now);
        bool r = (v->cur && idset_contains(v->cur, id)) || (v->prev && idset_contains(v->prev, id));
        pthread_mutex_unlock(&v->lock);
        return r;
}

void seen_add_at(Seen *v, const RoamId *id, uint64_t now) {
        pthread_mutex_lock(&v->lock);
        seen_age(v, now);
        if (!v->cur)
                v->cur = idset_new();
        if (v->cur && idset_size(v->cur) < STORE_SEEN_MAX)
                (void) idset_add(v->cur, id); /* a cache: no memory, no entry */
        pthread_mutex_unlock(&v->lock);
}

bool seen_has(Seen *v, const RoamId *id) {
        return seen_has_at(v, id, seen_clock());
}

void seen_add(Seen *v, const RoamId *id) {
        seen_add_at(v, id, seen_clock());
}

void seen_forget(Seen *v) {
        pthread_mutex_lock(&v->lock);
        idset_free(TAKE_PTR(v->cur));
        idset_free(TAKE_PTR(v->prev));
        v->started = false;
        pthread_mutex_unlock(&v->lock);
}
