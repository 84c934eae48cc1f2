/* SPDX-License-Identifier: MIT */
#include "fsck.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "../basic/error.h"
#include "../basic/failpoint.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "backend.h"
#include "page-index.h"
#include "reach.h"

typedef struct Verify {
        Store *s;
        RoamId *ids;
        size_t n;
        _Atomic size_t next;
        _Atomic uint64_t missing, corrupt;
        _Atomic int fatal;
        Progress *progress;
        pthread_mutex_t lock;
        void (*problem)(const char *msg, void *userdata);
        void *userdata;
} Verify;

static void *verify_worker(void *arg) {
        Verify *v = arg;
        _cleanup_(chunk_codec_freep) ChunkCodec *c = chunk_codec_new(v->s);
        _cleanup_free_ void *buf = malloc(store_chunk_size(v->s));
        if (!c || !buf) {
                atomic_store(&v->fatal, -ENOMEM);
                return NULL;
        }
        for (;;) {
                size_t i = atomic_fetch_add(&v->next, 1);
                if (i >= v->n || atomic_load(&v->fatal))
                        break;
                size_t len;
                err_clear();
                int r = store_chunk_get(v->s, c, &v->ids[i], buf, &len);
                if (r == -ENOENT)
                        atomic_fetch_add(&v->missing, 1);
                else if (r == -EBADMSG)
                        atomic_fetch_add(&v->corrupt, 1);
                else if (r < 0) {
                        atomic_store(&v->fatal, r);
                        break;
                }
                if (r < 0 && v->problem) {
                        pthread_mutex_lock(&v->lock);
                        v->problem(err_message(r), v->userdata);
                        pthread_mutex_unlock(&v->lock);
                }
                progress_add(v->progress, 1);
        }
        return NULL;
}

typedef struct Count {
        IdSet *referenced;
        uint64_t total, unreferenced, bytes, plain;
        Store *s;
        bool want_plain;
} Count;

static int count_cb(const RoamId *id, uint64_t size, void *userdata) {
        Count *c = userdata;
        c->total++;
        c->bytes += size;
        if (c->referenced && !idset_contains(c->referenced, id))
                c->unreferenced++;
        uint64_t plain;
        if (c->want_plain && store_chunk_plain_size(c->s, id, &plain) >= 0)
                c->plain += plain;
        return 0;
}

typedef struct Stray {
        time_t before; /* a stray file was last modified before this */
        bool remove;
        uint64_t files, bytes;
} Stray;

static void stray_under(const char *dir, int depth, Stray *w) {
        if (depth > 4)
                return;
        DIR *d = opendir(dir);
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d))) {
                struct stat st;
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
                    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                /* chunks/ holds none: chunk writes go through tmp/ */
                if (S_ISDIR(st.st_mode) && strcmp(de->d_name, "chunks")) {
                        _cleanup_free_ char *sub = path_join(dir, de->d_name);
                        if (sub)
                                stray_under(sub, depth + 1, w);
                }
                if (!S_ISREG(st.st_mode) || strncmp(de->d_name, ".tmp-", 5) || st.st_mtime >= w->before ||
                    tmpfile_in_use(dirfd(d), de->d_name))
                        continue;
                if (w->remove && unlinkat(dirfd(d), de->d_name, 0) < 0)
                        continue;
                w->files++;
                w->bytes += (uint64_t) st.st_blocks * 512;
        }
        closedir(d);
}

int store_stray_tmp(Store *s, const char *dir, unsigned min_age_s, bool remove, uint64_t *ret_files,
                    uint64_t *ret_bytes) {
        if (!store_is_local(s) && !strcmp(dir, store_path(s))) {
                *ret_files = 0; /* a shared backend has no temp files */
                if (ret_bytes)
                        *ret_bytes = 0;
                return 0;
        }
        time_t oldest;
        int r = store_lock_oldest_holder(s, &oldest);
        if (r < 0)
                return err_set(r, "cannot tell the writers of store '%s' from /proc/locks: %s", store_path(s),
                               strerror(-r));
        time_t young = min_age_s ? time(NULL) - (time_t) min_age_s : TIME_T_MAX;
        Stray w = { .before = MIN(young, oldest - 2), .remove = remove };
        stray_under(dir, 0, &w);
        *ret_files = w.files;
        if (ret_bytes)
                *ret_bytes = w.bytes;
        return 0;
}

int store_fsck(Store *s, Progress *p, void (*problem)(const char *, void *), void *userdata, FsckReport *ret) {
        _cleanup_(reach_freep) Reach *r = reach_new();
        if (!r)
                return -ENOMEM;
        r->problem = problem;
        r->userdata = userdata;
        int k = reach_add_refs(s, r, "");
        if (k < 0)
                return k;

        Verify v = { .s = s, .progress = p, .problem = problem, .userdata = userdata };
        v.n = idset_size(r->chunks);
        v.ids = malloc(MAX(v.n, (size_t) 1) * sizeof(RoamId));
        if (!v.ids)
                return -ENOMEM;
        size_t pos = 0, i = 0;
        while (idset_next(r->chunks, &pos, &v.ids[i]))
                i++;
        progress_set_total(p, v.n);
        pthread_mutex_init(&v.lock, NULL);
        run_threads(MIN(cpus_online(), 16u), verify_worker, &v);
        pthread_mutex_destroy(&v.lock);
        free(v.ids);
        if (atomic_load(&v.fatal) < 0)
                return atomic_load(&v.fatal);

        Count chunks = { .referenced = r->chunks, .s = s };
        k = store_chunk_foreach(s, count_cb, &chunks);
        if (k < 0)
                return k;
        Count objects = { .referenced = r->objects, .s = s };
        k = store_object_foreach(s, count_cb, &objects);
        if (k < 0)
                return k;

        *ret = (FsckReport){
                .refs = r->refs,
                .bad_refs = r->bad_refs,
                .objects_referenced = idset_size(r->objects),
                .bad_objects = r->bad_objects,
                .chunks_referenced = idset_size(r->chunks),
                .missing_chunks = v.missing,
                .corrupt_chunks = v.corrupt,
                .chunks_stored = chunks.total,
                .unreferenced_chunks = chunks.unreferenced,
                .unreferenced_objects = objects.unreferenced,
        };
        return store_stray_tmp(s, store_path(s), STORE_TMP_MIN_AGE_S, false, &ret->tmp_files, NULL);
}

typedef struct Sweep {
        Store *s;
        IdSet *keep;
        bool objects;
        const GcOptions *o;
        time_t now;
        GcReport *rep;
} Sweep;

static int sweep_cb(const RoamId *id, uint64_t size, void *userdata) {
        Sweep *w = userdata;
        if (idset_contains(w->keep, id))
                return 0;
        /* young: gc_is_young(), i.e. modified after now - grace */
        time_t young_after = w->o->grace_s > 0 ? w->now - (time_t) w->o->grace_s : TIME_T_MIN;
        int r = store_remove_unless_young(w->s, w->objects, id, young_after);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (r == 0) {
                (*(w->objects ? &w->rep->objects_young : &w->rep->chunks_young))++;
                return 0;
        }
        if (w->objects)
                w->rep->objects_removed++;
        else {
                w->rep->chunks_removed++;
                w->rep->bytes_removed += size;
        }
        return 0;
}

static bool reachable_object(const RoamId *id, void *userdata) {
        return idset_contains(userdata, id);
}

int store_gc(Store *s, const GcOptions *o, GcReport *ret) {
        static const GcOptions defaults = { .grace_s = STORE_GC_GRACE_DEFAULT_S };
        if (!o)
                o = &defaults;
        int k = store_lock(s, true, false);
        if (k < 0)
                return k;
        /* after the lock: a writer that finished before we got it wrote earlier */
        time_t now = o->now ? o->now : time(NULL);
        _cleanup_(reach_freep) Reach *r = reach_new();
        if (!r)
                return -ENOMEM;
        k = reach_add_refs(s, r, "");
        if (k < 0)
                return k;
        if (r->bad_objects || r->bad_refs)
                return err_set(-EUCLEAN,
                               "store '%s' has unreadable refs or objects: gc would not know what they need "
                               "(run 'roam store fsck' and fix or remove them first)",
                               store_path(s));
        GcReport rep = { 0 };
        Sweep w = { .s = s, .keep = r->chunks, .o = o, .now = now, .rep = &rep };
        k = store_chunk_foreach(s, sweep_cb, &w);
        if (k < 0)
                return k;
        failpoint("gc:after-chunks");
        w.keep = r->objects;
        w.objects = true;
        k = store_object_foreach(s, sweep_cb, &w);
        if (k < 0)
                return k;
        /* page indexes (a cache) of blobs no ref reaches: rebuilt if needed again */
        k = page_index_prune(s, reachable_object, r->objects, NULL);
        if (k < 0)
                return k;
        /* we hold the store exclusively: no writer is left, every temp file
         * that is not locked is a leftover */
        k = store_stray_tmp(s, store_path(s), 0, true, &rep.tmp_removed, NULL);
        if (k < 0)
                return k;
        k = store_is_local(s) ? syncfs_path(store_path(s)) : 0;
        if (k < 0)
                return k;
        *ret = rep;
        return 0;
}

int store_stats(Store *s, StatsReport *ret) {
        _cleanup_(reach_freep) Reach *r = reach_new();
        if (!r)
                return -ENOMEM;
        int k = reach_add_refs(s, r, "");
        if (k < 0)
                return k;
        Count chunks = { .s = s, .want_plain = true };
        k = store_chunk_foreach(s, count_cb, &chunks);
        if (k < 0)
                return k;
        Count objects = { .s = s };
        k = store_object_foreach(s, count_cb, &objects);
        if (k < 0)
                return k;
        *ret = (StatsReport){
                .refs = r->refs,
                .chunks = chunks.total,
                .stored_bytes = chunks.bytes,
                .unique_bytes = chunks.plain,
                .objects = objects.total,
                .object_bytes = objects.bytes,
                .blob_bytes = r->blob_bytes,
                .referenced_bytes = r->nonzero_bytes,
        };
        return 0;
}
