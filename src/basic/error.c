/* SPDX-License-Identifier: MIT */
#include "error.h"

#include <stdarg.h>
#include <string.h>

static _Thread_local char detail[1024];
static _Thread_local int have_detail;

static int vset(int r, const char *fmt, va_list ap) {
        /* format into a scratch buffer first: callers may pass err_message()
         * (which points into detail) as an argument */
        char scratch[sizeof detail];
        vsnprintf(scratch, sizeof scratch, fmt, ap);
        memcpy(detail, scratch, sizeof detail);
        /* one line only */
        for (char *p = detail; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
        have_detail = 1;
        return r;
}

int err_set(int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vset(r, fmt, ap);
        va_end(ap);
        return r;
}

int err_set_if_none(int r, const char *fmt, ...) {
        if (have_detail)
                return r;
        va_list ap;
        va_start(ap, fmt);
        vset(r, fmt, ap);
        va_end(ap);
        return r;
}

void err_clear(void) {
        have_detail = 0;
        detail[0] = 0;
}

const char *err_message(int r) {
        if (have_detail)
                return detail;
        return strerror(r < 0 ? -r : r);
}
