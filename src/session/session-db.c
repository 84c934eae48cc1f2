/* SPDX-License-Identifier: MIT */
#include "session-db.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../catalog/catalog-sql.h"

static const char *const state_names[_SESSION_STATE_MAX] = {
        [SESSION_CREATED] = "created", [SESSION_RUNNING] = "running", [SESSION_PAUSED] = "paused",
        [SESSION_STOPPED] = "stopped", [SESSION_CRASHED] = "crashed", [SESSION_AWAY] = "away",
};

const char *session_state_to_string(SessionState s) {
        if ((unsigned) s >= _SESSION_STATE_MAX)
                return NULL;
        return state_names[s];
}

int session_state_from_string(const char *s) {
        for (int i = 0; s && i < _SESSION_STATE_MAX; i++)
                if (!strcmp(s, state_names[i]))
                        return i;
        return -EINVAL;
}

void session_row_done(SessionRow *r) {
        if (!r)
                return;
        free(r->name);
        free(r->user);
        free(r->image);
        free(r->image_id);
        free(r->config);
        free(r->owner);
        free(r->last_checkpoint);
        *r = (SessionRow) {};
}

void session_rows_free(SessionRow *rows, size_t n) {
        for (size_t i = 0; rows && i < n; i++)
                session_row_done(&rows[i]);
        free(rows);
}

#define COLUMNS \
        "name, user, image, image_id, config, state, owner, epoch, last_checkpoint, checkpoints, created, updated"

static int read_row(sqlite3_stmt *st, SessionRow *ret) {
        bool oom = false;
        SessionRow r = {
                .name = catalog_col_text(st, 0, &oom),
                .user = catalog_col_text(st, 1, &oom),
                .image = catalog_col_text(st, 2, &oom),
                .image_id = catalog_col_text(st, 3, &oom),
                .config = catalog_col_text(st, 4, &oom),
                .owner = catalog_col_text(st, 6, &oom),
                .epoch = sqlite3_column_int64(st, 7),
                .last_checkpoint = catalog_col_text(st, 8, &oom),
                .checkpoints = sqlite3_column_int64(st, 9),
                .created = sqlite3_column_int64(st, 10),
                .updated = sqlite3_column_int64(st, 11),
        };
        int s = session_state_from_string((const char *) sqlite3_column_text(st, 5));
        r.state = s < 0 ? SESSION_CRASHED : (SessionState) s;
        if (oom || !r.name || !r.user || !r.image || !r.image_id || !r.config || !r.owner) {
                session_row_done(&r);
                return oom ? -ENOMEM : -EBADMSG;
        }
        *ret = r;
        return 0;
}

int session_db_insert(Catalog *c, const SessionRow *row) {
        const char *state = session_state_to_string(row->state);
        if (!state)
                return -EINVAL;
        int64_t now = (int64_t) time(NULL);
        catalog_lock(c);
        sqlite3 *db = catalog_sqlite(c);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = 0;
        int rc = sqlite3_prepare_v2(db, "INSERT INTO sessions (" COLUMNS ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", -1,
                                    &st, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_text(st, 1, row->name, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, row->user, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, row->image, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 4, row->image_id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 5, row->config, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 6, state, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 7, row->owner ? row->owner : SESSION_OWNER_LOCAL, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 8, row->epoch);
                if (row->last_checkpoint)
                        sqlite3_bind_text(st, 9, row->last_checkpoint, -1, SQLITE_STATIC);
                else
                        sqlite3_bind_null(st, 9);
                sqlite3_bind_int64(st, 10, row->checkpoints);
                sqlite3_bind_int64(st, 11, row->created ? row->created : now);
                sqlite3_bind_int64(st, 12, row->updated ? row->updated : now);
                rc = sqlite3_step(st);
        }
        if (rc == SQLITE_CONSTRAINT || (rc & 0xff) == SQLITE_CONSTRAINT)
                r = err_set(-EEXIST, "session '%s' already exists (see 'roam session list')", row->name);
        else if (rc != SQLITE_DONE)
                r = catalog_error(c, rc, "adding a session");
        catalog_unlock(c);
        return r;
}

int session_db_get(Catalog *c, const char *name, SessionRow *ret) {
        catalog_lock(c);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;
        int rc = sqlite3_prepare_v2(catalog_sqlite(c), "SELECT " COLUMNS " FROM sessions WHERE name = ?", -1, &st,
                                    NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
                rc = sqlite3_step(st);
        }
        if (rc == SQLITE_ROW)
                r = read_row(st, ret);
        else if (rc == SQLITE_DONE)
                r = err_set(-ENOENT, "session '%s' not found (try 'roam session list')", name);
        else
                r = catalog_error(c, rc, "reading a session");
        catalog_unlock(c);
        return r;
}

int session_db_list(Catalog *c, SessionRow **ret, size_t *ret_n) {
        catalog_lock(c);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        SessionRow *rows = NULL;
        size_t n = 0, cap = 0;
        int r = 0;
        int rc = sqlite3_prepare_v2(catalog_sqlite(c), "SELECT " COLUMNS " FROM sessions ORDER BY name", -1, &st,
                                    NULL);
        while (rc == SQLITE_OK || rc == SQLITE_ROW) {
                rc = sqlite3_step(st);
                if (rc != SQLITE_ROW)
                        break;
                if (n == cap) {
                        size_t nc = cap ? cap * 2 : 16;
                        SessionRow *nr = realloc(rows, nc * sizeof *nr);
                        if (!nr) {
                                r = -ENOMEM;
                                break;
                        }
                        rows = nr;
                        cap = nc;
                }
                r = read_row(st, &rows[n]);
                if (r < 0)
                        break;
                n++;
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = catalog_error(c, rc, "listing sessions");
        catalog_unlock(c);
        if (r < 0) {
                session_rows_free(rows, n);
                return r;
        }
        *ret = rows;
        *ret_n = n;
        return 0;
}

/* Runs one UPDATE/DELETE (catalog_vexec()); -ENOENT when no row changed. */
static int run(Catalog *c, const char *name, const char *what, const char *sql, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = catalog_vexec(c, what, sql, fmt, ap);
        va_end(ap);
        if (r == 0)
                return err_set(-ENOENT, "session '%s' not found (try 'roam session list')", name);
        return r < 0 ? r : 0;
}

int session_db_delete(Catalog *c, const char *name) {
        return run(c, name, "removing a session", "DELETE FROM sessions WHERE name = ?", "t", name);
}

int session_db_set_state(Catalog *c, const char *name, SessionState state) {
        const char *s = session_state_to_string(state);
        if (!s)
                return -EINVAL;
        return run(c, name, "updating a session", "UPDATE sessions SET state = ?, updated = ? WHERE name = ?", "tit",
                   s, (int64_t) time(NULL), name);
}

int session_db_set_config(Catalog *c, const char *name, const char *config_json) {
        return run(c, name, "updating a session", "UPDATE sessions SET config = ?, updated = ? WHERE name = ?",
                   "tit", config_json, (int64_t) time(NULL), name);
}

int session_db_set_checkpoint(Catalog *c, const char *name, const char *id_hex, int64_t seq) {
        if (seq > 0)
                return run(c, name, "updating a session",
                           "UPDATE sessions SET last_checkpoint = ?, checkpoints = ?, updated = ? WHERE name = ?",
                           "tiit", id_hex, seq, (int64_t) time(NULL), name);
        return run(c, name, "updating a session",
                   "UPDATE sessions SET last_checkpoint = ?, updated = ? WHERE name = ?", "tit", id_hex,
                   (int64_t) time(NULL), name);
}

int session_db_set_owner(Catalog *c, const char *name, const char *owner, int64_t epoch, int64_t expected_epoch) {
        bool local = !strcmp(owner, SESSION_OWNER_LOCAL);
        int r = run(c, name, "changing a session's owner",
                    "UPDATE sessions SET owner = ?, epoch = ?, state = ?, updated = ? WHERE name = ? AND epoch = ?",
                    "tititi", owner, epoch, local ? "stopped" : "away", (int64_t) time(NULL), name, expected_epoch);
        if (r == -ENOENT) {
                SessionRow row = {};
                if (session_db_get(c, name, &row) == 0) {
                        r = err_set(-ESTALE, "session '%s' is at epoch %lld, not %lld (moved meanwhile)", name,
                                    (long long) row.epoch, (long long) expected_epoch);
                        session_row_done(&row);
                }
        }
        return r;
}
