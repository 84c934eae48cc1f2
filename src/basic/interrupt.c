/* SPDX-License-Identifier: MIT */
#include "interrupt.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"

#define MAX_CHILDREN 16

static volatile int flag;
static _Atomic pid_t children[MAX_CHILDREN];

volatile int *interrupt_flag(void) {
        return &flag;
}

int interrupt_child_add(pid_t pgid) {
        for (size_t i = 0; i < MAX_CHILDREN; i++) {
                pid_t expected = 0;
                if (atomic_compare_exchange_strong(&children[i], &expected, pgid))
                        return 0;
        }
        return -EBUSY;
}

void interrupt_child_remove(pid_t pgid) {
        for (size_t i = 0; i < MAX_CHILDREN; i++) {
                pid_t expected = pgid;
                if (atomic_compare_exchange_strong(&children[i], &expected, 0))
                        return;
        }
}

static void stop_children(int sig) {
        for (size_t i = 0; i < MAX_CHILDREN; i++) {
                pid_t p = atomic_load(&children[i]);
                if (p > 0)
                        (void) kill(-p, sig);
        }
}

/* async-signal-safe: kill(), write(), _exit() only */
static void exit_now(int sig) {
        static const char msg[] = "roam: interrupted before the cleanup was done "
                                  "(run 'roam store gc' to remove leftover temp files)\n";
        stop_children(SIGKILL);
        (void) !write(STDERR_FILENO, msg, sizeof msg - 1);
        _exit(INTERRUPT_EXIT);
}

static void on_signal(int sig) {
        if (flag)
                exit_now(sig);
        flag = 1;
        stop_children(SIGTERM);
        alarm(INTERRUPT_GRACE_S);
}

void interrupt_install(void) {
        struct sigaction sa = { .sa_handler = on_signal };
        sigemptyset(&sa.sa_mask);
        (void) sigaction(SIGINT, &sa, NULL);
        (void) sigaction(SIGTERM, &sa, NULL);
        struct sigaction al = { .sa_handler = exit_now };
        sigemptyset(&al.sa_mask);
        (void) sigaction(SIGALRM, &al, NULL);
}

void interrupt_uninstall(void) {
        (void) signal(SIGINT, SIG_DFL);
        (void) signal(SIGTERM, SIG_DFL);
        (void) signal(SIGALRM, SIG_DFL);
}
