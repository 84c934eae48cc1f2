/* SPDX-License-Identifier: MIT */
#include "session-internal.h"

#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../crypto/home-keys.h"
#include "../store/blob.h"
#include "../store/manifest.h"
#include "../guest/image.h"

int err_wrap(int r, const char *fmt, ...) {
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
        h->encrypted = home_keys_encrypted(h->home);
        h->store = store;
        h->warm = true;
        h->catalog = catalog;
        pthread_mutex_init(&h->agent_lock, NULL);
        pthread_mutex_init(&h->ram_maps_lock, NULL);
        pthread_mutex_init(&h->ending_lock, NULL);
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
        ram_maps_free(h);
        pthread_mutex_destroy(&h->ram_maps_lock);
        for (size_t i = 0; i < h->n_ending; i++)
                (void) close(h->ending[i].pidfd);
        pthread_mutex_destroy(&h->ending_lock);
        free(h->home);
        free(h->ram_dir);
        pthread_mutex_destroy(&h->agent_lock);
        free(h);
}

Store *session_host_store(const SessionHost *h) {
        return h->store;
}

const char *session_host_ram_dir(const SessionHost *h) {
        return h->ram_dir;
}

int need_store(SessionHost *h) {
        if (!h->store)
                return err_set(-EINVAL, "internal error: this session operation needs the store");
        return 0;
}

static uint64_t allocated_bytes(const char *path) {
        struct stat st;
        if (stat(path, &st) < 0)
                return 0;
        return (uint64_t) st.st_blocks * 512;
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

int config_to_text(const VmConfig *c, char **ret) {
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

void session_host_set_owner_describer(SessionHost *h, SessionOwnerDescribeFn fn, void *userdata) {
        h->describe_owner = fn;
        h->describe_userdata = userdata;
}

void session_host_set_warm(SessionHost *h, bool on) {
        h->warm = on;
}

void session_host_set_guard(SessionHost *h, SessionGuardFn fn, void *userdata) {
        h->guard = fn;
        h->guard_userdata = userdata;
}

void session_host_set_give(SessionHost *h, SessionGiveFn fn, void *userdata) {
        h->give = fn;
        h->give_userdata = userdata;
}

void session_host_set_take(SessionHost *h, SessionTakeFn fn, void *userdata) {
        h->take = fn;
        h->take_userdata = userdata;
}

int check_owner(const SessionHost *h, const SessionRow *row) {
        if (!strcmp(row->owner, SESSION_OWNER_LOCAL))
                return 0;
        char who[384];
        if (h->describe_owner)
                h->describe_owner(h->describe_userdata, row->name, row->owner, who, sizeof who);
        else
                snprintf(who, sizeof who, "%s", row->owner);
        return err_set(-EREMOTE, "session '%s' is owned by %s since epoch %lld", row->name, who,
                       (long long) row->epoch);
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

/* Replaces *row with the catalog's current one (caller holds the lock). */
static int reread_row(SessionHost *h, SessionRow *row) {
        SessionRow fresh = {};
        int r = session_db_get(h->catalog, row->name, &fresh);
        if (r < 0)
                return r;
        session_row_done(row);
        *row = fresh;
        return 0;
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
        else if (vm_alive(p->pidfile, p->pidfile_warm, &pid) > 0) {
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
                                (void) ram_unlink(h, p->ram);
                        } else
                                st = SESSION_PAUSED;
                } else if (st != SESSION_RUNNING && st != SESSION_PAUSED)
                        st = SESSION_RUNNING; /* alive but not answering: report it as running */
                err_clear();
        } else if (st == SESSION_RUNNING || st == SESSION_PAUSED)
                st = SESSION_CRASHED;
        if (st != SESSION_RUNNING && st != SESSION_PAUSED)
                ram_map_drop(h, p->ram);
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

void op_done(Op *o) {
        session_row_done(&o->row);
        vm_config_done(&o->config);
        paths_done(&o->paths);
        if (o->lock_fd >= 0)
                close(o->lock_fd);
        o->lock_fd = -1;
}

int op_begin(SessionHost *h, const char *name, bool any_owner, Op *o) {
        *o = (Op) { .lock_fd = -1 };
        if (!name_is_valid(name))
                return err_set(-EINVAL, "session name '%s' is invalid (use " NAME_RULE ")",
                               name);
        int r = session_db_get(h->catalog, name, &o->row);
        if (r < 0)
                return r;
        /* refused early when it is not ours (no directory needed), and again below */
        if (!any_owner && (r = check_owner(h, &o->row)) < 0) {
                op_done(o);
                return r;
        }
        r = paths_for(h, name, &o->paths);
        if (r >= 0) {
                r = lock_dir(o->paths.dir, false, &o->lock_fd);
                if (r == -ENOENT)
                        r = err_set(r, "session '%s' has no directory '%s' (remove it with 'roam session rm %s')",
                                    name, o->paths.dir, name);
                else if (r < 0)
                        r = err_set(r, "cannot lock session '%s': %s", name, strerror(-r));
        }
        /* the row read before the lock may be stale: whoever held the lock
         * may have changed its state or owner (a refresh from a stale
         * "running" row would call a cleanly stopped session "crashed") */
        if (r >= 0)
                r = reread_row(h, &o->row);
        if (r >= 0)
                r = load_config(&o->row, &o->config);
        if (r >= 0 && !any_owner)
                r = check_owner(h, &o->row);
        if (r >= 0 && !any_owner && h->guard)
                r = h->guard(h->guard_userdata, name, o->row.epoch);
        if (r >= 0)
                r = refresh_locked(h, &o->row, &o->paths, &o->pid);
        if (r < 0) {
                op_done(o);
                return r;
        }
        return 0;
}

int set_state(SessionHost *h, Op *o, SessionState st) {
        if (st != SESSION_RUNNING && st != SESSION_PAUSED)
                ram_map_drop(h, o->paths.ram); /* its QEMU ended: no more imports of its RAM */
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

int connect_op(Op *o, Qmp **ret) {
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
                /* a row gone meanwhile (removed) is shown as it was read */
                if (reread_row(h, &i.row) >= 0)
                        r = refresh_locked(h, &i.row, &p, &i.pid);
                else
                        err_clear();
                close(fd);
                if (r < 0) {
                        session_info_done(&i);
                        return r;
                }
        } else if (i.row.state == SESSION_RUNNING || i.row.state == SESSION_PAUSED) {
                pid_t pid;
                if (vm_alive(p.pidfile, p.pidfile_warm, &pid) > 0)
                        i.pid = pid;
        }
        i.overlay_bytes = allocated_bytes(p.overlay);
        i.ram_bytes = allocated_bytes(p.ram);
        i.has_profile = access(p.profile, F_OK) == 0;
        if (i.config.agent)
                session_agent_cached(h, i.row.name, &i.agent);
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

int session_ref(const char *user, const char *name, const char *leaf, char *buf, size_t size) {
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

int put_manifest(Store *s, json_t *j, RoamId *ret) {
        _cleanup_free_ void *data = NULL;
        size_t len;
        int r = manifest_serialize(j, &data, &len);
        if (r < 0)
                return r;
        return store_object_put(s, data, len, ret);
}

int write_base(SessionHost *h, const char *user, const char *name, const char *image_hex,
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

static int create_check_names(const SessionCreate *a) {
        if (!name_is_valid(a->name))
                return err_set(-EINVAL,
                               "session name '%s' is invalid (use " NAME_RULE ")",
                               a->name ? a->name : "");
        if (!name_is_valid(a->user))
                return err_set(-EINVAL, "user name '%s' is invalid (use " NAME_RULE ")",
                               a->user ? a->user : "");
        if (!name_is_valid(a->image))
                return err_set(-EINVAL, "image name '%s' is invalid", a->image ? a->image : "");
        return 0;
}

/* The VM config of a new session from a (c is the caller's to free, also on
 * failure), validated with a placeholder kernel id. */
static int create_config(const SessionCreate *a, VmConfig *c) {
        int r = vm_config_init(c);
        if (r < 0)
                return r;
        if (a->ram_mib)
                c->ram_mib = a->ram_mib;
        if (a->cpus)
                c->cpus = a->cpus;
        if (a->accel) {
                free(c->accel);
                c->accel = strdup(a->accel);
        }
        c->policy = a->policy;
        c->agent = a->agent;
        c->terminal_server = a->terminal_server;
        c->append = strdup(a->append ? a->append : SESSION_APPEND_DEFAULT);
        if (!c->accel || !c->append)
                return -ENOMEM;
        /* validate with a placeholder kernel id: the real one comes from the import below */
        c->kernel_id = strdup("0000000000000000000000000000000000000000000000000000000000000000");
        if (!c->kernel_id)
                return -ENOMEM;
        return vm_config_validate(c);
}

/* -EEXIST if the name is taken; else the image (its disk's index loads). */
static int create_find_image(SessionHost *h, const SessionCreate *a, ImageInfo *ret) {
        /* name taken? (the insert below decides races; this fails early and cheaply) */
        _cleanup_(session_row_donep) SessionRow existing = {};
        int r = session_db_get(h->catalog, a->name, &existing);
        if (r >= 0)
                return err_set(-EEXIST, "session '%s' already exists (see 'roam session list')", a->name);
        if (r != -ENOENT)
                return r;
        err_clear();
        ImageInfo img = {};
        r = image_lookup(h->store, a->image, &img);
        if (r < 0)
                return r;
        _cleanup_(index_freep) Index *image_index = NULL;
        r = blob_load_index(h->store, &img.disk, &image_index);
        if (r < 0) {
                image_info_done(&img);
                return err_set_if_none(r, "image '%s' is damaged: %s (run 'roam store fsck')", a->image,
                                       strerror(-r));
        }
        *ret = img;
        return 0;
}

/* A session of an image with boot files takes them, its kernel command
 * line (plus roam.user=USER), the agent and the profile from the image;
 * what the caller gives (kernel, append, agent) wins. */
static int create_from_image(const SessionCreate *a, const ImageInfo *img, VmConfig *c) {
        if (a->kernel || !img->boot)
                return 0;
        if (img->agent)
                c->agent = true;
        if (img->profile)
                c->profile = true;
        if (!a->append) {
                const char *base = img->append ? img->append : "";
                _cleanup_free_ char *append = NULL;
                if (strstr(base, "roam.user="))
                        append = strdup(base);
                else if (asprintf(&append, "%s%sroam.user=%s", base, *base ? " " : "", a->user) < 0)
                        append = NULL;
                if (!append)
                        return -ENOMEM;
                free(c->append);
                c->append = TAKE_PTR(append);
        }
        return vm_config_validate(c);
}

/* Kernel, initrd and profile disk are readable files; c takes the real path
 * of the profile disk. No kernel: the image's (or the default's). */
static int create_check_files(const SessionCreate *a, const ImageInfo *img, VmConfig *c) {
        int r = 0;
        if (!a->kernel && !img->boot && !a->default_kernel)
                return err_set(-EINVAL,
                               "image '%s' has no kernel of its own (give --kernel FILE, or import the image with "
                               "'roam image import %s FILE --kernel K [--initrd I]')",
                               a->image, a->image);
        if (a->kernel)
                r = regular_file("kernel", a->kernel);
        else if (!img->boot)
                r = regular_file("kernel", a->default_kernel);
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
                c->profile_disk = strdup(real);
                if (!c->profile_disk)
                        return -ENOMEM;
        }
        return 0;
}

/* Materializes a boot file of the image under boot/ (its id into *ret_hex). */
static int image_boot_file(SessionHost *h, const RoamId *id, char **ret_hex) {
        char hex[ID_HEX_SIZE];
        id_to_hex(id, hex);
        _cleanup_free_ char *path = boot_path(h, hex);
        if (!path)
                return -ENOMEM;
        int r = materialize(h, id, path);
        if (r < 0)
                return r;
        *ret_hex = strdup(hex);
        return *ret_hex ? 0 : -ENOMEM;
}

/* The shared, content-named files first (harmless if create fails later):
 * the master, at *ret_master (caller frees); kernel and initrd imported (or
 * the image's), their ids into c. */
static int create_shared_files(SessionHost *h, const SessionCreate *a, const ImageInfo *img, const char *image_hex,
                               VmConfig *c, char **ret_master) {
        _cleanup_free_ char *master = master_path(h, image_hex);
        if (!master)
                return -ENOMEM;
        int r = master_materialize(h, &img->disk, master);
        if (r < 0)
                return r;
        free(c->kernel_id);
        c->kernel_id = NULL;
        if (!a->kernel && img->boot) {
                r = image_boot_file(h, &img->kernel, &c->kernel_id);
                if (r >= 0 && img->has_initrd && !a->initrd)
                        r = image_boot_file(h, &img->initrd, &c->initrd_id);
                else if (r >= 0 && a->initrd)
                        r = import_boot(h, "initrd", a->initrd, &c->initrd_id);
        } else {
                const char *kernel = a->kernel ? a->kernel : a->default_kernel;
                const char *initrd = a->initrd ? a->initrd : a->kernel ? NULL : a->default_initrd;
                r = import_boot(h, "kernel", kernel, &c->kernel_id);
                if (r >= 0 && initrd)
                        r = import_boot(h, "initrd", initrd, &c->initrd_id);
        }
        if (r < 0)
                return r;
        *ret_master = TAKE_PTR(master);
        return 0;
}

/* Claims the name: the primary key decides between concurrent creates. */
static int create_claim(SessionHost *h, const SessionCreate *a, const char *image_hex, const VmConfig *c) {
        _cleanup_free_ char *config_text = NULL;
        int r = config_to_text(c, &config_text);
        if (r < 0)
                return r;
        SessionRow row = {
                .name = (char *) a->name,
                .user = (char *) a->user,
                .image = (char *) a->image,
                .image_id = (char *) image_hex,
                .config = config_text,
                .state = SESSION_CREATED,
                .owner = (char *) SESSION_OWNER_LOCAL,
        };
        return session_db_insert(h->catalog, &row);
}

/* The session's own files, once its row is claimed: directory, overlay, base
 * ref. On failure all of it is undone, the row too. */
static int create_own_files(SessionHost *h, const SessionCreate *a, const Paths *p, const char *master,
                            const char *image_hex, const VmConfig *c) {
        (void) rm_rf(p->dir); /* a leftover of an earlier crash: the row is ours now */
        int r = mkdir_p(p->dir, 0700);
        if (r < 0)
                r = err_set(r, "cannot create '%s': %s", p->dir, strerror(-r));
        if (r >= 0)
                r = overlay_create(master, p->overlay);
        if (r >= 0)
                r = write_base(h, a->user, a->name, image_hex, c);
        if (r >= 0)
                r = fsync_dir(p->dir);
        if (r < 0) {
                char bref[REF_NAME_MAX_LEN + 1];
                if (session_ref(a->user, a->name, "base", bref, sizeof bref) >= 0)
                        (void) store_ref_delete(h->store, bref);
                (void) rm_rf(p->dir);
                (void) session_db_delete(h->catalog, a->name);
                return r;
        }
        return 0;
}

int session_create(SessionHost *h, const SessionCreate *a, SessionInfo *ret) {
        int r = need_store(h);
        if (r < 0)
                return r;
        r = create_check_names(a);
        if (r < 0)
                return r;
        _cleanup_(vm_config_donep) VmConfig c = {};
        r = create_config(a, &c);
        if (r < 0)
                return r;
        _cleanup_(image_info_done) ImageInfo img = {};
        r = create_find_image(h, a, &img);
        if (r < 0)
                return r;
        r = create_from_image(a, &img, &c);
        if (r < 0)
                return r;
        if (c.terminal_server && (!c.append || !strstr(c.append, "roam.ts=1"))) {
                /* the guest's roam-desk.service and no console desktop on :0 */
                _cleanup_free_ char *append = NULL;
                if (asprintf(&append, "%s%sroam.ts=1", c.append ? c.append : "", c.append ? " " : "") < 0)
                        return -ENOMEM;
                free(c.append);
                c.append = TAKE_PTR(append);
                if (!c.agent)
                        return err_set(-EINVAL, "a terminal server needs the guest agent (an image imported with "
                                                "--agent, or --agent)");
                c.profile = false; /* each desk's home travels with the desk, not the server's profile */
                r = vm_config_validate(&c);
                if (r < 0)
                        return r;
        }
        r = create_check_files(a, &img, &c);
        if (r < 0)
                return r;
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
        char image_hex[ID_HEX_SIZE];
        id_to_hex(&img.disk, image_hex);
        _cleanup_free_ char *master = NULL;
        r = create_shared_files(h, a, &img, image_hex, &c, &master);
        if (r < 0)
                return r;
        r = create_claim(h, a, image_hex, &c);
        if (r < 0)
                return r;
        /* from here on, undo everything on failure */
        r = create_own_files(h, a, &p, master, image_hex, &c);
        if (r < 0)
                return r;
        if (ret)
                return session_get(h, a->name, ret);
        return 0;
}

/* ---- start, stop, pause, resume ---- */

int vm_paths(SessionHost *h, Op *o, VmPaths *vp, char **kernel, char **initrd, char **master) {
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
        if (r >= 0 && (r = id_from_hex(o->row.image_id, &id)) >= 0)
                r = master_materialize(h, &id, *master); /* the layers under it too */
        if (r < 0)
                return err_set_if_none(r, "session '%s': cannot provide its boot files: %s", o->row.name,
                                       strerror(-r));
        *vp = (VmPaths) {
                .kernel = *kernel,
                .initrd = *initrd,
                .overlay = o->paths.overlay,
                .overlay_fd = o->overlay_fd,
                .profile_fd = o->profile_fd,
                .master = *master,
                .master_format = master_format(*master),
                .ram = o->paths.ram,
                .serial = o->paths.serial,
                .qmp = o->paths.qmp,
                .vnc = o->paths.vnc,
                .agent = o->paths.agent,
                .profile = o->paths.profile,
                .pidfile = o->paths.pidfile,
                .xfer = o->paths.xfer,
        };
        if (o->config.terminal_server) {
                /* the transfer disk of a terminal server: sparse, made once */
                _cleanup_close_ int fd = open(o->paths.xfer, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
                struct stat st;
                if (fd < 0 || fstat(fd, &st) < 0)
                        return err_set(-errno, "cannot create the transfer disk '%s': %s", o->paths.xfer,
                                       strerror(errno));
                if ((uint64_t) st.st_size < SESSION_XFER_BYTES && ftruncate(fd, (off_t) SESSION_XFER_BYTES) < 0)
                        return err_set(-errno, "cannot size the transfer disk '%s': %s", o->paths.xfer,
                                       strerror(errno));
        }
        return 0;
}

/* Under the lock: whether ending i is gone, waiting up to timeout_ms. */
static bool ending_gone(SessionHost *h, size_t i, int timeout_ms) {
        struct pollfd p = { .fd = h->ending[i].pidfd, .events = POLLIN };
        return poll(&p, 1, timeout_ms) != 0; /* readable, or an error: nothing to wait for */
}

static void ending_remove(SessionHost *h, size_t i) {
        (void) close(h->ending[i].pidfd);
        h->ending[i] = h->ending[--h->n_ending];
}

void qemu_ending(SessionHost *h, const char *name, int pidfd) {
        if (pidfd < 0)
                return;
        pthread_mutex_lock(&h->ending_lock);
        for (size_t i = 0; i < h->n_ending;)
                if (ending_gone(h, i, 0))
                        ending_remove(h, i);
                else
                        i++;
        if (h->n_ending == ELEMENTSOF(h->ending)) {
                (void) ending_gone(h, 0, 5000); /* no room to remember it: wait for the oldest */
                ending_remove(h, 0);
        }
        snprintf(h->ending[h->n_ending].name, sizeof h->ending[0].name, "%s", name);
        h->ending[h->n_ending++].pidfd = pidfd;
        pthread_mutex_unlock(&h->ending_lock);
}

/* Waits until an earlier QEMU of name is gone (a few ms after its SIGKILL):
 * a new one then never meets its locks or files. */
static void ending_wait(SessionHost *h, const char *name) {
        pthread_mutex_lock(&h->ending_lock);
        for (size_t i = 0; i < h->n_ending;)
                if (!strcmp(h->ending[i].name, name)) {
                        (void) ending_gone(h, i, 5000);
                        ending_remove(h, i);
                } else
                        i++;
        pthread_mutex_unlock(&h->ending_lock);
}

int launch_with(SessionHost *h, Op *o, const VmConfig *cfg, bool incoming, Qmp **ret_q) {
        if (!cfg)
                cfg = &o->config;
        ending_wait(h, o->row.name);
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
                (void) ram_unlink(h, o->paths.ram);
                return err_wrap(r, "session '%s'", o->row.name);
        }
        Qmp *q;
        r = vm_connect(&vp, VM_QMP_TIMEOUT_MS, &q);
        if (r < 0) {
                r = err_wrap(r, "session '%s'", o->row.name);
                (void) vm_kill(NULL, pid);
                remove_runtime(&o->paths);
                (void) ram_unlink(h, o->paths.ram);
                return r;
        }
        o->pid = pid;
        *ret_q = q;
        return 0;
}

int launch(SessionHost *h, Op *o, bool incoming, Qmp **ret_q) {
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
        if (o.config.profile) {
                /* the user's profile disk: this session's until its log-off */
                r = profile_checkout(h, &o);
                if (r < 0)
                        return err_wrap(r, "cannot start session '%s'", name);
        }
        remove_runtime(&o.paths);
        (void) ram_unlink(h, o.paths.ram); /* a cold boot starts with empty RAM */
        session_warm_stop(h, name); /* nothing will come into a QEMU waiting for it */
        r = overlay_bring_back(h, &o); /* an encrypted laptop's disk, from the store */
        if (r < 0)
                return r;
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
        (void) ram_unlink(h, o.paths.ram);
        r = set_state(h, &o, SESSION_STOPPED);
        if (r < 0)
                return r;
        if (ret_forced)
                *ret_forced = forced;
        /* an encrypted laptop's disk leaves tmpfs for the store */
        return put_away(h, &o);
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

/* ---- screenshot ---- */

int session_screenshot(SessionHost *h, const char *name, const char *file) {
        _cleanup_(op_done) Op o = {};
        int r = op_begin(h, name, false, &o);
        if (r < 0)
                return r;
        r = require_running(&o);
        if (r < 0)
                return r;
        if (!o.config.vga)
                return err_set(-EINVAL, "session '%s' has no display (it was created without VGA)", name);
        /* QEMU writes the file itself, from its own working directory: give it
         * an absolute temp path beside FILE, renamed over FILE once complete */
        _cleanup_free_ char *copy = strdup(file), *dir = NULL;
        if (!copy)
                return -ENOMEM;
        char *slash = strrchr(copy, '/');
        const char *d = slash ? (slash == copy ? "/" : (*slash = 0, copy)) : ".";
        dir = realpath(d, NULL);
        if (!dir)
                return err_set(-errno, "cannot write the screenshot '%s': directory '%s': %s", file, d,
                               strerror(errno));
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = tmpfile_create(dir, &tmp);
        if (fd < 0)
                return err_set(fd, "cannot write the screenshot '%s' in '%s': %s", file, dir, strerror(-fd));
        _cleanup_(qmp_freep) Qmp *q = NULL;
        r = connect_op(&o, &q);
        if (r >= 0) {
                r = qmp_execute(q, "screendump", json_pack("{s:s, s:s}", "filename", tmp, "format", "png"),
                                VM_QMP_TIMEOUT_MS, NULL);
                if (r < 0)
                        r = err_set_if_none(r, "session '%s': screendump failed: %s", name, strerror(-r));
        }
        unsigned char magic[8] = { 0 };
        _cleanup_close_ int rfd = r >= 0 ? open(tmp, O_RDONLY | O_CLOEXEC) : -1; /* fd is write-only */
        if (r >= 0 && (rfd < 0 || loop_pread(rfd, magic, sizeof magic, 0) != (ssize_t) sizeof magic ||
                       memcmp(magic, "\x89PNG\r\n\x1a\n", 8)))
                r = err_set(-EIO, "session '%s': QEMU wrote no PNG image (is its QEMU built with PNG support?)",
                            name);
        if (r >= 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0))
                r = err_set(-errno, "cannot write the screenshot '%s': %s", tmp, strerror(errno));
        if (r >= 0 && rename(tmp, file) < 0)
                r = err_set(-errno, "cannot rename the screenshot to '%s': %s", file, strerror(errno));
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        (void) fsync_dir(dir);
        return 0;
}

/* ---- QEMU operations a crash may cut short ---- */

#define QEMU_OP_FILE "qemu-op"

int qemu_op_note(const Op *o, const char *op) {
        _cleanup_free_ char *p = path_join(o->paths.dir, QEMU_OP_FILE);
        uint64_t start = 0;
        (void) proc_pid_stat(getpid(), NULL, &start);
        json_t *j = json_pack("{s:s, s:b, s:I, s:I}", "op", op, "ran", o->row.state == SESSION_RUNNING, "pid",
                              (json_int_t) getpid(), "pid_start", (json_int_t) start);
        _cleanup_free_ char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!p || !text)
                return -ENOMEM;
        return write_file_replace(p, text, strlen(text), 0600, false);
}

void qemu_op_clear(const Op *o) {
        _cleanup_free_ char *p = path_join(o->paths.dir, QEMU_OP_FILE);
        if (p)
                (void) unlink(p);
}

int session_recover_qemu_op(SessionHost *h, const char *name, char *what, size_t size) {
        _cleanup_paths_ Paths paths = {};
        int r = paths_for(h, name, &paths);
        if (r < 0)
                return r;
        _cleanup_free_ char *p = path_join(paths.dir, QEMU_OP_FILE), *text = NULL;
        if (!p)
                return -ENOMEM;
        size_t len;
        r = read_full_file(p, 4096, &text, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        _cleanup_(json_decrefp) json_t *j = json_loadb(text, len, 0, NULL);
        const char *op = json_string_value(json_object_get(j, "op"));
        bool ran = json_is_true(json_object_get(j, "ran"));
        json_int_t pid = json_integer_value(json_object_get(j, "pid"));
        json_int_t pid_start = json_integer_value(json_object_get(j, "pid_start"));
        uint64_t start;
        if (pid > 0 && pid <= INT32_MAX && proc_pid_stat((pid_t) pid, NULL, &start) >= 0 &&
            start == (uint64_t) pid_start)
                return 0; /* its writer still runs it */
        _cleanup_(op_done) Op o = {};
        r = op_begin(h, name, true, &o);
        if (r < 0)
                return r;
        snprintf(what, size, "nothing was left to do");
        if (o.pid > 0 && op && !strcmp(op, "pause") && ran) {
                _cleanup_(qmp_freep) Qmp *q = NULL;
                _cleanup_free_ char *status = NULL;
                r = connect_op(&o, &q);
                if (r >= 0)
                        r = qmp_query_status(q, &status);
                if (r >= 0 && strcmp(status, "running")) {
                        r = qmp_cont(q);
                        if (r >= 0)
                                r = set_state(h, &o, SESSION_RUNNING);
                        snprintf(what, size, "a checkpoint cut short left the guest paused (%s): it runs again",
                                 status);
                }
        } else if (o.pid > 0 && op && !strcmp(op, "launch")) {
                _cleanup_(qmp_freep) Qmp *q = NULL;
                (void) connect_op(&o, &q);
                err_clear();
                r = vm_kill(q, o.pid);
                if (r >= 0) {
                        o.pid = 0;
                        remove_runtime(&o.paths);
                        (void) unlink(o.paths.devstate);
                        r = set_state(h, &o, SESSION_CRASHED);
                }
                snprintf(what, size, "a restore cut short left QEMU half-started: ended, to be restored again");
        }
        if (r < 0)
                return r;
        qemu_op_clear(&o);
        return 1;
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
        /* the user's profile: what this session holds goes into the store, not away with
         * it (after a crash too: ext4's journal mends it, the last profile stays its parent) */
        if (o.paths.dir && !strcmp(o.row.owner, SESSION_OWNER_LOCAL)) {
                r = profile_checkin(h, &o, NULL);
                if (r < 0)
                        return err_wrap(r, "session '%s' was not removed", name);
        }
        char prefix[REF_NAME_MAX_LEN + 2];
        int n = snprintf(prefix, sizeof prefix, "sessions/%s/%s/", o.row.user, name);
        if (n < 0 || (size_t) n >= sizeof prefix)
                return -EINVAL;
        r = delete_refs(h->store, prefix);
        if (r < 0)
                return err_set_if_none(r, "cannot remove the refs of session '%s': %s", name, strerror(-r));
        remove_runtime(&o.paths);
        (void) ram_unlink(h, o.paths.ram);
        staged_clear(h, name);
        if (o.paths.secret_dir)
                (void) rm_rf(o.paths.secret_dir);
        r = rm_rf(o.paths.dir);
        if (r < 0 && r != -ENOENT)
                return err_set(r, "cannot remove '%s': %s", o.paths.dir, strerror(-r));
        return session_db_delete(h->catalog, name);
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
