/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Index *x = NULL;
        if (index_parse(data, size, &x) < 0)
                return 0;
        /* a parsed index must serialize back to the same bytes */
        void *out = NULL;
        size_t len = 0;
        if (index_serialize(x, &out, &len) < 0 || len != size || memcmp(out, data, size))
                abort();
        for (uint64_t i = 0; i < x->n_chunks; i++)
                if (index_chunk_len(x, i) == 0 || index_chunk_len(x, i) > x->chunk_size)
                        abort();
        free(out);
        index_free(x);
        return 0;
}
