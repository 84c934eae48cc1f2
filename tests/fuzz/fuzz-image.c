/* SPDX-License-Identifier: MIT */
/* The parsers of src/guest/image.c and the profile hold line
 * (src/session/profile.c): an image manifest, an ext4 superblock and a
 * kernel's header from an image being imported, a hold file. The first
 * byte picks the parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guest/image.h"
#include "session/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        const uint8_t *p = data + 1;
        size_t n = size - 1;
        char why[256];
        switch (data[0] % 4) {
        case 0: {
                ImageInfo i = { 0 };
                if (image_manifest_parse(p, n, &i) >= 0) {
                        if ((!i.boot && !i.layer) || (i.append && strlen(i.append) > IMAGE_APPEND_MAX))
                                abort();
                        json_t *j = NULL;
                        if (image_manifest_build(&i, &j) < 0)
                                abort();
                        json_decref(j);
                }
                image_info_done(&i);
                break;
        }
        case 1: {
                uint64_t file_size = n >= 8 ? (uint64_t) p[0] << 32 | (uint64_t) p[1] << 24 | p[2] : 0;
                int r = image_check_ext4(n > 8 ? p + 8 : p, n > 8 ? n - 8 : 0, file_size, why, sizeof why);
                if (r < -1 && !why[0])
                        abort();
                if (strnlen(why, sizeof why) >= sizeof why)
                        abort();
                break;
        }
        case 2:
                if (image_check_kernel(p, n, n, why, sizeof why) < 0 && !why[0])
                        abort();
                break;
        case 3: {
                char session[NAME_MAX_LEN + 1];
                int64_t since;
                if (session_profile_hold_parse((const char *) p, n, session, &since) >= 0 &&
                    (!name_is_valid(session) || since < 0))
                        abort();
                break;
        }
        }
        return 0;
}
