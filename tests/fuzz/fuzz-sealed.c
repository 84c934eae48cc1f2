/* SPDX-License-Identifier: MIT */
/* A sealed chunk or object as an encrypted store reads it from its disk
 * (crypto/data-key.h): seal_header_parse(), then unseal() of both kinds
 * under a fixed key and id. Only bytes sealed under that key and id may
 * open, and then into exactly len - SEAL_OVERHEAD bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/data-key.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        SealHeader h;
        if (seal_header_parse(data, size, &h) == 0 &&
            (size < SEAL_OVERHEAD || h.ciphertext_len != size - SEAL_OVERHEAD || h.tag != data + size - SEAL_TAG_SIZE))
                abort();
        static DataKeys *k;
        if (!k) {
                uint8_t dk[DATA_KEY_SIZE];
                for (size_t i = 0; i < sizeof dk; i++)
                        dk[i] = (uint8_t) (0xa0 + i);
                if (data_keys_new(dk, &k) < 0)
                        abort();
        }
        RoamId id;
        for (size_t i = 0; i < sizeof id.b; i++)
                id.b[i] = (uint8_t) i;
        uint8_t *out = malloc(size + 1);
        if (!out)
                return 0;
        for (int kind = SEAL_CHUNK; kind <= SEAL_OBJECT; kind++) {
                size_t n;
                if (unseal(k, NULL, (SealKind) kind, &id, data, size, out, size, &n) == 0 && n + SEAL_OVERHEAD != size)
                        abort();
        }
        free(out);
        return 0;
}
