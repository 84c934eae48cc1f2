/* SPDX-License-Identifier: MIT */
#include "data-key.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/base64.h"
#include "../basic/macro.h"

#define HKDF_SALT "roam data key v1"

struct DataKeys {
        uint8_t name_key[32];
        uint8_t content_key[32];
        uint8_t check[DATA_KEY_CHECK_SIZE];
};

struct SealCtx {
        EVP_CIPHER_CTX *c;
};

/* fetched once: an implicit fetch on every init costs more than a chunk's
 * key schedule */
static EVP_CIPHER *cipher_gcm, *cipher_ecb;
static pthread_once_t ciphers_once = PTHREAD_ONCE_INIT;

static void ciphers_fetch(void) {
        cipher_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
        cipher_ecb = EVP_CIPHER_fetch(NULL, "AES-256-ECB", NULL);
}

static int ciphers(void) {
        pthread_once(&ciphers_once, ciphers_fetch);
        return cipher_gcm && cipher_ecb ? 0 : -EIO;
}

int hkdf_sha256(const void *ikm, size_t ikm_len, const void *salt, size_t salt_len, const char *info, void *out,
                size_t out_len) {
        EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
        EVP_KDF_free(kdf);
        if (!kc)
                return -EIO;
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *) "SHA256", 0),
                OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *) ikm, ikm_len),
                OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *) salt, salt_len),
                OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *) info, strlen(info)),
                OSSL_PARAM_construct_end(),
        };
        int ok = EVP_KDF_derive(kc, out, out_len, params) == 1;
        EVP_KDF_CTX_free(kc);
        return ok ? 0 : -EIO;
}

int data_keys_new(const uint8_t dk[static DATA_KEY_SIZE], DataKeys **ret) {
        int r = ciphers();
        if (r < 0)
                return r;
        DataKeys *k = calloc(1, sizeof *k);
        if (!k)
                return -ENOMEM;
        static const char salt[] = HKDF_SALT;
        r = hkdf_sha256(dk, DATA_KEY_SIZE, salt, sizeof salt - 1, "names", k->name_key, sizeof k->name_key);
        if (r >= 0)
                r = hkdf_sha256(dk, DATA_KEY_SIZE, salt, sizeof salt - 1, "contents", k->content_key,
                                sizeof k->content_key);
        if (r >= 0)
                r = hkdf_sha256(dk, DATA_KEY_SIZE, salt, sizeof salt - 1, "check", k->check, sizeof k->check);
        if (r < 0) {
                data_keys_free(k);
                return r;
        }
        *ret = k;
        return 0;
}

void data_keys_free(DataKeys *k) {
        if (!k)
                return;
        explicit_bzero(k, sizeof *k);
        free(k);
}

void data_keys_check(const DataKeys *k, uint8_t ret[static DATA_KEY_CHECK_SIZE]) {
        memcpy(ret, k->check, DATA_KEY_CHECK_SIZE);
}

/* ---- names: a keyed permutation of the 256-bit id ----
 *
 * Two AES-256 blocks b0 b1: c0 = E(b0), c1 = E(b1 ^ c0), then c0' = E(c0 ^
 * c1), so that every bit of the name depends on every bit of the id. The
 * name is c0' c1; its inverse runs the steps backwards. */

static void xor16(uint8_t *dst, const uint8_t *a, const uint8_t *b) {
        for (size_t i = 0; i < 16; i++)
                dst[i] = a[i] ^ b[i];
}

static EVP_CIPHER_CTX *ecb_ctx(const DataKeys *k, bool enc) {
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        if (!c)
                return NULL;
        if (EVP_CipherInit_ex2(c, cipher_ecb, k->name_key, NULL, enc ? 1 : 0, NULL) != 1 ||
            EVP_CIPHER_CTX_set_padding(c, 0) != 1) {
                EVP_CIPHER_CTX_free(c);
                return NULL;
        }
        return c;
}

static int block(EVP_CIPHER_CTX *c, const uint8_t in[static 16], uint8_t out[static 16]) {
        int n = 0;
        return EVP_CipherUpdate(c, out, &n, in, 16) == 1 && n == 16 ? 0 : -EIO;
}

int data_keys_name(const DataKeys *k, const RoamId *id, RoamId *ret) {
        EVP_CIPHER_CTX *c = ecb_ctx(k, true);
        if (!c)
                return -EIO;
        uint8_t c0[16], c1[16], t[16];
        int r = block(c, id->b, c0);
        xor16(t, id->b + 16, c0);
        if (r >= 0)
                r = block(c, t, c1);
        xor16(t, c0, c1);
        if (r >= 0)
                r = block(c, t, ret->b);
        EVP_CIPHER_CTX_free(c);
        if (r >= 0)
                memcpy(ret->b + 16, c1, 16);
        return r;
}

int data_keys_unname(const DataKeys *k, const RoamId *name, RoamId *ret) {
        EVP_CIPHER_CTX *c = ecb_ctx(k, false);
        if (!c)
                return -EIO;
        const uint8_t *c1 = name->b + 16;
        uint8_t c0[16], t[16], b1[16];
        int r = block(c, name->b, t);
        xor16(c0, t, c1);
        if (r >= 0)
                r = block(c, c1, t);
        xor16(b1, t, c0);
        if (r >= 0)
                r = block(c, c0, ret->b);
        EVP_CIPHER_CTX_free(c);
        if (r >= 0)
                memcpy(ret->b + 16, b1, 16);
        return r;
}

/* ---- sealing ---- */

SealCtx *seal_ctx_new(void) {
        if (ciphers() < 0)
                return NULL;
        SealCtx *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->c = EVP_CIPHER_CTX_new();
        if (!c->c) {
                free(c);
                return NULL;
        }
        return c;
}

void seal_ctx_free(SealCtx *c) {
        if (!c)
                return;
        EVP_CIPHER_CTX_free(c->c);
        free(c);
}

int seal_header_parse(const void *buf, size_t len, SealHeader *ret) {
        const uint8_t *p = buf;
        if (len < SEAL_OVERHEAD || memcmp(p, SEAL_MAGIC, 4) || (p[4] != SEAL_CHUNK && p[4] != SEAL_OBJECT) || p[5] ||
            p[6] || p[7])
                return -EBADMSG;
        *ret = (SealHeader){
                .kind = (SealKind) p[4],
                .nonce = p + 8,
                .ciphertext = p + SEAL_HEADER_SIZE,
                .ciphertext_len = len - SEAL_OVERHEAD,
                .tag = p + len - SEAL_TAG_SIZE,
        };
        return 0;
}

/* The key of one chunk or object: HMAC(content key, kind || id). */
static int object_key(const DataKeys *k, SealKind kind, const RoamId *id, uint8_t ret[static 32]) {
        uint8_t msg[1 + ID_SIZE];
        msg[0] = (uint8_t) kind;
        memcpy(msg + 1, id->b, ID_SIZE);
        unsigned n = 0;
        if (!HMAC(EVP_sha256(), k->content_key, sizeof k->content_key, msg, sizeof msg, ret, &n) || n != 32)
                return -EIO;
        return 0;
}

/* The GCM pass over header + id (additional data) and the payload. */
static int gcm(EVP_CIPHER_CTX *c, bool enc, const uint8_t key[static 32], const uint8_t *header, const RoamId *id,
               const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag) {
        int n = 0;
        if (len > INT32_MAX)
                return -EFBIG;
        if (EVP_CipherInit_ex2(c, cipher_gcm, key, header + 8, enc ? 1 : 0, NULL) != 1 ||
            EVP_CipherUpdate(c, NULL, &n, header, SEAL_HEADER_SIZE) != 1 ||
            EVP_CipherUpdate(c, NULL, &n, id->b, ID_SIZE) != 1)
                return -EIO;
        if (len > 0 && (EVP_CipherUpdate(c, out, &n, in, (int) len) != 1 || (size_t) n != len))
                return enc ? -EIO : -EBADMSG;
        if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_SIZE, (void *) tag) != 1)
                return -EIO;
        if (EVP_CipherFinal_ex(c, out + len, &n) != 1)
                return enc ? -EIO : -EBADMSG;
        if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_SIZE, tag) != 1)
                return -EIO;
        return 0;
}

int seal(const DataKeys *k, SealCtx *c, SealKind kind, const RoamId *id, const void *in, size_t len, void *out,
         size_t cap, size_t *ret_len) {
        if (cap < len + SEAL_OVERHEAD)
                return -ENOBUFS;
        _cleanup_(seal_ctx_freep) SealCtx *own = NULL;
        if (!c && !(c = own = seal_ctx_new()))
                return -ENOMEM;
        uint8_t *o = out;
        memcpy(o, SEAL_MAGIC, 4);
        o[4] = (uint8_t) kind;
        o[5] = o[6] = o[7] = 0;
        int r = random_bytes(o + 8, SEAL_NONCE_SIZE);
        if (r < 0)
                return r;
        uint8_t key[32];
        r = object_key(k, kind, id, key);
        if (r >= 0)
                r = gcm(c->c, true, key, o, id, in, len, o + SEAL_HEADER_SIZE, o + SEAL_HEADER_SIZE + len);
        explicit_bzero(key, sizeof key);
        if (r < 0)
                return r;
        *ret_len = len + SEAL_OVERHEAD;
        return 0;
}

int unseal(const DataKeys *k, SealCtx *c, SealKind kind, const RoamId *id, const void *in, size_t len, void *out,
           size_t cap, size_t *ret_len) {
        SealHeader h;
        int r = seal_header_parse(in, len, &h);
        if (r < 0 || h.kind != kind)
                return -EBADMSG;
        if (cap < h.ciphertext_len)
                return -ENOBUFS;
        _cleanup_(seal_ctx_freep) SealCtx *own = NULL;
        if (!c && !(c = own = seal_ctx_new()))
                return -ENOMEM;
        uint8_t key[32];
        r = object_key(k, kind, id, key);
        if (r >= 0)
                r = gcm(c->c, false, key, in, id, h.ciphertext, h.ciphertext_len, out, (uint8_t *) h.tag);
        explicit_bzero(key, sizeof key);
        if (r < 0)
                return r;
        *ret_len = h.ciphertext_len;
        return 0;
}
