/* SPDX-License-Identifier: MIT */
/* What roam parses of a terminal server (src/desk/proto.c, src/guest/image.c):
 * the desk helper's answer, a tar header from the transfer disk, a layer's
 * qcow2 header. The first byte picks the parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "desk/proto.h"
#include "guest/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        const uint8_t *p = data + 1;
        size_t n = size - 1;
        switch (data[0] % 3) {
        case 0: {
                DeskAnswer a = { 0 };
                if (desk_answer_parse((const char *) p, n, &a) >= 0) {
                        if (a.ok == (a.error != NULL))
                                abort();
                        for (size_t i = 0; i < a.n; i++) {
                                if (!a.pairs[i].key[0] || strlen(a.pairs[i].value) > DESK_VALUE_MAX)
                                        abort();
                                char buf[64];
                                (void) desk_word_get(a.pairs[i].value, "pid", buf, sizeof buf);
                        }
                        uint64_t v;
                        (void) desk_answer_u64(&a, "bytes", &v);
                }
                desk_answer_done(&a);
                break;
        }
        case 1: {
                uint8_t block[DESK_TAR_BLOCK] = { 0 };
                memcpy(block, p, n < sizeof block ? n : sizeof block);
                DeskTarEntry e;
                char why[256];
                int r = desk_tar_header_parse(block, &e, why, sizeof why);
                if (r < 0 && !why[0])
                        abort();
                if (r == 0) {
                        if (strnlen(e.name, sizeof e.name) >= sizeof e.name || !e.name[0])
                                abort();
                        uint8_t again[DESK_TAR_BLOCK];
                        if (!e.dir && strlen(e.name) < DESK_TAR_NAME_MAX && e.size < (1ull << 33) &&
                            desk_tar_header_build(e.name, e.size, e.mode, again) == 0) {
                                DeskTarEntry f;
                                if (desk_tar_header_parse(again, &f, why, sizeof why) != 0 || f.size != e.size ||
                                    strcmp(f.name, e.name))
                                        abort();
                        }
                }
                break;
        }
        case 2: {
                char name[IMAGE_BACKING_MAX + 1], why[256];
                int r = image_qcow2_backing(p, n, name, sizeof name, why, sizeof why);
                if (r < 0 && !why[0])
                        abort();
                if (r == 1) {
                        if (strlen(name) > IMAGE_BACKING_MAX)
                                abort();
                        RoamId id;
                        (void) image_layer_backing_id(name, &id);
                }
                break;
        }
        }
        return 0;
}
