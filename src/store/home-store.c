/* SPDX-License-Identifier: MIT */
#include "home-store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../crypto/home-keys.h"
#include "location.h"

static void wipe_freep(char **p) {
        if (*p) {
                explicit_bzero(*p, strlen(*p));
                free(*p);
        }
}

static bool config_exists(const char *dir) {
        if (!strncmp(dir, "rados:", 6))
                return true;
        _cleanup_free_ char *cfg = path_join(dir, "config");
        return cfg && access(cfg, F_OK) == 0;
}

int home_store_unlock(const char *home, Store *s, unsigned flags) {
        if (store_is_unlocked(s))
                return 0;
        uint8_t dk[DATA_KEY_SIZE];
        int r = home_keys_unlocked(home, dk);
        if (r == -ENOKEY) {
                const char *pf = passphrase_file_default(NULL);
                if (!pf || ((flags & HOME_STORE_SERVER_KEY) && !home_keys_have_data_key(home)))
                        return r; /* the detail: run 'roam unlock' */
                _cleanup_(wipe_freep) char *pass = NULL;
                size_t len;
                r = passphrase_from_file(pf, &pass, &len);
                if (r >= 0)
                        r = home_keys_unlock(home, pass, len, dk);
        }
        if (r >= 0)
                r = store_unlock(s, dk);
        explicit_bzero(dk, sizeof dk);
        return r;
}

int home_store_open(const char *home, const StoreOptions *o, unsigned flags, Store **ret) {
        _cleanup_free_ char *dir = NULL;
        int r = store_location(home, &dir);
        if (r < 0)
                return r;
        bool exists = config_exists(dir);
        if ((flags & HOME_STORE_LAPTOP) && !exists && !home_keys_encrypted(home)) {
                /* a new laptop: encrypted by default */
                const char *pf = passphrase_file_default(NULL);
                if (!pf)
                        return err_set(-ENOKEY, "laptop home '%s' has no passphrase yet: run 'roam laptop init' "
                                                "once (or 'roam laptop init --no-encryption' for a plain home)",
                                       home);
                _cleanup_(wipe_freep) char *pass = NULL;
                size_t len;
                r = passphrase_from_file(pf, &pass, &len);
                if (r >= 0)
                        r = home_keys_init(home, pass, len);
                if (r < 0)
                        return r;
        }
        StoreOptions so = o ? *o : (StoreOptions){};
        so.encrypted = home_keys_encrypted(home);
        Store *s;
        r = store_open(dir, &so, &s);
        if (r < 0)
                return r;
        if (so.encrypted && !store_is_encrypted(s)) {
                store_free(s);
                return err_set(-EUCLEAN, "home '%s' has a home key but its store '%s' is not encrypted (it was "
                                         "made before the key; move its sessions online and start a new home)",
                               home, dir);
        }
        if (store_is_encrypted(s)) {
                r = home_store_unlock(home, s, flags);
                if (r < 0 && !(r == -ENOKEY && (flags & HOME_STORE_ALLOW_LOCKED))) {
                        store_free(s);
                        return r;
                }
                err_clear();
        }
        *ret = s;
        return 0;
}
