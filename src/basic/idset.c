/* SPDX-License-Identifier: MIT */
#include "idset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct IdSet {
        RoamId *slots; /* null id = empty slot */
        size_t cap;    /* power of two */
        size_t n;
};

IdSet *idset_new(void) {
        IdSet *s = calloc(1, sizeof *s);
        if (!s)
                return NULL;
        s->cap = 1024;
        s->slots = calloc(s->cap, sizeof(RoamId));
        if (!s->slots) {
                free(s);
                return NULL;
        }
        return s;
}

void idset_free(IdSet *s) {
        if (!s)
                return;
        free(s->slots);
        free(s);
}

static size_t slot_of(const RoamId *id, size_t cap) {
        return (size_t) get_le64(id->b) & (cap - 1);
}

static void insert_raw(RoamId *slots, size_t cap, const RoamId *id) {
        size_t i = slot_of(id, cap);
        while (!id_is_null(&slots[i]))
                i = (i + 1) & (cap - 1);
        slots[i] = *id;
}

int idset_add(IdSet *s, const RoamId *id) {
        if (id_is_null(id))
                return -EINVAL;
        if (idset_contains(s, id))
                return 0;
        if ((s->n + 1) * 4 > s->cap * 3) {
                size_t ncap = s->cap * 2;
                RoamId *ns = calloc(ncap, sizeof(RoamId));
                if (!ns)
                        return -ENOMEM;
                for (size_t i = 0; i < s->cap; i++)
                        if (!id_is_null(&s->slots[i]))
                                insert_raw(ns, ncap, &s->slots[i]);
                free(s->slots);
                s->slots = ns;
                s->cap = ncap;
        }
        insert_raw(s->slots, s->cap, id);
        s->n++;
        return 1;
}

bool idset_contains(const IdSet *s, const RoamId *id) {
        if (id_is_null(id))
                return false;
        size_t i = slot_of(id, s->cap);
        while (!id_is_null(&s->slots[i])) {
                if (id_equal(&s->slots[i], id))
                        return true;
                i = (i + 1) & (s->cap - 1);
        }
        return false;
}

size_t idset_size(const IdSet *s) {
        return s->n;
}

bool idset_next(const IdSet *s, size_t *pos, RoamId *ret) {
        while (*pos < s->cap) {
                size_t i = (*pos)++;
                if (!id_is_null(&s->slots[i])) {
                        *ret = s->slots[i];
                        return true;
                }
        }
        return false;
}
