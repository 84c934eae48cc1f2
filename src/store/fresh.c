/* SPDX-License-Identifier: MIT */
#include "fresh.h"

#include <stdlib.h>
#include <string.h>

#include "../basic/macro.h"
#include "../basic/util.h"

struct FreshEntry {
        RoamId id;
        uint8_t *data; /* NULL: a free slot */
        size_t len;
};

void fresh_init(Fresh *f) {
        *f = (Fresh){ 0 };
        pthread_mutex_init(&f->lock, NULL);
}

/* Under the lock. */
static void drop_all(Fresh *f) {
        for (size_t i = 0; i < f->cap; i++)
                free(f->slot[i].data);
        free(f->slot);
        f->slot = NULL;
        f->cap = f->n = f->bytes = 0;
}

/* Under the lock: closes a window whose time is up. */
static bool is_open(Fresh *f) {
        if (f->until && now_ns() >= f->until) {
                drop_all(f);
                f->until = 0;
        }
        return f->until != 0;
}

void fresh_done(Fresh *f) {
        drop_all(f);
        pthread_mutex_destroy(&f->lock);
}

void fresh_open(Fresh *f, unsigned seconds) {
        pthread_mutex_lock(&f->lock);
        if (seconds == 0) {
                drop_all(f);
                f->until = 0;
        } else
                f->until = now_ns() + (uint64_t) seconds * 1000000000ULL;
        pthread_mutex_unlock(&f->lock);
}

bool fresh_is_open(Fresh *f) {
        pthread_mutex_lock(&f->lock);
        bool open = is_open(f);
        pthread_mutex_unlock(&f->lock);
        return open;
}

static size_t slot_of(const Fresh *f, const RoamId *id) {
        uint64_t h;
        memcpy(&h, id, sizeof h); /* a SHA-256: its first bytes spread well */
        size_t i = (size_t) h & (f->cap - 1);
        while (f->slot[i].data && memcmp(&f->slot[i].id, id, sizeof *id) != 0)
                i = (i + 1) & (f->cap - 1);
        return i;
}

/* Under the lock: room for one more entry (at most half the slots used). */
static bool grow(Fresh *f) {
        if ((f->n + 1) * 2 <= f->cap)
                return true;
        size_t cap = f->cap ? f->cap * 2 : 256;
        FreshEntry *old = f->slot, *slot = calloc(cap, sizeof *slot);
        if (!slot)
                return false;
        size_t old_cap = f->cap;
        f->slot = slot;
        f->cap = cap;
        for (size_t i = 0; i < old_cap; i++)
                if (old[i].data)
                        f->slot[slot_of(f, &old[i].id)] = old[i];
        free(old);
        return true;
}

/* Under the lock: whether id's copy would be kept (the window open, room,
 * not here yet). */
static bool wants(Fresh *f, const RoamId *id, size_t len) {
        return is_open(f) && len > 0 && f->bytes + len <= FRESH_MAX_BYTES && grow(f) &&
               !f->slot[slot_of(f, id)].data;
}

void fresh_put(Fresh *f, const RoamId *id, const void *data, size_t len) {
        pthread_mutex_lock(&f->lock);
        bool want = wants(f, id, len);
        pthread_mutex_unlock(&f->lock);
        if (!want)
                return;
        /* the copy (and the page faults of new memory) outside the lock: the
         * store threads of a hand-over put chunks at the same time */
        uint8_t *copy = malloc(len);
        if (!copy)
                return;
        memcpy(copy, data, len);
        pthread_mutex_lock(&f->lock);
        if (wants(f, id, len)) {
                f->slot[slot_of(f, id)] = (FreshEntry){ .id = *id, .data = TAKE_PTR(copy), .len = len };
                f->n++;
                f->bytes += len;
        }
        pthread_mutex_unlock(&f->lock);
        free(copy);
}

int fresh_get(Fresh *f, const RoamId *id, void *buf, size_t cap, size_t *ret_len) {
        int r = 0;
        pthread_mutex_lock(&f->lock);
        if (is_open(f) && f->n > 0) {
                const FreshEntry *e = &f->slot[slot_of(f, id)];
                if (e->data && e->len <= cap) {
                        memcpy(buf, e->data, e->len);
                        *ret_len = e->len;
                        r = 1;
                }
        }
        pthread_mutex_unlock(&f->lock);
        return r;
}

void fresh_forget(Fresh *f) {
        pthread_mutex_lock(&f->lock);
        drop_all(f);
        pthread_mutex_unlock(&f->lock);
}
