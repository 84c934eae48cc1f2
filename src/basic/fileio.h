/* SPDX-License-Identifier: MIT */
#pragma once

/* File helpers. All return 0 or a negative errno; out-parameters are written
 * only on success. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* write()/pwrite() until done; EINTR-safe. */
int loop_write(int fd, const void *buf, size_t len);
int loop_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* read()/pread() until len bytes or EOF; returns the number of bytes read. */
ssize_t loop_read(int fd, void *buf, size_t len);
ssize_t loop_pread(int fd, void *buf, size_t len, uint64_t off);

/* Reads a whole regular file of at most max bytes. *ret is NUL-terminated
 * (not counted in *ret_len); the caller frees it. -EFBIG past max. */
int read_full_file(const char *path, size_t max, char **ret, size_t *ret_len);

/* Atomically replaces path with data: a temp file beside it (O_EXCL),
 * fsync, rename, fsync of the directory. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* The same; durable = false skips both fsyncs (readers never see a torn
 * file, a crash may leave the old one or none: for caches). */
int write_file_replace(const char *path, const void *data, size_t len, mode_t mode, bool durable);

/* Creates a unique temp file "DIR/.tmp-XXXXXX" (O_EXCL, mode 0600) and returns
 * its fd and name (caller frees). The fd holds an exclusive flock on the file
 * until it is closed: the mark of a temp file in use. */
int tmpfile_create(const char *dir, char **ret_path);
/* True while a process holds the flock that tmpfile_create() took on
 * dir_fd/name (or when the file cannot be opened to tell). A file that was
 * just created may not be locked yet: look only at older ones. */
bool tmpfile_in_use(int dir_fd, const char *name);

/* fsync() a directory by path, or the directory that contains path. */
int fsync_dir(const char *dir);
int fsync_parent(const char *path);

/* mkdir -p with mode; existing directories are fine. */
int mkdir_p(const char *path, mode_t mode);

/* rm -rf, refuses "/" and "". */
int rm_rf(const char *path);

/* Returns 0 and sets *ret to true when every byte is zero. */
int memory_is_zero(const void *p, size_t len);

/* Joins a and b with one "/"; returns NULL on OOM. Caller frees. */
char *path_join(const char *a, const char *b);

/* syncfs() of the filesystem that holds path. */
int syncfs_path(const char *path);

/* Reads a file under /proc (whose size says 0) until EOF, at most max bytes,
 * NUL-terminated. Caller frees *ret. */
int read_proc_file(const char *path, size_t max, char **ret, size_t *ret_len);

/* The state letter (field 3: 'R', 'S', 'Z', ...) and start time (field 22,
 * clock ticks since boot) of process pid from /proc/PID/stat; -ENOENT when
 * there is no such process, -EBADMSG when the file cannot be parsed. Either
 * pointer may be NULL. A pid with its start time names one process for good:
 * pids are reused, start times are not. */
int proc_pid_stat(pid_t pid, char *ret_state, uint64_t *ret_start);
/* When process pid started, in seconds since the epoch (rounded down; the
 * boot time of /proc/stat plus its start time). */
int proc_pid_start_time(pid_t pid, time_t *ret);
/* False for a process that is gone or a zombie. */
static inline bool proc_pid_runs(pid_t pid) {
        char st;
        return proc_pid_stat(pid, &st, NULL) >= 0 && st != 'Z' && st != 'X';
}
