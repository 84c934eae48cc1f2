/* SPDX-License-Identifier: MIT */
#pragma once

/* For the modules that keep tables in the catalog (catalog.c, session-db.c,
 * laptop-registry.c): the SQLite helpers they share. */

#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/macro.h"

static inline void catalog_finalizep(sqlite3_stmt **st) {
        if (*st)
                sqlite3_finalize(*st);
}
#define _cleanup_stmt_ _cleanup_(catalog_finalizep)

/* A copy of text column i (NULL for SQL NULL; *oom set when the copy failed). */
static inline char *catalog_col_text(sqlite3_stmt *st, int i, bool *oom) {
        const unsigned char *t = sqlite3_column_text(st, i);
        if (!t)
                return NULL;
        char *s = strdup((const char *) t);
        if (!s)
                *oom = true;
        return s;
}
