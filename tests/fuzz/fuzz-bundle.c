/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/bundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size == 0)
                return 0;
        FILE *f = fmemopen((void *) data, size, "rb");
        if (!f)
                return 0;
        BundleReader *b = NULL;
        if (bundle_reader_new(f, size, &b) >= 0) {
                BundleRecord rec;
                int r, n = 0;
                while ((r = bundle_reader_next(b, &rec)) > 0) {
                        if ((rec.type == BUNDLE_OBJECT || rec.type == BUNDLE_CHUNK) && (!rec.data || rec.len == 0))
                                abort();
                        if (++n > 1000000)
                                abort();
                }
                bundle_reader_free(b);
        }
        fclose(f);
        return 0;
}
