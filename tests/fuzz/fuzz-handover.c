/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/api-session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        for (int need = 0; need < 2; need++) {
                Handover h;
                if (parse_handover(data, size, need, &h) < 0)
                        continue;
                if (h.epoch < 1 || (need && h.from_epoch < 0) || h.from_epoch < -1 || strlen(h.checkpoint) != 64)
                        abort();
        }
        return 0;
}
