/* SPDX-License-Identifier: MIT */
#include "session-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/failpoint.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"

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

/* Only a powered-off session that did not crash is finalized. */
static int finalize_check(const Op *o) {
        const char *name = o->row.name;
        if (o->pid > 0)
                return err_set(-EBUSY,
                               "session '%s' is %s (stop it first with 'roam session stop %s'; finalize boots a "
                               "powered-off session)",
                               name, session_state_to_string(o->row.state), name);
        if (o->row.state == SESSION_CRASHED)
                return err_set(-EINVAL,
                               "session '%s' crashed and its disk may be torn (start it and stop it cleanly with "
                               "'roam session stop %s' before finalizing it)",
                               name, name);
        return 0;
}

/* The log-off boot's config fc (the caller's to free, also on failure): the
 * user's profile disk (*ret_profile, caller frees), roam.logoff=1. */
static int finalize_config(SessionHost *h, Op *o, VmConfig *fc, char **ret_profile) {
        const char *name = o->row.name;
        _cleanup_free_ char *profile = NULL;
        int r = session_profile_disk(h, o->row.user, &profile);
        if (r < 0)
                return err_wrap(r, "cannot finalize session '%s'", name);
        r = vm_config_copy(&o->config, fc);
        if (r < 0)
                return r;
        free(fc->append);
        fc->append = NULL;
        r = session_logoff_append(o->config.append, o->row.user, &fc->append);
        if (r < 0)
                return err_wrap(r, "cannot finalize session '%s'", name);
        free(fc->profile_disk);
        fc->profile_disk = strdup(profile);
        if (!fc->profile_disk)
                return -ENOMEM;
        r = session_check_ram(h->ram_dir, fc->ram_mib);
        if (r < 0)
                return err_wrap(r, "cannot finalize session '%s'", name);
        *ret_profile = TAKE_PTR(profile);
        return 0;
}

/* One guest at a time writes a user's profile disk: *ret_fd holds its lock. */
static int finalize_lock_profile(const char *profile, int *ret_fd) {
        _cleanup_close_ int pfd = open(profile, O_RDWR | O_CLOEXEC);
        if (pfd < 0)
                return err_set(-errno, "cannot open the profile disk '%s': %s", profile, strerror(errno));
        while (flock(pfd, LOCK_EX) < 0)
                if (errno != EINTR)
                        return err_set(-errno, "cannot lock the profile disk '%s': %s", profile,
                                       strerror(errno));
        *ret_fd = TAKE_FD(pfd);
        return 0;
}

/* Boots o with fc; the guest runs its log-off hook and powers itself off.
 * QEMU ends either way and the session is stopped; *ret_wait is how the wait
 * for the power-off ended, *ret_reason (caller frees) why QEMU stopped,
 * *ret_log_from where this boot's console output starts. */
static int finalize_boot(SessionHost *h, Op *o, const VmConfig *fc, int timeout_s, SessionFinalizeResult *res,
                         int *ret_wait, char **ret_reason, uint64_t *ret_log_from) {
        const char *name = o->row.name;
        remove_runtime(&o->paths);
        (void) unlink(o->paths.ram); /* a cold boot starts with empty RAM */
        *ret_log_from = file_size(o->paths.serial);
        _cleanup_(qmp_freep) Qmp *q = NULL;
        uint64_t t1 = now_ns();
        int r = launch_with(h, o, fc, false, &q);
        if (r < 0)
                return err_wrap(r, "cannot finalize session '%s'", name);
        r = set_state(h, o, SESSION_RUNNING);
        failpoint("finalize:after-boot");
        *ret_wait = r >= 0 ? vm_wait_poweroff(q, o->pid, timeout_s * 1000, ret_reason) : r;
        res->boot_ns = now_ns() - t1;
        err_clear();
        int k = vm_kill(q, o->pid);
        qmp_free(TAKE_PTR(q));
        if (k < 0)
                return err_set(k, "session '%s': qemu (pid %d) does not exit", name, (int) o->pid);
        o->pid = 0;
        remove_runtime(&o->paths);
        (void) unlink(o->paths.ram);
        return set_state(h, o, SESSION_STOPPED);
}

/* The log-off line of the boot into res, and whether the boot did its job
 * (w and reason from finalize_boot()). */
static int finalize_outcome(const Op *o, uint64_t log_from, int w, const char *reason, int timeout_s,
                            SessionFinalizeResult *res) {
        const char *name = o->row.name;
        _cleanup_free_ char *log = NULL;
        size_t log_len = 0;
        if (read_log_since(o->paths.serial, log_from, &log, &log_len) >= 0)
                (void) session_logoff_line(log, log_len, res->logoff, sizeof res->logoff);
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
        if (!strncmp(res->logoff, "roam-guest: logoff failed", 25))
                return err_set(-EIO, "session '%s': the guest's log-off hook failed ('%s'); its disk was kept", name,
                               res->logoff);
        return 0;
}

/* The policy: a pooled session's overlay is reset to the master. */
static int finalize_apply_policy(SessionHost *h, const Op *o, SessionFinalizeResult *res) {
        if (o->config.policy != VM_POLICY_POOLED)
                return 0;
        uint64_t t2 = now_ns();
        _cleanup_free_ char *master = master_path(h, o->row.image_id);
        if (!master)
                return -ENOMEM;
        int r = overlay_reset(master, o->paths.overlay);
        if (r < 0)
                return err_wrap(r, "session '%s': resetting its disk to the master failed (the old disk "
                                   "is kept)",
                                o->row.name);
        res->reset = true;
        res->reset_ns = now_ns() - t2;
        return 0;
}

int session_finalize_timeout(SessionHost *h, const char *name, int timeout_s, SessionFinalizeResult *ret) {
        if (timeout_s <= 0)
                timeout_s = SESSION_FINALIZE_TIMEOUT_S_DEFAULT;
        _cleanup_(op_done) Op o = {};
        int r = op_begin(h, name, false, &o);
        if (r >= 0)
                r = finalize_check(&o);
        if (r < 0)
                return r;
        uint64_t t0 = now_ns();
        SessionFinalizeResult res = { .policy = o.config.policy };
        _cleanup_free_ char *profile = NULL;
        _cleanup_(vm_config_donep) VmConfig fc = {};
        r = finalize_config(h, &o, &fc, &profile);
        if (r < 0)
                return r;
        _cleanup_close_ int pfd = -1;
        r = finalize_lock_profile(profile, &pfd);
        if (r < 0)
                return r;
        int w = 0;
        _cleanup_free_ char *reason = NULL;
        uint64_t log_from = 0;
        r = finalize_boot(h, &o, &fc, timeout_s, &res, &w, &reason, &log_from);
        if (r < 0)
                return r;
        (void) flock(pfd, LOCK_UN);
        r = finalize_outcome(&o, log_from, w, reason, timeout_s, &res);
        if (r < 0)
                return r;
        failpoint("finalize:before-policy");
        r = finalize_apply_policy(h, &o, &res);
        if (r < 0)
                return r;
        res.total_ns = now_ns() - t0;
        if (ret)
                *ret = res;
        return 0;
}

int session_finalize(SessionHost *h, const char *name, SessionFinalizeResult *ret) {
        return session_finalize_timeout(h, name, SESSION_FINALIZE_TIMEOUT_S_DEFAULT, ret);
}
