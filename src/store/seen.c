/* SPDX-License-Identifier: MIT */
#include "seen.h"

#include "../basic/macro.h"
#include "../basic/util.h"

void seen_init(Seen *v) {
        *v = (Seen) { 0 };
        pthread_mutex_init(&v->lock, NULL);
}

void seen_done(Seen *v) {
        idset_free(v->cur);
        idset_free(v->prev);
        pthread_mutex_destroy(&v->lock);
}

/* Under the lock: a new generation every STORE_SEEN_S; the one before it
 * stays while what it holds was looked up in the store less than
 * STORE_SEEN_MAX_AGE_S ago, and while it is the generation just before. */
static void seen_age(Seen *v, uint64_t now) {
        const uint64_t gen = (uint64_t) STORE_SEEN_S * 1000000000ULL,
                       max_age = (uint64_t) STORE_SEEN_MAX_AGE_S * 1000000000ULL;
        if (v->started && now - v->cur_start < gen)
                return; /* (a generation with nothing added yet is still one: its predecessor stays) */
        idset_free(v->prev);
        v->prev = NULL;
        if (v->cur && now - v->cur_start < 2 * gen && now - v->cur_looked < max_age) {
                v->prev = v->cur;
                v->prev_looked = v->cur_looked;
        } else
                idset_free(v->cur);
        v->cur = NULL;
        v->cur_start = now;
        v->started = true;
}

/* Under the lock: id into the current generation, looked up at `looked`. */
static void seen_put(Seen *v, const RoamId *id, uint64_t looked) {
        if (!v->cur) {
                v->cur = idset_new();
                v->cur_looked = looked;
        }
        if (v->cur && idset_size(v->cur) < STORE_SEEN_MAX && idset_add(v->cur, id) > 0 && looked < v->cur_looked)
                v->cur_looked = looked; /* a cache: no memory, no entry */
}

bool seen_has_at(Seen *v, const RoamId *id, uint64_t now) {
        pthread_mutex_lock(&v->lock);
        seen_age(v, now);
        bool r = v->cur && idset_contains(v->cur, id);
        if (!r && v->prev && idset_contains(v->prev, id)) {
                /* still in use: it moves on with the current generation,
                 * which now holds a lookup as old as the previous one's */
                seen_put(v, id, v->prev_looked);
                r = true;
        }
        pthread_mutex_unlock(&v->lock);
        return r;
}

void seen_add_at(Seen *v, const RoamId *id, uint64_t now) {
        pthread_mutex_lock(&v->lock);
        seen_age(v, now);
        seen_put(v, id, now);
        pthread_mutex_unlock(&v->lock);
}

bool seen_has(Seen *v, const RoamId *id) {
        return seen_has_at(v, id, now_ns());
}

void seen_add(Seen *v, const RoamId *id) {
        seen_add_at(v, id, now_ns());
}

void seen_forget(Seen *v) {
        pthread_mutex_lock(&v->lock);
        idset_free(TAKE_PTR(v->cur));
        idset_free(TAKE_PTR(v->prev));
        v->started = false;
        pthread_mutex_unlock(&v->lock);
}
