/* SPDX-License-Identifier: MIT */
/* A store in a local directory (the backend behind store_open() of a path,
 * backend.h; rados.c is the other one):
 *
 *   DIR/config                   "roam-store 1", chunk size, zstd level
 *   DIR/chunks/ab/abcd...        a chunk's stored frame, by its id (or its
 *                                name in an encrypted store, crypt.h)
 *   DIR/objects/ab/abcd...       an object, the same way
 *   DIR/refs/NAME                "roam-ref 1 HEX"
 *   DIR/tmp/                     chunk writes until a commit publishes them
 *   DIR/lock, DIR/refs.lock      flock()s: the store, ref updates
 *
 * A chunk is written to tmp/ and kept pending; a commit makes all pending
 * chunks durable (syncfs), renames them into chunks/ and syncs again, so that
 * a chunk is either absent or whole and durable under its name
 * (docs/store-format.md). */
#include "store-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/failpoint.h"
#include "../basic/fileio.h"
#include "../basic/interrupt.h"
#include "../basic/macro.h"
#include "../basic/util.h"

#define REF_FILE_MAX 256

static int sub(const Store *s, const char *rel, char **ret) {
        char *p = path_join(s->path, rel);
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

/* ---- the lock file ---- */

static int local_lock(Store *s, bool exclusive, bool nonblock) {
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

static int local_lock_oldest_holder(Store *s, time_t *ret) {
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

static void object_rel(const RoamId *id, char out[static 96]);

static int local_has(Store *s, StoreKind k, const RoamId *id) {
        char rel[96];
        if (k == STORE_KIND_OBJECT) {
                object_rel(id, rel);
                return present_touch(s, rel);
        }
        /* pending first: a commit renames a chunk before it forgets it, so
         * one it forgot is found under its name below (never neither) */
        pthread_mutex_lock(&s->mutex);
        bool p = idset_contains(s->pending_set, id) ||
                 (s->committing_set && idset_contains(s->committing_set, id));
        pthread_mutex_unlock(&s->mutex);
        if (p)
                return 1;
        chunk_rel(id, rel);
        return present_touch(s, rel);
}

static int local_stat(Store *s, StoreKind k, const RoamId *id, uint64_t *ret_size, time_t *ret_mtime) {
        char rel[96];
        struct stat st;
        if (k == STORE_KIND_OBJECT)
                object_rel(id, rel);
        else
                chunk_rel(id, rel);
        if (fstatat(s->dir_fd, rel, &st, 0) < 0)
                return -errno;
        if (ret_size)
                *ret_size = (uint64_t) st.st_size;
        if (ret_mtime)
                *ret_mtime = st.st_mtime;
        return 0;
}

static int pool_take(Store *s, char **ret_path);

/* A temp file for a chunk write: one of the pool's, else made now. */
static int chunk_tmpfile(Store *s, char **ret_path) {
        int fd = pool_take(s, ret_path);
        if (fd >= 0)
                return fd;
        _cleanup_free_ char *tmpdir = NULL;
        int r = sub(s, "tmp", &tmpdir);
        return r < 0 ? r : tmpfile_create(tmpdir, ret_path);
}

static int local_chunk_write(Store *s, const RoamId *id, const void *z, size_t zlen) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = chunk_tmpfile(s, &tmp);
        if (fd < 0)
                return err_set(fd, "cannot write to store '%s': %s", s->path, strerror(-fd));
        int r = failpoint_errno("store:chunk-write") ?: loop_write(fd, z, zlen);
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

static int local_chunk_read(Store *s, const RoamId *id, void *buf, size_t cap, size_t *ret_len) {
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
        ssize_t n = loop_read(fd, buf, cap);
        if (n < 0)
                return (int) n;
        if ((size_t) n == cap) {
                char extra;
                if (read(fd, &extra, 1) == 1)
                        return -EFBIG;
        }
        *ret_len = (size_t) n;
        return 0;
}

static int local_chunk_read_head(Store *s, const RoamId *id, void *buf, size_t cap, size_t *ret_len) {
        char rel[96];
        chunk_rel(id, rel);
        _cleanup_close_ int fd = openat(s->dir_fd, rel, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = loop_read(fd, buf, cap);
        if (n < 0)
                return (int) n;
        *ret_len = (size_t) n;
        return 0;
}

static int local_remove(Store *s, StoreKind k, const RoamId *id, time_t young_after) {
        /* gc holds the store lock exclusively: no writer refreshes meanwhile */
        char rel[96];
        if (k == STORE_KIND_OBJECT)
                object_rel(id, rel);
        else
                chunk_rel(id, rel);
        if (young_after != TIME_T_MIN) {
                struct stat st;
                if (fstatat(s->dir_fd, rel, &st, 0) < 0)
                        return -errno;
                if (st.st_mtime > young_after)
                        return 0;
        }
        if (unlinkat(s->dir_fd, rel, 0) < 0)
                return -errno;
        return 1;
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

static int local_foreach(Store *s, StoreKind k, int (*cb)(const RoamId *, uint64_t, void *), void *userdata) {
        return foreach_in(s, k == STORE_KIND_OBJECT ? "objects" : "chunks", cb, userdata);
}

static int commit_locked(Store *s);

static int local_commit(Store *s) {
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
        if (r >= 0 && n > 0)
                r = failpoint_errno("store:commit");
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

static int local_object_write(Store *s, const RoamId *id, const void *data, size_t len) {
        char rel[96];
        object_rel(id, rel);
        char d[16];
        memcpy(d, rel, 10);
        d[10] = 0; /* "objects/ab" */
        if (mkdirat(s->dir_fd, d, 0755) < 0 && errno != EEXIST)
                return -errno;
        _cleanup_free_ char *full = path_join(s->path, rel);
        if (!full)
                return -ENOMEM;
        int r = failpoint_errno("store:object-write") ?: write_file_atomic(full, data, len, 0644);
        if (r < 0)
                return err_set(r, "cannot write object to store '%s': %s", s->path, strerror(-r));
        return 0;
}

static int local_object_read(Store *s, const RoamId *id, size_t max, void **ret, size_t *ret_len) {
        char rel[96];
        object_rel(id, rel);
        _cleanup_free_ char *full = path_join(s->path, rel);
        if (!full)
                return -ENOMEM;
        char *data = NULL;
        size_t len;
        int r = read_full_file(full, max, &data, &len);
        if (r < 0)
                return r;
        *ret = data;
        *ret_len = len;
        return 0;
}

/* ---- refs ---- */

int store_ref_parse(const char *text, size_t len, RoamId *ret) {
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
        if (r == -EFBIG || (r >= 0 && store_ref_parse(text, len, ret) < 0))
                return err_set(-EBADMSG, "ref '%s' is malformed (remove it with 'roam image rm' or restore it)",
                               name);
        return r;
}

static int local_ref_get(Store *s, const char *name, RoamId *ret) {
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

static int local_ref_set(Store *s, const char *name, const RoamId *id, const RoamId *expected) {
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
        r = failpoint_errno("store:ref-write") ?: write_file_atomic(p, buf, (size_t) n, 0644);
        if (r < 0)
                err_set(r, "cannot write ref '%s': %s", name, strerror(-r));
out:
        pthread_mutex_unlock(&s->mutex);
        return r;
}

static int local_ref_delete(Store *s, const char *name) {
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

static int local_ref_foreach(Store *s, const char *prefix, int (*cb)(const char *, const RoamId *, void *),
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
                r = local_ref_get(s, l.names[i], &id);
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

/* ---- empty temp files made ahead (TmpPool) ---- */

/* Under s->mutex: the pool wants files (below half of its target). */
static bool pool_low(const Store *s) {
        return s->pool.n < s->pool.target / 2;
}

static void *pool_main(void *arg) {
        Store *s = arg;
        _cleanup_free_ char *tmpdir = NULL;
        if (sub(s, "tmp", &tmpdir) < 0)
                return NULL;
        pthread_mutex_lock(&s->mutex);
        while (!s->pool.stop) {
                if (!pool_low(s)) {
                        pthread_cond_wait(&s->pool.wake, &s->mutex);
                        continue;
                }
                /* up to the target, but never during a hand-over's window:
                 * it takes from what is here */
                while (!s->pool.stop && s->pool.n < s->pool.target) {
                        pthread_mutex_unlock(&s->mutex);
                        char *p = NULL;
                        int fd = fresh_is_open(&s->fresh) ? -EAGAIN : tmpfile_create(tmpdir, &p);
                        if (fd >= 0)
                                close(fd);
                        pthread_mutex_lock(&s->mutex);
                        if (fd < 0) {
                                /* a hand-over, or no room or no inodes: again in a moment */
                                struct timespec ts;
                                clock_gettime(CLOCK_REALTIME, &ts);
                                ts.tv_sec += 1;
                                if (!s->pool.stop)
                                        pthread_cond_timedwait(&s->pool.wake, &s->mutex, &ts);
                                break;
                        }
                        s->pool.path[s->pool.n++] = p;
                }
        }
        pthread_mutex_unlock(&s->mutex);
        return NULL;
}

int store_tmp_pool(Store *s, unsigned n) {
        if (s->be != &store_local_backend || n == 0)
                return 0; /* a shared backend has no temp files */
        pthread_mutex_lock(&s->mutex);
        int r = 0;
        if (s->pool.running)
                r = -EBUSY;
        else if (!(s->pool.path = calloc(n, sizeof *s->pool.path)))
                r = -ENOMEM;
        else {
                s->pool.target = n;
                pthread_cond_init(&s->pool.wake, NULL);
                r = thread_start_no_signals(&s->pool.thread, pool_main, s);
                s->pool.running = r == 0;
                if (r < 0) {
                        pthread_cond_destroy(&s->pool.wake);
                        free(TAKE_PTR(s->pool.path));
                        s->pool.target = 0;
                }
        }
        pthread_mutex_unlock(&s->mutex);
        return r;
}

void local_tmp_pool_end(Store *s) {
        pthread_mutex_lock(&s->mutex);
        bool running = s->pool.running;
        s->pool.stop = true;
        if (running)
                pthread_cond_signal(&s->pool.wake);
        pthread_mutex_unlock(&s->mutex);
        if (!running)
                return;
        pthread_join(s->pool.thread, NULL);
        for (size_t i = 0; i < s->pool.n; i++) {
                (void) unlink(s->pool.path[i]);
                free(s->pool.path[i]);
        }
        free(s->pool.path);
        pthread_cond_destroy(&s->pool.wake);
        s->pool = (TmpPool) { 0 };
}

/* An empty temp file of the pool, opened for writing and marked in use
 * (tmpfile_create()), or -ENOENT when there is none. One that went (removed
 * as stray by hand) is passed over. */
static int pool_take(Store *s, char **ret_path) {
        for (;;) {
                pthread_mutex_lock(&s->mutex);
                char *p = s->pool.n > 0 ? s->pool.path[--s->pool.n] : NULL;
                if (s->pool.running && pool_low(s))
                        pthread_cond_signal(&s->pool.wake);
                pthread_mutex_unlock(&s->mutex);
                if (!p)
                        return -ENOENT;
                /* no O_TRUNC: the pool's files are empty, and ext4 takes a
                 * truncate at open (even of an empty file) as a file being
                 * replaced, and starts writing it back at its close, file by
                 * file inside a hand-over's pause (syncfs writes them anyway) */
                int fd = open(p, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
                struct stat st;
                if (fd >= 0 && (fstat(fd, &st) < 0 || (st.st_size != 0 && ftruncate(fd, 0) < 0))) {
                        close(fd);
                        fd = -1;
                }
                if (fd >= 0) {
                        (void) flock(fd, LOCK_EX | LOCK_NB);
                        *ret_path = p;
                        return fd;
                }
                free(p);
        }
}

/* ---- the backend (backend.h) ---- */

const StoreBackend store_local_backend = {
        .name = "local",
        .lock = local_lock,
        .lock_oldest_holder = local_lock_oldest_holder,
        .has = local_has,
        .stat = local_stat,
        .chunk_read = local_chunk_read,
        .chunk_read_head = local_chunk_read_head,
        .chunk_write = local_chunk_write,
        .commit = local_commit,
        .object_read = local_object_read,
        .object_write = local_object_write,
        .remove = local_remove,
        .foreach = local_foreach,
        .ref_get = local_ref_get,
        .ref_set = local_ref_set,
        .ref_delete = local_ref_delete,
        .ref_foreach = local_ref_foreach,
};
