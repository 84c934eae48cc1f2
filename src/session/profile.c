/* SPDX-License-Identifier: MIT */
#include "session-internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"

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
