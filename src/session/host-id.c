/* SPDX-License-Identifier: MIT */
#include "host-id.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../basic/base64.h"
#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/hash.h"
#include "../basic/macro.h"
#include "../crypto/request-sig.h"

int host_id_get(const char *home, char ret[static HOST_ID_LEN + 1]) {
        _cleanup_free_ char *path = path_join(home, HOST_ID_FILE);
        if (!path)
                return -ENOMEM;
        for (int attempt = 0; attempt < 2; attempt++) {
                _cleanup_free_ char *text = NULL;
                size_t len;
                int r = read_full_file(path, 256, &text, &len);
                if (r >= 0) {
                        text[strcspn(text, "\n")] = 0;
                        if (!hex_is_exact(text, HOST_ID_LEN))
                                return err_set(-EBADMSG, "'%s' is not a host id (%d hex digits)", path, HOST_ID_LEN);
                        memcpy(ret, text, HOST_ID_LEN + 1);
                        return 0;
                }
                if (r != -ENOENT)
                        return err_set(r, "cannot read '%s': %s", path, strerror(-r));
                uint8_t raw[HOST_ID_LEN / 2];
                char hex[HOST_ID_LEN + 2];
                r = random_bytes(raw, sizeof raw);
                if (r < 0)
                        return r;
                hex_encode(raw, sizeof raw, hex);
                hex[HOST_ID_LEN] = '\n';
                r = mkdir_p(home, 0755);
                if (r >= 0)
                        r = write_file_atomic(path, hex, HOST_ID_LEN + 1, 0644);
                if (r < 0)
                        return err_set(r, "cannot write '%s': %s", path, strerror(-r));
        }
        return -EIO;
}
