/* SPDX-License-Identifier: MIT */
#include "remote-tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"

int remote_tls_config(const char *token, const RemoteOptions *o, char **ret_bearer, RemoteTls *ret) {
        RemoteTls t = { .cacert = o ? o->cacert : NULL };
        char *bearer = NULL;
        if (token) {
                int r = pairing_token_split(token, &bearer, &t.pin, &t.pinned);
                if (r < 0)
                        return r;
        }
        if (o && o->fingerprint) {
                if (fingerprint_parse(o->fingerprint, &t.pin) < 0) {
                        free(bearer);
                        return err_set(-EINVAL, "fingerprint '%.100s' is malformed (expected sha256: and 64 hex "
                                       "digits, as 'roam serve' prints it)", o->fingerprint);
                }
                t.pinned = true;
        }
        *ret_bearer = bearer;
        *ret = t;
        return 0;
}

static CURLcode ssl_ctx_cb(CURL *curl, void *ssl_ctx, void *userdata) {
        tls_verify_install(ssl_ctx, userdata);
        return CURLE_OK;
}

int remote_tls_setup(CURL *h, const char *url, const RemoteTls *t, TlsVerify *tv) {
        if (strncmp(url, "https://", 8))
                return 0;
        *tv = (TlsVerify){ .pinned = t->pinned, .pin = t->pin };
        CURLcode cc = curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
        if (cc == CURLE_OK)
                cc = curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, tv);
        if (t->pinned) {
                if (cc != CURLE_OK)
                        return err_set(-EOPNOTSUPP, "this libcurl cannot pin a certificate (it is not built with "
                                       "OpenSSL: install libcurl4)");
                /* the pin replaces the CA chain and the host name; no TLS
                 * session is resumed without a look at the certificate */
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
                curl_easy_setopt(h, CURLOPT_SSL_SESSIONID_CACHE, 0L);
        } else if (t->cacert)
                curl_easy_setopt(h, CURLOPT_CAINFO, t->cacert);
        return 0;
}

int remote_tls_error(const char *url, const RemoteTls *t, const TlsVerify *tv, CURLcode cc) {
        char seen[FINGERPRINT_TEXT_SIZE], pin[FINGERPRINT_TEXT_SIZE];
        if (tv->seen)
                fingerprint_format(&tv->peer, seen);
        if (tv->mismatch)
                return err_set(-EKEYREJECTED,
                               "%s presented certificate %s, but %s is pinned for it: refused (if the server's "
                               "certificate was replaced on purpose, pair again with a token from 'roam token "
                               "create' there, or pass --fingerprint %s; else someone may be in between)",
                               url, tv->seen ? seen : "(none)", fingerprint_format(&t->pin, pin),
                               tv->seen ? seen : "NEW");
        if (!t->pinned && (tv->chain_error || cc == CURLE_PEER_FAILED_VERIFICATION)) {
                const char *why = tv->chain_error ? tls_verify_chain_error_string(tv->chain_error)
                                                  : "its name or certificate does not match";
                if (tv->seen)
                        return err_set(-EKEYREJECTED,
                                       "cannot verify %s: %s, certificate %s (if that is the fingerprint 'roam serve' "
                                       "printed there, pin it: --fingerprint %s; or use the token 'roam token "
                                       "create' prints there)",
                                       url, why, seen, seen);
                return err_set(-EKEYREJECTED, "cannot verify %s: %s (use the token 'roam token create' prints "
                               "there, or --fingerprint)", url, why);
        }
        return 0;
}
