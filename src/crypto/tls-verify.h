/* SPDX-License-Identifier: MIT */
#pragma once

/* The client's check of a server's certificate, on an OpenSSL SSL_CTX
 * (libcurl's OpenSSL backend hands it over: CURLOPT_SSL_CTX_FUNCTION).
 *
 * Pinned (a fingerprint from a pairing token, --fingerprint, serve.json or
 * a laptop's pairing): the server's certificate (the first one it sends)
 * must have exactly that SHA-256; no CA, name or date is looked at, and
 * anything else fails the handshake before a byte of the request is sent.
 * Not pinned: OpenSSL's ordinary chain verification (the system's CAs or a
 * --cacert file); the fingerprint of what was presented is recorded all the
 * same, so that the error can show it to the user.
 *
 * A TlsVerify lives at least as long as the handshakes of the connections
 * made with the SSL_CTX; the handshake runs in one thread. */

#include <stdbool.h>

#include "fingerprint.h"

typedef struct TlsVerify {
        /* in */
        bool pinned;
        Fingerprint pin;
        /* out, from the last handshake */
        bool seen;           /* a certificate was presented ... */
        Fingerprint peer;    /* ... with this fingerprint */
        bool mismatch;       /* pinned, and it was another certificate */
        int chain_error;     /* not pinned: OpenSSL's X509_V_ERR_* (0 = none) */
} TlsVerify;

/* Installs the check on ssl_ctx (an SSL_CTX *). Forces peer verification on
 * (SSL_VERIFY_PEER), so that a refused certificate ends the handshake. */
void tls_verify_install(void *ssl_ctx, TlsVerify *v);
/* OpenSSL's words for chain_error ("self-signed certificate", ...). */
const char *tls_verify_chain_error_string(int chain_error);
