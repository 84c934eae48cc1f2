/* SPDX-License-Identifier: MIT */
/* An object record as a delta (src/sync/obj-delta.h, docs/sync-protocol.md
 * "Objects as deltas"): parsed with 2 bases and a 1 MiB bound; a parsed one
 * is applied to a fake base of 64 KiB, and what comes out is encoded against
 * it again and must come back the same. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sync/obj-delta.h"

#define MAX_LEN (1u << 20)
#define BASE_LEN (64u * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static uint8_t base[BASE_LEN];
        if (base[1] == 0)
                for (size_t i = 0; i < BASE_LEN; i++)
                        base[i] = (uint8_t) (i * 7 + 1);
        ObjDelta d;
        memset(&d, 0x5a, sizeof d);
        if (obj_delta_parse(data, size, 2, MAX_LEN, &d) < 0)
                return 0;
        if (d.base >= 2 || d.len == 0 || d.len > MAX_LEN || d.copy_end > d.len || d.copied > d.len ||
            d.literal + d.literal_len != data + size || d.runs != data + OBJ_DELTA_HEADER ||
            !obj_delta_is(data, size))
                abort();
        uint8_t *out = malloc(d.len);
        if (!out)
                return 0;
        int r = obj_delta_apply(&d, base, BASE_LEN, out);
        if (r == -ESTALE) {
                if (d.copy_end <= BASE_LEN)
                        abort();
                free(out);
                return 0;
        }
        if (r < 0)
                abort();
        /* again, as the sender would make it: the same object back */
        uint8_t *e = NULL;
        size_t elen;
        r = obj_delta_encode(base, BASE_LEN, out, d.len, 1, SIZE_MAX, &e, &elen);
        if (r < 0)
                abort();
        ObjDelta d2;
        uint8_t *back = malloc(d.len);
        if (!back || obj_delta_parse(e, elen, 2, MAX_LEN, &d2) < 0 || d2.len != d.len ||
            obj_delta_apply(&d2, base, BASE_LEN, back) < 0 || memcmp(back, out, d.len) != 0)
                abort();
        free(back);
        free(e);
        free(out);
        return 0;
}
