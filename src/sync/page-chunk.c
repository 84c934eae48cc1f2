/* SPDX-License-Identifier: MIT */
#include "page-chunk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"

#define PAGE 4096u
#define REF_SIZE 5

bool page_chunk_is(const void *payload, size_t len) {
        return len >= 4 && memcmp(payload, PAGE_CHUNK_MAGIC, 4) == 0;
}

int page_chunk_parse(const void *payload, size_t len, size_t max_len, unsigned n_bases, PageChunk *ret) {
        const uint8_t *p = payload;
        if (len < PAGE_CHUNK_HEADER || !page_chunk_is(p, len))
                return -EBADMSG;
        PageChunk c = { .len = get_le32(p + 4), .n_pages = (uint32_t) p[8] | (uint32_t) p[9] << 8,
                        .n_refs = (uint32_t) p[10] | (uint32_t) p[11] << 8 };
        if (c.len == 0 || c.len > max_len || c.n_pages != (c.len + PAGE - 1) / PAGE || c.n_refs > c.n_pages)
                return -EBADMSG;
        size_t at = PAGE_CHUNK_HEADER;
        if (len - at < c.n_pages)
                return -EBADMSG;
        c.ops = p + at;
        at += c.n_pages;
        uint32_t refs = 0;
        for (uint32_t i = 0; i < c.n_pages; i++) {
                uint32_t plen = i + 1 < c.n_pages ? PAGE : c.len - i * PAGE;
                switch (c.ops[i]) {
                case PAGE_OP_BYTES:
                        c.literal_len += plen;
                        break;
                case PAGE_OP_ZERO:
                        break;
                case PAGE_OP_REF:
                        if (plen != PAGE)
                                return -EBADMSG;
                        refs++;
                        break;
                default:
                        return -EBADMSG;
                }
        }
        if (refs != c.n_refs || (len - at) / REF_SIZE < c.n_refs)
                return -EBADMSG;
        c.refs = p + at;
        for (uint32_t k = 0; k < c.n_refs; k++)
                if (c.refs[k * REF_SIZE] >= n_bases)
                        return -EBADMSG;
        at += (size_t) c.n_refs * REF_SIZE;
        if (c.literal_len == 0) {
                if (at != len)
                        return -EBADMSG;
        } else {
                c.frame = p + at;
                c.frame_len = len - at;
                unsigned long long size = ZSTD_getFrameContentSize(c.frame, c.frame_len);
                if (size != c.literal_len || ZSTD_findFrameCompressedSize(c.frame, c.frame_len) != c.frame_len)
                        return -EBADMSG;
        }
        *ret = c;
        return 0;
}

PageRef page_chunk_ref(const PageChunk *c, uint32_t k) {
        const uint8_t *r = c->refs + (size_t) k * REF_SIZE;
        return (PageRef){ .base = r[0], .page = get_le32(r + 1) };
}

int page_chunk_decode(const PageChunk *c, ZSTD_DCtx *dctx, void *out,
                      int (*page)(void *userdata, unsigned base, uint32_t page, void *out), void *userdata) {
        uint8_t *o = out;
        _cleanup_free_ uint8_t *lit = NULL;
        if (c->literal_len > 0) {
                lit = malloc(c->literal_len);
                if (!lit)
                        return -ENOMEM;
                size_t n = ZSTD_decompressDCtx(dctx, lit, c->literal_len, c->frame, c->frame_len);
                if (ZSTD_isError(n) || n != c->literal_len)
                        return -EBADMSG;
        }
        size_t lat = 0;
        uint32_t k = 0;
        for (uint32_t i = 0; i < c->n_pages; i++) {
                uint32_t plen = i + 1 < c->n_pages ? PAGE : c->len - i * PAGE;
                uint8_t *dst = o + (size_t) i * PAGE;
                switch (c->ops[i]) {
                case PAGE_OP_BYTES:
                        memcpy(dst, lit + lat, plen);
                        lat += plen;
                        break;
                case PAGE_OP_ZERO:
                        memset(dst, 0, plen);
                        break;
                default: {
                        PageRef ref = page_chunk_ref(c, k++);
                        int r = page(userdata, ref.base, ref.page, dst);
                        if (r < 0)
                                return r;
                }
                }
        }
        return 0;
}

static int grow(uint8_t **buf, size_t *cap, size_t need) {
        if (*cap >= need)
                return 0;
        size_t n = MAX(need, *cap * 2);
        uint8_t *b = realloc(*buf, n);
        if (!b)
                return -ENOMEM;
        *buf = b;
        *cap = n;
        return 0;
}

int page_chunk_encode(const void *data, size_t len, ZSTD_CCtx *cctx, int level,
                      bool (*find)(void *userdata, const void *page, PageRef *ret), void *userdata, uint8_t **buf,
                      size_t *cap, uint32_t *ret_refs) {
        const uint8_t *in = data;
        if (len == 0 || len > UINT32_MAX)
                return -EINVAL;
        uint32_t n_pages = (uint32_t) ((len + PAGE - 1) / PAGE);
        if (n_pages > UINT16_MAX)
                return -EINVAL;
        /* the ops and refs first: the literal pages gather behind them */
        size_t head = PAGE_CHUNK_HEADER + n_pages + (size_t) n_pages * REF_SIZE;
        int r = grow(buf, cap, head);
        if (r < 0)
                return r;
        _cleanup_free_ uint8_t *lit = malloc(len);
        if (!lit)
                return -ENOMEM;
        uint8_t *ops = *buf + PAGE_CHUNK_HEADER;
        PageRef *refs = malloc(n_pages * sizeof *refs);
        if (!refs)
                return -ENOMEM;
        uint32_t n_refs = 0;
        size_t lat = 0;
        for (uint32_t i = 0; i < n_pages; i++) {
                size_t plen = i + 1 < n_pages ? PAGE : len - (size_t) i * PAGE;
                const uint8_t *pg = in + (size_t) i * PAGE;
                if (plen == PAGE && memory_is_zero(pg, PAGE))
                        ops[i] = PAGE_OP_ZERO;
                else if (plen == PAGE && find(userdata, pg, &refs[n_refs])) {
                        ops[i] = PAGE_OP_REF;
                        n_refs++;
                } else {
                        ops[i] = PAGE_OP_BYTES;
                        memcpy(lit + lat, pg, plen);
                        lat += plen;
                }
        }
        if (n_refs == 0) {
                free(refs);
                *ret_refs = 0;
                return 0;
        }
        uint8_t *b = *buf;
        memcpy(b, PAGE_CHUNK_MAGIC, 4);
        put_le32(b + 4, (uint32_t) len);
        b[8] = (uint8_t) n_pages;
        b[9] = (uint8_t) (n_pages >> 8);
        b[10] = (uint8_t) n_refs;
        b[11] = (uint8_t) (n_refs >> 8);
        size_t at = PAGE_CHUNK_HEADER + n_pages;
        for (uint32_t k = 0; k < n_refs; k++) {
                b[at] = refs[k].base;
                put_le32(b + at + 1, refs[k].page);
                at += REF_SIZE;
        }
        free(refs);
        if (lat > 0) {
                size_t bound = ZSTD_compressBound(lat);
                r = grow(buf, cap, at + bound);
                if (r < 0)
                        return r;
                size_t z = ZSTD_compressCCtx(cctx, *buf + at, bound, lit, lat, level);
                if (ZSTD_isError(z))
                        return -EIO;
                at += z;
        }
        *ret_refs = n_refs;
        return (int) at;
}

static bool ids_valid(const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                RoamId id;
                memcpy(id.b, p + i * ID_SIZE, ID_SIZE);
                if (id_is_null(&id))
                        return false;
        }
        return true;
}

int page_request_parse(const void *body, size_t len, size_t max_ids, const uint8_t **ret_bases,
                       unsigned *ret_n_bases, const uint8_t **ret_ids, size_t *ret_n_ids) {
        const uint8_t *p = body;
        if (len < 4)
                return -EBADMSG;
        uint32_t nb = get_le32(p);
        if (nb == 0 || nb > PAGE_CHUNK_MAX_BASES || (len - 4) / ID_SIZE < nb)
                return -EBADMSG;
        size_t rest = len - 4 - (size_t) nb * ID_SIZE;
        if (rest == 0 || rest % ID_SIZE || rest / ID_SIZE > max_ids)
                return -EBADMSG;
        const uint8_t *bases = p + 4, *ids = bases + (size_t) nb * ID_SIZE;
        if (!ids_valid(bases, nb) || !ids_valid(ids, rest / ID_SIZE))
                return -EBADMSG;
        *ret_bases = bases;
        *ret_n_bases = nb;
        *ret_ids = ids;
        *ret_n_ids = rest / ID_SIZE;
        return 0;
}

int page_request_build(const RoamId *bases, unsigned n_bases, const RoamId *ids, size_t n_ids, void **ret,
                       size_t *ret_len) {
        size_t len = 4 + ((size_t) n_bases + n_ids) * ID_SIZE;
        uint8_t *b = malloc(len);
        if (!b)
                return -ENOMEM;
        put_le32(b, n_bases);
        memcpy(b + 4, bases, (size_t) n_bases * ID_SIZE);
        memcpy(b + 4 + (size_t) n_bases * ID_SIZE, ids, n_ids * ID_SIZE);
        *ret = b;
        *ret_len = len;
        return 0;
}

int page_put_parse(const void *body, size_t len, const uint8_t **ret_bases, unsigned *ret_n_bases,
                   const uint8_t **ret_stream, size_t *ret_stream_len) {
        const uint8_t *p = body;
        if (len < 4)
                return -EBADMSG;
        uint32_t nb = get_le32(p);
        if (nb == 0 || nb > PAGE_CHUNK_MAX_BASES || (len - 4) / ID_SIZE < nb || !ids_valid(p + 4, nb))
                return -EBADMSG;
        *ret_bases = p + 4;
        *ret_n_bases = nb;
        *ret_stream = p + 4 + (size_t) nb * ID_SIZE;
        *ret_stream_len = len - 4 - (size_t) nb * ID_SIZE;
        return 0;
}
