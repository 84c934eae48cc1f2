/* SPDX-License-Identifier: MIT */
#include "fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"

int loop_write(int fd, const void *buf, size_t len) {
        const uint8_t *p = buf;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

int loop_pwrite(int fd, const void *buf, size_t len, uint64_t off) {
        const uint8_t *p = buf;
        while (len > 0) {
                ssize_t n = pwrite(fd, p, len, (off_t) off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                off += (uint64_t) n;
                len -= (size_t) n;
        }
        return 0;
}

ssize_t loop_read(int fd, void *buf, size_t len) {
        uint8_t *p = buf;
        size_t done = 0;
        while (done < len) {
                ssize_t n = read(fd, p + done, len - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                done += (size_t) n;
        }
        return (ssize_t) done;
}

ssize_t loop_pread(int fd, void *buf, size_t len, uint64_t off) {
        uint8_t *p = buf;
        size_t done = 0;
        while (done < len) {
                ssize_t n = pread(fd, p + done, len - done, (off_t) (off + done));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                done += (size_t) n;
        }
        return (ssize_t) done;
}

int read_full_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (!S_ISREG(st.st_mode))
                return -EBADF;
        if ((uint64_t) st.st_size > max)
                return -EFBIG;
        _cleanup_free_ char *buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        ssize_t n = loop_read(fd, buf, (size_t) st.st_size);
        if (n < 0)
                return (int) n;
        buf[n] = 0;
        if (ret_len)
                *ret_len = (size_t) n;
        *ret = TAKE_PTR(buf);
        return 0;
}

int tmpfile_create(const char *dir, char **ret_path) {
        static const char letters[] = "abcdefghijklmnopqrstuvwxyz0123456789";
        for (int attempt = 0; attempt < 100; attempt++) {
                char name[32] = ".tmp-";
                uint8_t rnd[12];
                if (getrandom(rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd)
                        return -EIO;
                for (int i = 0; i < 12; i++)
                        name[5 + i] = letters[rnd[i] % 36];
                name[17] = 0;
                _cleanup_free_ char *p = path_join(dir, name);
                if (!p)
                        return -ENOMEM;
                int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                if (fd >= 0) {
                        (void) flock(fd, LOCK_EX | LOCK_NB); /* "in use", see tmpfile_in_use() */
                        *ret_path = TAKE_PTR(p);
                        return fd;
                }
                if (errno != EEXIST)
                        return -errno;
        }
        return -EEXIST;
}

bool tmpfile_in_use(int dir_fd, const char *name) {
        _cleanup_close_ int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return errno != ENOENT;
        return flock(fd, LOCK_SH | LOCK_NB) < 0;
}

int fsync_dir(const char *dir) {
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

int fsync_parent(const char *path) {
        _cleanup_free_ char *d = strdup(path);
        if (!d)
                return -ENOMEM;
        char *slash = strrchr(d, '/');
        if (!slash)
                return fsync_dir(".");
        if (slash == d)
                slash[1] = 0;
        else
                *slash = 0;
        return fsync_dir(d);
}

int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode) {
        return write_file_replace(path, data, len, mode, true);
}

int write_file_replace(const char *path, const void *data, size_t len, mode_t mode, bool durable) {
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        char *slash = strrchr(dir, '/');
        if (slash)
                *slash = 0;
        else
                strcpy(dir, ".");
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = tmpfile_create(dir, &tmp);
        if (fd < 0)
                return fd;
        int r = loop_write(fd, data, len);
        if (r >= 0 && fchmod(fd, mode) < 0)
                r = -errno;
        if (r >= 0 && durable && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                return r;
        }
        return durable ? fsync_dir(dir) : 0;
}

int mkdir_p(const char *path, mode_t mode) {
        char buf[PATH_MAX];
        size_t n = strlen(path);
        if (n == 0 || n >= sizeof buf)
                return -ENAMETOOLONG;
        memcpy(buf, path, n + 1);
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = 0;
                if (mkdir(buf, mode) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        struct stat st;
        if (stat(buf, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        return 0;
}

static int rm_rf_at(int dfd, const char *name) {
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                int k = rm_rf_at(dirfd(d), de->d_name);
                if (k < 0 && r == 0)
                        r = k;
        }
        closedir(d);
        if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

int rm_rf(const char *path) {
        if (!path || !*path || !strcmp(path, "/"))
                return -EINVAL;
        return rm_rf_at(AT_FDCWD, path);
}

int memory_is_zero(const void *p, size_t len) {
        const uint8_t *b = p;
        if (len == 0)
                return 1;
        /* check the first 16 bytes, then compare the buffer with itself shifted */
        size_t head = MIN(len, (size_t) 16);
        for (size_t i = 0; i < head; i++)
                if (b[i])
                        return 0;
        if (len <= 16)
                return 1;
        return memcmp(b, b + 16, len - 16) == 0;
}

char *path_join(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        while (la > 1 && a[la - 1] == '/')
                la--;
        char *p = malloc(la + 1 + lb + 1);
        if (!p)
                return NULL;
        memcpy(p, a, la);
        p[la] = '/';
        memcpy(p + la + 1, b, lb + 1);
        return p;
}

int syncfs_path(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return syncfs(fd) < 0 ? -errno : 0;
}

int read_proc_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        _cleanup_free_ char *buf = malloc(max + 1);
        if (!buf)
                return -ENOMEM;
        size_t n = 0;
        while (n < max) {
                ssize_t k = read(fd, buf + n, max - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                n += (size_t) k;
        }
        buf[n] = 0;
        if (ret_len)
                *ret_len = n;
        *ret = TAKE_PTR(buf);
        return 0;
}

int proc_pid_stat(pid_t pid, char *ret_state, uint64_t *ret_start) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        _cleanup_free_ char *text = NULL;
        int r = read_proc_file(path, 4096, &text, NULL);
        if (r < 0)
                return r == -ENOENT || r == -ESRCH ? -ENOENT : r;
        /* "PID (COMMAND) STATE ..."; the command may hold spaces and ')' */
        const char *p = strrchr(text, ')');
        if (!p || p[1] != ' ' || !p[2])
                return -EBADMSG;
        if (ret_state)
                *ret_state = p[2];
        for (int field = 2; p && field < 22; field++)
                p = strchr(p + 1, ' ');
        if (!p)
                return -EBADMSG;
        if (ret_start)
                *ret_start = strtoull(p + 1, NULL, 10);
        return 0;
}

/* The boot time in seconds since the epoch, from /proc/stat. */
static int boot_time(time_t *ret) {
        _cleanup_free_ char *text = NULL;
        int r = read_proc_file("/proc/stat", 1 << 20, &text, NULL);
        if (r < 0)
                return r;
        const char *b = strstr(text, "\nbtime ");
        long long v;
        if (!b || sscanf(b + 7, "%lld", &v) != 1)
                return -EBADMSG;
        *ret = (time_t) v;
        return 0;
}

int proc_pid_start_time(pid_t pid, time_t *ret) {
        uint64_t ticks;
        time_t boot;
        int r = proc_pid_stat(pid, NULL, &ticks);
        if (r >= 0)
                r = boot_time(&boot);
        if (r < 0)
                return r;
        long hz = sysconf(_SC_CLK_TCK);
        *ret = boot + (time_t) (ticks / (uint64_t) (hz > 0 ? hz : 100));
        return 0;
}
