/* SPDX-License-Identifier: MIT */
/* Compression deferred: the chunks a hand-over's window stored raw
 * (chunk_codec_defer()), compressed afterwards, when the guest runs again. */
#include "store-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/util.h"

/* chunks compressed between two commits (and two openings of the write gate,
 * so that a gc waits at most this many chunks) */
#define DEFER_BATCH 64u
#define DEFER_NICE 10

bool store_defer_enabled(void) {
        const char *e = getenv("ROAM_DEFER_COMPRESS");
        return !e || strcmp(e, "0") != 0;
}

void deferred_init(Deferred *d) {
        memset(d, 0, sizeof *d);
        pthread_mutex_init(&d->lock, NULL);
        pthread_cond_init(&d->wake, NULL);
}

void deferred_end(Deferred *d) {
        pthread_mutex_lock(&d->lock);
        d->stop = true;
        bool running = d->running;
        pthread_cond_signal(&d->wake);
        pthread_mutex_unlock(&d->lock);
        if (running)
                pthread_join(d->thread, NULL);
        free(d->ids);
        idset_free(d->queued);
        pthread_cond_destroy(&d->wake);
        pthread_mutex_destroy(&d->lock);
}

void deferred_add(Deferred *d, const RoamId *id) {
        pthread_mutex_lock(&d->lock);
        if (!d->queued)
                d->queued = idset_new();
        if (!d->queued || idset_add(d->queued, id) <= 0) {
                /* queued already, or no room to remember it: it stays as it is */
                pthread_mutex_unlock(&d->lock);
                return;
        }
        if (d->n == d->cap) {
                size_t ncap = d->cap ? d->cap * 2 : 1024;
                RoamId *n = realloc(d->ids, ncap * sizeof *n);
                if (!n) {
                        /* no room to remember it: it stays raw (whole, only bigger) */
                        pthread_mutex_unlock(&d->lock);
                        return;
                }
                d->ids = n;
                d->cap = ncap;
        }
        d->ids[d->n++] = *id;
        pthread_mutex_unlock(&d->lock);
}

bool deferred_contains(Deferred *d, const RoamId *id) {
        pthread_mutex_lock(&d->lock);
        bool in = d->queued && idset_contains(d->queued, id);
        pthread_mutex_unlock(&d->lock);
        return in;
}

size_t store_deferred_count(Store *s) {
        pthread_mutex_lock(&s->deferred.lock);
        size_t n = s->deferred.n;
        pthread_mutex_unlock(&s->deferred.lock);
        return n;
}

/* Takes up to max queued ids into out (the newest first: order does not
 * matter). 0 when the queue is empty or the store is closing. */
static size_t take(Deferred *d, RoamId *out, size_t max) {
        pthread_mutex_lock(&d->lock);
        size_t n = d->stop ? 0 : MIN(d->n, max);
        d->n -= n;
        memcpy(out, d->ids + d->n, n * sizeof *out);
        pthread_mutex_unlock(&d->lock);
        return n;
}

int store_compress_deferred(Store *s, DeferredStats *ret) {
        DeferredStats st = { 0 };
        uint64_t t0 = now_ns();
        _cleanup_(chunk_codec_freep) ChunkCodec *c = chunk_codec_new(s);
        if (!c)
                return -ENOMEM;
        RoamId batch[DEFER_BATCH];
        size_t n;
        int r = 0;
        while (r >= 0 && (n = take(&s->deferred, batch, DEFER_BATCH)) > 0) {
                store_write_begin(s);
                for (size_t i = 0; i < n && r >= 0; i++) {
                        uint64_t before = 0, after = 0;
                        r = store_chunk_compress_raw(s, c, &batch[i], &before, &after);
                        st.chunks++;
                        if (r > 0) {
                                st.compressed++;
                                st.bytes_before += before;
                                st.bytes_after += after;
                        }
                }
                if (r >= 0)
                        r = store_commit(s);
                store_write_end(s);
        }
        /* all done (none queued since): forget them */
        pthread_mutex_lock(&s->deferred.lock);
        if (s->deferred.n == 0) {
                idset_free(s->deferred.queued);
                s->deferred.queued = NULL;
        }
        pthread_mutex_unlock(&s->deferred.lock);
        st.ns = now_ns() - t0;
        if (ret)
                *ret = st;
        return r < 0 ? r : 0;
}

static void *deferred_main(void *arg) {
        Store *s = arg;
        Deferred *d = &s->deferred;
        /* below the guests and the daemon's requests: it only saves space */
        (void) setpriority(PRIO_PROCESS, (id_t) gettid(), DEFER_NICE);
        pthread_mutex_lock(&d->lock);
        for (;;) {
                while (!d->stop && !d->asked)
                        pthread_cond_wait(&d->wake, &d->lock);
                if (d->stop)
                        break;
                d->asked = false;
                StoreDeferredDone done = d->done;
                void *userdata = d->userdata;
                pthread_mutex_unlock(&d->lock);
                DeferredStats st;
                int r = store_compress_deferred(s, &st);
                if (r < 0)
                        err_clear(); /* what is left stays raw: whole, only bigger */
                if (done && (st.chunks > 0 || r < 0))
                        done(userdata, &st, r);
                pthread_mutex_lock(&d->lock);
        }
        pthread_mutex_unlock(&d->lock);
        return NULL;
}

int store_compress_deferred_later(Store *s, StoreDeferredDone done, void *userdata) {
        Deferred *d = &s->deferred;
        int r = 0;
        pthread_mutex_lock(&d->lock);
        d->done = done;
        d->userdata = userdata;
        d->asked = true;
        if (!d->running && !d->stop) {
                r = -pthread_create(&d->thread, NULL, deferred_main, s);
                d->running = r == 0;
        }
        pthread_cond_signal(&d->wake);
        pthread_mutex_unlock(&d->lock);
        return r;
}
