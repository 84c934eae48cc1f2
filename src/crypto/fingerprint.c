/* SPDX-License-Identifier: MIT */
#include "fingerprint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../basic/error.h"
#include "../basic/hash.h"

char *fingerprint_format(const Fingerprint *fp, char buf[static FINGERPRINT_TEXT_SIZE]) {
        memcpy(buf, FINGERPRINT_PREFIX, sizeof(FINGERPRINT_PREFIX) - 1);
        hex_encode(fp->b, FINGERPRINT_SIZE, buf + sizeof(FINGERPRINT_PREFIX) - 1);
        return buf;
}

static int hexval(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int fingerprint_parse(const char *text, Fingerprint *ret) {
        if (!text)
                return -EINVAL;
        size_t n = strnlen(text, FINGERPRINT_TEXT_MAX + 1);
        if (n > FINGERPRINT_TEXT_MAX)
                return -EINVAL;
        const char *p = text;
        if (!strncasecmp(p, FINGERPRINT_PREFIX, sizeof(FINGERPRINT_PREFIX) - 1))
                p += sizeof(FINGERPRINT_PREFIX) - 1;
        /* either no ':' at all, or one between every two bytes */
        bool colons = strchr(p, ':') != NULL;
        Fingerprint fp;
        for (size_t i = 0; i < FINGERPRINT_SIZE; i++) {
                if (colons && i > 0 && *p++ != ':')
                        return -EINVAL;
                int hi = hexval(p[0]), lo = hi >= 0 ? hexval(p[1]) : -1;
                if (lo < 0)
                        return -EINVAL;
                fp.b[i] = (uint8_t) (hi << 4 | lo);
                p += 2;
        }
        if (*p)
                return -EINVAL;
        *ret = fp;
        return 0;
}

bool fingerprint_equal(const Fingerprint *a, const Fingerprint *b) {
        return !memcmp(a->b, b->b, FINGERPRINT_SIZE);
}

int pairing_token_split(const char *text, char **ret_token, Fingerprint *ret_fp, bool *ret_has_fp) {
        if (!text || strnlen(text, PAIRING_TOKEN_MAX + 1) > PAIRING_TOKEN_MAX)
                return err_set(-EINVAL, "the token is longer than %d bytes (copy it again from 'roam token create')",
                               PAIRING_TOKEN_MAX);
        const char *at = strchr(text, '@');
        size_t n = at ? (size_t) (at - text) : strlen(text);
        if (n == 0)
                return err_set(-EINVAL, "the token is empty (copy it again from 'roam token create')");
        Fingerprint fp = { 0 };
        if (at && fingerprint_parse(at + 1, &fp) < 0)
                return err_set(-EINVAL, "the token's part after '@' is not a certificate fingerprint (expected "
                               "TOKEN@sha256:64-hex-digits as 'roam token create' prints it)");
        char *t = strndup(text, n);
        if (!t)
                return -ENOMEM;
        *ret_token = t;
        *ret_fp = fp;
        *ret_has_fp = at != NULL;
        return 0;
}

int pairing_token_join(const char *token, const Fingerprint *fp, char **ret) {
        if (!token || !*token || strchr(token, '@'))
                return err_set(-EINVAL, "the token carries a fingerprint already");
        char text[FINGERPRINT_TEXT_SIZE];
        return asprintf(ret, "%s@%s", token, fingerprint_format(fp, text)) < 0 ? -ENOMEM : 0;
}
