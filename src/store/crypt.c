/* SPDX-License-Identifier: MIT */
#include "crypt.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"

struct StoreCrypt {
        pthread_rwlock_t lock;
        DataKeys *keys; /* NULL: locked */
};

int store_crypt_config(const char *text) {
        for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
                size_t len = strcspn(p, "\n");
                if (len < 11 || strncmp(p, "encryption ", 11))
                        continue;
                static const char line[] = STORE_CRYPT_CONFIG_LINE;
                return len == sizeof line - 1 && !strncmp(p, line, len) ? 1 : -EBADMSG;
        }
        return 0;
}

int store_crypt_new(StoreCrypt **ret) {
        StoreCrypt *sc = calloc(1, sizeof *sc);
        if (!sc)
                return -ENOMEM;
        pthread_rwlock_init(&sc->lock, NULL);
        *ret = sc;
        return 0;
}

void store_crypt_free(StoreCrypt *sc) {
        if (!sc)
                return;
        data_keys_free(sc->keys);
        pthread_rwlock_destroy(&sc->lock);
        free(sc);
}

static int check_file(int dir_fd, const char *path, const DataKeys *k) {
        uint8_t check[DATA_KEY_CHECK_SIZE];
        char hex[2 * DATA_KEY_CHECK_SIZE + 1], want[64], got[64] = "";
        data_keys_check(k, check);
        hex_encode(check, sizeof check, hex);
        int n = snprintf(want, sizeof want, "roam-crypt-check 1 %s\n", hex);
        _cleanup_close_ int fd = openat(dir_fd, STORE_CRYPT_CHECK_FILE, O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno != ENOENT)
                return err_set(-errno, "cannot read '%s/" STORE_CRYPT_CHECK_FILE "': %m", path);
        if (fd < 0) {
                /* the first unlock of this store records its key */
                _cleanup_free_ char *p = path_join(path, STORE_CRYPT_CHECK_FILE);
                if (!p)
                        return -ENOMEM;
                int r = write_file_atomic(p, want, (size_t) n, 0644);
                return r < 0 ? err_set(r, "cannot write '%s': %s", p, strerror(-r)) : 0;
        }
        ssize_t k2 = loop_read(fd, got, sizeof got - 1);
        if (k2 < 0)
                return (int) k2;
        if (k2 != n || memcmp(got, want, (size_t) n))
                return err_set(-EKEYREJECTED,
                               "store '%s' was encrypted with another data key than this laptop's (its "
                               "keys/data.key belongs to another home; restore that home's keys)",
                               path);
        return 0;
}

int store_crypt_unlock(StoreCrypt *sc, int dir_fd, const char *path, const uint8_t dk[static DATA_KEY_SIZE]) {
        DataKeys *k;
        int r = data_keys_new(dk, &k);
        if (r < 0)
                return err_set(r, "cannot derive the store's keys (OpenSSL): %s", strerror(-r));
        r = dir_fd >= 0 ? check_file(dir_fd, path, k) : 0;
        if (r < 0) {
                data_keys_free(k);
                return r;
        }
        pthread_rwlock_wrlock(&sc->lock);
        DataKeys *old = sc->keys;
        sc->keys = k;
        pthread_rwlock_unlock(&sc->lock);
        data_keys_free(old);
        return 0;
}

void store_crypt_forget(StoreCrypt *sc) {
        pthread_rwlock_wrlock(&sc->lock);
        DataKeys *old = TAKE_PTR(sc->keys);
        pthread_rwlock_unlock(&sc->lock);
        data_keys_free(old);
}

bool store_crypt_unlocked(StoreCrypt *sc) {
        pthread_rwlock_rdlock(&sc->lock);
        bool u = sc->keys;
        pthread_rwlock_unlock(&sc->lock);
        return u;
}

static int locked(void) {
        return err_set(-ENOKEY, "this laptop is locked (run 'roam unlock')");
}

int store_crypt_name(StoreCrypt *sc, const RoamId *id, RoamId *ret) {
        pthread_rwlock_rdlock(&sc->lock);
        int r = sc->keys ? data_keys_name(sc->keys, id, ret) : 1;
        pthread_rwlock_unlock(&sc->lock);
        return r > 0 ? locked() : r;
}

int store_crypt_id(StoreCrypt *sc, const RoamId *name, RoamId *ret) {
        pthread_rwlock_rdlock(&sc->lock);
        int r = sc->keys ? data_keys_unname(sc->keys, name, ret) : 1;
        pthread_rwlock_unlock(&sc->lock);
        return r > 0 ? locked() : r;
}

int store_crypt_seal(StoreCrypt *sc, SealCtx *c, SealKind kind, const RoamId *id, const void *in, size_t len,
                     void *out, size_t cap, size_t *ret_len) {
        pthread_rwlock_rdlock(&sc->lock);
        int r = sc->keys ? seal(sc->keys, c, kind, id, in, len, out, cap, ret_len) : 1;
        pthread_rwlock_unlock(&sc->lock);
        if (r > 0)
                return locked();
        if (r < 0)
                return err_set(r, "cannot encrypt %s: %s", kind == SEAL_CHUNK ? "a chunk" : "an object",
                               strerror(-r));
        return 0;
}

int store_crypt_open(StoreCrypt *sc, SealCtx *c, SealKind kind, const RoamId *id, const void *in, size_t len,
                     void *out, size_t cap, size_t *ret_len) {
        pthread_rwlock_rdlock(&sc->lock);
        int r = sc->keys ? unseal(sc->keys, c, kind, id, in, len, out, cap, ret_len) : 1;
        pthread_rwlock_unlock(&sc->lock);
        if (r > 0)
                return locked();
        if (r == -EBADMSG || r == -ENOBUFS) {
                char hex[ID_HEX_SIZE];
                return err_set(-EBADMSG, "%s %s is corrupt (it does not decrypt and authenticate; run 'roam store "
                                         "fsck')",
                               kind == SEAL_CHUNK ? "chunk" : "object", id_to_hex(id, hex));
        }
        return r;
}
