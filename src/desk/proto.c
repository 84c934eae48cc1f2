/* SPDX-License-Identifier: MIT */
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"

void desk_answer_done(DeskAnswer *a) {
        if (!a)
                return;
        for (size_t i = 0; i < a->n; i++)
                free(a->pairs[i].value);
        free(a->pairs);
        free(a->error);
        *a = (DeskAnswer) {};
}

static bool key_char(char c) {
        return (c >= 'a' && c <= 'z') || c == '_';
}

int desk_answer_parse(const char *buf, size_t len, DeskAnswer *ret) {
        if (len > DESK_ANSWER_MAX)
                return err_set(-EBADMSG, "the desk helper's answer is longer than %u bytes", DESK_ANSWER_MAX);
        DeskAnswer a = {};
        bool done = false;
        size_t lines = 0, pos = 0;
        int r = 0;
        while (pos < len) {
                const char *line = buf + pos;
                const char *nl = memchr(line, '\n', len - pos);
                size_t n = nl ? (size_t) (nl - line) : len - pos;
                pos += n + (nl ? 1 : 0);
                if (n == 0)
                        continue;
                if (++lines > DESK_ANSWER_LINES) {
                        r = err_set(-EBADMSG, "the desk helper's answer has more than %d lines", DESK_ANSWER_LINES);
                        break;
                }
                if (done) {
                        r = err_set(-EBADMSG, "the desk helper's answer goes on after its last line");
                        break;
                }
                if (n == 2 && !memcmp(line, "ok", 2)) {
                        a.ok = done = true;
                        continue;
                }
                size_t k = 0;
                while (k < n && k <= DESK_KEY_MAX && key_char(line[k]))
                        k++;
                if (k == 0 || k > DESK_KEY_MAX || k >= n || line[k] != '=') {
                        r = err_set(-EBADMSG, "the desk helper's answer has a malformed line");
                        break;
                }
                size_t vn = n - k - 1;
                if (vn > DESK_VALUE_MAX) {
                        r = err_set(-EBADMSG, "the desk helper's answer has a value longer than %d bytes",
                                    DESK_VALUE_MAX);
                        break;
                }
                const char *v = line + k + 1;
                for (size_t i = 0; i < vn; i++)
                        if ((unsigned char) v[i] < 0x20 || v[i] == 0x7f) {
                                r = err_set(-EBADMSG, "the desk helper's answer has a control character");
                                break;
                        }
                if (r < 0)
                        break;
                char *value = strndup(v, vn);
                if (!value) {
                        r = -ENOMEM;
                        break;
                }
                if (k == 5 && !memcmp(line, "error", 5)) {
                        a.error = value;
                        done = true;
                        continue;
                }
                DeskPair *np = realloc(a.pairs, (a.n + 1) * sizeof *np);
                if (!np) {
                        free(value);
                        r = -ENOMEM;
                        break;
                }
                a.pairs = np;
                memcpy(a.pairs[a.n].key, line, k);
                a.pairs[a.n].key[k] = 0;
                a.pairs[a.n].value = value;
                a.n++;
        }
        if (r >= 0 && !done)
                r = err_set(-EBADMSG, "the desk helper's answer ends without 'ok' or 'error' (cut short)");
        if (r < 0) {
                desk_answer_done(&a);
                return r;
        }
        *ret = a;
        return 0;
}

const char *desk_answer_get(const DeskAnswer *a, const char *key) {
        for (size_t i = 0; i < a->n; i++)
                if (!strcmp(a->pairs[i].key, key))
                        return a->pairs[i].value;
        return NULL;
}

static int parse_dec(const char *s, uint64_t *ret) {
        if (!*s || strlen(s) > 19)
                return -EBADMSG;
        uint64_t v = 0;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EBADMSG;
                v = v * 10 + (uint64_t) (*s - '0');
        }
        *ret = v;
        return 0;
}

int desk_answer_u64(const DeskAnswer *a, const char *key, uint64_t *ret) {
        const char *v = desk_answer_get(a, key);
        if (!v)
                return -ENOENT;
        return parse_dec(v, ret);
}

int desk_word_get(const char *value, const char *name, char *buf, size_t size) {
        size_t nl = strlen(name);
        const char *p = value;
        while (*p) {
                while (*p == ' ')
                        p++;
                const char *end = strchr(p, ' ');
                size_t wl = end ? (size_t) (end - p) : strlen(p);
                if (wl > nl && !strncmp(p, name, nl) && p[nl] == '=') {
                        size_t vl = wl - nl - 1;
                        if (vl >= size)
                                return -ENAMETOOLONG;
                        memcpy(buf, p + nl + 1, vl);
                        buf[vl] = 0;
                        return 0;
                }
                p += wl;
        }
        return -ENOENT;
}

/* ---- tar ---- */

static int octal(const uint8_t *p, size_t n, uint64_t *ret) {
        uint64_t v = 0;
        size_t i = 0;
        while (i < n && p[i] == ' ')
                i++;
        size_t digits = 0;
        for (; i < n && p[i] >= '0' && p[i] <= '7'; i++, digits++) {
                if (v >> 60)
                        return -EBADMSG;
                v = v * 8 + (uint64_t) (p[i] - '0');
        }
        for (; i < n; i++)
                if (p[i] != ' ' && p[i] != 0)
                        return -EBADMSG;
        if (digits == 0)
                return -EBADMSG;
        *ret = v;
        return 0;
}

int desk_tar_header_parse(const uint8_t block[DESK_TAR_BLOCK], DeskTarEntry *ret, char *why, size_t why_size) {
        if (why_size)
                why[0] = 0;
        size_t z = 0;
        while (z < DESK_TAR_BLOCK && block[z] == 0)
                z++;
        if (z == DESK_TAR_BLOCK)
                return 1;
        uint64_t sum, want = 0;
        if (octal(block + 148, 8, &sum) < 0) {
                snprintf(why, why_size, "a tar header has no checksum");
                return -EBADMSG;
        }
        for (size_t i = 0; i < DESK_TAR_BLOCK; i++)
                want += (i >= 148 && i < 156) ? ' ' : block[i];
        if (sum != want) {
                snprintf(why, why_size, "a tar header's checksum is wrong (%llu, computed %llu)",
                         (unsigned long long) sum, (unsigned long long) want);
                return -EBADMSG;
        }
        if (memcmp(block + 257, "ustar", 5)) {
                snprintf(why, why_size, "a tar header is neither ustar nor GNU");
                return -EBADMSG;
        }
        DeskTarEntry e = {};
        if (!memchr(block, 0, DESK_TAR_NAME_MAX) || block[0] == 0) {
                snprintf(why, why_size, "a tar member's name is empty or longer than %d bytes", DESK_TAR_NAME_MAX - 1);
                return -EBADMSG;
        }
        if (block[345] != 0 && !memcmp(block + 257, "ustar\0", 6)) {
                snprintf(why, why_size, "a tar member's name has a prefix (too long)");
                return -EBADMSG;
        }
        memcpy(e.name, block, DESK_TAR_NAME_MAX);
        for (const char *c = e.name; *c; c++)
                if ((unsigned char) *c < 0x20 || *c == 0x7f) {
                        snprintf(why, why_size, "a tar member's name has a control character");
                        return -EBADMSG;
                }
        uint64_t mode;
        if (octal(block + 100, 8, &mode) < 0 || octal(block + 124, 12, &e.size) < 0) {
                snprintf(why, why_size, "tar member '%s' has a malformed mode or size", e.name);
                return -EBADMSG;
        }
        e.mode = (uint32_t) (mode & 07777);
        switch (block[156]) {
        case '0':
        case 0:
                break;
        case '5':
                e.dir = true;
                if (e.size != 0) {
                        snprintf(why, why_size, "tar directory '%s' has a size", e.name);
                        return -EBADMSG;
                }
                break;
        default:
                snprintf(why, why_size, "tar member '%s' is of type '%c' (only files and directories)", e.name,
                         block[156] >= 0x20 && block[156] < 0x7f ? block[156] : '?');
                return -EBADMSG;
        }
        *ret = e;
        return 0;
}

int desk_tar_header_build(const char *name, uint64_t size, uint32_t mode, uint8_t block[DESK_TAR_BLOCK]) {
        size_t n = strlen(name);
        if (n == 0 || n >= DESK_TAR_NAME_MAX || size >= (1ull << 33))
                return -EINVAL;
        memset(block, 0, DESK_TAR_BLOCK);
        memcpy(block, name, n);
        snprintf((char *) block + 100, 8, "%07o", mode & 07777);
        snprintf((char *) block + 108, 8, "%07o", 0);
        snprintf((char *) block + 116, 8, "%07o", 0);
        snprintf((char *) block + 124, 12, "%011llo", (unsigned long long) size);
        snprintf((char *) block + 136, 12, "%011o", 0);
        block[156] = '0';
        memcpy(block + 257, "ustar", 6); /* "ustar\0" */
        memcpy(block + 263, "00", 2);
        memset(block + 148, ' ', 8);
        unsigned sum = 0;
        for (size_t i = 0; i < DESK_TAR_BLOCK; i++)
                sum += block[i];
        snprintf((char *) block + 148, 8, "%06o", sum);
        block[155] = ' ';
        return 0;
}
