/* SPDX-License-Identifier: MIT */
#pragma once

/* Running helper programs (qemu-img, ...). */

#include <stddef.h>
#include <sys/types.h>

/* Runs argv (PATH lookup), waits, and captures up to max bytes of its stdout
 * and stderr (either may be NULL to discard). Returns the exit status (0..255),
 * -ENOENT when the program is missing, or another negative errno. Caller frees
 * the captured strings (NUL-terminated). The program runs in a process group
 * of its own, dies with the calling process (PR_SET_PDEATHSIG, even when that
 * is killed), and is stopped by an interrupt (src/basic/interrupt.h), which
 * makes the result -EINTR. */
int spawn_capture(char *const argv[], size_t max, char **ret_stdout, char **ret_stderr);
/* The same, and the program inherits the n_keep open files keep (they stay
 * close-on-exec for every other program this process starts). */
int spawn_capture_keep(char *const argv[], size_t max, char **ret_stdout, char **ret_stderr, const int *keep,
                       size_t n_keep);
