/* SPDX-License-Identifier: MIT */
#pragma once

/* gc of the store while the daemon serves it (docs/store-format.md, "gc
 * while the daemon runs"):
 *
 *   POST /v1/store/gc   {"grace_s": N, "wait_s": N}   admin only
 *     -> 200 {"chunks_removed", "bytes_removed", "objects_removed",
 *             "tmp_removed", "chunks_young", "objects_young", "wait_ms", "gc_ms"}
 *     -> 503 when this daemon's writers or another process did not let go
 *        within wait_s (default API_GC_WAIT_DEFAULT_S, at most API_GC_WAIT_MAX_S)
 *
 * One gc at a time: the daemon's own writers (write routes, workers) are
 * held back at the store's write gate, other processes by handing the store
 * lock over (shared -> exclusive for the gc -> shared again); readers (pulls)
 * go on throughout. */

#include "daemon.h"

#define API_GC_WAIT_DEFAULT_S 600u
#define API_GC_WAIT_MAX_S 86400u

/* Adds the route (before daemon_run()). */
int api_gc_register(Daemon *d);
