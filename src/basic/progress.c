/* SPDX-License-Identifier: MIT */
#include "progress.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static bool quiet;

struct Progress {
        char label[64];
        _Atomic uint64_t done;
        uint64_t total;
        double start, last;
        pthread_mutex_t lock;
};

void progress_set_quiet(bool q) {
        quiet = q;
}

static bool enabled(void) {
        const char *e = getenv("ROAM_PROGRESS");
        if (e && *e == '1')
                return true;
        if (e && *e == '0')
                return false;
        return !quiet && isatty(STDERR_FILENO);
}

Progress *progress_new(const char *label, uint64_t total) {
        if (!enabled())
                return NULL;
        Progress *p = calloc(1, sizeof *p);
        if (!p)
                return NULL;
        snprintf(p->label, sizeof p->label, "%s", label);
        p->total = total;
        p->start = p->last = now_s();
        pthread_mutex_init(&p->lock, NULL);
        return p;
}

static void draw(Progress *p, double t, bool final) {
        char a[32], b[32], rate[32];
        uint64_t done = atomic_load(&p->done);
        double el = t - p->start;
        double bps = el > 0 ? (double) done / el : 0;
        format_bytes((uint64_t) bps, rate, sizeof rate);
        format_bytes(done, a, sizeof a);
        if (p->total) {
                format_bytes(p->total, b, sizeof b);
                double pct = 100.0 * (double) done / (double) p->total;
                double eta = bps > 0 && done < p->total ? (double) (p->total - done) / bps : 0;
                fprintf(stderr, "\r%s: %s / %s (%.0f%%), %s/s, ETA %.0fs   ", p->label, a, b, pct, rate, eta);
        } else
                fprintf(stderr, "\r%s: %s, %s/s   ", p->label, a, rate);
        if (final)
                fprintf(stderr, "\n");
        fflush(stderr);
}

void progress_add(Progress *p, uint64_t bytes) {
        if (!p)
                return;
        atomic_fetch_add(&p->done, bytes);
        double t = now_s();
        if (t - p->last < 0.2)
                return;
        if (pthread_mutex_trylock(&p->lock) != 0)
                return;
        if (t - p->last >= 0.2) {
                p->last = t;
                draw(p, t, false);
        }
        pthread_mutex_unlock(&p->lock);
}

void progress_set_total(Progress *p, uint64_t total) {
        if (p)
                p->total = total;
}

void progress_free(Progress *p) {
        if (!p)
                return;
        draw(p, now_s(), true);
        pthread_mutex_destroy(&p->lock);
        free(p);
}
