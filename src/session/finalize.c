/* SPDX-License-Identifier: MIT */
#include "session-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
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
 * user's profile disk attached (checked out: o holds it), roam.logoff=1. */
static int finalize_config(SessionHost *h, Op *o, VmConfig *fc) {
        const char *name = o->row.name;
        int r = vm_config_copy(&o->config, fc);
        if (r < 0)
                return r;
        free(fc->append);
        fc->append = NULL;
        r = session_logoff_append(o->config.append, o->row.user, &fc->append);
        if (r < 0)
                return err_wrap(r, "cannot finalize session '%s'", name);
        free(fc->profile_disk);
        fc->profile_disk = NULL;
        fc->profile = true;
        r = session_check_ram(h->ram_dir, fc->ram_mib);
        if (r < 0)
                return err_wrap(r, "cannot finalize session '%s'", name);
        r = profile_checkout(h, o);
        if (r < 0)
                return err_wrap(r, "cannot finalize session '%s'", name);
        return 0;
}

#define FINALIZE_AGENT_POLL_MS 2000
#define FINALIZE_LOGOFF_S 120u
#define FINALIZE_LOGOFF_PROGRAM "/usr/local/sbin/roam-logoff"

/* A guest with an agent is logged off through it: once the agent answers,
 * roam-logoff (the user's session ends cleanly, the profile disk is
 * unmounted), then guest-shutdown. Returns the wait for the power-off
 * (as vm_wait_poweroff()); the log-off's outcome goes to *ret_logoff (0, or
 * -EIO/-ETIMEDOUT with a detail) and res->logoff. */
static int finalize_via_agent(Op *o, Qmp *q, uint64_t deadline, SessionFinalizeResult *res, int *ret_logoff,
                              char **ret_reason) {
        const char *name = o->row.name;
        int r;
        /* the agent starts late in a boot: ask until it answers (each try bounded) */
        for (;;) {
                uint64_t now = now_ns();
                if (now >= deadline) {
                        *ret_logoff = err_set(-ETIMEDOUT, "session '%s': the guest agent did not answer during its "
                                                          "log-off boot",
                                              name);
                        return -ETIMEDOUT;
                }
                int left = (int) MIN((deadline - now) / 1000000, (uint64_t) FINALIZE_AGENT_POLL_MS);
                r = guest_agent_ping(o->paths.agent, left > 0 ? left : 1, NULL);
                if (r >= 0)
                        break;
                _cleanup_free_ char *st = NULL;
                if (vm_alive(o->paths.pidfile, NULL, NULL) <= 0 ||
                    (qmp_query_status(q, &st) >= 0 && !strcmp(st, "shutdown")))
                        return vm_wait_poweroff(q, o->pid, 1000, ret_reason); /* it ended by itself */
                err_clear();
                poll(NULL, 0, 500);
        }
        _cleanup_(qmp_freep) Qmp *ga = NULL;
        GuestExecResult ex = {};
        r = guest_agent_open(o->paths.agent, GUEST_AGENT_CONNECT_MS, &ga);
        if (r >= 0) {
                char *argv[] = { (char *) FINALIZE_LOGOFF_PROGRAM, NULL };
                GuestExec e = { .argv = argv, .timeout_s = FINALIZE_LOGOFF_S };
                r = guest_exec(ga, &e, &ex);
        }
        if (r >= 0) {
                char *out = ex.out ? ex.out : (char *) "";
                out[strcspn(out, "\n")] = 0;
                snprintf(res->logoff, sizeof res->logoff, "roam-logoff: %s (exit %d)", *out ? out : "no output",
                         ex.exit_code);
                if (ex.exit_code != 0)
                        r = err_set(-EIO, "session '%s': the guest's log-off failed ('%s')", name, res->logoff);
        } else
                r = err_wrap(r, "session '%s': the log-off through the guest agent failed", name);
        guest_exec_result_done(&ex);
        *ret_logoff = r;
        if (r >= 0 && ga)
                r = guest_shutdown(ga);
        if (r < 0) {
                /* the user's session may be half ended: power off all the same, keep the disks */
                (void) qmp_system_powerdown(q);
        }
        err_clear();
        uint64_t now = now_ns();
        int left = now < deadline ? (int) ((deadline - now) / 1000000) : 1000;
        return vm_wait_poweroff(q, o->pid, left, ret_reason);
}

/* Boots o with fc; the guest runs its log-off hook and powers itself off.
 * QEMU ends either way and the session is stopped; *ret_wait is how the wait
 * for the power-off ended, *ret_reason (caller frees) why QEMU stopped,
 * *ret_log_from where this boot's console output starts. */
static int finalize_boot(SessionHost *h, Op *o, const VmConfig *fc, int timeout_s, SessionFinalizeResult *res,
                         int *ret_wait, char **ret_reason, uint64_t *ret_log_from, int *ret_logoff) {
        const char *name = o->row.name;
        remove_runtime(&o->paths);
        (void) ram_unlink(h, o->paths.ram); /* a cold boot starts with empty RAM */
        *ret_log_from = file_size(o->paths.serial);
        *ret_logoff = 0;
        _cleanup_(qmp_freep) Qmp *q = NULL;
        uint64_t t1 = now_ns();
        int r = launch_with(h, o, fc, false, &q);
        if (r < 0)
                return err_wrap(r, "cannot finalize session '%s'", name);
        r = set_state(h, o, SESSION_RUNNING);
        failpoint("finalize:after-boot");
        if (r >= 0 && fc->agent)
                *ret_wait = finalize_via_agent(o, q, t1 + (uint64_t) timeout_s * 1000000000ull, res, ret_logoff,
                                               ret_reason);
        else
                *ret_wait = r >= 0 ? vm_wait_poweroff(q, o->pid, timeout_s * 1000, ret_reason) : r;
        res->boot_ns = now_ns() - t1;
        char saved[512];
        snprintf(saved, sizeof saved, "%s", *ret_logoff < 0 ? err_message(*ret_logoff) : "");
        err_clear();
        int k = vm_kill(q, o->pid);
        qmp_free(TAKE_PTR(q));
        if (k < 0)
                return err_set(k, "session '%s': qemu (pid %d) does not exit", name, (int) o->pid);
        o->pid = 0;
        remove_runtime(&o->paths);
        (void) ram_unlink(h, o->paths.ram);
        r = set_state(h, o, SESSION_STOPPED);
        if (r >= 0 && *ret_logoff < 0)
                *ret_logoff = err_set(*ret_logoff, "%s", saved);
        return r;
}

/* The log-off line of the boot into res, and whether the boot did its job
 * (w and reason from finalize_boot()). */
static int finalize_outcome(const Op *o, uint64_t log_from, int w, const char *reason, int timeout_s,
                            int logoff, SessionFinalizeResult *res) {
        const char *name = o->row.name;
        _cleanup_free_ char *log = NULL;
        size_t log_len = 0;
        if (!o->config.agent && read_log_since(o->paths.serial, log_from, &log, &log_len) >= 0)
                (void) session_logoff_line(log, log_len, res->logoff, sizeof res->logoff);
        if (logoff < 0) {
                char why[768];
                snprintf(why, sizeof why, "%s", err_message(logoff));
                return err_set(logoff, "%s; its disks were kept (see 'roam session log %s')", why, name);
        }
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
        _cleanup_(vm_config_donep) VmConfig fc = {};
        r = finalize_config(h, &o, &fc);
        if (r < 0)
                return r;
        int w = 0, logoff = 0;
        _cleanup_free_ char *reason = NULL;
        uint64_t log_from = 0;
        r = finalize_boot(h, &o, &fc, timeout_s, &res, &w, &reason, &log_from, &logoff);
        if (r < 0)
                return r;
        r = finalize_outcome(&o, log_from, w, reason, timeout_s, logoff, &res);
        if (r < 0)
                return r;
        failpoint("finalize:before-policy");
        /* the user's files first: the profile into the store, then the policy */
        r = profile_checkin(h, &o, &res.profile);
        if (r < 0)
                return r;
        res.profile_saved = true;
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
