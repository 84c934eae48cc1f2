/* SPDX-License-Identifier: MIT */
#include "tls-verify.h"

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <string.h>

static int verify_cb(X509_STORE_CTX *ctx, void *arg) {
        TlsVerify *v = arg;
        X509 *leaf = X509_STORE_CTX_get0_cert(ctx);
        unsigned n = 0;
        uint8_t md[EVP_MAX_MD_SIZE];
        v->seen = leaf && X509_digest(leaf, EVP_sha256(), md, &n) == 1 && n == FINGERPRINT_SIZE;
        if (v->seen)
                memcpy(v->peer.b, md, FINGERPRINT_SIZE);
        if (v->pinned) {
                v->mismatch = !v->seen || !fingerprint_equal(&v->peer, &v->pin);
                if (v->mismatch) {
                        X509_STORE_CTX_set_error(ctx, X509_V_ERR_CERT_REJECTED);
                        return 0;
                }
                X509_STORE_CTX_set_error(ctx, X509_V_OK);
                return 1;
        }
        int ok = X509_verify_cert(ctx);
        v->chain_error = ok == 1 ? 0 : X509_STORE_CTX_get_error(ctx);
        return ok == 1 ? 1 : 0;
}

void tls_verify_install(void *ssl_ctx, TlsVerify *v) {
        v->seen = v->mismatch = false;
        v->chain_error = 0;
        SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_cert_verify_callback(ssl_ctx, verify_cb, v);
}

const char *tls_verify_chain_error_string(int chain_error) {
        return X509_verify_cert_error_string(chain_error);
}
