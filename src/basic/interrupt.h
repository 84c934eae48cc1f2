/* SPDX-License-Identifier: MIT */
#pragma once

/* Ctrl-C and SIGTERM for the command line.
 *
 * interrupt_install() catches SIGINT and SIGTERM. The first signal sets the
 * flag that long operations poll (interrupt_flag(), passed as the cancel
 * pointer of BlobOptions and SyncOptions; spawn_capture() looks at it too)
 * and sends SIGTERM to the process group of every helper that
 * spawn_capture() runs (each runs in a group of its own, so that a terminal's
 * Ctrl-C reaches roam only). The command then unwinds through its error
 * path, removing its temp files, and main prints one line and exits
 * INTERRUPT_EXIT. A second signal, or INTERRUPT_GRACE_S seconds without an
 * exit, ends the process at once (the helpers first).
 *
 * Without interrupt_install() (the daemon, unit tests) nothing changes: the
 * flag stays 0. */

#include <stdbool.h>
#include <sys/types.h>

#define INTERRUPT_EXIT 130
#define INTERRUPT_GRACE_S 10

void interrupt_install(void);
/* Back to the default dispositions: for 'roam serve', whose daemon takes
 * SIGINT and SIGTERM through a signalfd (a signal before it runs kills it). */
void interrupt_uninstall(void);
/* The flag, non-zero once a signal came. */
volatile int *interrupt_flag(void);
static inline bool interrupt_requested(void) {
        return *interrupt_flag() != 0;
}

/* A child process group to stop on an interrupt (slots are async-signal-safe;
 * -EBUSY when all are taken: the group is then only stopped by its caller). */
int interrupt_child_add(pid_t pgid);
void interrupt_child_remove(pid_t pgid);
