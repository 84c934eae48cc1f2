/* SPDX-License-Identifier: MIT */
/* Packs (src/sync/pack.h) and the JSON body of POST /v1/pack/get
 * (pack_request_parse). The first byte picks the parser:
 *   0  pack body (PackReader; a clean read is written again with PackWriter)
 *   1  pack request JSON                 2  object frame (pack_object_decompress) */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/error.h"
#include "basic/macro.h"
#include "basic/util.h"
#include "daemon/api-store.h"
#include "sync/pack.h"
#include "sync/page-chunk.h"
#include "sync/wire.h"

#define MAX_OBJECT_FRAME 4096         /* small, so that the bound is reached */
#define MAX_CHUNK_FRAME (64 * 1024 + 512) /* about the zstd bound of a 64 KiB chunk */
#define MAX_OBJECT 8192               /* plain object bytes for mode 2 */

typedef struct Record {
        PackKind kind;
        RoamId id;
        const uint8_t *data;
        uint32_t len;
} Record;

static void pack(const uint8_t *data, size_t size) {
        PackReader r;
        if (pack_reader_init(&r, data, size, MAX_OBJECT_FRAME, MAX_CHUNK_FRAME) < 0)
                return;
        /* the header as read is the header as given, within the bounds */
        if (size < PACK_HEADER || memcmp(data, PACK_MAGIC, 8) != 0 || r.n_objects != get_le32(data + 8) ||
            r.n_chunks != get_le32(data + 12) || r.flags != get_le32(data + 16) || r.n_objects > PACK_MAX_OBJECTS ||
            r.n_chunks > PACK_MAX_CHUNKS || (r.flags & ~PACK_FLAGS_KNOWN))
                abort();
        uint32_t total = r.n_objects + r.n_chunks;
        Record *recs = malloc((total ? total : 1) * sizeof *recs);
        if (!recs)
                abort();
        size_t consumed = PACK_HEADER, n = 0;
        int k;
        Record c;
        while ((k = pack_reader_next(&r, &c.kind, &c.id, &c.data, &c.len)) > 0) {
                /* records in order, objects first, within the body and their bound */
                if (n >= total || c.kind != (n < r.n_objects ? PACK_OBJECT : PACK_CHUNK) || id_is_null(&c.id) ||
                    c.len == 0 || c.len > (c.kind == PACK_OBJECT ? MAX_OBJECT_FRAME : MAX_CHUNK_FRAME) ||
                    c.data != data + consumed + WIRE_RECORD_HEADER || consumed + WIRE_RECORD_HEADER + c.len > size ||
                    memcmp(c.id.b, data + consumed, ID_SIZE) != 0 || r.seen != n + 1)
                        abort();
                consumed += WIRE_RECORD_HEADER + c.len;
                recs[n++] = c;
        }
        if (k < 0) {
                /* an error is never the clean end */
                if (n == total && consumed == size)
                        abort();
                free(recs);
                return;
        }
        /* a clean end: every announced record, every byte */
        if (n != total || consumed != size || r.left != 0)
                abort();
        if (pack_reader_next(&r, &c.kind, &c.id, &c.data, &c.len) != 0)
                abort(); /* the end stays the end */

        /* the same pack read as it comes, in pieces of 1 to 256 bytes: the
         * same records in the same order, -EAGAIN only while bytes are missing */
        PackReader g;
        size_t given = PACK_HEADER, step = 0, got = 0;
        if (pack_reader_init(&g, data, given, MAX_OBJECT_FRAME, MAX_CHUNK_FRAME) < 0)
                abort();
        for (;;) {
                k = pack_reader_next_ready(&g, &c.kind, &c.id, &c.data, &c.len);
                if (k == -EAGAIN) {
                        if (given == size)
                                abort(); /* all here: nothing can be missing */
                        size_t more = 1 + data[step++ % size] % 256;
                        more = MIN(more, size - given);
                        pack_reader_more(&g, more);
                        given += more;
                        continue;
                }
                if (k == 0)
                        break;
                if (k < 0 || got >= n || c.kind != recs[got].kind || !id_equal(&c.id, &recs[got].id) ||
                    c.data != recs[got].data || c.len != recs[got].len)
                        abort();
                got++;
        }
        if (got != n)
                abort();

        /* the records, written again, are the input */
        PackWriter w;
        if (pack_writer_init(&w, 0) < 0)
                abort();
        for (size_t i = 0; i < n; i++)
                if (pack_writer_add(&w, recs[i].kind, &recs[i].id, recs[i].data, recs[i].len) < 0)
                        abort();
        if (w.n_chunks > 0) {
                /* an object after a chunk is refused and appends nothing */
                size_t before = w.len;
                if (pack_writer_add(&w, PACK_OBJECT, &recs[n - 1].id, recs[n - 1].data, recs[n - 1].len) !=
                            -EINVAL ||
                    w.len != before)
                        abort();
        }
        pack_writer_finish(&w, r.flags);
        if (w.len != size || memcmp(w.buf, data, size) != 0 || w.n_objects != r.n_objects ||
            w.n_chunks != r.n_chunks)
                abort();
        pack_writer_done(&w);
        free(recs);
}

static void request(const uint8_t *data, size_t size) {
        PackRequest p;
        memset(&p, 0x5a, sizeof p);
        if (pack_request_parse(data, size, &p) < 0) {
                if (p.want.b[0] != 0x5a || p.n_have != (size_t) 0x5a5a5a5a5a5a5a5aull)
                        abort(); /* written on failure */
                return;
        }
        if (size > API_REF_BODY_MAX || id_is_null(&p.want) || p.n_have > API_PACK_HAVE_MAX ||
            p.max_bytes < (1u << 20) || p.max_bytes > PACK_MAX_BYTES)
                abort();
        for (size_t i = 0; i < p.n_have; i++)
                if (id_is_null(&p.have[i]))
                        abort();
        if (p.n_bases > PAGE_CHUNK_MAX_BASES)
                abort();
        for (size_t i = 0; i < p.n_bases; i++)
                if (id_is_null(&p.bases[i]))
                        abort();
}

static void object(const uint8_t *data, size_t size) {
        void *plain = (void *) 0x1, *z = NULL, *again = NULL;
        size_t len = 12345, zlen, len2;
        if (pack_object_decompress(data, size, MAX_OBJECT, &plain, &len) < 0) {
                if (plain != (void *) 0x1 || len != 12345)
                        abort(); /* written on failure */
                return;
        }
        if (len > MAX_OBJECT || !plain)
                abort();
        /* what comes out goes back in and out unchanged */
        if (pack_object_compress(plain, len, &z, &zlen) < 0 ||
            pack_object_decompress(z, zlen, MAX_OBJECT, &again, &len2) < 0 || len2 != len ||
            memcmp(again, plain, len) != 0)
                abort();
        free(again);
        free(z);
        free(plain);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        uint8_t mode = data[0];
        data++;
        size--;
        switch (mode % 3) {
        case 0:
                pack(data, size);
                break;
        case 1:
                request(data, size);
                break;
        case 2:
                object(data, size);
                break;
        }
        err_clear();
        return 0;
}
