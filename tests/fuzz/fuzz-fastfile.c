/* SPDX-License-Identifier: MIT */
/* The fast-hash sidecar parser (blob_fast_parse): a session's RAM and overlay
 * sidecars are read back from disk before every checkpoint and pre-copy. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/hash.h"
#include "store/blob.h"

static void check(const uint8_t *data, size_t size) {
        BlobFast *f = NULL;
        if (blob_fast_parse(data, size, &f) < 0) {
                if (f)
                        abort(); /* ret_* written only on success */
                return;
        }
        /* a parsed sidecar must serialize back to the same bytes */
        void *out = NULL;
        size_t len = 0;
        if (blob_fast_serialize(f, &out, &len) < 0 || len != size || memcmp(out, data, size))
                abort();
        if (f->count != f->blob_size / f->chunk_size + (f->blob_size % f->chunk_size ? 1 : 0))
                abort();
        free(out);
        blob_fast_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        check(data, size);
        /* again with the trailing checksum made right, so that the fuzzer gets
         * past it to the field checks */
        if (size >= ID_SIZE) {
                uint8_t *copy = malloc(size);
                if (!copy)
                        return 0;
                memcpy(copy, data, size);
                RoamId sum;
                sha256(copy, size - ID_SIZE, &sum);
                memcpy(copy + size - ID_SIZE, sum.b, ID_SIZE);
                check(copy, size);
                free(copy);
        }
        return 0;
}
