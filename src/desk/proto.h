/* SPDX-License-Identifier: MIT */
#pragma once

/* What roam parses of a terminal server's desks (pure, bounded, fuzzed by
 * tests/fuzz/fuzz-desk.c):
 *
 *  - the in-guest helper's answer (guest/desk/roam-desk, run through the
 *    guest agent): lines "key=value" (key [a-z_]{1,32}, value at most
 *    DESK_VALUE_MAX bytes without control characters), the last line "ok" or
 *    "error=ONE LINE"; at most DESK_ANSWER_LINES lines, DESK_ANSWER_MAX bytes.
 *  - the tar the helper writes to the transfer disk (a desk's CRIU images and
 *    its home): ustar or GNU headers, regular files and directories only,
 *    names at most 100 bytes, sizes in octal; roam writes the same format
 *    back for a restore. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DESK_ANSWER_MAX (256u * 1024)
#define DESK_ANSWER_LINES 1024
#define DESK_KEY_MAX 32
#define DESK_VALUE_MAX 1024

typedef struct DeskPair {
        char key[DESK_KEY_MAX + 1];
        char *value;
} DeskPair;

typedef struct DeskAnswer {
        DeskPair *pairs;
        size_t n;
        bool ok;     /* the last line was "ok" */
        char *error; /* else the reason of "error=..." */
} DeskAnswer;

void desk_answer_done(DeskAnswer *a);
/* Parses the helper's output. -EBADMSG with detail for anything malformed
 * (too long, a bad key, a control character, no final ok/error line: cut
 * short). */
int desk_answer_parse(const char *buf, size_t len, DeskAnswer *ret);
/* The first value of key, or NULL. */
const char *desk_answer_get(const DeskAnswer *a, const char *key);
/* The value of key as a decimal number: -ENOENT absent, -EBADMSG not a number. */
int desk_answer_u64(const DeskAnswer *a, const char *key, uint64_t *ret);
/* The word "NAME=VALUE" in a value of words separated by spaces ("alice
 * pid=12 display=3"): VALUE into buf. -ENOENT absent, -ENAMETOOLONG. */
int desk_word_get(const char *value, const char *name, char *buf, size_t size);

#define DESK_TAR_BLOCK 512
#define DESK_TAR_NAME_MAX 100

typedef struct DeskTarEntry {
        char name[DESK_TAR_NAME_MAX + 1];
        uint64_t size;
        uint32_t mode;
        bool dir;
} DeskTarEntry;

/* One tar header block: 0 an entry (*ret), 1 the end (an all-zero block),
 * -EBADMSG with a reason in why (checksum, magic, size, type, name). */
int desk_tar_header_parse(const uint8_t block[DESK_TAR_BLOCK], DeskTarEntry *ret, char *why, size_t why_size);
/* A ustar header for a regular file. -EINVAL for a name too long or a size
 * beyond 8 GiB. */
int desk_tar_header_build(const char *name, uint64_t size, uint32_t mode, uint8_t block[DESK_TAR_BLOCK]);
/* The bytes a member of size occupies after its header (padded to blocks). */
static inline uint64_t desk_tar_padded(uint64_t size) {
        return (size + DESK_TAR_BLOCK - 1) / DESK_TAR_BLOCK * DESK_TAR_BLOCK;
}
