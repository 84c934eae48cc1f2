/* SPDX-License-Identifier: MIT */
#include "chunk-frame.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "../basic/util.h"
#include "store.h"

#define FRAME_MAGIC 0xFD2FB528u
#define FHD_SINGLE_SEGMENT_FCS4 0xa0 /* FCS flag 2 (4 bytes), single segment */

static void put_le24(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) v;
        p[1] = (uint8_t) (v >> 8);
        p[2] = (uint8_t) (v >> 16);
}

size_t chunk_frame_raw(void *out, size_t cap, const void *data, size_t len) {
        if (len == 0 || len > STORE_CHUNK_SIZE_MAX || cap < CHUNK_FRAME_RAW_SIZE(len))
                return 0;
        uint8_t *o = out;
        const uint8_t *in = data;
        put_le32(o, FRAME_MAGIC);
        o[4] = FHD_SINGLE_SEGMENT_FCS4;
        put_le32(o + 5, (uint32_t) len);
        size_t at = CHUNK_FRAME_RAW_HEADER;
        for (size_t done = 0; done < len;) {
                size_t n = len - done < CHUNK_FRAME_RAW_BLOCK ? len - done : CHUNK_FRAME_RAW_BLOCK;
                bool last = done + n == len;
                put_le24(o + at, (uint32_t) (n << 3) | (last ? 1u : 0u)); /* type 0: raw */
                memcpy(o + at + 3, in + done, n);
                at += 3 + n;
                done += n;
        }
        return at;
}

bool chunk_frame_is_raw(const void *frame, size_t len) {
        const uint8_t *p = frame;
        if (len < 5 || get_le32(p) != FRAME_MAGIC)
                return false;
        /* one frame that zstd takes (window, sizes), nothing after it */
        if (ZSTD_findFrameCompressedSize(frame, len) != len)
                return false;
        uint8_t fhd = p[4];
        unsigned fcs_flag = fhd >> 6, single = (fhd >> 5) & 1, checksum = (fhd >> 2) & 1, dict_flag = fhd & 3;
        if (fhd & 0x08) /* reserved bit */
                return false;
        static const size_t dict_sizes[4] = { 0, 1, 2, 4 };
        static const size_t fcs_sizes[4] = { 0, 2, 4, 8 };
        size_t at = 5 + (single ? 0 : 1) + dict_sizes[dict_flag] +
                    (fcs_flag == 0 && single ? 1 : fcs_sizes[fcs_flag]);
        for (;;) {
                if (len < at || len - at < 3)
                        return false;
                uint32_t h = (uint32_t) p[at] | (uint32_t) p[at + 1] << 8 | (uint32_t) p[at + 2] << 16;
                uint32_t type = (h >> 1) & 3, size = h >> 3;
                if (type != 0 || len - at - 3 < size)
                        return false;
                at += 3 + size;
                if (h & 1)
                        break;
        }
        return len - at == (checksum ? 4u : 0u);
}

int chunk_frame_encode(ZSTD_CCtx *cctx, int level, const void *data, size_t len, void *out, size_t cap,
                       bool *ret_raw) {
        if (len == 0 || len > STORE_CHUNK_SIZE_MAX || cap < ZSTD_compressBound(len))
                return -EINVAL;
        size_t z = ZSTD_compressCCtx(cctx, out, cap, data, len, level);
        if (ZSTD_isError(z))
                return -EIO;
        /* not worth decoding on every read: store it raw */
        if (z > len - len / 32) {
                z = chunk_frame_raw(out, cap, data, len);
                if (z == 0)
                        return -EIO;
                *ret_raw = true;
        } else
                *ret_raw = false;
        return (int) z;
}
