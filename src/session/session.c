/* SPDX-License-Identifier: MIT */
#include "session.h"
#include "host-id.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/spawn.h"
#include "../basic/util.h"
#include "../store/blob.h"
#include "../store/manifest.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

struct SessionHost {
        char *home;
        char *ram_dir;
        Store *store;
        Catalog *catalog;
};

/* err_set(r, "<prefix>: <current detail>"): the detail is copied first, as
 * err_message() points into the buffer err_set() writes. */
static int err_wrap(int r, const char *fmt, ...) _printf_(2, 3);
static int err_wrap(int r, const char *fmt, ...) {
        char detail[1024], prefix[512];
        snprintf(detail, sizeof detail, "%s", err_message(r));
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        return err_set(r, "%s: %s", prefix, detail);
}

/* ---- host ---- */

int session_host_new(const char *home, Store *store, Catalog *catalog, SessionHost **ret) {
        _cleanup_free_ char *abs = NULL;
        if (home[0] == '/')
                abs = strdup(home);
        else {
                char cwd[PATH_MAX];
                if (!getcwd(cwd, sizeof cwd))
                        return -errno;
                abs = path_join(cwd, home);
        }
        if (!abs)
                return -ENOMEM;
        /* a canonical path gives the same RAM directory however home is spelled */
        char real[PATH_MAX];
        if (realpath(abs, real)) {
                free(abs);
                abs = strdup(real);
                if (!abs)
                        return -ENOMEM;
        }
        SessionHost *h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->home = TAKE_PTR(abs);
        h->store = store;
        h->catalog = catalog;
        const char *e = getenv("ROAM_RAM_DIR");
        if (e && *e)
                h->ram_dir = strdup(e);
        else {
                RoamId hid;
                char hex[ID_HEX_SIZE];
                sha256(h->home, strlen(h->home), &hid);
                id_to_hex(&hid, hex);
                if (asprintf(&h->ram_dir, "/dev/shm/roam-%.12s", hex) < 0)
                        h->ram_dir = NULL;
        }
        if (!h->ram_dir) {
                session_host_free(h);
                return -ENOMEM;
        }
        *ret = h;
        return 0;
}

void session_host_free(SessionHost *h) {
        if (!h)
                return;
        free(h->home);
        free(h->ram_dir);
        free(h);
}

Store *session_host_store(const SessionHost *h) {
        return h->store;
}

const char *session_host_ram_dir(const SessionHost *h) {
        return h->ram_dir;
}

static int need_store(SessionHost *h) {
        if (!h->store)
                return err_set(-EINVAL, "internal error: this session operation needs the store");
        return 0;
}

/* ---- paths ---- */

typedef struct Paths {
        char *dir, *overlay, *serial, *qmp, *vnc, *pidfile, *devstate, *ram, *ram_snap, *overlay_snap;
        char *ram_fast, *overlay_fast; /* fast-hash sidecars: the base of the next import */
} Paths;

static void paths_done(Paths *p) {
        free(p->dir);
        free(p->overlay);
        free(p->serial);
        free(p->qmp);
        free(p->vnc);
        free(p->pidfile);
        free(p->devstate);
        free(p->ram);
        free(p->ram_snap);
        free(p->overlay_snap);
        free(p->ram_fast);
        free(p->overlay_fast);
        *p = (Paths) {};
}

static int paths_for(SessionHost *h, const char *name, Paths *ret) {
        Paths p = {};
        bool ok = asprintf(&p.dir, "%s/sessions/%s", h->home, name) >= 0 &&
                  asprintf(&p.overlay, "%s/overlay.qcow2", p.dir) >= 0 &&
                  asprintf(&p.serial, "%s/serial.log", p.dir) >= 0 && asprintf(&p.qmp, "%s/qmp.sock", p.dir) >= 0 &&
                  asprintf(&p.vnc, "%s/vnc.sock", p.dir) >= 0 && asprintf(&p.pidfile, "%s/qemu.pid", p.dir) >= 0 &&
                  asprintf(&p.devstate, "%s/devstate", p.dir) >= 0 &&
                  asprintf(&p.ram, "%s/%s.ram", h->ram_dir, name) >= 0 &&
                  asprintf(&p.ram_snap, "%s/%s.ram.snap", h->ram_dir, name) >= 0 &&
                  asprintf(&p.overlay_snap, "%s/overlay.snap", p.dir) >= 0 &&
                  asprintf(&p.ram_fast, "%s/ram.fast", p.dir) >= 0 &&
                  asprintf(&p.overlay_fast, "%s/overlay.fast", p.dir) >= 0;
        if (!ok) {
                paths_done(&p);
                return -ENOMEM;
        }
        *ret = p;
        return 0;
}
#define _cleanup_paths_ _cleanup_(paths_done)

static char *master_path(SessionHost *h, const char *image_hex) {
        char *s;
        return asprintf(&s, "%s/masters/%s.raw", h->home, image_hex) < 0 ? NULL : s;
}

static char *boot_path(SessionHost *h, const char *id_hex) {
        char *s;
        return asprintf(&s, "%s/boot/%s", h->home, id_hex) < 0 ? NULL : s;
}

static inline void vm_config_donep(VmConfig *c) {
        vm_config_done(c);
}
static inline void session_row_donep(SessionRow *r) {
        session_row_done(r);
}

/* ---- small file helpers ---- */

static uint64_t allocated_bytes(const char *path) {
        struct stat st;
        if (stat(path, &st) < 0)
                return 0;
        return (uint64_t) st.st_blocks * 512;
}

/* The first half of an incremental import of path from base (NULL = none):
 * chunks pending or, up to capture bytes, copied (see blob_import_fd_begin()).
 * map: read it through mmap (a RAM file, which nobody truncates). */
static int import_begin(Store *s, const char *path, const BlobBase *base, bool map, uint64_t capture,
                        BlobPending **ret) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return err_set(-errno, "cannot open '%s': %s", path, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        BlobOptions o = { .map = map, .capture_max = capture };
        int r = blob_import_fd_begin(s, fd, (uint64_t) st.st_size, &o, base, ret);
        if (r < 0)
                return err_set_if_none(r, "cannot import '%s' into the store: %s", path, strerror(-r));
        return 0;
}

static int import_file(Store *s, const char *path, RoamId *ret_id, BlobStats *ret_stats) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return err_set(-errno, "cannot open '%s': %s", path, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        BlobOptions o = {};
        BlobStats bs;
        int r = blob_import_fd(s, fd, (uint64_t) st.st_size, &o, ret_id, &bs);
        if (r < 0)
                return err_set_if_none(r, "cannot import '%s' into the store: %s", path, strerror(-r));
        if (ret_stats)
                *ret_stats = bs;
        return 0;
}

/* Exports blob id into a new file at path (temp file beside it, then
 * rename). mode 0444 for shared read-only files. */
static int export_to(Store *s, const RoamId *id, const char *path, mode_t mode) {
        _cleanup_(index_freep) Index *x = NULL;
        char hex[ID_HEX_SIZE];
        int r = blob_load_index(s, id, &x);
        if (r < 0)
                return err_set_if_none(r, "cannot load blob %.12s: %s", id_to_hex(id, hex), strerror(-r));
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        *strrchr(dir, '/') = 0;
        r = mkdir_p(dir, 0755);
        if (r < 0)
                return err_set(r, "cannot create '%s': %s", dir, strerror(-r));
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = tmpfile_create(dir, &tmp);
        if (fd < 0)
                return err_set(fd, "cannot create a file in '%s': %s", dir, strerror(-fd));
        BlobOptions o = {};
        r = blob_export_fd(s, x, fd, &o, NULL);
        if (r >= 0 && fchmod(fd, mode) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = err_set(-errno, "cannot rename to '%s': %s", path, strerror(errno));
        if (r < 0) {
                (void) unlink(tmp);
                return err_set_if_none(r, "cannot write '%s': %s", path, strerror(-r));
        }
        return 0;
}

/* A file exported once per host and shared read-only (masters, kernels):
 * present means complete (written by rename). fsync'd: a master outlives
 * many sessions. */
static int materialize(SessionHost *h, const RoamId *id, const char *path) {
        if (access(path, F_OK) == 0)
                return 0;
        int r = need_store(h);
        if (r < 0)
                return r;
        r = export_to(h->store, id, path, 0444);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0)
                (void) fsync(fd);
        (void) fsync_parent(path);
        return 0;
}

/* Runs a tool; hint says how to get it when it is missing. */
static int run_tool_hint(char **argv, const char *what, const char *hint) {
        _cleanup_free_ char *err = NULL;
        int r = spawn_capture(argv, 4096, NULL, &err);
        if (r == -ENOENT)
                return err_set(r, "'%s' not found (%s)", argv[0], hint);
        if (r < 0)
                return err_set(r, "cannot run '%s': %s", argv[0], strerror(-r));
        if (r != 0) {
                if (err)
                        err[strcspn(err, "\n")] = 0;
                return err_set(-EIO, "%s failed: %s", what, err && *err ? err : "no message");
        }
        return 0;
}

static int run_tool(char **argv, const char *what) {
        return run_tool_hint(argv, what, "apt-get install qemu-utils, or set ROAM_QEMU_IMG");
}

static int overlay_create(const char *master, const char *overlay) {
        char *argv[] = { (char *) vm_qemu_img_binary(), "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                         (char *) master, (char *) overlay, NULL };
        return run_tool(argv, "creating the overlay");
}

static int overlay_rebase(const char *master, const char *overlay) {
        char *argv[] = { (char *) vm_qemu_img_binary(), "rebase", "-u", "-F", "raw", "-b", (char *) master,
                         (char *) overlay, NULL };
        return run_tool(argv, "rebasing the overlay");
}

/* Replaces overlay by a fresh, empty one over master: created beside it,
 * fsync'd, renamed over it. On failure the old overlay stays. */
static int overlay_reset(const char *master, const char *overlay) {
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s.reset", overlay) < 0)
                return -ENOMEM;
        (void) unlink(tmp);
        int r = overlay_create(master, tmp);
        if (r >= 0) {
                _cleanup_close_ int fd = open(tmp, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || fsync(fd) < 0)
                        r = err_set(-errno, "cannot sync '%s': %s", tmp, strerror(errno));
        }
        if (r >= 0 && rename(tmp, overlay) < 0)
                r = err_set(-errno, "cannot rename '%s' to '%s': %s", tmp, overlay, strerror(errno));
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        (void) fsync_parent(overlay);
        return 0;
}

/* ---- RAM ---- */

static uint64_t mem_available(void) {
        _cleanup_free_ char *s = NULL;
        size_t n;
        if (read_proc_file("/proc/meminfo", 1 << 16, &s, &n) < 0)
                return UINT64_MAX;
        const char *p = strstr(s, "MemAvailable:");
        if (!p)
                return UINT64_MAX;
        unsigned long long kb = strtoull(p + 13, NULL, 10);
        return (uint64_t) kb * 1024;
}

int session_check_ram(const char *ram_dir, uint64_t ram_mib) {
        uint64_t need = ram_mib << 20, avail = mem_available();
        if (need > avail)
                return err_set(-ENOMEM,
                               "%llu MiB of RAM is more than this host can give (%llu MiB available; use a smaller "
                               "--ram)",
                               (unsigned long long) ram_mib, (unsigned long long) (avail >> 20));
        /* the RAM file lives in ram_dir (or its nearest existing parent) */
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", ram_dir);
        struct statvfs sv;
        while (statvfs(dir, &sv) < 0) {
                char *slash = strrchr(dir, '/');
                if (!slash || slash == dir)
                        return 0;
                *slash = 0;
        }
        uint64_t free_b = (uint64_t) sv.f_bavail * sv.f_frsize;
        if (need > free_b)
                return err_set(-ENOMEM,
                               "%llu MiB of RAM is more than the RAM directory '%s' can hold (%llu MiB free; use a "
                               "smaller --ram or set ROAM_RAM_DIR)",
                               (unsigned long long) ram_mib, ram_dir, (unsigned long long) (free_b >> 20));
        return 0;
}

/* ---- rows, locks, state ---- */

static int load_config(const SessionRow *row, VmConfig *ret) {
        json_error_t e;
        _cleanup_(json_decrefp) json_t *j = json_loads(row->config, 0, &e);
        if (!j)
                return err_set(-EBADMSG, "session '%s' has a corrupt config in the catalog: %s", row->name, e.text);
        return vm_config_from_json(j, ret);
}

static int config_to_text(const VmConfig *c, char **ret) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        int r = vm_config_to_json(c, &j);
        if (r < 0)
                return r;
        char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int check_owner(const SessionRow *row) {
        if (strcmp(row->owner, SESSION_OWNER_LOCAL))
                return err_set(-EREMOTE, "session '%s' is owned by %s since epoch %lld", row->name, row->owner,
                               (long long) row->epoch);
        return 0;
}

/* flock on the session directory. -ENOENT if it is missing; -EAGAIN when
 * nonblock and somebody else holds it. */
static int lock_dir(const char *dir, bool nonblock, int *ret_fd) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        while (flock(fd, LOCK_EX | (nonblock ? LOCK_NB : 0)) < 0) {
                if (errno == EINTR)
                        continue;
                int r = errno == EWOULDBLOCK ? -EAGAIN : -errno;
                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

static void remove_runtime(const Paths *p) {
        (void) unlink(p->qmp);
        (void) unlink(p->vnc);
        (void) unlink(p->pidfile);
        (void) unlink(p->ram_snap);
        (void) unlink(p->overlay_snap);
}

/* Brings row->state in line with QEMU (caller holds the lock). *ret_pid is
 * QEMU's pid when it runs, else 0. A guest that powered off is quit and
 * becomes "stopped"; a vanished QEMU of a running or paused session becomes
 * "crashed". */
static int refresh_locked(SessionHost *h, SessionRow *row, const Paths *p, pid_t *ret_pid) {
        pid_t pid = 0;
        SessionState st = row->state;
        if (strcmp(row->owner, SESSION_OWNER_LOCAL))
                st = SESSION_AWAY;
        else if (vm_alive(p->pidfile, &pid) > 0) {
                _cleanup_(qmp_freep) Qmp *q = NULL;
                _cleanup_free_ char *status = NULL;
                VmPaths vp = { .qmp = p->qmp };
                if (vm_connect(&vp, 2000, &q) >= 0 && qmp_query_status(q, &status) >= 0) {
                        if (!strcmp(status, "running"))
                                st = SESSION_RUNNING;
                        else if (!strcmp(status, "shutdown")) {
                                (void) vm_kill(q, pid);
                                pid = 0;
                                st = SESSION_STOPPED;
                                remove_runtime(p);
                                (void) unlink(p->ram);
                        } else
                                st = SESSION_PAUSED;
                } else if (st != SESSION_RUNNING && st != SESSION_PAUSED)
                        st = SESSION_RUNNING; /* alive but not answering: report it as running */
                err_clear();
        } else if (st == SESSION_RUNNING || st == SESSION_PAUSED)
                st = SESSION_CRASHED;
        if (st != row->state) {
                if (st != SESSION_AWAY) {
                        int r = session_db_set_state(h->catalog, row->name, st);
                        if (r < 0)
                                return r;
                }
                row->state = st;
        }
        *ret_pid = pid;
        return 0;
}

/* An operation on one session: the row, its config, its paths, the lock. */
typedef struct Op {
        SessionRow row;
        VmConfig config;
        Paths paths;
        int lock_fd;
        pid_t pid;
} Op;

static void op_done(Op *o) {
        session_row_done(&o->row);
        vm_config_done(&o->config);
        paths_done(&o->paths);
        if (o->lock_fd >= 0)
                close(o->lock_fd);
        o->lock_fd = -1;
}

/* Loads, locks and refreshes session name; checks the owner unless any_owner. */
static int op_begin(SessionHost *h, const char *name, bool any_owner, Op *o) {
        *o = (Op) { .lock_fd = -1 };
        if (!name_is_valid(name))
                return err_set(-EINVAL, "session name '%s' is invalid (use " NAME_RULE ")",
                               name);
        int r = session_db_get(h->catalog, name, &o->row);
        if (r < 0)
                return r;
        r = load_config(&o->row, &o->config);
        if (r >= 0)
                r = paths_for(h, name, &o->paths);
        if (r >= 0 && !any_owner)
                r = check_owner(&o->row);
        if (r >= 0) {
                r = lock_dir(o->paths.dir, false, &o->lock_fd);
                if (r == -ENOENT)
                        r = err_set(r, "session '%s' has no directory '%s' (remove it with 'roam session rm %s')",
                                    name, o->paths.dir, name);
                else if (r < 0)
                        r = err_set(r, "cannot lock session '%s': %s", name, strerror(-r));
        }
        if (r >= 0)
                r = refresh_locked(h, &o->row, &o->paths, &o->pid);
        if (r < 0) {
                op_done(o);
                return r;
        }
        return 0;
}

static int set_state(SessionHost *h, Op *o, SessionState st) {
        int r = session_db_set_state(h->catalog, o->row.name, st);
        if (r >= 0)
                o->row.state = st;
        return r;
}

static int require_running(Op *o) {
        if (o->pid > 0)
                return 0;
        return err_set(-ESRCH, "session '%s' is not running (state %s; start it with 'roam session start %s')",
                       o->row.name, session_state_to_string(o->row.state), o->row.name);
}

static int connect_op(Op *o, Qmp **ret) {
        VmPaths vp = { .qmp = o->paths.qmp };
        int r = vm_connect(&vp, VM_QMP_TIMEOUT_MS, ret);
        if (r < 0)
                return err_wrap(r, "session '%s'", o->row.name);
        return 0;
}

/* ---- info ---- */

void session_info_done(SessionInfo *i) {
        if (!i)
                return;
        session_row_done(&i->row);
        vm_config_done(&i->config);
        free(i->dir);
        free(i->overlay);
        free(i->serial);
        free(i->qmp);
        free(i->vnc);
        free(i->ram);
        free(i->master);
        *i = (SessionInfo) {};
}

void session_info_list_free(SessionInfo *list, size_t n) {
        for (size_t i = 0; list && i < n; i++)
                session_info_done(&list[i]);
        free(list);
}

/* Fills info from a row (taken over) and refreshes its state if the lock is free. */
static int info_from_row(SessionHost *h, SessionRow *row, SessionInfo *ret) {
        SessionInfo i = { .row = *row };
        *row = (SessionRow) {};
        _cleanup_paths_ Paths p = {};
        int r = load_config(&i.row, &i.config);
        if (r >= 0)
                r = paths_for(h, i.row.name, &p);
        if (r < 0) {
                session_info_done(&i);
                return r;
        }
        int fd = -1;
        if (lock_dir(p.dir, true, &fd) == 0) {
                r = refresh_locked(h, &i.row, &p, &i.pid);
                close(fd);
                if (r < 0) {
                        session_info_done(&i);
                        return r;
                }
        } else if (i.row.state == SESSION_RUNNING || i.row.state == SESSION_PAUSED) {
                pid_t pid;
                if (vm_alive(p.pidfile, &pid) > 0)
                        i.pid = pid;
        }
        i.overlay_bytes = allocated_bytes(p.overlay);
        i.ram_bytes = allocated_bytes(p.ram);
        i.dir = TAKE_PTR(p.dir);
        i.overlay = TAKE_PTR(p.overlay);
        i.serial = TAKE_PTR(p.serial);
        i.qmp = TAKE_PTR(p.qmp);
        i.vnc = TAKE_PTR(p.vnc);
        i.ram = TAKE_PTR(p.ram);
        i.master = master_path(h, i.row.image_id);
        if (!i.master) {
                session_info_done(&i);
                return -ENOMEM;
        }
        *ret = i;
        return 0;
}

int session_get(SessionHost *h, const char *name, SessionInfo *ret) {
        if (!name_is_valid(name))
                return err_set(-EINVAL, "session name '%s' is invalid (use " NAME_RULE ")",
                               name);
        _cleanup_(session_row_donep) SessionRow row = {};
        int r = session_db_get(h->catalog, name, &row);
        if (r < 0)
                return r;
        return info_from_row(h, &row, ret);
}

int session_list(SessionHost *h, SessionInfo **ret, size_t *ret_n) {
        SessionRow *rows = NULL;
        size_t n = 0;
        int r = session_db_list(h->catalog, &rows, &n);
        if (r < 0)
                return r;
        SessionInfo *list = calloc(n ? n : 1, sizeof *list);
        if (!list) {
                session_rows_free(rows, n);
                return -ENOMEM;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                r = info_from_row(h, &rows[i], &list[k]);
                if (r < 0)
                        break;
                k++;
        }
        session_rows_free(rows, n);
        if (r < 0) {
                session_info_list_free(list, k);
                return r;
        }
        *ret = list;
        *ret_n = k;
        return 0;
}

int session_log_path(SessionHost *h, const char *name, char **ret) {
        SessionInfo i = {};
        int r = session_get(h, name, &i);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(i.serial);
        session_info_done(&i);
        return 0;
}

/* ---- create ---- */

static int session_ref(const char *user, const char *name, const char *leaf, char *buf, size_t size) {
        int n = snprintf(buf, size, "sessions/%s/%s/%s", user, name, leaf);
        if (n < 0 || (size_t) n >= size || !ref_name_is_valid(buf))
                return err_set(-EINVAL, "invalid ref name '%s'", buf);
        return 0;
}

static int regular_file(const char *what, const char *path) {
        struct stat st;
        if (stat(path, &st) < 0)
                return err_set(-errno, "%s '%s': %s (give an existing file)", what, path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return err_set(-EINVAL, "%s '%s' is not a regular file", what, path);
        if (access(path, R_OK) < 0)
                return err_set(-errno, "%s '%s' is not readable: %s", what, path, strerror(errno));
        return 0;
}

/* Imports a boot file (kernel, initrd) and materializes it under boot/. */
static int import_boot(SessionHost *h, const char *what, const char *file, char **ret_hex) {
        RoamId id;
        int r = import_file(h->store, file, &id, NULL);
        if (r < 0)
                return err_set_if_none(r, "cannot import %s '%s': %s", what, file, strerror(-r));
        char hex[ID_HEX_SIZE];
        id_to_hex(&id, hex);
        _cleanup_free_ char *path = boot_path(h, hex);
        if (!path)
                return -ENOMEM;
        r = materialize(h, &id, path);
        if (r < 0)
                return r;
        *ret_hex = strdup(hex);
        return *ret_hex ? 0 : -ENOMEM;
}

static int put_manifest(Store *s, json_t *j, RoamId *ret) {
        _cleanup_free_ void *data = NULL;
        size_t len;
        int r = manifest_serialize(j, &data, &len);
        if (r < 0)
                return r;
        return store_object_put(s, data, len, ret);
}

static int write_base(SessionHost *h, const char *user, const char *name, const char *image_hex,
                      const VmConfig *c) {
        _cleanup_(json_decrefp) json_t *cfg = NULL;
        int r = vm_config_to_json(c, &cfg);
        if (r < 0)
                return r;
        json_t *objects = json_pack("{s:s, s:s}", "image", image_hex, "kernel", c->kernel_id);
        if (!objects)
                return -ENOMEM;
        if (c->initrd_id && json_object_set_new(objects, "initrd", json_string(c->initrd_id)) < 0) {
                json_decref(objects);
                return -ENOMEM;
        }
        _cleanup_(json_decrefp) json_t *j = json_pack("{s:s, s:s, s:s, s:o, s:O, s:I}", "kind", "session-base",
                                                      "session", name, "user", user, "objects", objects, "config",
                                                      cfg, "created", (json_int_t) time(NULL));
        if (!j)
                return -ENOMEM;
        RoamId id;
        r = put_manifest(h->store, j, &id);
        if (r < 0)
                return r;
        char ref[REF_NAME_MAX_LEN + 1];
        r = session_ref(user, name, "base", ref, sizeof ref);
        if (r < 0)
                return r;
        return store_ref_set(h->store, ref, &id, NULL);
}

int session_create(SessionHost *h, const SessionCreate *a, SessionInfo *ret) {
        int r = need_store(h);
        if (r < 0)
                return r;
        if (!name_is_valid(a->name))
                return err_set(-EINVAL,
                               "session name '%s' is invalid (use " NAME_RULE ")",
                               a->name ? a->name : "");
        if (!name_is_valid(a->user))
                return err_set(-EINVAL, "user name '%s' is invalid (use " NAME_RULE ")",
                               a->user ? a->user : "");
        if (!name_is_valid(a->image))
                return err_set(-EINVAL, "image name '%s' is invalid", a->image ? a->image : "");

        _cleanup_(vm_config_donep) VmConfig c = {};
        r = vm_config_init(&c);
        if (r < 0)
                return r;
        if (a->ram_mib)
                c.ram_mib = a->ram_mib;
        if (a->cpus)
                c.cpus = a->cpus;
        if (a->accel) {
                free(c.accel);
                c.accel = strdup(a->accel);
        }
        c.policy = a->policy;
        c.append = strdup(a->append ? a->append : SESSION_APPEND_DEFAULT);
        if (!c.accel || !c.append)
                return -ENOMEM;
        /* validate with a placeholder kernel id: the real one comes from the import below */
        c.kernel_id = strdup("0000000000000000000000000000000000000000000000000000000000000000");
        if (!c.kernel_id)
                return -ENOMEM;
        r = vm_config_validate(&c);
        if (r < 0)
                return r;

        /* name taken? (the insert below decides races; this fails early and cheaply) */
        _cleanup_(session_row_donep) SessionRow existing = {};
        r = session_db_get(h->catalog, a->name, &existing);
        if (r >= 0)
                return err_set(-EEXIST, "session '%s' already exists (see 'roam session list')", a->name);
        if (r != -ENOENT)
                return r;
        err_clear();

        char ref[REF_NAME_MAX_LEN + 1];
        snprintf(ref, sizeof ref, "images/%s", a->image);
        RoamId image_id;
        r = store_ref_get(h->store, ref, &image_id);
        if (r == -ENOENT)
                return err_set(-ENOENT, "image '%s' not found (try 'roam image list')", a->image);
        if (r < 0)
                return r;
        _cleanup_(index_freep) Index *image_index = NULL;
        r = blob_load_index(h->store, &image_id, &image_index);
        if (r < 0)
                return err_set_if_none(r, "image '%s' is damaged: %s (run 'roam store fsck')", a->image,
                                       strerror(-r));

        r = regular_file("kernel", a->kernel);
        if (r >= 0 && a->initrd)
                r = regular_file("initrd", a->initrd);
        if (r < 0)
                return r;
        if (a->profile_disk) {
                r = regular_file("profile disk", a->profile_disk);
                if (r < 0)
                        return r;
                char real[PATH_MAX];
                if (!realpath(a->profile_disk, real))
                        return -errno;
                c.profile_disk = strdup(real);
                if (!c.profile_disk)
                        return -ENOMEM;
        }
        r = session_check_ram(h->ram_dir, c.ram_mib);
        if (r < 0)
                return r;
        _cleanup_paths_ Paths p = {};
        r = paths_for(h, a->name, &p);
        if (r < 0)
                return r;
        if (strlen(p.qmp) > VM_SUN_PATH_MAX)
                return err_set(-ENAMETOOLONG,
                               "socket path '%s' is too long for a unix socket (use a shorter name or ROAM_HOME)",
                               p.qmp);

        /* shared, content-named files first: harmless if we fail later */
        char image_hex[ID_HEX_SIZE];
        id_to_hex(&image_id, image_hex);
        _cleanup_free_ char *master = master_path(h, image_hex);
        if (!master)
                return -ENOMEM;
        r = materialize(h, &image_id, master);
        if (r < 0)
                return r;
        free(c.kernel_id);
        c.kernel_id = NULL;
        r = import_boot(h, "kernel", a->kernel, &c.kernel_id);
        if (r >= 0 && a->initrd)
                r = import_boot(h, "initrd", a->initrd, &c.initrd_id);
        if (r < 0)
                return r;

        /* claim the name: the primary key decides between concurrent creates */
        _cleanup_free_ char *config_text = NULL;
        r = config_to_text(&c, &config_text);
        if (r < 0)
                return r;
        SessionRow row = {
                .name = (char *) a->name,
                .user = (char *) a->user,
                .image = (char *) a->image,
                .image_id = image_hex,
                .config = config_text,
                .state = SESSION_CREATED,
                .owner = (char *) SESSION_OWNER_LOCAL,
        };
        r = session_db_insert(h->catalog, &row);
        if (r < 0)
                return r;

        /* from here on, undo everything on failure */
        (void) rm_rf(p.dir); /* a leftover of an earlier crash: the row is ours now */
        r = mkdir_p(p.dir, 0700);
        if (r < 0)
                r = err_set(r, "cannot create '%s': %s", p.dir, strerror(-r));
        if (r >= 0)
                r = overlay_create(master, p.overlay);
        if (r >= 0)
                r = write_base(h, a->user, a->name, image_hex, &c);
        if (r >= 0)
                r = fsync_dir(p.dir);
        if (r < 0) {
                char bref[REF_NAME_MAX_LEN + 1];
                if (session_ref(a->user, a->name, "base", bref, sizeof bref) >= 0)
                        (void) store_ref_delete(h->store, bref);
                (void) rm_rf(p.dir);
                (void) session_db_delete(h->catalog, a->name);
                return r;
        }
        if (ret)
                return session_get(h, a->name, ret);
        return 0;
}

/* ---- start, stop, pause, resume ---- */

/* The VM paths of a session; boot files and master are materialized when
 * missing (from the store). */
static int vm_paths(SessionHost *h, Op *o, VmPaths *vp, char **kernel, char **initrd, char **master) {
        *kernel = boot_path(h, o->config.kernel_id);
        *initrd = o->config.initrd_id ? boot_path(h, o->config.initrd_id) : NULL;
        *master = master_path(h, o->row.image_id);
        if (!*kernel || (o->config.initrd_id && !*initrd) || !*master)
                return -ENOMEM;
        RoamId id;
        int r = 0;
        if (access(*kernel, F_OK) < 0 && (r = id_from_hex(o->config.kernel_id, &id)) >= 0)
                r = materialize(h, &id, *kernel);
        if (r >= 0 && *initrd && access(*initrd, F_OK) < 0 && (r = id_from_hex(o->config.initrd_id, &id)) >= 0)
                r = materialize(h, &id, *initrd);
        if (r >= 0 && access(*master, F_OK) < 0 && (r = id_from_hex(o->row.image_id, &id)) >= 0)
                r = materialize(h, &id, *master);
        if (r < 0)
                return err_set_if_none(r, "session '%s': cannot provide its boot files: %s", o->row.name,
                                       strerror(-r));
        *vp = (VmPaths) {
                .kernel = *kernel,
                .initrd = *initrd,
                .overlay = o->paths.overlay,
                .ram = o->paths.ram,
                .serial = o->paths.serial,
                .qmp = o->paths.qmp,
                .vnc = o->paths.vnc,
                .pidfile = o->paths.pidfile,
        };
        return 0;
}

/* Launches QEMU for o (cold boot, or incoming) with config cfg (NULL: o's
 * own); *ret_q is connected. */
static int launch_with(SessionHost *h, Op *o, const VmConfig *cfg, bool incoming, Qmp **ret_q) {
        if (!cfg)
                cfg = &o->config;
        _cleanup_free_ char *kernel = NULL, *initrd = NULL, *master = NULL;
        VmPaths vp;
        int r = vm_paths(h, o, &vp, &kernel, &initrd, &master);
        if (r < 0)
                return r;
        r = mkdir_p(h->ram_dir, 0700);
        if (r < 0)
                return err_set(r, "cannot create the RAM directory '%s': %s (set ROAM_RAM_DIR)", h->ram_dir,
                               strerror(-r));
        const char *accel;
        r = vm_resolve_accel(cfg->accel, kernel, h->home, &accel);
        if (r < 0)
                return r;
        _cleanup_(strv_freep) char **argv = NULL;
        r = vm_build_argv(vm_qemu_binary(), cfg, accel, &vp, incoming, &argv);
        if (r < 0)
                return r;
        pid_t pid;
        r = vm_launch(argv, &vp, &pid);
        if (r < 0) {
                /* QEMU may have created the RAM file before it gave up */
                (void) unlink(o->paths.ram);
                return err_wrap(r, "session '%s'", o->row.name);
        }
        Qmp *q;
        r = vm_connect(&vp, VM_QMP_TIMEOUT_MS, &q);
        if (r < 0) {
                r = err_wrap(r, "session '%s'", o->row.name);
                (void) vm_kill(NULL, pid);
                remove_runtime(&o->paths);
                (void) unlink(o->paths.ram);
                return r;
        }
        o->pid = pid;
        *ret_q = q;
        return 0;
}

static int launch(SessionHost *h, Op *o, bool incoming, Qmp **ret_q) {
        return launch_with(h, o, NULL, incoming, ret_q);
}

int session_start(SessionHost *h, const char *name) {
        _cleanup_(op_done) Op o = {};
        int r = op_begin(h, name, false, &o);
        if (r < 0)
                return r;
        if (o.pid > 0)
                return err_set(-EBUSY, "session '%s' is already %s", name, session_state_to_string(o.row.state));
        r = session_check_ram(h->ram_dir, o.config.ram_mib);
        if (r < 0)
                return err_wrap(r, "cannot start session '%s'", name);
        remove_runtime(&o.paths);
        (void) unlink(o.paths.ram); /* a cold boot starts with empty RAM */
        _cleanup_(qmp_freep) Qmp *q = NULL;
        r = launch(h, &o, false, &q);
        if (r < 0)
                return r;
        return set_state(h, &o, SESSION_RUNNING);
}

int session_stop(SessionHost *h, const char *name, int timeout_s, bool *ret_forced) {
        _cleanup_(op_done) Op o = {};
        int r = op_begin(h, name, false, &o);
        if (r < 0)
                return r;
        r = require_running(&o);
        if (r < 0)
                return r;
        _cleanup_(qmp_freep) Qmp *q = NULL;
        bool forced = false;
        if (connect_op(&o, &q) < 0)
                forced = true;
        else {
                _cleanup_free_ char *st = NULL;
                if (qmp_query_status(q, &st) >= 0 && strcmp(st, "running"))
                        (void) qmp_cont(q); /* a paused guest cannot see the power button */
                r = vm_powerdown(q, o.pid, (timeout_s > 0 ? timeout_s : SESSION_STOP_TIMEOUT_S_DEFAULT) * 1000);
                if (r < 0)
                        forced = true;
        }
        err_clear();
        r = vm_kill(q, o.pid);
        if (r < 0)
                return err_set(r, "session '%s': qemu (pid %d) does not exit", name, (int) o.pid);
        remove_runtime(&o.paths);
        (void) unlink(o.paths.ram);
        r = set_state(h, &o, SESSION_STOPPED);
        if (r < 0)
                return r;
        if (ret_forced)
                *ret_forced = forced;
        return 0;
}

static int pause_resume(SessionHost *h, const char *name, bool pause) {
        _cleanup_(op_done) Op o = {};
        int r = op_begin(h, name, false, &o);
        if (r < 0)
                return r;
        r = require_running(&o);
        if (r < 0)
                return r;
        _cleanup_(qmp_freep) Qmp *q = NULL;
        r = connect_op(&o, &q);
        if (r < 0)
                return r;
        r = pause ? qmp_stop(q) : qmp_cont(q);
        if (r < 0)
                return err_wrap(r, "session '%s'", name);
        return set_state(h, &o, pause ? SESSION_PAUSED : SESSION_RUNNING);
}

int session_pause(SessionHost *h, const char *name) {
        return pause_resume(h, name, true);
}

int session_resume(SessionHost *h, const char *name) {
        return pause_resume(h, name, false);
}

/* ---- remove ---- */

typedef struct RefList {
        char **names;
        size_t n;
} RefList;

static int collect_ref(const char *name, const RoamId *id, void *userdata) {
        RefList *l = userdata;
        char **v = realloc(l->names, (l->n + 1) * sizeof *v);
        if (!v)
                return -ENOMEM;
        l->names = v;
        if (!(v[l->n] = strdup(name)))
                return -ENOMEM;
        l->n++;
        return 0;
}

static int delete_refs(Store *s, const char *prefix) {
        RefList l = {};
        int r = store_ref_foreach(s, prefix, collect_ref, &l);
        for (size_t i = 0; i < l.n; i++) {
                if (r >= 0) {
                        int k = store_ref_delete(s, l.names[i]);
                        if (k < 0 && k != -ENOENT)
                                r = k;
                }
                free(l.names[i]);
        }
        free(l.names);
        return r;
}

static int manifest_id(json_t *m, const char *role, RoamId *ret) {
        const char *s = json_string_value(json_object_get(json_object_get(m, "objects"), role));
        if (!s || id_from_hex(s, ret) < 0)
                return err_set(-EBADMSG, "checkpoint lacks a valid %s id", role);
        return 0;
}

/* ---- staged RAM: a checkpoint's RAM file written ahead of a restore ---- */

/* ram_dir/NAME.staged.HEX holds the RAM blob of index HEX: written by
 * session_stage_ram() while the session runs elsewhere, taken (renamed) by
 * the next restore of NAME here, which then writes only the chunks that
 * differ. The index id travels in the name, so a file and what it holds never
 * disagree; a half-written one is only ever under NAME.staging. */
#define STAGED_INFIX ".staged."

/* 1 with the path and the index of the staged file of name, 0 if none. */
static int staged_find(SessionHost *h, const char *name, char **ret_path, RoamId *ret_id) {
        _cleanup_(closedirp) DIR *d = opendir(h->ram_dir);
        if (!d)
                return 0;
        size_t plen = strlen(name) + strlen(STAGED_INFIX);
        struct dirent *e;
        int found = 0;
        while ((e = readdir(d))) {
                RoamId id;
                if (strncmp(e->d_name, name, strlen(name)) != 0 ||
                    strncmp(e->d_name + strlen(name), STAGED_INFIX, strlen(STAGED_INFIX)) != 0 ||
                    id_from_hex(e->d_name + plen, &id) < 0)
                        continue;
                char *path;
                if (asprintf(&path, "%s/%s", h->ram_dir, e->d_name) < 0)
                        return -ENOMEM;
                if (found) { /* one is enough */
                        (void) unlink(path);
                        free(path);
                        continue;
                }
                *ret_path = path;
                *ret_id = id;
                found = 1;
        }
        return found;
}

/* A new empty file ram_dir/NAME.staging.RANDOM (staged_clear() removes
 * what a crash left of them). */
static int staging_tmp(SessionHost *h, const char *name, char **ret) {
        for (int attempt = 0; attempt < 10; attempt++) {
                uint64_t rnd;
                if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd)
                        return -EIO;
                char *p;
                if (asprintf(&p, "%s/%s.staging.%016llx", h->ram_dir, name, (unsigned long long) rnd) < 0)
                        return -ENOMEM;
                int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                if (fd >= 0) {
                        close(fd);
                        *ret = p;
                        return 0;
                }
                int r = -errno;
                free(p);
                if (r != -EEXIST)
                        return r;
        }
        return -EEXIST;
}

static void staged_clear(SessionHost *h, const char *name) {
        char *path;
        RoamId id;
        while (staged_find(h, name, &path, &id) > 0) {
                (void) unlink(path);
                free(path);
        }
        _cleanup_(closedirp) DIR *d = opendir(h->ram_dir);
        struct dirent *e;
        size_t n = strlen(name);
        while (d && (e = readdir(d)))
                if (!strncmp(e->d_name, name, n) && !strncmp(e->d_name + n, ".staging.", 9) &&
                    strlen(e->d_name) == n + 9 + 16 && strspn(e->d_name + n + 9, "0123456789abcdef") == 16)
                        (void) unlinkat(dirfd(d), e->d_name, 0);
}

void session_unstage_ram(SessionHost *h, const char *name) {
        if (name_is_valid(name))
                staged_clear(h, name);
}

/* Rewrites the file at path, which holds the blob of index from, into the
 * blob of index to. */
static int patch_file(Store *s, const RoamId *from, const RoamId *to, const char *path, BlobStats *st) {
        _cleanup_(index_freep) Index *a = NULL, *b = NULL;
        int r = blob_load_index(s, from, &a);
        if (r >= 0)
                r = blob_load_index(s, to, &b);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return err_set(-errno, "cannot open '%s': %s", path, strerror(errno));
        return blob_patch_fd(s, a, b, fd, st);
}

int session_stage_ram(SessionHost *h, const char *name, const RoamId *checkpoint, SessionStageResult *ret) {
        if (!name_is_valid(name))
                return err_set(-EINVAL, "session name '%s' is invalid", name);
        int r = need_store(h);
        if (r < 0)
                return r;
        _cleanup_free_ void *data = NULL;
        size_t len;
        r = store_object_get(h->store, checkpoint, STORE_OBJECT_MAX, &data, &len);
        if (r < 0)
                return r;
        _cleanup_(json_decrefp) json_t *m = NULL;
        if (!manifest_is_manifest(data, len) || manifest_parse(data, len, &m) < 0)
                return err_set(-EBADMSG, "object is not a checkpoint manifest");
        const char *kind = json_string_value(json_object_get(m, "kind"));
        const char *mu = json_string_value(json_object_get(m, "user"));
        const char *ms = json_string_value(json_object_get(m, "session"));
        if (!kind || (strcmp(kind, "checkpoint") && strcmp(kind, "precopy")) || !mu || !ms)
                return err_set(-EBADMSG, "object is not a checkpoint");
        _cleanup_(session_row_donep) SessionRow row = {};
        r = session_db_get(h->catalog, name, &row);
        if (r < 0 && r != -ENOENT)
                return r;
        err_clear();
        if (r >= 0 && (strcmp(mu, row.user) || strcmp(ms, name)))
                return err_set(-EINVAL, "checkpoint belongs to session '%s' of user '%s', not to '%s'", ms, mu, name);
        if (r >= 0 && !strcmp(row.owner, SESSION_OWNER_LOCAL) &&
            (row.state == SESSION_RUNNING || row.state == SESSION_PAUSED))
                return err_set(-EBUSY, "session '%s' runs here (nothing to stage)", name);
        RoamId ram;
        if (!json_object_get(json_object_get(m, "objects"), "ram"))
                return 0; /* powered off: no RAM */
        r = manifest_id(m, "ram", &ram);
        if (r < 0)
                return r;
        SessionStageResult res = { 0 };
        double t0 = now_s();
        _cleanup_free_ char *old = NULL, *tmp = NULL, *final = NULL;
        char hex[ID_HEX_SIZE];
        RoamId base;
        if (asprintf(&final, "%s/%s" STAGED_INFIX "%s", h->ram_dir, name, id_to_hex(&ram, hex)) < 0)
                return -ENOMEM;
        r = staged_find(h, name, &old, &base);
        if (r < 0)
                return r;
        if (r > 0 && id_equal(&base, &ram)) {
                if (ret)
                        *ret = res;
                return 0;
        }
        r = mkdir_p(h->ram_dir, 0700);
        if (r < 0)
                return err_set(r, "cannot create the RAM directory '%s': %s", h->ram_dir, strerror(-r));
        /* a name of its own: two stagings at once must not write one file */
        r = staging_tmp(h, name, &tmp);
        if (r < 0)
                return err_set(r, "cannot create a file in '%s': %s", h->ram_dir, strerror(-r));
        BlobStats st = { 0 };
        if (old && rename(old, tmp) == 0)
                r = patch_file(h->store, &base, &ram, tmp, &st);
        else {
                r = export_to(h->store, &ram, tmp, 0600);
                res.full = true;
        }
        if (r >= 0 && rename(tmp, final) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(tmp);
                return err_set_if_none(r, "cannot stage the RAM of session '%s': %s", name, strerror(-r));
        }
        res.chunks_written = st.chunks;
        res.seconds = now_s() - t0;
        if (ret)
                *ret = res;
        return 0;
}

/* Writes the RAM blob ram into path: from the staged file of name if there is
 * one (only the chunks that differ), else in full. */
static int write_ram(SessionHost *h, const char *name, const RoamId *ram, const char *path, bool *ret_staged) {
        _cleanup_free_ char *staged = NULL;
        RoamId base;
        *ret_staged = false;
        if (staged_find(h, name, &staged, &base) > 0 && rename(staged, path) == 0) {
                int r = patch_file(h->store, &base, ram, path, NULL);
                *ret_staged = r >= 0;
                if (r >= 0)
                        return 0;
                (void) unlink(path);
                err_clear(); /* the full export below decides */
        }
        return export_to(h->store, ram, path, 0600);
}

int session_remove(SessionHost *h, const char *name) {
        int r = need_store(h);
        if (r < 0)
                return r;
        _cleanup_(op_done) Op o = {};
        r = op_begin(h, name, true, &o);
        if (r == -ENOENT && o.row.name == NULL && session_db_get(h->catalog, name, &o.row) >= 0) {
                /* the row exists but the directory is gone: remove the row anyway */
                err_clear();
                r = paths_for(h, name, &o.paths);
        }
        if (r < 0)
                return r;
        if (o.pid > 0)
                return err_set(-EBUSY, "session '%s' is %s (stop it first: 'roam session stop %s')", name,
                               session_state_to_string(o.row.state), name);
        char prefix[REF_NAME_MAX_LEN + 2];
        int n = snprintf(prefix, sizeof prefix, "sessions/%s/%s/", o.row.user, name);
        if (n < 0 || (size_t) n >= sizeof prefix)
                return -EINVAL;
        r = delete_refs(h->store, prefix);
        if (r < 0)
                return err_set_if_none(r, "cannot remove the refs of session '%s': %s", name, strerror(-r));
        remove_runtime(&o.paths);
        (void) unlink(o.paths.ram);
        staged_clear(h, name);
        r = rm_rf(o.paths.dir);
        if (r < 0 && r != -ENOENT)
                return err_set(r, "cannot remove '%s': %s", o.paths.dir, strerror(-r));
        return session_db_delete(h->catalog, name);
}

/* ---- checkpoint ---- */

static void add_stats(SessionCheckpointResult *res, const BlobStats *b) {
        res->chunks += b->chunks;
        res->new_chunks += b->new_chunks;
        res->new_bytes += b->new_bytes;
        res->stored_bytes += b->stored_bytes;
}

/* Completes objects (taken over: {"ram","overlay","devstate"} or just
 * {"overlay"}) with kernel, initrd and image, writes the checkpoint manifest
 * of o, its refs (numbered and latest) and the catalog's record of it. */
static int publish_checkpoint(SessionHost *h, Op *o, json_t *objects, bool powered_off, uint64_t pause_ns,
                              RoamId *ret_id, int64_t *ret_seq) {
        _cleanup_(json_decrefp) json_t *objs = objects;
        if (json_object_set_new(objs, "kernel", json_string(o->config.kernel_id)) < 0 ||
            json_object_set_new(objs, "image", json_string(o->row.image_id)) < 0 ||
            (o->config.initrd_id && json_object_set_new(objs, "initrd", json_string(o->config.initrd_id)) < 0))
                return -ENOMEM;
        _cleanup_(json_decrefp) json_t *cfg = NULL;
        int r = vm_config_to_json(&o->config, &cfg);
        if (r < 0)
                return r;
        int64_t seq = o->row.checkpoints + 1;
        _cleanup_(json_decrefp) json_t *m = json_pack(
                "{s:s, s:s, s:s, s:s, s:s, s:O, s:O, s:s?, s:I, s:I, s:I, s:I}", "kind", "checkpoint", "session",
                o->row.name, "user", o->row.user, "image", o->row.image_id, "image_name", o->row.image, "objects",
                objs, "config", cfg, "parent", o->row.last_checkpoint, "epoch", (json_int_t) o->row.epoch, "seq",
                (json_int_t) seq, "created", (json_int_t) time(NULL), "pause_ms", (json_int_t) (pause_ns / 1000000));
        if (!m)
                return -ENOMEM;
        if (!o->row.last_checkpoint && json_object_set_new(m, "parent", json_null()) < 0)
                return -ENOMEM;
        if (powered_off && json_object_set_new(m, "powered_off", json_true()) < 0)
                return -ENOMEM;
        char host[HOST_ID_LEN + 1];
        if (host_id_get(h->home, host) >= 0 && json_object_set_new(m, "host", json_string(host)) < 0)
                return -ENOMEM;
        err_clear();
        RoamId id;
        r = put_manifest(h->store, m, &id);
        if (r < 0)
                return r;
        char leaf[32], ref[REF_NAME_MAX_LEN + 1], hex[ID_HEX_SIZE];
        snprintf(leaf, sizeof leaf, "%06lld", (long long) seq);
        r = session_ref(o->row.user, o->row.name, leaf, ref, sizeof ref);
        if (r >= 0)
                r = store_ref_set(h->store, ref, &id, NULL);
        if (r >= 0)
                r = session_ref(o->row.user, o->row.name, "latest", ref, sizeof ref);
        if (r >= 0)
                r = store_ref_set(h->store, ref, &id, NULL);
        if (r >= 0)
                r = session_db_set_checkpoint(h->catalog, o->row.name, id_to_hex(&id, hex), seq);
        if (r < 0)
                return r;
        *ret_id = id;
        *ret_seq = seq;
        return 0;
}

/* A powered-off checkpoint of o (no QEMU runs; the lock is held, so nobody
 * starts it meanwhile): the overlay file is consistent as it is (QEMU flushed
 * it when it ended) and is imported directly. */
static int checkpoint_powered_off(SessionHost *h, Op *o, SessionCheckpointResult *ret) {
        if (o->row.state == SESSION_CRASHED)
                return err_set(-EINVAL,
                               "session '%s' crashed and its disk may be torn (start it and stop it cleanly with "
                               "'roam session stop %s' before a powered-off checkpoint)",
                               o->row.name, o->row.name);
        uint64_t t0 = now_ns();
        SessionCheckpointResult res = { .powered_off = true };
        RoamId ov_id;
        BlobStats bs;
        int r = import_file(h->store, o->paths.overlay, &ov_id, &bs);
        if (r < 0)
                return err_wrap(r, "session '%s'", o->row.name);
        add_stats(&res, &bs);
        res.overlay_new_chunks = bs.new_chunks;
        res.import_ns = now_ns() - t0;
        char ov_hex[ID_HEX_SIZE];
        json_t *objects = json_pack("{s:s}", "overlay", id_to_hex(&ov_id, ov_hex));
        if (!objects)
                return -ENOMEM;
        r = publish_checkpoint(h, o, objects, true, 0, &res.id, &res.seq);
        if (r < 0)
                return r;
        res.total_ns = now_ns() - t0;
        if (ret)
                *ret = res;
        return 0;
}

/* The RAM file and the overlay of a session, each imported incrementally
 * from the base its sidecar (ram.fast, overlay.fast in the session
 * directory) describes. Every import of them (pre-copy, checkpoint, the last
 * checkpoint of a move) reads the sidecar and writes the next one, so the
 * next import SHA-256-hashes and stores only what changed since the latest
 * one. A missing, torn or stale sidecar (its chunks gone after a gc) means a
 * full import, never an error: a sidecar is a cache. */
typedef struct LiveFiles {
        BlobBase *ram_base, *ov_base;
        BlobPending *ram_pending, *ov_pending, *dev_pending; /* between begin and finish */
        BlobFast *ram_fast, *ov_fast;                        /* of the latest import */
        RoamId ram_id, ov_id, dev_id;
        BlobStats ram_stats, ov_stats, dev_stats;
} LiveFiles;

static void live_files_done(LiveFiles *l) {
        blob_base_free(l->ram_base);
        blob_base_free(l->ov_base);
        blob_pending_free(l->ram_pending);
        blob_pending_free(l->ov_pending);
        blob_pending_free(l->dev_pending);
        blob_fast_free(l->ram_fast);
        blob_fast_free(l->ov_fast);
        *l = (LiveFiles) {};
}

/* Loads both bases from the sidecars (store lookups: before the pause). */
static int live_files_load(SessionHost *h, const Paths *p, LiveFiles *l) {
        int r = blob_base_load(h->store, p->ram_fast, &l->ram_base);
        if (r >= 0)
                r = blob_base_load(h->store, p->overlay_fast, &l->ov_base);
        return r;
}

/* Changed chunks a paused checkpoint copies and stores after cont: beyond
 * this they are hashed and written while paused. */
#define CHECKPOINT_CAPTURE_MAX (256ULL << 20)

/* Reads RAM file and overlay against their bases. capture: see
 * import_begin(); with it, this is only a fast hash over both files and a
 * copy of what changed (the paused part). */
static int live_files_begin(SessionHost *h, const Paths *p, LiveFiles *l, uint64_t capture) {
        blob_pending_free(TAKE_PTR(l->ram_pending));
        blob_pending_free(TAKE_PTR(l->ov_pending));
        int r = import_begin(h->store, p->ram, l->ram_base, true, capture, &l->ram_pending);
        if (r >= 0)
                r = import_begin(h->store, p->overlay, l->ov_base, false, capture, &l->ov_pending);
        return r;
}

/* Also the device state (no base: it differs every time). */
static int live_files_begin_devstate(SessionHost *h, const Paths *p, LiveFiles *l) {
        blob_pending_free(TAKE_PTR(l->dev_pending));
        return import_begin(h->store, p->devstate, NULL, false, 0, &l->dev_pending);
}

static int finish_one(BlobPending **p, RoamId *ret_id, BlobStats *ret_stats, BlobFast **ret_fast) {
        if (!*p)
                return 0;
        if (ret_fast)
                blob_fast_free(TAKE_PTR(*ret_fast));
        int r = blob_import_finish(*p, ret_id, ret_stats, ret_fast);
        blob_pending_free(TAKE_PTR(*p));
        return r;
}

/* Stores what was copied, makes the chunks durable (one store_commit() for
 * all, the first finish does it) and writes the index objects. */
static int live_files_finish(LiveFiles *l) {
        int r = finish_one(&l->ram_pending, &l->ram_id, &l->ram_stats, &l->ram_fast);
        if (r >= 0)
                r = finish_one(&l->ov_pending, &l->ov_id, &l->ov_stats, &l->ov_fast);
        if (r >= 0)
                r = finish_one(&l->dev_pending, &l->dev_id, &l->dev_stats, NULL);
        return r;
}

static int live_files_import(SessionHost *h, const Paths *p, LiveFiles *l) {
        int r = live_files_begin(h, p, l, 0);
        return r < 0 ? r : live_files_finish(l);
}

/* Makes the latest import the base of the next one (store lookups). */
static int live_files_rebase(SessionHost *h, LiveFiles *l) {
        blob_base_free(TAKE_PTR(l->ram_base));
        blob_base_free(TAKE_PTR(l->ov_base));
        int r = blob_base_new(h->store, l->ram_fast, &l->ram_base);
        int k = blob_base_new(h->store, l->ov_fast, &l->ov_base);
        if (r == -ENOMEM || k == -ENOMEM)
                return -ENOMEM;
        err_clear(); /* no base: a full import, still correct */
        return 0;
}

/* Writes the sidecars of the latest import; a failure only costs the next
 * import its base. */
static void live_files_save(const Paths *p, const LiveFiles *l) {
        if (l->ram_fast && blob_fast_save(l->ram_fast, p->ram_fast) < 0)
                (void) unlink(p->ram_fast);
        if (l->ov_fast && blob_fast_save(l->ov_fast, p->overlay_fast) < 0)
                (void) unlink(p->overlay_fast);
        err_clear();
}

/* A checkpoint that is not the last one of a move first imports RAM and
 * overlay while the guest runs when its base is missing or older than this:
 * the pause then covers only what changed during that pre-pass. */
#define CHECKPOINT_PREPASS_AGE_S 2

static bool sidecar_fresh(const char *path) {
        struct stat st;
        if (stat(path, &st) < 0)
                return false;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        return now.tv_sec - st.st_mtim.tv_sec < CHECKPOINT_PREPASS_AGE_S;
}

int session_checkpoint(SessionHost *h, const char *name, unsigned flags, SessionCheckpointResult *ret) {
        int r = need_store(h);
        if (r < 0)
                return r;
        _cleanup_(op_done) Op o = {};
        r = op_begin(h, name, false, &o);
        if (r < 0)
                return r;
        if (o.row.checkpoints >= SESSION_CHECKPOINT_SEQ_MAX)
                return err_set(-ERANGE, "session '%s' has %d checkpoints, the most it can number", name,
                               SESSION_CHECKPOINT_SEQ_MAX);
        if (o.pid == 0)
                return checkpoint_powered_off(h, &o, ret);
        _cleanup_(qmp_freep) Qmp *q = NULL;
        r = connect_op(&o, &q);
        if (r < 0)
                return r;
        SessionCheckpointResult res = {};
        bool quit = flags & SESSION_CHECKPOINT_QUIT;
        uint64_t t_start = now_ns();

        /* 0. before the pause: the bases, and a pre-pass while the guest runs
         * when they are missing or old (not for the last checkpoint of a move,
         * whose every millisecond is downtime however it is split) */
        _cleanup_(live_files_done) LiveFiles live = {};
        r = live_files_load(h, &o.paths, &live);
        if (r < 0)
                return r;
        if (!quit && (!live.ram_base || !live.ov_base || !sidecar_fresh(o.paths.ram_fast))) {
                r = live_files_import(h, &o.paths, &live);
                if (r >= 0) {
                        live_files_save(&o.paths, &live);
                        r = live_files_rebase(h, &live);
                }
                if (r < 0)
                        return err_wrap(r, "session '%s'", name);
                /* what the pre-pass stored counts as stored by this checkpoint */
                res.new_chunks = live.ram_stats.new_chunks + live.ov_stats.new_chunks;
                res.new_bytes = live.ram_stats.new_bytes + live.ov_stats.new_bytes;
                res.stored_bytes = live.ram_stats.stored_bytes + live.ov_stats.stored_bytes;
                res.ram_new_chunks = live.ram_stats.new_chunks;
                res.overlay_new_chunks = live.ov_stats.new_chunks;
        }

        /* 1. pause: device state; RAM and overlay imported from their bases
         * (only changed chunks are hashed and stored) */
        uint64_t t0 = now_ns();
        _cleanup_free_ char *status = NULL;
        r = qmp_query_status(q, &status);
        if (r < 0)
                return r;
        bool was_running = !strcmp(status, "running");
        if (!strcmp(status, "postmigrate")) {
                /* left by an interrupted checkpoint: see below */
                r = qmp_cont(q);
                if (r >= 0)
                        r = qmp_stop(q);
                if (r < 0)
                        return err_wrap(r, "session '%s'", name);
        }
        if (was_running) {
                r = qmp_stop(q);
                if (r < 0)
                        return err_wrap(r, "session '%s'", name);
        }
        (void) unlink(o.paths.devstate);
        r = vm_save_devstate(q, o.paths.devstate, 60000);
        if (r < 0)
                r = err_wrap(r, "session '%s': saving the device state failed", name);
        uint64_t t1 = now_ns();
        /* QEMU flushed the overlay at stop and writes neither file until cont.
         * Quitting, everything is durably in the store before QEMU ends, so
         * that a failure leaves the guest running here (and copies would not
         * shorten anything: the guest is down until the target runs it) */
        if (r >= 0)
                r = live_files_begin(h, &o.paths, &live, quit ? 0 : CHECKPOINT_CAPTURE_MAX);
        if (r >= 0 && quit)
                r = live_files_begin_devstate(h, &o.paths, &live);
        if (r >= 0 && quit)
                r = live_files_finish(&live);
        uint64_t t2 = now_ns();
        int k = 0;
        if (r >= 0 && quit) {
                /* the last checkpoint of a move: QEMU ends, the session stays as saved */
                k = vm_kill(q, o.pid);
                qmp_free(TAKE_PTR(q));
                if (k >= 0) {
                        (void) unlink(o.paths.qmp);
                        (void) unlink(o.paths.vnc);
                        (void) unlink(o.paths.pidfile);
                        (void) unlink(o.paths.ram);
                        o.pid = 0;
                        k = set_state(h, &o, SESSION_STOPPED);
                }
        } else if (was_running)
                k = qmp_cont(q);
        else {
                /* QEMU 7.2 refuses to migrate a VM left in "postmigrate" ("paused due to
                 * previous migration") and keeps its disks inactive until cont: a paused
                 * session is brought back to plain "paused" with cont + stop (the guest
                 * runs for a moment after the checkpoint was taken) */
                k = qmp_cont(q);
                if (k >= 0)
                        k = qmp_stop(q);
        }
        uint64_t t3 = now_ns();
        if (r >= 0 && k < 0)
                r = err_wrap(k, "session '%s': cannot resume the guest after the checkpoint", name);
        res.pause_ns = t3 - t0;
        res.devstate_ns = t1 - t0;
        res.copy_ns = t2 - t1; /* the paused part of the import */
        if (r < 0)
                return r;

        /* 2. after the pause: durable chunks and index objects, device state
         * (unless quitting), sidecars */
        if (!quit) {
                r = live_files_begin_devstate(h, &o.paths, &live);
                if (r >= 0)
                        r = live_files_finish(&live);
        }
        if (r < 0)
                return r;
        live_files_save(&o.paths, &live);
        add_stats(&res, &live.ram_stats);
        add_stats(&res, &live.ov_stats);
        add_stats(&res, &live.dev_stats);
        res.ram_new_chunks += live.ram_stats.new_chunks;
        res.overlay_new_chunks += live.ov_stats.new_chunks;
        uint64_t t4 = now_ns();
        res.import_ns = (t2 - t1) + (t4 - t3);

        /* 3. manifest and refs */
        char ram_hex[ID_HEX_SIZE], ov_hex[ID_HEX_SIZE], dev_hex[ID_HEX_SIZE];
        json_t *objects = json_pack("{s:s, s:s, s:s}", "ram", id_to_hex(&live.ram_id, ram_hex), "overlay",
                                    id_to_hex(&live.ov_id, ov_hex), "devstate", id_to_hex(&live.dev_id, dev_hex));
        if (!objects)
                return -ENOMEM;
        r = publish_checkpoint(h, &o, objects, false, res.pause_ns, &res.id, &res.seq);
        if (r < 0)
                return r;
        (void) unlink(o.paths.devstate);
        res.total_ns = now_ns() - t_start;
        if (ret)
                *ret = res;
        return 0;
}

/* ---- checkpoints: resolve, verify ---- */

int session_checkpoint_resolve(SessionHost *h, const char *user, const char *name, const char *spec, RoamId *ret) {
        int r = need_store(h);
        if (r < 0)
                return r;
        if (spec && strlen(spec) == ID_HEX_SIZE - 1 && id_from_hex(spec, ret) == 0)
                return 0;
        char leaf[32], ref[REF_NAME_MAX_LEN + 1];
        if (!spec || !strcmp(spec, "latest"))
                snprintf(leaf, sizeof leaf, "latest");
        else {
                uint64_t v;
                if (parse_u64(spec, &v) < 0 || v < 1 || v > SESSION_CHECKPOINT_SEQ_MAX)
                        return err_set(-EINVAL,
                                       "checkpoint '%s' is neither 'latest', a number nor a 64-digit id (see "
                                       "'roam session show %s')",
                                       spec, name);
                snprintf(leaf, sizeof leaf, "%06llu", (unsigned long long) v);
        }
        r = session_ref(user, name, leaf, ref, sizeof ref);
        if (r < 0)
                return r;
        r = store_ref_get(h->store, ref, ret);
        if (r == -ENOENT)
                return err_set(-ENOENT,
                               "session '%s' has no checkpoint '%s' (take one with 'roam session checkpoint %s')",
                               name, spec ? spec : "latest", name);
        return r;
}

typedef struct VerifyCtx {
        Store *s;
        uint64_t missing;
        const char *missing_role;
        int error;
        const char *bad_role;
} VerifyCtx;

static int verify_object(const char *role, const RoamId *id, void *userdata) {
        VerifyCtx *v = userdata;
        _cleanup_(index_freep) Index *x = NULL;
        int r = blob_load_index(v->s, id, &x);
        if (r < 0) {
                v->error = r;
                v->bad_role = role;
                return 0;
        }
        uint64_t missing = 0;
        for (uint64_t i = 0; i < x->n_chunks; i++)
                if (!id_is_null(&x->ids[i]) && store_chunk_has(v->s, &x->ids[i]) <= 0)
                        missing++;
        if (missing && !v->missing_role)
                v->missing_role = role;
        v->missing += missing;
        return 0;
}

int session_checkpoint_verify(Store *s, const RoamId *id, json_t **ret) {
        char hex[ID_HEX_SIZE];
        id_to_hex(id, hex);
        _cleanup_free_ void *data = NULL;
        size_t len;
        int r = store_object_get(s, id, MANIFEST_JSON_MAX + 64, &data, &len);
        if (r == -ENOENT)
                return err_set(r, "checkpoint %.12s is not in the store (sync it first)", hex);
        if (r < 0)
                return err_set_if_none(r, "cannot read checkpoint %.12s: %s", hex, strerror(-r));
        _cleanup_(json_decrefp) json_t *j = NULL;
        r = manifest_parse(data, len, &j);
        if (r < 0)
                return err_set_if_none(r, "checkpoint %.12s is malformed", hex);
        const char *kind = json_string_value(json_object_get(j, "kind"));
        if (!kind || strcmp(kind, "checkpoint"))
                return err_set(-EBADMSG, "object %.12s is not a checkpoint", hex);
        json_t *objs = json_object_get(j, "objects"), *po = json_object_get(j, "powered_off");
        if (po && !json_is_boolean(po))
                return err_set(-EBADMSG, "checkpoint %.12s has a malformed 'powered_off'", hex);
        static const char *const required[] = { "overlay", "kernel", "image", "ram", "devstate" };
        size_t n_required = json_is_true(po) ? 3 : ELEMENTSOF(required);
        for (size_t i = 0; i < n_required; i++)
                if (!json_is_string(json_object_get(objs, required[i])))
                        return err_set(-EBADMSG, "checkpoint %.12s lacks its %s", hex, required[i]);
        VerifyCtx v = { .s = s };
        err_clear();
        r = manifest_foreach_object(j, verify_object, &v);
        if (r < 0)
                return r;
        if (v.error < 0)
                return err_set(v.error == -ENOENT ? -ENOENT : -EBADMSG,
                               "checkpoint %.12s: its %s is %s (sync it again, or run 'roam store fsck')", hex,
                               v.bad_role, v.error == -ENOENT ? "missing" : "damaged");
        if (v.missing)
                return err_set(-ENOENT,
                               "checkpoint %.12s lacks %llu chunks (first in its %s; sync it again, or run 'roam "
                               "store fsck')",
                               hex, (unsigned long long) v.missing, v.missing_role);
        if (ret)
                *ret = TAKE_PTR(j);
        return 0;
}

/* ---- restore ---- */

/* Creates the row and directory of a session adopted from a checkpoint, at
 * epoch (< 0: the checkpoint's). */
static int adopt(SessionHost *h, const char *name, json_t *m, const RoamId *id, int64_t epoch) {
        const char *user = json_string_value(json_object_get(m, "user"));
        const char *session = json_string_value(json_object_get(m, "session"));
        const char *image = json_string_value(json_object_get(m, "image"));
        const char *image_name = json_string_value(json_object_get(m, "image_name"));
        json_t *seq = json_object_get(m, "seq"), *mepoch = json_object_get(m, "epoch");
        if (!name_is_valid(user) || !session || !image)
                return err_set(-EBADMSG, "checkpoint has no valid user, session or image");
        if (strcmp(session, name))
                return err_set(-EINVAL, "checkpoint belongs to session '%s', not '%s'", session, name);
        _cleanup_(vm_config_donep) VmConfig c = {};
        int r = vm_config_from_json(json_object_get(m, "config"), &c);
        if (r < 0)
                return r;
        _cleanup_free_ char *config_text = NULL;
        r = config_to_text(&c, &config_text);
        if (r < 0)
                return r;
        char hex[ID_HEX_SIZE];
        SessionRow row = {
                .name = (char *) name,
                .user = (char *) user,
                .image = (char *) (image_name ? image_name : "?"),
                .image_id = (char *) image,
                .config = config_text,
                .state = SESSION_STOPPED,
                .owner = (char *) SESSION_OWNER_LOCAL,
                .epoch = epoch >= 0 ? epoch : json_is_integer(mepoch) ? json_integer_value(mepoch) : 0,
                .last_checkpoint = id_to_hex(id, hex),
                .checkpoints = json_is_integer(seq) ? json_integer_value(seq) : 0,
        };
        r = session_db_insert(h->catalog, &row);
        if (r < 0)
                return r;
        _cleanup_paths_ Paths p = {};
        r = paths_for(h, name, &p);
        if (r >= 0) {
                (void) rm_rf(p.dir);
                r = mkdir_p(p.dir, 0700);
        }
        if (r >= 0)
                r = write_base(h, user, name, image, &c);
        if (r < 0) {
                (void) session_db_delete(h->catalog, name);
                if (p.dir)
                        (void) rm_rf(p.dir);
                return err_set_if_none(r, "cannot adopt session '%s': %s", name, strerror(-r));
        }
        return 0;
}

/* Records in the catalog that session o follows checkpoint id with o's config. */
static int record_restored(SessionHost *h, Op *o, const RoamId *id) {
        _cleanup_free_ char *config_text = NULL;
        char hex[ID_HEX_SIZE];
        int r = config_to_text(&o->config, &config_text);
        if (r >= 0)
                r = session_db_set_config(h->catalog, o->row.name, config_text);
        if (r >= 0)
                r = session_db_set_checkpoint(h->catalog, o->row.name, id_to_hex(id, hex), 0);
        return r;
}

/* Restores powered-off checkpoint m into o (locked, not running; o's config
 * and image are the checkpoint's): the overlay, rebased onto this host's
 * master, replaces the session's; master and boot files are materialized so
 * that a later start needs no store; the session is left stopped. */
static int restore_powered_off(SessionHost *h, Op *o, json_t *m, SessionRestoreResult *res, uint64_t t0) {
        const char *name = o->row.name;
        RoamId ov_id, image_id;
        int r;
        if ((r = manifest_id(m, "overlay", &ov_id)) < 0 || (r = manifest_id(m, "image", &image_id)) < 0)
                return r;
        _cleanup_free_ char *ov_tmp = NULL;
        if (asprintf(&ov_tmp, "%s.restore", o->paths.overlay) < 0)
                return -ENOMEM;
        remove_runtime(&o->paths);
        r = export_to(h->store, &ov_id, ov_tmp, 0600);
        if (r >= 0) {
                /* the master this overlay needs, the boot files, at this host's paths */
                _cleanup_free_ char *kernel = NULL, *initrd = NULL, *master = NULL;
                VmPaths vp;
                r = vm_paths(h, o, &vp, &kernel, &initrd, &master);
                if (r >= 0)
                        r = overlay_rebase(master, ov_tmp);
        }
        if (r >= 0) {
                _cleanup_close_ int fd = open(ov_tmp, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || fsync(fd) < 0)
                        r = -errno;
        }
        if (r >= 0 && rename(ov_tmp, o->paths.overlay) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(ov_tmp);
                return err_set_if_none(r, "cannot restore session '%s': %s", name, strerror(-r));
        }
        (void) fsync_parent(o->paths.overlay);
        /* a powered-off session has no RAM and no device state */
        (void) unlink(o->paths.ram);
        (void) unlink(o->paths.devstate);
        res->powered_off = true;
        res->export_ns = now_ns() - t0;
        r = record_restored(h, o, &res->id);
        if (r >= 0)
                r = set_state(h, o, SESSION_STOPPED);
        if (r < 0)
                return r;
        res->qemu_ns = 0;
        res->total_ns = now_ns() - t0;
        return 0;
}

/* Restores checkpoint m (verified) into session name (row exists, QEMU not running). */
static int restore_into(SessionHost *h, const char *name, json_t *m, SessionRestoreResult *res, uint64_t t0) {
        _cleanup_(op_done) Op o = {};
        int r = op_begin(h, name, false, &o);
        if (r < 0)
                return r;
        if (o.pid > 0)
                return err_set(-EBUSY,
                               "session '%s' is %s (stop it first: the checkpoint replaces its state)", name,
                               session_state_to_string(o.row.state));
        /* the checkpoint's config and image replace the row's */
        VmConfig c = {};
        r = vm_config_from_json(json_object_get(m, "config"), &c);
        if (r < 0)
                return r;
        vm_config_done(&o.config);
        o.config = c;
        const char *image = json_string_value(json_object_get(m, "image"));
        char *image_dup = image ? strdup(image) : NULL;
        if (!image_dup)
                return -EBADMSG;
        free(o.row.image_id);
        o.row.image_id = image_dup;
        if (json_is_true(json_object_get(m, "powered_off")))
                return restore_powered_off(h, &o, m, res, t0);
        r = session_check_ram(h->ram_dir, o.config.ram_mib);
        if (r < 0)
                return err_wrap(r, "cannot restore session '%s'", name);

        /* files: temp names first, renamed into place once all are written */
        RoamId ram_id, ov_id, dev_id, image_id;
        if ((r = manifest_id(m, "ram", &ram_id)) < 0 || (r = manifest_id(m, "overlay", &ov_id)) < 0 ||
            (r = manifest_id(m, "devstate", &dev_id)) < 0 || (r = manifest_id(m, "image", &image_id)) < 0)
                return r;
        r = mkdir_p(h->ram_dir, 0700);
        if (r < 0)
                return err_set(r, "cannot create the RAM directory '%s': %s", h->ram_dir, strerror(-r));
        _cleanup_free_ char *master = master_path(h, o.row.image_id);
        _cleanup_free_ char *ov_tmp = NULL;
        if (!master || asprintf(&ov_tmp, "%s.restore", o.paths.overlay) < 0)
                return -ENOMEM;
        remove_runtime(&o.paths);
        uint64_t t_ram = now_ns();
        r = write_ram(h, name, &ram_id, o.paths.ram_snap, &res->ram_staged);
        res->ram_ns = now_ns() - t_ram;
        if (r >= 0)
                r = export_to(h->store, &ov_id, ov_tmp, 0600);
        if (r >= 0)
                r = export_to(h->store, &dev_id, o.paths.devstate, 0600);
        if (r >= 0)
                r = materialize(h, &image_id, master); /* the master this overlay needs */
        if (r >= 0)
                r = overlay_rebase(master, ov_tmp); /* ... at this host's path */
        if (r >= 0 && rename(o.paths.ram_snap, o.paths.ram) < 0)
                r = -errno;
        if (r >= 0 && rename(ov_tmp, o.paths.overlay) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(ov_tmp);
                (void) unlink(o.paths.ram_snap);
                (void) unlink(o.paths.devstate);
                return err_set_if_none(r, "cannot restore session '%s': %s", name, strerror(-r));
        }
        uint64_t t1 = now_ns();
        res->export_ns = t1 - t0;

        /* the catalog follows the checkpoint (config, image, parent of the next one) */
        r = record_restored(h, &o, &res->id);
        if (r < 0)
                return r;

        /* QEMU: incoming, device state, cont */
        _cleanup_(qmp_freep) Qmp *q = NULL;
        r = launch(h, &o, true, &q);
        res->launch_ns = now_ns() - t1;
        if (r >= 0) {
                r = vm_load_devstate(q, o.paths.devstate, 60000);
                if (r >= 0)
                        r = qmp_cont(q);
                if (r < 0) {
                        r = err_wrap(r, "cannot restore session '%s'", name);
                        (void) vm_kill(q, o.pid);
                        o.pid = 0;
                        remove_runtime(&o.paths);
                }
        }
        (void) unlink(o.paths.devstate);
        if (r < 0) {
                (void) set_state(h, &o, SESSION_STOPPED);
                return r;
        }
        r = set_state(h, &o, SESSION_RUNNING);
        if (r < 0)
                return r;
        uint64_t t2 = now_ns();
        res->qemu_ns = t2 - t1;
        res->total_ns = t2 - t0;
        return 0;
}

/* Undoes adopt() after a failed restore: an adopted session that never ran
 * is not left behind. Its checkpoint refs stay (they arrived with the data);
 * only the base ref adopt() wrote goes. */
static int unadopt(SessionHost *h, const char *name, const char *user, int r) {
        char saved[1024];
        snprintf(saved, sizeof saved, "%s", err_message(r));
        _cleanup_paths_ Paths p = {};
        if (paths_for(h, name, &p) >= 0) {
                (void) unlink(p.ram);
                (void) rm_rf(p.dir);
        }
        char ref[REF_NAME_MAX_LEN + 1];
        if (user && session_ref(user, name, "base", ref, sizeof ref) >= 0)
                (void) store_ref_delete(h->store, ref);
        (void) session_db_delete(h->catalog, name);
        return err_set(r, "%s", saved); /* the restore's error, not the clean-up's */
}

int session_restore(SessionHost *h, const char *name, const char *spec, SessionRestoreResult *ret) {
        int r = need_store(h);
        if (r < 0)
                return r;
        if (!name_is_valid(name))
                return err_set(-EINVAL, "session name '%s' is invalid (use " NAME_RULE ")",
                               name);
        uint64_t t0 = now_ns();
        SessionRestoreResult res = {};

        /* which checkpoint, and is all of it here? (before anything changes) */
        _cleanup_(session_row_donep) SessionRow row = {};
        r = session_db_get(h->catalog, name, &row);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r == -ENOENT) {
                if (!spec || strlen(spec) != ID_HEX_SIZE - 1 || id_from_hex(spec, &res.id) < 0)
                        return r; /* "session 'X' not found" */
                err_clear();
        } else {
                r = check_owner(&row);
                if (r < 0)
                        return r;
                r = session_checkpoint_resolve(h, row.user, name, spec, &res.id);
                if (r < 0)
                        return r;
        }
        _cleanup_(json_decrefp) json_t *m = NULL;
        r = session_checkpoint_verify(h->store, &res.id, &m);
        if (r < 0)
                return err_wrap(r, "cannot restore session '%s'", name);
        res.verify_ns = now_ns() - t0;
        const char *mu = json_string_value(json_object_get(m, "user"));
        const char *ms = json_string_value(json_object_get(m, "session"));
        if (row.name) {
                if (!mu || !ms || strcmp(mu, row.user) || strcmp(ms, name))
                        return err_set(-EINVAL, "checkpoint %s belongs to session '%s' of user '%s', not to '%s'",
                                       spec, ms ? ms : "?", mu ? mu : "?", name);
                r = restore_into(h, name, m, &res, t0);
        } else {
                r = adopt(h, name, m, &res.id, -1);
                if (r < 0)
                        return r;
                r = restore_into(h, name, m, &res, t0);
                if (r < 0)
                        r = unadopt(h, name, mu, r);
        }
        if (r < 0)
                return r;
        if (ret)
                *ret = res;
        return 0;
}

/* ---- adopt ---- */

int session_adopt(SessionHost *h, const char *name, const char *checkpoint_hex, int64_t epoch, SessionInfo *ret) {
        int r = need_store(h);
        if (r < 0)
                return r;
        if (!name_is_valid(name))
                return err_set(-EINVAL, "session name '%s' is invalid (use " NAME_RULE ")",
                               name);
        SessionRestoreResult res = {};
        if (!checkpoint_hex || strlen(checkpoint_hex) != ID_HEX_SIZE - 1 || id_from_hex(checkpoint_hex, &res.id) < 0)
                return err_set(-EINVAL, "checkpoint '%s' is not a 64-digit id (session '%s')",
                               checkpoint_hex ? checkpoint_hex : "", name);
        uint64_t t0 = now_ns();

        /* all of it here, and for this session? (before anything changes) */
        _cleanup_(json_decrefp) json_t *m = NULL;
        r = session_checkpoint_verify(h->store, &res.id, &m);
        if (r < 0)
                return err_wrap(r, "cannot adopt session '%s'", name);
        const char *mu = json_string_value(json_object_get(m, "user"));
        const char *ms = json_string_value(json_object_get(m, "session"));
        json_t *me = json_object_get(m, "epoch"), *mseq = json_object_get(m, "seq");
        int64_t m_epoch = json_is_integer(me) ? json_integer_value(me) : 0;
        int64_t m_seq = json_is_integer(mseq) ? json_integer_value(mseq) : 0;
        if (!mu || !ms || strcmp(ms, name))
                return err_set(-EINVAL, "checkpoint %.12s belongs to session '%s', not '%s'", checkpoint_hex,
                               ms ? ms : "?", name);
        if (m_seq < 0 || m_seq > SESSION_CHECKPOINT_SEQ_MAX)
                return err_set(-EBADMSG, "checkpoint %.12s has an invalid sequence number", checkpoint_hex);

        _cleanup_(session_row_donep) SessionRow row = {};
        r = session_db_get(h->catalog, name, &row);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r >= 0) {
                if (!strcmp(row.owner, SESSION_OWNER_LOCAL))
                        return err_set(-EBUSY,
                                       "session '%s' is owned here already (restore it with 'roam session "
                                       "restore %s %s')",
                                       name, name, checkpoint_hex);
                if (strcmp(row.user, mu))
                        return err_set(-EINVAL, "checkpoint %.12s belongs to user '%s', session '%s' to '%s'",
                                       checkpoint_hex, mu, name, row.user);
                if (epoch < 0)
                        epoch = MAX(row.epoch, m_epoch) + 1;
                if (epoch <= row.epoch)
                        return err_set(-ESTALE, "session '%s' is at epoch %lld here; epoch %lld is stale", name,
                                       (long long) row.epoch, (long long) epoch);
                r = session_set_owner(h, name, SESSION_OWNER_LOCAL, epoch, row.epoch);
                if (r < 0)
                        return r;
                r = restore_into(h, name, m, &res, t0);
                if (r < 0) {
                        /* not adopted: the old owner keeps it */
                        char saved[1024];
                        snprintf(saved, sizeof saved, "%s", err_message(r));
                        int k = session_set_owner(h, name, row.owner, row.epoch, epoch);
                        if (k < 0)
                                return err_set(r, "%s; and giving session '%s' back to %s failed: %s", saved,
                                               name, row.owner, err_message(k));
                        return err_set(r, "%s", saved);
                }
                if (m_seq > row.checkpoints)
                        r = session_db_set_checkpoint(h->catalog, name, checkpoint_hex, m_seq);
        } else {
                err_clear();
                if (epoch < 0)
                        epoch = m_epoch + 1;
                r = adopt(h, name, m, &res.id, epoch);
                if (r < 0)
                        return r;
                r = restore_into(h, name, m, &res, t0);
                if (r < 0)
                        return unadopt(h, name, mu, r);
        }
        if (r < 0)
                return r;
        /* the adopted checkpoint is this host's latest (the parent of the next one) */
        char ref[REF_NAME_MAX_LEN + 1];
        r = session_ref(mu, name, "latest", ref, sizeof ref);
        if (r >= 0)
                r = store_ref_set(h->store, ref, &res.id, NULL);
        if (r < 0)
                return err_set_if_none(r, "session '%s' was adopted, but its ref '%s' was not set: %s", name, ref,
                                       strerror(-r));
        if (ret)
                return session_get(h, name, ret);
        return 0;
}

/* ---- owner ---- */

int session_set_owner(SessionHost *h, const char *name, const char *owner, int64_t epoch, int64_t expected_epoch) {
        _cleanup_(op_done) Op o = {};
        int r = op_begin(h, name, true, &o);
        if (r < 0)
                return r;
        if (o.pid > 0 && strcmp(owner, SESSION_OWNER_LOCAL))
                return err_set(-EBUSY, "session '%s' runs here; checkpoint and stop it before it moves", name);
        return session_db_set_owner(h->catalog, name, owner, epoch, expected_epoch);
}

/* ---- profile disks ---- */

/* mke2fs from $ROAM_MKE2FS, PATH, or the sbin directories a user's PATH may lack. */
static const char *mke2fs_binary(void) {
        const char *e = getenv("ROAM_MKE2FS");
        if (e && *e)
                return e;
        static const char *const paths[] = { "/usr/sbin/mke2fs", "/sbin/mke2fs" };
        const char *path = getenv("PATH");
        if (path) {
                _cleanup_free_ char *copy = strdup(path);
                char *save = NULL;
                for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
                        char p[PATH_MAX];
                        snprintf(p, sizeof p, "%s/mke2fs", d);
                        if (access(p, X_OK) == 0)
                                return "mke2fs";
                }
        }
        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                if (access(paths[i], X_OK) == 0)
                        return paths[i];
        return "mke2fs";
}

int session_profile_disk(SessionHost *h, const char *user, char **ret) {
        if (!name_is_valid(user))
                return err_set(-EINVAL, "user name '%s' is invalid (use " NAME_RULE ")",
                               user ? user : "");
        _cleanup_free_ char *dir = path_join(h->home, "profiles"), *path = NULL;
        if (!dir || asprintf(&path, "%s/%s.img", dir, user) < 0)
                return -ENOMEM;
        struct stat st;
        if (stat(path, &st) == 0) {
                if (!S_ISREG(st.st_mode))
                        return err_set(-EINVAL, "profile disk '%s' of user '%s' is not a regular file (move it away)",
                                       path, user);
                *ret = TAKE_PTR(path);
                return 0;
        }
        if (errno != ENOENT && errno != ENOTDIR)
                return err_set(-errno, "cannot use the profile disk '%s' of user '%s': %s", path, user,
                               strerror(errno));
        int r = mkdir_p(dir, 0700);
        if (r < 0)
                return err_set(r, "cannot create the profile disk of user '%s': directory '%s': %s (make it a "
                               "writable directory)",
                               user, dir, strerror(-r));
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = tmpfile_create(dir, &tmp);
        if (fd < 0)
                return err_set(fd, "cannot create the profile disk of user '%s' in '%s': %s", user, dir,
                               strerror(-fd));
        if (ftruncate(fd, (off_t) SESSION_PROFILE_MIB << 20) < 0)
                r = err_set(-errno, "cannot size the profile disk '%s': %s", tmp, strerror(errno));
        if (r >= 0) {
                char *argv[] = { (char *) mke2fs_binary(), "-t", "ext4", "-q", "-F", "-m", "0", "-L", "roam-profile",
                                 tmp, NULL };
                r = run_tool_hint(argv, "making the profile disk's file system",
                                  "apt-get install e2fsprogs, or set ROAM_MKE2FS");
        }
        if (r >= 0 && (fchmod(fd, 0600) < 0 || fsync(fd) < 0))
                r = err_set(-errno, "cannot write the profile disk '%s': %s", tmp, strerror(errno));
        /* link, not rename: a disk another process made meanwhile wins, never replaced */
        if (r >= 0 && link(tmp, path) < 0 && errno != EEXIST)
                r = err_set(-errno, "cannot create the profile disk '%s': %s", path, strerror(errno));
        (void) unlink(tmp);
        if (r < 0)
                return err_set_if_none(r, "cannot create the profile disk of user '%s': %s", user, strerror(-r));
        (void) fsync_dir(dir);
        *ret = TAKE_PTR(path);
        return 0;
}

/* ---- finalize ---- */

int session_logoff_append(const char *append, const char *user, char **ret) {
        if (!name_is_valid(user))
                return err_set(-EINVAL, "user name '%s' is invalid", user ? user : "");
        size_t n = append ? strlen(append) : 0;
        _cleanup_free_ char *out = malloc(n + strlen(user) + 64);
        if (!out)
                return -ENOMEM;
        char *o = out;
        /* copy the words of append, leaving out roam.logoff= and roam.user= */
        for (const char *p = append ? append : ""; *p;) {
                while (*p == ' ')
                        p++;
                size_t w = strcspn(p, " ");
                if (w == 0)
                        break;
                if (strncmp(p, "roam.logoff=", 12) && strncmp(p, "roam.user=", 10)) {
                        if (o != out)
                                *o++ = ' ';
                        memcpy(o, p, w);
                        o += w;
                }
                p += w;
        }
        sprintf(o, "%sroam.logoff=1 roam.user=%s", o != out ? " " : "", user);
        if (strlen(out) > VM_APPEND_MAX)
                return err_set(-E2BIG, "the kernel command line of the log-off boot is longer than %d bytes",
                               VM_APPEND_MAX);
        *ret = TAKE_PTR(out);
        return 0;
}

int session_logoff_line(const char *log, size_t len, char *buf, size_t size) {
        static const char tag[] = "roam-guest: logoff ";
        const size_t tl = sizeof tag - 1;
        const char *found = NULL;
        size_t found_len = 0;
        for (size_t i = 0; i < len;) {
                const char *nl = memchr(log + i, '\n', len - i);
                size_t l = nl ? (size_t) (nl - (log + i)) : len - i;
                if (l >= tl && !memcmp(log + i, tag, tl)) {
                        found = log + i;
                        found_len = l;
                }
                i += l + 1;
        }
        if (size > 0)
                buf[0] = 0;
        if (!found)
                return 0;
        while (found_len > 0 && (found[found_len - 1] == '\r' || found[found_len - 1] == '\n'))
                found_len--;
        if (size > 0) {
                size_t k = MIN(found_len, size - 1);
                memcpy(buf, found, k);
                buf[k] = 0;
        }
        return 1;
}

static uint64_t file_size(const char *path) {
        struct stat st;
        return stat(path, &st) == 0 ? (uint64_t) st.st_size : 0;
}

/* The console output of path after offset (at most its last MiB). Caller frees. */
static int read_log_since(const char *path, uint64_t offset, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        uint64_t size = (uint64_t) st.st_size, from = offset;
        if (from > size)
                from = size;
        if (size - from > (1u << 20))
                from = size - (1u << 20);
        size_t n = (size_t) (size - from);
        _cleanup_free_ char *buf = malloc(n + 1);
        if (!buf)
                return -ENOMEM;
        ssize_t k = loop_pread(fd, buf, n, from);
        if (k < 0)
                return (int) k;
        buf[k] = 0;
        *ret = TAKE_PTR(buf);
        *ret_len = (size_t) k;
        return 0;
}

int session_finalize_timeout(SessionHost *h, const char *name, int timeout_s, SessionFinalizeResult *ret) {
        if (timeout_s <= 0)
                timeout_s = SESSION_FINALIZE_TIMEOUT_S_DEFAULT;
        _cleanup_(op_done) Op o = {};
        int r = op_begin(h, name, false, &o);
        if (r < 0)
                return r;
        if (o.pid > 0)
                return err_set(-EBUSY,
                               "session '%s' is %s (stop it first with 'roam session stop %s'; finalize boots a "
                               "powered-off session)",
                               name, session_state_to_string(o.row.state), name);
        if (o.row.state == SESSION_CRASHED)
                return err_set(-EINVAL,
                               "session '%s' crashed and its disk may be torn (start it and stop it cleanly with "
                               "'roam session stop %s' before finalizing it)",
                               name, name);
        uint64_t t0 = now_ns();
        SessionFinalizeResult res = { .policy = o.config.policy };

        /* the log-off boot's config: the user's profile disk, roam.logoff=1 */
        _cleanup_free_ char *profile = NULL;
        r = session_profile_disk(h, o.row.user, &profile);
        if (r < 0)
                return err_wrap(r, "cannot finalize session '%s'", name);
        _cleanup_(vm_config_donep) VmConfig fc = {};
        r = vm_config_copy(&o.config, &fc);
        if (r < 0)
                return r;
        free(fc.append);
        fc.append = NULL;
        r = session_logoff_append(o.config.append, o.row.user, &fc.append);
        if (r < 0)
                return err_wrap(r, "cannot finalize session '%s'", name);
        free(fc.profile_disk);
        fc.profile_disk = strdup(profile);
        if (!fc.profile_disk)
                return -ENOMEM;
        r = session_check_ram(h->ram_dir, fc.ram_mib);
        if (r < 0)
                return err_wrap(r, "cannot finalize session '%s'", name);
        /* one guest at a time writes a user's profile disk */
        _cleanup_close_ int pfd = open(profile, O_RDWR | O_CLOEXEC);
        if (pfd < 0)
                return err_set(-errno, "cannot open the profile disk '%s': %s", profile, strerror(errno));
        while (flock(pfd, LOCK_EX) < 0)
                if (errno != EINTR)
                        return err_set(-errno, "cannot lock the profile disk '%s': %s", profile,
                                       strerror(errno));

        /* boot; the guest runs its log-off hook and powers itself off */
        remove_runtime(&o.paths);
        (void) unlink(o.paths.ram); /* a cold boot starts with empty RAM */
        uint64_t log_from = file_size(o.paths.serial);
        _cleanup_(qmp_freep) Qmp *q = NULL;
        uint64_t t1 = now_ns();
        r = launch_with(h, &o, &fc, false, &q);
        if (r < 0)
                return err_wrap(r, "cannot finalize session '%s'", name);
        r = set_state(h, &o, SESSION_RUNNING);
        _cleanup_free_ char *reason = NULL;
        int w = r >= 0 ? vm_wait_poweroff(q, o.pid, timeout_s * 1000, &reason) : r;
        res.boot_ns = now_ns() - t1;
        err_clear();
        int k = vm_kill(q, o.pid);
        qmp_free(TAKE_PTR(q));
        if (k < 0)
                return err_set(k, "session '%s': qemu (pid %d) does not exit", name, (int) o.pid);
        o.pid = 0;
        remove_runtime(&o.paths);
        (void) unlink(o.paths.ram);
        r = set_state(h, &o, SESSION_STOPPED);
        if (r < 0)
                return r;
        (void) flock(pfd, LOCK_UN);

        _cleanup_free_ char *log = NULL;
        size_t log_len = 0;
        if (read_log_since(o.paths.serial, log_from, &log, &log_len) >= 0)
                (void) session_logoff_line(log, log_len, res.logoff, sizeof res.logoff);
        if (w == -ETIMEDOUT)
                return err_set(-ETIMEDOUT,
                               "session '%s' did not power off within %d s of its log-off boot; it was ended hard "
                               "and its disk kept (see 'roam session log %s')",
                               name, timeout_s, name);
        if (w < 0)
                return err_set(w, "session '%s': waiting for the log-off boot to end failed: %s; its disk was kept",
                               name, strerror(-w));
        if (strcmp(reason, "guest-shutdown"))
                return err_set(-EIO,
                               "session '%s': its log-off boot ended without a power-off (%s); its disk was kept "
                               "(see 'roam session log %s')",
                               name, reason, name);
        if (!strncmp(res.logoff, "roam-guest: logoff failed", 25))
                return err_set(-EIO, "session '%s': the guest's log-off hook failed ('%s'); its disk was kept", name,
                               res.logoff);

        /* the policy */
        if (o.config.policy == VM_POLICY_POOLED) {
                uint64_t t2 = now_ns();
                _cleanup_free_ char *master = master_path(h, o.row.image_id);
                if (!master)
                        return -ENOMEM;
                r = overlay_reset(master, o.paths.overlay);
                if (r < 0)
                        return err_wrap(r, "session '%s': resetting its disk to the master failed (the old disk "
                                           "is kept)",
                                        name);
                res.reset = true;
                res.reset_ns = now_ns() - t2;
        }
        res.total_ns = now_ns() - t0;
        if (ret)
                *ret = res;
        return 0;
}

int session_finalize(SessionHost *h, const char *name, SessionFinalizeResult *ret) {
        return session_finalize_timeout(h, name, SESSION_FINALIZE_TIMEOUT_S_DEFAULT, ret);
}
