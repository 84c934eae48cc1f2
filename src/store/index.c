/* SPDX-License-Identifier: MIT */
#include "index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/macro.h"
#include "../basic/util.h"
#include "store.h"

static bool chunk_size_ok(uint32_t cs) {
        return cs >= STORE_CHUNK_SIZE_MIN && cs <= STORE_CHUNK_SIZE_MAX && (cs & (cs - 1)) == 0;
}

int index_new(uint32_t chunk_size, uint64_t blob_size, Index **ret) {
        if (!chunk_size_ok(chunk_size))
                return -EINVAL;
        uint64_t n = blob_size / chunk_size + (blob_size % chunk_size ? 1 : 0);
        if (n > INDEX_MAX_CHUNKS)
                return -EFBIG;
        Index *x = calloc(1, sizeof *x);
        if (!x)
                return -ENOMEM;
        x->chunk_size = chunk_size;
        x->blob_size = blob_size;
        x->n_chunks = n;
        x->ids = calloc(n ? n : 1, sizeof(RoamId));
        if (!x->ids) {
                free(x);
                return -ENOMEM;
        }
        *ret = x;
        return 0;
}

void index_free(Index *x) {
        if (!x)
                return;
        free(x->ids);
        free(x);
}

uint32_t index_chunk_len(const Index *x, uint64_t i) {
        uint64_t off = i * x->chunk_size;
        uint64_t left = x->blob_size - off;
        return (uint32_t) MIN(left, (uint64_t) x->chunk_size);
}

int index_serialize(const Index *x, void **ret, size_t *ret_len) {
        size_t len = INDEX_HEADER_SIZE + (size_t) x->n_chunks * ID_SIZE;
        uint8_t *b = malloc(len);
        if (!b)
                return -ENOMEM;
        memcpy(b, INDEX_MAGIC, 8); /* includes the NUL */
        put_le32(b + 8, 1);
        put_le32(b + 12, x->chunk_size);
        put_le64(b + 16, x->blob_size);
        put_le64(b + 24, x->n_chunks);
        memcpy(b + INDEX_HEADER_SIZE, x->ids, (size_t) x->n_chunks * ID_SIZE);
        *ret = b;
        *ret_len = len;
        return 0;
}

int index_is_index(const void *data, size_t len) {
        return len >= 8 && memcmp(data, INDEX_MAGIC, 8) == 0;
}

int index_parse(const void *data, size_t len, Index **ret) {
        const uint8_t *b = data;
        if (len < INDEX_HEADER_SIZE || !index_is_index(data, len))
                return -EBADMSG;
        if (get_le32(b + 8) != 1)
                return -EPROTONOSUPPORT;
        uint32_t cs = get_le32(b + 12);
        uint64_t size = get_le64(b + 16);
        uint64_t n = get_le64(b + 24);
        if (!chunk_size_ok(cs) || n > INDEX_MAX_CHUNKS)
                return -EBADMSG;
        if (n != size / cs + (size % cs ? 1 : 0))
                return -EBADMSG;
        if ((len - INDEX_HEADER_SIZE) / ID_SIZE != n || (len - INDEX_HEADER_SIZE) % ID_SIZE)
                return -EBADMSG;
        Index *x;
        int r = index_new(cs, size, &x);
        if (r < 0)
                return r == -EFBIG ? -EBADMSG : r;
        memcpy(x->ids, b + INDEX_HEADER_SIZE, (size_t) n * ID_SIZE);
        *ret = x;
        return 0;
}
