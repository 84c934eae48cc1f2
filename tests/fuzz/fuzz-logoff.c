/* SPDX-License-Identifier: MIT */
/* The log-off line of a guest's console (session_logoff_line()): bytes the
 * guest writes to its serial port, read back after a log-off boot. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "session/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char buf[128];
        int r = session_logoff_line((const char *) data, size, buf, sizeof buf);
        if (r < 0 || r > 1 || strlen(buf) >= sizeof buf)
                abort();
        if (r == 1 && strncmp(buf, "roam-guest: logoff ", 19))
                abort(); /* the line found starts with the tag */
        if (r == 0 && buf[0])
                abort();
        /* the found line is a line of the input */
        if (r == 1 && !memmem(data, size, buf, strlen(buf)))
                abort();
        char one[1];
        if (session_logoff_line((const char *) data, size, one, sizeof one) != r || one[0])
                abort();
        return 0;
}
