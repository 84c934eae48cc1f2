/* SPDX-License-Identifier: MIT */
#pragma once

/* The config file format (docs/config.md): UTF-8 text of "key = value"
 * lines. Blank lines and lines whose first non-blank character is '#' are
 * skipped. A key is 1-64 of [a-z0-9-]; the value is the rest of the line
 * with blanks trimmed at both ends, or a double-quoted string (\" and \\ are
 * its only escapes) for a value with blanks at its ends or a '#'. No
 * sections, no includes, no continuation lines.
 *
 * Limits: CONF_FILE_MAX bytes, CONF_LINE_MAX bytes a line, CONF_ITEMS_MAX
 * items; no NUL bytes, no control characters but tab. Past any of them, or
 * for any line that is not one of the above: -EBADMSG with a detail naming
 * the file and the line. Pure (conf_parse()); fuzzed (tests/fuzz/fuzz-conf.c). */

#include <stddef.h>

#define CONF_FILE_MAX (64 * 1024)
#define CONF_LINE_MAX 4096
#define CONF_ITEMS_MAX 256
#define CONF_KEY_MAX 64

/* Called once per item, in file order; key and value are NUL-terminated and
 * borrowed for the call only. A negative return stops the parse and is
 * returned as it is (set its detail with err_set()). */
typedef int (*ConfItemFn)(const char *key, const char *value, unsigned line, void *userdata);

/* Parses len bytes of text; name (a path) appears in the messages. */
int conf_parse(const char *name, const char *text, size_t len, ConfItemFn fn, void *userdata);

/* Reads path (at most CONF_FILE_MAX bytes) and parses it. -ENOENT when it
 * does not exist, with no detail set (a config file is optional). */
int conf_parse_file(const char *path, ConfItemFn fn, void *userdata);
