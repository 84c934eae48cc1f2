/* SPDX-License-Identifier: MIT */
#include "location.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"

static bool spec_ok(const char *s, size_t len) {
        if (len == 0 || len > STORE_LOCATION_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return false;
        return true;
}

int store_location(const char *home, char **ret) {
        const char *e = getenv("ROAM_STORE");
        if (e && *e) {
                if (!spec_ok(e, strlen(e)))
                        return err_set(-EINVAL, "$ROAM_STORE is not a store (a directory or rados:POOL[?conf=FILE])");
                char *c = strdup(e);
                if (!c)
                        return -ENOMEM;
                *ret = c;
                return 0;
        }
        _cleanup_free_ char *f = path_join(home, STORE_LOCATION_FILE);
        if (!f)
                return -ENOMEM;
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_full_file(f, STORE_LOCATION_MAX + 2, &text, &len);
        if (r == -ENOENT) {
                char *d = path_join(home, "store");
                if (!d)
                        return -ENOMEM;
                *ret = d;
                return 0;
        }
        if (r == -EFBIG)
                r = -EBADMSG;
        if (r >= 0 && len > 0 && text[len - 1] == '\n')
                text[--len] = 0;
        if (r >= 0 && (strlen(text) != len || !spec_ok(text, len)))
                r = -EBADMSG;
        if (r < 0)
                return err_set(r, "cannot read which store '%s' uses from '%s' (fix or remove the file)", home, f);
        *ret = TAKE_PTR(text);
        return 0;
}

int store_location_save(const char *home, const char *spec) {
        _cleanup_free_ char *f = path_join(home, STORE_LOCATION_FILE);
        _cleanup_free_ char *dflt = path_join(home, "store");
        if (!f || !dflt)
                return -ENOMEM;
        if (!spec || !*spec || !strcmp(spec, dflt)) {
                if (unlink(f) < 0 && errno != ENOENT)
                        return err_set(-errno, "cannot remove '%s': %m", f);
                return 0;
        }
        size_t len = strlen(spec);
        if (!spec_ok(spec, len))
                return err_set(-EINVAL, "store '%s' is not a directory or rados:POOL[?conf=FILE]", spec);
        _cleanup_free_ char *text = malloc(len + 2);
        if (!text)
                return -ENOMEM;
        memcpy(text, spec, len);
        text[len] = '\n';
        int r = write_file_atomic(f, text, len + 1, 0644);
        if (r < 0)
                return err_set(r, "cannot write '%s': %s", f, strerror(-r));
        return 0;
}
