/* SPDX-License-Identifier: MIT */
#include "key-file.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <string.h>

#include "../basic/base64.h"
#include "../basic/macro.h"

#define HOME_MAGIC "ROAMHK1" /* and its NUL: 8 bytes */
#define WRAP_MAGIC "ROAMDK1"
#define KDF_MEMORY_MAX (256u << 20)

static bool kdf_valid(KdfParams k) {
        return k.log2_n >= 10 && k.log2_n <= 20 && k.r >= 1 && k.r <= 16 && k.p >= 1 && k.p <= 4 &&
               128ull * k.r * (1ull << k.log2_n) <= KDF_MEMORY_MAX;
}

static bool zero(const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

/* AES-256-GCM of a 32-byte secret with additional data. */
static int gcm32(bool enc, const uint8_t key[static 32], const uint8_t nonce[static 12], const uint8_t *aad,
                 size_t aad_len, const uint8_t in[static 32], uint8_t out[static 32], uint8_t tag[static 16]) {
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        if (!c)
                return -ENOMEM;
        int n = 0, r = -EIO;
        if (EVP_CipherInit_ex2(c, EVP_aes_256_gcm(), key, nonce, enc ? 1 : 0, NULL) == 1 &&
            EVP_CipherUpdate(c, NULL, &n, aad, (int) aad_len) == 1 && EVP_CipherUpdate(c, out, &n, in, 32) == 1 &&
            (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1)) {
                if (EVP_CipherFinal_ex(c, out + 32, &n) != 1)
                        r = enc ? -EIO : -EACCES;
                else if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
                        r = -EIO;
                else
                        r = 0;
        }
        EVP_CIPHER_CTX_free(c);
        if (r < 0 && !enc)
                explicit_bzero(out, 32);
        return r;
}

static int scrypt_key(const char *pass, size_t len, const uint8_t salt[static 16], KdfParams k,
                      uint8_t ret[static 32]) {
        if (!kdf_valid(k))
                return -EBADMSG;
        uint64_t n = 1ull << k.log2_n;
        uint64_t mem = 128ull * k.r * n * (k.p + 1) + (1u << 20);
        return EVP_PBE_scrypt(pass, len, salt, 16, n, k.r, k.p, mem, ret, 32) == 1 ? 0 : -EIO;
}

/* ---- home key ---- */

int home_key_parse(const void *buf, size_t len, HomeKey *ret) {
        const uint8_t *p = buf;
        if (len != HOME_KEY_SIZE || memcmp(p, HOME_MAGIC, 8) || p[8] != 1 || !zero(p + 12, 4))
                return -EBADMSG;
        HomeKey k = { .kdf = { p[9], p[10], p[11] } };
        if (!kdf_valid(k.kdf))
                return -EBADMSG;
        memcpy(k.salt, p + 16, 16);
        memcpy(k.public_key, p + 32, 32);
        memcpy(k.nonce, p + 64, 12);
        memcpy(k.ciphertext, p + 76, 32);
        memcpy(k.tag, p + 108, 16);
        memcpy(k.header, p, 64);
        *ret = k;
        return 0;
}

static int check_passphrase(const char *pass, size_t len) {
        return len >= PASSPHRASE_MIN && len <= PASSPHRASE_MAX ? 0 : -EINVAL;
}

static int seal_home(const uint8_t pub[static 32], const uint8_t priv[static 32], const char *pass, size_t len,
                     KdfParams kdf, uint8_t out[static HOME_KEY_SIZE]) {
        int r = check_passphrase(pass, len);
        if (r < 0)
                return r;
        if (!kdf_valid(kdf))
                return -EINVAL;
        memset(out, 0, HOME_KEY_SIZE);
        memcpy(out, HOME_MAGIC, 8);
        out[8] = 1;
        out[9] = kdf.log2_n;
        out[10] = kdf.r;
        out[11] = kdf.p;
        memcpy(out + 32, pub, 32);
        r = random_bytes(out + 16, 16);
        if (r >= 0)
                r = random_bytes(out + 64, 12);
        if (r < 0)
                return r;
        uint8_t kek[32];
        r = scrypt_key(pass, len, out + 16, kdf, kek);
        if (r >= 0)
                r = gcm32(true, kek, out + 64, out, 64, priv, out + 76, out + 108);
        explicit_bzero(kek, sizeof kek);
        return r;
}

static int x25519_generate(uint8_t pub[static 32], uint8_t priv[static 32]) {
        EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
        size_t a = 32, b = 32;
        int ok = k && EVP_PKEY_get_raw_public_key(k, pub, &a) == 1 && EVP_PKEY_get_raw_private_key(k, priv, &b) == 1 &&
                 a == 32 && b == 32;
        EVP_PKEY_free(k);
        return ok ? 0 : -EIO;
}

int home_key_make(const char *passphrase, size_t len, KdfParams kdf, uint8_t out[static HOME_KEY_SIZE]) {
        uint8_t pub[32], priv[32];
        int r = x25519_generate(pub, priv);
        if (r >= 0)
                r = seal_home(pub, priv, passphrase, len, kdf, out);
        explicit_bzero(priv, sizeof priv);
        return r;
}

int home_key_open(const HomeKey *k, const char *passphrase, size_t len, uint8_t ret[static X25519_KEY_SIZE]) {
        uint8_t kek[32], priv[32];
        int r = scrypt_key(passphrase, len, k->salt, k->kdf, kek);
        if (r >= 0)
                r = gcm32(false, kek, k->nonce, k->header, sizeof k->header, k->ciphertext, priv, (uint8_t *) k->tag);
        explicit_bzero(kek, sizeof kek);
        if (r >= 0)
                memcpy(ret, priv, 32);
        explicit_bzero(priv, sizeof priv);
        return r;
}

int home_key_reseal(const HomeKey *k, const uint8_t private_key[static X25519_KEY_SIZE], const char *passphrase,
                    size_t len, KdfParams kdf, uint8_t out[static HOME_KEY_SIZE]) {
        return seal_home(k->public_key, private_key, passphrase, len, kdf, out);
}

/* ---- wrapped data key ---- */

int wrapped_key_parse(const void *buf, size_t len, WrappedKey *ret) {
        const uint8_t *p = buf;
        if (len != WRAPPED_KEY_SIZE || memcmp(p, WRAP_MAGIC, 8) || (p[8] != KEY_ORIGIN_SERVER && p[8] != KEY_ORIGIN_LOCAL) ||
            !zero(p + 9, 7))
                return -EBADMSG;
        WrappedKey w = { .origin = (KeyOrigin) p[8] };
        memcpy(w.ephemeral, p + 16, 32);
        memcpy(w.nonce, p + 48, 12);
        memcpy(w.ciphertext, p + 60, 32);
        memcpy(w.tag, p + 92, 16);
        memcpy(w.header, p, 48);
        *ret = w;
        return 0;
}

/* HKDF of X25519(priv, peer) into the wrapping key. */
static int wrap_kek(EVP_PKEY *priv, const uint8_t peer[static 32], const uint8_t eph_pub[static 32],
                    const uint8_t rcpt_pub[static 32], uint8_t ret[static 32]) {
        EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
        EVP_PKEY_CTX *c = pk ? EVP_PKEY_CTX_new(priv, NULL) : NULL;
        uint8_t shared[32];
        size_t n = sizeof shared;
        int r = c && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, pk) == 1 &&
                                EVP_PKEY_derive(c, shared, &n) == 1 && n == 32
                        ? 0
                        : -EACCES;
        EVP_PKEY_CTX_free(c);
        EVP_PKEY_free(pk);
        if (r >= 0 && zero(shared, 32))
                r = -EACCES; /* a low-order point */
        uint8_t salt[64];
        memcpy(salt, eph_pub, 32);
        memcpy(salt + 32, rcpt_pub, 32);
        if (r >= 0)
                r = hkdf_sha256(shared, 32, salt, sizeof salt, "roam data key wrap v1", ret, 32);
        explicit_bzero(shared, sizeof shared);
        return r;
}

int wrapped_key_make(const uint8_t recipient[static X25519_KEY_SIZE], const uint8_t dk[static DATA_KEY_SIZE],
                     KeyOrigin origin, uint8_t out[static WRAPPED_KEY_SIZE]) {
        uint8_t eph_pub[32], eph_priv[32], kek[32];
        int r = x25519_generate(eph_pub, eph_priv);
        if (r < 0)
                return r;
        EVP_PKEY *eph = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, eph_priv, 32);
        explicit_bzero(eph_priv, sizeof eph_priv);
        if (!eph)
                return -EIO;
        r = wrap_kek(eph, recipient, eph_pub, recipient, kek);
        EVP_PKEY_free(eph);
        if (r == -EACCES)
                return -EINVAL;
        memset(out, 0, WRAPPED_KEY_SIZE);
        memcpy(out, WRAP_MAGIC, 8);
        out[8] = (uint8_t) origin;
        memcpy(out + 16, eph_pub, 32);
        if (r >= 0)
                r = random_bytes(out + 48, 12);
        if (r >= 0)
                r = gcm32(true, kek, out + 48, out, 48, dk, out + 60, out + 92);
        explicit_bzero(kek, sizeof kek);
        return r;
}

int wrapped_key_open(const WrappedKey *w, const uint8_t private_key[static X25519_KEY_SIZE],
                     uint8_t ret[static DATA_KEY_SIZE]) {
        EVP_PKEY *me = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, private_key, 32);
        uint8_t pub[32], kek[32];
        size_t n = sizeof pub;
        if (!me || EVP_PKEY_get_raw_public_key(me, pub, &n) != 1) {
                EVP_PKEY_free(me);
                return -EIO;
        }
        int r = wrap_kek(me, w->ephemeral, w->ephemeral, pub, kek);
        EVP_PKEY_free(me);
        if (r >= 0)
                r = gcm32(false, kek, w->nonce, w->header, sizeof w->header, w->ciphertext, ret, (uint8_t *) w->tag);
        explicit_bzero(kek, sizeof kek);
        return r;
}
