/* SPDX-License-Identifier: MIT */
#include "session-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/spawn.h"
#include "../crypto/home-keys.h"
#include "../guest/image.h"
#include "../store/blob.h"

/* ---- paths ---- */

void paths_done(Paths *p) {
        free(p->dir);
        free(p->overlay);
        free(p->serial);
        free(p->qmp);
        free(p->vnc);
        free(p->agent);
        free(p->pidfile);
        free(p->devstate);
        free(p->ram);
        free(p->ram_snap);
        free(p->overlay_snap);
        free(p->ram_fast);
        free(p->overlay_fast);
        free(p->pidfile_warm);
        free(p->profile);
        free(p->profile_fast);
        free(p->secret_dir);
        free(p->xfer);
        *p = (Paths) {};
}

int paths_for(SessionHost *h, const char *name, Paths *ret) {
        Paths p = {};
        bool ok = asprintf(&p.dir, "%s/sessions/%s", h->home, name) >= 0;
        /* an encrypted home keeps what is plain of a session on tmpfs */
        if (ok && h->encrypted)
                ok = asprintf(&p.secret_dir, "%s/%s.files", h->ram_dir, name) >= 0;
        const char *sd = p.secret_dir ? p.secret_dir : p.dir;
        ok = ok && asprintf(&p.overlay, "%s/overlay.qcow2", sd) >= 0 &&
             asprintf(&p.serial, "%s/serial.log", sd) >= 0 && asprintf(&p.qmp, "%s/qmp.sock", p.dir) >= 0 &&
             asprintf(&p.vnc, "%s/vnc.sock", p.dir) >= 0 &&
             asprintf(&p.agent, "%s/agent.sock", p.dir) >= 0 && asprintf(&p.pidfile, "%s/qemu.pid", p.dir) >= 0 &&
             asprintf(&p.devstate, "%s/devstate", sd) >= 0 &&
             asprintf(&p.ram, "%s/%s.ram", h->ram_dir, name) >= 0 &&
             asprintf(&p.ram_snap, "%s/%s.ram.snap", h->ram_dir, name) >= 0 &&
             asprintf(&p.overlay_snap, "%s/overlay.snap", sd) >= 0 &&
             asprintf(&p.ram_fast, "%s/ram.fast", sd) >= 0 &&
             asprintf(&p.overlay_fast, "%s/overlay.fast", sd) >= 0 &&
             asprintf(&p.pidfile_warm, "%s/warm/%s/qemu.pid", h->home, name) >= 0 &&
             asprintf(&p.profile, "%s/profile.img", sd) >= 0 && asprintf(&p.profile_fast, "%s/profile.fast", sd) >= 0 &&
             asprintf(&p.xfer, "%s/xfer.raw", p.dir) >= 0;
        if (!ok) {
                paths_done(&p);
                return -ENOMEM;
        }
        if (p.secret_dir) {
                int r = check_on_tmpfs(h->ram_dir, "the RAM directory");
                if (r >= 0)
                        r = mkdir_p(p.secret_dir, 0700);
                if (r < 0) {
                        r = err_set_if_none(r, "cannot create '%s': %s", p.secret_dir, strerror(-r));
                        paths_done(&p);
                        return r;
                }
        }
        *ret = p;
        return 0;
}

char *master_path(SessionHost *h, const char *image_hex) {
        char *s;
        return asprintf(&s, "%s/masters/%s.raw", h->home, image_hex) < 0 ? NULL : s;
}

char *boot_path(SessionHost *h, const char *id_hex) {
        char *s;
        return asprintf(&s, "%s/boot/%s", h->home, id_hex) < 0 ? NULL : s;
}

/* ---- small file helpers ---- */

int import_file(Store *s, const char *path, RoamId *ret_id, BlobStats *ret_stats) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return err_set(-errno, "cannot open '%s': %s", path, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        BlobOptions o = { .page_index = true }; /* a kernel's pages are in its guest's RAM */
        BlobStats bs;
        int r = blob_import_fd(s, fd, (uint64_t) st.st_size, &o, ret_id, &bs);
        if (r < 0)
                return err_set_if_none(r, "cannot import '%s' into the store: %s", path, strerror(-r));
        if (ret_stats)
                *ret_stats = bs;
        return 0;
}

int export_to(Store *s, const RoamId *id, const char *path, mode_t mode) {
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

int materialize(SessionHost *h, const RoamId *id, const char *path) {
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

const char *master_format(const char *path) {
        char head[4] = { 0 };
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && loop_pread(fd, head, sizeof head, 0) == (ssize_t) sizeof head && !memcmp(head, "QFI\xfb", 4))
                return "qcow2";
        return "raw";
}

int master_materialize(SessionHost *h, const RoamId *id, const char *path) {
        RoamId cur = *id;
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (int depth = 0; depth <= IMAGE_LAYER_DEPTH_MAX; depth++) {
                char hex[ID_HEX_SIZE], top[ID_HEX_SIZE];
                if (depth > 0 && access(p, F_OK) < 0) {
                        int k = need_store(h);
                        if (k < 0)
                                return k;
                        k = store_object_has(h->store, &cur);
                        if (k == 0)
                                return err_set(-ENOENT,
                                               "the layer %.12s sits on image disk %.12s, which this host lacks "
                                               "(pull or hoard the image the layer was made on)",
                                               id_to_hex(id, top), id_to_hex(&cur, hex));
                }
                int r = materialize(h, &cur, p);
                if (r < 0)
                        return r;
                uint8_t head[IMAGE_QCOW2_HEAD];
                _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return err_set(-errno, "cannot open master '%s': %s", p, strerror(errno));
                ssize_t n = loop_pread(fd, head, sizeof head, 0);
                if (n < 0)
                        return err_set((int) n, "cannot read master '%s': %s", p, strerror((int) -n));
                char name[IMAGE_BACKING_MAX + 1], why[256];
                r = image_qcow2_backing(head, (size_t) n, name, sizeof name, why, sizeof why);
                if (r < 0)
                        return err_set(r, "master '%s' is damaged: %s (remove it: it is exported again)", p, why);
                if (r == 0)
                        return 0; /* raw: the bottom of the chain */
                if (!name[0] || image_layer_backing_id(name, &cur) < 0)
                        return err_set(-EBADMSG, "master '%s' is a qcow2 whose backing file '%s' is not a master "
                                                 "(a layer's is '<id>.raw')",
                                       p, name);
                free(p);
                p = master_path(h, id_to_hex(&cur, hex));
                if (!p)
                        return -ENOMEM;
        }
        char top[ID_HEX_SIZE];
        return err_set(-ELOOP, "the layers under image disk %.12s nest deeper than %d", id_to_hex(id, top),
                       IMAGE_LAYER_DEPTH_MAX);
}

int session_master_file(SessionHost *h, const RoamId *disk, char **ret_path) {
        char hex[ID_HEX_SIZE];
        _cleanup_free_ char *path = master_path(h, id_to_hex(disk, hex));
        if (!path)
                return -ENOMEM;
        int r = master_materialize(h, disk, path);
        if (r < 0)
                return r;
        *ret_path = TAKE_PTR(path);
        return 0;
}

int session_master_chain(SessionHost *h, const RoamId *disk, char ***ret) {
        int r = need_store(h);
        if (r < 0)
                return r;
        char **v = calloc(IMAGE_LAYER_DEPTH_MAX + 2, sizeof *v);
        if (!v)
                return -ENOMEM;
        RoamId cur = *disk;
        size_t n = 0;
        for (;;) {
                char hex[ID_HEX_SIZE];
                _cleanup_free_ char *p = master_path(h, id_to_hex(&cur, hex));
                if (!p || !(v[n++] = strdup(hex))) {
                        r = -ENOMEM;
                        break;
                }
                r = master_materialize(h, &cur, p);
                if (r < 0)
                        break;
                uint8_t head[IMAGE_QCOW2_HEAD];
                char name[IMAGE_BACKING_MAX + 1], why[256];
                _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
                ssize_t k = fd < 0 ? -errno : loop_pread(fd, head, sizeof head, 0);
                if (k < 0) {
                        r = err_set((int) k, "cannot read master '%s': %s", p, strerror((int) -k));
                        break;
                }
                r = image_qcow2_backing(head, (size_t) k, name, sizeof name, why, sizeof why);
                if (r <= 0 || !name[0]) {
                        if (r < 0)
                                r = err_set(r, "master '%s' is damaged: %s", p, why);
                        break;
                }
                if (n > IMAGE_LAYER_DEPTH_MAX || image_layer_backing_id(name, &cur) < 0) {
                        r = err_set(-EBADMSG, "master '%s' has a backing file that is not a master", p);
                        break;
                }
        }
        if (r < 0) {
                strv_free(v);
                return r;
        }
        *ret = v;
        return 0;
}

char *session_xfer_path(SessionHost *h, const char *name) {
        char *s;
        return asprintf(&s, "%s/sessions/%s/xfer.raw", h->home, name) < 0 ? NULL : s;
}

int run_tool_hint(char **argv, const char *what, const char *hint) {
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

int overlay_create(const char *master, const char *overlay) {
        char *argv[] = { (char *) vm_qemu_img_binary(), "create", "-q", "-f", "qcow2", "-F", (char *) master_format(master), "-b",
                         (char *) master, (char *) overlay, NULL };
        return run_tool(argv, "creating the overlay");
}

int overlay_rebase(const char *master, const char *overlay) {
        char *argv[] = { (char *) vm_qemu_img_binary(), "rebase", "-u", "-F", (char *) master_format(master), "-b", (char *) master,
                         (char *) overlay, NULL };
        return run_tool(argv, "rebasing the overlay");
}

int overlay_reset(const char *master, const char *overlay) {
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

void remove_runtime(const Paths *p) {
        (void) unlink(p->qmp);
        (void) unlink(p->vnc);
        (void) unlink(p->pidfile);
        (void) unlink(p->ram_snap);
        (void) unlink(p->overlay_snap);
}
