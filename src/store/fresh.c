/* SPDX-License-Identifier: MIT */
#include "fresh.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

/* Under the lock: a piece of the reserved memory for a copy of len bytes, or
 * NULL (none left, too long, or none reserved). */
static uint8_t *piece_take(Fresh *f, size_t len) {
        if (len > f->piece || f->n_free == 0)
                return NULL;
        return f->slab + (size_t) f->free_pieces[--f->n_free] * f->piece;
}

static bool is_piece(const Fresh *f, const uint8_t *p) {
        return f->slab && p >= f->slab && p < f->slab + f->slab_len;
}

/* Under the lock: a copy's memory back where it came from. */
static void copy_free(Fresh *f, uint8_t *p) {
        if (is_piece(f, p))
                f->free_pieces[f->n_free++] = (uint32_t) ((size_t) (p - f->slab) / f->piece);
        else
                free(p);
}

/* Under the lock. */
static void drop_all(Fresh *f) {
        for (size_t i = 0; i < f->cap; i++)
                if (f->slot[i].data)
                        copy_free(f, f->slot[i].data);
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
        if (f->slab)
                (void) munmap(f->slab, f->slab_len);
        free(f->free_pieces);
        pthread_mutex_destroy(&f->lock);
}

#define HUGE_PAGE (2u << 20)

int fresh_reserve(Fresh *f, size_t piece, size_t bytes) {
        size_t n = piece > 0 ? MIN(bytes / piece, (size_t) UINT32_MAX) : 0;
        if (n == 0)
                return 0;
        size_t len = n * piece;
        /* aligned to a huge page, so that the kernel can back it with them */
        uint8_t *raw = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED)
                return -errno;
        uint8_t *slab = (uint8_t *) (((uintptr_t) raw + HUGE_PAGE - 1) & ~(uintptr_t) (HUGE_PAGE - 1));
        size_t head = (size_t) (slab - raw);
        if (head > 0)
                (void) munmap(raw, head);
        if (HUGE_PAGE - head > 0)
                (void) munmap(slab + len, HUGE_PAGE - head);
        (void) madvise(slab, len, MADV_HUGEPAGE); /* a hint: without, 4 KiB pages */
        memset(slab, 0, len);                     /* every page touched now */
        uint32_t *free_pieces = malloc(n * sizeof *free_pieces);
        if (!free_pieces) {
                (void) munmap(slab, len);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                free_pieces[i] = (uint32_t) (n - 1 - i); /* the first piece on top */
        pthread_mutex_lock(&f->lock);
        bool busy = f->slab != NULL;
        if (!busy) {
                f->slab = slab;
                f->slab_len = len;
                f->piece = piece;
                f->free_pieces = free_pieces;
                f->n_free = n;
        }
        pthread_mutex_unlock(&f->lock);
        if (busy) {
                (void) munmap(slab, len);
                free(free_pieces);
                return -EBUSY;
        }
        return 0;
}

size_t fresh_reserve_free(Fresh *f) {
        pthread_mutex_lock(&f->lock);
        size_t n = f->n_free;
        pthread_mutex_unlock(&f->lock);
        return n;
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
        uint8_t *copy = want ? piece_take(f, len) : NULL;
        pthread_mutex_unlock(&f->lock);
        if (!want)
                return;
        /* the copy (and the page faults of new memory, when it is not a
         * reserved piece) outside the lock: the store threads of a hand-over
         * put chunks at the same time */
        if (!copy && !(copy = malloc(len)))
                return;
        memcpy(copy, data, len);
        pthread_mutex_lock(&f->lock);
        if (wants(f, id, len)) {
                f->slot[slot_of(f, id)] = (FreshEntry){ .id = *id, .data = TAKE_PTR(copy), .len = len };
                f->n++;
                f->bytes += len;
        } else
                copy_free(f, TAKE_PTR(copy));
        pthread_mutex_unlock(&f->lock);
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
