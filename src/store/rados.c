/* SPDX-License-Identifier: MIT */
/* The store on Ceph RADOS (backend.h): 'rados:POOL[?conf=FILE][&id=NAME]'.
 *
 * One pool, four namespaces (docs/fleet.md):
 *   meta     "config" (the store config, as DIR/config); "gc" carries gc's lock
 *   chunks   <64 hex>: a chunk's zstd frame, as in DIR/chunks
 *   objects  <64 hex>: an index or manifest, plain
 *   refs     <ref name>: "roam-ref 1 <64 hex>\n"
 * Every chunk and object carries an xattr "roam.t": a fresh random token
 * written with it and again by each refresh (a writer's dedup hit on an old
 * one, store_chunk_has()). gc removes an unreferenced one only when its
 * modification time is older than the grace and, in the same RADOS operation,
 * its token is still the one gc read before it looked at the time: a writer's
 * refresh in between makes the removal fail and the object stays. So writers
 * on any host never need gc's lock; gcs exclude each other with a RADOS lock
 * on meta/gc.
 *
 * Chunk writes are asynchronous (at most RADOS_INFLIGHT in flight) and
 * store_commit() waits for every one: an acknowledged RADOS write is on every
 * replica, so a ref set after a commit never names a chunk a crash can lose.
 * Refs use RADOS compare-and-swap: cmpext on the old text (or an exclusive
 * create) in the same operation as the write. Reads are verified by store.c
 * like the local store's. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <rados/librados.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/idset.h"
#include "../basic/interrupt.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "backend.h"

/* librados is loaded when a RADOS store is first opened, not linked: its
 * dependencies (libceph-common and more) would cost every roam command
 * ~0.1 s to load. Each function is called through this table; the names
 * below stand for its entries. */
#define RADOS_LIB "librados.so.2"
#define RADOS_FUNCTIONS(X) \
        X(rados_aio_create_completion2) \
        X(rados_aio_get_return_value) \
        X(rados_aio_release) \
        X(rados_aio_wait_for_complete) \
        X(rados_aio_write_op_operate) \
        X(rados_conf_read_file) \
        X(rados_conf_set) \
        X(rados_connect) \
        X(rados_create) \
        X(rados_create_write_op) \
        X(rados_getxattr) \
        X(rados_ioctx_create) \
        X(rados_ioctx_destroy) \
        X(rados_ioctx_set_namespace) \
        X(rados_lock_exclusive) \
        X(rados_nobjects_list_close) \
        X(rados_nobjects_list_next) \
        X(rados_nobjects_list_open) \
        X(rados_read) \
        X(rados_release_write_op) \
        X(rados_remove) \
        X(rados_shutdown) \
        X(rados_stat) \
        X(rados_unlock) \
        X(rados_write_op_assert_exists) \
        X(rados_write_op_cmpext) \
        X(rados_write_op_cmpxattr) \
        X(rados_write_op_create) \
        X(rados_write_op_operate) \
        X(rados_write_op_remove) \
        X(rados_write_op_setxattr) \
        X(rados_write_op_write_full) \

static struct {
#define RADOS_FIELD(name) __typeof__(&name) p_##name;
        RADOS_FUNCTIONS(RADOS_FIELD)
#undef RADOS_FIELD
} api;
#define rados_aio_create_completion2 (api.p_rados_aio_create_completion2)
#define rados_aio_get_return_value (api.p_rados_aio_get_return_value)
#define rados_aio_release (api.p_rados_aio_release)
#define rados_aio_wait_for_complete (api.p_rados_aio_wait_for_complete)
#define rados_aio_write_op_operate (api.p_rados_aio_write_op_operate)
#define rados_conf_read_file (api.p_rados_conf_read_file)
#define rados_conf_set (api.p_rados_conf_set)
#define rados_connect (api.p_rados_connect)
#define rados_create (api.p_rados_create)
#define rados_create_write_op (api.p_rados_create_write_op)
#define rados_getxattr (api.p_rados_getxattr)
#define rados_ioctx_create (api.p_rados_ioctx_create)
#define rados_ioctx_destroy (api.p_rados_ioctx_destroy)
#define rados_ioctx_set_namespace (api.p_rados_ioctx_set_namespace)
#define rados_lock_exclusive (api.p_rados_lock_exclusive)
#define rados_nobjects_list_close (api.p_rados_nobjects_list_close)
#define rados_nobjects_list_next (api.p_rados_nobjects_list_next)
#define rados_nobjects_list_open (api.p_rados_nobjects_list_open)
#define rados_read (api.p_rados_read)
#define rados_release_write_op (api.p_rados_release_write_op)
#define rados_remove (api.p_rados_remove)
#define rados_shutdown (api.p_rados_shutdown)
#define rados_stat (api.p_rados_stat)
#define rados_unlock (api.p_rados_unlock)
#define rados_write_op_assert_exists (api.p_rados_write_op_assert_exists)
#define rados_write_op_cmpext (api.p_rados_write_op_cmpext)
#define rados_write_op_cmpxattr (api.p_rados_write_op_cmpxattr)
#define rados_write_op_create (api.p_rados_write_op_create)
#define rados_write_op_operate (api.p_rados_write_op_operate)
#define rados_write_op_remove (api.p_rados_write_op_remove)
#define rados_write_op_setxattr (api.p_rados_write_op_setxattr)
#define rados_write_op_write_full (api.p_rados_write_op_write_full)

static pthread_once_t api_once = PTHREAD_ONCE_INIT;
static char api_error[256];

static void api_load(void) {
        void *h = dlopen(RADOS_LIB, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
                snprintf(api_error, sizeof api_error, "%s", dlerror());
                return;
        }
#define RADOS_LOAD(name)                                                                           \
        if (!(api.p_##name = (__typeof__(api.p_##name)) dlsym(h, #name)) && !api_error[0]) \
                snprintf(api_error, sizeof api_error, "%s has no %s", RADOS_LIB, #name);
        RADOS_FUNCTIONS(RADOS_LOAD)
#undef RADOS_LOAD
}

static int api_need(const char *spec) {
        pthread_once(&api_once, api_load);
        if (api_error[0])
                return err_set(-ELIBACC, "store 'rados:%s': cannot load Ceph's client library: %s (install "
                               "librados2)",
                               spec, api_error);
        return 0;
}

#define RADOS_INFLIGHT 64
#define RADOS_SPEC_MAX 1024
#define RADOS_POOL_MAX 128
#define RADOS_LIST_MAX (64u << 20) /* names in one listing: a bound on memory */
#define RADOS_IO_MAX (64u << 20)   /* one rados_read() call */
#define TOKEN_XATTR "roam.t"
#define TOKEN_SIZE 24 /* 8 bytes of time, 16 hex of randomness */
#define GC_LOCK_NAME "roam-gc"
#define GC_LOCK_S 3600

typedef struct Inflight {
        rados_completion_t c;
        RoamId id;
} Inflight;

typedef struct RadosStore {
        rados_t cluster;
        rados_ioctx_t io_meta, io_chunks, io_objects, io_refs;
        char *pool;
        pthread_mutex_t mutex; /* inflight, pending, first_error */
        Inflight inflight[RADOS_INFLIGHT];
        size_t n_inflight;
        IdSet *pending; /* ids of chunks in flight (store_chunk_has() sees them) */
        int first_error;
        bool gc_locked;
        char cookie[40];
} RadosStore;

static RadosStore *rs_of(Store *s) {
        return store_backend_data(s);
}

static rados_ioctx_t io_of(RadosStore *rs, StoreKind k) {
        return k == STORE_KIND_OBJECT ? rs->io_objects : rs->io_chunks;
}

static void token_new(char out[static TOKEN_SIZE + 1]) {
        uint64_t rnd = 0;
        if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
                rnd = (uint64_t) rand() << 32 ^ (uint64_t) clock();
        snprintf(out, TOKEN_SIZE + 1, "%08llx%016llx", (unsigned long long) (time(NULL) & 0xffffffff),
                 (unsigned long long) rnd);
}

static const char *kind_name(StoreKind k) {
        return k == STORE_KIND_OBJECT ? "object" : "chunk";
}

static const StoreBackend rados_backend;

/* ---- spec ---- */

typedef struct RadosSpec {
        char pool[RADOS_POOL_MAX + 1];
        char *conf; /* NULL: librados's default search */
        char *id;   /* NULL: client.admin */
} RadosSpec;

static void spec_done(RadosSpec *p) {
        free(p->conf);
        free(p->id);
}

static bool pool_name_ok(const char *s, size_t n) {
        if (n == 0 || n > RADOS_POOL_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!(s[i] == '-' || s[i] == '_' || s[i] == '.' || (s[i] >= '0' && s[i] <= '9') ||
                      (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
                        return false;
        return true;
}

/* "POOL[?conf=FILE][&id=NAME]" */
static int spec_parse(const char *spec, RadosSpec *ret) {
        if (strlen(spec) > RADOS_SPEC_MAX)
                return err_set(-EINVAL, "store 'rados:...' is too long (at most %d characters)", RADOS_SPEC_MAX);
        RadosSpec p = { 0 };
        const char *q = strchr(spec, '?');
        size_t plen = q ? (size_t) (q - spec) : strlen(spec);
        if (!pool_name_ok(spec, plen))
                return err_set(-EINVAL, "store 'rados:%s': pool name must be 1-%d letters, digits, '.', '_' or '-' "
                               "(rados:POOL[?conf=FILE])",
                               spec, RADOS_POOL_MAX);
        memcpy(p.pool, spec, plen);
        for (const char *a = q ? q + 1 : NULL; a && *a;) {
                const char *amp = strchr(a, '&');
                size_t len = amp ? (size_t) (amp - a) : strlen(a);
                char **dst = NULL;
                size_t kl = 0;
                if (len > 5 && !strncmp(a, "conf=", 5))
                        dst = &p.conf, kl = 5;
                else if (len > 3 && !strncmp(a, "id=", 3))
                        dst = &p.id, kl = 3;
                if (!dst || *dst) {
                        spec_done(&p);
                        return err_set(-EINVAL, "store 'rados:%s': unknown or repeated option '%.*s' (use ?conf=FILE "
                                       "and &id=NAME)",
                                       spec, (int) len, a);
                }
                *dst = strndup(a + kl, len - kl);
                if (!*dst) {
                        spec_done(&p);
                        return -ENOMEM;
                }
                a = amp ? amp + 1 : NULL;
        }
        *ret = p;
        return 0;
}

/* ---- open, free ---- */

static void rs_data_free(RadosStore *rs) {
        if (!rs)
                return;
        /* writes never committed are dropped: their chunks are garbage for gc */
        for (size_t i = 0; i < rs->n_inflight; i++) {
                rados_aio_wait_for_complete(rs->inflight[i].c);
                rados_aio_release(rs->inflight[i].c);
        }
        if (rs->gc_locked)
                (void) rados_unlock(rs->io_meta, "gc", GC_LOCK_NAME, rs->cookie);
        if (rs->io_meta)
                rados_ioctx_destroy(rs->io_meta);
        if (rs->io_chunks)
                rados_ioctx_destroy(rs->io_chunks);
        if (rs->io_objects)
                rados_ioctx_destroy(rs->io_objects);
        if (rs->io_refs)
                rados_ioctx_destroy(rs->io_refs);
        if (rs->cluster)
                rados_shutdown(rs->cluster);
        idset_free(rs->pending);
        pthread_mutex_destroy(&rs->mutex);
        free(rs->pool);
        free(rs);
}

static void rs_free(Store *s) {
        rs_data_free(rs_of(s));
}

static int read_config(RadosStore *rs, const StoreOptions *opts, const char *spec, uint32_t *ret_cs, int *ret_level) {
        char text[4096];
        int n = rados_read(rs->io_meta, "config", text, sizeof text - 1, 0);
        if (n == -ENOENT) {
                if (!opts->create)
                        return err_set(-ENOENT, "no store in RADOS pool '%s' (import an image into it first)",
                                       rs->pool);
                uint32_t cs;
                int level;
                int r = store_config_check(opts, &cs, &level);
                if (r < 0)
                        return r;
                char buf[128];
                int len = store_config_format(cs, level, buf, sizeof buf);
                rados_write_op_t op = rados_create_write_op();
                if (!op)
                        return -ENOMEM;
                rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
                rados_write_op_write_full(op, buf, (size_t) len);
                r = rados_write_op_operate(op, rs->io_meta, "config", NULL, 0);
                rados_release_write_op(op);
                if (r < 0 && r != -EEXIST) /* EEXIST: another host made it first */
                        return err_set(r, "cannot write the store config to RADOS pool '%s': %s", rs->pool,
                                       strerror(-r));
                n = rados_read(rs->io_meta, "config", text, sizeof text - 1, 0);
        }
        if (n < 0)
                return err_set(n, "cannot read the store config from RADOS pool '%s': %s", rs->pool, strerror(-n));
        text[n] = 0;
        int r = store_config_parse(text, ret_cs, ret_level);
        if (r < 0)
                return err_set(r, "store config in 'rados:%s' is malformed (expected 'roam-store 1')", spec);
        return 0;
}

int rados_store_open(const char *spec, const StoreOptions *opts, Store **ret) {
        _cleanup_(spec_done) RadosSpec p = { 0 };
        int r = spec_parse(spec, &p);
        if (r < 0)
                return r;
        r = api_need(spec);
        if (r < 0)
                return r;
        RadosStore *rs = calloc(1, sizeof *rs);
        if (!rs)
                return -ENOMEM;
        pthread_mutex_init(&rs->mutex, NULL);
        rs->pool = strdup(p.pool);
        rs->pending = idset_new();
        Store *s = NULL;
        if (!rs->pool || !rs->pending) {
                r = -ENOMEM;
                goto fail;
        }
        char hostname[64] = "host";
        (void) gethostname(hostname, sizeof hostname - 1);
        char tok[TOKEN_SIZE + 1];
        token_new(tok);
        snprintf(rs->cookie, sizeof rs->cookie, "%.14s-%.24s", hostname, tok);

        r = rados_create(&rs->cluster, p.id);
        if (r < 0) {
                err_set(r, "cannot set up a Ceph client for 'rados:%s': %s", spec, strerror(-r));
                goto fail;
        }
        r = rados_conf_read_file(rs->cluster, p.conf);
        if (r < 0) {
                err_set(r, "cannot read Ceph config '%s' for 'rados:%s': %s (give it with ?conf=FILE)",
                        p.conf ? p.conf : "/etc/ceph/ceph.conf", spec, strerror(-r));
                goto fail;
        }
        /* a cluster that does not answer: fail within bounded time, never hang */
        (void) rados_conf_set(rs->cluster, "client_mount_timeout", "30");
        (void) rados_conf_set(rs->cluster, "rados_mon_op_timeout", "30");
        (void) rados_conf_set(rs->cluster, "rados_osd_op_timeout", "60");
        (void) rados_conf_set(rs->cluster, "log_to_stderr", "false");
        (void) rados_conf_set(rs->cluster, "err_to_stderr", "false");
        r = rados_connect(rs->cluster);
        if (r < 0) {
                err_set(r, "cannot connect to the Ceph cluster of 'rados:%s': %s (is it up? 'ceph -s')", spec,
                        strerror(-r));
                goto fail;
        }
        rados_ioctx_t *ios[] = { &rs->io_meta, &rs->io_chunks, &rs->io_objects, &rs->io_refs };
        static const char *ns[] = { "meta", "chunks", "objects", "refs" };
        for (size_t i = 0; i < ELEMENTSOF(ios); i++) {
                r = rados_ioctx_create(rs->cluster, rs->pool, ios[i]);
                if (r < 0) {
                        *ios[i] = NULL;
                        err_set(r, "cannot open RADOS pool '%s': %s (create it: 'ceph osd pool create %s')",
                                rs->pool, strerror(-r), rs->pool);
                        goto fail;
                }
                rados_ioctx_set_namespace(*ios[i], ns[i]);
        }
        uint32_t cs;
        int level;
        r = read_config(rs, opts, spec, &cs, &level);
        if (r < 0)
                goto fail;
        char path[RADOS_SPEC_MAX + 8];
        snprintf(path, sizeof path, "rados:%s", spec);
        r = store_new_backend(&rados_backend, rs, path, cs, level, &s);
        if (r < 0)
                goto fail;
        *ret = s;
        return 0;
fail:
        rs_data_free(rs);
        return r;
}

/* ---- locks ---- */

static int rs_lock(Store *s, bool exclusive, bool nonblock) {
        RadosStore *rs = rs_of(s);
        if (!exclusive) {
                /* writers need no lock (the tokens, above); giving back gc's */
                if (rs->gc_locked) {
                        (void) rados_unlock(rs->io_meta, "gc", GC_LOCK_NAME, rs->cookie);
                        rs->gc_locked = false;
                }
                return 0;
        }
        if (rs->gc_locked)
                return 0;
        for (;;) {
                struct timeval d = { .tv_sec = GC_LOCK_S };
                int r = rados_lock_exclusive(rs->io_meta, "gc", GC_LOCK_NAME, rs->cookie, "roam store gc", &d, 0);
                if (r == 0 || r == -EEXIST) {
                        rs->gc_locked = true;
                        return 0;
                }
                if (r != -EBUSY)
                        return err_set(r, "cannot lock store '%s' for gc: %s", store_path(s), strerror(-r));
                if (nonblock || interrupt_requested())
                        return err_set(-EAGAIN, "store '%s' is busy (a gc runs on another host; try again)",
                                       store_path(s));
                usleep(500 * 1000);
        }
}

static int rs_lock_oldest_holder(Store *s, time_t *ret) {
        *ret = TIME_T_MAX; /* no temp files to protect */
        return 0;
}

/* ---- chunks and objects ---- */

static int touch(RadosStore *rs, StoreKind k, const char *oid) {
        char tok[TOKEN_SIZE + 1];
        token_new(tok);
        rados_write_op_t op = rados_create_write_op();
        if (!op)
                return -ENOMEM;
        rados_write_op_assert_exists(op);
        rados_write_op_setxattr(op, TOKEN_XATTR, tok, TOKEN_SIZE);
        int r = rados_write_op_operate(op, io_of(rs, k), oid, NULL, 0);
        rados_release_write_op(op);
        return r;
}

static int rs_has(Store *s, StoreKind k, const RoamId *id) {
        RadosStore *rs = rs_of(s);
        char oid[ID_HEX_SIZE];
        id_to_hex(id, oid);
        uint64_t size;
        time_t mtime;
        int r = rados_stat(io_of(rs, k), oid, &size, &mtime);
        if (r == 0) {
                if (time(NULL) - mtime >= STORE_TOUCH_S)
                        (void) touch(rs, k, oid); /* best effort, like the local store's utimensat */
                return 1;
        }
        if (r != -ENOENT)
                return err_set(r, "cannot look up %s %s in store '%s': %s", kind_name(k), oid, store_path(s),
                               strerror(-r));
        if (k == STORE_KIND_OBJECT)
                return 0;
        pthread_mutex_lock(&rs->mutex);
        bool p = idset_contains(rs->pending, id);
        pthread_mutex_unlock(&rs->mutex);
        return p;
}

static int rs_stat(Store *s, StoreKind k, const RoamId *id, uint64_t *ret_size, time_t *ret_mtime) {
        RadosStore *rs = rs_of(s);
        char oid[ID_HEX_SIZE];
        id_to_hex(id, oid);
        uint64_t size;
        time_t mtime;
        int r = rados_stat(io_of(rs, k), oid, &size, &mtime);
        if (r < 0)
                return r;
        if (ret_size)
                *ret_size = size;
        if (ret_mtime)
                *ret_mtime = mtime;
        return 0;
}

static int read_at_most(rados_ioctx_t io, const char *oid, void *buf, size_t cap, size_t *ret_len) {
        size_t got = 0;
        while (got < cap) {
                size_t want = MIN(cap - got, (size_t) RADOS_IO_MAX);
                int n = rados_read(io, oid, (char *) buf + got, want, got);
                if (n < 0)
                        return n;
                got += (size_t) n;
                if ((size_t) n < want)
                        break;
        }
        *ret_len = got;
        return 0;
}

static int rs_chunk_read(Store *s, const RoamId *id, void *buf, size_t cap, size_t *ret_len) {
        RadosStore *rs = rs_of(s);
        char oid[ID_HEX_SIZE];
        id_to_hex(id, oid);
        size_t n;
        int r = read_at_most(rs->io_chunks, oid, buf, cap, &n);
        if (r == -ENOENT)
                return err_set(-ENOENT, "chunk %s is missing from store '%s' (run 'roam store fsck')", oid,
                               store_path(s));
        if (r < 0)
                return err_set(r, "cannot read chunk %s from store '%s': %s", oid, store_path(s), strerror(-r));
        if (n == cap) {
                uint64_t size;
                if (rados_stat(rs->io_chunks, oid, &size, NULL) == 0 && size > cap)
                        return -EFBIG;
        }
        *ret_len = n;
        return 0;
}

static int rs_chunk_read_head(Store *s, const RoamId *id, void *buf, size_t cap, size_t *ret_len) {
        RadosStore *rs = rs_of(s);
        char oid[ID_HEX_SIZE];
        id_to_hex(id, oid);
        int n = rados_read(rs->io_chunks, oid, buf, cap, 0);
        if (n < 0)
                return n;
        *ret_len = (size_t) n;
        return 0;
}

/* Waits for the oldest write in flight; mutex held. Its error is kept for
 * the next commit. */
static void reap_oldest(RadosStore *rs) {
        Inflight f = rs->inflight[0];
        memmove(rs->inflight, rs->inflight + 1, (rs->n_inflight - 1) * sizeof *rs->inflight);
        rs->n_inflight--;
        rados_aio_wait_for_complete(f.c);
        int r = rados_aio_get_return_value(f.c);
        rados_aio_release(f.c);
        if (r < 0 && rs->first_error == 0)
                rs->first_error = r;
        /* stays in pending until commit: has() must keep answering 1 */
}

static int write_op_new(const void *data, size_t len, rados_write_op_t *ret) {
        char tok[TOKEN_SIZE + 1];
        token_new(tok);
        rados_write_op_t op = rados_create_write_op();
        if (!op)
                return -ENOMEM;
        rados_write_op_write_full(op, data, len); /* copies the bytes */
        rados_write_op_setxattr(op, TOKEN_XATTR, tok, TOKEN_SIZE);
        *ret = op;
        return 0;
}

static int rs_chunk_write(Store *s, const RoamId *id, const void *z, size_t zlen) {
        RadosStore *rs = rs_of(s);
        char oid[ID_HEX_SIZE];
        id_to_hex(id, oid);
        rados_write_op_t op;
        int r = write_op_new(z, zlen, &op);
        if (r < 0)
                return r;
        rados_completion_t c;
        r = rados_aio_create_completion2(NULL, NULL, &c);
        if (r < 0) {
                rados_release_write_op(op);
                return r;
        }
        pthread_mutex_lock(&rs->mutex);
        while (rs->n_inflight >= RADOS_INFLIGHT)
                reap_oldest(rs);
        r = idset_add(rs->pending, id);
        if (r >= 0)
                r = rados_aio_write_op_operate(op, rs->io_chunks, c, oid, NULL, 0);
        if (r >= 0)
                rs->inflight[rs->n_inflight++] = (Inflight){ .c = c, .id = *id };
        else
                rados_aio_release(c);
        pthread_mutex_unlock(&rs->mutex);
        rados_release_write_op(op); /* the operation keeps what it needs */
        if (r < 0)
                return err_set(r, "cannot write chunk %s to store '%s': %s", oid, store_path(s), strerror(-r));
        return 0;
}

static int rs_commit(Store *s) {
        RadosStore *rs = rs_of(s);
        pthread_mutex_lock(&rs->mutex);
        while (rs->n_inflight > 0)
                reap_oldest(rs);
        int r = rs->first_error;
        rs->first_error = 0;
        idset_free(rs->pending);
        rs->pending = idset_new();
        if (!rs->pending && r == 0)
                r = -ENOMEM;
        pthread_mutex_unlock(&rs->mutex);
        if (r < 0)
                return err_set_if_none(r, "cannot write chunks to store '%s': %s (is the cluster healthy? "
                                       "'ceph -s')",
                                       store_path(s), strerror(-r));
        return 0;
}

static int rs_object_read(Store *s, const RoamId *id, size_t max, void **ret, size_t *ret_len) {
        RadosStore *rs = rs_of(s);
        char oid[ID_HEX_SIZE];
        id_to_hex(id, oid);
        uint64_t size;
        int r = rados_stat(rs->io_objects, oid, &size, NULL);
        if (r < 0)
                return r;
        if (size > max)
                return -EFBIG;
        /* one byte more than the size tells an object that grew meanwhile */
        _cleanup_free_ char *buf = malloc(size + 1);
        if (!buf)
                return -ENOMEM;
        size_t n;
        r = read_at_most(rs->io_objects, oid, buf, size + 1, &n);
        if (r < 0)
                return r;
        if (n > size)
                return -EFBIG;
        *ret = TAKE_PTR(buf);
        *ret_len = n;
        return 0;
}

static int rs_object_write(Store *s, const RoamId *id, const void *data, size_t len) {
        RadosStore *rs = rs_of(s);
        char oid[ID_HEX_SIZE];
        id_to_hex(id, oid);
        rados_write_op_t op;
        int r = write_op_new(data, len, &op);
        if (r < 0)
                return r;
        r = rados_write_op_operate(op, rs->io_objects, oid, NULL, 0);
        rados_release_write_op(op);
        if (r < 0)
                return err_set(r, "cannot write object %s to store '%s': %s", oid, store_path(s), strerror(-r));
        return 0;
}

static int rs_remove(Store *s, StoreKind k, const RoamId *id, time_t young_after) {
        RadosStore *rs = rs_of(s);
        rados_ioctx_t io = io_of(rs, k);
        char oid[ID_HEX_SIZE];
        id_to_hex(id, oid);
        if (young_after == TIME_T_MIN) {
                int r = rados_remove(io, oid);
                return r < 0 ? r : 1;
        }
        /* the token first, then the time: a refresh after the token read
         * makes the guarded removal fail, one before it shows in the time */
        char tok[TOKEN_SIZE + 8];
        int tl = rados_getxattr(io, oid, TOKEN_XATTR, tok, sizeof tok);
        if (tl < 0 && tl != -ENODATA)
                return tl;
        uint64_t size;
        time_t mtime;
        int r = rados_stat(io, oid, &size, &mtime);
        if (r < 0)
                return r;
        if (mtime > young_after)
                return 0;
        rados_write_op_t op = rados_create_write_op();
        if (!op)
                return -ENOMEM;
        if (tl >= 0)
                rados_write_op_cmpxattr(op, TOKEN_XATTR, LIBRADOS_CMPXATTR_OP_EQ, tok, (size_t) tl);
        rados_write_op_remove(op);
        r = rados_write_op_operate(op, io, oid, NULL, 0);
        rados_release_write_op(op);
        if (r == -ECANCELED)
                return 0; /* refreshed meanwhile: a writer uses it */
        return r < 0 ? r : 1;
}

typedef struct NameList {
        char **names;
        size_t n, cap, bytes;
} NameList;

static void name_list_done(NameList *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->names[i]);
        free(l->names);
}

/* every object name in io's namespace (bounded) */
static int list_names(Store *s, rados_ioctx_t io, const char *what, NameList *ret) {
        rados_list_ctx_t ctx;
        int r = rados_nobjects_list_open(io, &ctx);
        if (r < 0)
                return err_set(r, "cannot list the %s of store '%s': %s", what, store_path(s), strerror(-r));
        NameList l = { 0 };
        for (;;) {
                const char *entry;
                r = rados_nobjects_list_next(ctx, &entry, NULL, NULL);
                if (r == -ENOENT) {
                        r = 0;
                        break;
                }
                if (r < 0) {
                        err_set(r, "cannot list the %s of store '%s': %s", what, store_path(s), strerror(-r));
                        break;
                }
                size_t len = strlen(entry);
                if (l.bytes + len > RADOS_LIST_MAX) {
                        r = err_set(-E2BIG, "store '%s' lists more %s than this roam can hold (%u MiB of names)",
                                    store_path(s), what, RADOS_LIST_MAX >> 20);
                        break;
                }
                if (l.n == l.cap) {
                        size_t nc = l.cap ? l.cap * 2 : 256;
                        char **nn = realloc(l.names, nc * sizeof *nn);
                        if (!nn) {
                                r = -ENOMEM;
                                break;
                        }
                        l.names = nn;
                        l.cap = nc;
                }
                if (!(l.names[l.n] = strdup(entry))) {
                        r = -ENOMEM;
                        break;
                }
                l.n++;
                l.bytes += len + 1;
        }
        rados_nobjects_list_close(ctx);
        if (r < 0) {
                name_list_done(&l);
                return r;
        }
        *ret = l;
        return 0;
}

static int rs_foreach(Store *s, StoreKind k, int (*cb)(const RoamId *, uint64_t, void *), void *userdata) {
        RadosStore *rs = rs_of(s);
        rados_ioctx_t io = io_of(rs, k);
        _cleanup_(name_list_done) NameList l = { 0 };
        int r = list_names(s, io, k == STORE_KIND_OBJECT ? "objects" : "chunks", &l);
        if (r < 0)
                return r;
        for (size_t i = 0; i < l.n; i++) {
                RoamId id;
                if (id_from_hex(l.names[i], &id) < 0)
                        continue; /* not ours */
                uint64_t size;
                r = rados_stat(io, l.names[i], &size, NULL);
                if (r == -ENOENT)
                        continue; /* removed meanwhile */
                if (r < 0)
                        return r;
                r = cb(&id, size, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- refs ---- */

static int rs_ref_get(Store *s, const char *name, RoamId *ret) {
        RadosStore *rs = rs_of(s);
        char text[STORE_REF_TEXT_SIZE + 2];
        int n = rados_read(rs->io_refs, name, text, sizeof text, 0);
        if (n == -ENOENT)
                return -ENOENT;
        if (n < 0)
                return err_set(n, "cannot read ref '%s' from store '%s': %s", name, store_path(s), strerror(-n));
        if (store_ref_parse(text, (size_t) n, ret) < 0)
                return err_set(-EBADMSG, "ref '%s' is malformed (remove it with 'roam image rm' or restore it)",
                               name);
        return 0;
}

static int rs_ref_set(Store *s, const char *name, const RoamId *id, const RoamId *expected) {
        RadosStore *rs = rs_of(s);
        char text[STORE_REF_TEXT_SIZE + 1], old[STORE_REF_TEXT_SIZE + 1];
        store_ref_format(id, text);
        rados_write_op_t op = rados_create_write_op();
        if (!op)
                return -ENOMEM;
        int cmp = 0;
        if (expected && id_is_null(expected))
                rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
        else if (expected) {
                store_ref_format(expected, old);
                rados_write_op_cmpext(op, old, STORE_REF_TEXT_SIZE, 0, &cmp);
        }
        rados_write_op_write_full(op, text, STORE_REF_TEXT_SIZE);
        int r = rados_write_op_operate(op, rs->io_refs, name, NULL, 0);
        rados_release_write_op(op);
        /* EEXIST: created by someone else; ENOENT: removed; a mismatch in
         * cmpext is -MAX_ERRNO - offset */
        if (expected && (r == -EEXIST || r == -ENOENT || r < -4095 || cmp < 0))
                return err_set(-ESTALE, "ref '%s' was changed by someone else (try again)", name);
        if (r < 0)
                return err_set(r, "cannot write ref '%s' to store '%s': %s", name, store_path(s), strerror(-r));
        return 0;
}

static int rs_ref_delete(Store *s, const char *name) {
        RadosStore *rs = rs_of(s);
        return rados_remove(rs->io_refs, name);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int rs_ref_foreach(Store *s, const char *prefix, int (*cb)(const char *, const RoamId *, void *),
                          void *userdata) {
        RadosStore *rs = rs_of(s);
        _cleanup_(name_list_done) NameList l = { 0 };
        int r = list_names(s, rs->io_refs, "refs", &l);
        if (r < 0)
                return r;
        qsort(l.names, l.n, sizeof *l.names, cmp_str);
        size_t plen = prefix ? strlen(prefix) : 0;
        for (size_t i = 0; i < l.n; i++) {
                if ((plen && strncmp(l.names[i], prefix, plen)) || !ref_name_is_valid(l.names[i]))
                        continue;
                RoamId id;
                r = rs_ref_get(s, l.names[i], &id);
                if (r == -ENOENT)
                        continue; /* deleted meanwhile */
                if (r == -EBADMSG) {
                        err_clear();
                        r = cb(l.names[i], NULL, userdata);
                } else if (r >= 0)
                        r = cb(l.names[i], &id, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

static const StoreBackend rados_backend = {
        .name = "rados",
        .free = rs_free,
        .lock = rs_lock,
        .lock_oldest_holder = rs_lock_oldest_holder,
        .has = rs_has,
        .stat = rs_stat,
        .chunk_read = rs_chunk_read,
        .chunk_read_head = rs_chunk_read_head,
        .chunk_write = rs_chunk_write,
        .commit = rs_commit,
        .object_read = rs_object_read,
        .object_write = rs_object_write,
        .remove = rs_remove,
        .foreach = rs_foreach,
        .ref_get = rs_ref_get,
        .ref_set = rs_ref_set,
        .ref_delete = rs_ref_delete,
        .ref_foreach = rs_ref_foreach,
};
