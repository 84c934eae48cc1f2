/* SPDX-License-Identifier: MIT */
#pragma once

/* A growable hash set of RoamIds (open addressing; ids are uniformly
 * distributed already, so their first bytes are the hash). Not thread-safe. */

#include <stdbool.h>
#include <stddef.h>

#include "hash.h"

typedef struct IdSet IdSet;

IdSet *idset_new(void);
void idset_free(IdSet *s);
/* Returns 1 if added, 0 if already present, -ENOMEM. The null id is refused (-EINVAL). */
int idset_add(IdSet *s, const RoamId *id);
bool idset_contains(const IdSet *s, const RoamId *id);
size_t idset_size(const IdSet *s);
/* Iteration: *pos starts at 0; returns false at the end. */
bool idset_next(const IdSet *s, size_t *pos, RoamId *ret);
