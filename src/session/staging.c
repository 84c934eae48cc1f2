/* SPDX-License-Identifier: MIT */
#include "session-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../store/blob.h"
#include "../store/manifest.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

/* ---- staged RAM: a checkpoint's RAM file written ahead of a restore ---- */

/* ram_dir/NAME.staged.HEX holds the RAM blob of index HEX: written by
 * session_stage_ram() while the session runs elsewhere, taken (renamed) by
 * the next restore of NAME here, which then writes only the chunks that
 * differ. The index id travels in the name, so a file and what it holds never
 * disagree; a half-written one is only ever under NAME.staging. */

#define STAGED_INFIX ".staged."

int staged_find(SessionHost *h, const char *name, char **ret_path, RoamId *ret_id) {
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

int session_staged_view(SessionHost *h, const char *name, SessionStagedView *ret) {
        *ret = (SessionStagedView){ 0 };
        _cleanup_free_ char *path = NULL;
        RoamId id;
        int r = staged_find(h, name, &path, &id);
        if (r <= 0)
                return r < 0 ? r : -ENOENT;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        if (st.st_size <= 0)
                return -ENOENT;
        void *p = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                return -errno;
        *ret = (SessionStagedView){ .id = id, .addr = p, .len = (size_t) st.st_size };
        return 0;
}

void session_staged_view_done(SessionStagedView *v) {
        if (v->addr)
                (void) munmap(v->addr, v->len);
        *v = (SessionStagedView){ 0 };
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

void staged_clear(SessionHost *h, const char *name) {
        session_warm_stop(h, name);
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

int patch_file(Store *s, const RoamId *from, const RoamId *to, const char *path, BlobStats *st) {
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

/* The RAM of checkpoint, a checkpoint (or pre-copy) of session name that
 * does not run here: 1 with its blob id, 0 if it is powered off (no RAM).
 * Its master image and boot files are materialized on the way. */
static int stage_find_ram(SessionHost *h, const char *name, const RoamId *checkpoint, RoamId *ret_ram) {
        _cleanup_free_ void *data = NULL;
        size_t len;
        int r = store_object_get(h->store, checkpoint, STORE_OBJECT_MAX, &data, &len);
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
        /* the shared files a restore needs (the master, kernel, initrd): exported
         * now, not at the click (a desktop's master is a gigabyte to write) */
        static const char *const shared[] = { "image", "kernel", "initrd" };
        for (size_t i = 0; i < ELEMENTSOF(shared); i++) {
                RoamId id;
                char hex[ID_HEX_SIZE];
                if (!json_object_get(json_object_get(m, "objects"), shared[i]) || manifest_id(m, shared[i], &id) < 0)
                        continue;
                id_to_hex(&id, hex);
                _cleanup_free_ char *path = i == 0 ? master_path(h, hex) : boot_path(h, hex);
                if (!path)
                        return -ENOMEM;
                r = i == 0 ? master_materialize(h, &id, path) : materialize(h, &id, path);
                if (r < 0)
                        return err_wrap(r, "cannot stage the %s of session '%s'", shared[i], name);
        }
        err_clear();
        if (!json_object_get(json_object_get(m, "objects"), "ram"))
                return 0; /* powered off: no RAM */
        r = manifest_id(m, "ram", ret_ram);
        return r < 0 ? r : 1;
}

/* Stages the RAM of checkpoint (warm lock held): 1 with the staged file's
 * path, 0 when the checkpoint has no RAM. */
static int stage_locked(SessionHost *h, const char *name, const RoamId *checkpoint, SessionStageResult *ret,
                        char **ret_path) {
        RoamId ram;
        int r = stage_find_ram(h, name, checkpoint, &ram);
        if (r <= 0)
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
                *ret = res;
                *ret_path = TAKE_PTR(old);
                return 1;
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
        *ret = res;
        *ret_path = TAKE_PTR(final);
        return 1;
}

int session_stage_ram(SessionHost *h, const char *name, const RoamId *checkpoint, SessionStageResult *ret) {
        if (!name_is_valid(name))
                return err_set(-EINVAL, "session name '%s' is invalid", name);
        int r = need_store(h);
        if (r < 0)
                return r;
        int fd;
        r = warm_lock(h, name, &fd);
        if (r < 0)
                return r;
        SessionStageResult res = { 0 };
        _cleanup_free_ char *staged = NULL;
        r = stage_locked(h, name, checkpoint, &res, &staged);
        if (r > 0 && h->warm) {
                /* and the QEMU that will take it (if it cannot, the restore runs cold) */
                double t0 = now_s();
                int k = warm_prepare(h, name, checkpoint, staged, &res.warm_started);
                res.warm_seconds = now_s() - t0;
                res.warm = k >= 0;
                if (k < 0) {
                        snprintf(res.warm_error, sizeof res.warm_error, "%s", err_message(k));
                        err_clear();
                        warm_end(h, name);
                }
        } else if (r == 0)
                warm_end(h, name);
        close(fd);
        if (r < 0)
                return r;
        if (ret)
                *ret = res;
        return 0;
}

int write_ram(SessionHost *h, const char *name, const RoamId *ram, const char *path, bool *ret_staged) {
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
