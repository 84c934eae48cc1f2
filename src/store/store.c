/* SPDX-License-Identifier: MIT */
#include "store-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "../basic/error.h"
#include "../basic/failpoint.h"
#include "../basic/fileio.h"
#include "../basic/idset.h"
#include "../basic/interrupt.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "chunk-frame.h"

#define CONFIG_MAX 4096
/* zstd levels a store may use: 1..22, or negative for zstd's fast mode
 * (bigger chunks, faster import); the CLI's 'store init --zstd-level' matches */
#define ZSTD_LEVEL_MIN (-100)
#define ZSTD_LEVEL_MAX 22

/* this thread's open write brackets (they nest; one store at a time) */
static _Thread_local struct {
        const Store *s;
        unsigned depth;
} gate_held;

struct ChunkCodec {
        ZSTD_CCtx *cctx;
        ZSTD_DCtx *dctx;
        void *zbuf;
        size_t zcap;
        void *plain;
        size_t chunk_size;
        int level;
        /* an encrypted store's: sealed bytes, and the cipher context */
        void *sbuf;
        size_t scap;
        SealCtx *seal;
        /* its user's: two chunks' worth, made on first use (chunk_codec_scratch()) */
        uint8_t *scratch;
};

ZSTD_DCtx *chunk_codec_dctx(ChunkCodec *c) {
        return c->dctx;
}

uint8_t *chunk_codec_scratch(ChunkCodec *c, unsigned which) {
        if (which > 1)
                return NULL;
        if (!c->scratch && !(c->scratch = malloc(2 * c->chunk_size)))
                return NULL;
        return c->scratch + which * c->chunk_size;
}

const char *store_path(const Store *s) {
        return s->path;
}
uint32_t store_chunk_size(const Store *s) {
        return s->chunk_size;
}
int store_zstd_level(const Store *s) {
        return s->zstd_level;
}

static int parse_config(const char *text, uint32_t *ret_cs, int *ret_level) {
        /* "roam-store 1\nchunk-size N\nzstd-level N\n" */
        uint32_t cs = 0;
        int level = STORE_ZSTD_LEVEL_DEFAULT;
        bool magic = false;
        const char *p = text;
        while (*p) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t) (nl - p) : strlen(p);
                char line[128];
                if (len >= sizeof line)
                        return -EBADMSG;
                memcpy(line, p, len);
                line[len] = 0;
                char *sp = strchr(line, ' ');
                if (sp) {
                        *sp = 0;
                        uint64_t v;
                        if (!strcmp(line, "roam-store")) {
                                if (strcmp(sp + 1, "1"))
                                        return -EPROTONOSUPPORT;
                                magic = true;
                        } else if (!strcmp(line, "chunk-size")) {
                                if (parse_u64(sp + 1, &v) < 0 || v > UINT32_MAX)
                                        return -EBADMSG;
                                cs = (uint32_t) v;
                        } else if (!strcmp(line, "zstd-level")) {
                                /* 1..22, or negative: zstd's fast levels */
                                bool neg = sp[1] == '-';
                                if (parse_u64(sp + 1 + neg, &v) < 0 || v < 1 ||
                                    v > (neg ? (uint64_t) -ZSTD_LEVEL_MIN : ZSTD_LEVEL_MAX))
                                        return -EBADMSG;
                                level = neg ? -(int) v : (int) v;
                        }
                        /* unknown keys are ignored for forward compatibility */
                } else if (len > 0)
                        return -EBADMSG;
                p += len + (nl ? 1 : 0);
        }
        if (!magic)
                return -EBADMSG;
        if (cs < STORE_CHUNK_SIZE_MIN || cs > STORE_CHUNK_SIZE_MAX || (cs & (cs - 1)))
                return -EBADMSG;
        *ret_cs = cs;
        *ret_level = level;
        return 0;
}

/* A Store on backend be (its data), without files yet (dir_fd -1): what
 * every backend's store starts as. NULL without memory. */
static Store *store_alloc(const StoreBackend *be, void *data, const char *path, uint32_t chunk_size,
                          int zstd_level) {
        Store *s = calloc(1, sizeof *s);
        if (!s)
                return NULL;
        s->lock_fd = s->dir_fd = -1;
        s->chunk_size = chunk_size;
        s->zstd_level = zstd_level;
        s->path = strdup(path);
        s->pending_set = idset_new();
        seen_init(&s->seen);
        seen_init(&s->published);
        fresh_init(&s->fresh);
        pthread_mutex_init(&s->mutex, NULL);
        pthread_mutex_init(&s->commit_lock, NULL);
        pthread_rwlockattr_t ga;
        pthread_rwlockattr_init(&ga);
        /* a waiting gc holds back new writers, so that it is not starved */
        pthread_rwlockattr_setkind_np(&ga, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&s->gate, &ga);
        pthread_rwlockattr_destroy(&ga);
        if (!s->path || !s->pending_set) {
                store_free(s); /* no backend yet: nothing of its data is freed */
                return NULL;
        }
        s->be = be;
        s->be_data = data;
        return s;
}

int store_open(const char *dir, const StoreOptions *opts, Store **ret) {
        static const StoreOptions defaults = { 0 };
        if (!opts)
                opts = &defaults;
        if (!strncmp(dir, "rados:", 6)) {
                if (opts->encrypted)
                        return err_set(-EOPNOTSUPP, "store '%s': encryption is for a laptop's local store", dir);
#if HAVE_RADOS
                return rados_store_open(dir + 6, opts, ret);
#else
                return err_set(-EPROTONOSUPPORT, "store '%s': this roam was built without RADOS (install "
                               "librados-dev and rebuild)", dir);
#endif
        }
        _cleanup_free_ char *cfg = path_join(dir, "config");
        if (!cfg)
                return -ENOMEM;
        _cleanup_free_ char *text = NULL;
        int r = read_full_file(cfg, CONFIG_MAX, &text, NULL);
        if (r == -ENOENT) {
                if (!opts->create)
                        return err_set(-ENOENT, "no store at '%s' (import an image first: 'roam image import')", dir);
                uint32_t cs = opts->chunk_size ? opts->chunk_size : STORE_CHUNK_SIZE_DEFAULT;
                if (cs < STORE_CHUNK_SIZE_MIN || cs > STORE_CHUNK_SIZE_MAX || (cs & (cs - 1)))
                        return err_set(-EINVAL, "chunk size %u is not a power of two from 4K to 4M", cs);
                int level = opts->zstd_level ? opts->zstd_level : STORE_ZSTD_LEVEL_DEFAULT;
                if (level < ZSTD_LEVEL_MIN || level > ZSTD_LEVEL_MAX)
                        return err_set(-EINVAL, "zstd level %d is out of range (%d..-1 or 1..%d)", level,
                                       ZSTD_LEVEL_MIN, ZSTD_LEVEL_MAX);
                static const char *dirs[] = { "chunks", "objects", "refs", "tmp" };
                for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                        _cleanup_free_ char *d = path_join(dir, dirs[i]);
                        if (!d)
                                return -ENOMEM;
                        r = mkdir_p(d, 0755);
                        if (r < 0)
                                return err_set(r, "cannot create store directory '%s': %s", d, strerror(-r));
                }
                char buf[160];
                int n = snprintf(buf, sizeof buf, "roam-store 1\nchunk-size %u\nzstd-level %d\n%s", cs, level,
                                 opts->encrypted ? STORE_CRYPT_CONFIG_LINE "\n" : "");
                r = write_file_atomic(cfg, buf, (size_t) n, 0644);
                if (r < 0)
                        return err_set(r, "cannot write store config '%s': %s", cfg, strerror(-r));
                r = read_full_file(cfg, CONFIG_MAX, &text, NULL);
        }
        if (r < 0)
                return err_set(r, "cannot read store config '%s': %s", cfg, strerror(-r));

        uint32_t cs;
        int level;
        r = parse_config(text, &cs, &level);
        if (r < 0)
                return err_set(r, "store config '%s' is malformed (expected 'roam-store 1')", cfg);
        int encrypted = store_crypt_config(text);
        if (encrypted < 0)
                return err_set(-EPROTONOSUPPORT, "store '%s' uses an encryption this roam does not know (upgrade roam)",
                               dir);

        Store *s = store_alloc(&store_local_backend, NULL, dir, cs, level);
        if (!s)
                return -ENOMEM;
        s->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->dir_fd < 0) {
                r = -errno;
                store_free(s);
                return r;
        }
        if (encrypted && store_crypt_new(&s->crypt) < 0) {
                store_free(s);
                return -ENOMEM;
        }
        /* make sure the subdirectories exist (an older or hand-made store) */
        static const char *dirs[] = { "chunks", "objects", "refs", "tmp" };
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++)
                if (mkdirat(s->dir_fd, dirs[i], 0755) < 0 && errno != EEXIST) {
                        r = -errno;
                        store_free(s);
                        return err_set(r, "cannot create '%s/%s': %s", dir, dirs[i], strerror(-r));
                }
        *ret = s;
        return 0;
}

static void *reserve_main(void *arg) {
        Store *s = arg;
        (void) fresh_reserve(&s->fresh, s->chunk_size, s->reserve_bytes);
        return NULL;
}

int store_fresh_reserve(Store *s, size_t bytes) {
        if (s->reserving)
                return -EBUSY;
        s->reserve_bytes = bytes;
        int r = thread_start_no_signals(&s->reserve_thread, reserve_main, s);
        s->reserving = r == 0;
        return r;
}

void store_free(Store *s) {
        if (!s)
                return;
        if (s->reserving)
                pthread_join(s->reserve_thread, NULL);
        if (s->be == &store_local_backend)
                local_tmp_pool_end(s);
        if (s->be && s->be->free)
                s->be->free(s);
        /* unpublished writes are dropped: their temp files are garbage */
        for (size_t i = 0; i < s->n_pending; i++) {
                unlink(s->pending[i].tmp);
                free(s->pending[i].tmp);
        }
        free(s->pending);
        idset_free(s->pending_set);
        store_crypt_free(s->crypt);
        idset_free(s->committing_set);
        seen_done(&s->seen);
        seen_done(&s->published);
        fresh_done(&s->fresh);
        if (s->lock_fd >= 0)
                close(s->lock_fd);
        if (s->dir_fd >= 0)
                close(s->dir_fd);
        pthread_mutex_destroy(&s->mutex);
        pthread_mutex_destroy(&s->commit_lock);
        pthread_rwlock_destroy(&s->gate);
        free(s->path);
        free(s);
}

int store_lock_within(Store *s, bool exclusive, unsigned timeout_ms) {
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
                int r = store_lock(s, exclusive, true);
                if (r != -EAGAIN)
                        return r;
                clock_gettime(CLOCK_MONOTONIC, &now);
                int64_t ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
                if (ms >= (int64_t) timeout_ms || interrupt_requested())
                        return err_set(-EBUSY, "store '%s' is busy: another roam holds it (an import or a "
                                       "transfer) after %u s; try again when it is done",
                                       s->path, timeout_ms / 1000);
                err_clear();
                usleep(50 * 1000);
        }
}

void store_write_begin(Store *s) {
        if (gate_held.depth > 0 && gate_held.s == s) {
                gate_held.depth++;
                return;
        }
        pthread_rwlock_rdlock(&s->gate);
        gate_held.s = s;
        gate_held.depth = 1;
}

void store_write_end(Store *s) {
        if (gate_held.s != s || gate_held.depth == 0)
                return; /* not ours: a bug, but never an unlock of someone else's */
        if (--gate_held.depth == 0) {
                gate_held.s = NULL;
                pthread_rwlock_unlock(&s->gate);
        }
}

int store_write_exclude(Store *s, unsigned timeout_ms) {
        if (gate_held.s == s && gate_held.depth > 0)
                return -EDEADLK;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
        }
        int e = pthread_rwlock_clockwrlock(&s->gate, CLOCK_MONOTONIC, &until);
        if (e == ETIMEDOUT)
                return err_set(-EBUSY, "store '%s' is busy: a transfer or checkpoint of this daemon still "
                               "writes after %u s; try again when it is done",
                               s->path, timeout_ms / 1000);
        return -e;
}

void store_write_allow(Store *s) {
        pthread_rwlock_unlock(&s->gate);
}

/* ---- codec ---- */

ChunkCodec *chunk_codec_new(const Store *s) {
        ChunkCodec *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->chunk_size = s->chunk_size;
        c->level = s->zstd_level;
        c->zcap = ZSTD_compressBound(s->chunk_size);
        c->cctx = ZSTD_createCCtx();
        c->dctx = ZSTD_createDCtx();
        c->zbuf = malloc(c->zcap);
        c->plain = malloc(s->chunk_size);
        if (s->crypt) {
                c->scap = c->zcap + SEAL_OVERHEAD;
                c->sbuf = malloc(c->scap);
                c->seal = seal_ctx_new();
        }
        if (!c->cctx || !c->dctx || !c->zbuf || !c->plain || (s->crypt && (!c->sbuf || !c->seal))) {
                chunk_codec_free(c);
                return NULL;
        }
        return c;
}

void chunk_codec_free(ChunkCodec *c) {
        if (!c)
                return;
        ZSTD_freeCCtx(c->cctx);
        ZSTD_freeDCtx(c->dctx);
        free(c->zbuf);
        free(c->plain);
        free(c->sbuf);
        free(c->scratch);
        seal_ctx_free(c->seal);
        free(c);
}

/* Decompresses zdata into out (chunk_size bytes) and checks the hash. */
static int decode_verify(ChunkCodec *c, const RoamId *id, const void *zdata, size_t zlen, void *out,
                         size_t *ret_len) {
        char hex[ID_HEX_SIZE];
        unsigned long long want = ZSTD_getFrameContentSize(zdata, zlen);
        if (want == ZSTD_CONTENTSIZE_ERROR || want == ZSTD_CONTENTSIZE_UNKNOWN || want == 0 ||
            want > c->chunk_size)
                return err_set(-EBADMSG, "chunk %s is corrupt (bad zstd frame; run 'roam store fsck')",
                               id_to_hex(id, hex));
        size_t n = ZSTD_decompressDCtx(c->dctx, out, c->chunk_size, zdata, zlen);
        if (ZSTD_isError(n) || n != want)
                return err_set(-EBADMSG, "chunk %s is corrupt (does not decompress; run 'roam store fsck')",
                               id_to_hex(id, hex));
        RoamId got;
        sha256(out, n, &got);
        if (!id_equal(&got, id))
                return err_set(-EBADMSG, "chunk %s is corrupt (hash mismatch; run 'roam store fsck')",
                               id_to_hex(id, hex));
        *ret_len = n;
        return 0;
}

/* ---- the encryption layer (crypt.h): ids to names, bytes sealed ---- */

/* -ENOKEY with detail unless the store is plain or unlocked. */
static int need_key(Store *s) {
        RoamId dummy;
        return s->crypt && !store_crypt_unlocked(s->crypt) ? store_crypt_name(s->crypt, &ID_NULL, &dummy) : 0;
}

/* What id is stored under: id itself in a plain store, else its keyed name
 * (in *buf). */
static int stored_name(Store *s, const RoamId *id, RoamId *buf, const RoamId **ret) {
        if (!s->crypt) {
                *ret = id;
                return 0;
        }
        int r = store_crypt_name(s->crypt, id, buf);
        if (r < 0)
                return r;
        *ret = buf;
        return 0;
}

/* A chunk's codec bytes z, sealed in an encrypted store. */
static int chunk_write(Store *s, ChunkCodec *c, const RoamId *id, const void *z, size_t zlen) {
        int r;
        if (!s->crypt)
                r = s->be->chunk_write(s, id, z, zlen);
        else {
                RoamId name;
                size_t slen;
                r = store_crypt_name(s->crypt, id, &name);
                if (r >= 0)
                        r = store_crypt_seal(s->crypt, c->seal, SEAL_CHUNK, id, z, zlen, c->sbuf, c->scap, &slen);
                if (r >= 0)
                        r = s->be->chunk_write(s, &name, c->sbuf, slen);
        }
        if (r >= 0)
                seen_add(&s->seen, id);
        return r;
}

/* A chunk's codec bytes into out (cap bytes), opened from sealed ones read
 * into sbuf (scap bytes). */
static int chunk_read_sealed(Store *s, SealCtx *ctx, const RoamId *id, void *sbuf, size_t scap, void *out, size_t cap,
                             size_t *ret_len) {
        RoamId name;
        size_t slen;
        int r = store_crypt_name(s->crypt, id, &name);
        if (r < 0)
                return r;
        r = s->be->chunk_read(s, &name, sbuf, scap, &slen);
        if (r == -ENOENT) {
                char hex[ID_HEX_SIZE];
                return err_set(-ENOENT, "chunk %s is missing from store '%s' (run 'roam store fsck')",
                               id_to_hex(id, hex), s->path);
        }
        if (r < 0)
                return r;
        return store_crypt_open(s->crypt, ctx, SEAL_CHUNK, id, sbuf, slen, out, cap, ret_len);
}

int store_chunk_put(Store *s, ChunkCodec *c, const RoamId *id, const void *data, size_t len) {
        if (len == 0 || len > s->chunk_size)
                return -EINVAL;
        bool raw;
        int zlen = chunk_frame_encode(c->cctx, c->level, data, len, c->zbuf, c->zcap, &raw);
        if (zlen < 0)
                return zlen;
        int r = chunk_write(s, c, id, c->zbuf, (size_t) zlen);
        if (r >= 0)
                fresh_put(&s->fresh, id, data, len);
        return r < 0 ? r : zlen;
}

void store_keep_fresh(Store *s, unsigned seconds) {
        fresh_open(&s->fresh, seconds);
}

int store_chunk_fresh(Store *s, const RoamId *id, void *buf, size_t *ret_len) {
        return fresh_get(&s->fresh, id, buf, s->chunk_size, ret_len);
}

size_t store_chunk_pending(Store *s) {
        pthread_mutex_lock(&s->mutex);
        size_t n = s->n_pending;
        pthread_mutex_unlock(&s->mutex);
        return n;
}

int store_chunk_put_compressed(Store *s, ChunkCodec *c, const RoamId *id, const void *zdata, size_t zlen) {
        size_t n;
        if (zlen > c->zcap) {
                char hex[ID_HEX_SIZE];
                return err_set(-EBADMSG, "chunk %s is too large (%zu bytes)", id_to_hex(id, hex), zlen);
        }
        int r = decode_verify(c, id, zdata, zlen, c->plain, &n);
        if (r < 0)
                return r;
        if (memory_is_zero(c->plain, n) && n == c->chunk_size) {
                char hex[ID_HEX_SIZE];
                return err_set(-EBADMSG, "chunk %s is all zeros and is never stored", id_to_hex(id, hex));
        }
        r = chunk_write(s, c, id, zdata, zlen);
        if (r >= 0)
                fresh_put(&s->fresh, id, c->plain, n);
        return r < 0 ? r : (int) zlen;
}

/* the stored bytes of a chunk into the codec's buffer */
static int read_chunk_file(Store *s, ChunkCodec *c, const RoamId *id, size_t *ret_len) {
        int r = s->crypt ? chunk_read_sealed(s, c->seal, id, c->sbuf, c->scap, c->zbuf, c->zcap, ret_len)
                         : s->be->chunk_read(s, id, c->zbuf, c->zcap, ret_len);
        if (r == -EFBIG) {
                char hex[ID_HEX_SIZE];
                return err_set(-EBADMSG, "chunk %s is corrupt (too large; run 'roam store fsck')",
                               id_to_hex(id, hex));
        }
        return r;
}

int store_chunk_get(Store *s, ChunkCodec *c, const RoamId *id, void *buf, size_t *ret_len) {
        if (fresh_get(&s->fresh, id, buf, s->chunk_size, ret_len) > 0)
                return 0;
        size_t zlen;
        int r = read_chunk_file(s, c, id, &zlen);
        if (r < 0)
                return r;
        return decode_verify(c, id, c->zbuf, zlen, buf, ret_len);
}

int store_chunk_get_compressed(Store *s, ChunkCodec *c, const RoamId *id, void **ret, size_t *ret_len) {
        size_t zlen, n;
        int r = read_chunk_file(s, c, id, &zlen);
        if (r < 0)
                return r;
        r = decode_verify(c, id, c->zbuf, zlen, c->plain, &n);
        if (r < 0)
                return r;
        void *copy = malloc(zlen);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, c->zbuf, zlen);
        *ret = copy;
        *ret_len = zlen;
        return 0;
}

/* ---- objects ---- */

int store_object_get(Store *s, const RoamId *id, size_t max, void **ret, size_t *ret_len) {
        char hex[ID_HEX_SIZE];
        char *data = NULL;
        size_t len;
        void *raw = NULL;
        RoamId nbuf;
        const RoamId *n;
        int r = stored_name(s, id, &nbuf, &n);
        if (r < 0)
                return r;
        r = s->be->object_read(s, n, s->crypt ? max + SEAL_OVERHEAD : max, &raw, &len);
        if (r >= 0 && s->crypt) {
                /* opened into a buffer of its own: the plain bytes go to the caller */
                size_t plen = len >= SEAL_OVERHEAD ? len - SEAL_OVERHEAD : 0;
                void *plain = malloc(plen + 1);
                if (!plain) {
                        free(raw);
                        return -ENOMEM;
                }
                r = store_crypt_open(s->crypt, NULL, SEAL_OBJECT, id, raw, len, plain, plen, &len);
                free(raw);
                raw = plain;
                if (r < 0) {
                        free(plain);
                        return r;
                }
                ((char *) plain)[len] = 0; /* as read_full_file() leaves it */
        }
        data = raw;
        if (r == -ENOENT)
                return err_set(r, "object %s is missing from store '%s' (run 'roam store fsck')", id_to_hex(id, hex),
                               s->path);
        if (r == -EFBIG)
                return err_set(-EBADMSG, "object %s is corrupt (too large; run 'roam store fsck')",
                               id_to_hex(id, hex));
        if (r < 0)
                return r;
        RoamId got;
        sha256(data, len, &got);
        if (!id_equal(&got, id)) {
                free(data);
                return err_set(-EBADMSG, "object %s is corrupt (hash mismatch; run 'roam store fsck')",
                               id_to_hex(id, hex));
        }
        *ret = data;
        *ret_len = len;
        return 0;
}

/* ---- the backend interface (backend.h) ---- */

int store_new_backend(const StoreBackend *be, void *data, const char *path, uint32_t chunk_size, int zstd_level,
                      Store **ret) {
        Store *s = store_alloc(be, data, path, chunk_size, zstd_level);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

void *store_backend_data(const Store *s) {
        return s->be_data;
}

bool store_is_local(const Store *s) {
        return s->be == &store_local_backend;
}

int store_config_parse(const char *text, uint32_t *ret_chunk_size, int *ret_zstd_level) {
        return parse_config(text, ret_chunk_size, ret_zstd_level);
}

int store_config_check(const StoreOptions *opts, uint32_t *ret_chunk_size, int *ret_zstd_level) {
        uint32_t cs = opts->chunk_size ? opts->chunk_size : STORE_CHUNK_SIZE_DEFAULT;
        if (cs < STORE_CHUNK_SIZE_MIN || cs > STORE_CHUNK_SIZE_MAX || (cs & (cs - 1)))
                return err_set(-EINVAL, "chunk size %u is not a power of two from 4K to 4M", cs);
        int level = opts->zstd_level ? opts->zstd_level : STORE_ZSTD_LEVEL_DEFAULT;
        if (level < ZSTD_LEVEL_MIN || level > ZSTD_LEVEL_MAX)
                return err_set(-EINVAL, "zstd level %d is out of range (%d..-1 or 1..%d)", level, ZSTD_LEVEL_MIN,
                               ZSTD_LEVEL_MAX);
        *ret_chunk_size = cs;
        *ret_zstd_level = level;
        return 0;
}

int store_config_format(uint32_t chunk_size, int zstd_level, char *buf, size_t size) {
        return snprintf(buf, size, "roam-store 1\nchunk-size %u\nzstd-level %d\n", chunk_size, zstd_level);
}

void store_ref_format(const RoamId *id, char out[static STORE_REF_TEXT_SIZE + 1]) {
        char hex[ID_HEX_SIZE];
        snprintf(out, STORE_REF_TEXT_SIZE + 1, "roam-ref 1 %s\n", id_to_hex(id, hex));
}

static int check_ref_name(const char *name) {
        if (!ref_name_is_valid(name))
                return err_set(-EINVAL, "ref name '%s' is invalid (use " REF_NAME_RULE ")", name);
        return 0;
}

int store_lock(Store *s, bool exclusive, bool nonblock) {
        return s->be->lock(s, exclusive, nonblock);
}

int store_lock_oldest_holder(Store *s, time_t *ret) {
        return s->be->lock_oldest_holder(s, ret);
}

int store_chunk_has(Store *s, const RoamId *id) {
        if (seen_has(&s->seen, id))
                return 1;
        RoamId buf;
        const RoamId *n;
        int r = stored_name(s, id, &buf, &n);
        if (r >= 0)
                r = s->be->has(s, STORE_KIND_CHUNK, n);
        if (r == 1)
                seen_add(&s->seen, id);
        return r;
}

int store_chunk_published(Store *s, const RoamId *id) {
        if (seen_has(&s->published, id))
                return 1;
        int r = store_chunk_stat(s, id, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        seen_add(&s->published, id);
        return 1;
}

int store_chunk_stat(Store *s, const RoamId *id, uint64_t *ret_size) {
        RoamId buf;
        const RoamId *n;
        uint64_t size;
        int r = stored_name(s, id, &buf, &n);
        if (r >= 0)
                r = s->be->stat(s, STORE_KIND_CHUNK, n, &size, NULL);
        if (r < 0)
                return r;
        /* the codec's bytes, as a peer receives them */
        if (s->crypt)
                size = size >= SEAL_OVERHEAD ? size - SEAL_OVERHEAD : 0;
        if (ret_size)
                *ret_size = size;
        return 0;
}

int store_stat(Store *s, bool object, const RoamId *id, uint64_t *ret_size, time_t *ret_mtime) {
        RoamId buf;
        const RoamId *n;
        int r = stored_name(s, id, &buf, &n);
        return r < 0 ? r : s->be->stat(s, object ? STORE_KIND_OBJECT : STORE_KIND_CHUNK, n, ret_size, ret_mtime);
}

/* The first cap bytes of an encrypted store's chunk (opened whole). */
static int chunk_read_head_sealed(Store *s, const RoamId *id, void *head, size_t cap, size_t *ret_len) {
        size_t zcap = ZSTD_compressBound(s->chunk_size), n;
        _cleanup_free_ void *sbuf = malloc(zcap + SEAL_OVERHEAD), *out = malloc(zcap);
        if (!sbuf || !out)
                return -ENOMEM;
        int r = chunk_read_sealed(s, NULL, id, sbuf, zcap + SEAL_OVERHEAD, out, zcap, &n);
        if (r < 0)
                return r;
        *ret_len = MIN(n, cap);
        memcpy(head, out, *ret_len);
        return 0;
}

int store_chunk_plain_size(Store *s, const RoamId *id, uint64_t *ret) {
        uint8_t head[18]; /* ZSTD_FRAMEHEADERSIZE_MAX */
        size_t n;
        int r = s->crypt ? chunk_read_head_sealed(s, id, head, sizeof head, &n)
                         : s->be->chunk_read_head(s, id, head, sizeof head, &n);
        if (r < 0)
                return r;
        unsigned long long cs = ZSTD_getFrameContentSize(head, n);
        if (n == 0 || cs == ZSTD_CONTENTSIZE_ERROR || cs == ZSTD_CONTENTSIZE_UNKNOWN)
                return -EBADMSG;
        *ret = cs;
        return 0;
}

int store_chunk_remove(Store *s, const RoamId *id) {
        seen_forget(&s->seen);
        seen_forget(&s->published);
        fresh_forget(&s->fresh);
        RoamId buf;
        const RoamId *n;
        int r = stored_name(s, id, &buf, &n);
        if (r >= 0)
                r = s->be->remove(s, STORE_KIND_CHUNK, n, TIME_T_MIN);
        return r < 0 ? r : 0;
}

int store_remove_unless_young(Store *s, bool object, const RoamId *id, time_t young_after) {
        if (!object) {
                seen_forget(&s->seen);
                seen_forget(&s->published);
                fresh_forget(&s->fresh);
        }
        RoamId buf;
        const RoamId *n;
        int r = stored_name(s, id, &buf, &n);
        return r < 0 ? r : s->be->remove(s, object ? STORE_KIND_OBJECT : STORE_KIND_CHUNK, n, young_after);
}

typedef struct ForeachUnname {
        Store *s;
        int (*cb)(const RoamId *, uint64_t, void *);
        void *userdata;
} ForeachUnname;

static int foreach_unname(const RoamId *name, uint64_t size, void *userdata) {
        ForeachUnname *f = userdata;
        RoamId id;
        int r = store_crypt_id(f->s->crypt, name, &id);
        return r < 0 ? r : f->cb(&id, size, f->userdata);
}

/* Every chunk (object) by its id: names mapped back in an encrypted store. */
static int foreach_kind(Store *s, StoreKind k, int (*cb)(const RoamId *, uint64_t, void *), void *userdata) {
        if (!s->crypt)
                return s->be->foreach(s, k, cb, userdata);
        int r = need_key(s);
        if (r < 0)
                return r;
        ForeachUnname f = { s, cb, userdata };
        return s->be->foreach(s, k, foreach_unname, &f);
}

int store_chunk_foreach(Store *s, int (*cb)(const RoamId *, uint64_t, void *), void *userdata) {
        return foreach_kind(s, STORE_KIND_CHUNK, cb, userdata);
}

int store_commit(Store *s) {
        return s->be->commit(s);
}

int store_object_put(Store *s, const void *data, size_t len, RoamId *ret_id) {
        RoamId id;
        if (len > STORE_OBJECT_MAX)
                return -EFBIG;
        sha256(data, len, &id);
        RoamId nbuf;
        const RoamId *n;
        int r = stored_name(s, &id, &nbuf, &n);
        if (r >= 0)
                r = s->be->has(s, STORE_KIND_OBJECT, n);
        if (r == 0 && s->crypt) {
                size_t slen, cap = len + SEAL_OVERHEAD;
                _cleanup_free_ void *sealed = malloc(cap);
                if (!sealed)
                        return -ENOMEM;
                r = store_crypt_seal(s->crypt, NULL, SEAL_OBJECT, &id, data, len, sealed, cap, &slen);
                if (r >= 0)
                        r = s->be->object_write(s, n, sealed, slen);
        } else if (r == 0)
                r = s->be->object_write(s, &id, data, len);
        if (r < 0)
                return r;
        *ret_id = id;
        return 0;
}

int store_object_has(Store *s, const RoamId *id) {
        RoamId buf;
        const RoamId *n;
        int r = stored_name(s, id, &buf, &n);
        return r < 0 ? r : s->be->has(s, STORE_KIND_OBJECT, n);
}

int store_object_remove(Store *s, const RoamId *id) {
        RoamId buf;
        const RoamId *n;
        int r = stored_name(s, id, &buf, &n);
        if (r >= 0)
                r = s->be->remove(s, STORE_KIND_OBJECT, n, TIME_T_MIN);
        return r < 0 ? r : 0;
}

int store_object_foreach(Store *s, int (*cb)(const RoamId *, uint64_t, void *), void *userdata) {
        return foreach_kind(s, STORE_KIND_OBJECT, cb, userdata);
}

/* In an encrypted store a ref holds the name of its object. */
int store_ref_get(Store *s, const char *name, RoamId *ret) {
        int r = check_ref_name(name);
        if (r < 0 || !s->crypt)
                return r < 0 ? r : s->be->ref_get(s, name, ret);
        RoamId stored;
        r = need_key(s);
        if (r >= 0)
                r = s->be->ref_get(s, name, &stored);
        return r < 0 ? r : store_crypt_id(s->crypt, &stored, ret);
}

int store_ref_set(Store *s, const char *name, const RoamId *id, const RoamId *expected) {
        int r = check_ref_name(name);
        if (r < 0 || !s->crypt)
                return r < 0 ? r : s->be->ref_set(s, name, id, expected);
        RoamId n, e;
        r = store_crypt_name(s->crypt, id, &n);
        if (r >= 0 && expected && !id_is_null(expected))
                r = store_crypt_name(s->crypt, expected, &e);
        return r < 0 ? r : s->be->ref_set(s, name, &n, expected && !id_is_null(expected) ? &e : expected);
}

int store_ref_delete(Store *s, const char *name) {
        int r = check_ref_name(name);
        return r < 0 ? r : s->be->ref_delete(s, name);
}

typedef struct RefUnname {
        Store *s;
        int (*cb)(const char *, const RoamId *, void *);
        void *userdata;
} RefUnname;

static int ref_unname(const char *name, const RoamId *stored, void *userdata) {
        RefUnname *f = userdata;
        if (!stored)
                return f->cb(name, NULL, f->userdata);
        RoamId id;
        int r = store_crypt_id(f->s->crypt, stored, &id);
        return r < 0 ? r : f->cb(name, &id, f->userdata);
}

int store_ref_foreach(Store *s, const char *prefix, int (*cb)(const char *, const RoamId *, void *),
                      void *userdata) {
        if (!s->crypt)
                return s->be->ref_foreach(s, prefix, cb, userdata);
        int r = need_key(s);
        if (r < 0)
                return r;
        RefUnname f = { s, cb, userdata };
        return s->be->ref_foreach(s, prefix, ref_unname, &f);
}

bool store_is_encrypted(const Store *s) {
        return s->crypt;
}

bool store_is_unlocked(const Store *s) {
        return !s->crypt || store_crypt_unlocked(s->crypt);
}

int store_unlock(Store *s, const uint8_t key[static 32]) {
        if (!s->crypt)
                return 0;
        return store_crypt_unlock(s->crypt, s->dir_fd, s->path, key);
}

void store_forget_key(Store *s) {
        if (s->crypt)
                store_crypt_forget(s->crypt);
}
