/* SPDX-License-Identifier: MIT */
#pragma once

/* Signed requests: how a laptop proves that a request that takes, renews or
 * hands back a session comes from it (docs/sync-protocol.md, "Laptops").
 *
 *   laptop                                       server
 *   POST /v1/laptops/nonces           ─────────▶ n random single-use nonces,
 *                                     ◀───────── each valid ttl seconds
 *   POST /v1/sessions/s1/offline
 *     Authorization: Bearer TOKEN
 *     Roam-Laptop: ID                            the paired laptop ID (not revoked,
 *     Roam-Nonce: NONCE                          of the token's user), NONCE issued
 *     Roam-Signature: base64url(Ed25519 sig)     and unused, sig over message() below
 *
 * The signed message binds the method, the path (without a query: signed
 * routes take none), the nonce and the SHA-256 of the body:
 *
 *   "roam-request-v1\n" METHOD "\n" PATH "\n" NONCE "\n" hex(sha256(body))
 *
 * so a signature is good for one request, once. A body sent while it is
 * still being made (chunked; a take online's remainder, src/session/move.c)
 * carries the three fields as HTTP trailer fields after its last chunk: the
 * server looks in the header first, then in the trailer. Pure code, no I/O; the
 * header parser is fuzzed (tests/fuzz/fuzz-reqsig.c). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../basic/hash.h"
#include "sign-key.h"

#define REQSIG_HDR_LAPTOP "Roam-Laptop"
#define REQSIG_HDR_NONCE "Roam-Nonce"
#define REQSIG_HDR_SIGNATURE "Roam-Signature"
/* the three, as a request's "Trailer:" header announces them */
#define REQSIG_FIELDS REQSIG_HDR_LAPTOP ", " REQSIG_HDR_NONCE ", " REQSIG_HDR_SIGNATURE
#define REQSIG_NONCE_SIZE 16                       /* random bytes */
#define REQSIG_NONCE_HEX_LEN (REQSIG_NONCE_SIZE * 2) /* as sent */
#define REQSIG_PATH_MAX 1024

typedef struct RequestSig {
        char laptop[SIGN_KEY_ID_LEN + 1];
        char nonce[REQSIG_NONCE_HEX_LEN + 1];
        uint8_t sig[SIGN_SIGNATURE_SIZE];
} RequestSig;

/* The three header values (each may be NULL). -ENOENT when all three are
 * absent (an unsigned request); -EBADMSG with a detail naming the header
 * when one is missing or malformed. */
int request_sig_parse(const char *laptop, const char *nonce, const char *signature, RequestSig *ret);

/* True for a lowercase hex string of exactly len digits. */
bool hex_is_exact(const char *s, size_t len);

/* The message to sign (see above). Caller frees *ret. -EINVAL for a method or
 * path that is empty, too long or holds a newline. */
int request_sig_message(const char *method, const char *path, const char *nonce, const void *body, size_t len,
                        char **ret, size_t *ret_len);

/* The same, given the body's SHA-256 (a body hashed as it was sent). */
int request_sig_message_digest(const char *method, const char *path, const char *nonce, const RoamId *body_sha,
                               char **ret, size_t *ret_len);

/* Signs a request and returns its three header lines ("Name: value", joined
 * by '\n'). Caller frees *ret. */
int request_sig_headers(const SignKey *k, const char *method, const char *path, const char *nonce,
                        const void *body, size_t len, char **ret);
/* The same, given the body's SHA-256: for a body streamed while it is made,
 * whose lines then go as HTTP trailer fields after it (the server reads the
 * three fields from the header or, when absent there, from the trailer). */
int request_sig_headers_digest(const SignKey *k, const char *method, const char *path, const char *nonce,
                               const RoamId *body_sha, char **ret);

/* Verifies sig against pub for this request: 0, or -EBADMSG. */
int request_sig_verify(const uint8_t pub[static SIGN_PUBLIC_SIZE], const RequestSig *sig, const char *method,
                       const char *path, const void *body, size_t len);
