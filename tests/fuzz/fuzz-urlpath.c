/* SPDX-License-Identifier: MIT */
/* The percent-decoding of a request's path and query (http_unescape(), the
 * HTTP server's unescape callback): bytes a client sends. The result is
 * never longer, holds no NUL, and keeps every "%00" as it was. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* libmicrohttpd hands over a NUL-ended string: up to the first NUL */
        char *s = strndup((const char *) data, size);
        if (!s)
                return 0;
        size_t in = strlen(s);
        size_t nul_in = 0;
        for (const char *p = s; (p = strstr(p, "%00")); p += 3)
                nul_in++;
        size_t out = http_unescape(s);
        if (out > in || strlen(s) != out)
                abort();
        /* every "%00" of the input is still there: none became a NUL or anything else */
        size_t nul_out = 0;
        for (const char *p = s; (p = strstr(p, "%00")); p += 3)
                nul_out++;
        if (nul_out < nul_in)
                abort();
        /* without a '%' nothing changes */
        if (!memchr(data, '%', strnlen((const char *) data, size)) && out != in)
                abort();
        free(s);
        return 0;
}
