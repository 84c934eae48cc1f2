/* SPDX-License-Identifier: MIT */
#include "failpoint.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void failpoint(const char *name) {
        const char *e = getenv("ROAM_FAILPOINT");
        if (!e || !*e)
                return;
        size_t n = strlen(name);
        for (const char *p = e; (p = strstr(p, name)); p += n)
                if ((p == e || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) {
                        fprintf(stderr, "roam: failpoint '%s': killing myself\n", name);
                        fflush(stderr);
                        kill(getpid(), SIGKILL);
                        pause();
                }
}
