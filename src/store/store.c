/* SPDX-License-Identifier: MIT */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/idset.h"
#include "../basic/interrupt.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "chunk-frame.h"

#define CONFIG_MAX 4096
#define REF_FILE_MAX 256
#define COMMIT_BATCH 4096
/* zstd levels a store may use: 1..22, or negative for zstd's fast mode
 * (bigger chunks, faster import); the CLI's 'store init --zstd-level' matches */
#define ZSTD_LEVEL_MIN (-100)
#define ZSTD_LEVEL_MAX 22

typedef struct Pending {
        char *tmp;
        RoamId id;
} Pending;

struct Store {
        char *path;
        uint32_t chunk_size;
        int zstd_level;
        int dir_fd;
        int lock_fd;
        pthread_mutex_t mutex; /* pending list, refs */
        /* held through a whole store_commit(): a commit returns only once every
         * chunk put before it (by any thread) is durable, also when another
         * thread's commit took the list */
        pthread_mutex_t commit_lock;
        Pending *pending;
        size_t n_pending, cap_pending;
        IdSet *pending_set;
        IdSet *committing_set; /* the ids a commit is renaming, until it is done */
        /* the write gate: writers shared, gc exclusive (store_write_begin()) */
        pthread_rwlock_t gate;
};

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
};

const char *store_path(const Store *s) {
        return s->path;
}
uint32_t store_chunk_size(const Store *s) {
        return s->chunk_size;
}
int store_zstd_level(const Store *s) {
        return s->zstd_level;
}

static int sub(const Store *s, const char *rel, char **ret) {
        char *p = path_join(s->path, rel);
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
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

int store_open(const char *dir, const StoreOptions *opts, Store **ret) {
        static const StoreOptions defaults = { 0 };
        if (!opts)
                opts = &defaults;
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
                char buf[128];
                int n = snprintf(buf, sizeof buf, "roam-store 1\nchunk-size %u\nzstd-level %d\n", cs, level);
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

        Store *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->lock_fd = -1;
        s->chunk_size = cs;
        s->zstd_level = level;
        s->path = strdup(dir);
        s->pending_set = idset_new();
        pthread_mutex_init(&s->mutex, NULL);
        pthread_mutex_init(&s->commit_lock, NULL);
        pthread_rwlockattr_t ga;
        pthread_rwlockattr_init(&ga);
        /* a waiting gc holds back new writers, so that it is not starved */
        pthread_rwlockattr_setkind_np(&ga, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&s->gate, &ga);
        pthread_rwlockattr_destroy(&ga);
        s->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (!s->path || !s->pending_set || s->dir_fd < 0) {
                r = s->dir_fd < 0 ? -errno : -ENOMEM;
                store_free(s);
                return r;
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

void store_free(Store *s) {
        if (!s)
                return;
        /* unpublished writes are dropped: their temp files are garbage */
        for (size_t i = 0; i < s->n_pending; i++) {
                unlink(s->pending[i].tmp);
                free(s->pending[i].tmp);
        }
        free(s->pending);
        idset_free(s->pending_set);
        idset_free(s->committing_set);
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

int store_lock(Store *s, bool exclusive, bool nonblock) {
        if (s->lock_fd < 0) {
                s->lock_fd = openat(s->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
                if (s->lock_fd < 0)
                        return err_set(-errno, "cannot write to store '%s': %s (make it writable, or use another "
                                       "store with --home)",
                                       s->path, strerror(errno));
        }
        int op = (exclusive ? LOCK_EX : LOCK_SH) | (nonblock ? LOCK_NB : 0);
        while (flock(s->lock_fd, op) < 0) {
                if (errno == EINTR && !interrupt_requested())
                        continue;
                if (errno == EWOULDBLOCK)
                        return err_set(-EAGAIN, "store '%s' is busy (another roam is using it; try again)", s->path);
                return err_set(-errno, "cannot lock store '%s': %s", s->path, strerror(errno));
        }
        return 0;
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

int store_lock_oldest_holder(Store *s, time_t *ret) {
        struct stat st;
        if (fstatat(s->dir_fd, "lock", &st, 0) < 0) {
                if (errno != ENOENT)
                        return -errno;
                *ret = TIME_T_MAX;
                return 0;
        }
        _cleanup_free_ char *text = NULL;
        int r = read_proc_file("/proc/locks", 16 << 20, &text, NULL);
        if (r < 0)
                return r;
        time_t oldest = TIME_T_MAX;
        for (char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
                /* "3: FLOCK  ADVISORY  READ 1234 fd:01:5678 0 EOF"; waiters have "->" */
                char kind[16];
                unsigned maj, min;
                unsigned long long ino;
                int pid;
                if (sscanf(line, "%*d: %15s %*s %*s %d %x:%x:%llu", kind, &pid, &maj, &min, &ino) != 5 ||
                    strcmp(kind, "FLOCK") || ino != (unsigned long long) st.st_ino || maj != major(st.st_dev) ||
                    min != minor(st.st_dev) || pid == getpid())
                        continue;
                time_t t;
                if (proc_pid_start_time(pid, &t) >= 0 && t < oldest)
                        oldest = t;
        }
        *ret = oldest;
        return 0;
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
        if (!c->cctx || !c->dctx || !c->zbuf || !c->plain) {
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

/* ---- chunks ---- */

static void chunk_rel(const RoamId *id, char out[static 96]) {
        char hex[ID_HEX_SIZE];
        id_to_hex(id, hex);
        snprintf(out, 96, "chunks/%.2s/%s", hex, hex);
}

/* A writer that finds a chunk or object present skips writing it and will
 * reference it: its mtime is brought to now (when older than STORE_TOUCH_S)
 * so that gc's grace keeps it even while nothing references it yet. Errors
 * (a read-only store, another user's file) leave the file as it is. */
static int present_touch(Store *s, const char *rel) {
        struct stat st;
        if (fstatat(s->dir_fd, rel, &st, 0) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (time(NULL) - st.st_mtime >= STORE_TOUCH_S)
                (void) utimensat(s->dir_fd, rel, NULL, 0);
        return 1;
}

int store_chunk_has(Store *s, const RoamId *id) {
        /* pending first: a commit renames a chunk before it forgets it, so
         * one it forgot is found under its name below (never neither) */
        pthread_mutex_lock(&s->mutex);
        bool p = idset_contains(s->pending_set, id) ||
                 (s->committing_set && idset_contains(s->committing_set, id));
        pthread_mutex_unlock(&s->mutex);
        if (p)
                return 1;
        char rel[96];
        chunk_rel(id, rel);
        return present_touch(s, rel);
}

int store_chunk_stat(Store *s, const RoamId *id, uint64_t *ret_size) {
        char rel[96];
        struct stat st;
        chunk_rel(id, rel);
        if (fstatat(s->dir_fd, rel, &st, 0) < 0)
                return -errno;
        *ret_size = (uint64_t) st.st_size;
        return 0;
}

static int write_pending(Store *s, const RoamId *id, const void *z, size_t zlen) {
        _cleanup_free_ char *tmpdir = NULL, *tmp = NULL;
        int r = sub(s, "tmp", &tmpdir);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = tmpfile_create(tmpdir, &tmp);
        if (fd < 0)
                return err_set(fd, "cannot write to store '%s': %s", s->path, strerror(-fd));
        r = loop_write(fd, z, zlen);
        if (r < 0) {
                unlink(tmp);
                return err_set(r, "cannot write to store '%s': %s (free some space, then run 'roam store gc')",
                               s->path, strerror(-r));
        }
        bool need_commit = false;
        pthread_mutex_lock(&s->mutex);
        if (s->n_pending == s->cap_pending) {
                size_t ncap = s->cap_pending ? s->cap_pending * 2 : 256;
                Pending *np = realloc(s->pending, ncap * sizeof *np);
                if (!np) {
                        pthread_mutex_unlock(&s->mutex);
                        unlink(tmp);
                        return -ENOMEM;
                }
                s->pending = np;
                s->cap_pending = ncap;
        }
        r = idset_add(s->pending_set, id);
        if (r < 0) {
                pthread_mutex_unlock(&s->mutex);
                unlink(tmp);
                return r;
        }
        s->pending[s->n_pending++] = (Pending){ .tmp = TAKE_PTR(tmp), .id = *id };
        need_commit = s->n_pending >= COMMIT_BATCH;
        pthread_mutex_unlock(&s->mutex);
        return need_commit ? store_commit(s) : 0;
}

int store_chunk_put(Store *s, ChunkCodec *c, const RoamId *id, const void *data, size_t len) {
        if (len == 0 || len > s->chunk_size)
                return -EINVAL;
        bool raw;
        int zlen = chunk_frame_encode(c->cctx, c->level, data, len, c->zbuf, c->zcap, &raw);
        if (zlen < 0)
                return zlen;
        int r = write_pending(s, id, c->zbuf, (size_t) zlen);
        return r < 0 ? r : zlen;
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
        r = write_pending(s, id, zdata, zlen);
        return r < 0 ? r : (int) zlen;
}

static int read_chunk_file(Store *s, ChunkCodec *c, const RoamId *id, size_t *ret_len) {
        char rel[96];
        char hex[ID_HEX_SIZE];
        chunk_rel(id, rel);
        _cleanup_close_ int fd = openat(s->dir_fd, rel, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT)
                        return err_set(-ENOENT, "chunk %s is missing from store '%s' (run 'roam store fsck')",
                                       id_to_hex(id, hex), s->path);
                return -errno;
        }
        /* one byte more than the bound tells an oversized file */
        ssize_t n = loop_read(fd, c->zbuf, c->zcap);
        if (n < 0)
                return (int) n;
        if ((size_t) n == c->zcap) {
                char extra;
                if (read(fd, &extra, 1) == 1)
                        return err_set(-EBADMSG, "chunk %s is corrupt (too large; run 'roam store fsck')",
                                       id_to_hex(id, hex));
        }
        *ret_len = (size_t) n;
        return 0;
}

int store_chunk_get(Store *s, ChunkCodec *c, const RoamId *id, void *buf, size_t *ret_len) {
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

int store_chunk_remove(Store *s, const RoamId *id) {
        char rel[96];
        chunk_rel(id, rel);
        if (unlinkat(s->dir_fd, rel, 0) < 0)
                return -errno;
        return 0;
}

static int foreach_in(Store *s, const char *top, int (*cb)(const RoamId *, uint64_t, void *), void *userdata) {
        _cleanup_close_ int tfd = openat(s->dir_fd, top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (tfd < 0)
                return errno == ENOENT ? 0 : -errno;
        for (int b = 0; b < 256; b++) {
                char sd[3];
                snprintf(sd, sizeof sd, "%02x", b);
                int fd = openat(tfd, sd, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0) {
                        if (errno == ENOENT)
                                continue;
                        return -errno;
                }
                DIR *d = fdopendir(fd);
                if (!d) {
                        close(fd);
                        return -errno;
                }
                struct dirent *de;
                int r = 0;
                while ((de = readdir(d))) {
                        RoamId id;
                        if (de->d_name[0] == '.')
                                continue;
                        if (id_from_hex(de->d_name, &id) < 0 || strncmp(de->d_name, sd, 2))
                                continue; /* not ours */
                        struct stat st;
                        if (fstatat(dirfd(d), de->d_name, &st, 0) < 0)
                                continue; /* removed meanwhile */
                        r = cb(&id, (uint64_t) st.st_size, userdata);
                        if (r < 0)
                                break;
                }
                closedir(d);
                if (r < 0)
                        return r;
        }
        return 0;
}

int store_chunk_foreach(Store *s, int (*cb)(const RoamId *, uint64_t, void *), void *userdata) {
        return foreach_in(s, "chunks", cb, userdata);
}

static int commit_locked(Store *s);

int store_commit(Store *s) {
        pthread_mutex_lock(&s->commit_lock);
        int r = commit_locked(s);
        pthread_mutex_unlock(&s->commit_lock);
        return r;
}

static int commit_locked(Store *s) {
        IdSet *fresh = idset_new();
        if (!fresh)
                return -ENOMEM;
        pthread_mutex_lock(&s->mutex);
        Pending *list = TAKE_PTR(s->pending);
        size_t n = s->n_pending;
        s->n_pending = s->cap_pending = 0;
        /* commits are serialized (commit_lock): there is no other committing set */
        s->committing_set = s->pending_set;
        s->pending_set = fresh;
        pthread_mutex_unlock(&s->mutex);
        int r = 0;
        if (n > 0 && syncfs(s->dir_fd) < 0)
                r = -errno;
        bool made_dir[256] = { false };
        for (size_t i = 0; i < n; i++) {
                if (r >= 0) {
                        char rel[96], full_dir[16];
                        chunk_rel(&list[i].id, rel);
                        snprintf(full_dir, sizeof full_dir, "chunks/%02x", list[i].id.b[0]);
                        if (!made_dir[list[i].id.b[0]]) {
                                if (mkdirat(s->dir_fd, full_dir, 0755) < 0 && errno != EEXIST)
                                        r = -errno;
                                made_dir[list[i].id.b[0]] = true;
                        }
                        if (r >= 0 && renameat(AT_FDCWD, list[i].tmp, s->dir_fd, rel) < 0)
                                r = -errno;
                }
                if (r < 0)
                        unlink(list[i].tmp);
                free(list[i].tmp);
        }
        free(list);
        if (r >= 0 && n > 0 && syncfs(s->dir_fd) < 0)
                r = -errno;
        pthread_mutex_lock(&s->mutex);
        IdSet *done = TAKE_PTR(s->committing_set);
        pthread_mutex_unlock(&s->mutex);
        idset_free(done);
        if (r < 0)
                return err_set_if_none(r, "cannot publish chunks in store '%s': %s", s->path, strerror(-r));
        return 0;
}

/* ---- objects ---- */

static void object_rel(const RoamId *id, char out[static 96]) {
        char hex[ID_HEX_SIZE];
        id_to_hex(id, hex);
        snprintf(out, 96, "objects/%.2s/%s", hex, hex);
}

int store_object_put(Store *s, const void *data, size_t len, RoamId *ret_id) {
        RoamId id;
        char rel[96];
        if (len > STORE_OBJECT_MAX)
                return -EFBIG;
        sha256(data, len, &id);
        object_rel(&id, rel);
        if (present_touch(s, rel) > 0) {
                *ret_id = id;
                return 0;
        }
        char d[16];
        memcpy(d, rel, 10);
        d[10] = 0; /* "objects/ab" */
        if (mkdirat(s->dir_fd, d, 0755) < 0 && errno != EEXIST)
                return -errno;
        _cleanup_free_ char *full = path_join(s->path, rel);
        if (!full)
                return -ENOMEM;
        int r = write_file_atomic(full, data, len, 0644);
        if (r < 0)
                return err_set(r, "cannot write object to store '%s': %s", s->path, strerror(-r));
        *ret_id = id;
        return 0;
}

int store_object_get(Store *s, const RoamId *id, size_t max, void **ret, size_t *ret_len) {
        char rel[96], hex[ID_HEX_SIZE];
        object_rel(id, rel);
        _cleanup_free_ char *full = path_join(s->path, rel);
        if (!full)
                return -ENOMEM;
        char *data = NULL;
        size_t len;
        int r = read_full_file(full, max, &data, &len);
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

int store_object_has(Store *s, const RoamId *id) {
        char rel[96];
        object_rel(id, rel);
        return present_touch(s, rel);
}

int store_object_remove(Store *s, const RoamId *id) {
        char rel[96];
        object_rel(id, rel);
        return unlinkat(s->dir_fd, rel, 0) < 0 ? -errno : 0;
}

int store_object_foreach(Store *s, int (*cb)(const RoamId *, uint64_t, void *), void *userdata) {
        return foreach_in(s, "objects", cb, userdata);
}

/* ---- refs ---- */

static int ref_parse(const char *text, size_t len, RoamId *ret) {
        /* "roam-ref 1 <64 hex>\n" */
        static const char magic[] = "roam-ref 1 ";
        size_t ml = sizeof magic - 1;
        if (len != ml + 64 + 1 || memcmp(text, magic, ml) || text[len - 1] != '\n')
                return -EBADMSG;
        char hex[65];
        memcpy(hex, text + ml, 64);
        hex[64] = 0;
        return id_from_hex(hex, ret) < 0 ? -EBADMSG : 0;
}

static int ref_path(Store *s, const char *name, char **ret) {
        if (!ref_name_is_valid(name))
                return err_set(-EINVAL, "ref name '%s' is invalid (use " REF_NAME_RULE ")",
                               name);
        char *rel = path_join("refs", name);
        if (!rel)
                return -ENOMEM;
        char *p = path_join(s->path, rel);
        free(rel);
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

static int ref_get_locked(Store *s, const char *name, RoamId *ret) {
        _cleanup_free_ char *p = NULL, *text = NULL;
        size_t len;
        int r = ref_path(s, name, &p);
        if (r < 0)
                return r;
        r = read_full_file(p, REF_FILE_MAX, &text, &len);
        if (r == -EISDIR)
                return -ENOENT;
        if (r == -EFBIG || (r >= 0 && ref_parse(text, len, ret) < 0))
                return err_set(-EBADMSG, "ref '%s' is malformed (remove it with 'roam image rm' or restore it)",
                               name);
        return r;
}

int store_ref_get(Store *s, const char *name, RoamId *ret) {
        pthread_mutex_lock(&s->mutex);
        int r = ref_get_locked(s, name, ret);
        pthread_mutex_unlock(&s->mutex);
        return r;
}

/* Cross-process exclusion for ref updates: flock on DIR/refs.lock. */
static int ref_lock(Store *s) {
        int fd = openat(s->dir_fd, "refs.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        while (flock(fd, LOCK_EX) < 0)
                if (errno != EINTR) {
                        int r = -errno;
                        close(fd);
                        return r;
                }
        return fd;
}

int store_ref_set(Store *s, const char *name, const RoamId *id, const RoamId *expected) {
        _cleanup_free_ char *p = NULL;
        int r = ref_path(s, name, &p);
        if (r < 0)
                return r;
        pthread_mutex_lock(&s->mutex);
        _cleanup_close_ int lfd = ref_lock(s);
        if (lfd < 0) {
                pthread_mutex_unlock(&s->mutex);
                return lfd;
        }
        if (expected) {
                RoamId cur;
                r = ref_get_locked(s, name, &cur);
                if (r == -ENOENT)
                        cur = ID_NULL;
                else if (r < 0)
                        goto out;
                if (!id_equal(&cur, expected)) {
                        r = err_set(-ESTALE, "ref '%s' was changed by someone else (try again)", name);
                        goto out;
                }
        }
        char *slash = strrchr(p, '/');
        *slash = 0;
        r = mkdir_p(p, 0755);
        *slash = '/';
        if (r < 0)
                goto out;
        char hex[ID_HEX_SIZE], buf[128];
        int n = snprintf(buf, sizeof buf, "roam-ref 1 %s\n", id_to_hex(id, hex));
        r = write_file_atomic(p, buf, (size_t) n, 0644);
        if (r < 0)
                err_set(r, "cannot write ref '%s': %s", name, strerror(-r));
out:
        pthread_mutex_unlock(&s->mutex);
        return r;
}

int store_ref_delete(Store *s, const char *name) {
        _cleanup_free_ char *p = NULL;
        int r = ref_path(s, name, &p);
        if (r < 0)
                return r;
        pthread_mutex_lock(&s->mutex);
        _cleanup_close_ int lfd = ref_lock(s);
        if (lfd < 0)
                r = lfd;
        else if (unlink(p) < 0)
                r = -errno;
        else
                r = fsync_parent(p);
        pthread_mutex_unlock(&s->mutex);
        return r;
}

typedef struct RefList {
        char **names;
        size_t n, cap;
} RefList;

static int collect_refs(const char *dir, const char *prefix_rel, RefList *l, int depth) {
        if (depth > 8)
                return 0;
        DIR *d = opendir(dir);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        struct dirent *de;
        int r = 0;
        while ((de = readdir(d)) && r >= 0) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *full = path_join(dir, de->d_name);
                _cleanup_free_ char *rel = *prefix_rel ? path_join(prefix_rel, de->d_name) : strdup(de->d_name);
                if (!full || !rel) {
                        r = -ENOMEM;
                        break;
                }
                struct stat st;
                if (lstat(full, &st) < 0)
                        continue;
                if (S_ISDIR(st.st_mode))
                        r = collect_refs(full, rel, l, depth + 1);
                else if (S_ISREG(st.st_mode)) {
                        if (l->n == l->cap) {
                                size_t nc = l->cap ? l->cap * 2 : 64;
                                char **nn = realloc(l->names, nc * sizeof *nn);
                                if (!nn) {
                                        r = -ENOMEM;
                                        break;
                                }
                                l->names = nn;
                                l->cap = nc;
                        }
                        l->names[l->n++] = TAKE_PTR(rel);
                }
        }
        closedir(d);
        return r;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int store_ref_foreach(Store *s, const char *prefix, int (*cb)(const char *, const RoamId *, void *),
                      void *userdata) {
        _cleanup_free_ char *refs = NULL;
        int r = sub(s, "refs", &refs);
        if (r < 0)
                return r;
        RefList l = { 0 };
        r = collect_refs(refs, "", &l, 0);
        if (r >= 0)
                qsort(l.names, l.n, sizeof *l.names, cmp_str);
        size_t plen = prefix ? strlen(prefix) : 0;
        for (size_t i = 0; i < l.n && r >= 0; i++) {
                if (plen && strncmp(l.names[i], prefix, plen))
                        continue;
                if (!ref_name_is_valid(l.names[i]))
                        continue;
                RoamId id;
                r = store_ref_get(s, l.names[i], &id);
                if (r == -ENOENT) {
                        r = 0; /* deleted meanwhile */
                        continue;
                }
                if (r == -EBADMSG)
                        r = cb(l.names[i], NULL, userdata);
                else if (r >= 0)
                        r = cb(l.names[i], &id, userdata);
        }
        for (size_t i = 0; i < l.n; i++)
                free(l.names[i]);
        free(l.names);
        return r;
}

int store_clean_tmp(Store *s, unsigned min_age_s, uint64_t *ret_removed) {
        _cleanup_close_ int fd = openat(s->dir_fd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        DIR *d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -1;
        uint64_t removed = 0;
        time_t now = time(NULL);
        struct dirent *de;
        while ((de = readdir(d))) {
                struct stat st;
                if (strncmp(de->d_name, ".tmp-", 5))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, 0) < 0)
                        continue;
                if (now - st.st_mtime < (time_t) min_age_s)
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) == 0)
                        removed++;
        }
        closedir(d);
        if (ret_removed)
                *ret_removed = removed;
        return 0;
}
