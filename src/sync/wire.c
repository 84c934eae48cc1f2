/* SPDX-License-Identifier: MIT */
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/macro.h"
#include "../basic/util.h"

int wire_id_list_check(const void *body, size_t len, size_t max, size_t *ret_n) {
        if (len % ID_SIZE)
                return -EBADMSG;
        size_t n = len / ID_SIZE;
        if (n > max)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++)
                if (id_is_null(wire_id_at(body, i)))
                        return -EBADMSG;
        *ret_n = n;
        return 0;
}

void wire_reader_init(WireReader *r, const void *body, size_t len, size_t max_record) {
        *r = (WireReader){ .p = body, .left = len, .max_record = max_record };
}

int wire_reader_next(WireReader *r, RoamId *ret_id, const uint8_t **ret_data, uint32_t *ret_len) {
        if (r->left == 0)
                return 0;
        if (r->left < WIRE_RECORD_HEADER || r->count >= WIRE_MAX_RECORDS)
                return -EBADMSG;
        uint32_t n = get_le32(r->p + ID_SIZE);
        if (n == 0 || n > r->max_record || n > r->left - WIRE_RECORD_HEADER)
                return -EBADMSG;
        memcpy(ret_id->b, r->p, ID_SIZE);
        *ret_data = r->p + WIRE_RECORD_HEADER;
        *ret_len = n;
        r->p += WIRE_RECORD_HEADER + n;
        r->left -= WIRE_RECORD_HEADER + n;
        r->count++;
        return 1;
}

int wire_append_record(uint8_t **buf, size_t *len, size_t *cap, const RoamId *id, const void *data, uint32_t n) {
        size_t need = *len + WIRE_RECORD_HEADER + n;
        if (need > *cap) {
                size_t nc = *cap ? *cap : 1 << 20;
                while (nc < need)
                        nc *= 2;
                uint8_t *nb = realloc(*buf, nc);
                if (!nb)
                        return -ENOMEM;
                *buf = nb;
                *cap = nc;
        }
        memcpy(*buf + *len, id->b, ID_SIZE);
        put_le32(*buf + *len + ID_SIZE, n);
        memcpy(*buf + *len + WIRE_RECORD_HEADER, data, n);
        *len = need;
        return 0;
}

size_t wire_record_copy(void *out, size_t max, const uint8_t head[WIRE_RECORD_HEADER], const void *data, size_t len,
                        size_t off) {
        size_t k = MIN(max, WIRE_RECORD_HEADER + len - off);
        if (off < WIRE_RECORD_HEADER) {
                k = MIN(k, WIRE_RECORD_HEADER - off);
                memcpy(out, head + off, k);
        } else
                memcpy(out, (const uint8_t *) data + off - WIRE_RECORD_HEADER, k);
        return k;
}
