/* SPDX-License-Identifier: MIT */
#include "pack.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "../basic/util.h"
#include "wire.h"

int pack_reader_init(PackReader *r, const void *body, size_t len, size_t max_object_frame, size_t max_chunk_frame) {
        *r = (PackReader){ .max_object_frame = max_object_frame, .max_chunk_frame = max_chunk_frame };
        const uint8_t *p = body;
        if (len < PACK_HEADER || memcmp(p, PACK_MAGIC, 8) != 0)
                return -EBADMSG;
        r->n_objects = get_le32(p + 8);
        r->n_chunks = get_le32(p + 12);
        r->flags = get_le32(p + 16);
        if (r->n_objects > PACK_MAX_OBJECTS || r->n_chunks > PACK_MAX_CHUNKS || (r->flags & ~PACK_FLAGS_KNOWN) ||
            ((r->flags & PACK_DELTA) && !(r->flags & PACK_PAGED)))
                return -EBADMSG;
        r->p = p + PACK_HEADER;
        r->left = len - PACK_HEADER;
        return 0;
}

void pack_reader_more(PackReader *r, size_t more) {
        r->left += more;
}

/* partial: a record not all here yet is -EAGAIN, and the end is not
 * checked for bytes after it */
static int reader_next(PackReader *r, bool partial, PackKind *ret_kind, RoamId *ret_id, const uint8_t **ret_data,
                       uint32_t *ret_len) {
        uint32_t total = r->n_objects + r->n_chunks;
        if (r->seen == total)
                return r->left == 0 || partial ? 0 : -EBADMSG;
        PackKind kind = r->seen < r->n_objects ? PACK_OBJECT : PACK_CHUNK;
        size_t max = kind == PACK_OBJECT ? r->max_object_frame : r->max_chunk_frame;
        if (r->left < WIRE_RECORD_HEADER)
                return partial ? -EAGAIN : -EBADMSG;
        uint32_t n = get_le32(r->p + ID_SIZE);
        if (n == 0 || n > max)
                return -EBADMSG;
        if (n > r->left - WIRE_RECORD_HEADER)
                return partial ? -EAGAIN : -EBADMSG;
        memcpy(ret_id->b, r->p, ID_SIZE);
        if (id_is_null(ret_id))
                return -EBADMSG;
        *ret_kind = kind;
        *ret_data = r->p + WIRE_RECORD_HEADER;
        *ret_len = n;
        r->p += WIRE_RECORD_HEADER + n;
        r->left -= WIRE_RECORD_HEADER + n;
        r->seen++;
        return 1;
}

int pack_reader_next(PackReader *r, PackKind *ret_kind, RoamId *ret_id, const uint8_t **ret_data, uint32_t *ret_len) {
        return reader_next(r, false, ret_kind, ret_id, ret_data, ret_len);
}

int pack_reader_next_ready(PackReader *r, PackKind *ret_kind, RoamId *ret_id, const uint8_t **ret_data,
                           uint32_t *ret_len) {
        return reader_next(r, true, ret_kind, ret_id, ret_data, ret_len);
}

int pack_writer_init(PackWriter *w, size_t max) {
        *w = (PackWriter){ .max = max && max < PACK_MAX_BYTES ? max : PACK_MAX_BYTES };
        w->cap = 64 * 1024;
        w->buf = malloc(w->cap);
        if (!w->buf)
                return -ENOMEM;
        memset(w->buf, 0, PACK_HEADER);
        w->len = PACK_HEADER;
        return 0;
}

int pack_writer_add(PackWriter *w, PackKind kind, const RoamId *id, const void *data, size_t len) {
        if (kind == PACK_OBJECT && w->n_chunks > 0)
                return -EINVAL;
        if (len == 0 || len > UINT32_MAX || id_is_null(id))
                return -EINVAL;
        if ((kind == PACK_OBJECT && w->n_objects >= PACK_MAX_OBJECTS) ||
            (kind == PACK_CHUNK && w->n_chunks >= PACK_MAX_CHUNKS) ||
            w->len + WIRE_RECORD_HEADER + len > w->max)
                return -E2BIG;
        size_t cap = w->cap;
        int r = wire_append_record(&w->buf, &w->len, &cap, id, data, (uint32_t) len);
        w->cap = cap;
        if (r < 0)
                return r;
        if (kind == PACK_OBJECT) {
                w->n_objects++;
                w->object_bytes += WIRE_RECORD_HEADER + len;
        } else
                w->n_chunks++;
        return 0;
}

void pack_writer_finish(PackWriter *w, uint32_t flags) {
        memcpy(w->buf, PACK_MAGIC, 8);
        put_le32(w->buf + 8, w->n_objects);
        put_le32(w->buf + 12, w->n_chunks);
        put_le32(w->buf + 16, flags);
}

void pack_writer_done(PackWriter *w) {
        free(w->buf);
        *w = (PackWriter){ 0 };
}

int pack_object_compress(const void *data, size_t len, void **ret, size_t *ret_len) {
        size_t cap = ZSTD_compressBound(len);
        void *out = malloc(cap);
        if (!out)
                return -ENOMEM;
        size_t n = ZSTD_compress(out, cap, data, len, 3);
        if (ZSTD_isError(n)) {
                free(out);
                return -EIO;
        }
        *ret = out;
        *ret_len = n;
        return 0;
}

int pack_object_decompress(const void *frame, size_t len, size_t max, void **ret, size_t *ret_len) {
        unsigned long long size = ZSTD_getFrameContentSize(frame, len);
        if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > max ||
            ZSTD_findFrameCompressedSize(frame, len) != len)
                return -EBADMSG; /* one frame, nothing after it */
        void *out = malloc(size ? size : 1);
        if (!out)
                return -ENOMEM;
        size_t n = ZSTD_decompress(out, size, frame, len);
        if (ZSTD_isError(n) || n != size) {
                free(out);
                return -EBADMSG;
        }
        *ret = out;
        *ret_len = n;
        return 0;
}
