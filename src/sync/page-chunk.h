/* SPDX-License-Identifier: MIT */
#pragma once

/* A chunk sent as pages: per 4 KiB page the bytes, a zero page, or a
 * reference to a page of a blob the receiver holds (a *base*: the receiver
 * names its bases in the request, the sender finds pages in them with their
 * page index, src/store/page-index.h). The receiver rebuilds the chunk from
 * its own copy of the bases and checks it against the chunk id (SHA-256 of
 * the plain bytes): a reference to a page it does not have, or to one that
 * differs (stale, tampered), gives another hash, and the chunk is then
 * fetched in full. Never wrong bytes. docs/sync-protocol.md, "Page
 * references". Format of the payload (little-endian), in place of a zstd
 * frame in a chunk stream record or a pack's chunk record:
 *
 *   0  4  magic "RPG1" (a zstd frame starts with 28 b5 2f fd)
 *   4  4  plain length L, 1..max (the chunk size)
 *   8  2  pages P = ceil(L / 4096)
 *  10  2  references R
 *  12  P  one op per page: 0 bytes, 1 zero page, 2 reference (a reference
 *         only for a whole 4096-byte page)
 *  12+P  R * 5: u8 base (< the number of bases of the request), u32 page
 *         number in that base
 *  then   the bytes of the op-0 pages in order (the last may be short), as
 *         one zstd frame that declares exactly that many bytes; nothing when
 *         there are none
 *
 * The parser is pure and bounded (tests/fuzz/fuzz-pagechunk.c). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zstd.h>

#include "../basic/hash.h"

#define PAGE_CHUNK_MAGIC "RPG1"
#define PAGE_CHUNK_HEADER 12
#define PAGE_CHUNK_MAX_BASES 16
#define PAGE_OP_BYTES 0
#define PAGE_OP_ZERO 1
#define PAGE_OP_REF 2

typedef struct PageRef {
        uint8_t base;
        uint32_t page;
} PageRef;

typedef struct PageChunk {
        uint32_t len;          /* L */
        uint32_t n_pages;      /* P */
        uint32_t n_refs;       /* R */
        const uint8_t *ops;    /* P, into the payload */
        const uint8_t *refs;   /* R * 5, into the payload */
        const uint8_t *frame;  /* the literal frame, into the payload, or NULL */
        size_t frame_len;
        size_t literal_len;    /* bytes of the op-0 pages */
} PageChunk;

/* The body of POST /v1/chunks/pages (docs/sync-protocol.md): u32 LE n_bases
 * (1..PAGE_CHUNK_MAX_BASES), n_bases x 32-byte index object ids, then
 * 1..max_ids x 32-byte chunk ids; no id null. Sets the counts and pointers
 * into the body; -EBADMSG otherwise. */
int page_request_parse(const void *body, size_t len, size_t max_ids, const uint8_t **ret_bases,
                       unsigned *ret_n_bases, const uint8_t **ret_ids, size_t *ret_n_ids);
/* Builds that body; caller frees *ret. */
int page_request_build(const RoamId *bases, unsigned n_bases, const RoamId *ids, size_t n_ids, void **ret,
                       size_t *ret_len);

/* The body of POST /v1/chunks/put-pages: u32 LE n_bases (1..16), n_bases x
 * 32-byte index ids (none null), then a chunk stream (wire.h) whose records
 * may be pages. Sets the bases and the stream (pointers into the body);
 * -EBADMSG otherwise (the stream itself is checked by its reader). */
int page_put_parse(const void *body, size_t len, const uint8_t **ret_bases, unsigned *ret_n_bases,
                   const uint8_t **ret_stream, size_t *ret_stream_len);

/* True if payload is a paged chunk (by its magic), not a zstd frame. */
bool page_chunk_is(const void *payload, size_t len);

/* Checks the framing: magic, L in 1..max_len, P, R and every op and
 * reference within bounds (bases < n_bases), the literal frame declaring
 * exactly the literal bytes and ending the payload. -EBADMSG otherwise. */
int page_chunk_parse(const void *payload, size_t len, size_t max_len, unsigned n_bases, PageChunk *ret);
/* Reference k of a parsed chunk. */
PageRef page_chunk_ref(const PageChunk *c, uint32_t k);

/* Fills out (c->len bytes): literal pages decompressed, zero pages zeroed,
 * each reference from page(userdata, base, page, 4 KiB buffer), whose error
 * is passed on. -EBADMSG when the literal frame does not decode to exactly
 * its bytes. The caller checks the result against the chunk id. */
int page_chunk_decode(const PageChunk *c, ZSTD_DCtx *dctx, void *out,
                      int (*page)(void *userdata, unsigned base, uint32_t page, void *out), void *userdata);

/* Encodes len plain bytes (1..max) of one chunk: find(userdata, page bytes,
 * &ref) says whether a base holds a whole 4 KiB page. Writes the payload
 * into *buf (grown with realloc as needed, *cap its size) and returns its
 * length; 0 when no page is a reference (then the chunk goes as its frame). */
int page_chunk_encode(const void *data, size_t len, ZSTD_CCtx *cctx, int level,
                      bool (*find)(void *userdata, const void *page, PageRef *ret), void *userdata, uint8_t **buf,
                      size_t *cap, uint32_t *ret_refs);
