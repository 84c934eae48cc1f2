/* SPDX-License-Identifier: MIT */
#include "request-sig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/base64.h"
#include "../basic/error.h"
#include "../basic/hash.h"
#include "../basic/macro.h"

#define MESSAGE_TAG "roam-request-v1"
#define METHOD_MAX 16

bool hex_is_exact(const char *s, size_t len) {
        for (size_t i = 0; i < len; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return s[len] == 0;
}

int request_sig_parse(const char *laptop, const char *nonce, const char *signature, RequestSig *ret) {
        if (!laptop && !nonce && !signature)
                return -ENOENT;
        RequestSig s = { 0 };
        if (!laptop || strnlen(laptop, SIGN_KEY_ID_LEN + 1) != SIGN_KEY_ID_LEN ||
            !hex_is_exact(laptop, SIGN_KEY_ID_LEN))
                return err_set(-EBADMSG, "header %s must be a laptop id (%d hex digits)", REQSIG_HDR_LAPTOP,
                               SIGN_KEY_ID_LEN);
        if (!nonce || strnlen(nonce, REQSIG_NONCE_HEX_LEN + 1) != REQSIG_NONCE_HEX_LEN ||
            !hex_is_exact(nonce, REQSIG_NONCE_HEX_LEN))
                return err_set(-EBADMSG, "header %s must be a nonce from POST /v1/laptops/nonces (%d hex digits)",
                               REQSIG_HDR_NONCE, REQSIG_NONCE_HEX_LEN);
        if (base64url_decode_exact(signature, s.sig, sizeof s.sig) < 0)
                return err_set(-EBADMSG, "header %s must be an Ed25519 signature (%d base64url characters)",
                               REQSIG_HDR_SIGNATURE, (int) BASE64URL_LEN(SIGN_SIGNATURE_SIZE));
        memcpy(s.laptop, laptop, SIGN_KEY_ID_LEN + 1);
        memcpy(s.nonce, nonce, REQSIG_NONCE_HEX_LEN + 1);
        *ret = s;
        return 0;
}

static bool field_ok(const char *s, size_t max) {
        size_t n = s ? strnlen(s, max + 1) : 0;
        return n > 0 && n <= max && !strchr(s, '\n');
}

int request_sig_message_digest(const char *method, const char *path, const char *nonce, const RoamId *body_sha,
                               char **ret, size_t *ret_len) {
        if (!field_ok(method, METHOD_MAX) || !field_ok(path, REQSIG_PATH_MAX) ||
            !field_ok(nonce, REQSIG_NONCE_HEX_LEN))
                return -EINVAL;
        char hex[ID_HEX_SIZE];
        int n = asprintf(ret, MESSAGE_TAG "\n%s\n%s\n%s\n%s", method, path, nonce, id_to_hex(body_sha, hex));
        if (n < 0)
                return -ENOMEM;
        *ret_len = (size_t) n;
        return 0;
}

int request_sig_message(const char *method, const char *path, const char *nonce, const void *body, size_t len,
                        char **ret, size_t *ret_len) {
        RoamId h;
        sha256(body ? body : "", body ? len : 0, &h);
        return request_sig_message_digest(method, path, nonce, &h, ret, ret_len);
}

int request_sig_headers_digest(const SignKey *k, const char *method, const char *path, const char *nonce,
                               const RoamId *body_sha, char **ret) {
        _cleanup_free_ char *msg = NULL;
        size_t n;
        int r = request_sig_message_digest(method, path, nonce, body_sha, &msg, &n);
        if (r < 0)
                return r;
        uint8_t sig[SIGN_SIGNATURE_SIZE], pub[SIGN_PUBLIC_SIZE];
        r = sign_key_sign(k, msg, n, sig);
        if (r < 0)
                return r;
        char sig64[BASE64URL_LEN(SIGN_SIGNATURE_SIZE) + 1], id[SIGN_KEY_ID_LEN + 1];
        base64url_encode(sig, sizeof sig, sig64);
        sign_key_public(k, pub);
        sign_key_id(pub, id);
        if (asprintf(ret, "%s: %s\n%s: %s\n%s: %s", REQSIG_HDR_LAPTOP, id, REQSIG_HDR_NONCE, nonce,
                     REQSIG_HDR_SIGNATURE, sig64) < 0)
                return -ENOMEM;
        return 0;
}

int request_sig_headers(const SignKey *k, const char *method, const char *path, const char *nonce,
                        const void *body, size_t len, char **ret) {
        RoamId h;
        sha256(body ? body : "", body ? len : 0, &h);
        return request_sig_headers_digest(k, method, path, nonce, &h, ret);
}

int request_sig_verify(const uint8_t pub[static SIGN_PUBLIC_SIZE], const RequestSig *sig, const char *method,
                       const char *path, const void *body, size_t len) {
        _cleanup_free_ char *msg = NULL;
        size_t n;
        if (request_sig_message(method, path, sig->nonce, body, len, &msg, &n) < 0)
                return -EBADMSG;
        return sign_verify(pub, msg, n, sig->sig);
}
