/* SPDX-License-Identifier: MIT */
#pragma once

/* A server's TLS certificate and key (OpenSSL): the pair 'roam serve' makes
 * in its home on first start, and the checks of a pair given with
 * --tls-cert/--tls-key, so that a bad file is one line naming it and not a
 * vague failure of the TLS library at start.
 *
 * The home's own pair (docs/sync-protocol.md, "TLS and pinning"):
 *   HOME/tls/key.pem   ECDSA P-256 private key, PKCS#8 PEM, mode 0600
 *   HOME/tls/cert.pem  self-signed X.509 v3 certificate, SHA-256, valid for
 *                      TLS_CERT_DAYS from a day before it was made; CN "roam
 *                      HOSTNAME"; names localhost, the host name, 127.0.0.1, ::1
 * Clients pin the certificate's fingerprint instead of trusting a CA, so
 * neither its names nor its dates matter to roam; browsers show it. The key
 * is written first (temp, fsync, rename), then the certificate: a crash in
 * between leaves a key, from which the next start makes the certificate. The
 * making is serialized by a lock on HOME/tls, so that 'roam token create' and
 * 'roam serve' never make two different pairs. The pair stays until someone
 * removes it: every restart serves the same fingerprint. */

#include <stdbool.h>

#include "fingerprint.h"

#define TLS_HOME_DIR "tls"
#define TLS_HOME_CERT "tls/cert.pem"
#define TLS_HOME_KEY "tls/key.pem"
#define TLS_CERT_DAYS 3650
#define TLS_PEM_MAX (1u << 20)

/* Loads the home's pair, making what is missing. *ret_created (may be NULL)
 * is true when a new certificate was made. Paths (caller frees; may be NULL
 * to skip) are absolute when home is. Errors with a one-line detail. */
int tls_home_cert_ensure(const char *home, char **ret_cert, char **ret_key, Fingerprint *ret_fp, bool *ret_created);
/* The home's certificate's fingerprint if the pair exists (-ENOENT when it
 * does not; nothing is made). */
int tls_home_cert_fingerprint(const char *home, Fingerprint *ret_fp);

/* Checks a pair given by the user: the certificate file holds a PEM
 * certificate (the first one is the server's; more may follow), the key file
 * a PEM private key (unencrypted), and the key belongs to the certificate.
 * -EINVAL/-ENOENT/... with a one-line detail naming the file. */
int tls_cert_check_pair(const char *cert_path, const char *key_path, Fingerprint *ret_fp);
/* The fingerprint of the first certificate in a PEM file. */
int tls_cert_file_fingerprint(const char *cert_path, Fingerprint *ret_fp);
