/* SPDX-License-Identifier: MIT */
#pragma once

/* The sessions table of the catalog (schema: migration step 2 in
 * src/catalog/catalog.c). One row per session this host knows:
 *
 *   name             primary key (name_is_valid())
 *   user             the user it belongs to
 *   image, image_id  the master image's name at creation and its index id
 *   config           VM config JSON (vm.h)
 *   state            created | running | paused | stopped | crashed | away
 *   owner, epoch     "local" or the URL of the host that owns the session;
 *                    the epoch grows on every change of owner (move)
 *   last_checkpoint  hex manifest id of the newest checkpoint taken or
 *                    restored here (the parent of the next one), or NULL
 *   checkpoints      sequence number of the newest checkpoint ref
 *   created, updated unix times
 *
 * Pure data access: no QEMU, no files. Every function takes the catalog's
 * lock around its statements (thread-safe) and returns 0 or a negative errno
 * with an error detail. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../catalog/catalog.h"

typedef enum SessionState {
        SESSION_CREATED,
        SESSION_RUNNING,
        SESSION_PAUSED,
        SESSION_STOPPED,
        SESSION_CRASHED,
        SESSION_AWAY, /* owned by another host */
        _SESSION_STATE_MAX,
} SessionState;

#define SESSION_OWNER_LOCAL "local"

/* "created", ...; NULL for an invalid value. */
const char *session_state_to_string(SessionState s);
/* The state, or -EINVAL. */
int session_state_from_string(const char *s);

typedef struct SessionRow {
        char *name;
        char *user;
        char *image;
        char *image_id;
        char *config; /* JSON text */
        SessionState state;
        char *owner;
        int64_t epoch;
        char *last_checkpoint; /* NULL if none */
        int64_t checkpoints;
        int64_t created, updated;
} SessionRow;

/* Frees the strings of a row (accepts a zeroed row). */
void session_row_done(SessionRow *r);
void session_rows_free(SessionRow *rows, size_t n);

/* Inserts a new row (created/updated set to now when 0; owner "local" when
 * NULL). -EEXIST (with detail) if the name is taken. */
int session_db_insert(Catalog *c, const SessionRow *row);
/* -ENOENT (with detail "session 'X' not found (try 'roam session list')"). */
int session_db_get(Catalog *c, const char *name, SessionRow *ret);
/* All rows by name. Caller frees with session_rows_free(). */
int session_db_list(Catalog *c, SessionRow **ret, size_t *ret_n);
int session_db_delete(Catalog *c, const char *name);

int session_db_set_state(Catalog *c, const char *name, SessionState state);
int session_db_set_config(Catalog *c, const char *name, const char *config_json);
/* Records a checkpoint: last_checkpoint = id_hex and, when seq > 0,
 * checkpoints = seq. */
int session_db_set_checkpoint(Catalog *c, const char *name, const char *id_hex, int64_t seq);
/* Changes owner and epoch if the current epoch is expected_epoch (-ESTALE
 * otherwise: somebody else moved it meanwhile). The state becomes "away"
 * for a remote owner and "stopped" when it becomes local (the caller sets
 * running after a restore). */
int session_db_set_owner(Catalog *c, const char *name, const char *owner, int64_t epoch, int64_t expected_epoch);
