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
        *p = (Paths) {};
}

int paths_for(SessionHost *h, const char *name, Paths *ret) {
        Paths p = {};
        bool ok = asprintf(&p.dir, "%s/sessions/%s", h->home, name) >= 0 &&
                  asprintf(&p.overlay, "%s/overlay.qcow2", p.dir) >= 0 &&
                  asprintf(&p.serial, "%s/serial.log", p.dir) >= 0 && asprintf(&p.qmp, "%s/qmp.sock", p.dir) >= 0 &&
                  asprintf(&p.vnc, "%s/vnc.sock", p.dir) >= 0 &&
                  asprintf(&p.agent, "%s/agent.sock", p.dir) >= 0 && asprintf(&p.pidfile, "%s/qemu.pid", p.dir) >= 0 &&
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
        char *argv[] = { (char *) vm_qemu_img_binary(), "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                         (char *) master, (char *) overlay, NULL };
        return run_tool(argv, "creating the overlay");
}

int overlay_rebase(const char *master, const char *overlay) {
        char *argv[] = { (char *) vm_qemu_img_binary(), "rebase", "-u", "-F", "raw", "-b", (char *) master,
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
