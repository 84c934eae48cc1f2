/* SPDX-License-Identifier: MIT */
#include "fleet-watchdog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"

#define WATCH_FD 3

extern char **environ;

struct FleetWatchdog {
        char *home;
        unsigned fence_ms;
        pthread_mutex_t lock; /* fd, pid */
        int fd;    /* the write end (non-blocking): open as long as this process runs */
        pid_t pid; /* the helper */
};

/* Kills the QEMU whose pid file is pidfile (only while its command line
 * names that file or also: a pid is not trusted beyond it). 1 killed, 0 none. */
static int kill_qemu(const char *pidfile, const char *also) {
        _cleanup_free_ char *text = NULL, *cmd = NULL;
        uint64_t pid;
        if (read_full_file(pidfile, 32, &text, NULL) < 0)
                return 0;
        text[strcspn(text, "\n")] = 0;
        if (parse_u64(text, &pid) < 0 || pid < 2 || pid > INT32_MAX)
                return 0;
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/%llu/cmdline", (unsigned long long) pid);
        size_t len;
        if (read_proc_file(proc, 1 << 20, &cmd, &len) < 0 ||
            (!memmem(cmd, len, pidfile, strlen(pidfile)) && !memmem(cmd, len, also, strlen(also))))
                return 0;
        return kill((pid_t) pid, SIGKILL) == 0 ? 1 : 0;
}

static unsigned kill_in(const char *home, const char *sub, const char *only) {
        _cleanup_free_ char *dir = path_join(home, sub);
        DIR *d = dir ? opendir(dir) : NULL;
        if (!d)
                return 0;
        unsigned n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' || (only && strcmp(only, de->d_name)))
                        continue;
                /* a session restored into a waiting QEMU: its pid file moved into
                 * sessions/NAME, its command line still names warm/NAME's (warm.c) */
                char pidfile[PATH_MAX], also[PATH_MAX];
                snprintf(pidfile, sizeof pidfile, "%s/%s/qemu.pid", dir, de->d_name);
                snprintf(also, sizeof also, "%s/warm/%s/qemu.pid", home, de->d_name);
                n += (unsigned) kill_qemu(pidfile, also);
        }
        closedir(d);
        return n;
}

unsigned fleet_kill_qemus(const char *home, const char *only) {
        /* the running ones, and the ones waiting for a restore (warm.c) */
        return kill_in(home, "sessions", only) + kill_in(home, "warm", only);
}

/* Under w->lock. */
static int spawn(FleetWatchdog *w) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        /* the keeper's heartbeat never waits for the helper (its end stays blocking) */
        if (fcntl(p[1], F_SETFL, O_NONBLOCK) < 0) {
                int r = -errno;
                close(p[0]);
                close(p[1]);
                return r;
        }
        char fence[16];
        snprintf(fence, sizeof fence, "%u", w->fence_ms);
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t at;
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&at);
        /* the read end as fd 3 (dup2 clears close-on-exec); a session of its
         * own: a terminal's Ctrl-C for the daemon is not for it */
        posix_spawn_file_actions_adddup2(&fa, p[0], WATCH_FD);
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID);
        char *argv[] = { "roam", FLEET_WATCHDOG_VERB, w->home, fence, NULL };
        pid_t pid;
        int r = posix_spawn(&pid, "/proc/self/exe", &fa, &at, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        close(p[0]);
        if (r != 0) {
                close(p[1]);
                return err_set(-r, "cannot start the fleet watchdog: %s", strerror(r));
        }
        if (w->fd >= 0)
                close(w->fd);
        w->fd = p[1];
        w->pid = pid;
        return 0;
}

int fleet_watchdog_start(const char *home, unsigned fence_ms, FleetWatchdog **ret) {
        FleetWatchdog *w = calloc(1, sizeof *w);
        if (!w || !(w->home = strdup(home))) {
                free(w);
                return -ENOMEM;
        }
        w->fd = -1;
        w->fence_ms = fence_ms;
        pthread_mutex_init(&w->lock, NULL);
        int r = spawn(w);
        if (r < 0) {
                pthread_mutex_destroy(&w->lock);
                free(w->home);
                free(w);
                return r;
        }
        *ret = w;
        return 0;
}

void fleet_watchdog_beat(FleetWatchdog *w) {
        if (!w)
                return;
        pthread_mutex_lock(&w->lock);
        (void) !write(w->fd, "b", 1); /* a full pipe has beats enough */
        pthread_mutex_unlock(&w->lock);
}

int fleet_watchdog_check(FleetWatchdog *w) {
        if (!w)
                return 0;
        int st, r = 0;
        pthread_mutex_lock(&w->lock);
        pid_t p = waitpid(w->pid, &st, WNOHANG);
        if (p != 0)
                /* gone (or not ours any more): a new one, with a new pipe */
                r = spawn(w);
        pthread_mutex_unlock(&w->lock);
        return r < 0 ? r : p != 0;
}

void fleet_watchdog_stop(FleetWatchdog *w) {
        if (!w)
                return;
        if (w->fd >= 0)
                close(w->fd);
        if (w->pid > 0)
                (void) waitpid(w->pid, NULL, 0);
        pthread_mutex_destroy(&w->lock);
        free(w->home);
        free(w);
}

static int64_t mono_ms(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (int64_t) t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int fleet_watchdog_main(int argc, char **argv) {
        uint64_t fence_ms = 0;
        if (argc != 4 || fcntl(WATCH_FD, F_GETFD) < 0 || parse_u64(argv[3], &fence_ms) < 0 || fence_ms < 100 ||
            fence_ms > 3600000) {
                fprintf(stderr, "roam: %s is started by 'roam serve --etcd' only\n", FLEET_WATCHDOG_VERB);
                return 2;
        }
        const char *home = argv[2];
        /* nothing of the daemon's but the pipe */
        for (int fd = WATCH_FD + 1; fd < 1024; fd++)
                (void) close(fd);
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(SIGPIPE, SIG_IGN);
        int64_t last_beat = -1; /* armed by the first heartbeat */
        for (;;) {
                struct pollfd pfd = { .fd = WATCH_FD, .events = POLLIN };
                int wait = -1;
                if (last_beat >= 0) {
                        int64_t left = last_beat + (int64_t) fence_ms - mono_ms();
                        wait = (int) (left > 0 ? left : 0);
                }
                int k = poll(&pfd, 1, wait);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k == 0) {
                        /* alive but silent: stopped or hung, it fences nothing itself */
                        unsigned killed = fleet_kill_qemus(home, NULL);
                        fprintf(stderr, "roam: fleet watchdog: no heartbeat from 'roam serve' of %s for %llu ms; "
                                "killed %u QEMU(s)\n", home, (unsigned long long) fence_ms, killed);
                        last_beat = -1; /* until it beats again */
                        continue;
                }
                char buf[64];
                ssize_t n = read(WATCH_FD, buf, sizeof buf);
                if (n > 0) {
                        last_beat = mono_ms();
                        continue;
                }
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                break; /* end of file: the daemon is gone */
        }
        unsigned killed = fleet_kill_qemus(home, NULL);
        if (killed)
                fprintf(stderr, "roam: fleet watchdog: 'roam serve' of %s is gone; killed %u QEMU(s)\n", home,
                        killed);
        return 0;
}
