/* SPDX-License-Identifier: MIT */
/* Page references (docs/sync-protocol.md "Page references"): the paged chunk
 * payload (src/sync/page-chunk.h), the body of POST /v1/chunks/pages, and
 * the page index file (src/store/page-index.h). The first byte picks:
 *   0  payload: parse with 2 bases and a 64 KiB bound; a parsed one is
 *      decoded with a fake base, and what comes out is encoded again
 *   1  request body (page_request_parse)
 *   2  page index file (page_index_parse; a parsed one is written again)
 *   3  body of POST /v1/chunks/put-pages (page_put_parse) */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "basic/error.h"
#include "basic/util.h"
#include "store/page-index.h"
#include "sync/page-chunk.h"

#define MAX_LEN (64 * 1024)
#define BASE_PAGES 64u

/* base b, page p: 4 KiB of (b, p, i) */
static int fake_page(void *userdata, unsigned base, uint32_t page, void *out) {
        if (base >= 2)
                abort(); /* the parser let a base through that the request did not name */
        if (page >= BASE_PAGES)
                return -ESTALE;
        uint8_t *o = out;
        for (size_t i = 0; i < 4096; i++)
                o[i] = (uint8_t) (base * 31 + page * 7 + i);
        return 0;
}

/* find: a page is a reference when it is one of the fake base 0's */
static bool fake_find(void *userdata, const void *page, PageRef *ret) {
        uint8_t probe[4096];
        const uint8_t *p = page;
        for (uint32_t pg = 0; pg < BASE_PAGES; pg++) {
                if (p[0] != (uint8_t) (pg * 7))
                        continue;
                fake_page(NULL, 0, pg, probe);
                if (memcmp(probe, page, 4096) == 0) {
                        *ret = (PageRef){ .base = 0, .page = pg };
                        return true;
                }
        }
        return false;
}

static void payload(const uint8_t *data, size_t size) {
        PageChunk c;
        memset(&c, 0x5a, sizeof c);
        if (page_chunk_parse(data, size, MAX_LEN, 2, &c) < 0)
                return;
        if (c.len == 0 || c.len > MAX_LEN || c.n_pages != (c.len + 4095) / 4096 || c.n_refs > c.n_pages ||
            c.ops != data + PAGE_CHUNK_HEADER || !page_chunk_is(data, size))
                abort();
        for (uint32_t k = 0; k < c.n_refs; k++)
                if (page_chunk_ref(&c, k).base >= 2)
                        abort();
        uint8_t *out = malloc(c.len);
        ZSTD_DCtx *d = ZSTD_createDCtx();
        ZSTD_CCtx *z = ZSTD_createCCtx();
        if (!out || !d || !z)
                abort();
        if (page_chunk_decode(&c, d, out, fake_page, NULL) == 0) {
                /* encoded again (against base 0 only) and decoded: the same bytes */
                uint8_t *buf = NULL;
                size_t cap = 0;
                uint32_t refs;
                int n = page_chunk_encode(out, c.len, z, 1, fake_find, NULL, &buf, &cap, &refs);
                if (n < 0)
                        abort();
                if (n > 0) {
                        PageChunk c2;
                        uint8_t *again = malloc(c.len);
                        if (!again || page_chunk_parse(buf, (size_t) n, MAX_LEN, 1, &c2) != 0 || c2.len != c.len ||
                            c2.n_refs != refs || page_chunk_decode(&c2, d, again, fake_page, NULL) != 0 ||
                            memcmp(again, out, c.len) != 0)
                                abort();
                        free(again);
                }
                free(buf);
        }
        ZSTD_freeDCtx(d);
        ZSTD_freeCCtx(z);
        free(out);
}

static void request(const uint8_t *data, size_t size) {
        const uint8_t *bases = (const uint8_t *) 0x1, *ids = (const uint8_t *) 0x1;
        unsigned nb = 12345;
        size_t n = 12345;
        if (page_request_parse(data, size, 1024, &bases, &nb, &ids, &n) < 0) {
                if (nb != 12345 || n != 12345 || bases != (const uint8_t *) 0x1)
                        abort(); /* written on failure */
                return;
        }
        if (nb == 0 || nb > PAGE_CHUNK_MAX_BASES || n == 0 || n > 1024 || size != 4 + (nb + n) * ID_SIZE ||
            bases != data + 4 || ids != bases + nb * ID_SIZE)
                abort();
}

static void put_body(const uint8_t *data, size_t size) {
        const uint8_t *bases = (const uint8_t *) 0x1, *stream = (const uint8_t *) 0x1;
        unsigned nb = 12345;
        size_t n = 12345;
        if (page_put_parse(data, size, &bases, &nb, &stream, &n) < 0) {
                if (nb != 12345 || n != 12345 || bases != (const uint8_t *) 0x1)
                        abort(); /* written on failure */
                return;
        }
        if (nb == 0 || nb > PAGE_CHUNK_MAX_BASES || bases != data + 4 || stream != bases + nb * ID_SIZE ||
            4 + nb * ID_SIZE + n != size)
                abort();
}

static void pageidx(const uint8_t *data, size_t size) {
        PageIndex *x = NULL;
        if (page_index_parse(data, size, &x) < 0) {
                if (x)
                        abort();
                return;
        }
        if (x->n > PAGE_INDEX_MAX_ENTRIES || x->n > x->blob_size / 4096)
                abort();
        for (uint64_t i = 0; i < x->n; i++)
                if ((uint64_t) x->pages[i] >= x->blob_size / 4096 || (i > 0 && x->hashes[i] <= x->hashes[i - 1]))
                        abort();
        void *ser;
        size_t len;
        if (page_index_serialize(x, &ser, &len) < 0 || len != size || memcmp(ser, data, size) != 0)
                abort();
        free(ser);
        page_index_free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        uint8_t mode = data[0];
        data++;
        size--;
        switch (mode % 4) {
        case 0:
                payload(data, size);
                break;
        case 1:
                request(data, size);
                break;
        case 2:
                pageidx(data, size);
                break;
        case 3:
                put_body(data, size);
                break;
        }
        err_clear();
        return 0;
}
