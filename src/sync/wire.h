/* SPDX-License-Identifier: MIT */
#pragma once

/* Binary bodies of the sync protocol (docs/sync-protocol.md):
 *   id list:      n x 32-byte ids
 *   chunk stream: records of 32-byte id, 4-byte LE length, zstd frame
 * Pure functions, bounded, fuzzed (tests/fuzz/fuzz-wire.c). */

#include <stddef.h>
#include <stdint.h>

#include "../basic/hash.h"

#define WIRE_MAX_IDS_MISSING 65536    /* ids per /chunks/missing request */
#define WIRE_MAX_IDS_GET 1024         /* ids per /chunks/get request */
#define WIRE_MAX_RECORDS 1024         /* records per chunk stream */
#define WIRE_MAX_STREAM (64u << 20)   /* bytes per chunk stream */
#define WIRE_RECORD_HEADER (ID_SIZE + 4)

/* Checks an id list body: length a multiple of 32 and at most max ids, none
 * null. Sets *ret_n. -EBADMSG otherwise. */
int wire_id_list_check(const void *body, size_t len, size_t max, size_t *ret_n);
static inline const RoamId *wire_id_at(const void *body, size_t i) {
        return (const RoamId *) ((const uint8_t *) body + i * ID_SIZE);
}

/* Iterates a chunk stream. max_record bounds each record's length (zstd
 * bound of the chunk size). */
typedef struct WireReader {
        const uint8_t *p;
        size_t left;
        size_t max_record;
        size_t count;
} WireReader;

void wire_reader_init(WireReader *r, const void *body, size_t len, size_t max_record);
/* 1 with a record (pointers into the body), 0 at a clean end, -EBADMSG on a
 * truncated or oversized record, or more than WIRE_MAX_RECORDS. */
int wire_reader_next(WireReader *r, RoamId *ret_id, const uint8_t **ret_data, uint32_t *ret_len);

/* Copies the bytes of one record (its header head, then its data of len
 * bytes) from offset off on, at most max of them (and never past the header
 * in one go), into out: how many. For a body read out in pieces. */
size_t wire_record_copy(void *out, size_t max, const uint8_t head[WIRE_RECORD_HEADER], const void *data, size_t len,
                        size_t off);
/* Appends one record to a growing buffer (*buf, *len, *cap; realloc'd). */
int wire_append_record(uint8_t **buf, size_t *len, size_t *cap, const RoamId *id, const void *data, uint32_t n);
