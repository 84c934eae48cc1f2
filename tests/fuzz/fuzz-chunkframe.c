/* SPDX-License-Identifier: MIT */
/* How chunks are stored (src/store/chunk-frame.h): chunk_frame_is_raw() on
 * any bytes agrees with zstd about where the frame ends, and any bytes
 * written as a raw frame come back from zstd's decoder unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "basic/error.h"
#include "store/chunk-frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (chunk_frame_is_raw(data, size)) {
                /* one whole frame, of raw blocks: zstd sees the same end */
                if (ZSTD_findFrameCompressedSize(data, size) != size)
                        abort();
        }
        if (size == 0)
                return 0;
        size_t cap = CHUNK_FRAME_RAW_SIZE(size);
        uint8_t *frame = malloc(cap), *out = malloc(size);
        if (!frame || !out)
                abort();
        size_t n = chunk_frame_raw(frame, cap, data, size);
        if (size <= (4u << 20)) {
                if (n != cap || !chunk_frame_is_raw(frame, n) || ZSTD_getFrameContentSize(frame, n) != size ||
                    ZSTD_decompress(out, size, frame, n) != size || memcmp(out, data, size) != 0)
                        abort();
        } else if (n != 0)
                abort();
        free(frame);
        free(out);
        err_clear();
        return 0;
}
