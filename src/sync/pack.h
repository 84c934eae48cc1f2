/* SPDX-License-Identifier: MIT */
#pragma once

/* A pack: the objects and chunks one side lacks, in one body, so that a
 * hand-over's remainder crosses the link in one round trip
 * (docs/sync-protocol.md, POST /v1/pack/get and /v1/pack/put):
 *
 *   "ROAMPK1\n"  u32 LE objects  u32 LE chunks  u32 LE flags
 *   objects x record: 32-byte id, u32 LE length, zstd frame of the object
 *   chunks  x record: 32-byte id, u32 LE length, zstd frame (as stored)
 *
 * Objects come first (the receiver walks them to know the chunks). flags bit
 * 0 (PACK_COMPLETE): nothing else is needed; without it the sender stopped at
 * its size bound and the receiver fetches the rest the usual way. Flags bit
 * 1 (PACK_PAGED): a chunk record may hold pages instead of a frame; bit 2
 * (PACK_DELTA, with PACK_PAGED only): an object record may be a delta against
 * one of the bases (src/sync/obj-delta.h). The reader
 * is pure and bounded (tests/fuzz/fuzz-pack.c); it checks framing only: the
 * receiver verifies every id against its bytes. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../basic/hash.h"

#define PACK_MAGIC "ROAMPK1\n"
#define PACK_HEADER 20
#define PACK_MAX_OBJECTS 4096u
#define PACK_MAX_CHUNKS 16384u
#define PACK_MAX_BYTES (64u << 20) /* a whole pack on the wire */
#define PACK_COMPLETE 1u
/* chunk records may be pages (src/sync/page-chunk.h) instead of frames: only
 * in answer to a request that named bases */
#define PACK_PAGED 2u
/* object records may be deltas against the bases (src/sync/obj-delta.h):
 * only with PACK_PAGED */
#define PACK_DELTA 4u
#define PACK_FLAGS_KNOWN (PACK_COMPLETE | PACK_PAGED | PACK_DELTA)

typedef enum PackKind {
        PACK_OBJECT,
        PACK_CHUNK,
} PackKind;

typedef struct PackReader {
        const uint8_t *p;
        size_t left;
        uint32_t n_objects, n_chunks, flags;
        uint32_t seen;           /* records returned so far */
        size_t max_object_frame; /* bound of an object record's length */
        size_t max_chunk_frame;  /* bound of a chunk record's length */
} PackReader;

/* Checks the header: magic, counts within the bounds, no unknown flags.
 * -EBADMSG otherwise. */
int pack_reader_init(PackReader *r, const void *body, size_t len, size_t max_object_frame, size_t max_chunk_frame);
/* 1 with a record (pointers into the body), 0 after exactly the announced
 * records with nothing left over, -EBADMSG for anything else. */
int pack_reader_next(PackReader *r, PackKind *ret_kind, RoamId *ret_id, const uint8_t **ret_data, uint32_t *ret_len);
/* A pack still coming: pack_reader_init() on what is here (at least the
 * header), pack_reader_more() with the count of bytes that came after it (the
 * body must not move), and pack_reader_next_ready(): as pack_reader_next(),
 * but -EAGAIN for a record not all here yet, and 0 after the last announced
 * record whatever follows (pack_reader_next() over the whole body checks
 * that). */
void pack_reader_more(PackReader *r, size_t more);
int pack_reader_next_ready(PackReader *r, PackKind *ret_kind, RoamId *ret_id, const uint8_t **ret_data,
                           uint32_t *ret_len);

typedef struct PackWriter {
        uint8_t *buf;
        size_t len, cap;
        size_t max; /* bytes, at most PACK_MAX_BYTES */
        uint32_t n_objects, n_chunks;
        uint32_t n_paged; /* chunk records as pages: the filler counts them (sync_pack_fill()) */
        uint32_t n_delta; /* object records as deltas: the filler counts them */
        size_t object_bytes; /* of the object records, with their ids and lengths */
} PackWriter;

/* Starts an empty pack (header reserved) of at most max bytes (0 or more
 * than PACK_MAX_BYTES: PACK_MAX_BYTES). */
int pack_writer_init(PackWriter *w, size_t max);
/* Appends a record; every object before the first chunk (-EINVAL otherwise),
 * and within the bounds above (-E2BIG: the pack is full, nothing appended). */
int pack_writer_add(PackWriter *w, PackKind kind, const RoamId *id, const void *data, size_t len);
/* Writes the header; the body is w->buf, w->len (the caller frees buf). */
void pack_writer_finish(PackWriter *w, uint32_t flags);
void pack_writer_done(PackWriter *w);

/* An object's bytes as a zstd frame, and back: the frame must announce its
 * size, at most max, and be exactly that. Caller frees *ret. */
int pack_object_compress(const void *data, size_t len, void **ret, size_t *ret_len);
int pack_object_decompress(const void *frame, size_t len, size_t max, void **ret, size_t *ret_len);
