/* SPDX-License-Identifier: MIT */
/* The config file parser (src/basic/conf-file.h): every item it hands out
 * is a well-formed key and a bounded value without control characters. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/conf-file.h"
#include "basic/error.h"

static int item(const char *key, const char *value, unsigned line, void *userdata) {
        size_t *n = userdata;
        size_t klen = strlen(key);
        if (klen < 1 || klen > CONF_KEY_MAX || strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789-") != klen)
                abort();
        if (strlen(value) > CONF_LINE_MAX || line < 1)
                abort();
        for (const unsigned char *p = (const unsigned char *) value; *p; p++)
                if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
                        abort();
        if (++*n > CONF_ITEMS_MAX)
                abort();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        size_t n = 0;
        err_clear();
        (void) conf_parse("fuzz.conf", (const char *) data, size, item, &n);
        return 0;
}
