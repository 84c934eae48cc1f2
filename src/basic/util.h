/* SPDX-License-Identifier: MIT */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Names of images and sessions: 1..64 of [A-Za-z0-9._-], not starting with
 * '.' or '-'. Rejects '/', '..' and control characters by construction. */
#define NAME_MAX_LEN 64
bool name_is_valid(const char *s);
/* The rule above for messages: "image name 'x' is invalid (use " NAME_RULE ")" */
#define NAME_RULE "1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"

/* Ref names: 1..8 components joined by '/', each a valid name
 * ("images/debian", "sessions/alice/head"). */
#define REF_NAME_MAX_LEN 255
bool ref_name_is_valid(const char *s);
#define REF_NAME_RULE "1-8 names joined by '/', each " NAME_RULE

/* Parses "512M", "4K", "1G", "65536" (binary units). -EINVAL / -ERANGE. */
int parse_size(const char *s, uint64_t *ret);
/* Parses a duration in seconds: "90", "90s", "30m", "12h", "30d". -EINVAL
 * / -ERANGE. */
int parse_duration(const char *s, uint64_t *ret);
/* Parses a decimal unsigned integer with no trailing junk. */
int parse_u64(const char *s, uint64_t *ret);

/* A unix time in UTC: "2026-12-02 14:00:00 UTC" for messages, or (table)
 * "2026-12-02 14:00:00Z"; "-" for t <= 0. buf of at least 32 bytes;
 * returns buf. */
#define UTC_BUF_SIZE 32
char *format_utc(int64_t t, bool table, char *buf, size_t size);

/* "1.5 GiB"; buf of at least 16 bytes; returns buf. */
char *format_bytes(uint64_t n, char *buf, size_t size);

/* The processors online (at least 1). */
unsigned cpus_online(void);
/* Runs fn(arg) on n threads, the calling thread one of them, and returns once
 * each has returned. n is capped at RUN_THREADS_MAX; a thread that cannot be
 * started is one fewer (the workers share the work, so it is still done). */
#define RUN_THREADS_MAX 64
void run_threads(unsigned n, void *(*fn)(void *), void *arg);
/* Starts a joinable thread running fn(arg) with every signal blocked (a
 * daemon's stop signals are for the thread that waits for them). 0 or a
 * negative errno. */
int thread_start_no_signals(pthread_t *t, void *(*fn)(void *), void *arg);

/* Monotonic clock in nanoseconds / seconds. */
uint64_t now_ns(void);
uint64_t now_ms(void); /* the same clock (monotonic), in milliseconds */
double now_s(void);

/* Little-endian access for on-disk formats. */
static inline void put_le32(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t) (v >> (8 * i));
}
static inline void put_le64(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t) (v >> (8 * i));
}
static inline uint32_t get_le32(const uint8_t *p) {
        uint32_t v = 0;
        for (int i = 3; i >= 0; i--)
                v = v << 8 | p[i];
        return v;
}
static inline uint64_t get_le64(const uint8_t *p) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = v << 8 | p[i];
        return v;
}

/* A stream connection to the unix socket at path (CLOEXEC), or -errno. */
int unix_connect(const char *path);

/* The member key of JSON object j as a count: a positive integer, else 0. */
struct json_t;
uint64_t json_member_u64(struct json_t *j, const char *key);
