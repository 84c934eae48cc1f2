/* SPDX-License-Identifier: MIT */
#pragma once

/* Store maintenance: fsck (verify everything reachable), gc (remove what is
 * unreachable), stats. */

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "../basic/progress.h"
#include "store.h"

typedef struct FsckReport {
        uint64_t refs, bad_refs;
        uint64_t objects_referenced, bad_objects;
        uint64_t chunks_referenced, missing_chunks, corrupt_chunks;
        uint64_t chunks_stored, unreferenced_chunks, unreferenced_objects;
        uint64_t tmp_files; /* stray temp files in the store, see store_stray_tmp() */
} FsckReport;

/* Verifies every referenced object and chunk (every chunk is read, decompressed
 * and hashed, on all cores). problem() is called once per problem found.
 * Returns 0 when the check ran (look at the report), < 0 when it could not. */
int store_fsck(Store *s, Progress *p, void (*problem)(const char *msg, void *userdata), void *userdata,
               FsckReport *ret);
/* True when nothing referenced is missing or corrupt. */
static inline int fsck_report_ok(const FsckReport *f) {
        return f->bad_refs == 0 && f->bad_objects == 0 && f->missing_chunks == 0 && f->corrupt_chunks == 0;
}

typedef struct GcReport {
        uint64_t chunks_removed, bytes_removed, objects_removed, tmp_removed;
        uint64_t chunks_young, objects_young; /* unreferenced, kept: younger than the grace */
} GcReport;

/* The grace: an unreferenced chunk or object whose mtime is less than
 * grace_s old is kept. New files are young, and a writer's dedup hit makes
 * an old one young again (store_chunk_has()), so a writer that is between
 * its writes and the ref that names them (a push over several requests) does
 * not lose them, as long as it takes less than grace_s - STORE_TOUCH_S. */
#define STORE_GC_GRACE_DEFAULT_S 3600u
#define STORE_GC_GRACE_MAX_S (365u * 24 * 3600)
typedef struct GcOptions {
        unsigned grace_s; /* 0: remove every unreferenced file */
        time_t now;       /* the clock for the grace; 0 = time(NULL) once the lock is held */
} GcOptions;

/* True when gc keeps an unreferenced file of this mtime (pure). */
static inline bool gc_is_young(const GcOptions *o, time_t now, time_t mtime) {
        return now - mtime < (time_t) o->grace_s;
}

/* Takes the store lock exclusively (waits for writers; a caller that holds
 * it already, and has this process's writers out with store_write_exclude(),
 * passes straight through), then removes every chunk and object no ref
 * reaches and that is not younger than the grace, and stale temp files.
 * Refuses (-EUCLEAN) when a referenced object cannot be read, since its
 * chunks are unknown. o may be NULL: the default grace. */
int store_gc(Store *s, const GcOptions *o, GcReport *ret);

/* Stray temp files (".tmp-*", up to 4 directories below dir, e.g. the store
 * or the home that holds it): files that no live writer can still be using.
 * A file is stray when nobody holds the flock tmpfile_create() took on it,
 * it was last modified before every other process that holds the store lock
 * started (a writer holds the lock before it makes a file, and its pending
 * chunks are closed files that wait for a commit), and at least min_age_s
 * ago (a file made a moment ago may not be locked yet; gc, which holds the
 * store exclusively, passes 0 for the store itself). remove: unlinks them.
 * *ret_bytes (optional): their disk usage. */
#define STORE_TMP_MIN_AGE_S 10
int store_stray_tmp(Store *s, const char *dir, unsigned min_age_s, bool remove, uint64_t *ret_files,
                    uint64_t *ret_bytes);

typedef struct StatsReport {
        uint64_t refs;
        uint64_t chunks;          /* chunk files */
        uint64_t stored_bytes;    /* their size on disk (compressed) */
        uint64_t unique_bytes;    /* their plain size */
        uint64_t objects, object_bytes;
        uint64_t blob_bytes;      /* logical size of every ref'd blob */
        uint64_t referenced_bytes;/* non-zero plain bytes referenced, repeats counted */
} StatsReport;

int store_stats(Store *s, StatsReport *ret);
