/* SPDX-License-Identifier: MIT */
#pragma once

/* Progress of a long operation on a terminal: bytes, rate, ETA.
 * Quiet when stderr is not a terminal or when disabled. Thread-safe updates. */

#include <stdbool.h>
#include <stdint.h>

typedef struct Progress Progress;

/* Global switch set by --quiet; progress is also off when stderr is no tty
 * (ROAM_PROGRESS=1 forces it on, for tests). */
void progress_set_quiet(bool quiet);

/* label is copied; total 0 = unknown. Returns NULL when progress is off or
 * on OOM; every other function accepts NULL. progress_free() ends the line. */
Progress *progress_new(const char *label, uint64_t total);
void progress_add(Progress *p, uint64_t bytes);
void progress_set_total(Progress *p, uint64_t total);
void progress_free(Progress *p);
