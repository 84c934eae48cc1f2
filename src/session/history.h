/* SPDX-License-Identifier: MIT */
#pragma once

/* A session's checkpoint history, rollback and retention.
 *
 * Every checkpoint of a session is a manifest with its parent, epoch, time
 * and host; its refs are sessions/USER/NAME/NNNNNN (numbered), latest, and
 * branch-T (the state a rollback left behind at unix time T). History lists
 * the numbered and branch checkpoints, newest first. A rollback never loses
 * the present: the session's current state is checkpointed first and kept
 * under a branch ref (which retention never removes); then the chosen
 * checkpoint is restored, and the next checkpoint's parent is it.
 *
 * Retention (roam store gc --keep-last/--keep-hourly/--keep-daily) drops
 * numbered refs the policy does not keep, for the sessions this host owns;
 * gc then frees what nothing else reaches. Never dropped: latest, branches,
 * the session's current parent, anything of a session held elsewhere. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "session.h"

typedef struct CheckpointEntry {
        char leaf[32];        /* "000003" or "branch-1796220000" */
        RoamId id;
        int64_t seq, epoch, created;
        char host[40];        /* the host id that took it ("" when unknown) */
        bool powered_off;
        bool branch;          /* kept by a rollback */
        bool latest;          /* what "latest" names */
        bool current;         /* the session's current parent (the last taken or restored here) */
        uint64_t bytes;       /* RAM + disk delta it describes (logical) */
} CheckpointEntry;

/* Newest first. Caller frees *ret with free(). */
int session_history(SessionHost *h, const char *name, CheckpointEntry **ret, size_t *ret_n);

typedef struct RollbackResult {
        RoamId kept;          /* the checkpoint of the state before the rollback */
        char branch[32];      /* its branch ref's leaf */
        RoamId to;            /* the checkpoint restored */
        bool powered_off;     /* ... a powered-off one: the session is stopped now */
} RollbackResult;

/* Rolls session name (owned here) back to spec (a number, a 64-hex id of
 * one of its own checkpoints, or a branch leaf). -ENOENT for an unknown
 * checkpoint, -EINVAL for another session's, with details; nothing changes
 * then. */
int session_rollback(SessionHost *h, const char *name, const char *spec, RollbackResult *ret);

typedef struct RetentionPolicy {
        unsigned keep_last;   /* the newest N */
        unsigned keep_hourly; /* the newest of each of the last N hours */
        unsigned keep_daily;  /* the newest of each of the last N days */
} RetentionPolicy;

static inline bool retention_keeps_all(const RetentionPolicy *p) {
        return !p->keep_last && !p->keep_hourly && !p->keep_daily;
}

/* Pure: which of n checkpoints (created times, newest first) the policy
 * keeps, into keep[]. */
void retention_select(const int64_t *created, size_t n, const RetentionPolicy *p, int64_t now, bool *keep);

/* Applies the policy to every session owned here; *ret_removed counts the
 * numbered refs dropped. */
int session_prune(SessionHost *h, const RetentionPolicy *p, uint64_t *ret_removed);
