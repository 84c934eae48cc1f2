/* SPDX-License-Identifier: MIT */
/* The key files of an encrypted laptop home (crypto/key-file.h): the home
 * key (home_key_parse(), then opened with a fixed passphrase when its KDF is
 * cheap enough to fuzz) and the wrapped data key (wrapped_key_parse(), then
 * opened with a fixed private key). Neither may crash or accept garbage. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/key-file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        HomeKey k;
        if (home_key_parse(data, size, &k) == 0) {
                if (size != HOME_KEY_SIZE || k.kdf.log2_n < 10 || k.kdf.log2_n > 20)
                        abort();
                uint8_t priv[X25519_KEY_SIZE];
                /* the seeds are sealed under this passphrase with N = 2^10 */
                if (k.kdf.log2_n <= 11 && k.kdf.r <= 8 && k.kdf.p == 1)
                        (void) home_key_open(&k, "fuzz passphrase", 15, priv);
        }
        WrappedKey w;
        if (wrapped_key_parse(data, size, &w) == 0) {
                if (size != WRAPPED_KEY_SIZE || (w.origin != KEY_ORIGIN_SERVER && w.origin != KEY_ORIGIN_LOCAL))
                        abort();
                uint8_t priv[X25519_KEY_SIZE], dk[DATA_KEY_SIZE];
                for (size_t i = 0; i < sizeof priv; i++)
                        priv[i] = (uint8_t) (i + 1);
                int r = wrapped_key_open(&w, priv, dk);
                if (r != 0 && r != -13 /* EACCES */ && r != -5 /* EIO */)
                        abort();
        }
        return 0;
}
