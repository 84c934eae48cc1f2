/* SPDX-License-Identifier: MIT */
#include "sign-key.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/hash.h"
#include "../basic/macro.h"

#define KEY_FILE_MAX 4096

struct SignKey {
        EVP_PKEY *pkey;
        uint8_t pub[SIGN_PUBLIC_SIZE];
};

static int wrap(EVP_PKEY *pkey, SignKey **ret) {
        SignKey *k = calloc(1, sizeof *k);
        size_t n = SIGN_PUBLIC_SIZE;
        if (!k || EVP_PKEY_get_raw_public_key(pkey, k->pub, &n) != 1 || n != SIGN_PUBLIC_SIZE) {
                free(k);
                EVP_PKEY_free(pkey);
                return k ? -EBADMSG : -ENOMEM;
        }
        k->pkey = pkey;
        *ret = k;
        return 0;
}

int sign_key_generate(SignKey **ret) {
        EVP_PKEY *pkey = NULL;
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
        int ok = ctx && EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_keygen(ctx, &pkey) == 1;
        EVP_PKEY_CTX_free(ctx);
        if (!ok)
                return err_set(-EIO, "cannot generate an Ed25519 key (OpenSSL)");
        return wrap(pkey, ret);
}

int sign_key_load(const char *path, SignKey **ret) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_full_file(path, KEY_FILE_MAX, &text, &len);
        if (r == -ENOENT)
                return r;
        if (r < 0)
                return err_set(r, "cannot read key '%s': %s", path, strerror(-r));
        BIO *bio = BIO_new_mem_buf(text, (int) len);
        EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        explicit_bzero(text, len);
        if (!pkey || EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
                EVP_PKEY_free(pkey);
                return err_set(-EBADMSG, "key '%s' is not an Ed25519 private key (move it away to make a new one)",
                               path);
        }
        return wrap(pkey, ret);
}

int sign_key_save(const SignKey *k, const char *path) {
        BIO *bio = BIO_new(BIO_s_mem());
        if (!bio)
                return -ENOMEM;
        int r = -EIO;
        char *data = NULL;
        if (PEM_write_bio_PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL, NULL) == 1) {
                long n = BIO_get_mem_data(bio, &data);
                r = n > 0 ? write_file_atomic(path, data, (size_t) n, 0600) : -EIO;
                if (n > 0)
                        explicit_bzero(data, (size_t) n);
        }
        BIO_free(bio);
        return r < 0 ? err_set(r, "cannot write key '%s': %s", path, strerror(-r)) : 0;
}

void sign_key_free(SignKey *k) {
        if (!k)
                return;
        EVP_PKEY_free(k->pkey);
        free(k);
}

void sign_key_public(const SignKey *k, uint8_t ret[static SIGN_PUBLIC_SIZE]) {
        memcpy(ret, k->pub, SIGN_PUBLIC_SIZE);
}

void sign_key_id(const uint8_t pub[static SIGN_PUBLIC_SIZE], char ret[static SIGN_KEY_ID_LEN + 1]) {
        RoamId h;
        sha256(pub, SIGN_PUBLIC_SIZE, &h);
        hex_encode(h.b, SIGN_KEY_ID_LEN / 2, ret);
}

int sign_key_sign(const SignKey *k, const void *msg, size_t len, uint8_t ret[static SIGN_SIGNATURE_SIZE]) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        size_t n = SIGN_SIGNATURE_SIZE;
        int ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, k->pkey) == 1 &&
                 EVP_DigestSign(ctx, ret, &n, msg, len) == 1 && n == SIGN_SIGNATURE_SIZE;
        EVP_MD_CTX_free(ctx);
        return ok ? 0 : err_set(-EIO, "cannot sign (OpenSSL)");
}

int sign_verify(const uint8_t pub[static SIGN_PUBLIC_SIZE], const void *msg, size_t len,
                const uint8_t sig[static SIGN_SIGNATURE_SIZE]) {
        EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, SIGN_PUBLIC_SIZE);
        EVP_MD_CTX *ctx = pkey ? EVP_MD_CTX_new() : NULL;
        int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
                 EVP_DigestVerify(ctx, sig, SIGN_SIGNATURE_SIZE, msg, len) == 1;
        EVP_MD_CTX_free(ctx);
        EVP_PKEY_free(pkey);
        return ok ? 0 : -EBADMSG;
}
