/* SPDX-License-Identifier: MIT */
#include "failpoint.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { FP_NONE, FP_KILL, FP_STOP, FP_ENOSPC, FP_EIO } FailKind;

/* hits per name, for @N; a few names per process are armed at most */
#define FP_SLOTS 16
static pthread_mutex_t fp_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
        char name[64];
        unsigned long hits;
        bool said;
} fp_slots[FP_SLOTS];

/* The entry of $ROAM_FAILPOINT for name: its kind and N, or FP_NONE. */
static FailKind lookup(const char *name, unsigned long *ret_from) {
        const char *e = getenv("ROAM_FAILPOINT");
        if (!e || !*e)
                return FP_NONE;
        size_t n = strlen(name);
        for (const char *p = e; p && *p; p = strchr(p, ','), p = p ? p + 1 : NULL) {
                size_t len = strcspn(p, ",");
                size_t nl = strcspn(p, "=@,");
                if (nl != n || memcmp(p, name, n))
                        continue;
                FailKind k = FP_KILL;
                const char *q = p + nl;
                if (*q == '=') {
                        size_t kl = strcspn(q + 1, "@,");
                        if (kl == 4 && !memcmp(q + 1, "kill", 4))
                                k = FP_KILL;
                        else if (kl == 4 && !memcmp(q + 1, "stop", 4))
                                k = FP_STOP;
                        else if (kl == 6 && !memcmp(q + 1, "enospc", 6))
                                k = FP_ENOSPC;
                        else if (kl == 3 && !memcmp(q + 1, "eio", 3))
                                k = FP_EIO;
                        else
                                k = FP_NONE; /* unknown kind: never fire by mistake */
                        q += 1 + kl;
                }
                unsigned long from = 1;
                if (*q == '@' && (size_t) (q - p) < len) {
                        char *end;
                        from = strtoul(q + 1, &end, 10);
                        if (from == 0)
                                from = 1;
                }
                *ret_from = from;
                return k;
        }
        return FP_NONE;
}

/* Counts this hit; true when it is the Nth or later (only the Nth: once),
 * and whether to say so. */
static bool count_hit(const char *name, unsigned long from, bool once, bool *ret_say) {
        pthread_mutex_lock(&fp_lock);
        int slot = -1;
        for (int i = 0; i < FP_SLOTS && slot < 0; i++)
                if (!fp_slots[i].name[0]) {
                        snprintf(fp_slots[i].name, sizeof fp_slots[i].name, "%s", name);
                        slot = i;
                } else if (!strcmp(fp_slots[i].name, name))
                        slot = i;
        bool fire = true;
        *ret_say = true;
        if (slot >= 0) {
                fp_slots[slot].hits++;
                fire = once ? fp_slots[slot].hits == from : fp_slots[slot].hits >= from;
                *ret_say = fire && !fp_slots[slot].said;
                if (fire)
                        fp_slots[slot].said = true;
        }
        pthread_mutex_unlock(&fp_lock);
        return fire;
}

static FailKind hit(const char *name) {
        unsigned long from = 1;
        FailKind k = lookup(name, &from);
        if (k == FP_NONE)
                return FP_NONE;
        bool say;
        if (!count_hit(name, from, k == FP_STOP, &say))
                return FP_NONE;
        static const char *const what[] = { [FP_KILL] = "killing myself", [FP_STOP] = "stopping myself",
                                            [FP_ENOSPC] = "failing with ENOSPC", [FP_EIO] = "failing with EIO" };
        if (say || k == FP_KILL || k == FP_STOP) {
                fprintf(stderr, "roam: failpoint '%s': %s\n", name, what[k]);
                fflush(stderr);
        }
        if (k == FP_KILL) {
                kill(getpid(), SIGKILL);
                for (;;)
                        pause();
        }
        if (k == FP_STOP)
                kill(getpid(), SIGSTOP); /* returns after SIGCONT */
        return k;
}

void failpoint(const char *name) {
        (void) hit(name);
}

int failpoint_errno(const char *name) {
        switch (hit(name)) {
        case FP_ENOSPC:
                return -ENOSPC;
        case FP_EIO:
                return -EIO;
        default:
                return 0;
        }
}
