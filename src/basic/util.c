/* SPDX-License-Identifier: MIT */
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static bool name_char_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '_' || c == '-';
}

bool name_is_valid(const char *s) {
        if (!s)
                return false;
        size_t n = strlen(s);
        if (n == 0 || n > NAME_MAX_LEN)
                return false;
        if (s[0] == '.' || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!name_char_ok(s[i]))
                        return false;
        return true;
}

bool ref_name_is_valid(const char *s) {
        if (!s)
                return false;
        size_t n = strlen(s);
        if (n == 0 || n > REF_NAME_MAX_LEN)
                return false;
        int comps = 0;
        const char *p = s;
        for (;;) {
                const char *slash = strchr(p, '/');
                size_t len = slash ? (size_t) (slash - p) : strlen(p);
                char comp[NAME_MAX_LEN + 1];
                if (len == 0 || len > NAME_MAX_LEN)
                        return false;
                memcpy(comp, p, len);
                comp[len] = 0;
                if (!name_is_valid(comp))
                        return false;
                if (++comps > 8)
                        return false;
                if (!slash)
                        break;
                p = slash + 1;
        }
        return true;
}

int parse_u64(const char *s, uint64_t *ret) {
        if (!s || !*s)
                return -EINVAL;
        uint64_t v = 0;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                unsigned d = (unsigned) (*p - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

int parse_size(const char *s, uint64_t *ret) {
        if (!s || !*s)
                return -EINVAL;
        char num[32];
        size_t n = 0;
        while (s[n] >= '0' && s[n] <= '9') {
                if (n + 1 >= sizeof num)
                        return -ERANGE;
                num[n] = s[n];
                n++;
        }
        num[n] = 0;
        if (n == 0)
                return -EINVAL;
        uint64_t v, mul = 1;
        int r = parse_u64(num, &v);
        if (r < 0)
                return r;
        const char *suf = s + n;
        if (*suf) {
                switch (*suf) {
                case 'k': case 'K': mul = 1ULL << 10; break;
                case 'm': case 'M': mul = 1ULL << 20; break;
                case 'g': case 'G': mul = 1ULL << 30; break;
                case 't': case 'T': mul = 1ULL << 40; break;
                default: return -EINVAL;
                }
                suf++;
                if (!strcmp(suf, "iB") || !strcmp(suf, "B"))
                        suf += strlen(suf);
                if (*suf)
                        return -EINVAL;
        }
        if (v > UINT64_MAX / mul)
                return -ERANGE;
        *ret = v * mul;
        return 0;
}

int parse_duration(const char *s, uint64_t *ret) {
        static const struct { char unit; uint64_t seconds; } units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 },
                                                                         { 'd', 86400 } };
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > 20)
                return -EINVAL;
        uint64_t mult = 1;
        char digits[24];
        memcpy(digits, s, n + 1);
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
                if (digits[n - 1] == units[i].unit) {
                        mult = units[i].seconds;
                        digits[--n] = 0;
                        break;
                }
        uint64_t v;
        int r = parse_u64(digits, &v);
        if (r < 0)
                return r;
        if (v > UINT64_MAX / mult)
                return -ERANGE;
        *ret = v * mult;
        return 0;
}

char *format_utc(int64_t t, bool table, char *buf, size_t size) {
        struct tm tm;
        time_t tt = (time_t) t;
        if (t <= 0 || !gmtime_r(&tt, &tm) || !strftime(buf, size, table ? "%Y-%m-%d %H:%M:%SZ" : "%Y-%m-%d %H:%M:%S UTC", &tm))
                snprintf(buf, size, "-");
        return buf;
}

char *format_bytes(uint64_t n, char *buf, size_t size) {
        static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
        double v = (double) n;
        int u = 0;
        while (v >= 1024 && u < 4) {
                v /= 1024;
                u++;
        }
        if (u == 0)
                snprintf(buf, size, "%llu B", (unsigned long long) n);
        else
                snprintf(buf, size, "%.1f %s", v, units[u]);
        return buf;
}

uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

uint64_t now_ms(void) {
        return now_ns() / 1000000;
}

double now_s(void) {
        return (double) now_ns() / 1e9;
}

unsigned cpus_online(void) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (unsigned) n : 1;
}

void run_threads(unsigned n, void *(*fn)(void *), void *arg) {
        pthread_t tid[RUN_THREADS_MAX];
        unsigned started = 0;
        if (n > RUN_THREADS_MAX)
                n = RUN_THREADS_MAX;
        for (unsigned i = 1; i < n; i++) {
                if (pthread_create(&tid[i], NULL, fn, arg) != 0)
                        break;
                started = i;
        }
        fn(arg); /* the calling thread works too */
        for (unsigned i = 1; i <= started; i++)
                pthread_join(tid[i], NULL);
}

int thread_start_no_signals(pthread_t *t, void *(*fn)(void *), void *arg) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int r = -pthread_create(t, NULL, fn, arg);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return r;
}

int unix_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

uint64_t json_member_u64(json_t *j, const char *key) {
        json_t *v = json_object_get(j, key);
        return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t) json_integer_value(v) : 0;
}
