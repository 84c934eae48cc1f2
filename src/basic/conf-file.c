/* SPDX-License-Identifier: MIT */
#include "conf-file.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fileio.h"
#include "macro.h"

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

static bool is_key_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* Parses one line (NUL-terminated, no newline) into key and value, in place. */
static int parse_line(const char *name, unsigned no, char *p, char **ret_key, char **ret_value) {
        while (is_blank(*p))
                p++;
        char *key = p;
        while (is_key_char(*p))
                p++;
        size_t klen = (size_t) (p - key);
        if (klen == 0 || klen > CONF_KEY_MAX)
                return err_set(-EBADMSG, "'%s' line %u: expected 'key = value' with a key of 1-%d of a-z, 0-9, '-'",
                               name, no, CONF_KEY_MAX);
        char *end_key = p;
        while (is_blank(*p))
                p++;
        if (*p != '=')
                return err_set(-EBADMSG, "'%s' line %u: expected '=' after '%.*s'", name, no, (int) klen, key);
        *end_key = 0;
        p++;
        while (is_blank(*p))
                p++;
        char *value = p;
        if (*p == '"') {
                char *w = value;
                for (p++;; p++) {
                        if (!*p)
                                return err_set(-EBADMSG, "'%s' line %u: the quoted value of '%s' does not end",
                                               name, no, key);
                        if (*p == '"')
                                break;
                        if (*p == '\\') {
                                p++;
                                if (*p != '"' && *p != '\\')
                                        return err_set(-EBADMSG,
                                                       "'%s' line %u: '\\%c' in the value of '%s' (only \\\" and "
                                                       "\\\\ are escapes)",
                                                       name, no, *p ? *p : '0', key);
                        }
                        *w++ = *p;
                }
                p++;
                while (is_blank(*p))
                        p++;
                if (*p)
                        return err_set(-EBADMSG, "'%s' line %u: text after the quoted value of '%s'", name, no, key);
                *w = 0;
        } else {
                char *e = value + strlen(value);
                while (e > value && is_blank(e[-1]))
                        e--;
                *e = 0;
        }
        *ret_key = key;
        *ret_value = value;
        return 0;
}

int conf_parse(const char *name, const char *text, size_t len, ConfItemFn fn, void *userdata) {
        if (len > CONF_FILE_MAX)
                return err_set(-EBADMSG, "'%s' is larger than %d bytes", name, CONF_FILE_MAX);
        char line[CONF_LINE_MAX + 1];
        unsigned no = 0, items = 0;
        size_t i = 0;
        while (i < len) {
                no++;
                size_t n = 0;
                for (; i < len && text[i] != '\n'; i++) {
                        unsigned char c = (unsigned char) text[i];
                        if (n == CONF_LINE_MAX)
                                return err_set(-EBADMSG, "'%s' line %u is longer than %d bytes", name, no,
                                               CONF_LINE_MAX);
                        if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f)
                                return err_set(-EBADMSG, "'%s' line %u holds a control character (0x%02x)", name,
                                               no, c);
                        line[n++] = (char) c;
                }
                i++; /* the newline */
                if (n > 0 && line[n - 1] == '\r')
                        n--; /* a file written on Windows */
                line[n] = 0;
                const char *p = line;
                while (is_blank(*p))
                        p++;
                if (!*p || *p == '#')
                        continue;
                if (memchr(line, '\r', n))
                        return err_set(-EBADMSG, "'%s' line %u holds a control character (0x0d)", name, no);
                char *key = NULL, *value = NULL;
                int r = parse_line(name, no, line, &key, &value);
                if (r < 0)
                        return r;
                if (++items > CONF_ITEMS_MAX)
                        return err_set(-EBADMSG, "'%s' holds more than %d settings", name, CONF_ITEMS_MAX);
                r = fn(key, value, no, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

int conf_parse_file(const char *path, ConfItemFn fn, void *userdata) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_full_file(path, CONF_FILE_MAX, &text, &len);
        if (r == -ENOENT)
                return r;
        if (r == -EFBIG)
                return err_set(-EBADMSG, "'%s' is larger than %d bytes", path, CONF_FILE_MAX);
        if (r < 0)
                return err_set(r, "cannot read '%s': %s", path, strerror(-r));
        return conf_parse(path, text, len, fn, userdata);
}
