/* SPDX-License-Identifier: MIT */
#pragma once

/* How a chunk's bytes are stored: always one zstd frame (RFC 8878) that
 * declares its content size, either compressed by zstd or, when compression
 * does not pay, made of *raw blocks* (block type 0: the plain bytes behind a
 * 3-byte block header). A raw frame is written here directly, without
 * zstd; any zstd decoder reads it (a copy), so a store, a bundle or a peer
 * that knows only zstd frames reads both (docs/store-format.md, "Chunks").
 *
 * A raw frame as written here:
 *
 *   0  4  magic 28 b5 2f fd (0xFD2FB528 LE)
 *   4  1  frame header descriptor 0xa0: single segment, 4-byte content size,
 *         no checksum, no dictionary
 *   5  4  content size n (LE), 1..4 MiB
 *   9     ceil(n / 128 KiB) blocks: a 3-byte LE header (bit 0 last block,
 *         bits 1-2 type 0 = raw, bits 3-23 size, at most 128 KiB), then the
 *         bytes
 *
 * Pure functions, no I/O. */

#include <stdbool.h>
#include <stddef.h>
#include <zstd.h>

#define CHUNK_FRAME_RAW_HEADER 9
#define CHUNK_FRAME_RAW_BLOCK (128u * 1024)
/* Bytes a raw frame of len plain bytes takes. */
#define CHUNK_FRAME_RAW_SIZE(len) \
        (CHUNK_FRAME_RAW_HEADER + (len) + 3 * (((len) + CHUNK_FRAME_RAW_BLOCK - 1) / CHUNK_FRAME_RAW_BLOCK))

/* Writes len (1..4 MiB) plain bytes as a raw frame into out (cap bytes).
 * Returns the frame's size, 0 if len is out of range or cap too small. */
size_t chunk_frame_raw(void *out, size_t cap, const void *data, size_t len);

/* True if frame is exactly one zstd frame (as zstd finds its end) whose
 * blocks are all raw (as written by chunk_frame_raw() or by zstd for bytes
 * it could not shrink). Reads only the headers; false for anything else. */
bool chunk_frame_is_raw(const void *frame, size_t len);

/* Encodes len plain bytes (1..4 MiB) for the store: zstd at level, unless
 * that saves less than 1/32 of len, in which case the chunk is stored raw
 * (reads then copy instead of decoding). out must hold
 * ZSTD_compressBound(len) bytes (which is more than a raw frame needs).
 * Returns the frame's size (*ret_raw says which kind) or -EIO. */
int chunk_frame_encode(ZSTD_CCtx *cctx, int level, const void *data, size_t len, void *out, size_t cap,
                       bool *ret_raw);
