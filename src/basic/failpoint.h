/* SPDX-License-Identifier: MIT */
#pragma once

/* Crash tests: failpoint("offline-grant:after-owner") kills the calling
 * process with SIGKILL when $ROAM_FAILPOINT names that point (a
 * comma-separated list). Tests use it to stop a daemon at a chosen step of a
 * hand-over and check that, after a restart, exactly one side owns the
 * session and its state is consistent. Costs one getenv() when unset. */

void failpoint(const char *name);
