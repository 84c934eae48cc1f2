/* SPDX-License-Identifier: MIT */
#pragma once

/* Where a Store keeps its bytes: the backend interface. Two implementations:
 * the local directory (local.c, the default and the on-disk format of
 * docs/store-format.md) and Ceph RADOS (rados.c, 'rados:POOL[?conf=FILE]',
 * shared by the servers of a fleet, docs/fleet.md).
 *
 * A backend stores bytes under ids and names; store.c does everything above
 * that the same way for both: compression, the hash check of every read, the
 * write gate, ref-name rules. Chunks are stored as their zstd frame, objects
 * plain. Every call follows store.h's conventions (negative errno, detail
 * with err_set(), ret_* written only on success). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "store.h"

typedef enum StoreKind {
        STORE_KIND_CHUNK,
        STORE_KIND_OBJECT,
} StoreKind;

typedef struct StoreBackend {
        const char *name;
        /* frees the backend's data (store_backend_data()); the Store itself is
         * freed by store_free() */
        void (*free)(Store *s);
        int (*lock)(Store *s, bool exclusive, bool nonblock);
        int (*lock_oldest_holder)(Store *s, time_t *ret);
        /* 1 if stored (or a chunk pending in this process), 0 if not; a hit
         * refreshes the modification time when older than STORE_TOUCH_S */
        int (*has)(Store *s, StoreKind k, const RoamId *id);
        /* size as stored and modification time; -ENOENT */
        int (*stat)(Store *s, StoreKind k, const RoamId *id, uint64_t *ret_size, time_t *ret_mtime);
        /* a chunk's stored bytes into buf; -EFBIG when there are more than cap,
         * -ENOENT (with detail) when missing */
        int (*chunk_read)(Store *s, const RoamId *id, void *buf, size_t cap, size_t *ret_len);
        /* the first up to cap bytes of a stored chunk (its zstd frame header) */
        int (*chunk_read_head)(Store *s, const RoamId *id, void *buf, size_t cap, size_t *ret_len);
        /* a verified chunk's stored bytes: pending, durable after commit() */
        int (*chunk_write)(Store *s, const RoamId *id, const void *z, size_t zlen);
        int (*commit)(Store *s);
        /* an object's bytes, at most max (-EFBIG beyond); caller frees *ret */
        int (*object_read)(Store *s, const RoamId *id, size_t max, void **ret, size_t *ret_len);
        /* a verified object, durable on return */
        int (*object_write)(Store *s, const RoamId *id, const void *data, size_t len);
        /* removes a chunk or object unless its modification time is after
         * young_after (TIME_T_MIN: whatever its age), atomically against a
         * writer's refresh on a backend shared by hosts: 1 removed, 0 kept
         * because young, -ENOENT gone */
        int (*remove)(Store *s, StoreKind k, const RoamId *id, time_t young_after);
        int (*foreach)(Store *s, StoreKind k, int (*cb)(const RoamId *id, uint64_t size, void *userdata),
                       void *userdata);
        /* refs: the name is valid already (store.c checks it) */
        int (*ref_get)(Store *s, const char *name, RoamId *ret);
        int (*ref_set)(Store *s, const char *name, const RoamId *id, const RoamId *expected);
        int (*ref_delete)(Store *s, const char *name);
        /* every ref name under prefix, sorted, with its id (NULL: malformed) */
        int (*ref_foreach)(Store *s, const char *prefix, int (*cb)(const char *name, const RoamId *id, void *userdata),
                           void *userdata);
} StoreBackend;

#define TIME_T_MIN ((time_t) INT64_MIN)

/* A Store on a backend: path is what store_path() shows (a directory, or the
 * backend's spec), data the backend's own (freed by its free()). */
int store_new_backend(const StoreBackend *be, void *data, const char *path, uint32_t chunk_size, int zstd_level,
                      Store **ret);
void *store_backend_data(const Store *s);

/* The store config's text and its parser (both backends keep it). */
int store_config_parse(const char *text, uint32_t *ret_chunk_size, int *ret_zstd_level);
int store_config_check(const StoreOptions *opts, uint32_t *ret_chunk_size, int *ret_zstd_level);
int store_config_format(uint32_t chunk_size, int zstd_level, char *buf, size_t size);

/* "roam-ref 1 <64 hex>\n": a ref's bytes, in both backends */
#define STORE_REF_TEXT_SIZE 76 /* magic 11 + 64 hex + newline */
int store_ref_parse(const char *text, size_t len, RoamId *ret);
void store_ref_format(const RoamId *id, char out[static STORE_REF_TEXT_SIZE + 1]);

#if HAVE_RADOS
/* rados.c: opens 'rados:POOL[?conf=FILE]' (spec without the 'rados:'). */
int rados_store_open(const char *spec, const StoreOptions *opts, Store **ret);
#endif
