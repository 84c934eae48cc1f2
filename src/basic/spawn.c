/* SPDX-License-Identifier: MIT */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "interrupt.h"
#include "macro.h"

typedef struct Buf {
        char *p;
        size_t n, max;
} Buf;

static void buf_add(Buf *b, const char *data, size_t n) {
        if (!b->p)
                b->p = calloc(1, b->max + 1);
        if (!b->p)
                return;
        size_t take = MIN(n, b->max - b->n);
        memcpy(b->p + b->n, data, take);
        b->n += take;
        b->p[b->n] = 0;
}

int spawn_capture(char *const argv[], size_t max, char **ret_stdout, char **ret_stderr) {
        return spawn_capture_keep(argv, max, ret_stdout, ret_stderr, NULL, 0);
}

int spawn_capture_keep(char *const argv[], size_t max, char **ret_stdout, char **ret_stderr, const int *keep,
                       size_t n_keep) {
        int out[2], err[2], ex[2];
        if (pipe2(out, O_CLOEXEC) < 0)
                return -errno;
        if (pipe2(err, O_CLOEXEC) < 0) {
                close(out[0]);
                close(out[1]);
                return -errno;
        }
        /* exec failure is reported through a CLOEXEC pipe */
        if (pipe2(ex, O_CLOEXEC) < 0) {
                close(out[0]), close(out[1]), close(err[0]), close(err[1]);
                return -errno;
        }
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(out[0]), close(out[1]), close(err[0]), close(err[1]), close(ex[0]), close(ex[1]);
                return r;
        }
        if (pid == 0) {
                /* a group of its own (a terminal's Ctrl-C goes to roam, which
                 * stops the group), and it dies with roam, even by SIGKILL */
                (void) setpgid(0, 0);
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(127);
                int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (devnull >= 0)
                        dup2(devnull, 0);
                for (size_t i = 0; i < n_keep; i++)
                        if (fcntl(keep[i], F_SETFD, 0) < 0)
                                _exit(127);
                dup2(out[1], 1);
                dup2(err[1], 2);
                execvp(argv[0], argv);
                int e = errno;
                (void) !write(ex[1], &e, sizeof e);
                _exit(127);
        }
        close(out[1]), close(err[1]), close(ex[1]);
        (void) setpgid(pid, pid); /* either of the two calls wins the race with exec */
        (void) interrupt_child_add(pid);
        Buf bo = { .max = max }, be = { .max = max };
        struct pollfd p[2] = { { .fd = out[0], .events = POLLIN }, { .fd = err[0], .events = POLLIN } };
        int open_fds = 2;
        while (open_fds > 0) {
                if (interrupt_requested())
                        (void) kill(-pid, SIGTERM);
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                for (int i = 0; i < 2; i++) {
                        if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        char tmp[4096];
                        ssize_t n = read(p[i].fd, tmp, sizeof tmp);
                        if (n <= 0) {
                                if (n < 0 && errno == EINTR)
                                        continue;
                                close(p[i].fd);
                                p[i].fd = -1;
                                open_fds--;
                                continue;
                        }
                        buf_add(i == 0 ? &bo : &be, tmp, (size_t) n);
                }
        }
        int status, exec_errno = 0;
        ssize_t n = read(ex[0], &exec_errno, sizeof exec_errno);
        close(ex[0]);
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        break;
        interrupt_child_remove(pid);
        if (n == (ssize_t) sizeof exec_errno || interrupt_requested()) {
                free(bo.p);
                free(be.p);
                if (n != (ssize_t) sizeof exec_errno)
                        return err_set(-EINTR, "'%s' was stopped by an interrupt", argv[0]);
                return -exec_errno;
        }
        if (ret_stdout)
                *ret_stdout = bo.p ? bo.p : strdup("");
        else
                free(bo.p);
        if (ret_stderr)
                *ret_stderr = be.p ? be.p : strdup("");
        else
                free(be.p);
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
