/* SPDX-License-Identifier: MIT */
#pragma once

/* Error detail for the user.
 *
 * Library functions return a negative errno. Where the errno alone would not
 * tell the user what went wrong, they also record a one-line detail here
 * (thread-local) with err_set(), which returns the errno so it can be used in
 * a return statement:
 *
 *     return err_set(-EBADMSG, "chunk %s is corrupt (run 'roam store fsck')", hex);
 *
 * Only main-level code prints: err_message() gives the detail if one was set
 * since the last err_clear(), else strerror(). Library code never prints. */

#include "macro.h"

int err_set(int r, const char *fmt, ...) _printf_(2, 3);
/* Like err_set(), but keeps an earlier, more specific detail if one is set. */
int err_set_if_none(int r, const char *fmt, ...) _printf_(2, 3);
void err_clear(void);
/* Returns the recorded detail, or strerror(-r) when none was recorded.
 * The string is owned by the thread-local buffer. */
const char *err_message(int r);
