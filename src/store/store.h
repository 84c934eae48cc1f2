/* SPDX-License-Identifier: MIT */
#pragma once

/* The content-addressed store: chunks, objects and refs under one directory.
 *
 *   DIR/config                 "roam-store 1" + chunk size + zstd level
 *   DIR/lock                   flock: shared for writers, exclusive for gc
 *   DIR/chunks/ab/<64 hex>     one chunk: a zstd frame of <= chunk_size plain
 *                              bytes whose SHA-256 is the name
 *   DIR/objects/ab/<64 hex>    one metadata object (index, manifest), stored
 *                              plain, named by the SHA-256 of its bytes
 *   DIR/refs/<ref name>        "roam-ref 1 <64 hex>\n": a name for an object
 *   DIR/tmp/                   temp files of writers in progress
 *
 * The layout doubles as the HTTP layout of the sync protocol
 * (docs/store-format.md, docs/sync-protocol.md).
 *
 * Durability: chunk writes go to tmp/ and are published in batches by
 * store_commit(): syncfs() of the whole batch, then rename() into chunks/,
 * then syncfs() again. Refs and objects are written one by one with temp file,
 * fsync, rename, fsync of the directory. A ref is only ever written after a
 * store_commit() that made every chunk below it durable, so a crash at any
 * moment leaves at worst unreferenced chunks and temp files (gc removes them).
 *
 * Every read re-verifies the SHA-256: a corrupt chunk or object is -EBADMSG
 * with an error detail that names it, never wrong bytes.
 *
 * Thread safety: one Store may be used from several threads for chunk
 * put/get/has (each thread with its own ChunkCodec). Ref, object and commit
 * calls are thread-safe too (internal mutex). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <zstd.h>

#include "../basic/hash.h"

#define STORE_CHUNK_SIZE_DEFAULT (64u * 1024)
#define STORE_CHUNK_SIZE_MIN (4u * 1024)
#define STORE_CHUNK_SIZE_MAX (4u * 1024 * 1024)
#define STORE_OBJECT_MAX (1024u * 1024 * 1024) /* bound on any metadata object */
#define STORE_ZSTD_LEVEL_DEFAULT 1

typedef struct Store Store;
typedef struct ChunkCodec ChunkCodec;

typedef struct StoreOptions {
        bool create;         /* create the store if missing */
        uint32_t chunk_size; /* for a new store; 0 = default */
        int zstd_level;      /* for a new store; 0 = default */
        bool encrypted;      /* for a new store: chunks and objects sealed (a laptop's) */
} StoreOptions;

/* Opens (or creates) the store in dir. Caller frees with store_free().
 * dir may also be 'rados:POOL[?conf=FILE]': a pool of Ceph RADOS shared by
 * the servers of a fleet (docs/fleet.md; in builds with librados). */
int store_open(const char *dir, const StoreOptions *opts, Store **ret);
void store_free(Store *s);
static inline void store_freep(Store **s) {
        if (*s)
                store_free(*s);
}

/* The directory, or the spec of a store that is not local. */
const char *store_path(const Store *s);
/* True for a store in a local directory (store_path() is a directory). */
bool store_is_local(const Store *s);
uint32_t store_chunk_size(const Store *s);
int store_zstd_level(const Store *s);

/* Takes the store lock (flock on DIR/lock), held until store_free().
 * Writers take it shared, gc exclusive. Blocks unless nonblock (-EAGAIN). */
int store_lock(Store *s, bool exclusive, bool nonblock);
/* store_lock() that waits at most timeout_ms (-EBUSY with detail after).
 * Converting a held lock is flock's: not atomic, so after a failure the
 * caller holds no store lock and takes the one it needs again. */
int store_lock_within(Store *s, bool exclusive, unsigned timeout_ms);

/* The write gate, for gc in a process that also writes (roam serve): other
 * processes are kept out by the store lock, this process's own writers by
 * the gate. A writer brackets every operation that writes chunks, objects or
 * refs, from its first "is it there already?" to the ref that names what it
 * wrote, with store_write_begin()/end() (shared; brackets nest on one thread,
 * one store at a time). store_write_exclude() waits until no bracket is open
 * and holds new ones back, up to timeout_ms (-EBUSY with detail; -EDEADLK
 * from inside a bracket); store_write_allow() ends that. */
void store_write_begin(Store *s);
void store_write_end(Store *s);
int store_write_exclude(Store *s, unsigned timeout_ms);
void store_write_allow(Store *s);

/* When the longest-running other process that holds the store lock started
 * (seconds since the epoch, from /proc/locks), TIME_T_MAX when none does.
 * Every file such a writer made is younger than that. */
#define TIME_T_MAX ((time_t) INT64_MAX)
int store_lock_oldest_holder(Store *s, time_t *ret);

/* ---- per-thread compression context ---- */
/* Caller frees with chunk_codec_free() (accepts NULL). */
ChunkCodec *chunk_codec_new(const Store *s);
void chunk_codec_free(ChunkCodec *c);
/* The codec's decompression context, for a caller's one-shot decompressions
 * between its store calls (one thread, like the codec). */
ZSTD_DCtx *chunk_codec_dctx(ChunkCodec *c);
/* Buffer which (0 or 1) of the codec's user, chunk_size bytes, kept with the
 * codec (none of the codec's own calls use it): a worker thread that builds
 * a chunk per call reuses memory instead of taking new pages from malloc()
 * each time (whose free gives them back to the kernel once 128 KiB are
 * free at the top of a thread's heap). NULL without memory. */
uint8_t *chunk_codec_scratch(ChunkCodec *c, unsigned which);
static inline void chunk_codec_freep(ChunkCodec **c) {
        if (*c)
                chunk_codec_free(*c);
}

/* ---- chunks ---- */
/* A dedup hit refreshes the file's mtime when it is older than this (gc keeps
 * unreferenced files younger than its grace, docs/store-format.md). */
#define STORE_TOUCH_S 60
/* 1 if the chunk is stored (or pending in this process), 0 if not. A writer's
 * "present, skip it": a stored chunk's mtime is refreshed (STORE_TOUCH_S). */
int store_chunk_has(Store *s, const RoamId *id);
/* Stores plain bytes (len <= chunk size) under id, which the caller computed
 * as sha256(data): a zstd frame, compressed or, when that does not shrink
 * it, raw (chunk-frame.h). Never call it for all-zero data. Durable after
 * store_commit(). Returns the stored size. */
int store_chunk_put(Store *s, ChunkCodec *c, const RoamId *id, const void *data, size_t len);
/* For the next seconds (0: from now on no more), chunks stored here are also
 * kept as plain bytes in memory, and store_chunk_get() of one is a copy
 * (fresh.h): a hand-over's remainder, stored and then restored. */
void store_keep_fresh(Store *s, unsigned seconds);
/* 1 with the plain bytes of a chunk stored in that window (buf: chunk size
 * bytes), 0 when it is not in memory. */
int store_chunk_fresh(Store *s, const RoamId *id, void *buf, size_t *ret_len);
/* Stores a compressed chunk as received from a peer: decompresses and verifies
 * the hash first; -EBADMSG (with detail) if the bytes don't match id.
 * Returns zlen. */
int store_chunk_put_compressed(Store *s, ChunkCodec *c, const RoamId *id, const void *zdata, size_t zlen);
/* Reads, decompresses and verifies a chunk into buf (chunk size bytes).
 * -ENOENT if missing, -EBADMSG if corrupt. */
int store_chunk_get(Store *s, ChunkCodec *c, const RoamId *id, void *buf, size_t *ret_len);
/* Reads the stored (compressed) bytes and verifies them. Caller frees *ret. */
int store_chunk_get_compressed(Store *s, ChunkCodec *c, const RoamId *id, void **ret, size_t *ret_len);
/* Size of the stored file, or -ENOENT. */
int store_chunk_stat(Store *s, const RoamId *id, uint64_t *ret_size);
/* 1 if the chunk is published (durable: not only pending in some writer),
 * 0 if not: a completeness check before a ref is set. Answered from memory
 * for chunks found so lately (seen.h), else a stat. */
int store_chunk_published(Store *s, const RoamId *id);
int store_chunk_remove(Store *s, const RoamId *id);
/* The plain size of a stored chunk, from its zstd frame header alone. */
int store_chunk_plain_size(Store *s, const RoamId *id, uint64_t *ret);
/* A chunk's (object's) stored size and modification time; -ENOENT. */
int store_stat(Store *s, bool object, const RoamId *id, uint64_t *ret_size, time_t *ret_mtime);
/* For gc: removes a chunk (object) unless it was modified after young_after,
 * atomically against a writer's refresh (store_chunk_has()) also on a store
 * shared by hosts: 1 removed, 0 kept (young), -ENOENT gone already. */
int store_remove_unless_young(Store *s, bool object, const RoamId *id, time_t young_after);
/* Calls cb for every stored chunk; stops on a negative return and passes it on. */
int store_chunk_foreach(Store *s, int (*cb)(const RoamId *id, uint64_t size, void *userdata), void *userdata);

/* Publishes all pending chunk writes durably (see above). */
int store_commit(Store *s);
/* Chunk writes of this process not yet published by a commit. A writer
 * commits by itself after 4096 of them; a bulk writer may commit
 * earlier from a thread of its own, so that its writers never wait for it. */
size_t store_chunk_pending(Store *s);

/* ---- objects ---- */
int store_object_put(Store *s, const void *data, size_t len, RoamId *ret_id);
/* Reads and verifies an object of at most max bytes. Caller frees *ret. */
int store_object_get(Store *s, const RoamId *id, size_t max, void **ret, size_t *ret_len);
/* 1 or 0; like store_chunk_has() it refreshes the mtime of a stored object,
 * as store_object_put() does when the object is there already. */
int store_object_has(Store *s, const RoamId *id);
int store_object_remove(Store *s, const RoamId *id);
int store_object_foreach(Store *s, int (*cb)(const RoamId *id, uint64_t size, void *userdata), void *userdata);

/* ---- refs ---- */
/* -ENOENT if absent; -EBADMSG (with detail) if the ref file is malformed. */
int store_ref_get(Store *s, const char *name, RoamId *ret);
/* Sets name to id. If expected is non-NULL the update happens only if the
 * current value equals *expected (ID_NULL = must not exist): -ESTALE otherwise. */
int store_ref_set(Store *s, const char *name, const RoamId *id, const RoamId *expected);
int store_ref_delete(Store *s, const char *name);
/* Calls cb(name, id) for every ref whose name starts with prefix ("" = all),
 * in sorted order. For a malformed ref file, cb gets id == NULL. */
int store_ref_foreach(Store *s, const char *prefix, int (*cb)(const char *name, const RoamId *id, void *userdata),
                      void *userdata);

/* ---- encryption at rest (docs/store-format.md "Encryption at rest") ----
 * An encrypted store (config line "encryption aes-256-gcm", a laptop's) keeps
 * every chunk and object sealed under a name keyed from its id, and refs
 * that hold those names; the API above is the same, with plain ids and
 * bytes. It opens locked: until store_unlock() every call that reads or
 * writes chunks, objects or refs fails with -ENOKEY ("this laptop is locked
 * (run 'roam unlock')"). A plain store ignores both calls. */
bool store_is_encrypted(const Store *s);
/* True for a plain store or an unlocked one. */
bool store_is_unlocked(const Store *s);
/* The user's 32-byte data key (crypto/home-keys.h). The first unlock records
 * the key's check value in DIR/crypt-check; another key is then refused
 * (-EKEYREJECTED with detail). Thread-safe against every other call. */
int store_unlock(Store *s, const uint8_t key[static 32]);
/* Forgets the key: the store is locked again. */
void store_forget_key(Store *s);

/* A local store keeps about n empty temp files made ahead by a thread of its
 * own, for its chunk writes (a daemon's: a hand-over's pause creates no file).
 * It makes none while a hand-over's window is open (store_keep_fresh()); what
 * is left of them goes with store_free(). 0 for a store without temp files;
 * -EBUSY when called twice. */
int store_tmp_pool(Store *s, unsigned n);
/* Memory for the plain copies of a hand-over's window (store_keep_fresh()),
 * bytes of it, mapped and touched by a thread of its own now and kept until
 * store_free() (fresh_reserve()): a daemon's, so that a pause copies into
 * memory that takes no page faults. -EBUSY when called twice. */
int store_fresh_reserve(Store *s, size_t bytes);
