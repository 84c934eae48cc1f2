/* SPDX-License-Identifier: MIT */
#pragma once

/* Failpoints: named steps where a test makes the process fail on purpose,
 * to show that a crash or an error there leaves every store and every owner
 * record consistent (tests/integration/crash-matrix.sh; the table of points
 * is in docs/reliability.md).
 *
 *   ROAM_FAILPOINT=NAME[=KIND][@N][,NAME[=KIND][@N]...]
 *
 * KIND is what happens when the process reaches NAME:
 *   kill    (the default) SIGKILL of the whole process: a crash, nothing
 *           flushed, no cleanup
 *   stop    SIGSTOP of the whole process: the test does something meanwhile
 *           (cuts the link, say) and then sends SIGCONT; only at the Nth
 *           time, not after
 *   enospc  the step fails with -ENOSPC (at failpoint_errno() sites only)
 *   eio     the step fails with -EIO (at failpoint_errno() sites only)
 * @N: from the Nth time the process reaches NAME on (default 1).
 *
 * Names are "MOVE:STEP" (offline-grant:after-owner, store:chunk-write). Each
 * firing is said once per name on stderr. Unset, a failpoint costs one
 * getenv(). */

/* A step where a crash matters: kill and stop act; errno kinds do not. */
void failpoint(const char *name);
/* A step that can fail: 0, or the injected -ENOSPC / -EIO (kill and stop act
 * as in failpoint()). Callers treat it as the step's own error. */
int failpoint_errno(const char *name);
