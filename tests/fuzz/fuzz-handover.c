/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/api-session.h"
#include "sync/page-chunk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        for (int need = 0; need < 2; need++) {
                Handover h;
                if (parse_handover(data, size, need, &h) < 0)
                        continue;
                if (h.epoch < 1 || (need && h.from_epoch < 0) || h.from_epoch < -1 || strlen(h.checkpoint) != 64)
                        abort();
        }
        /* a move-in that may bring its remainder */
        MoveIn m;
        if (parse_move_in(data, size, "s1", &m) == 0) {
                if (m.ho.epoch < 1 || strlen(m.ho.checkpoint) != 64 || m.bases > PAGE_CHUNK_MAX_BASES)
                        abort();
                if (m.upload) {
                        /* the upload is the rest of the body, after the line */
                        if (m.upload < data || m.upload + m.upload_len != data + size || m.upload == data ||
                            m.upload[-1] != '\n')
                                abort();
                        if (strncmp(m.ref, "sessions/", 9) || !strstr(m.ref, "/s1/in-e"))
                                abort();
                } else if (m.ref[0] || m.upload_len || m.bases)
                        abort();
        }
        return 0;
}
