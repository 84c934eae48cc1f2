/* SPDX-License-Identifier: MIT */
/* The binary bodies of the sync protocol (src/sync/wire.h) and the JSON body
 * of PUT /v1/refs (ref_update_parse). The first byte picks the parser:
 *   0  id list (/chunks/missing bound)   1  id list (/chunks/get bound)
 *   2  chunk stream                      3  ref update JSON */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/error.h"
#include "basic/util.h"
#include "daemon/api-store.h"
#include "sync/wire.h"

#define MAX_RECORD (64 * 1024 + 512) /* about the zstd bound of a 64 KiB chunk */

static void id_list(const uint8_t *data, size_t size, size_t max) {
        size_t n = 12345;
        if (wire_id_list_check(data, size, max, &n) < 0) {
                if (n != 12345)
                        abort(); /* written on failure */
                return;
        }
        if (n > max || n * ID_SIZE != size)
                abort();
        for (size_t i = 0; i < n; i++)
                if (id_is_null(wire_id_at(data, i)))
                        abort();
}

static void stream(const uint8_t *data, size_t size) {
        WireReader r;
        RoamId id;
        const uint8_t *p;
        uint32_t n;
        int k;
        size_t consumed = 0, len = 0, cap = 0;
        uint8_t *copy = NULL;
        wire_reader_init(&r, data, size, MAX_RECORD);
        while ((k = wire_reader_next(&r, &id, &p, &n)) > 0) {
                if (n == 0 || n > MAX_RECORD || p != data + consumed + WIRE_RECORD_HEADER ||
                    p + n > data + size || r.count > WIRE_MAX_RECORDS)
                        abort();
                consumed += WIRE_RECORD_HEADER + n;
                /* what the reader returns, written again, is the input */
                if (wire_append_record(&copy, &len, &cap, &id, p, n) < 0)
                        abort();
        }
        if (k == 0 && (consumed != size || len != size || (size && memcmp(copy, data, size))))
                abort();
        if (k < 0 && consumed >= size)
                abort();
        free(copy);
}

static void ref_update(const uint8_t *data, size_t size) {
        RefUpdate u;
        memset(&u, 0x5a, sizeof u);
        if (ref_update_parse(data, size, &u) < 0) {
                if (u.id.b[0] != 0x5a)
                        abort(); /* written on failure */
                return;
        }
        if (id_is_null(&u.id) || size > API_REF_BODY_MAX)
                abort();
        if (!u.conditional && !id_is_null(&u.old))
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        uint8_t mode = data[0];
        data++;
        size--;
        switch (mode % 4) {
        case 0:
                id_list(data, size, WIRE_MAX_IDS_MISSING);
                break;
        case 1:
                id_list(data, size, WIRE_MAX_IDS_GET);
                break;
        case 2:
                stream(data, size);
                break;
        case 3:
                ref_update(data, size);
                break;
        }
        err_clear();
        return 0;
}
