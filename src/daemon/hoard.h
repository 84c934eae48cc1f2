/* SPDX-License-Identifier: MIT */
#pragma once

/* Hoarding: a laptop's daemon pulls refs (master images) from a server in the
 * background, across link cuts and daemon restarts, until done. Jobs live in
 * the catalog (table hoards); one worker thread runs them one after another
 * with sync_pull(), which is resumable, so a restart or a cut link only
 * repeats the batches that were in flight.
 *
 * Routes (admin or host tokens; docs/sync-protocol.md):
 *   POST   /v1/hoards        {"url", "ref", "token", "limit_rate"?} -> {"id"}
 *   GET    /v1/hoards        -> {"hoards": [{id, url, ref, state, chunks_done,
 *                               chunks_total, wire_bytes, attempts, last_error}]}
 *   DELETE /v1/hoards/ID */

#include <stdint.h>

#include "daemon.h"

typedef struct HoardOptions {
        uint64_t default_limit_rate; /* bytes/s when a job names none; 0 = none */
        double retry_max_s;          /* longest wait between attempts (default 30) */
} HoardOptions;

typedef struct Hoard Hoard;

/* Adds the routes and the worker to d (before daemon_run()). The state is
 * owned by the daemon from then on; *ret (may be NULL) is borrowed. */
int hoard_register(Daemon *d, const HoardOptions *o, Hoard **ret);

/* Makes sure a job pulls ref from url (with token) unless one exists that is
 * active or done; wakes the worker. Thread-safe. */
int hoard_ensure(Hoard *h, const char *url, const char *ref, const char *token);
