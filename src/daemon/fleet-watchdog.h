/* SPDX-License-Identifier: MIT */
#pragma once

/* The QEMUs of a fleet member die with its 'roam serve' (docs/fleet.md,
 * "The member's watchdog"). A member's sessions are taken over by other
 * members once its etcd lease has run out; a member that fences itself kills
 * its QEMUs first, but a 'roam serve' killed outright (kill -9, a crash)
 * fences nothing, and its QEMUs (started with -daemonize: nobody's children)
 * would run on beside the copies the fleet restarts elsewhere.
 *
 * So a member starts one small helper process (this binary again, hidden
 * verb FLEET_WATCHDOG_VERB, in a session of its own) that holds the read end
 * of a pipe whose only write end the daemon holds (close-on-exec: no QEMU or
 * other child inherits it). Whenever the daemon's process ends, however it
 * ends, the kernel closes that end; the helper reads end-of-file at once,
 * kills (SIGKILL) every QEMU of the home, and exits. That takes milliseconds,
 * far less than the lease (10 s) after which another member may restart the
 * sessions. The daemon checks the helper every few seconds and starts it
 * again (and says so) if it died.
 *
 * A daemon that is alive but stuck (stopped with SIGSTOP, or hung) closes
 * nothing, and its keeper thread cannot fence. So the keeper also writes a
 * byte down the pipe after each renewal etcd answered (fleet_watchdog_beat());
 * once the helper has seen one, it kills the home's QEMUs whenever none came
 * for the fence time (half the lease's TTL, as the keeper's own fence), and
 * goes on watching. */

#include <stdbool.h>

#define FLEET_WATCHDOG_VERB "__fleet-watchdog"

typedef struct FleetWatchdog FleetWatchdog;

/* Starts the helper for home; fence_ms: how long it waits for a heartbeat
 * before it kills the QEMUs. Caller frees with fleet_watchdog_stop(). */
int fleet_watchdog_start(const char *home, unsigned fence_ms, FleetWatchdog **ret);
/* The keeper's heartbeat (any thread; never blocks). */
void fleet_watchdog_beat(FleetWatchdog *w);
/* Starts it again if it died: 1 restarted, 0 alive, < 0 error. */
int fleet_watchdog_check(FleetWatchdog *w);
/* Closes the pipe (the helper kills what still runs and exits) and reaps it. */
void fleet_watchdog_stop(FleetWatchdog *w);

/* Kills (SIGKILL) the QEMU of session only (NULL: of every session) of home:
 * pid files HOME/sessions/NAME/qemu.pid and HOME/warm/NAME/qemu.pid, each
 * only while that process's command line names its pid file (or, for a
 * session restored into a waiting QEMU, warm/NAME's, which it was started
 * with). Returns how many were killed. */
unsigned fleet_kill_qemus(const char *home, const char *only);

/* The helper: roam FLEET_WATCHDOG_VERB HOME FENCE_MS (the pipe on fd 3). */
int fleet_watchdog_main(int argc, char **argv);
