/* SPDX-License-Identifier: MIT */
#include "session-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../store/manifest.h"

/* ---- warm restores: the receiving QEMU started before the click ----
 *
 * When a session's RAM is staged here while it runs elsewhere (staging.c),
 * its QEMU is started too: the command line a restore would run, with
 * -incoming defer, on the staged RAM file and on an overlay exported from the
 * same pre-copy, its other files under HOME/warm/NAME/. It waits there; the
 * guest cannot run without device state. A later pre-copy patches both files
 * in place. The hand-over's restore then patches them to the final
 * checkpoint (only what changed), moves the files into the session's
 * directory by rename (QEMU keeps its open files and listening sockets),
 * loads the device state and continues: QEMU's start-up leaves the downtime.
 * QEMU re-reads the overlay when the incoming migration activates it, and
 * the RAM file is a shared mapping, so what it runs is exactly the
 * checkpoint.
 *
 *   HOME/warm/NAME/      overlay.qcow2 (profile.img: the user's profile disk,
 *                        when the session holds it) serial.log qmp.sock
 *                        vnc.sock agent.sock qemu.pid, and "from": a symlink
 *                        whose target is
 *                        "<checkpoint hex>.<inode>": the pre-copy whose overlay
 *                        and config the QEMU holds, and the inode of the staged
 *                        RAM file it maps
 *   HOME/warm/NAME.lock  held by staging, warm starts and takes
 *
 * Anything that does not match at the click (another config or image, a
 * QEMU gone, a RAM file replaced) ends the warm QEMU and the restore runs
 * cold, as before. */

#define WARM_FROM_MAX 128

static int warm_dir(SessionHost *h, const char *name, char **ret) {
        return asprintf(ret, "%s/warm/%s", h->home, name) < 0 ? -ENOMEM : 0;
}

/* The warm QEMU's files, in a Paths (dir: the warm directory; ram: unset),
 * on the same file systems as the session's (files.c): on an encrypted
 * laptop what is plain of the session (overlay, profile disk, serial log)
 * in secret_dir, ram_dir/NAME.warm on tmpfs. */
static int warm_paths(SessionHost *h, const char *name, Paths *ret) {
        Paths p = {};
        bool ok = warm_dir(h, name, &p.dir) >= 0 &&
                  (!h->encrypted || asprintf(&p.secret_dir, "%s/%s.warm", h->ram_dir, name) >= 0);
        const char *sd = p.secret_dir ? p.secret_dir : p.dir;
        ok = ok && asprintf(&p.overlay, "%s/overlay.qcow2", sd) >= 0 && asprintf(&p.serial, "%s/serial.log", sd) >= 0 &&
             asprintf(&p.qmp, "%s/qmp.sock", p.dir) >= 0 && asprintf(&p.vnc, "%s/vnc.sock", p.dir) >= 0 &&
             asprintf(&p.agent, "%s/agent.sock", p.dir) >= 0 && asprintf(&p.pidfile, "%s/qemu.pid", p.dir) >= 0 &&
             asprintf(&p.profile, "%s/profile.img", sd) >= 0;
        if (!ok) {
                paths_done(&p);
                return -ENOMEM;
        }
        *ret = p;
        return 0;
}

int warm_lock(SessionHost *h, const char *name, int *ret_fd) {
        _cleanup_free_ char *dir = path_join(h->home, "warm"), *path = NULL;
        if (!dir || asprintf(&path, "%s/%s.lock", dir, name) < 0)
                return -ENOMEM;
        int r = mkdir_p(dir, 0700);
        if (r < 0)
                return err_set(r, "cannot create '%s': %s", dir, strerror(-r));
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
                return err_set(-errno, "cannot open '%s': %s", path, strerror(errno));
        if (flock(fd, LOCK_EX) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

/* What "from" says: 1 with the checkpoint and inode, 0 if there is none or
 * it is malformed (then the warm QEMU is not trusted). */
static int from_read(const char *dir, RoamId *ret_ck, ino_t *ret_ino) {
        char path[PATH_MAX], target[WARM_FROM_MAX];
        snprintf(path, sizeof path, "%s/from", dir);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0 || (size_t) n >= sizeof target - 1)
                return 0;
        target[n] = 0;
        char *dot = strchr(target, '.');
        if (!dot || dot - target != ID_HEX_SIZE - 1)
                return 0;
        *dot = 0;
        uint64_t ino;
        if (id_from_hex(target, ret_ck) < 0 || parse_u64(dot + 1, &ino) < 0 || ino == 0)
                return 0;
        *ret_ino = (ino_t) ino;
        return 1;
}

/* Replaces "from" (a new symlink renamed over the old one). */
static int from_write(const char *dir, const RoamId *ck, ino_t ino) {
        char path[PATH_MAX], tmp[PATH_MAX], target[WARM_FROM_MAX], hex[ID_HEX_SIZE];
        snprintf(path, sizeof path, "%s/from", dir);
        snprintf(tmp, sizeof tmp, "%s/from.tmp", dir);
        snprintf(target, sizeof target, "%s.%llu", id_to_hex(ck, hex), (unsigned long long) ino);
        (void) unlink(tmp);
        if (symlink(target, tmp) < 0 || rename(tmp, path) < 0) {
                int r = -errno;
                (void) unlink(tmp);
                return r;
        }
        return 0;
}

/* Removes the warm files (both directories). */
static void warm_rm(const Paths *w) {
        (void) rm_rf(w->dir);
        if (w->secret_dir)
                (void) rm_rf(w->secret_dir);
}

void warm_end(SessionHost *h, const char *name) {
        _cleanup_paths_ Paths w = {};
        if (warm_paths(h, name, &w) < 0)
                return;
        pid_t pid;
        if (vm_alive(w.pidfile, NULL, &pid) > 0)
                (void) vm_kill(NULL, pid);
        warm_rm(&w);
}

void session_warm_stop(SessionHost *h, const char *name) {
        if (!name_is_valid(name))
                return;
        int fd;
        if (warm_lock(h, name, &fd) < 0) {
                err_clear();
                return;
        }
        warm_end(h, name);
        close(fd);
}

/* The checkpoint manifest id's config (as the catalog writes it) and image. */
static int manifest_config(Store *s, const RoamId *id, json_t **ret_m, char **ret_config) {
        _cleanup_free_ void *data = NULL;
        size_t len;
        int r = store_object_get(s, id, STORE_OBJECT_MAX, &data, &len);
        if (r < 0)
                return r;
        _cleanup_(json_decrefp) json_t *m = NULL;
        if (!manifest_is_manifest(data, len) || manifest_parse(data, len, &m) < 0)
                return err_set(-EBADMSG, "object is not a checkpoint manifest");
        _cleanup_(vm_config_donep) VmConfig c = {};
        r = vm_config_from_json(json_object_get(m, "config"), &c);
        if (r < 0)
                return r;
        r = config_to_text(&c, ret_config);
        if (r < 0)
                return r;
        *ret_m = TAKE_PTR(m);
        return 0;
}

static bool has_object(json_t *m, const char *role) {
        return json_object_get(json_object_get(m, "objects"), role) != NULL;
}

/* Do manifests a and b run on the same QEMU command line (config, image,
 * a profile disk or not)? */
static bool same_vm(json_t *a, const char *config_a, json_t *b, const char *config_b) {
        const char *ia = json_string_value(json_object_get(a, "image"));
        const char *ib = json_string_value(json_object_get(b, "image"));
        return ia && ib && !strcmp(ia, ib) && !strcmp(config_a, config_b) &&
               has_object(a, "profile") == has_object(b, "profile");
}

static int inode_of(const char *path, ino_t *ret) {
        struct stat st;
        if (stat(path, &st) < 0)
                return -errno;
        *ret = st.st_ino;
        return 0;
}

/* Patches the file at path, which holds object role of manifest from, into
 * role of manifest to. */
static int patch_role(Store *s, json_t *from, json_t *to, const char *role, const char *path) {
        RoamId a, b;
        int r = manifest_id(from, role, &a);
        if (r >= 0)
                r = manifest_id(to, role, &b);
        if (r < 0)
                return r;
        if (id_equal(&a, &b))
                return 0;
        return patch_file(s, &a, &b, path, NULL);
}

/* Patches the warm files w, which hold what manifest from has, into what
 * manifest to has: the overlay, and the profile disk (both or neither have
 * one: same_vm()). */
static int patch_files(Store *s, json_t *from, json_t *to, const Paths *w) {
        int r = patch_role(s, from, to, "overlay", w->overlay);
        if (r >= 0 && has_object(to, "profile"))
                r = patch_role(s, from, to, "profile", w->profile);
        return r;
}

/* Starts the warm QEMU of name for checkpoint m (id ck), whose RAM is staged
 * at ram (inode ino). Lock held, no warm QEMU. */
static int warm_launch(SessionHost *h, const char *name, const RoamId *ck, json_t *m, const char *ram, ino_t ino) {
        _cleanup_(op_done) Op o = { .lock_fd = -1 };
        int r = warm_paths(h, name, &o.paths);
        if (r < 0)
                return r;
        o.paths.ram = strdup(ram);
        o.row.name = strdup(name);
        const char *image = json_string_value(json_object_get(m, "image"));
        o.row.image_id = image ? strdup(image) : NULL;
        if (!o.paths.ram || !o.row.name || !o.row.image_id)
                return image ? -ENOMEM : -EBADMSG;
        r = vm_config_from_json(json_object_get(m, "config"), &o.config);
        if (r < 0)
                return r;
        RoamId ov, prof;
        bool has_profile = has_object(m, "profile");
        r = manifest_id(m, "overlay", &ov);
        if (r >= 0 && has_profile)
                r = manifest_id(m, "profile", &prof);
        if (r < 0)
                return r;
        if (o.config.profile && !has_profile)
                return err_set(-EINVAL, "session '%s' has no profile disk in its pre-copy", name);
        warm_rm(&o.paths);
        r = mkdir_p(o.paths.dir, 0700);
        if (r >= 0 && o.paths.secret_dir)
                r = mkdir_p(o.paths.secret_dir, 0700);
        if (r >= 0)
                r = export_to(h->store, &ov, o.paths.overlay, 0600);
        if (r >= 0 && has_profile)
                r = export_to(h->store, &prof, o.paths.profile, 0600);
        /* QEMU reopens its disks by name when the restore activates them, by
         * then under the session's directory: it gets names that follow the
         * files */
        _cleanup_close_ int fd = r >= 0 ? open(o.paths.overlay, O_RDWR | O_CLOEXEC) : -1;
        _cleanup_close_ int pfd = r >= 0 && has_profile ? open(o.paths.profile, O_RDWR | O_CLOEXEC) : -1;
        if (r >= 0 && (fd < 0 || (has_profile && pfd < 0)))
                r = -errno;
        o.overlay_fd = fd;
        o.profile_fd = pfd > 0 ? pfd : 0;
        _cleanup_(qmp_freep) Qmp *q = NULL;
        if (r >= 0)
                r = launch(h, &o, true, &q);
        if (r >= 0)
                r = from_write(o.paths.dir, ck, ino);
        if (r < 0) {
                if (o.pid > 0)
                        (void) vm_kill(q, o.pid);
                warm_rm(&o.paths);
                return err_set_if_none(r, "cannot start session '%s' ahead: %s", name, strerror(-r));
        }
        return 0;
}

int warm_prepare(SessionHost *h, const char *name, const RoamId *ck, const char *ram, bool *ret_started) {
        *ret_started = false;
        _cleanup_(json_decrefp) json_t *m = NULL;
        _cleanup_free_ char *config = NULL;
        int r = manifest_config(h->store, ck, &m, &config);
        if (r < 0)
                return r;
        ino_t ino = 0;
        r = inode_of(ram, &ino);
        if (r < 0)
                return r;
        _cleanup_paths_ Paths w = {};
        r = warm_paths(h, name, &w);
        if (r < 0)
                return r;
        /* the QEMU of an earlier pre-copy: patch its overlay when it still fits */
        RoamId ck0;
        ino_t ino0;
        if (from_read(w.dir, &ck0, &ino0) > 0 && ino0 == ino && vm_alive(w.pidfile, NULL, NULL) > 0) {
                _cleanup_(json_decrefp) json_t *m0 = NULL;
                _cleanup_free_ char *config0 = NULL;
                if (id_equal(&ck0, ck))
                        return 0;
                if (manifest_config(h->store, &ck0, &m0, &config0) >= 0 && same_vm(m0, config0, m, config) &&
                    patch_files(h->store, m0, m, &w) >= 0 && from_write(w.dir, ck, ino) >= 0)
                        return 0;
                err_clear();
        }
        warm_end(h, name);
        r = warm_launch(h, name, ck, m, ram, ino);
        if (r >= 0)
                *ret_started = true;
        return r;
}

/* Moves the warm QEMU's serial log to the session's, keeping what the
 * session's held (the warm QEMU has written nothing yet: its guest never
 * ran). */
static int take_serial(const char *warm, const char *serial) {
        _cleanup_close_ int in = open(serial, O_RDONLY | O_CLOEXEC);
        if (in >= 0) {
                /* (copy_file_range() refuses an O_APPEND target) */
                _cleanup_close_ int out = open(warm, O_WRONLY | O_CLOEXEC);
                if (out < 0 || lseek(out, 0, SEEK_END) < 0)
                        return -errno;
                for (;;) {
                        ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
                        if (n < 0)
                                return -errno;
                        if (n == 0)
                                break;
                }
        } else if (errno != ENOENT)
                return -errno;
        return rename(warm, serial) < 0 ? -errno : 0;
}

/* Renames the warm QEMU's files to the session's (the profile disk when it
 * has one). */
static int take_files(const Paths *w, const Paths *p, bool profile) {
        const char *const from[] = { w->overlay, w->qmp, w->pidfile, w->vnc, w->agent, w->profile };
        const char *const to[] = { p->overlay, p->qmp, p->pidfile, p->vnc, p->agent, p->profile };
        for (size_t i = 0; i < ELEMENTSOF(from); i++) {
                if (i == 5 && !profile)
                        break;
                /* the first three and a profile must be there; sockets only when configured */
                if (rename(from[i], to[i]) < 0 && (errno != ENOENT || i < 3 || i == 5))
                        return err_set(-errno, "cannot move '%s' to '%s': %s", from[i], to[i], strerror(errno));
        }
        if (profile)
                (void) unlink(p->profile_fast); /* its base is another file now */
        return take_serial(w->serial, p->serial);
}

int warm_take(SessionHost *h, Op *o, json_t *m, SessionRestoreResult *res, Qmp **ret_q) {
        const char *name = o->row.name;
        _cleanup_paths_ Paths w = {};
        int r = warm_paths(h, name, &w);
        if (r < 0)
                return r;
        RoamId ck0;
        ino_t ino0;
        if (from_read(w.dir, &ck0, &ino0) <= 0)
                return 1;
        /* does it fit? if not, it goes and the restore runs cold */
        pid_t pid;
        _cleanup_(json_decrefp) json_t *m0 = NULL;
        _cleanup_free_ char *config0 = NULL, *config = NULL;
        r = config_to_text(&o->config, &config);
        if (r < 0)
                return r;
        _cleanup_free_ char *staged = NULL;
        RoamId staged_id;
        ino_t ino = 0;
        if (vm_alive(w.pidfile, NULL, &pid) <= 0 || manifest_config(h->store, &ck0, &m0, &config0) < 0 ||
            !same_vm(m0, config0, m, config) || staged_find(h, name, &staged, &staged_id) <= 0 ||
            inode_of(staged, &ino) < 0 || ino != ino0) {
                err_clear();
                warm_end(h, name);
                return 1;
        }
        RoamId ram_id, dev_id;
        if ((r = manifest_id(m, "ram", &ram_id)) < 0 || (r = manifest_id(m, "devstate", &dev_id)) < 0)
                return r;
        bool profile = has_object(m, "profile");
        if (profile) {
                /* the user's profile comes with it: this session holds it now */
                r = profile_claim(h, o);
                if (r < 0)
                        return err_wrap(r, "cannot restore session '%s'", name);
        }
        remove_runtime(&o->paths);
        uint64_t t_ram = now_ns();
        r = write_ram(h, name, &ram_id, o->paths.ram_snap, &res->ram_staged);
        res->ram_ns = now_ns() - t_ram;
        if (r >= 0 && (inode_of(o->paths.ram_snap, &ino) < 0 || ino != ino0)) {
                /* written, but not into the file this QEMU maps: restore cold from it */
                warm_end(h, name);
                return 1;
        }
        if (r >= 0)
                r = patch_files(h->store, m0, m, &w);
        if (r >= 0)
                r = export_to(h->store, &dev_id, o->paths.devstate, 0600);
        if (r >= 0)
                ram_map_drop(h, o->paths.ram); /* a file about to be replaced */
        if (r >= 0 && rename(o->paths.ram_snap, o->paths.ram) < 0)
                r = -errno;
        if (r >= 0)
                r = take_files(&w, &o->paths, profile);
        Qmp *q = NULL;
        if (r >= 0) {
                VmPaths vp = { .qmp = o->paths.qmp };
                r = vm_connect(&vp, VM_QMP_TIMEOUT_MS, &q);
        }
        if (r < 0) {
                (void) vm_kill(NULL, pid);
                warm_rm(&w);
                remove_runtime(&o->paths);
                (void) unlink(o->paths.ram_snap);
                (void) unlink(o->paths.devstate);
                return err_set_if_none(r, "cannot restore session '%s' into its waiting QEMU: %s", name,
                                       strerror(-r));
        }
        warm_rm(&w);
        o->pid = pid;
        *ret_q = q;
        return 0;
}

void session_warm_sweep(SessionHost *h, bool all) {
        _cleanup_free_ char *dir = path_join(h->home, "warm");
        DIR *d = dir ? opendir(dir) : NULL;
        if (!d)
                return;
        struct dirent *e;
        while ((e = readdir(d))) {
                if (!name_is_valid(e->d_name) || e->d_type == DT_REG)
                        continue;
                int fd;
                if (warm_lock(h, e->d_name, &fd) < 0) {
                        err_clear();
                        continue;
                }
                _cleanup_free_ char *staged = NULL;
                RoamId id;
                _cleanup_(session_row_donep) SessionRow row = {};
                bool here = session_db_get(h->catalog, e->d_name, &row) >= 0 &&
                            !strcmp(row.owner, SESSION_OWNER_LOCAL) &&
                            (row.state == SESSION_RUNNING || row.state == SESSION_PAUSED);
                if (all || here || staged_find(h, e->d_name, &staged, &id) <= 0)
                        warm_end(h, e->d_name);
                err_clear();
                close(fd);
        }
        closedir(d);
}
